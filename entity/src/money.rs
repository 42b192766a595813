//! Money is stored as `i64` units of 1/10,000 of the currency: exact in SQL
//! sums on every backend, wide enough for 922 trillion of any currency, and
//! fine enough for every ISO 4217 minor unit (at most 4 decimals).

/// Decimal places kept in storage.
pub const SCALE: u32 = 4;
/// Storage units per whole currency unit.
pub const UNITS_PER_WHOLE: i64 = 10_000;

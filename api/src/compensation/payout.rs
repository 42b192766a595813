//! The payout curve of one link, in exact integer arithmetic: attainment is
//! a fraction, never a float, and money is rounded once, at the end, to the
//! currency's minor units (half to even).
//!
//! With attainment `a`, weight `w`, variable target `V`, threshold `t`,
//! accelerator `k` and cap `c`: `0` if `a < t`; `V·w·a` if `t ≤ a ≤ 1`;
//! `V·w·(1 + (a − 1)·k)` if `a > 1`; never above `V·w·c`.

use crate::error::{AppError, AppResult};
use entity::money::UNITS_PER_WHOLE;
use rust_decimal::Decimal;
use std::cmp::Ordering;

/// An exact non-negative fraction `num / den`, `den > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub num: i128,
    pub den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

impl Fraction {
    /// `num / den` in lowest terms; none when `den` is 0.
    pub fn new(num: i128, den: i128) -> Option<Fraction> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den).max(1);
        let s = if den < 0 { -1 } else { 1 };
        Some(Fraction {
            num: s * num / g,
            den: s * den / g,
        })
    }

    /// As a decimal (exact when it terminates within 28 digits, else
    /// rounded in the last).
    pub fn to_decimal(self) -> Option<Decimal> {
        let n = Decimal::from_i128_with_scale(self.num, 0);
        let d = Decimal::from_i128_with_scale(self.den, 0);
        n.checked_div(d).map(|x| x.normalize())
    }

    /// Compares with `units` / 10,000.
    pub fn cmp_units(self, units: i64) -> Ordering {
        let per = i128::from(UNITS_PER_WHOLE);
        (self.num * per).cmp(&(i128::from(units) * self.den))
    }
}

/// A link's weight and curve, each in 1/10,000 units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Curve {
    pub weight: i64,
    pub threshold: i64,
    pub accelerator: i64,
    pub cap: i64,
}

/// Which part of the curve an attainment falls on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch {
    /// No attainment (a rate over nothing): pays 0.
    NoAttainment,
    BelowThreshold,
    Linear,
    Accelerated,
    Capped,
}

fn overflow() -> AppError {
    AppError::Internal("payout out of range".into())
}

/// Rounds `num / den` (non-negative) to an integer, half to even.
fn round_half_even(num: i128, den: i128) -> i128 {
    let (q, r) = (num / den, num % den);
    match (2 * r).cmp(&den) {
        Ordering::Less => q,
        Ordering::Greater => q + 1,
        Ordering::Equal => q + (q % 2),
    }
}

/// The payout of one link: money with `minor` decimals, and the branch.
/// `variable_target` is in storage units (1/10,000 of the currency).
pub fn payout(
    variable_target: i64,
    curve: Curve,
    attainment: Option<Fraction>,
    minor: u32,
) -> AppResult<(Decimal, Branch)> {
    let zero = Decimal::new(0, minor);
    let Some(a) = attainment else {
        return Ok((zero, Branch::NoAttainment));
    };
    if a.cmp_units(curve.threshold) == Ordering::Less {
        return Ok((zero, Branch::BelowThreshold));
    }
    let per = i128::from(UNITS_PER_WHOLE);
    // The multiplier of V·w as a fraction mn / md.
    let (mut mn, mut md, mut branch) = if a.cmp_units(UNITS_PER_WHOLE) != Ordering::Greater {
        (a.num, a.den, Branch::Linear)
    } else {
        // 1 + (a − 1)·k = (den·10⁴ + (num − den)·k) / (den·10⁴)
        let over = (a.num - a.den)
            .checked_mul(i128::from(curve.accelerator))
            .ok_or_else(overflow)?;
        let md = a.den.checked_mul(per).ok_or_else(overflow)?;
        (
            md.checked_add(over).ok_or_else(overflow)?,
            md,
            Branch::Accelerated,
        )
    };
    // Never above c: mn/md > cap/10⁴ ⇔ mn·10⁴ > cap·md.
    let cap = i128::from(curve.cap);
    if mn.checked_mul(per).ok_or_else(overflow)? > cap.checked_mul(md).ok_or_else(overflow)? {
        (mn, md, branch) = (cap, per, Branch::Capped);
    }
    // V·w·m in minor units: V(units)·w(1/10⁴)·mn / (md · 10⁴ · 10^(4 − minor)).
    let scale = 10i128.pow(4u32.saturating_sub(minor));
    let num = i128::from(variable_target)
        .checked_mul(i128::from(curve.weight))
        .and_then(|x| x.checked_mul(mn))
        .ok_or_else(overflow)?;
    let den = md
        .checked_mul(per)
        .and_then(|x| x.checked_mul(scale))
        .ok_or_else(overflow)?;
    let minor_units = round_half_even(num, den);
    Ok((Decimal::from_i128_with_scale(minor_units, minor), branch))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURVE: Curve = Curve {
        weight: 5_000,       // 0.5
        threshold: 5_000,    // 0.5
        accelerator: 20_000, // 2
        cap: 15_000,         // 1.5
    };

    fn pay(num: i128, den: i128) -> (String, Branch) {
        // V = 10,000.00
        let (d, b) = payout(100_000_000, CURVE, Fraction::new(num, den), 2).unwrap();
        (d.to_string(), b)
    }

    #[test]
    fn every_branch_of_the_curve() {
        assert_eq!(pay(49, 100), ("0.00".into(), Branch::BelowThreshold));
        assert_eq!(pay(1, 2), ("2500.00".into(), Branch::Linear));
        assert_eq!(pay(1, 3), ("0.00".into(), Branch::BelowThreshold));
        assert_eq!(pay(2, 3), ("3333.33".into(), Branch::Linear));
        assert_eq!(pay(1, 1), ("5000.00".into(), Branch::Linear));
        // 1.1: 1 + 0.1·2 = 1.2 → 6,000
        assert_eq!(pay(11, 10), ("6000.00".into(), Branch::Accelerated));
        // 1.25: 1.5 = the cap exactly, still the accelerated branch
        assert_eq!(pay(5, 4), ("7500.00".into(), Branch::Accelerated));
        assert_eq!(pay(3, 1), ("7500.00".into(), Branch::Capped));
        assert_eq!(
            payout(100_000_000, CURVE, None, 2).unwrap(),
            (Decimal::new(0, 2), Branch::NoAttainment)
        );
    }

    #[test]
    fn rounds_half_to_even_once() {
        assert_eq!(round_half_even(5, 2), 2);
        assert_eq!(round_half_even(7, 2), 4);
        assert_eq!(round_half_even(7, 3), 2);
        assert_eq!(round_half_even(8, 3), 3);
    }
}

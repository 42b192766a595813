//! Validation and conversions shared by the record services.

use crate::error::{AppError, AppResult};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{ColumnTrait, Condition};

/// Change to one field: `None` leaves it, `Some(None)` clears it.
pub type Patch<T> = Option<Option<T>>;

/// A half-open time range `[from, to)`; either end may be open.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl TimeRange {
    pub fn condition(&self, col: impl ColumnTrait) -> Condition {
        let mut c = Condition::all();
        if let Some(from) = self.from {
            c = c.add(col.gte(from));
        }
        if let Some(to) = self.to {
            c = c.add(col.lt(to));
        }
        c
    }
}

/// Case-insensitive substring search over `cols`.
pub fn search_condition<C: ColumnTrait>(cols: &[C], term: &str) -> Condition {
    let escaped = term
        .trim()
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let pattern = format!("%{escaped}%");
    cols.iter().fold(Condition::any(), |c, col| {
        c.add(
            Expr::expr(Func::lower(Expr::col(col.as_column_ref())))
                .like(LikeExpr::new(pattern.clone()).escape('\\')),
        )
    })
}

/// Longest `search` term a filter takes, in characters.
pub const MAX_SEARCH: usize = 200;

/// Refuses control characters (NUL among them: PostgreSQL cannot store it),
/// except tab and line breaks where `free_text` allows them.
pub fn check_chars(value: &str, field: &str, free_text: bool) -> AppResult<()> {
    let bad = value
        .chars()
        .any(|c| c.is_control() && !(free_text && matches!(c, '\t' | '\n' | '\r')));
    if bad {
        return Err(AppError::bad_input(
            field,
            format!("`{field}` must not contain control characters"),
        ));
    }
    Ok(())
}

/// A filter's `search` term: trimmed, at most `MAX_SEARCH` characters, no
/// control characters; blank means no search.
pub fn search_term(raw: Option<String>) -> AppResult<Option<String>> {
    let Some(raw) = raw else { return Ok(None) };
    let term = raw.trim();
    check_chars(term, "search", false)?;
    if term.chars().count() > MAX_SEARCH {
        return Err(AppError::bad_input(
            "search",
            format!("`search` must be at most {MAX_SEARCH} characters"),
        ));
    }
    Ok((!term.is_empty()).then(|| term.to_owned()))
}

/// Lower-cases and checks an e-mail address.
pub fn normalize_email(raw: &str, field: &str) -> AppResult<String> {
    check_chars(raw.trim(), field, false)?;
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !local.contains(char::is_whitespace) && valid_domain(domain)
        });
    if valid {
        Ok(email)
    } else {
        Err(AppError::bad_input(
            field,
            format!("`{field}` is not a valid e-mail address"),
        ))
    }
}

/// Lower-cases and checks a domain name (a URL's scheme, `www.` and path are dropped).
pub fn normalize_domain(raw: &str, field: &str) -> AppResult<String> {
    check_chars(raw.trim(), field, false)?;
    let mut d = raw.trim().to_lowercase();
    for prefix in ["https://", "http://"] {
        if let Some(rest) = d.strip_prefix(prefix) {
            d = rest.to_owned();
        }
    }
    if let Some(rest) = d.strip_prefix("www.") {
        d = rest.to_owned();
    }
    let d = d.split('/').next().unwrap_or_default().to_owned();
    if valid_domain(&d) {
        Ok(d)
    } else {
        Err(AppError::bad_input(
            field,
            format!("`{field}` is not a valid domain"),
        ))
    }
}

fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Public mail providers: a lead's e-mail at one of these never matches an account.
pub const PUBLIC_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "msn.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "proton.me",
    "protonmail.com",
    "gmx.com",
    "gmx.de",
    "web.de",
    "mail.com",
    "yandex.com",
    "zoho.com",
    "fastmail.com",
    "hey.com",
    "qq.com",
    "163.com",
];

pub fn email_domain(email: &str) -> Option<&str> {
    let domain = email.rsplit_once('@')?.1;
    (!PUBLIC_MAIL_DOMAINS.contains(&domain)).then_some(domain)
}

/// Checks a non-empty, trimmed name.
pub fn required_text(raw: &str, field: &str) -> AppResult<String> {
    check_chars(raw, field, true)?;
    let t = raw.trim();
    if t.is_empty() {
        return Err(AppError::bad_input(
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    if t.chars().count() > 500 {
        return Err(AppError::bad_input(field, format!("`{field}` is too long")));
    }
    Ok(t.to_owned())
}

pub fn optional_text(raw: Option<String>, field: &str) -> AppResult<Option<String>> {
    raw.map(|s| required_text(&s, field)).transpose()
}

/// Digits after the decimal point of an ISO 4217 currency.
pub fn minor_units(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// Checks a currency code against the deployment's one currency.
pub fn check_currency(given: &str, deployment: &str) -> AppResult<String> {
    let code = given.trim().to_uppercase();
    if code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(AppError::bad_input(
            "currency",
            "`currency` must be an ISO 4217 code",
        ));
    }
    if code != deployment {
        return Err(AppError::bad_input(
            "currency",
            format!(
                "amounts in {code} are refused: this deployment counts in {deployment} and has no conversion"
            ),
        ));
    }
    Ok(code)
}

/// Decimal money → storage units, refusing negatives and more decimals than the currency has.
pub fn money_to_units(amount: Decimal, currency: &str, field: &str) -> AppResult<i64> {
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(AppError::bad_input(
            field,
            format!("`{field}` must not be negative"),
        ));
    }
    let minor = minor_units(currency);
    if amount.normalize().scale() > minor {
        return Err(AppError::bad_input(
            field,
            format!("`{field}` has more than {minor} decimals for {currency}"),
        ));
    }
    // Checked: a 28-digit amount overflows the multiplication itself.
    amount
        .checked_mul(Decimal::from(entity::money::UNITS_PER_WHOLE))
        .map(|units| units.trunc())
        .and_then(|units| units.to_string().parse::<i64>().ok())
        .ok_or_else(|| AppError::bad_input(field, format!("`{field}` is too large")))
}

/// The largest amount one record may hold, in whole currency units: a sum
/// over 100 million records of it stays within a signed 64-bit count of
/// storage units (9.22 × 10^18), which SQLite's `SUM` needs to be exact.
pub const MAX_MONEY: i64 = 9_000_000;

/// Checks an amount the metrics add up (an opportunity's amount, a
/// campaign's cost), in storage units: not negative, at most `MAX_MONEY`.
pub fn check_summed_amount(units: i64, field: &str) -> AppResult<()> {
    if units < 0 {
        return Err(AppError::bad_input(
            field,
            format!("`{field}` must not be negative"),
        ));
    }
    if units > MAX_MONEY * entity::money::UNITS_PER_WHOLE {
        return Err(AppError::bad_input(
            field,
            format!("`{field}` must be at most {MAX_MONEY}"),
        ));
    }
    Ok(())
}

/// Storage units → Decimal money with the currency's decimals.
pub fn units_to_money(units: i64, currency: &str) -> Decimal {
    let mut d = Decimal::new(units, entity::money::SCALE);
    d.rescale(minor_units(currency));
    d
}

/// A backfilled time must not be in the future (a minute of clock skew allowed).
pub fn not_future(at: DateTime<Utc>, field: &str) -> AppResult<DateTime<Utc>> {
    if at > Utc::now() + chrono::Duration::minutes(1) {
        return Err(AppError::bad_input(
            field,
            format!("`{field}` must not be in the future"),
        ));
    }
    Ok(at)
}

/// Now, truncated to microseconds (what both databases keep).
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_domains_are_normalized() {
        assert_eq!(
            normalize_email(" Ann@Acme.COM ", "email").unwrap(),
            "ann@acme.com"
        );
        assert!(normalize_email("nobody", "email").is_err());
        assert!(normalize_email("a@b", "email").is_err());
        assert_eq!(
            normalize_domain("https://www.Acme.com/about", "domain").unwrap(),
            "acme.com"
        );
        assert_eq!(email_domain("x@gmail.com"), None);
        assert_eq!(email_domain("x@acme.com"), Some("acme.com"));
    }

    #[test]
    fn money_is_exact_and_checked() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(
            money_to_units(d("1234.56"), "USD", "amount").unwrap(),
            12_345_600
        );
        assert!(money_to_units(d("1.234"), "USD", "amount").is_err());
        assert!(money_to_units(d("-1"), "USD", "amount").is_err());
        assert_eq!(units_to_money(12_345_600, "USD").to_string(), "1234.56");
        assert_eq!(units_to_money(10_000, "JPY").to_string(), "1");
    }
}

//! One error type for the whole API. Every error reaching a client carries a
//! stable `extensions.code`; internal errors are logged and masked.

use sea_orm::{DbErr, SqlErr};

/// The stable codes clients can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    Conflict,
    /// A rate limit's bucket is empty: HTTP 429 with `Retry-After`.
    RateLimited,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{message}")]
    BadInput {
        field: Option<String>,
        message: String,
    },
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    #[error("rate limit exceeded: retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            AppError::Forbidden(_) => ErrorCode::Forbidden,
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::BadInput { .. } => ErrorCode::BadUserInput,
            AppError::Conflict { .. } => ErrorCode::Conflict,
            AppError::RateLimited { .. } => ErrorCode::RateLimited,
            AppError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The input field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            AppError::BadInput { field, .. } | AppError::Conflict { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::BadInput {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        AppError::BadInput {
            field: None,
            message: message.into(),
        }
    }

    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        AppError::Conflict {
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        AppError::NotFound(what.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::Forbidden(message.into())
    }

    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        AppError::Internal(Box::new(err))
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(detail)) => {
                let field = unique_field(&detail);
                let message = match &field {
                    Some(f) => format!("a record with this {f} already exists"),
                    None => "a record with these values already exists".to_owned(),
                };
                AppError::Conflict { field, message }
            }
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                AppError::invalid("a referenced record does not exist")
            }
            _ => AppError::internal(err),
        }
    }
}

/// Names the column of a unique violation from the driver's message:
/// SQLite says `UNIQUE constraint failed: leads.email`, PostgreSQL names the
/// constraint, `leads_email_key` (or one of our `ux_…` indexes).
fn unique_field(detail: &str) -> Option<String> {
    if let Some(rest) = detail.split("failed: ").nth(1) {
        let first = rest.split(',').next()?.trim();
        let column = first.rsplit('.').next()?;
        return Some(to_camel(column));
    }
    let constraint = detail.split('"').nth(1)?;
    if constraint.starts_with("ux_external_ids") {
        return Some("externalId".to_owned());
    }
    let trimmed = constraint.strip_suffix("_key").unwrap_or(constraint);
    for table in [
        "teams_",
        "users_",
        "accounts_",
        "leads_",
        "campaigns_",
        "opportunities_",
    ] {
        if let Some(column) = trimmed.strip_prefix(table) {
            return Some(to_camel(column));
        }
    }
    None
}

fn to_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for ch in snake.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_field_of_unique_violations() {
        assert_eq!(
            unique_field("UNIQUE constraint failed: leads.email").as_deref(),
            Some("email")
        );
        assert_eq!(
            unique_field("duplicate key value violates unique constraint \"accounts_domain_key\"")
                .as_deref(),
            Some("domain")
        );
        assert_eq!(
            unique_field("UNIQUE constraint failed: external_ids.record_kind, external_ids.system")
                .as_deref(),
            Some("recordKind")
        );
    }
}

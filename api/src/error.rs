//! One error type for the whole API. Every error reaching a client carries a
//! stable `extensions.code`; internal errors are logged and masked.

use async_graphql::ErrorExtensions;
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

/// An error of the API, with its stable code.
///
/// It deliberately does not implement `Display` (nor `std::error::Error`):
/// async-graphql turns any displayable error into a GraphQL error without
/// extensions, so this type converts through its own `From` instead, which
/// attaches `extensions.code` (and `field`) right where the error becomes a
/// GraphQL error ([`ErrorExtensions`]), logs an internal error's cause and
/// masks it. Use [`AppError::message`] for text.
#[derive(Debug)]
pub enum AppError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    BadInput {
        field: Option<String>,
        message: String,
    },
    Conflict {
        field: Option<String>,
        message: String,
    },
    RateLimited {
        retry_after_secs: u64,
    },
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    /// What a client reads (an internal error's cause is never shown).
    pub fn message(&self) -> String {
        match self {
            AppError::Unauthenticated(m) | AppError::Forbidden(m) => m.clone(),
            AppError::NotFound(what) => format!("{what} not found"),
            AppError::BadInput { message, .. } | AppError::Conflict { message, .. } => {
                message.clone()
            }
            AppError::RateLimited { retry_after_secs } => {
                format!("rate limit exceeded: retry in {retry_after_secs} s")
            }
            AppError::Internal(_) => "internal error".to_owned(),
        }
    }

    /// The message with an internal error's cause, for logs.
    pub fn detail(&self) -> String {
        match self {
            AppError::Internal(cause) => format!("internal error: {cause}"),
            other => other.message(),
        }
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        if let AppError::Internal(cause) = self {
            tracing::error!(error = %cause, "internal error");
        }
        async_graphql::Error::new(self.message()).extend_with(|_, ext| {
            ext.set("code", self.code().as_str());
            if let Some(field) = self.field() {
                ext.set("field", field);
            }
            if let AppError::RateLimited { retry_after_secs } = self {
                ext.set("retryAfter", *retry_after_secs);
            }
        })
    }
}

/// An `AppError` as a standard error, for the CLI and tools (`?` into
/// `anyhow` or `Box<dyn Error>`): `AppResult::map_err(Failure)`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.detail())]
pub struct Failure(pub AppError);

impl From<AppError> for async_graphql::Error {
    fn from(e: AppError) -> Self {
        e.extend()
    }
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
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                let field = unique_field(&err).map(str::to_owned);
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

/// The database's own error under a SeaORM error, when there is one.
pub fn database_error(e: &DbErr) -> Option<&(dyn sea_orm::sqlx::error::DatabaseError + 'static)> {
    use sea_orm::RuntimeErr;
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(x))
        | DbErr::Query(RuntimeErr::SqlxError(x))
        | DbErr::Conn(RuntimeErr::SqlxError(x)) => x.as_database_error(),
        _ => None,
    }
}

/// The unique constraints, with the input field each guards: by name as
/// PostgreSQL reports it, and by the first column SQLite names instead.
const UNIQUE: [(&str, &str, &str); 9] = [
    ("teams_name_key", "teams.name", "name"),
    ("users_email_key", "users.email", "email"),
    ("leads_email_key", "leads.email", "email"),
    ("accounts_domain_key", "accounts.domain", "domain"),
    (
        "ux_external_ids_key",
        "external_ids.record_kind",
        "externalId",
    ),
    ("jobs_dedupe_key_key", "jobs.dedupe_key", "dedupeKey"),
    // One PENDING hand-off per record, one active SLA policy per route.
    ("ux_handoffs_pending_lead", "handoffs.lead_id", "leadId"),
    (
        "ux_handoffs_pending_opportunity",
        "handoffs.opportunity_id",
        "opportunityId",
    ),
    (
        "ux_sla_policies_route",
        "sla_policies.from_team_id",
        "toTeamId",
    ),
];

/// The input field of a unique violation, from the violated constraint.
fn unique_field(err: &DbErr) -> Option<&'static str> {
    let db = database_error(err)?;
    if let Some(name) = db.constraint() {
        return UNIQUE
            .iter()
            .find(|(constraint, _, _)| *constraint == name)
            .map(|(_, _, field)| *field);
    }
    // SQLite reports no constraint name, only `UNIQUE constraint failed:
    // table.column, …`: the first column identifies the constraint.
    let columns = db.message().split("failed: ").nth(1)?;
    let first = columns.split(',').next()?.trim();
    UNIQUE
        .iter()
        .find(|(_, column, _)| *column == first)
        .map(|(_, _, field)| *field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_attach_where_an_app_error_becomes_a_graphql_error() {
        let internal = async_graphql::Error::from(AppError::internal(std::io::Error::other(
            "connection reset by 10.0.0.7:5432",
        )));
        assert_eq!(internal.message, "internal error");
        let ext = serde_json::to_value(&internal.extensions).unwrap_or_default();
        assert_eq!(ext["code"], "INTERNAL");
        let bad = async_graphql::Error::from(AppError::bad_input("email", "`email` is required"));
        let ext = serde_json::to_value(&bad.extensions).unwrap_or_default();
        assert_eq!(bad.message, "`email` is required");
        assert_eq!(
            (ext["code"].as_str(), ext["field"].as_str()),
            (Some("BAD_USER_INPUT"), Some("email"))
        );
    }

    #[test]
    fn unique_constraints_are_listed_once_with_their_table() {
        for (i, (constraint, column, _)) in UNIQUE.iter().enumerate() {
            let table = column.split('.').next().unwrap_or_default();
            assert!(
                constraint.starts_with(table) || constraint.starts_with(&format!("ux_{table}")),
                "{constraint} is not on {table}"
            );
            assert!(UNIQUE[i + 1..].iter().all(|(c, _, _)| c != constraint));
        }
    }
}

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
const UNIQUE: [(&str, &str, &str); 6] = [
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

//! The error type returned by every store operation, and helpers that turn
//! database constraint failures into the variants callers can act on.

use std::sync::Arc;

use sqlx::error::ErrorKind;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A row with this name, key id or code already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The named row the operation refers to does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A value broke a schema rule, for example an unknown principal kind or role.
    #[error("invalid value: {0}")]
    Invalid(String),
    /// The database failed or rejected a query.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the embedded schema migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The group-commit batch holding this write failed, so the write was not stored.
    #[error("group commit failed: {0}")]
    BatchFailed(#[source] Arc<sqlx::Error>),
    /// The group-commit writer task has stopped, so no further hot-path writes can be made.
    #[error("the store's writer task has stopped")]
    WriterGone,
}

/// Returns the constraint kind behind a database error, if it is one.
pub(crate) fn constraint_kind(err: &sqlx::Error) -> Option<ErrorKind> {
    err.as_database_error().map(|db| db.kind())
}

/// Maps a CHECK constraint failure to `StoreError::Invalid` and leaves every
/// other error as a plain database error.
pub(crate) fn check_violation(err: sqlx::Error) -> StoreError {
    match constraint_kind(&err) {
        Some(ErrorKind::CheckViolation) => StoreError::Invalid(err.to_string()),
        _ => StoreError::Database(err),
    }
}

//! Enrollment codes: single-use, expiring codes (stored only as hashes) that
//! let a new agent register its first key.

use sqlx::error::ErrorKind;

use crate::error::{constraint_kind, StoreError};
use crate::store::Store;

impl Store {
    /// Stores the hash of a new enrollment code for `principal`.
    ///
    /// Fails with `NotFound(principal)` for an unknown principal and
    /// `AlreadyExists` if the same code hash is already stored.
    pub async fn create_enrollment(
        &self,
        code_hash: &str,
        principal: &str,
        created_by: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO enrollment_codes (code_hash, principal, created_by, created_at, \
             expires_at, used_at) VALUES ($1, $2, $3, $4, $5, NULL) \
             ON CONFLICT (code_hash) DO NOTHING",
        )
        .bind(code_hash)
        .bind(principal)
        .bind(created_by)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(|err| match constraint_kind(&err) {
            Some(ErrorKind::ForeignKeyViolation) => StoreError::NotFound(principal.to_owned()),
            _ => StoreError::Database(err),
        })?;
        // The error names the kind of row rather than the hash, so that code
        // hashes stay out of logs.
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists("enrollment code".to_owned()));
        }
        Ok(())
    }

    /// Atomically marks the code used and returns its principal, or `None`
    /// if the code is unknown, already used, or expired (`expires_at <= now`).
    ///
    /// A single conditional UPDATE does the check and the marking, so two
    /// concurrent redemptions cannot both succeed.
    pub async fn redeem_enrollment(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let principal = sqlx::query_scalar(
            "UPDATE enrollment_codes SET used_at = $2 \
             WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 \
             RETURNING principal",
        )
        .bind(code_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(principal)
    }
}

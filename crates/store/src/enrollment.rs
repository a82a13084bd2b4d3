//! Enrollment codes: single-use, expiring codes (stored only as hashes) that
//! let a new agent register its first key.

use sqlx::error::ErrorKind;

use crate::error::{constraint_kind, StoreError};
use crate::principals::{insert_key, NewKey};
use crate::store::Store;

/// What redeeming an enrollment code with a key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The key is registered for this principal and the code is spent.
    Joined(String),
    /// The code is unknown, already used or expired: nothing changed.
    InvalidCode,
    /// The key is already registered (to anyone): nothing changed, the code stays usable.
    KeyTaken,
}

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

    /// The principal an unused, unexpired code is for, without spending it.
    pub async fn enrollment_principal(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT principal FROM enrollment_codes \
             WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(code_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Spends the code and registers `key` for its principal in one transaction: either both
    /// happen or neither, so a key conflict never burns the code.
    pub async fn join_enrollment(
        &self,
        code_hash: &str,
        key: &NewKey,
        now: i64,
    ) -> Result<JoinOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let principal: Option<String> = sqlx::query_scalar(
            "UPDATE enrollment_codes SET used_at = $2 \
             WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 \
             RETURNING principal",
        )
        .bind(code_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(principal) = principal else {
            return Ok(JoinOutcome::InvalidCode);
        };
        sqlx::query("UPDATE principals SET updated_at = $2 WHERE name = $1")
            .bind(&principal)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        match insert_key(&mut tx, &principal, key, now).await {
            Ok(()) => {}
            // Dropping the transaction rolls the spent code back.
            Err(StoreError::AlreadyExists(_)) => return Ok(JoinOutcome::KeyTaken),
            Err(e) => return Err(e),
        }
        tx.commit().await?;
        Ok(JoinOutcome::Joined(principal))
    }
}

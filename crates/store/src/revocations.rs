//! The revocation feed: appending entries with the next sequence number, reading them after a
//! cursor, and disabling a principal's key.

use serde::Serialize;
use sqlx::Row;

use crate::error::StoreError;
use crate::store::Store;

/// One stored revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    /// Position in the feed.
    pub seq: i64,
    /// `jti`, `principal` or `key`.
    pub kind: String,
    /// What is revoked.
    pub value: String,
    /// Why, as given by whoever revoked it.
    pub reason: Option<String>,
    /// Who revoked it.
    pub revoked_by: String,
    /// When, unix seconds.
    pub revoked_at: i64,
}

impl Store {
    /// Appends a revocation and returns it with its sequence number.
    pub async fn add_revocation(
        &self,
        kind: &str,
        value: &str,
        reason: Option<&str>,
        revoked_by: &str,
        revoked_at: i64,
    ) -> Result<Revocation, StoreError> {
        // One statement takes the next number and inserts, so SQLite's write lock covers both;
        // on a database where two could still race, the loser hits the primary key and retries.
        // (`WHERE TRUE` lets SQLite's parser tell the upsert clause from a join constraint.)
        for _ in 0..5 {
            let seq: Option<i64> = sqlx::query_scalar(
                "INSERT INTO revocations (seq, kind, value, reason, revoked_by, revoked_at) \
                 SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4, $5 FROM revocations WHERE TRUE \
                 ON CONFLICT (seq) DO NOTHING RETURNING seq",
            )
            .bind(kind)
            .bind(value)
            .bind(reason)
            .bind(revoked_by)
            .bind(revoked_at)
            .fetch_optional(&self.pool)
            .await
            .map_err(crate::error::check_violation)?;
            if let Some(seq) = seq {
                return Ok(Revocation {
                    seq,
                    kind: kind.into(),
                    value: value.into(),
                    reason: reason.map(String::from),
                    revoked_by: revoked_by.into(),
                    revoked_at,
                });
            }
        }
        Err(StoreError::Invalid(
            "revocation sequence contention; retry".into(),
        ))
    }

    /// Revocations after `since`, in order, at most `limit`.
    pub async fn revocations_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<Revocation>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, value, reason, revoked_by, revoked_at FROM revocations \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Revocation {
                    seq: r.try_get("seq")?,
                    kind: r.try_get("kind")?,
                    value: r.try_get("value")?,
                    reason: r.try_get("reason")?,
                    revoked_by: r.try_get("revoked_by")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Disables a principal's key; returns the owning principal, or None if no such key.
    pub async fn disable_key(&self, kid: &str, now: i64) -> Result<Option<String>, StoreError> {
        let owner: Option<String> = sqlx::query_scalar(
            "UPDATE principal_keys SET disabled_at = COALESCE(disabled_at, $2) WHERE kid = $1 \
             RETURNING principal",
        )
        .bind(kid)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(owner)
    }
}

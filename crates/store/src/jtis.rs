//! Single-use identifiers: recording a jti so a replay is refused, and
//! purging the ones whose tokens have expired.

use sqlx::SqliteConnection;

use crate::error::StoreError;
use crate::store::Store;

impl Store {
    /// Records a single-use jti (namespaced by the caller).
    ///
    /// Returns `Ok(true)` if the jti was fresh and `Ok(false)` if it was seen
    /// before, which means a replay. The answer comes only after the record is
    /// durable, through the group-commit writer.
    pub async fn use_jti(&self, jti: &str, expires_at: i64) -> Result<bool, StoreError> {
        self.writer.use_jti(jti, expires_at).await
    }

    /// Deletes used jtis whose `expires_at` is at or before `now` and returns
    /// how many were deleted.
    pub async fn purge_expired_jtis(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM used_jtis WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Inserts a jti inside the writer's transaction; returns whether it was new.
pub(crate) async fn insert_jti(
    conn: &mut SqliteConnection,
    jti: &str,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO used_jtis (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

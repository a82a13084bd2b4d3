//! Single-use identifiers: recording a jti so a replay is refused, and
//! purging the ones whose tokens have expired.

use std::collections::HashSet;

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

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

    /// The position in `jtis` of the first one already used, if any (a read: nothing is spent).
    /// For refusing a replayed request before acting on who signed it; [`Store::use_jti`] and the
    /// issuance commit remain the authority on single use.
    pub async fn first_used_jti(&self, jtis: &[&str]) -> Result<Option<usize>, StoreError> {
        if jtis.is_empty() {
            return Ok(None);
        }
        let mut q = QueryBuilder::<Sqlite>::new("SELECT jti FROM used_jtis WHERE jti IN (");
        let mut sep = q.separated(", ");
        for j in jtis {
            sep.push_bind(*j);
        }
        q.push(")");
        let used: HashSet<String> = q
            .build_query_scalar::<String>()
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .collect();
        Ok(jtis.iter().position(|j| used.contains(*j)))
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

/// Inserts jtis in one statement inside the writer's transaction; returns those that were new
/// (a jti already stored, or repeated in `jtis`, is inserted once).
pub(crate) async fn insert_jtis(
    conn: &mut SqliteConnection,
    jtis: &[(&str, i64)],
) -> Result<HashSet<String>, sqlx::Error> {
    if jtis.is_empty() {
        return Ok(HashSet::new());
    }
    let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO used_jtis (jti, expires_at) ");
    q.push_values(jtis, |mut b, (jti, exp)| {
        b.push_bind(*jti).push_bind(*exp);
    });
    q.push(" ON CONFLICT (jti) DO NOTHING RETURNING jti");
    q.build_query_scalar::<String>()
        .fetch_all(conn)
        .await
        .map(|v| v.into_iter().collect())
}

//! Upstreams added at run time (`mandate upstream add`): name, configuration (JSON, secrets only
//! as references), and who added it when.

use sqlx::Row;

use crate::error::StoreError;
use crate::store::Store;

/// One stored upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpstream {
    /// Its name.
    pub name: String,
    /// Its configuration, as JSON.
    pub config: String,
    /// When it was added, unix seconds.
    pub created_at: i64,
    /// Who added it.
    pub created_by: String,
}

impl Store {
    /// Adds an upstream; `AlreadyExists(name)` when the name is taken.
    pub async fn add_upstream(&self, u: &StoredUpstream) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO upstreams (name, config, created_at, created_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(&u.name)
        .bind(&u.config)
        .bind(u.created_at)
        .bind(&u.created_by)
        .execute(&self.pool)
        .await
        .map_err(|e| match crate::error::constraint_kind(&e) {
            Some(sqlx::error::ErrorKind::UniqueViolation) => {
                StoreError::AlreadyExists(u.name.clone())
            }
            _ => StoreError::Database(e),
        })?;
        Ok(())
    }

    /// Removes an upstream; false when there was none by that name.
    pub async fn remove_upstream(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM upstreams WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every stored upstream, by name.
    pub async fn upstreams(&self) -> Result<Vec<StoredUpstream>, StoreError> {
        let rows =
            sqlx::query("SELECT name, config, created_at, created_by FROM upstreams ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredUpstream {
                name: r.get("name"),
                config: r.get("config"),
                created_at: r.get("created_at"),
                created_by: r.get("created_by"),
            })
            .collect())
    }
}

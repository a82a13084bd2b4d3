//! The authority's own signing keys: adding, retiring (kept for verification
//! until `retire_until`), and removing them.

use serde::Serialize;
use sqlx::Row;

use crate::error::StoreError;
use crate::store::Store;

/// One of the authority's signing keys, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuerKey {
    /// Unique key id.
    pub kid: String,
    /// The public key, encoded by the caller.
    pub public_key: String,
    /// When the key was created, unix seconds.
    pub created_at: i64,
    /// When the key stopped signing, if it has.
    pub retired_at: Option<i64>,
    /// Until when a retired key must still be published for verification.
    pub retire_until: Option<i64>,
}

impl Store {
    /// Lists every issuer key, oldest first.
    pub async fn issuer_keys(&self) -> Result<Vec<IssuerKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, public_key, created_at, retired_at, retire_until FROM issuer_keys \
             ORDER BY created_at, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        let keys = rows
            .iter()
            .map(|row| {
                Ok(IssuerKey {
                    kid: row.try_get("kid")?,
                    public_key: row.try_get("public_key")?,
                    created_at: row.try_get("created_at")?,
                    retired_at: row.try_get("retired_at")?,
                    retire_until: row.try_get("retire_until")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(keys)
    }

    /// Stores a new issuer key; `AlreadyExists(kid)` if the kid is taken.
    pub async fn add_issuer_key(&self, k: &IssuerKey) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO issuer_keys (kid, public_key, created_at, retired_at, retire_until) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kid) DO NOTHING",
        )
        .bind(&k.kid)
        .bind(&k.public_key)
        .bind(k.created_at)
        .bind(k.retired_at)
        .bind(k.retire_until)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists(k.kid.clone()));
        }
        Ok(())
    }

    /// Marks an issuer key retired; `NotFound(kid)` if there is no such key.
    pub async fn retire_issuer_key(
        &self,
        kid: &str,
        retired_at: i64,
        retire_until: i64,
    ) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE issuer_keys SET retired_at = $2, retire_until = $3 WHERE kid = $1")
                .bind(kid)
                .bind(retired_at)
                .bind(retire_until)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(kid.to_owned()));
        }
        Ok(())
    }

    /// Deletes an issuer key; `NotFound(kid)` if there is no such key.
    pub async fn remove_issuer_key(&self, kid: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM issuer_keys WHERE kid = $1")
            .bind(kid)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(kid.to_owned()));
        }
        Ok(())
    }
}

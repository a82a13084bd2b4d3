//! Principals (users and agents), their ceilings, and their public keys.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::error::{check_violation, StoreError};
use crate::store::Store;

/// A principal to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPrincipal {
    /// Unique name such as `user:alice` or `agent:planner`.
    pub name: String,
    /// `user` or `agent`.
    pub kind: String,
    /// `admin`, `approver`, or none.
    pub role: Option<String>,
    /// Whether the principal may receive bearer (unbound) mandates.
    pub allow_bearer: bool,
    /// Space-separated scopes the principal may never exceed.
    pub ceiling_scopes: String,
    /// Space-separated audiences the principal may never exceed.
    pub ceiling_audiences: String,
    /// Longest lifetime of any mandate held by the principal, in seconds.
    pub max_ttl_secs: i64,
    /// Deepest delegation chain the principal may take part in.
    pub max_depth: i64,
    /// A first public key, stored in the same transaction, if any.
    pub key: Option<NewKey>,
    /// Creation time, unix seconds.
    pub now: i64,
}

/// A public key to attach to a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Unique key id.
    pub kid: String,
    /// Base64url of the raw 32-byte Ed25519 public key.
    pub public_key: String,
}

/// A stored principal with all of its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Unique name such as `user:alice` or `agent:planner`.
    pub name: String,
    /// `user` or `agent`.
    pub kind: String,
    /// `admin`, `approver`, or none.
    pub role: Option<String>,
    /// Whether the principal is currently disabled.
    pub disabled: bool,
    /// Whether the principal may receive bearer (unbound) mandates.
    pub allow_bearer: bool,
    /// Space-separated scope ceiling.
    pub ceiling_scopes: String,
    /// Space-separated audience ceiling.
    pub ceiling_audiences: String,
    /// Longest mandate lifetime, in seconds.
    pub max_ttl_secs: i64,
    /// Deepest delegation chain.
    pub max_depth: i64,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Last change time, unix seconds.
    pub updated_at: i64,
    /// Every key, disabled ones included, oldest first.
    pub keys: Vec<PrincipalKey>,
}

/// A stored public key of a principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrincipalKey {
    /// Unique key id.
    pub kid: String,
    /// Base64url of the raw 32-byte Ed25519 public key.
    pub public_key: String,
    /// When the key was added, unix seconds.
    pub created_at: i64,
    /// When the key was disabled, if it has been.
    pub disabled_at: Option<i64>,
}

impl Store {
    /// Creates a principal and, if given, its first key in one transaction.
    ///
    /// Fails with `AlreadyExists(name)` for a taken name, `AlreadyExists(kid)`
    /// for a taken key id, and `Invalid` for an unknown kind or role.
    pub async fn create_principal(&self, p: &NewPrincipal) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO principals (name, kind, role, disabled, allow_bearer, ceiling_scopes, \
             ceiling_audiences, max_ttl_secs, max_depth, created_at, updated_at) \
             VALUES ($1, $2, $3, FALSE, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&p.name)
        .bind(&p.kind)
        .bind(&p.role)
        .bind(p.allow_bearer)
        .bind(&p.ceiling_scopes)
        .bind(&p.ceiling_audiences)
        .bind(p.max_ttl_secs)
        .bind(p.max_depth)
        .bind(p.now)
        .execute(&mut *tx)
        .await
        .map_err(check_violation)?;
        // Returning early drops the transaction, which rolls it back.
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists(p.name.clone()));
        }
        if let Some(key) = &p.key {
            insert_key(&mut tx, &p.name, key, p.now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Looks up a principal by name, with all of its keys.
    pub async fn principal(&self, name: &str) -> Result<Option<Principal>, StoreError> {
        // One read transaction gives the principal and its keys from the same snapshot.
        let mut tx = self.pool.begin().await?;
        let found = load_principal(&mut tx, name).await?;
        tx.commit().await?;
        Ok(found)
    }

    /// Looks up the principal owning key `kid`, whether or not that key is
    /// disabled; callers check the key's `disabled_at` themselves.
    pub async fn principal_by_kid(&self, kid: &str) -> Result<Option<Principal>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let owner: Option<String> =
            sqlx::query_scalar("SELECT principal FROM principal_keys WHERE kid = $1")
                .bind(kid)
                .fetch_optional(&mut *tx)
                .await?;
        let found = match owner {
            Some(name) => load_principal(&mut tx, &name).await?,
            None => None,
        };
        tx.commit().await?;
        Ok(found)
    }

    /// Lists principals ordered by name, optionally only those of one kind.
    pub async fn list_principals(&self, kind: Option<&str>) -> Result<Vec<Principal>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (rows, key_rows) = match kind {
            Some(kind) => (
                sqlx::query("SELECT * FROM principals WHERE kind = $1 ORDER BY name")
                    .bind(kind)
                    .fetch_all(&mut *tx)
                    .await?,
                sqlx::query(
                    "SELECT k.principal, k.kid, k.public_key, k.created_at, k.disabled_at \
                     FROM principal_keys k JOIN principals p ON p.name = k.principal \
                     WHERE p.kind = $1 ORDER BY k.created_at, k.kid",
                )
                .bind(kind)
                .fetch_all(&mut *tx)
                .await?,
            ),
            None => (
                sqlx::query("SELECT * FROM principals ORDER BY name")
                    .fetch_all(&mut *tx)
                    .await?,
                sqlx::query(
                    "SELECT principal, kid, public_key, created_at, disabled_at \
                     FROM principal_keys ORDER BY created_at, kid",
                )
                .fetch_all(&mut *tx)
                .await?,
            ),
        };
        tx.commit().await?;

        let mut keys: HashMap<String, Vec<PrincipalKey>> = HashMap::new();
        for row in &key_rows {
            let owner: String = row.try_get("principal")?;
            keys.entry(owner).or_default().push(key_from_row(row)?);
        }
        let mut principals = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut p = principal_from_row(row)?;
            p.keys = keys.remove(&p.name).unwrap_or_default();
            principals.push(p);
        }
        Ok(principals)
    }

    /// Disables or re-enables a principal; returns false if there is no such principal.
    pub async fn set_disabled(
        &self,
        name: &str,
        disabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE principals SET disabled = $2, updated_at = $3 WHERE name = $1")
                .bind(name)
                .bind(disabled)
                .bind(now)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Adds a key to an existing principal and bumps its `updated_at`.
    ///
    /// Fails with `NotFound(principal)` for an unknown principal and
    /// `AlreadyExists(kid)` for a taken key id.
    pub async fn add_key(&self, principal: &str, key: &NewKey, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE principals SET updated_at = $2 WHERE name = $1")
            .bind(principal)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(principal.to_owned()));
        }
        insert_key(&mut tx, principal, key, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Inserts a key for an existing principal; `AlreadyExists(kid)` if taken.
pub(crate) async fn insert_key(
    conn: &mut SqliteConnection,
    principal: &str,
    key: &NewKey,
    now: i64,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "INSERT INTO principal_keys (kid, principal, public_key, created_at, disabled_at) \
         VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (kid) DO NOTHING",
    )
    .bind(&key.kid)
    .bind(principal)
    .bind(&key.public_key)
    .bind(now)
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::AlreadyExists(key.kid.clone()));
    }
    Ok(())
}

/// Loads one principal and its keys over an open connection.
async fn load_principal(
    conn: &mut SqliteConnection,
    name: &str,
) -> Result<Option<Principal>, StoreError> {
    let Some(row) = sqlx::query("SELECT * FROM principals WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let mut principal = principal_from_row(&row)?;
    let key_rows = sqlx::query(
        "SELECT kid, public_key, created_at, disabled_at FROM principal_keys \
         WHERE principal = $1 ORDER BY created_at, kid",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    principal.keys = key_rows
        .iter()
        .map(key_from_row)
        .collect::<Result<_, _>>()?;
    Ok(Some(principal))
}

/// Reads a `principals` row; the keys are filled in by the caller.
fn principal_from_row(row: &SqliteRow) -> Result<Principal, sqlx::Error> {
    Ok(Principal {
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        role: row.try_get("role")?,
        disabled: row.try_get("disabled")?,
        allow_bearer: row.try_get("allow_bearer")?,
        ceiling_scopes: row.try_get("ceiling_scopes")?,
        ceiling_audiences: row.try_get("ceiling_audiences")?,
        max_ttl_secs: row.try_get("max_ttl_secs")?,
        max_depth: row.try_get("max_depth")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        keys: Vec::new(),
    })
}

/// Reads a `principal_keys` row.
fn key_from_row(row: &SqliteRow) -> Result<PrincipalKey, sqlx::Error> {
    Ok(PrincipalKey {
        kid: row.try_get("kid")?,
        public_key: row.try_get("public_key")?,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

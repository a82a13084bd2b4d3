//! Issued mandates: the record of every token the authority has issued,
//! written through the group-commit writer and read back by jti.

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::error::StoreError;
use crate::store::Store;

/// One issued mandate, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MandateRecord {
    /// The mandate's unique token id.
    pub jti: String,
    /// The jti of the mandate this one was delegated from, if any.
    pub parent_jti: Option<String>,
    /// The principal on whose behalf the mandate acts.
    pub subject: String,
    /// The principal that granted this mandate.
    pub delegator: String,
    /// The principal allowed to present the mandate.
    pub holder: String,
    /// Space-separated audiences.
    pub audiences: String,
    /// Space-separated scopes.
    pub scopes: String,
    /// Delegation depth, zero for a mandate granted directly by the subject.
    pub depth: i64,
    /// The grant type that produced the mandate.
    pub grant_type: String,
    /// Free-text reason given by the requester, if any.
    pub reason: Option<String>,
    /// Issue time, unix seconds.
    pub issued_at: i64,
    /// Expiry time, unix seconds.
    pub expires_at: i64,
    /// The issuer key that signed the mandate.
    pub kid: String,
}

impl Store {
    /// Records an issued mandate; `AlreadyExists(jti)` if the jti is taken.
    ///
    /// Returns only after the record is durable, through the group-commit writer.
    pub async fn record_mandate(&self, m: &MandateRecord) -> Result<(), StoreError> {
        self.writer.record_mandate(m).await
    }

    /// The latest expiry of any mandate signed by issuer key `kid` (None if it signed none):
    /// how long a retired key must stay in the JWKS.
    pub async fn last_expiry_for_kid(&self, kid: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(expires_at) FROM mandates WHERE kid = $1")
            .bind(kid)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    /// Looks up a mandate by jti.
    pub async fn mandate(&self, jti: &str) -> Result<Option<MandateRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT jti, parent_jti, subject, delegator, holder, audiences, scopes, depth, \
             grant_type, reason, issued_at, expires_at, kid FROM mandates WHERE jti = $1",
        )
        .bind(jti)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(mandate_from_row).transpose()?)
    }
}

/// Inserts a mandate inside the writer's transaction; returns whether it was
/// new. A taken jti is reported rather than raised so that it does not abort
/// the other writes in the batch.
pub(crate) async fn insert_mandate(
    conn: &mut SqliteConnection,
    m: &MandateRecord,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO mandates (jti, parent_jti, subject, delegator, holder, audiences, scopes, \
         depth, grant_type, reason, issued_at, expires_at, kid) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(&m.jti)
    .bind(&m.parent_jti)
    .bind(&m.subject)
    .bind(&m.delegator)
    .bind(&m.holder)
    .bind(&m.audiences)
    .bind(&m.scopes)
    .bind(m.depth)
    .bind(&m.grant_type)
    .bind(&m.reason)
    .bind(m.issued_at)
    .bind(m.expires_at)
    .bind(&m.kid)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Reads a `mandates` row selected with the column list used above.
fn mandate_from_row(row: &SqliteRow) -> Result<MandateRecord, sqlx::Error> {
    Ok(MandateRecord {
        jti: row.try_get("jti")?,
        parent_jti: row.try_get("parent_jti")?,
        subject: row.try_get("subject")?,
        delegator: row.try_get("delegator")?,
        holder: row.try_get("holder")?,
        audiences: row.try_get("audiences")?,
        scopes: row.try_get("scopes")?,
        depth: row.try_get("depth")?,
        grant_type: row.try_get("grant_type")?,
        reason: row.try_get("reason")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        kid: row.try_get("kid")?,
    })
}

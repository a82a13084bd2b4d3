//! Issued mandates: the record of every token the authority has issued,
//! written through the group-commit writer and read back by jti.

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use std::collections::HashSet;

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::error::StoreError;
use crate::store::Store;
use crate::writer::IssueOutcome;

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
    /// The principal the mandate's `may_act` names (who may pull an exchange of it), if any.
    pub may_act: Option<String>,
    /// Who named `may_act`: the caller of the request that issued the mandate.
    pub may_act_by: Option<String>,
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

    /// Spends single-use `jtis` and records the mandate they authorised, atomically and durably
    /// (one group commit): if any jti was used before, nothing is recorded and the index of the
    /// first replayed one is returned; every jti in the call is spent either way.
    pub async fn issue(
        &self,
        jtis: Vec<(String, i64)>,
        m: MandateRecord,
    ) -> Result<IssueOutcome, StoreError> {
        self.writer.issue(jtis, m, None).await
    }

    /// [`Store::issue`], appending the issuance's audit event in the same commit: the event is
    /// stored exactly when the mandate is.
    pub async fn issue_audited(
        &self,
        jtis: Vec<(String, i64)>,
        m: MandateRecord,
        event: crate::AuditRecord,
    ) -> Result<IssueOutcome, StoreError> {
        self.writer.issue(jtis, m, Some(event)).await
    }

    /// Looks up a mandate by jti.
    pub async fn mandate(&self, jti: &str) -> Result<Option<MandateRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT jti, parent_jti, subject, delegator, holder, audiences, scopes, depth, \
             grant_type, reason, issued_at, expires_at, kid, may_act, may_act_by FROM mandates \
             WHERE jti = $1",
        )
        .bind(jti)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(mandate_from_row).transpose()?)
    }
}

/// Inserts mandates in one statement inside the writer's transaction; returns the `jti`s that
/// were new (a `jti` already stored, or repeated in `ms`, is inserted once).
pub(crate) async fn insert_mandates(
    conn: &mut SqliteConnection,
    ms: &[&MandateRecord],
) -> Result<HashSet<String>, sqlx::Error> {
    if ms.is_empty() {
        return Ok(HashSet::new());
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO mandates (jti, parent_jti, subject, delegator, holder, audiences, scopes, \
         depth, grant_type, reason, issued_at, expires_at, kid, may_act, may_act_by) ",
    );
    q.push_values(ms, |mut b, m| {
        b.push_bind(&m.jti)
            .push_bind(&m.parent_jti)
            .push_bind(&m.subject)
            .push_bind(&m.delegator)
            .push_bind(&m.holder)
            .push_bind(&m.audiences)
            .push_bind(&m.scopes)
            .push_bind(m.depth)
            .push_bind(&m.grant_type)
            .push_bind(&m.reason)
            .push_bind(m.issued_at)
            .push_bind(m.expires_at)
            .push_bind(&m.kid)
            .push_bind(&m.may_act)
            .push_bind(&m.may_act_by);
    });
    q.push(" ON CONFLICT (jti) DO NOTHING RETURNING jti");
    q.build_query_scalar::<String>()
        .fetch_all(conn)
        .await
        .map(|v| v.into_iter().collect())
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
        may_act: row.try_get("may_act")?,
        may_act_by: row.try_get("may_act_by")?,
    })
}

//! Approval requests and their votes. The rules (who may vote, what a vote does) are the core's;
//! this module stores what was decided, with conditional updates so that two racing votes or two
//! racing releases cannot both take effect.

use sqlx::Row;

use crate::error::StoreError;
use crate::store::Store;

/// One stored approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApproval {
    /// `apr_...`.
    pub id: String,
    /// The binding key.
    pub binding: String,
    /// `pending`, `approved`, `denied`, `expired` or `cancelled`.
    pub state: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// The caller whose call is held.
    pub requested_by: String,
    /// The chain, a JSON array of principal names.
    pub chain: String,
    /// The upstream.
    pub upstream: String,
    /// The tool.
    pub tool: String,
    /// Hex SHA-256 of the RFC 8785 arguments.
    pub arguments_sha256: String,
    /// The policy version that asked.
    pub policy_version: String,
    /// The decision that asked.
    pub decision_id: String,
    /// Who may vote, a JSON array.
    pub approvers: String,
    /// Distinct approvals needed.
    pub quorum: i64,
    /// The policy's reason.
    pub reason: Option<String>,
    /// The recorded (redacted) action, JSON.
    pub call: String,
    /// When it left `pending`.
    pub resolved_at: Option<i64>,
    /// Who ended it (the denier, the last approver), when someone did.
    pub resolved_by: Option<String>,
    /// The denier's reason.
    pub resolution: Option<String>,
    /// When the one call it approved went through.
    pub released_at: Option<i64>,
    /// The mandate (`jti`) that call was made with.
    pub released_jti: Option<String>,
    /// The gateway that asserted `requested_by` and `chain` (a gateway run apart from the
    /// authority); `None` when the authority verified them itself.
    pub asserted_by: Option<String>,
    /// Its votes, in order.
    pub votes: Vec<StoredVote>,
}

/// One vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVote {
    /// Who voted.
    pub voter: String,
    /// Approve (true) or deny.
    pub approve: bool,
    /// Why, as they said.
    pub reason: Option<String>,
    /// Unix seconds.
    pub at: i64,
}

/// A state change a vote makes, if any.
#[derive(Debug, Clone)]
pub struct Resolution<'a> {
    /// The new state.
    pub state: &'a str,
    /// Who made it.
    pub by: &'a str,
    /// Why (a denial's reason).
    pub reason: Option<&'a str>,
}

const COLUMNS: &str = "id, binding, state, created_at, expires_at, requested_by, chain, upstream, \
     tool, arguments_sha256, policy_version, decision_id, approvers, quorum, reason, call, \
     resolved_at, resolved_by, resolution, released_at, released_jti, asserted_by";

fn row_to(r: &sqlx::sqlite::SqliteRow) -> Result<StoredApproval, sqlx::Error> {
    Ok(StoredApproval {
        id: r.try_get("id")?,
        binding: r.try_get("binding")?,
        state: r.try_get("state")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        requested_by: r.try_get("requested_by")?,
        chain: r.try_get("chain")?,
        upstream: r.try_get("upstream")?,
        tool: r.try_get("tool")?,
        arguments_sha256: r.try_get("arguments_sha256")?,
        policy_version: r.try_get("policy_version")?,
        decision_id: r.try_get("decision_id")?,
        approvers: r.try_get("approvers")?,
        quorum: r.try_get("quorum")?,
        reason: r.try_get("reason")?,
        call: r.try_get("call")?,
        resolved_at: r.try_get("resolved_at")?,
        resolved_by: r.try_get("resolved_by")?,
        resolution: r.try_get("resolution")?,
        released_at: r.try_get("released_at")?,
        released_jti: r.try_get("released_jti")?,
        asserted_by: r.try_get("asserted_by")?,
        votes: Vec::new(),
    })
}

impl Store {
    /// Stores a new request (its votes are not stored here).
    pub async fn insert_approval(&self, a: &StoredApproval) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO approvals ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
        ))
        .bind(&a.id)
        .bind(&a.binding)
        .bind(&a.state)
        .bind(a.created_at)
        .bind(a.expires_at)
        .bind(&a.requested_by)
        .bind(&a.chain)
        .bind(&a.upstream)
        .bind(&a.tool)
        .bind(&a.arguments_sha256)
        .bind(&a.policy_version)
        .bind(&a.decision_id)
        .bind(&a.approvers)
        .bind(a.quorum)
        .bind(&a.reason)
        .bind(&a.call)
        .bind(a.resolved_at)
        .bind(&a.resolved_by)
        .bind(&a.resolution)
        .bind(a.released_at)
        .bind(&a.released_jti)
        .bind(&a.asserted_by)
        .execute(&self.pool)
        .await
        .map_err(crate::error::check_violation)?;
        Ok(())
    }

    /// One request with its votes.
    pub async fn approval(&self, id: &str) -> Result<Option<StoredApproval>, StoreError> {
        let Some(r) = sqlx::query(&format!("SELECT {COLUMNS} FROM approvals WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut a = row_to(&r)?;
        a.votes = self.votes(id).await?;
        Ok(Some(a))
    }

    async fn votes(&self, id: &str) -> Result<Vec<StoredVote>, StoreError> {
        let rows = sqlx::query(
            "SELECT voter, approve, reason, at FROM approval_votes WHERE approval_id = $1 \
             ORDER BY at, voter",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredVote {
                    voter: r.try_get("voter")?,
                    approve: r.try_get::<i64, _>("approve")? == 1,
                    reason: r.try_get("reason")?,
                    at: r.try_get("at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The newest request with this binding that has not released its call, if any (pending,
    /// approved, denied, or expired: the caller decides what each means).
    pub async fn latest_approval_for(
        &self,
        binding: &str,
    ) -> Result<Option<StoredApproval>, StoreError> {
        let Some(r) = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE binding = $1 AND released_at IS NULL \
             ORDER BY created_at DESC, rowid DESC LIMIT 1"
        ))
        .bind(binding)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let mut a = row_to(&r)?;
        a.votes = self.votes(&a.id).await?;
        Ok(Some(a))
    }

    /// Requests, newest first: those in `state` (all when `None`), at most `limit`, and with
    /// `before` only those older than that request (the next page of a list).
    pub async fn approvals(
        &self,
        state: Option<&str>,
        limit: i64,
        before: Option<&str>,
    ) -> Result<Vec<StoredApproval>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE ($1 IS NULL OR state = $1) \
             AND ($3 IS NULL OR (created_at, rowid) < \
                 (SELECT created_at, rowid FROM approvals WHERE id = $3)) \
             ORDER BY created_at DESC, rowid DESC LIMIT $2"
        ))
        .bind(state)
        .bind(limit)
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut a = row_to(r)?;
            a.votes = self.votes(&a.id).await?;
            out.push(a);
        }
        Ok(out)
    }

    /// Records a vote on a pending request and, when it decides the request, its new state, in
    /// one transaction. `Ok(false)` when the request was no longer pending or this voter had
    /// voted already: nothing was stored.
    pub async fn vote_approval(
        &self,
        id: &str,
        vote: &StoredVote,
        resolution: Option<Resolution<'_>>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO approval_votes (approval_id, voter, approve, reason, at) \
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS \
             (SELECT 1 FROM approvals WHERE id = $1 AND state = 'pending') \
             ON CONFLICT (approval_id, voter) DO NOTHING",
        )
        .bind(id)
        .bind(&vote.voter)
        .bind(i64::from(vote.approve))
        .bind(&vote.reason)
        .bind(vote.at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(r) = resolution {
            let done = sqlx::query(
                "UPDATE approvals SET state = $2, resolved_at = $3, resolved_by = $4, \
                 resolution = $5 WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(r.state)
            .bind(vote.at)
            .bind(r.by)
            .bind(r.reason)
            .execute(&mut *tx)
            .await
            .map_err(crate::error::check_violation)?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Spends an approved request for the one call it approved: true exactly once, only while
    /// it is approved and unexpired, and only where it was asked (`asserted_by`: the gateway run
    /// apart that asserted it, `None` for what the authority verified).
    pub async fn release_approval(
        &self,
        id: &str,
        jti: &str,
        now: i64,
        asserted_by: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE approvals SET released_at = $2, released_jti = $3 \
             WHERE id = $1 AND state = 'approved' AND released_at IS NULL AND expires_at > $2 \
             AND asserted_by IS $4",
        )
        .bind(id)
        .bind(now)
        .bind(jti)
        .bind(asserted_by)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many unexpired pending requests `who` has open that `asserted_by` asserted (`None`:
    /// that the authority verified): a gateway's word counts only against what it asserted.
    pub async fn open_approvals_by(
        &self,
        who: &str,
        asserted_by: Option<&str>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM approvals WHERE requested_by = $1 AND state = 'pending' \
             AND expires_at > $2 AND asserted_by IS $3",
        )
        .bind(who)
        .bind(now)
        .bind(asserted_by)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// How many unexpired pending requests gateway `asserted_by` has open, for every caller.
    pub async fn open_approvals_asserted_by(
        &self,
        asserted_by: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM approvals WHERE asserted_by = $1 AND state = 'pending' \
             AND expires_at > $2",
        )
        .bind(asserted_by)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Pending requests whose expiry has passed by `now` (at most `limit`), to be expired.
    pub async fn overdue_approvals(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<StoredApproval>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE state = 'pending' AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| row_to(r).map_err(StoreError::from))
            .collect()
    }

    /// Marks a pending request cancelled by `by` (with `reason`); false when it was no longer
    /// pending.
    pub async fn cancel_approval(
        &self,
        id: &str,
        by: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE approvals SET state = 'cancelled', resolved_at = $2, resolved_by = $3, \
             resolution = $4 WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(now)
        .bind(by)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a pending request expired; false when it was no longer pending.
    pub async fn expire_approval(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE approvals SET state = 'expired', resolved_at = $2 \
             WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, binding: &str, at: i64) -> StoredApproval {
        StoredApproval {
            id: id.into(),
            binding: binding.into(),
            state: "pending".into(),
            created_at: at,
            expires_at: at + 100,
            requested_by: "agent:coder".into(),
            chain: r#"["user:alice","agent:coder"]"#.into(),
            upstream: "files".into(),
            tool: "write_file".into(),
            arguments_sha256: "00".repeat(32),
            policy_version: "v1".into(),
            decision_id: "d1".into(),
            approvers: r#"["role:approver"]"#.into(),
            quorum: 2,
            reason: Some("destructive".into()),
            call: "{}".into(),
            resolved_at: None,
            resolved_by: None,
            resolution: None,
            released_at: None,
            released_jti: None,
            asserted_by: None,
            votes: vec![],
        }
    }

    fn vote(voter: &str, approve: bool, at: i64) -> StoredVote {
        StoredVote {
            voter: voter.into(),
            approve,
            reason: None,
            at,
        }
    }

    #[tokio::test]
    async fn a_voter_counts_once_and_a_decided_request_takes_no_more_votes() {
        let s = Store::open_sqlite_memory().await.unwrap();
        s.insert_approval(&request("apr_a", "b1", 10))
            .await
            .unwrap();
        assert!(s
            .vote_approval("apr_a", &vote("user:bob", true, 11), None)
            .await
            .unwrap());
        assert!(!s
            .vote_approval("apr_a", &vote("user:bob", true, 12), None)
            .await
            .unwrap());
        let approved = Resolution {
            state: "approved",
            by: "user:carol",
            reason: None,
        };
        assert!(s
            .vote_approval("apr_a", &vote("user:carol", true, 13), Some(approved))
            .await
            .unwrap());
        assert!(!s
            .vote_approval("apr_a", &vote("user:dave", false, 14), None)
            .await
            .unwrap());
        let a = s.approval("apr_a").await.unwrap().unwrap();
        assert_eq!(a.state, "approved");
        assert_eq!(a.votes.len(), 2);
        assert_eq!(a.resolved_by.as_deref(), Some("user:carol"));
    }

    #[tokio::test]
    async fn an_approved_request_releases_exactly_one_call_before_it_expires() {
        let s = Store::open_sqlite_memory().await.unwrap();
        s.insert_approval(&request("apr_a", "b1", 10))
            .await
            .unwrap();
        assert!(
            !s.release_approval("apr_a", "j1", 20, None).await.unwrap(),
            "pending releases nothing"
        );
        let approved = Resolution {
            state: "approved",
            by: "user:bob",
            reason: None,
        };
        s.vote_approval("apr_a", &vote("user:bob", true, 11), Some(approved))
            .await
            .unwrap();
        assert!(
            !s.release_approval("apr_a", "j1", 110, None).await.unwrap(),
            "expired"
        );
        assert!(s.release_approval("apr_a", "j1", 20, None).await.unwrap());
        assert!(
            !s.release_approval("apr_a", "j2", 21, None).await.unwrap(),
            "only once"
        );
        assert!(
            s.latest_approval_for("b1").await.unwrap().is_none(),
            "released is not open"
        );
    }

    #[tokio::test]
    async fn overdue_requests_expire_once() {
        let s = Store::open_sqlite_memory().await.unwrap();
        s.insert_approval(&request("apr_a", "b1", 10))
            .await
            .unwrap();
        s.insert_approval(&request("apr_b", "b2", 50))
            .await
            .unwrap();
        let due = s.overdue_approvals(120, 10).await.unwrap();
        assert_eq!(
            due.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["apr_a"]
        );
        assert!(s.expire_approval("apr_a", 120).await.unwrap());
        assert!(!s.expire_approval("apr_a", 121).await.unwrap());
        assert_eq!(
            s.approvals(Some("pending"), 10, None).await.unwrap().len(),
            1
        );
        // A page after apr_b (newest) holds apr_a; after apr_a, nothing.
        let all = s.approvals(None, 10, None).await.unwrap();
        assert_eq!(
            all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["apr_b", "apr_a"]
        );
        let next = s.approvals(None, 10, Some("apr_b")).await.unwrap();
        assert_eq!(
            next.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["apr_a"]
        );
        assert!(s
            .approvals(None, 10, Some("apr_a"))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            s.latest_approval_for("b1").await.unwrap().unwrap().state,
            "expired"
        );
    }

    #[tokio::test]
    async fn a_pending_request_is_cancelled_once_with_who_and_why_and_then_takes_no_vote() {
        let s = Store::open_sqlite_memory().await.unwrap();
        let mut r = request("apr_a", "b1", 10);
        r.asserted_by = Some("agent:gateway".into());
        s.insert_approval(&r).await.unwrap();
        assert!(s
            .cancel_approval("apr_a", "user:alice", Some("wrong file"), 20)
            .await
            .unwrap());
        assert!(!s
            .cancel_approval("apr_a", "user:alice", None, 21)
            .await
            .unwrap());
        let a = s.approval("apr_a").await.unwrap().unwrap();
        assert_eq!(a.state, "cancelled");
        assert_eq!(a.resolved_by.as_deref(), Some("user:alice"));
        assert_eq!(a.resolution.as_deref(), Some("wrong file"));
        assert_eq!(a.asserted_by.as_deref(), Some("agent:gateway"));
        assert!(!s
            .vote_approval("apr_a", &vote("user:bob", true, 22), None)
            .await
            .unwrap());
        assert!(!s.release_approval("apr_a", "j", 23, None).await.unwrap());
    }

    #[tokio::test]
    async fn requests_made_in_the_same_second_keep_the_order_they_were_made_in() {
        let s = Store::open_sqlite_memory().await.unwrap();
        // Ids are random: "apr_z" sorts after "apr_a" but was made first.
        s.insert_approval(&request("apr_z", "b1", 10))
            .await
            .unwrap();
        s.insert_approval(&request("apr_a", "b1", 10))
            .await
            .unwrap();
        assert_eq!(
            s.latest_approval_for("b1").await.unwrap().unwrap().id,
            "apr_a"
        );
        let all = s.approvals(None, 10, None).await.unwrap();
        assert_eq!(
            all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["apr_a", "apr_z"]
        );
        let next = s.approvals(None, 10, Some("apr_a")).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].id, "apr_z");
    }
}

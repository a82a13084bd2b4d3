//! The approval desk of a gateway run apart from the authority: calls are held at the
//! authority's desk over HTTP, with the gateway's own `mandate:audit` mandate.
//!
//! - `POST /approvals/v1/holds` with `{"ask": Ask, "wait_ms": N}` finds or opens the request for
//!   the call's binding and waits up to `N` ms (the authority caps one wait at
//!   [`MAX_REMOTE_WAIT`] or less, within its request deadline) for it to be decided, answering
//!   a [`HoldAnswer`]. A hold longer than one wait is several requests, the later ones finding
//!   the request the first opened.
//! - `POST /approvals/v1/releases` with `{"id", "jti", "required"}` spends an approved request
//!   for one call (`{"released": bool}`: true exactly once; with `required`, the approval the
//!   gateway's policy asks for now, only when the request's votes meet it, else `"short"` says
//!   why).
//!
//! Any failure (the authority unreachable, the mandate refused, an answer that is not one of
//! these) is an error, and the gateway refuses the call (fail closed). What the gateway says
//! about the caller and its chain is its word: the authority records it as asserted by the
//! gateway.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{send_within, OwnMandate, AUDIT_TIMEOUT};
use crate::approvals::{Approvals, Ask, Held, HoldAnswer, Release};
use crate::gateway::BoxFuture;

/// Longest one hold request asks the authority to wait (it may cap it lower, to stay within
/// its request deadline); longer holds ask again.
pub const MAX_REMOTE_WAIT: Duration = Duration::from_secs(20);

/// Holds calls at the authority's desk.
pub struct RemoteApprovals {
    holds_url: String,
    releases_url: String,
    http: reqwest::Client,
    own: Arc<dyn OwnMandate>,
}

impl RemoteApprovals {
    /// The desk of `authority` (the issuer URL), asked with `own`'s mandate.
    pub fn new(authority: &str, http: reqwest::Client, own: Arc<dyn OwnMandate>) -> Self {
        let base = authority.trim_end_matches('/');
        RemoteApprovals {
            holds_url: format!("{base}/approvals/v1/holds"),
            releases_url: format!("{base}/approvals/v1/releases"),
            http,
            own,
        }
    }

    async fn hold_once(&self, ask: &Ask, wait: Duration) -> Result<Held, String> {
        let body = json!({ "ask": ask, "wait_ms": wait.as_millis() as u64 });
        let answer = send_within(
            &self.http,
            &*self.own,
            reqwest::Method::POST,
            &self.holds_url,
            Some(&body),
            wait + AUDIT_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?;
        let a: HoldAnswer = serde_json::from_value(answer)
            .map_err(|e| format!("{} answered no hold: {e}", self.holds_url))?;
        Held::try_from(a).map_err(|e| format!("{} answered {e}", self.holds_url))
    }
}

impl Approvals for RemoteApprovals {
    fn hold<'a>(&'a self, ask: &'a Ask, wait: Duration) -> BoxFuture<'a, Result<Held, String>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let asked = tokio::time::Instant::now();
                let left = deadline.saturating_duration_since(asked);
                let held = self.hold_once(ask, left.min(MAX_REMOTE_WAIT)).await?;
                match held {
                    Held::Pending(_) if tokio::time::Instant::now() < deadline => {
                        // An authority that waits less than asked is not asked again at once.
                        tokio::time::sleep_until(asked + Duration::from_millis(500)).await;
                    }
                    h => return Ok(h),
                }
            }
        })
    }

    fn release<'a>(
        &'a self,
        id: &'a str,
        jti: &'a str,
        required: Option<&'a mandate_policy::Approval>,
    ) -> BoxFuture<'a, Result<Release, String>> {
        Box::pin(async move {
            let answer = send_within(
                &self.http,
                &*self.own,
                reqwest::Method::POST,
                &self.releases_url,
                Some(&json!({ "id": id, "jti": jti, "required": required })),
                AUDIT_TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())?;
            let released = answer
                .get("released")
                .and_then(serde_json::Value::as_bool)
                .ok_or_else(|| format!("{} answered no released", self.releases_url))?;
            Ok(
                match answer.get("short").and_then(serde_json::Value::as_str) {
                    _ if released => Release::Released,
                    Some(why) => Release::Short(why.chars().take(500).collect()),
                    None => Release::Unavailable,
                },
            )
        })
    }
}

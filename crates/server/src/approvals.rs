//! The approval desk: requests opened for calls the policy holds, votes by humans, the one
//! release an approval buys, and expiry. Rules are `mandate_core::approval`'s; rows are the
//! store's. Every transition is an audit event (`approval`), written before the change.
//!
//! API (`/approvals/v1`, a user's own mandate holding `mandate:approve`, see
//! [`ApproverCaller`]): `GET /requests[?state=S][&before=ID]` (newest first, 200 a page, `next`
//! the `before` of the next page), `GET /requests/{id}`,
//! `POST /requests/{id}/approve` and `POST /requests/{id}/deny` with `{"reason": "..."}`, and
//! `POST /requests/{id}/cancel` (a user in the request's chain, or an admin, withdraws it). A
//! gateway run apart holds calls here too (`/holds`, `/releases`: [`crate::approvals_gateway`]).
//! A user sees the requests they may vote on; an admin sees all.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use mandate_audit::event::kinds;
use mandate_core::approval::{self, Ballot, State as ApprovalState};
use mandate_gateway::approvals::{Approvals, Ask, Held, Release, Ticket};
use mandate_gateway::gateway::BoxFuture;
use mandate_store::{Resolution, StoredApproval, StoredVote};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::audit::new_event;
use crate::auth::ApproverCaller;
use crate::state::{now, AppState};

/// The approvals API root.
pub const ROOT: &str = "/approvals/v1";
/// Most requests one list answers with.
pub const MAX_LIST: i64 = 200;
/// Most pending requests one caller may have open at once: an agent cannot flood the
/// approvers' queue (each request is an audit event and a row). Counted apart for each gateway
/// run apart (whose word the caller is there) and for the authority's own.
pub const MAX_OPEN_PER_CALLER: i64 = 32;
/// Most pending requests one gateway run apart may have asserted, for all its callers.
pub const MAX_OPEN_PER_GATEWAY: i64 = 256;
/// Most rows a list reads before keeping those the caller may see.
const LIST_SCAN: i64 = 5000;
/// Most overdue requests expired per sweep (the rest on the next one, a second later).
const EXPIRE_BATCH: i64 = 100;

fn strings(json_text: &str) -> Vec<String> {
    serde_json::from_str(json_text).unwrap_or_default()
}

fn ticket(a: &StoredApproval, replaces_expired: Option<String>) -> Ticket {
    let denial = a.votes.iter().find(|v| !v.approve);
    let (denied_by, denial_reason) = if a.state == ApprovalState::Cancelled.as_str() {
        (a.resolved_by.clone(), a.resolution.clone())
    } else {
        (
            denial.map(|v| v.voter.clone()),
            denial.and_then(|v| v.reason.clone()),
        )
    };
    Ticket {
        id: a.id.clone(),
        approvers: strings(&a.approvers),
        quorum: a.quorum.max(1) as u32,
        approvals: a.votes.iter().filter(|v| v.approve).count() as u32,
        expires_at: a.expires_at,
        denied_by,
        denial_reason,
        replaces_expired,
    }
}

fn state_of(a: &StoredApproval) -> Result<ApprovalState, String> {
    ApprovalState::parse(&a.state).ok_or_else(|| format!("approval {} has a corrupt state", a.id))
}

/// An `approval` event about request `a`, by `principal`.
fn event(a: &StoredApproval, principal: &str, action: &str) -> mandate_audit::event::Event {
    let mut ev =
        new_event(kinds::APPROVAL, principal, action).on(format!("{}/{}", a.upstream, a.tool));
    ev.approval_id = Some(a.id.clone());
    ev.decision_id = Some(a.decision_id.clone());
    ev.policy_version = Some(a.policy_version.clone());
    ev
}

/// `ev` names the request's chain: as verified, or, for a request a gateway run apart opened,
/// under `asserted` by that gateway (the authority never saw that chain's mandate).
fn with_request_chain(
    a: &StoredApproval,
    mut ev: mandate_audit::event::Event,
) -> mandate_audit::event::Event {
    let chain = strings(&a.chain);
    match &a.asserted_by {
        None => ev.chain = chain,
        Some(gateway) => {
            ev.asserted = Some(mandate_audit::event::Asserted {
                by: gateway.clone(),
                principal: Some(a.requested_by.clone()),
                chain,
                jti: None,
            })
        }
    }
    ev
}

/// The desk over the authority's state (`Arc<AppState>` for the gateway's hook, `&AppState`
/// for the token endpoint's delegations).
pub struct Desk<S: std::ops::Deref<Target = AppState>> {
    st: S,
    /// The gateway run apart whose word the asks are (`POST /holds`), if any.
    via: Option<mandate_core::MandateClaims>,
}

impl<S: std::ops::Deref<Target = AppState>> Desk<S> {
    /// The desk over `st`, for asks the authority verified itself.
    pub fn new(st: S) -> Self {
        Desk { st, via: None }
    }

    /// The desk over `st`, for asks a gateway run apart makes with mandate `gateway`: the
    /// requests it opens name it as the one who asserted their caller and chain.
    pub fn asserted_by(st: S, gateway: mandate_core::MandateClaims) -> Self {
        Desk {
            st,
            via: Some(gateway),
        }
    }

    /// The key `ask`'s request is stored under: its binding, and the gateway that asserted it.
    fn key(&self, ask: &Ask) -> String {
        ask.binding
            .key_for(self.via.as_ref().map(|g| g.client_id.as_str()))
    }

    /// Opens a request for `ask` (its event first); `Ok(Err(why))` when the caller may not open
    /// one more.
    pub(crate) async fn open(
        &self,
        ask: &Ask,
        now: i64,
    ) -> Result<Result<StoredApproval, String>, String> {
        let gateway = self.via.as_ref().map(|g| g.client_id.as_str());
        if let Some(g) = gateway {
            let all = self
                .st
                .store
                .open_approvals_asserted_by(g, now)
                .await
                .map_err(|e| e.to_string())?;
            if all >= MAX_OPEN_PER_GATEWAY {
                return Ok(Err(format!(
                    "the gateway {g} already has {all} approval requests waiting (at most {MAX_OPEN_PER_GATEWAY}): wait for the approvers, or for those requests to expire"
                )));
            }
        }
        let open = self
            .st
            .store
            .open_approvals_by(&ask.requested_by, gateway, now)
            .await
            .map_err(|e| e.to_string())?;
        if open >= MAX_OPEN_PER_CALLER {
            return Ok(Err(format!(
                "{} already has {open} approval requests waiting (at most {MAX_OPEN_PER_CALLER}): wait for the approvers, or for those requests to expire",
                ask.requested_by
            )));
        }
        let a = StoredApproval {
            id: approval::new_id(&mut rand::rngs::OsRng),
            binding: self.key(ask),
            state: ApprovalState::Pending.as_str().into(),
            created_at: now,
            expires_at: now + approval::expires_in(ask.approval.expires_in),
            requested_by: ask.requested_by.clone(),
            chain: serde_json::to_string(&ask.binding.chain).map_err(|e| e.to_string())?,
            upstream: ask.binding.upstream.clone(),
            tool: ask.binding.tool.clone(),
            arguments_sha256: ask.binding.arguments_sha256.clone(),
            policy_version: ask.binding.policy_version.clone(),
            decision_id: ask.decision_id.clone(),
            approvers: serde_json::to_string(&ask.approval.approvers).map_err(|e| e.to_string())?,
            quorum: i64::from(ask.approval.quorum.max(1)),
            reason: ask.approval.reason.clone(),
            call: ask.call.to_string(),
            resolved_at: None,
            resolved_by: None,
            resolution: None,
            released_at: None,
            released_jti: None,
            asserted_by: self.via.as_ref().map(|g| g.client_id.clone()),
            votes: vec![],
        };
        let mut ev = event(&a, &ask.requested_by, "approval.requested")
            .under(ask.binding.chain.clone(), Some(ask.jti.clone()));
        if let Some(gateway) = &self.via {
            crate::audit_api::attribute_to(gateway, &mut ev);
        }
        ev.reasons = ask.approval.reason.clone().into_iter().collect();
        ev.details.insert("call".into(), ask.call.clone());
        ev.details.insert(
            "arguments_sha256".into(),
            ask.binding.arguments_sha256.clone().into(),
        );
        ev.details
            .insert("approvers".into(), json!(ask.approval.approvers));
        ev.details
            .insert("quorum".into(), ask.approval.quorum.max(1).into());
        ev.details.insert("expires_at".into(), a.expires_at.into());
        self.st
            .audit(&ev)
            .await
            .map_err(|e| format!("the audit log cannot take the request: {e}"))?;
        self.st
            .store
            .insert_approval(&a)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(approval = %a.id, upstream = %a.upstream, tool = %a.tool, requested_by = %a.requested_by, "approval requested");
        self.st.approvals_changed.send_modify(|n| *n += 1);
        notify(&self.st, "approval.requested", &a, None);
        Ok(Ok(a))
    }

    async fn read(&self, id: &str) -> Result<StoredApproval, String> {
        self.st
            .store
            .approval(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("approval {id} vanished"))
    }

    pub(crate) async fn hold_inner(&self, ask: &Ask, wait: Duration) -> Result<Held, String> {
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribed before reading, so that no change between the read and the wait is missed.
        let mut changed = self.st.approvals_changed.subscribe();
        let now = now();
        let key = self.key(ask);
        let opening = self.st.approvals_lock.lock().await;
        let latest = self
            .st
            .store
            .latest_approval_for(&key)
            .await
            .map_err(|e| e.to_string())?;
        let mut replaces = None;
        let mut a = match latest {
            Some(a) => match state_of(&a)? {
                ApprovalState::Pending if a.expires_at > now => a,
                ApprovalState::Approved if a.expires_at > now => a,
                ApprovalState::Denied if a.expires_at > now => {
                    return Ok(Held::Denied(ticket(&a, None)))
                }
                ApprovalState::Pending => {
                    expire(&self.st, &a, now).await?;
                    replaces = Some(a.id.clone());
                    match self.open(ask, now).await? {
                        Ok(a) => a,
                        Err(why) => return Ok(Held::Refused(why)),
                    }
                }
                ApprovalState::Expired => {
                    replaces = Some(a.id.clone());
                    match self.open(ask, now).await? {
                        Ok(a) => a,
                        Err(why) => return Ok(Held::Refused(why)),
                    }
                }
                _ => match self.open(ask, now).await? {
                    Ok(a) => a,
                    Err(why) => return Ok(Held::Refused(why)),
                },
            },
            None => match self.open(ask, now).await? {
                Ok(a) => a,
                Err(why) => return Ok(Held::Refused(why)),
            },
        };
        drop(opening);
        loop {
            match state_of(&a)? {
                ApprovalState::Approved => return Ok(Held::Approved(ticket(&a, replaces))),
                ApprovalState::Denied => return Ok(Held::Denied(ticket(&a, replaces))),
                ApprovalState::Expired => return Ok(Held::Expired(ticket(&a, replaces))),
                ApprovalState::Cancelled => return Ok(Held::Cancelled(ticket(&a, replaces))),
                ApprovalState::Pending => {}
            }
            let now = crate::state::now();
            if now >= a.expires_at {
                expire(&self.st, &a, now).await?;
                return Ok(Held::Expired(ticket(&a, replaces)));
            }
            let expiry = tokio::time::Instant::now()
                + Duration::from_secs((a.expires_at - now).max(0) as u64);
            tokio::select! {
                r = changed.changed() => {
                    if r.is_err() {
                        return Err("the approval desk stopped".into());
                    }
                }
                _ = tokio::time::sleep_until(deadline.min(expiry)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(Held::Pending(ticket(&a, replaces)));
                    }
                }
            }
            a = self.read(&a.id).await?;
        }
    }
}

impl Approvals for Desk<Arc<AppState>> {
    fn hold<'a>(&'a self, ask: &'a Ask, wait: Duration) -> BoxFuture<'a, Result<Held, String>> {
        Box::pin(self.hold_inner(ask, wait))
    }

    fn release<'a>(
        &'a self,
        id: &'a str,
        jti: &'a str,
        required: Option<&'a mandate_policy::Approval>,
    ) -> BoxFuture<'a, Result<Release, String>> {
        Box::pin(async move {
            if let Some(required) = required {
                let Some(a) = self
                    .st
                    .store
                    .approval(id)
                    .await
                    .map_err(|e| e.to_string())?
                else {
                    return Ok(Release::Unavailable);
                };
                if let Some(why) = votes_short_of(&self.st, &a, required).await? {
                    return Ok(Release::Short(why));
                }
            }
            let spent = self
                .st
                .store
                .release_approval(id, jti, now(), None)
                .await
                .map_err(|e| e.to_string())?;
            Ok(if spent {
                Release::Released
            } else {
                Release::Unavailable
            })
        })
    }
}

/// Why request `a`'s approvals do not meet `required` (what a gateway's policy asks of the call
/// now), or `None` when they do: at least `required.quorum` approvals by voters `required`
/// names, each with the role they hold now and still enabled.
pub(crate) async fn votes_short_of(
    st: &AppState,
    a: &StoredApproval,
    required: &mandate_policy::Approval,
) -> Result<Option<String>, String> {
    let mut counted = 0u32;
    for v in a.votes.iter().filter(|v| v.approve) {
        // A voter since disabled or removed counts for nothing.
        let Some(p) = st
            .store
            .principal(&v.voter)
            .await
            .map_err(|e| e.to_string())?
            .filter(|p| !p.disabled)
        else {
            continue;
        };
        if approval::may_vote(&required.approvers, &v.voter, p.role.as_deref()) {
            counted += 1;
        }
    }
    let needed = required.quorum.max(1);
    Ok((counted < needed).then(|| {
        format!(
            "{counted} of the {needed} approvals it needs from {}",
            required.approvers.join(", ")
        )
    }))
}

/// Marks a pending request expired, its event first.
async fn expire(st: &AppState, a: &StoredApproval, now: i64) -> Result<(), String> {
    let mut ev = with_request_chain(a, event(a, "mandate", "approval.expired"));
    ev.reasons = vec![format!(
        "no quorum of {} before the request expired",
        a.quorum
    )];
    st.audit(&ev)
        .await
        .map_err(|e| format!("the audit log cannot take the expiry: {e}"))?;
    if st
        .store
        .expire_approval(&a.id, now)
        .await
        .map_err(|e| e.to_string())?
    {
        tracing::info!(approval = %a.id, "approval request expired");
        st.approvals_changed.send_modify(|n| *n += 1);
        let mut done = a.clone();
        done.state = ApprovalState::Expired.as_str().into();
        notify(st, "approval.expired", &done, None);
    }
    Ok(())
}

/// Expires overdue requests (the housekeeping task calls this every second).
pub async fn expire_overdue(st: &AppState) {
    let now = now();
    let Ok(due) = st.store.overdue_approvals(now, EXPIRE_BATCH).await else {
        return;
    };
    for a in due {
        if let Err(e) = expire(st, &a, now).await {
            tracing::warn!(approval = %a.id, error = %e, "could not expire an approval request");
        }
    }
}

/// The approvals API.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/requests", get(list))
        .route("/requests/{id}", get(show))
        .route("/requests/{id}/{vote}", post(cast))
        .route("/events", get(events))
        .merge(crate::approvals_gateway::routes())
}

/// `GET /approvals/v1/events`: a server-sent event stream of the changes to requests the caller
/// may see (`event:` the kind, `data:` the request as `show` gives it, plus `text`, `by` and
/// `approve_command`). It ends when the caller's mandate expires (reconnect with a fresh one);
/// a listener that falls more than 256 changes behind is sent `lagged` and should list again.
async fn events(
    State(st): State<Arc<AppState>>,
    ApproverCaller(who): ApproverCaller,
) -> Result<
    axum::response::sse::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let slot = StreamSlot::take(&st, &who.claims.client_id).ok_or_else(|| {
        ApiError::rate_limited(format!(
            "{} already has {MAX_STREAMS_PER_USER} approval event streams open",
            who.claims.client_id
        ))
    })?;
    let rx = st.approval_events.subscribe();
    let left = Duration::from_secs((who.claims.exp - now()).max(0) as u64);
    let until = tokio::time::Instant::now() + left;
    let state = (rx, who, slot);
    let stream = futures_util::stream::unfold(state, move |(mut rx, who, slot)| async move {
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            let next = tokio::select! {
                r = rx.recv() => r,
                _ = tokio::time::sleep_until(until) => return None,
                _ = check.tick() => {
                    // A revoked or disabled user's stream ends within a second.
                    if !slot.still_valid(&who.claims) {
                        return None;
                    }
                    continue;
                }
            };
            if !slot.still_valid(&who.claims) {
                return None;
            }
            match next {
                Ok(change) => {
                    let (kind, data) = &*change;
                    let list = |k: &str| -> Vec<String> {
                        serde_json::from_value(data[k].clone()).unwrap_or_default()
                    };
                    if !may_see_parties(&who, &list("approvers"), &list("chain")) {
                        continue;
                    }
                    let ev = Event::default().event(kind).data(data.to_string());
                    return Some((Ok(ev), (rx, who, slot)));
                }
                Err(RecvError::Lagged(n)) => {
                    let ev = Event::default()
                        .event("lagged")
                        .data(json!({ "missed": n }).to_string());
                    return Some((Ok(ev), (rx, who, slot)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Most approval event streams one user holds open at once.
pub const MAX_STREAMS_PER_USER: usize = 4;

/// One open event stream: counted against its user until dropped, and checked against the
/// revocations.
struct StreamSlot {
    st: Arc<AppState>,
    _counted: mandate_gateway::approvals::Slot,
}

impl StreamSlot {
    fn take(st: &Arc<AppState>, who: &str) -> Option<StreamSlot> {
        Some(StreamSlot {
            st: st.clone(),
            _counted: st.approval_streams.enter(who)?,
        })
    }

    /// Whether the stream's mandate is still good: unexpired, nothing in it revoked.
    fn still_valid(&self, claims: &mandate_core::MandateClaims) -> bool {
        claims.exp > now()
            && self
                .st
                .revocations
                .with_set(|r| r.check(claims, None).is_ok())
    }
}

/// A request as the API shows it.
fn to_json(a: &StoredApproval) -> Value {
    json!({
        "id": a.id,
        "state": a.state,
        "upstream": a.upstream,
        "tool": a.tool,
        "requested_by": a.requested_by,
        "chain": strings(&a.chain),
        "call": serde_json::from_str::<Value>(&a.call).unwrap_or(Value::Null),
        "arguments_sha256": a.arguments_sha256,
        "policy_version": a.policy_version,
        "decision_id": a.decision_id,
        "approvers": strings(&a.approvers),
        "quorum": a.quorum,
        "reason": a.reason,
        "created_at": a.created_at,
        "expires_at": a.expires_at,
        "resolved_at": a.resolved_at,
        "resolved_by": a.resolved_by,
        "resolution": a.resolution,
        "released_at": a.released_at,
        "asserted_by": a.asserted_by,
        "votes": a.votes.iter().map(|v| json!({
            "voter": v.voter, "vote": if v.approve { "approve" } else { "deny" },
            "reason": v.reason, "at": v.at,
        })).collect::<Vec<_>>(),
    })
}

/// Whether `who` may see request `a`: an admin, someone it names, or someone in its chain.
fn may_see(who: &crate::resource_auth::Caller, a: &StoredApproval) -> bool {
    may_see_parties(who, &strings(&a.approvers), &strings(&a.chain))
}

fn may_see_parties(
    who: &crate::resource_auth::Caller,
    approvers: &[String],
    chain: &[String],
) -> bool {
    let me = who.claims.client_id.as_str();
    who.principal.is_admin()
        || approval::may_vote(approvers, me, who.principal.row.role.as_deref())
        || chain.iter().any(|p| p == me)
}

/// Tells the event stream and the webhooks that request `a` changed (`kind`), by `by`.
fn notify(st: &AppState, kind: &str, a: &StoredApproval, by: Option<&str>) {
    let mut d = to_json(a);
    let approve = format!("mandate approvals approve {} --as user:NAME", a.id);
    let approvals = a.votes.iter().filter(|v| v.approve).count();
    let text = match kind {
        // Mandate's own words first; the reason (an agent's binding_message, for CIBA) last
        // and quoted, so it cannot pass for an instruction.
        "approval.requested" => format!(
            "Approval request {} from {}: run {} on {}. Approvers: {} (quorum {}). To approve: {approve}. Reason given: \"{}\"",
            a.id,
            a.requested_by,
            a.tool,
            a.upstream,
            strings(&a.approvers).join(", "),
            a.quorum,
            a.reason
                .as_deref()
                .unwrap_or("the policy holds it for a human")
                .replace('"', "'"),
        ),
        "approval.vote" => format!(
            "{} voted on {} ({} on {}): {approvals} of {} approvals",
            by.unwrap_or("someone"),
            a.id,
            a.tool,
            a.upstream,
            a.quorum
        ),
        _ => format!(
            "{} ({} on {} for {}) is {}{}",
            a.id,
            a.tool,
            a.upstream,
            a.requested_by,
            a.state,
            by.map(|b| format!(" by {b}")).unwrap_or_default()
        ),
    };
    d["text"] = text.into();
    d["by"] = by.into();
    d["approve_command"] = approve.into();
    if let Some(w) = st.webhooks.get() {
        w.send(kind, d.clone());
    }
    // Nobody listening is not an error.
    let _ = st.approval_events.send(Arc::new((kind.to_string(), d)));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    /// The next page: requests older than this one (the `next` of the previous answer).
    before: Option<String>,
}

async fn list(
    State(st): State<Arc<AppState>>,
    ApproverCaller(who): ApproverCaller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(s) = &q.state {
        if ApprovalState::parse(s).is_none() {
            return Err(ApiError::bad_request(format!(
                "state {s:?} is not one of pending, approved, denied, expired, cancelled"
            )));
        }
    }
    if let Some(b) = &q.before {
        if !approval::is_id(b) {
            return Err(ApiError::bad_request(
                "before must be a request id (apr_ and 22 characters): the next of the previous page",
            ));
        }
    }
    let rows = st
        .store
        .approvals(q.state.as_deref(), LIST_SCAN, q.before.as_deref())
        .await?;
    let mut seen = 0usize;
    let mut shown: Vec<&StoredApproval> = Vec::new();
    for a in &rows {
        seen += 1;
        if may_see(&who, a) {
            shown.push(a);
            if shown.len() == MAX_LIST as usize {
                break;
            }
        }
    }
    // More may follow when the page filled up or the scan did: `next` continues after the
    // last row looked at.
    let more =
        shown.len() == MAX_LIST as usize && seen < rows.len() || rows.len() == LIST_SCAN as usize;
    let next = more.then(|| rows[seen - 1].id.clone());
    let shown: Vec<Value> = shown.into_iter().map(to_json).collect();
    Ok(Json(json!({ "approvals": shown, "next": next })))
}

async fn find(
    st: &AppState,
    who: &crate::resource_auth::Caller,
    id: &str,
) -> Result<StoredApproval, ApiError> {
    if !approval::is_id(id) {
        return Err(ApiError::not_found(
            "not an approval request id (they are apr_ and 22 characters; see the list)",
        ));
    }
    let missing = || ApiError::not_found(format!("no approval request {id} that you may see"));
    match st.store.approval(id).await? {
        Some(a) if may_see(who, &a) => Ok(a),
        _ => Err(missing()),
    }
}

async fn show(
    State(st): State<Arc<AppState>>,
    ApproverCaller(who): ApproverCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(to_json(&find(&st, &who, &id).await?)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VoteBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /requests/{id}/approve`, `/requests/{id}/deny` and `/requests/{id}/cancel`.
async fn cast(
    State(st): State<Arc<AppState>>,
    ApproverCaller(who): ApproverCaller,
    Path((id, how)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let approve =
        match how.as_str() {
            "approve" => true,
            "deny" => false,
            "cancel" => return cancel(&st, &who, &id, reason_of(&body)?).await,
            _ => return Err(ApiError::not_found(
                "a request is voted on with .../approve or .../deny, or withdrawn with .../cancel",
            )),
        };
    let reason = reason_of(&body)?;
    vote(&st, &who, &id, approve, reason).await
}

/// A vote's (or a withdrawal's) body: empty, or `{"reason": "..."}` of at most
/// [`approval::MAX_REASON_CHARS`] characters.
fn reason_of(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let reason = serde_json::from_slice::<VoteBody>(body)
        .map(|b| b.reason)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "the body is empty or {{\"reason\": \"...\"}}: {}",
                e.to_string().split(" at line").next().unwrap_or("")
            ))
        })?;
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > approval::MAX_REASON_CHARS)
    {
        return Err(ApiError::bad_request(format!(
            "the reason is over {} characters",
            approval::MAX_REASON_CHARS
        )));
    }
    Ok(reason)
}

/// Withdraws a pending request: a user in its chain (who delegated the call, and so answers for
/// it) or an admin, never an approver as such (they deny). Its event first, then the change; a
/// call waiting on it is told who withdrew it and why, and the same call made again asks anew.
async fn cancel(
    st: &Arc<AppState>,
    who: &crate::resource_auth::Caller,
    id: &str,
    reason: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let me = who.claims.client_id.as_str();
    let _one = st.approvals_lock.lock().await;
    let a = find(st, who, id).await?;
    let refused = if !(who.principal.is_admin() || strings(&a.chain).iter().any(|p| p == me)) {
        Some((
            false,
            format!("{me} may not withdraw {id}: only a user in its chain (who delegated the call) or an admin can; approvers deny instead"),
        ))
    } else if a.state != ApprovalState::Pending.as_str() || a.expires_at <= now() {
        Some((
            true,
            format!(
                "{id} is {}, not pending: it can no longer be withdrawn",
                if a.state == "pending" {
                    "expired"
                } else {
                    a.state.as_str()
                }
            ),
        ))
    } else {
        None
    };
    if let Some((conflict, why)) = refused {
        let ev = event(&a, me, "approval.cancel")
            .under(who.claims.chain_to_holder(), Some(who.claims.jti.clone()))
            .refused("cancel_refused", &why);
        let _ = st.audit(&ev).await;
        let e = if conflict {
            ApiError::conflict(why)
        } else {
            ApiError::forbidden(why)
        };
        return Err(e.audited());
    }
    let mut ev = with_request_chain(&a, event(&a, me, "approval.cancelled"));
    ev.jti = Some(who.claims.jti.clone());
    ev.reasons = reason.clone().into_iter().collect();
    if st.audit(&ev).await.is_err() {
        return Err(ApiError::unavailable(
            "the audit log cannot take the cancellation; nothing was changed, retry later",
        ));
    }
    if !st
        .store
        .cancel_approval(&a.id, me, reason.as_deref(), now())
        .await?
    {
        return Err(ApiError::conflict(
            "the request was decided while you withdrew it; nothing was changed",
        ));
    }
    tracing::info!(approval = %a.id, by = me, "approval request withdrawn");
    st.approvals_changed.send_modify(|n| *n += 1);
    let a = st
        .store
        .approval(&a.id)
        .await?
        .ok_or_else(|| ApiError::not_found(id.to_string()))?;
    notify(st, "approval.cancelled", &a, Some(me));
    Ok(Json(to_json(&a)))
}

/// Takes one vote: the core's rules, the vote's event, then the vote and any decision it makes
/// in one transaction, then the decision's event.
async fn vote(
    st: &Arc<AppState>,
    who: &crate::resource_auth::Caller,
    id: &str,
    approve: bool,
    reason: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let voter = who.claims.client_id.as_str();
    // One vote at a time: each reads the votes before it (quorum counted once, never lost).
    let _one = st.approvals_lock.lock().await;
    let a = find(st, who, id).await?;
    let chain = strings(&a.chain);
    let approvers = strings(&a.approvers);
    let voted: Vec<String> = a.votes.iter().map(|v| v.voter.clone()).collect();
    let state = state_of(&a).map_err(|e| ApiError::internal("corrupt approval", e))?;
    let now = now();
    let ballot = Ballot {
        state,
        expires_at: a.expires_at,
        chain: &chain,
        approvers: &approvers,
        voted: &voted,
    };
    let action = if approve { "approve" } else { "deny" };
    if let Err(refusal) =
        approval::check_vote(&ballot, voter, who.principal.row.role.as_deref(), now)
    {
        let mut ev = event(&a, voter, "approval.vote")
            .under(who.claims.chain_to_holder(), Some(who.claims.jti.clone()))
            .refused("vote_refused", &refusal.to_string());
        ev.details.insert("vote".into(), action.into());
        let _ = st.audit(&ev).await;
        // Overdue but not yet swept: expired now (once; a request already expired is left).
        if refusal == approval::VoteRefusal::Expired && state == ApprovalState::Pending {
            let _ = expire(st, &a, now).await;
        }
        return Err(match refusal {
            approval::VoteRefusal::NotPending(_)
            | approval::VoteRefusal::Expired
            | approval::VoteRefusal::AlreadyVoted(_) => ApiError::conflict(refusal.to_string()),
            _ => ApiError::forbidden(refusal.to_string()),
        }
        .audited());
    }
    let approvals = a.votes.iter().filter(|v| v.approve).count() as u32 + u32::from(approve);
    let next = approval::after_vote(approve, approvals, a.quorum.max(1) as u32);
    let mut ev = event(&a, voter, "approval.vote")
        .under(who.claims.chain_to_holder(), Some(who.claims.jti.clone()));
    ev.details.insert("vote".into(), action.into());
    ev.reasons = reason.clone().into_iter().collect();
    if st.audit(&ev).await.is_err() {
        return Err(ApiError::unavailable(
            "the audit log cannot take the vote; nothing was changed, retry later",
        ));
    }
    let resolution = (next != ApprovalState::Pending).then(|| Resolution {
        state: next.as_str(),
        by: voter,
        reason: reason.as_deref(),
    });
    let stored = StoredVote {
        voter: voter.to_string(),
        approve,
        reason: reason.clone(),
        at: now,
    };
    let taken = st.store.vote_approval(&a.id, &stored, resolution).await?;
    if !taken {
        return Err(ApiError::conflict(
            "the request was decided, or your vote taken, while you voted; nothing more was changed",
        ));
    }
    if next != ApprovalState::Pending {
        let mut done =
            with_request_chain(&a, event(&a, voter, &format!("approval.{}", next.as_str())));
        done.reasons = reason.into_iter().collect();
        done.details.insert("approvals".into(), approvals.into());
        done.details.insert("quorum".into(), a.quorum.into());
        // The decision is stored; its event failing is logged (the vote's event names it).
        if st.audit(&done).await.is_err() {
            tracing::error!(approval = %a.id, "the decision of an approval request could not be recorded");
        }
    }
    tracing::info!(approval = %a.id, voter, vote = action, state = next.as_str(), "approval vote");
    st.approvals_changed.send_modify(|n| *n += 1);
    let a = st
        .store
        .approval(&a.id)
        .await?
        .ok_or_else(|| ApiError::not_found(id.to_string()))?;
    let kind = match next {
        ApprovalState::Pending => "approval.vote".to_string(),
        s => format!("approval.{}", s.as_str()),
    };
    notify(st, &kind, &a, Some(voter));
    Ok(Json(to_json(&a)))
}

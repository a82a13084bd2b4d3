//! OpenID Connect CIBA (Client-Initiated Backchannel Authentication, poll mode) with RFC 9396
//! `authorization_details`: the way in for agents that are not MCP clients.
//!
//! An agent posts the one action it wants to `/bc-authorize` (`private_key_jwt`; `login_hint`
//! names the approver, `user:NAME` or `role:NAME`; `binding_message` says why). The policy
//! decides the call first, as the gateway would: a call it refuses is `access_denied`, and a call
//! it holds for humans takes its approvers and quorum (the hint must be one of them, so an agent
//! cannot choose who approves it). That opens an approval request (its id is the `auth_req_id`) bound to the agent, the upstream, the tool and
//! the RFC 8785 digest of the arguments. The agent polls the token endpoint with
//! `urn:openid:params:grant-type:ciba`: `authorization_pending` until the quorum approves, then
//! one DPoP-bound mandate (audience the upstream's, scope the tool's, at most 5 minutes) whose
//! `authorization_details` names exactly that action and the request. The gateway makes that one
//! call without holding it again, and spends the request doing so: a second use is refused.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mandate_core::approval::{self, Binding, State as ApprovalState};
use mandate_core::delegation::{self, Mint, Request};
use mandate_core::ScopeSet;
use mandate_gateway::approvals::Ask;
use mandate_policy::Verdict;
use serde_json::{json, Value};

use crate::client_auth::{self, Client};
use crate::form::{Body, Form};
use crate::oauth_error::OAuthError;
use crate::state::{now, AppState};

/// The CIBA grant type.
pub const GRANT: &str = "urn:openid:params:grant-type:ciba";
/// The backchannel authentication endpoint, below the issuer.
pub const PATH: &str = "/bc-authorize";
/// The `authorization_details` type Mandate understands.
pub const TOOL_CALL: &str = "tool_call";
/// The policy version CIBA requests are bound to (they are decided by their approver, not held
/// by a policy decision; the gateway matches them by their `approval_id`).
pub const POLICY_VERSION: &str = "ciba";
/// Seconds between polls the client is asked to keep.
pub const INTERVAL: i64 = 2;
/// A request's default and longest life, in seconds.
pub const DEFAULT_EXPIRY: i64 = 600;
/// Longest `requested_expiry`.
pub const MAX_EXPIRY: i64 = 3600;
/// Longest `binding_message`, in characters.
pub const MAX_BINDING_MESSAGE: usize = 256;
/// Longest life of the mandate a CIBA approval buys.
pub const MANDATE_TTL: i64 = 300;

/// One approved action, read from `authorization_details`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The upstream.
    pub server: String,
    /// The tool.
    pub tool: String,
    /// Its arguments.
    pub arguments: Value,
}

/// Reads `authorization_details`: exactly one `tool_call` with a known upstream name, a tool
/// and an arguments object (RFC 9396 `invalid_authorization_details` otherwise).
pub fn read_details(text: &str) -> Result<ToolCall, OAuthError> {
    let bad = |why: String| OAuthError::ciba("invalid_authorization_details", why);
    // Read as the gateway reads calls: a member given twice could be read two ways.
    mandate_gateway::jsonrpc::check_member_names(text.as_bytes()).map_err(bad)?;
    if let Some(lit) = mandate_audit::event::first_inexact_literal(text.as_bytes()) {
        return Err(bad(format!(
            "the number {lit} cannot be bound exactly (RFC 8785): send it as a string or in its shortest form"
        )));
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("authorization_details is not JSON: {e}")))?;
    let [one] = v.as_array().map(Vec::as_slice).unwrap_or_default() else {
        return Err(bad(
            "authorization_details must be an array of exactly one {\"type\": \"tool_call\", \"server\", \"tool\", \"arguments\"}: an approval covers one call".into(),
        ));
    };
    let o = one
        .as_object()
        .ok_or_else(|| bad("the authorization detail must be an object".into()))?;
    if o.get("type").and_then(Value::as_str) != Some(TOOL_CALL) {
        return Err(bad(format!(
            "authorization detail type must be {TOOL_CALL:?} (the only type supported)"
        )));
    }
    if let Some(k) = o
        .keys()
        .find(|k| !["type", "server", "tool", "arguments"].contains(&k.as_str()))
    {
        return Err(bad(format!(
            "unknown member {:?} in the tool_call detail (server, tool, arguments)",
            k.chars().take(40).collect::<String>()
        )));
    }
    let server = o
        .get("server")
        .and_then(Value::as_str)
        .filter(|s| mandate_gateway::config::valid_name(s))
        .ok_or_else(|| bad("server must be an upstream's name".into()))?;
    let tool = o
        .get("tool")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.len() <= 128 && !t.chars().any(char::is_control))
        .ok_or_else(|| bad("tool must be a tool's name (1 to 128 characters)".into()))?;
    let arguments = match o.get("arguments") {
        None => json!({}),
        Some(a @ Value::Object(_)) => a.clone(),
        Some(_) => return Err(bad("arguments must be an object".into())),
    };
    Ok(ToolCall {
        server: server.to_string(),
        tool: tool.to_string(),
        arguments,
    })
}

/// The RFC 8785 digest of arguments (what both CIBA and the gateway bind calls by).
pub fn arguments_sha256(arguments: &Value) -> Result<String, String> {
    mandate_audit::event::rfc8785(arguments)
        .map(|c| approval::sha256_hex(c.as_bytes()))
        .map_err(|e| e.to_string())
}

/// The policy's decision on `call` by the holder of `claims`: through the gateway in this
/// process when it serves the upstream (with the tool's annotations), otherwise the authority's
/// policy on what it knows of the call (no annotations: an upstream served only by gateways run
/// apart is decided by the tool's name and arguments).
async fn decide(
    st: &AppState,
    claims: &mandate_core::MandateClaims,
    call: &ToolCall,
) -> Result<mandate_policy::Decision, OAuthError> {
    let arguments = call.arguments.as_object().cloned().unwrap_or_default();
    if let Some(gw) = st.gateway.get().and_then(std::sync::Weak::upgrade) {
        if gw.upstreams.get(&call.server).is_some() {
            return gw
                .decide_tool_call(claims, &call.server, &call.tool, arguments)
                .await
                .map_err(|e| OAuthError::ciba("access_denied", e));
        }
    }
    let (scope, _) = scope_and_audience(st, &call.server, &call.tool);
    let action = mandate_policy::input::Action::Mcp(mandate_policy::input::ToolCall {
        scope: scope.ok(),
        server: call.server.clone(),
        tool: call.tool.clone(),
        mcp_method: Some("tools/call".into()),
        arguments,
        annotations: Default::default(),
        upstream: Default::default(),
    });
    let context = mandate_policy::input::Context::at(now(), &st.cfg.environment, None);
    let input =
        mandate_policy::input::Input::for_mandate(&claims.client_id, claims, action, context)
            .to_value();
    Ok(st.policy.decide(mandate_policy::Query::Authz, &input).await)
}

/// The scope and audience a call of `tool` on `server` needs, as the gateway in this process
/// says (a tool may be mapped to another scope), or the defaults `server:tool` and `mcp:server`.
fn scope_and_audience(st: &AppState, server: &str, tool: &str) -> (Result<String, String>, String) {
    if let Some(gw) = st.gateway.get().and_then(std::sync::Weak::upgrade) {
        if let Some(up) = gw.upstreams.get(server) {
            let scope = up
                .checked
                .scopes
                .required(tool)
                .map(|s| s.as_str().to_string())
                .map_err(|e| e.to_string());
            return (scope, up.checked.audience.clone());
        }
    }
    (Ok(format!("{server}:{tool}")), format!("mcp:{server}"))
}

/// `POST /bc-authorize`.
pub async fn bc_authorize(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match authorize(&st, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(
                error = e.code(),
                "backchannel authentication request refused"
            );
            e.into_response()
        }
    }
}

async fn authorize(
    st: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, OAuthError> {
    let body = crate::form::body(body)?;
    let (form, dpop) = crate::form::read(headers, &body)?;
    let now = now();
    let endpoint = format!("{}{PATH}", st.cfg.issuer);
    let client = client_auth::authenticate(st, &form, dpop, &endpoint, now).await?;
    client.spend_checked(st).await?;
    let who = client.principal.name.to_string();
    // Poll mode with login_hint only: what is not supported is refused, not ignored.
    for (p, why) in [
        (
            "id_token_hint",
            "send login_hint (user:NAME or role:NAME) instead",
        ),
        (
            "login_hint_token",
            "send login_hint (user:NAME or role:NAME) instead",
        ),
        ("user_code", "user codes are not supported"),
        (
            "client_notification_token",
            "only poll mode is supported (no ping or push)",
        ),
        (
            "request",
            "signed authentication requests are not supported",
        ),
    ] {
        if form.one(p)?.is_some() {
            return Err(OAuthError::invalid_request(format!("{p}: {why}")));
        }
    }
    let hint = form.required("login_hint")?;
    let hint = login_hint(st, hint, &who).await?;
    let message = form.one("binding_message")?.map(str::to_string);
    if message.as_ref().is_some_and(|m| {
        m.chars().count() > MAX_BINDING_MESSAGE || m.chars().any(approval::unfit_for_display)
    }) {
        return Err(OAuthError::ciba(
            "invalid_binding_message",
            format!("binding_message is at most {MAX_BINDING_MESSAGE} characters of plain text: no control, format, bidirectional or line-separator characters, and valid UTF-8"),
        ));
    }
    let expiry = match form.one("requested_expiry")? {
        None => DEFAULT_EXPIRY,
        Some(e) => e
            .parse::<i64>()
            .ok()
            .filter(|e| (60..=MAX_EXPIRY).contains(e))
            .ok_or_else(|| {
                OAuthError::invalid_request(format!(
                    "requested_expiry must be whole seconds from 60 to {MAX_EXPIRY}"
                ))
            })?,
    };
    let call = read_details(form.required("authorization_details")?)?;
    // Fail now, not after a human approved: the caller must be able to hold the mandate.
    // (The mandate is bound at the token endpoint, to the key of its DPoP proof; checked here
    // against the key that signed this request.)
    let claims = mint_claims(
        st,
        &client,
        Some(&client.auth_jkt),
        &call.server,
        &call.tool,
        Value::Null,
        now,
        now + expiry,
    )?;
    // The policy decides the call as the gateway would: a call it refuses is refused now, and
    // one it holds for humans is approved by the humans it names, in its quorum (the hint must
    // be one of them), never by whoever the agent names.
    let decision = decide(st, &claims, &call).await?;
    let (approvers, quorum) = match decision.verdict().clone() {
        Verdict::Allow => (vec![hint], 1),
        Verdict::NeedsApproval(a) => {
            let (role, is_user) = match hint.strip_prefix("user:") {
                Some(_) => (
                    client_auth::load(st, &hint)
                        .await?
                        .and_then(|p| p.row.role.clone()),
                    true,
                ),
                None => (None, false),
            };
            let named = if is_user {
                approval::may_vote(&a.approvers, &hint, role.as_deref())
            } else {
                a.approvers.contains(&hint)
            };
            if !named {
                return Err(OAuthError::ciba(
                    "unknown_user_id",
                    format!(
                        "the policy holds this call for {} (quorum {}): login_hint must be one of them",
                        a.approvers.join(", "),
                        a.quorum
                    ),
                ));
            }
            (a.approvers, a.quorum.max(1))
        }
        Verdict::Deny { .. } => {
            return Err(OAuthError::ciba(
                "access_denied",
                format!(
                    "the policy refuses this call, approved or not: {} (decision {})",
                    decision.reasons_line(),
                    decision.decision_id()
                ),
            ))
        }
    };
    let digest = arguments_sha256(&call.arguments)
        .map_err(|e| OAuthError::ciba("invalid_authorization_details", e))?;
    let recorded = mandate_audit::event::recorded_action(
        st.audit_log.hmac_key(),
        &json!({"kind": "mcp", "server": call.server, "tool": call.tool, "arguments": call.arguments}),
        &[],
        false,
        &mandate_core::secrets::looks_like_secret_value,
    );
    let ask =
        Ask {
            binding: Binding {
                chain: vec![who.clone()],
                upstream: call.server.clone(),
                tool: call.tool.clone(),
                arguments_sha256: digest,
                policy_version: POLICY_VERSION.into(),
            },
            requested_by: who.clone(),
            jti: format!("ciba:{}", client_auth_jti(&client)),
            approval: mandate_policy::Approval {
                approvers,
                quorum,
                reason: Some(message.unwrap_or_else(|| {
                    format!("{who} asks to run {} on {}", call.tool, call.server)
                })),
                expires_in: Some(expiry),
            },
            decision_id: POLICY_VERSION.into(),
            call: recorded,
        };
    let desk = crate::approvals::Desk::new(st.clone());
    // Counted and opened under the desk's lock, so concurrent requests cannot pass the cap.
    let opening = st.approvals_lock.lock().await;
    let opened = desk.open(&ask, now).await;
    drop(opening);
    let a = match opened {
        Ok(Ok(a)) => a,
        Ok(Err(why)) => return Err(OAuthError::ciba("access_denied", why)),
        Err(e) => {
            return Err(OAuthError::server_error(
                "the approval request could not be opened",
                e,
            ))
        }
    };
    tracing::info!(approval = %a.id, client = %who, "backchannel authentication requested");
    let mut r = Json(json!({
        "auth_req_id": a.id,
        "expires_in": a.expires_at - now,
        "interval": INTERVAL,
    }))
    .into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// The assertion's jti (what the request is recorded under).
fn client_auth_jti(c: &Client) -> String {
    c.single_use
        .first()
        .map(|(j, _)| j.rsplit(':').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// `login_hint`: an existing user (not the caller) or a role Mandate knows.
async fn login_hint(st: &AppState, hint: &str, caller: &str) -> Result<String, OAuthError> {
    if let Some(role) = hint.strip_prefix("role:") {
        if role == "approver" || role == "admin" {
            return Ok(hint.to_string());
        }
        return Err(OAuthError::ciba(
            "unknown_user_id",
            "login_hint role must be role:approver or role:admin",
        ));
    }
    if hint.starts_with("user:") && hint != caller {
        if let Some(p) = client_auth::load(st, hint).await? {
            if !p.row.disabled {
                return Ok(hint.to_string());
            }
        }
    }
    Err(OAuthError::ciba(
        "unknown_user_id",
        "login_hint must name an enabled user other than the caller (user:NAME) or a role (role:approver)",
    ))
}

/// The claims of the mandate a CIBA approval buys for `tool` on `server`: the caller's own,
/// DPoP-bound, scope the tool's, audience the upstream's, until `until` (at most
/// [`MANDATE_TTL`]), with `detail` (the action as approvers saw it, its arguments' RFC 8785
/// digest, which binds it, and the request's id) as its `authorization_details`. Arguments
/// appear as recorded (secrets redacted): the mandate is a credential that travels, and the
/// digest is what the gateway matches.
#[allow(clippy::too_many_arguments)]
fn mint_claims(
    st: &AppState,
    client: &Client,
    jkt: Option<&str>,
    server: &str,
    tool: &str,
    detail: Value,
    now: i64,
    until: i64,
) -> Result<mandate_core::MandateClaims, OAuthError> {
    let (scope, audience) = scope_and_audience(st, server, tool);
    let scope = scope.map_err(|e| OAuthError::ciba("invalid_authorization_details", e))?;
    let to = crate::token::grantee(&client.principal, jkt);
    let jti = mandate_core::claims::new_jti(&mut rand::rngs::OsRng);
    let req = Request {
        scopes: Some(
            ScopeSet::parse(&scope)
                .map_err(|e| OAuthError::ciba("invalid_authorization_details", e.to_string()))?,
        ),
        audiences: vec![audience],
        ttl: Some((until - now).clamp(1, MANDATE_TTL)),
        may_act: None,
    };
    let mint = Mint {
        issuer: &st.cfg.issuer,
        jti: &jti,
        now,
    };
    let mut claims = delegation::client_credentials(mint, to, req)?;
    claims.authorization_details = Some(vec![detail]);
    Ok(claims)
}

/// The token endpoint's CIBA grant: the mandate, once the request is approved; the CIBA errors
/// until then. Returns the claims to issue and the request's id.
pub async fn claims_for(
    st: &AppState,
    form: &Form,
    client: &Client,
    now: i64,
) -> Result<(mandate_core::MandateClaims, String), OAuthError> {
    let id = form.required("auth_req_id")?;
    let unknown = || OAuthError::invalid_grant("auth_req_id is unknown, or not this client's");
    if !approval::is_id(id) {
        return Err(unknown());
    }
    let a = st
        .store
        .approval(id)
        .await
        .map_err(|e| OAuthError::server_error("approval lookup failed", e))?
        .ok_or_else(unknown)?;
    // Only what /bc-authorize opened: a request a gateway run apart asserted is never turned
    // into a mandate, whatever it says of itself.
    if a.decision_id != POLICY_VERSION
        || a.policy_version != POLICY_VERSION
        || a.asserted_by.is_some()
        || a.requested_by != client.principal.name.to_string()
    {
        return Err(unknown());
    }
    if a.released_at.is_some() {
        return Err(OAuthError::invalid_grant(
            "this auth_req_id's approval was already used for its call",
        ));
    }
    if st.ciba_polls.too_soon(id, crate::audit::now_ms()) {
        return Err(OAuthError::ciba(
            "slow_down",
            format!("poll at most every {INTERVAL} seconds"),
        ));
    }
    let state = ApprovalState::parse(&a.state)
        .ok_or_else(|| OAuthError::server_error("corrupt approval", &a.id))?;
    match state {
        ApprovalState::Pending if a.expires_at > now => Err(OAuthError::ciba(
            "authorization_pending",
            format!("waiting for {} to approve", approvers_of(&a)),
        )),
        ApprovalState::Pending | ApprovalState::Expired => Err(OAuthError::ciba(
            "expired_token",
            "the request expired before it was approved: make a new one",
        )),
        ApprovalState::Denied | ApprovalState::Cancelled => {
            let v = a.votes.iter().find(|v| !v.approve);
            Err(OAuthError::ciba(
                "access_denied",
                format!(
                    "denied by {}: {}",
                    v.map_or("an approver", |v| v.voter.as_str()),
                    v.and_then(|v| v.reason.as_deref())
                        .unwrap_or("no reason given")
                ),
            ))
        }
        ApprovalState::Approved if a.expires_at <= now => Err(OAuthError::ciba(
            "expired_token",
            "the approval expired before the mandate was fetched: make a new request",
        )),
        ApprovalState::Approved => {
            // Checked before the approval is spent: a poll without a DPoP proof burns nothing.
            let jkt = crate::token::bound_key(client)?;
            // One mandate per approval, ever.
            let fresh = st
                .store
                .use_jti(&format!("ciba:{}", a.id), a.expires_at + 60)
                .await
                .map_err(|e| OAuthError::server_error("replay check failed", e))?;
            if !fresh {
                return Err(OAuthError::invalid_grant(
                    "this auth_req_id was already exchanged for a mandate",
                ));
            }
            let recorded: Value = serde_json::from_str(&a.call).unwrap_or(Value::Null);
            let detail = json!({
                "type": TOOL_CALL,
                "server": a.upstream,
                "tool": a.tool,
                "arguments": recorded.get("arguments").cloned().unwrap_or(json!({})),
                "arguments_sha256": a.arguments_sha256,
                "approval_id": a.id,
            });
            let claims = mint_claims(
                st,
                client,
                jkt.as_deref(),
                &a.upstream,
                &a.tool,
                detail,
                now,
                a.expires_at,
            )?;
            // What a gateway run apart proves when it spends this approval for the call.
            st.store
                .use_jti(&minted_key(&a.id, &claims.jti), a.expires_at + 60)
                .await
                .map_err(|e| OAuthError::server_error("replay check failed", e))?;
            Ok((claims, a.id.clone()))
        }
    }
}

/// The record that the mandate `jti` was issued for CIBA request `id` (kept as a used jti until
/// the request expires): a gateway run apart spends the approval only with that mandate.
pub fn minted_key(id: &str, jti: &str) -> String {
    format!("ciba-mandate:{id}:{jti}")
}

fn approvers_of(a: &mandate_store::StoredApproval) -> String {
    serde_json::from_str::<Vec<String>>(&a.approvers)
        .unwrap_or_default()
        .join(", ")
}

/// When each CIBA request was last polled, to answer `slow_down` (bounded: old entries go).
#[derive(Default)]
pub struct Polls(std::sync::Mutex<std::collections::HashMap<String, i64>>);

impl Polls {
    /// Whether `id` was polled less than [`INTERVAL`] seconds ago (recording this poll).
    pub fn too_soon(&self, id: &str, now_ms: i64) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 10_000 {
            m.retain(|_, t| now_ms - *t < 60_000);
        }
        let last = m.insert(id.to_string(), now_ms);
        // A little slack for clients that poll on the dot.
        last.is_some_and(|t| now_ms - t < INTERVAL * 1000 - 250)
    }
}

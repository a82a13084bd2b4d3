//! The gateway over HTTP: MCP Streamable HTTP at `/mcp/NAME`, each upstream's RFC 9728 metadata,
//! and `/metrics` (plain HTTP APIs at `/http/NAME/...` are [`crate::http_api`]). Every request goes through [`Gateway`]'s steps in order (authenticate,
//! rate-limit, judge each message, record, inject, forward); see [`mcp_endpoint`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use mandate_core::refusal::jsonrpc as codes;
use mandate_core::{MandateClaims, ScopeSet};
use serde_json::{json, Value};

use crate::challenge::{self, Challenge};
use crate::gateway::{visible, Gateway, Judgement, Presented, BODY_COUNTS};
use crate::jsonrpc::{self, Body as RpcBody, Message, RpcError};
use crate::mcp::{self, Call, ListKind};
use crate::stdio::StdioError;
use crate::upstream::{Link, Upstream};

mod forward;
pub(crate) use forward::{compressed, scrubbed_body, scrubber_for, upstream_error, without_url};
use forward::{forward_http, forward_stdio};

/// Request headers passed to an MCP upstream (everything else, `Authorization` and `DPoP` first
/// of all, stays at the gateway). `Last-Event-ID` is not: resuming a stream would replay answers
/// (a list's whole result) without the gateway's filtering.
const FORWARDED_REQUEST_HEADERS: [&str; 6] = [
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
];
/// Response headers passed back from an MCP upstream.
const FORWARDED_RESPONSE_HEADERS: [&str; 4] = [
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "cache-control",
];

/// MCP revisions the gateway knows; an `initialize` asking for one of them is answered with it.
pub const KNOWN_REVISIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// What the gateway answers an `initialize` of a stdio upstream with when neither the client's
/// revision nor the child's is one it knows (the stateless 2026-07-28 revision is chosen by
/// clients that want it, never by default).
pub const LATEST_STATEFUL_REVISION: &str = "2025-11-25";

/// The gateway's routes (merged into the authority's router in one process).
pub fn routes(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/mcp/{name}", any(mcp_endpoint))
        .route("/http/{name}", any(crate::http_api::http_endpoint))
        .route("/http/{name}/{*rest}", any(crate::http_api::http_endpoint))
        .route(
            "/.well-known/oauth-protected-resource/mcp/{name}",
            get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/http/{name}",
            get(crate::http_api::http_resource_metadata),
        )
        .route("/metrics", get(metrics))
        .with_state(gw)
}

/// `GET /metrics` (Prometheus text).
async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    let ups: Vec<crate::metrics::UpstreamHealth> = gw
        .upstreams
        .all()
        .iter()
        .map(|u| {
            let (starts, killed) = match &u.link {
                Link::Stdio(s) => (
                    s.starts.load(std::sync::atomic::Ordering::Relaxed),
                    s.killed.load(std::sync::atomic::Ordering::Relaxed),
                ),
                Link::Http(_) => (0, 0),
            };
            crate::metrics::UpstreamHealth {
                name: u.name.clone(),
                kind: u.checked.transport.kind(),
                up: u.is_up(),
                starts,
                killed,
                sandboxed: u.checked.sandbox.is_some(),
            }
        })
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(&ups),
    )
        .into_response()
}

/// The resource URL of upstream `name`.
fn resource_url(gw: &Gateway, name: &str) -> String {
    format!("{}/mcp/{name}", gw.settings.public_url)
}

/// RFC 9728 metadata of an MCP upstream.
async fn resource_metadata(State(gw): State<Arc<Gateway>>, Path(name): Path<String>) -> Response {
    let Some(up) = gw
        .upstreams
        .get(&name)
        .filter(|u| u.checked.transport.is_mcp())
    else {
        return not_found(&name);
    };
    metadata_response(&gw, &up, &resource_url(&gw, &up.name))
}

/// The RFC 9728 metadata document of `up` served at `resource`.
pub(crate) fn metadata_response(gw: &Gateway, up: &Upstream, resource: &str) -> Response {
    let mut scopes = vec![format!("{}:*", up.name)];
    scopes.extend(up.config.scopes.iter().map(|r| r.scope.clone()));
    scopes.dedup();
    Json(challenge::protected_resource_metadata(
        resource,
        &gw.settings.authorization_server,
        &scopes,
    ))
    .into_response()
}

use axum::Json;

pub(crate) fn not_found(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "not_found", "error_description": format!("no upstream called {name:?} is served here (see `mandate upstream list`)")})),
    )
        .into_response()
}

pub(crate) fn challenge_response(c: Challenge) -> Response {
    let mut r = (
        StatusCode::from_u16(c.status).unwrap_or(StatusCode::UNAUTHORIZED),
        Json(c.body),
    )
        .into_response();
    for v in c.www_authenticate {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().append(header::WWW_AUTHENTICATE, v);
        }
    }
    r
}

/// `429` with `Retry-After` and a `-32029` error: `principal` is over its rate.
fn rate_limited(principal: &str, retry: u64, note: &str) -> Response {
    let e = RpcError::new(
        codes::RATE_LIMITED,
        format!("{principal} is over its call rate through the gateway{note}; retry in {retry} s"),
    );
    let mut r = rpc_response(StatusCode::TOO_MANY_REQUESTS, e.response(&Value::Null));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry));
    r
}

pub(crate) fn rpc_response(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// `/mcp/NAME`: POST carries JSON-RPC messages; GET opens the upstream's server-to-client stream;
/// DELETE ends a session.
pub async fn mcp_endpoint(
    State(gw): State<Arc<Gateway>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let Some(up) = gw
        .upstreams
        .get(&name)
        .filter(|u| u.checked.transport.is_mcp())
    else {
        return not_found(&name);
    };
    let (parts, body) = req.into_parts();
    // 1. Authenticate.
    let url = resource_url(&gw, &up.name);
    let presented = Presented {
        headers: &parts.headers,
        method: &parts.method,
        url: &url,
        audience: &up.checked.audience,
        peer,
    };
    let claims = match gw.authenticate(&presented).await {
        Ok(c) => c,
        Err(r) => {
            gw.metrics
                .call(&up.name, "unauthenticated", started.elapsed());
            let rm = challenge::metadata_url(&url);
            if r.code.is_unavailable() {
                let mut resp = rpc_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    RpcError::new(
                        codes::UNAVAILABLE,
                        format!("mandate not checked ({}): {}", r.code, r.message),
                    )
                    .response(&Value::Null),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return resp;
            }
            return challenge_response(challenge::unauthenticated(Some(r.code), &r.message, &rm));
        }
    };
    // 2. Rate-limit, per agent.
    if let Err(retry) = gw.rate_limit(&claims.client_id) {
        gw.metrics.call(&up.name, "rate_limited", started.elapsed());
        return rate_limited(&claims.client_id, retry, "");
    }
    // A session belongs to the caller that opened it.
    let session = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(s) = &session {
        if !gw.sessions.owned_by(s, &session_owner(&claims)) {
            let why = "unknown MCP session for this caller: send initialize without Mcp-Session-Id to start one";
            // On record like every refusal of an authenticated caller (its rate bounds them).
            gw.record_refused_request(
                &up,
                &claims,
                "mcp.session",
                &up.name,
                "unknown_session",
                why,
            )
            .await;
            gw.metrics.call(&up.name, "invalid", started.elapsed());
            return rpc_response(
                StatusCode::NOT_FOUND,
                RpcError::new(codes::INVALID_REQUEST, why).response(&Value::Null),
            );
        }
    }
    if let Err((status, code, why)) = transport_headers(&parts.method, &parts.headers) {
        gw.record_refused_request(&up, &claims, "mcp.invalid", &up.name, code, &why)
            .await;
        gw.metrics.call(&up.name, "invalid", started.elapsed());
        return rpc_response(
            status,
            RpcError::invalid_request(why).response(&Value::Null),
        );
    }
    match parts.method {
        Method::POST => {}
        Method::GET | Method::DELETE => {
            return match &up.link {
                Link::Http(u) => {
                    if parts.method == Method::DELETE {
                        if let Some(s) = &session {
                            gw.sessions.forget(s);
                        }
                    }
                    let forwarded = match gw.forwarded_mandate(&up, &claims, &[]) {
                        Ok(f) => f.map(|(_, v)| v),
                        Err(e) => {
                            return rpc_response(
                                StatusCode::SERVICE_UNAVAILABLE,
                                e.response(&Value::Null),
                            )
                        }
                    };
                    let r = forward_http(
                        &gw,
                        &up,
                        u,
                        &claims,
                        &parts.method,
                        &parts.headers,
                        Bytes::new(),
                        None,
                        forwarded,
                        &Value::Null,
                    )
                    .await;
                    watch_stream(&gw, &claims, r.response)
                }
                // A stdio upstream has no stream of its own for callers, and no sessions.
                Link::Stdio(_) => {
                    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response()
                }
            };
        }
        _ => {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "GET, POST, DELETE")],
            )
                .into_response()
        }
    }
    let bytes = match axum::body::to_bytes(body, gw.settings.max_body).await {
        Ok(b) => b,
        Err(_) => {
            gw.metrics.call(&up.name, "invalid", started.elapsed());
            return rpc_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                RpcError::invalid_request(format!(
                    "the request body is larger than {} bytes, or did not arrive",
                    gw.settings.max_body
                ))
                .response(&Value::Null),
            );
        }
    };
    if let Some(refused) = cut_off_after_body(&gw, &up, &claims, "mcp.request", &url, started).await
    {
        return refused;
    }
    let resp = post(&gw, &up, &claims, &parts.headers, bytes, peer).await;
    resp.into_response()
}

/// Why a call's answer was not passed on, for the audit log.
pub(crate) const WITHHELD: &str = "the caller's mandate was revoked or expired while the call was in flight; the upstream's answer was withheld";

/// Waits for `forwarding` unless the caller's mandate stops being good first (revoked or
/// expired, checked every 250 ms): `None` then, and the call's answer is withheld, as an open
/// stream is closed. The upstream may have acted on the call; its audit event says so.
pub(crate) async fn unless_invalidated<T>(
    gw: &Arc<Gateway>,
    claims: &MandateClaims,
    forwarding: impl std::future::Future<Output = T>,
) -> Option<T> {
    // Most calls answer well within the first interval: they pay for one timer, not for a copy
    // of the claims.
    let watch = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        gw.until_invalid(claims.clone()).await
    };
    tokio::select! {
        biased;
        r = forwarding => Some(r),
        () = watch => None,
    }
}

/// Once a request's body has arrived (seconds, perhaps, after its headers were authenticated):
/// its mandate checked again. `Some` is the answer when it is no longer good, the refusal recorded
/// under `label`; nothing is then judged or forwarded.
pub(crate) async fn cut_off_after_body(
    gw: &Gateway,
    up: &Upstream,
    claims: &MandateClaims,
    label: &str,
    resource_url: &str,
    started: Instant,
) -> Option<Response> {
    if gw.still_valid(claims) {
        return None;
    }
    let why = "the mandate was revoked or expired while the request's body was arriving; nothing was forwarded";
    gw.record_refused_request(up, claims, label, &up.name, "invalid_token", why)
        .await;
    gw.metrics
        .call(&up.name, "unauthenticated", started.elapsed());
    Some(cut_off(claims, resource_url, Moment::Arriving))
}

/// When a request's mandate stopped being good.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Moment {
    /// While its body was arriving (authenticated by its headers, nothing forwarded yet).
    Arriving,
    /// While the call was in flight at the upstream.
    InFlight,
}

/// The answer to a request whose mandate stopped being good after its headers were
/// authenticated: 401 with the reason, as the next call with that mandate gets.
pub(crate) fn cut_off(claims: &MandateClaims, resource_url: &str, when: Moment) -> Response {
    let expired = claims.exp <= crate::gateway::now();
    let code = if expired {
        mandate_core::RefusalCode::Expired
    } else {
        mandate_core::RefusalCode::Revoked
    };
    let what = if expired { "expired" } else { "was revoked" };
    let why = match when {
        Moment::Arriving => format!(
            "the mandate {what} while the request's body was arriving, so nothing was forwarded"
        ),
        Moment::InFlight => format!(
            "the mandate {what} while the call was in flight, so the upstream's answer was withheld"
        ),
    };
    challenge_response(challenge::unauthenticated(
        Some(code),
        &why,
        &challenge::metadata_url(resource_url),
    ))
}

/// An SSE answer stays open only while its mandate is good: it ends within a second of the
/// mandate's revocation or expiry. (Other answers are whole and need no watch.)
fn watch_stream(gw: &Arc<Gateway>, claims: &MandateClaims, r: Response) -> Response {
    use futures_util::StreamExt;
    let is_sse = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_sse {
        return r;
    }
    let (parts, body) = r.into_parts();
    let stream = body
        .into_data_stream()
        .take_until(Box::pin(gw.until_invalid(claims.clone())));
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Who a session belongs to: the holder acting for the subject (credentials are chosen per
/// subject, so a session opened for alice is not reused for bob, even by the same agent).
fn session_owner(claims: &MandateClaims) -> String {
    format!("{} for {}", claims.client_id, claims.sub)
}

/// What one POST amounts to, for metrics.
struct Answer {
    response: Response,
    outcome: &'static str,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        self.response
    }
}

async fn post(
    gw: &Arc<Gateway>,
    up: &Arc<Upstream>,
    claims: &MandateClaims,
    headers: &HeaderMap,
    bytes: Bytes,
    peer: Option<SocketAddr>,
) -> Response {
    let started = Instant::now();
    let a = post_inner(gw, up, claims, headers, bytes, peer).await;
    gw.metrics.call(&up.name, a.outcome, started.elapsed());
    a.response
}

async fn post_inner(
    gw: &Arc<Gateway>,
    up: &Arc<Upstream>,
    claims: &MandateClaims,
    headers: &HeaderMap,
    bytes: Bytes,
    peer: Option<SocketAddr>,
) -> Answer {
    let invalid = |e: RpcError| Answer {
        response: rpc_response(StatusCode::BAD_REQUEST, e.response(&Value::Null)),
        outcome: "invalid",
    };
    // Refused before any message could be judged: recorded all the same (the caller is
    // authenticated, and its rate bounds what it can make us write).
    let refuse_body = |e: RpcError| async move {
        let code = codes::name(e.code);
        gw.record_refused_request(up, claims, "mcp.invalid", &up.name, code, &e.message)
            .await;
        invalid(e)
    };
    // A large body counts as more calls: by its bytes before it is parsed (a refusal for the
    // rate then costs no parsing), then by its JSON values for what the bytes did not cover.
    let by_bytes = match gw.rate_limit_bytes(&claims.client_id, bytes.len()) {
        Ok(n) => n,
        Err(retry) => {
            return Answer {
                response: rate_limited(&claims.client_id, retry, BODY_COUNTS),
                outcome: "rate_limited",
            }
        }
    };
    let (items, batch, values) = match jsonrpc::parse_counted(&bytes) {
        Ok((RpcBody::Single(m), n)) => (vec![Ok(m)], false, n),
        Ok((RpcBody::Batch(v), n)) => (v, true, n),
        Err(e) => return refuse_body(e).await,
    };
    // A batch member that is not a message is answered with its error, and (like any refusal in
    // a batch) keeps the rest from being forwarded.
    let malformed: Vec<Option<RpcError>> =
        items.iter().map(|i| i.as_ref().err().cloned()).collect();
    let messages: Vec<Message> = items
        .into_iter()
        .map(|i| {
            i.unwrap_or_else(|_| {
                Message::Notification(jsonrpc::Notification {
                    method: String::new(),
                    params: None,
                })
            })
        })
        .collect();
    // Every message of a batch is a call against the agent's rate (one was taken already).
    if messages.len() > 1 {
        if let Err(retry) = gw.rate_limit_more(&claims.client_id, messages.len() - 1) {
            return Answer {
                response: rate_limited(&claims.client_id, retry, " (a batch counts each message)"),
                outcome: "rate_limited",
            };
        }
    }
    let already = messages.len() + by_bytes;
    if let Err(retry) = gw.rate_limit_values(&claims.client_id, bytes.len(), values, already) {
        return Answer {
            response: rate_limited(&claims.client_id, retry, BODY_COUNTS),
            outcome: "rate_limited",
        };
    }
    // The 2026-07-28 revision routes on `Mcp-Method` / `Mcp-Name`: they must say what the body
    // says, or infrastructure routing on headers and the policy deciding on the body would see
    // two different calls.
    if let Err(e) = headers_agree(headers, &messages) {
        return refuse_body(e).await;
    }
    // 3-4. Judge every request message.
    let mut judged = Vec::with_capacity(messages.len());
    for (m, bad) in messages.iter().zip(&malformed) {
        if let Some(e) = bad {
            judged.push(Some(crate::gateway::Judged {
                judgement: Judgement::Refused(e.clone()),
                event: None,
            }));
            continue;
        }
        let j = match m {
            Message::Request(r) => match mcp::classify(r) {
                Ok(call) => Some(
                    gw.judge(up, claims, &r.method, r.params.as_ref(), call, peer, &bytes)
                        .await,
                ),
                Err(e) => Some(crate::gateway::Judged {
                    judgement: Judgement::Refused(e),
                    event: None,
                }),
            },
            Message::Notification(n)
                if !crate::gateway::PASSED_NOTIFICATIONS.contains(&n.method.as_str()) =>
            {
                let why = format!("unknown notification {:?}: not forwarded", n.method);
                Some(crate::gateway::Judged {
                    judgement: Judgement::Refused(RpcError::new(codes::METHOD_NOT_FOUND, why)),
                    event: None,
                })
            }
            _ => None,
        };
        // A message refused before it could be judged gets its event here.
        let j = j.map(|mut j| {
            if let (Judgement::Refused(e), None) = (&j.judgement, &j.event) {
                let method = match m {
                    Message::Request(r) => r.method.as_str(),
                    Message::Notification(n) => n.method.as_str(),
                    Message::Response(_) => "",
                };
                let label = format!("mcp.{}", if method.is_empty() { "invalid" } else { method });
                j.event = Some(gw.refused_request(
                    up,
                    claims,
                    &label,
                    &up.name,
                    codes::name(e.code),
                    &e.message,
                ));
            }
            j
        });
        judged.push(j);
    }
    let refused = judged.iter().flatten().any(|j| {
        matches!(
            j.judgement,
            Judgement::Refused(_) | Judgement::NeedsScope { .. }
        )
    });
    // A single call outside the mandate's scopes: 403 insufficient_scope, so the client can step up.
    if !batch {
        if let Some(Some(j)) = judged.first_mut() {
            if let Judgement::NeedsScope { scope, message } = &j.judgement {
                let (scope, message) = (scope.clone(), message.clone());
                if let Some(ev) = j.event.take() {
                    if let Err(e) = gw.record(&ev).await {
                        return unavailable(e, &messages[0]);
                    }
                }
                let rm = challenge::metadata_url(&resource_url(gw, &up.name));
                return Answer {
                    response: challenge_response(challenge::insufficient_scope(
                        &scope, &message, &rm,
                    )),
                    outcome: "scope",
                };
            }
        }
    }
    // 5a. An upstream that checks chains itself gets a mandate minted for this request; its jti
    //     is in the events, so the upstream's records and ours meet.
    let forwarded = match (refused, &up.link) {
        (false, Link::Http(_)) => {
            let scopes: Vec<&str> = judged
                .iter()
                .flatten()
                .filter_map(|j| match &j.judgement {
                    Judgement::Allowed { scope } => Some(scope.as_str()),
                    _ => None,
                })
                .collect();
            match gw.forwarded_mandate(up, claims, &scopes) {
                Ok(f) => f,
                Err(e) => return unavailable(e, &messages[0]),
            }
        }
        _ => None,
    };
    if let Some((jti, _)) = &forwarded {
        for ev in judged.iter_mut().flatten().filter_map(|j| j.event.as_mut()) {
            ev.details
                .insert("forwarded_mandate".into(), Value::String(jti.clone()));
        }
    }
    // 5. Record every decided message before anything is forwarded. A batch with any refusal is
    //    not forwarded at all (its allowed members are recorded as refused with the reason).
    let mut allowed_events = vec![];
    for (i, j) in judged.iter_mut().enumerate() {
        let Some(j) = j else { continue };
        if refused
            && matches!(
                j.judgement,
                Judgement::Allowed { .. } | Judgement::List(_) | Judgement::Pass
            )
        {
            let why = "not forwarded: another message of this batch was refused";
            if let Some(ev) = j.event.take() {
                let ev = ev.refused("batch_refused", why);
                j.event = Some(ev);
            }
            j.judgement = Judgement::Refused(RpcError::new(codes::FORBIDDEN, why));
        }
        if let Some(ev) = &j.event {
            if let Err(e) = gw.record(ev).await {
                return unavailable(e, &messages[i]);
            }
            // One structured line per decided call: ids only, never arguments or tokens.
            tracing::info!(
                upstream = %up.name,
                principal = %ev.principal,
                jti = ev.jti.as_deref().unwrap_or(""),
                resource = %crate::gateway::events::log_resource(ev),
                result = %ev.result,
                decision = ev.decision.as_deref().unwrap_or(""),
                decision_id = ev.decision_id.as_deref().unwrap_or(""),
                event = %ev.id,
                "gateway call"
            );
            // Forwarded and decided (a call or a list): a failure at the upstream is recorded
            // against it.
            if matches!(j.judgement, Judgement::Allowed { .. } | Judgement::List(_)) {
                allowed_events.push(ev.clone());
            }
        }
    }
    let outcome = outcome_of(&judged);
    if refused {
        let answers: Vec<Value> = messages
            .iter()
            .zip(&judged)
            .filter_map(|(m, j)| match (m, j) {
                (
                    Message::Notification(_),
                    Some(crate::gateway::Judged {
                        judgement: Judgement::Refused(e),
                        ..
                    }),
                ) => Some(e.response(&Value::Null)),
                (Message::Request(r), Some(j)) => Some(match &j.judgement {
                    Judgement::Refused(e) => e.response(&r.id),
                    Judgement::NeedsScope { message, .. } => {
                        RpcError::new(codes::FORBIDDEN, message.clone()).response(&r.id)
                    }
                    _ => RpcError::new(codes::FORBIDDEN, "not forwarded").response(&r.id),
                }),
                _ => None,
            })
            .collect();
        let body = if batch {
            Value::Array(answers)
        } else {
            answers.into_iter().next().unwrap_or(Value::Null)
        };
        // A refused lone notification has no request to answer: the HTTP status says it.
        let status = if !batch && !matches!(messages.first(), Some(Message::Request(_))) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        return Answer {
            response: rpc_response(status, body),
            outcome,
        };
    }
    // A batch's answers from an HTTP upstream are passed through as they come; a list among
    // them could not be filtered, so such a batch is refused (send lists one per request).
    if batch
        && matches!(up.link, Link::Http(_))
        && judged
            .iter()
            .flatten()
            .any(|j| matches!(j.judgement, Judgement::List(_)))
    {
        let e = RpcError::invalid_request("send list requests (tools/list, resources/list, prompts/list) one per request through the gateway, not in a batch");
        return Answer {
            response: rpc_response(StatusCode::BAD_REQUEST, e.response(&Value::Null)),
            outcome: "invalid",
        };
    }
    // 6. Inject and forward.
    let list = match (batch, judged.first()) {
        (false, Some(Some(j))) => match j.judgement {
            Judgement::List(k) => Some(k),
            _ => None,
        },
        _ => None,
    };
    // A lone request's own errors answer its id (a batch's, the whole body's: null).
    let reply_id = match messages.as_slice() {
        [Message::Request(r)] if !batch => r.id.clone(),
        _ => Value::Null,
    };
    let forwarding = async {
        match &up.link {
            Link::Http(u) => {
                let forwarded = forwarded.map(|(_, v)| v);
                let f = forward_http(
                    gw,
                    up,
                    u,
                    claims,
                    &Method::POST,
                    headers,
                    bytes,
                    list,
                    forwarded,
                    &reply_id,
                )
                .await;
                if let Some(why) = &f.failure {
                    for ev in &allowed_events {
                        gw.record_failure(ev, why).await;
                    }
                }
                (f.response, true)
            }
            Link::Stdio(_) => (
                forward_stdio(gw, up, claims, &messages, batch, &allowed_events).await,
                false,
            ),
        }
    };
    let response = match unless_invalidated(gw, claims, forwarding).await {
        Some((r, true)) => {
            let r = watch_stream(gw, claims, r);
            // The session an initialize opened belongs to this caller.
            if messages
                .iter()
                .any(|m| matches!(m, Message::Request(r) if r.method == "initialize"))
            {
                if let Some(s) = r
                    .headers()
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                {
                    gw.sessions
                        .record(s, &session_owner(claims), &claims.client_id);
                }
            }
            r
        }
        Some((r, false)) => r,
        None => {
            for ev in &allowed_events {
                gw.record_failure(ev, WITHHELD).await;
            }
            return Answer {
                response: cut_off(claims, &resource_url(gw, &up.name), Moment::InFlight),
                outcome: "unauthenticated",
            };
        }
    };
    let outcome = if response.status().is_server_error() {
        "upstream_error"
    } else {
        outcome
    };
    Answer { response, outcome }
}

fn outcome_of(judged: &[Option<crate::gateway::Judged>]) -> &'static str {
    let mut outcome = "allowed";
    for j in judged.iter().flatten() {
        match &j.judgement {
            Judgement::Refused(e) if e.code == codes::APPROVAL_REQUIRED => return "approval",
            Judgement::Refused(_) => outcome = "denied",
            Judgement::NeedsScope { .. } => outcome = "scope",
            _ => {}
        }
    }
    outcome
}

fn unavailable(e: RpcError, m: &Message) -> Answer {
    let id = match m {
        Message::Request(r) => r.id.clone(),
        _ => Value::Null,
    };
    let mut response = rpc_response(StatusCode::SERVICE_UNAVAILABLE, e.response(&id));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Answer {
        response,
        outcome: "unavailable",
    }
}

/// The Streamable HTTP transport's headers: an `MCP-Protocol-Version` the gateway does not know
/// is `400` (the transport says so: the gateway could not tell what its methods mean), and a POST
/// whose `Content-Type` is not JSON is `415`. (A POST without one is read as JSON.)
fn transport_headers(
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str, String)> {
    if let Some(v) = headers.get("mcp-protocol-version") {
        let v = v.to_str().unwrap_or("");
        if !KNOWN_REVISIONS.contains(&v) {
            return Err((
                StatusCode::BAD_REQUEST,
                "unsupported_protocol_version",
                format!(
                    "unsupported MCP-Protocol-Version {:?}: this gateway speaks {}",
                    v.chars().take(40).collect::<String>(),
                    KNOWN_REVISIONS.join(", ")
                ),
            ));
        }
    }
    if *method == Method::POST {
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            let media = ct.to_str().unwrap_or("").split(';').next().unwrap_or("");
            if !media.trim().eq_ignore_ascii_case("application/json") {
                return Err((
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "Content-Type must be application/json: the body is a JSON-RPC message or batch"
                        .to_string(),
                ));
            }
        }
    }
    Ok(())
}

/// `Mcp-Method` and `Mcp-Name`, when sent, must match the one request in the body.
fn headers_agree(headers: &HeaderMap, messages: &[Message]) -> Result<(), RpcError> {
    let get = |h: &str| {
        headers
            .get(h)
            .map(|v| v.to_str().unwrap_or("\u{fffd}").to_string())
    };
    let (method, name) = (get("mcp-method"), get("mcp-name"));
    if method.is_none() && name.is_none() {
        return Ok(());
    }
    let [Message::Request(r)] = messages else {
        if let ([Message::Notification(n)], Some(m)) = (messages, &method) {
            if &n.method == m && name.is_none() {
                return Ok(());
            }
        }
        return Err(RpcError::invalid_request(
            "Mcp-Method / Mcp-Name headers go with a body of one message that matches them",
        ));
    };
    if let Some(m) = &method {
        if m != &r.method {
            return Err(RpcError::invalid_request(format!(
                "the Mcp-Method header says {m:?} but the body's method is {:?}",
                r.method
            )));
        }
    }
    if let Some(n) = &name {
        let params = r.params.as_ref();
        let body_name = ["name", "uri"]
            .iter()
            .find_map(|k| params.and_then(|p| p.get(*k)).and_then(Value::as_str));
        if body_name != Some(n.as_str()) {
            return Err(RpcError::invalid_request(format!(
                "the Mcp-Name header says {n:?} but the body names {:?}",
                body_name.unwrap_or("")
            )));
        }
    }
    Ok(())
}

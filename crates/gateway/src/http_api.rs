//! Plain HTTP APIs at `/http/NAME/...`: a request is decided as a call of the action its route
//! names, through the same steps as an MCP call (authenticate, rate-limit, scope, policy,
//! durable audit, inject, forward). No route, a path that could mean another one, or an argument
//! given twice: refused, never forwarded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mandate_core::refusal::jsonrpc as codes;
use serde_json::{json, Value};

use crate::challenge;
use crate::gateway::{Gateway, Judgement, Presented, BODY_COUNTS};
use crate::serve::{
    challenge_response, compressed, cut_off, cut_off_after_body, not_found, scrubbed_body,
    scrubber_for, unless_invalidated, upstream_error, without_url, Moment, WITHHELD,
};
use crate::upstream::{Link, Upstream};

/// RFC 9728 metadata of an HTTP API upstream.
pub async fn http_resource_metadata(
    State(gw): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Response {
    let Some(up) = gw
        .upstreams
        .get(&name)
        .filter(|u| !u.checked.transport.is_mcp())
    else {
        return not_found(&name);
    };
    crate::serve::metadata_response(
        &gw,
        &up,
        &format!("{}/http/{}", gw.settings.public_url, up.name),
    )
}

/// The route of `up` that `method` and `path` (below `/http/NAME`) match: its action.
pub fn route_action<'a>(up: &'a Upstream, method: &str, path: &str) -> Option<&'a str> {
    up.checked
        .routes
        .iter()
        .find(|r| {
            // Methods are case-sensitive (RFC 9110 9.1): `get` is not `GET`; the configuration's
            // spelling is taken upper-cased.
            (r.method == "*" || r.method.to_ascii_uppercase() == method)
                && path_matches(&r.path, path)
        })
        .map(|r| r.action.as_str())
}

/// Whether `path` names itself only: no `.`/`..`/empty segments (a trailing `/` aside), no
/// backslash, no percent-encoded `.`, `/` or `\`.
pub fn plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    // `;` (path parameters: `..;` is `..` to some servers) and `%25` (double encoding) too.
    if lower.contains('\\')
        || lower.contains(';')
        || ["%2e", "%2f", "%5c", "%00", "%25"]
            .iter()
            .any(|e| lower.contains(e))
    {
        return false;
    }
    // One leading `/` only: `//items` has an empty first segment, and is refused like `a//b`.
    let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let last = segs.len() - 1;
    segs.iter()
        .enumerate()
        .all(|(i, s)| !matches!(*s, "." | "..") && (!s.is_empty() || i == last))
}

/// `*` matches one path segment, `**` (last) any rest, anything else itself.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let got: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for (i, p) in pat.iter().enumerate() {
        if *p == "**" && i == pat.len() - 1 {
            return got.len() >= i;
        }
        match got.get(i) {
            Some(g) if *p == "*" && !g.is_empty() => {}
            Some(g) if p == g => {}
            _ => return false,
        }
    }
    got.len() == pat.len()
}

/// The query's parameters, decoded, in order; refused with a one-line reason when a name holds
/// `[` or `]` (after decoding): PHP, Rails and `qs` read `path[]=a` as an array and `a[b]=c` as
/// a nested key, a shape the policy, which sees the name as a plain string, never decided on.
pub fn query_arguments(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(q) = query else {
        return Ok(vec![]);
    };
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| {
            if k.contains(['[', ']']) {
                return Err(format!(
                    "query parameter {k:?} has '[' or ']', which upstreams may read as an array or a nested key: send plain names"
                ));
            }
            Ok((k.into_owned(), v.into_owned()))
        })
        .collect()
}

/// Why a GET or HEAD request cannot be forwarded with its body, if it has one (bytes,
/// `Content-Length` other than 0, or any `Transfer-Encoding`): such a request is decided on its
/// query alone, so a body would reach the upstream undecided.
pub fn body_without_decision(
    method: &http::Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<String> {
    if !matches!(*method, http::Method::GET | http::Method::HEAD) {
        return None;
    }
    let declared = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .any(|v| v.to_str().ok().map(str::trim) != Some("0"));
    (!body.is_empty() || declared || headers.contains_key(header::TRANSFER_ENCODING)).then(|| {
        format!("a {method} request is decided on its query alone, so it may carry no body: send the arguments in the query")
    })
}

/// Request headers passed to an HTTP API upstream (never `Authorization`, `DPoP` or cookies).
const FORWARDED_API_HEADERS: [&str; 4] =
    ["accept", "content-type", "accept-encoding", "if-none-match"];

/// `/http/NAME/...`: a plain HTTP API behind the same steps as an MCP call. The route the
/// method and path match names the action the policy decides (no route: refused, fail closed);
/// the arguments it sees are the query parameters, then the members of a JSON object body.
pub async fn http_endpoint(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let rest = path.strip_prefix("/http/").unwrap_or("");
    let (name, below) = match rest.split_once('/') {
        Some((n, b)) => (n.to_string(), format!("/{b}")),
        None => (rest.to_string(), "/".to_string()),
    };
    let Some(up) = gw
        .upstreams
        .get(&name)
        .filter(|u| !u.checked.transport.is_mcp())
    else {
        return not_found(&name);
    };
    let Link::Http(base) = &up.link else {
        return not_found(&name);
    };
    let url = format!("{}{}", gw.settings.public_url, path);
    let presented = Presented {
        headers: &parts.headers,
        method: &parts.method,
        url: &url,
        audience: &up.checked.audience,
        peer,
    };
    let resource = format!("{}/http/{}", gw.settings.public_url, up.name);
    let rm = challenge::metadata_url(&resource);
    let claims = match gw.authenticate(&presented).await {
        Ok(c) => c,
        Err(r) => {
            gw.metrics
                .call(&up.name, "unauthenticated", started.elapsed());
            return challenge_response(challenge::unauthenticated(Some(r.code), &r.message, &rm));
        }
    };
    if let Err(retry) = gw.rate_limit(&claims.client_id) {
        gw.metrics.call(&up.name, "rate_limited", started.elapsed());
        return too_many(&claims.client_id, retry, "");
    }
    let bytes = match axum::body::to_bytes(body, gw.settings.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(json!({"error": "invalid_request", "error_description": format!("the body is larger than {} bytes, or did not arrive", gw.settings.max_body)})),
            )
                .into_response()
        }
    };
    let method = parts.method.as_str().to_string();
    let label = format!("http.{method}");
    if let Some(refused) = cut_off_after_body(&gw, &up, &claims, &label, &resource, started).await {
        return refused;
    }
    // Every refusal below is of an authenticated caller, so it is recorded (bounded by its rate).
    let refuse = |status: StatusCode, outcome: &'static str, code: &'static str, why: String| {
        let (gw, up, claims, label) = (&gw, &up, &claims, &label);
        async move {
            gw.metrics.call(&up.name, outcome, started.elapsed());
            gw.record_refused_request(up, claims, label, &up.name, code, &why)
                .await;
            (
                status,
                Json(json!({"error": code, "error_description": why})),
            )
                .into_response()
        }
    };
    // A path that could mean another one at the upstream (`..`, `.`, an empty segment, or their
    // encodings) is refused: routes are decided on the path the upstream will serve.
    if !plain_path(&below) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid",
            "invalid_request",
            "the path has '.', '..' or empty segments, or encoded '.', '/' or '\\': send the plain path".into(),
        )
        .await;
    }
    let Some(action) = route_action(&up, &method, &below).map(str::to_string) else {
        let why = format!("no route of {} matches {method} {below}: only the routes its configuration maps to actions are served", up.name);
        return refuse(StatusCode::NOT_FOUND, "denied", "not_found", why).await;
    };
    // The arguments the policy sees must be the ones the upstream reads: a query key given
    // twice, or given in both the query and the body, could be read either way, so it is refused,
    // and so is a query name with brackets (an array or nested key to many frameworks) and a
    // body on a GET or HEAD (decided on the query alone).
    // The same holds for names that differ only in case (`path` and `Path`: some frameworks
    // match either), for a body the gateway cannot read as arguments (a form, an array, text: the
    // upstream would read what the policy never saw), and for method overrides (`_method`).
    let invalid = |why: String| refuse(StatusCode::BAD_REQUEST, "invalid", "invalid_request", why);
    if let Some(why) = body_without_decision(&parts.method, &parts.headers, &bytes) {
        return invalid(why).await;
    }
    let query = match query_arguments(parts.uri.query()) {
        Ok(q) => q,
        Err(why) => return invalid(why).await,
    };
    let mut arguments = serde_json::Map::new();
    let mut seen = std::collections::HashSet::new();
    let mut twice = None;
    let mut add = |k: String, v: Value, arguments: &mut serde_json::Map<String, Value>| {
        if !seen.insert(crate::jsonrpc::fold_case(&k)) {
            twice = Some(k.clone());
        }
        arguments.insert(k, v);
    };
    for (k, v) in query {
        add(k, Value::String(v), &mut arguments);
    }
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        // The upstream reads the body by its Content-Type, which is forwarded: one that says
        // form, multipart or text would be read otherwise than the JSON the policy saw.
        let json_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| {
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !json_type {
            return invalid(
                "a body is taken only as JSON: send it with Content-Type: application/json".into(),
            )
            .await;
        }
        // A large body counts as more calls: by its bytes before it is parsed, then by its
        // JSON values for what the bytes did not cover.
        let by_bytes = match gw.rate_limit_bytes(&claims.client_id, bytes.len()) {
            Ok(n) => n,
            Err(retry) => {
                gw.metrics.call(&up.name, "rate_limited", started.elapsed());
                return too_many(&claims.client_id, retry, BODY_COUNTS);
            }
        };
        let values = match crate::jsonrpc::check_member_names(&bytes) {
            Ok(n) => n,
            Err(why) => return invalid(why).await,
        };
        if let Err(retry) =
            gw.rate_limit_values(&claims.client_id, bytes.len(), values, 1 + by_bytes)
        {
            gw.metrics.call(&up.name, "rate_limited", started.elapsed());
            return too_many(&claims.client_id, retry, BODY_COUNTS);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(o)) => {
                for (k, v) in o {
                    add(k, v, &mut arguments);
                }
            }
            _ => return invalid("the body must be a JSON object (its members are the arguments the policy decides on) or empty".into()).await,
        }
    }
    if let Some(k) = twice {
        return invalid(format!("argument {k:?} is given more than once (in the query and the body, or in two cases): give each once")).await;
    }
    if arguments.keys().any(|k| k.eq_ignore_ascii_case("_method")) {
        return invalid(
            "method overrides (`_method`) are not forwarded: use the HTTP method itself".into(),
        )
        .await;
    }
    let mut judged = gw
        .judge_http(
            &up, &claims, &method, &below, &action, arguments, peer, &bytes,
        )
        .await;
    // An upstream that checks chains itself gets a mandate minted for this call (its jti in the
    // event), made before the event is recorded.
    let mut forwarded = None;
    if let Judgement::Allowed { scope } = &judged.judgement {
        match gw.forwarded_mandate(&up, &claims, &[scope.as_str()]) {
            Ok(f) => forwarded = f,
            Err(e) => {
                gw.metrics.call(&up.name, "unavailable", started.elapsed());
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(
                        json!({"error": "temporarily_unavailable", "error_description": e.message}),
                    ),
                )
                    .into_response();
            }
        }
    }
    if let (Some((jti, _)), Some(ev)) = (&forwarded, judged.event.as_mut()) {
        ev.details
            .insert("forwarded_mandate".into(), Value::String(jti.clone()));
    }
    if let Some(ev) = &judged.event {
        if gw.record(ev).await.is_err() {
            gw.metrics.call(&up.name, "unavailable", started.elapsed());
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "temporarily_unavailable", "error_description": "the audit log cannot be written, so the call was not forwarded; retry later"})),
            )
                .into_response();
        }
        tracing::info!(upstream = %up.name, principal = %ev.principal, resource = %crate::gateway::events::log_resource(ev),
            result = %ev.result, decision_id = ev.decision_id.as_deref().unwrap_or(""), event = %ev.id, "gateway call");
    }
    match std::mem::replace(&mut judged.judgement, Judgement::Pass) {
        Judgement::Allowed { .. } => {}
        Judgement::NeedsScope { scope, message } => {
            gw.metrics.call(&up.name, "scope", started.elapsed());
            return challenge_response(challenge::insufficient_scope(&scope, &message, &rm));
        }
        Judgement::Refused(e) => {
            let approval = e.code == codes::APPROVAL_REQUIRED;
            gw.metrics.call(
                &up.name,
                if approval { "approval" } else { "denied" },
                started.elapsed(),
            );
            let mut body = json!({
                "error": if approval { "approval_required" } else { "forbidden" },
                "error_description": mandate_core::refusal::error_description_text(&e.message),
            });
            if let Some(d) = e.data {
                body["decision"] = d;
            }
            return (StatusCode::FORBIDDEN, Json(body)).into_response();
        }
        // Not reachable for a routed call; refused rather than forwarded if it ever is.
        Judgement::Pass | Judgement::List(_) => {
            return (
                StatusCode::FORBIDDEN,
                Json(json!({"error": "forbidden", "error_description": "not decided, so not forwarded"})),
            )
                .into_response();
        }
    }
    // Inject and forward.
    let creds = match up.headers_for(&claims.sub) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(upstream = %up.name, error = %e, "upstream credentials unavailable");
            return upstream_error(&up.name, "is not reachable with credentials for this call");
        }
    };
    let mut target = base.clone();
    {
        let base_path = base.path().trim_end_matches('/').to_string();
        target.set_path(&format!("{base_path}{below}"));
        target.set_query(parts.uri.query());
    }
    let scrubber = scrubber_for(&creds, forwarded.as_ref().map(|(_, v)| v));
    let mut rb = gw.http.request(parts.method.clone(), target);
    for h in FORWARDED_API_HEADERS {
        // An answer that must be scrubbed of injected credentials is asked for uncompressed.
        if h == "accept-encoding" && !scrubber.is_empty() {
            rb = rb.header(h, "identity");
            continue;
        }
        for v in parts.headers.get_all(h) {
            rb = rb.header(h, v.clone());
        }
    }
    for (h, v) in creds {
        rb = rb.header(h, v);
    }
    if let Some((_, v)) = forwarded {
        rb = rb.header(http::header::AUTHORIZATION, v);
    }
    let sending = tokio::time::timeout(up.checked.timeout, rb.body(bytes).send());
    let Some(sent) = unless_invalidated(&gw, &claims, sending).await else {
        if let Some(ev) = &judged.event {
            gw.record_failure(ev, WITHHELD).await;
        }
        gw.metrics
            .call(&up.name, "unauthenticated", started.elapsed());
        return cut_off(&claims, &resource, Moment::InFlight);
    };
    let resp = match sent {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(upstream = %up.name, error = %without_url(&e), "upstream request failed");
            if let Some(ev) = &judged.event {
                gw.record_failure(ev, "the upstream could not be reached")
                    .await;
            }
            gw.metrics
                .call(&up.name, "upstream_error", started.elapsed());
            return upstream_error(&up.name, "could not be reached");
        }
        Err(_) => {
            if let Some(ev) = &judged.event {
                gw.record_failure(ev, "the upstream did not answer in time")
                    .await;
            }
            gw.metrics
                .call(&up.name, "upstream_error", started.elapsed());
            return upstream_error(
                &up.name,
                &format!("did not answer within {:?}", up.checked.timeout),
            );
        }
    };
    if let Some(why) = compressed(&resp).filter(|_| !scrubber.is_empty()) {
        if let Some(ev) = &judged.event {
            gw.record_failure(ev, &format!("the upstream {why}")).await;
        }
        gw.metrics
            .call(&up.name, "upstream_error", started.elapsed());
        return upstream_error(&up.name, &why);
    }
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if status.is_server_error() {
        if let Some(ev) = &judged.event {
            gw.record_failure(ev, &format!("the upstream answered {status}"))
                .await;
        }
    }
    let mut out = HeaderMap::new();
    for h in ["content-type", "cache-control", "etag", "content-encoding"] {
        for v in resp.headers().get_all(h) {
            out.append(h, v.clone());
        }
    }
    gw.metrics.call(
        &up.name,
        if status.is_server_error() {
            "upstream_error"
        } else {
            "allowed"
        },
        started.elapsed(),
    );
    let mut r = Response::new(scrubbed_body(resp, scrubber));
    *r.status_mut() = status;
    *r.headers_mut() = out;
    r
}

/// `429` with `Retry-After`: `principal` is over its call rate (`note` says why a call counted
/// as more than one).
fn too_many(principal: &str, retry: u64, note: &str) -> Response {
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"error": "rate_limited", "error_description": format!("{principal} is over its call rate through the gateway{note}; retry in {retry} s")})),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry));
    resp
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    #[test]
    fn route_patterns_match_segments_and_rests() {
        assert!(path_matches("/repos/*/pulls", "/repos/mandate/pulls"));
        assert!(!path_matches("/repos/*/pulls", "/repos/mandate/pulls/1"));
        assert!(!path_matches("/repos/*/pulls", "/repos//pulls"));
        assert!(path_matches("/files/**", "/files/a/b/c"));
        assert!(path_matches("/files/**", "/files"));
        assert!(!path_matches("/files/**", "/other/a"));
        assert!(path_matches("/", "/"));
        assert!(!path_matches("/a", "/a/"));
    }

    #[test]
    fn a_query_name_with_brackets_is_refused_with_its_reason() {
        use super::query_arguments;
        for q in ["path[]=a", "a[b]=c", "a%5B0%5D=x", "ok=1&x]=2", "[=1"] {
            let why = query_arguments(Some(q)).unwrap_err();
            assert!(
                why.contains("'[' or ']'") && !why.contains('\n'),
                "{q}: {why}"
            );
        }
        assert_eq!(
            query_arguments(Some("path=a%5B1%5D&full=1")).unwrap(),
            vec![("path".into(), "a[1]".into()), ("full".into(), "1".into())],
            "brackets in a value are only text"
        );
        assert!(query_arguments(None).unwrap().is_empty());
    }

    #[test]
    fn a_get_or_head_with_a_body_is_refused_and_other_methods_are_not() {
        use super::body_without_decision;
        use http::{header, HeaderMap, HeaderValue, Method};
        let with = |name: header::HeaderName, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            h
        };
        let none = HeaderMap::new();
        for m in [Method::GET, Method::HEAD] {
            assert!(body_without_decision(&m, &none, b"").is_none(), "{m}");
            let zero = with(header::CONTENT_LENGTH, "0");
            assert!(body_without_decision(&m, &zero, b"").is_none(), "{m}");
            assert!(
                body_without_decision(&m, &none, b"{\"a\":1}").is_some(),
                "{m}"
            );
            assert!(body_without_decision(&m, &none, b" ").is_some(), "{m}");
            let declared = with(header::CONTENT_LENGTH, "5");
            assert!(body_without_decision(&m, &declared, b"").is_some(), "{m}");
            let chunked = with(header::TRANSFER_ENCODING, "chunked");
            assert!(body_without_decision(&m, &chunked, b"").is_some(), "{m}");
        }
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(body_without_decision(&m, &none, b"{}").is_none(), "{m}");
        }
    }

    #[test]
    fn only_plain_paths_are_routed() {
        use super::plain_path;
        for good in ["/", "/repos/a/pulls", "/a/b/", "/v1/items%20x"] {
            assert!(plain_path(good), "{good}");
        }
        for bad in [
            "/files/../etc",
            "/./a",
            "/a//b",
            "/a/%2e%2e/b",
            "/a%2Fb",
            "/a\\b",
            "/a/%5c",
            "/public/..;/admin",
            "/a/%252e%252e",
            "//items/7",
            "///items/7",
        ] {
            assert!(!plain_path(bad), "{bad}");
        }
    }
}

//! Step 6 of the request path: forwarding a judged request to its upstream (Streamable HTTP or
//! a stdio child) and reading the answer back, lists filtered to what the caller may use.

use super::*;
use crate::scrub::Scrubber;

/// Forwards to an MCP (or HTTP) upstream over HTTP with its injected credentials, streaming the
/// answer back; a list's answer is read whole (bounded) and filtered.
#[allow(clippy::too_many_arguments)]
pub(super) async fn forward_http(
    gw: &Gateway,
    up: &Upstream,
    url: &url::Url,
    claims: &MandateClaims,
    method: &Method,
    headers: &HeaderMap,
    body: Bytes,
    list: Option<ListKind>,
    forwarded: Option<HeaderValue>,
    reply_id: &Value,
) -> Forwarded {
    let creds = match up.headers_for(&claims.sub) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(upstream = %up.name, error = %e, "upstream credentials unavailable");
            return Forwarded::failed(
                rpc_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    RpcError::new(codes::UNAVAILABLE, format!("upstream {} is not reachable with credentials for this call; the call was not forwarded", up.name))
                        .response(reply_id),
                ),
                "the upstream's credentials for this call could not be read; the call was not forwarded",
            );
        }
    };
    let scrubber = scrubber_for(&creds, forwarded.as_ref());
    let mut rb = gw.http.request(method.clone(), url.clone());
    for h in FORWARDED_REQUEST_HEADERS {
        for v in headers.get_all(h) {
            rb = rb.header(h, v.clone());
        }
    }
    // Answers are read as they come (lists filtered, injected credentials scrubbed), so they must
    // not be compressed.
    rb = rb.header(header::ACCEPT_ENCODING, "identity");
    for (h, v) in creds {
        rb = rb.header(h, v);
    }
    if let Some(v) = forwarded {
        rb = rb.header(header::AUTHORIZATION, v);
    }
    if *method == Method::POST {
        rb = rb.body(body);
    }
    let sent = tokio::time::timeout(up.checked.timeout, rb.send()).await;
    let resp = match sent {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(upstream = %up.name, error = %without_url(&e), "upstream request failed");
            return Forwarded::upstream_error(reply_id, &up.name, "could not be reached");
        }
        Err(_) => {
            return Forwarded::upstream_error(
                reply_id,
                &up.name,
                &format!("did not answer within {:?}", up.checked.timeout),
            )
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out_headers = HeaderMap::new();
    for h in FORWARDED_RESPONSE_HEADERS {
        for v in resp.headers().get_all(h) {
            out_headers.append(h, v.clone());
        }
    }
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if let Some(why) = compressed(&resp) {
        return Forwarded::upstream_error(reply_id, &up.name, &why);
    }
    if let (Some(kind), true) = (list, status.is_success()) {
        let bytes = match read_bounded(resp, gw.settings.max_list_body, up.checked.timeout).await {
            Ok(b) => b,
            Err(e) => return Forwarded::upstream_error(reply_id, &up.name, &e),
        };
        let held = crate::gateway::held_scopes(claims);
        let filtered = if is_sse {
            let text = String::from_utf8_lossy(&bytes);
            let mut events = crate::sse::parse(&text);
            for e in &mut events {
                // Every message of a list's stream is filtered; one that cannot be read cannot
                // be filtered, so nothing is shown (fail closed). Events without data (priming)
                // carry nothing.
                if let Some(d) = e.data.as_deref().filter(|d| !d.is_empty()) {
                    let Ok(mut v) = serde_json::from_str::<Value>(d) else {
                        return Forwarded::upstream_error(
                            reply_id,
                            &up.name,
                            "answered a list with an event that is not JSON",
                        );
                    };
                    filter_answer(up, &held, kind, &mut v);
                    e.data = Some(v.to_string());
                }
            }
            Bytes::from(crate::sse::write(&events))
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(mut v) => {
                    filter_answer(up, &held, kind, &mut v);
                    Bytes::from(v.to_string())
                }
                // Not JSON: nothing can be filtered, so nothing is shown (fail closed).
                Err(_) => {
                    return Forwarded::upstream_error(
                        reply_id,
                        &up.name,
                        "answered a list with something that is not JSON",
                    )
                }
            }
        };
        out_headers.remove(header::CONTENT_LENGTH);
        let filtered = if scrubber.is_empty() {
            filtered
        } else {
            Bytes::from(scrubber.whole(&filtered))
        };
        let mut r = Response::new(Body::from(filtered));
        *r.status_mut() = status;
        *r.headers_mut() = out_headers;
        return Forwarded {
            response: r,
            failure: None,
        };
    }
    let mut r = Response::new(scrubbed_body(resp, scrubber));
    *r.status_mut() = status;
    *r.headers_mut() = out_headers;
    Forwarded {
        response: r,
        failure: (!status.is_success()).then(|| format!("the upstream answered {status}")),
    }
}

/// What scrubs the answer to one forwarded request: the values of the credential headers
/// injected into it and of the mandate minted for it.
pub(crate) fn scrubber_for(
    creds: &[(header::HeaderName, HeaderValue)],
    forwarded: Option<&HeaderValue>,
) -> Scrubber {
    let mut values: Vec<Vec<u8>> = creds.iter().map(|(_, v)| v.as_bytes().to_vec()).collect();
    if let Some(f) = forwarded {
        let v = f.as_bytes();
        // The mandate itself, without its scheme.
        values.push(v.strip_prefix(b"Bearer ").unwrap_or(v).to_vec());
    }
    Scrubber::new(values)
}

/// Why an answer cannot be passed on: it is compressed (the gateway asked for `identity`), so
/// neither filtering nor scrubbing could read it.
pub(crate) fn compressed(resp: &reqwest::Response) -> Option<String> {
    let enc = resp.headers().get(header::CONTENT_ENCODING)?;
    let enc = enc.to_str().unwrap_or("?").trim();
    (!enc.is_empty() && !enc.eq_ignore_ascii_case("identity")).then(|| {
        format!(
            "answered with Content-Encoding {:?} though the gateway asked for identity",
            enc.chars().take(32).collect::<String>()
        )
    })
}

/// An upstream's answer as a body for the caller, with `scrubber`'s values replaced as it streams.
pub(crate) fn scrubbed_body(resp: reqwest::Response, scrubber: Scrubber) -> Body {
    use futures_util::StreamExt;
    if scrubber.is_empty() {
        return Body::from_stream(resp.bytes_stream());
    }
    let inner = Box::pin(resp.bytes_stream());
    let stream = futures_util::stream::unfold(
        (inner, scrubber, false),
        |(mut inner, mut s, done)| async move {
            if done {
                return None;
            }
            loop {
                match inner.next().await {
                    Some(Ok(chunk)) => {
                        let out = s.push(&chunk);
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), (inner, s, false)));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (inner, s, true))),
                    None => {
                        let rest = s.finish();
                        if rest.is_empty() {
                            return None;
                        }
                        return Some((Ok(Bytes::from(rest)), (inner, s, true)));
                    }
                }
            }
        },
    );
    Body::from_stream(stream)
}

/// What forwarding to an HTTP upstream came to: the answer for the caller and, when the call
/// failed on the way to the upstream or there, why in words for the audit log (the reason the
/// upstream could not be reached, or the status it answered).
pub(super) struct Forwarded {
    pub(super) response: Response,
    pub(super) failure: Option<String>,
}

impl Forwarded {
    fn failed(response: Response, why: &str) -> Self {
        Forwarded {
            response,
            failure: Some(why.to_string()),
        }
    }

    /// `502 upstream NAME WHAT` answering `id`, recorded as "the upstream WHAT".
    fn upstream_error(id: &Value, name: &str, what: &str) -> Self {
        Forwarded::failed(
            rpc_response(
                StatusCode::BAD_GATEWAY,
                RpcError::new(codes::UNAVAILABLE, format!("upstream {name} {what}")).response(id),
            ),
            &format!("the upstream {what}"),
        )
    }
}

/// A reqwest error without its URL (which could carry a query the operator considers private).
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    // With its causes: "error sending request" alone does not tell a refused connection from an
    // upstream certificate that does not verify.
    let mut s = mandate_core::causes::with_causes(e);
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<upstream>");
    }
    s
}

pub(super) async fn read_bounded(
    resp: reqwest::Response,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, String> {
    use futures_util::StreamExt;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("stopped answering: {}", without_url(&e)))?;
            if buf.len() + chunk.len() > max {
                return Err(format!("answered a list larger than {max} bytes"));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| format!("did not finish answering within {timeout:?}"))??;
    Ok(Bytes::from(buf))
}

/// Filters a list answer (a response message, or a batch of them) to what the caller may use,
/// learning tool annotations on the way.
pub(super) fn filter_answer(up: &Upstream, held: &ScopeSet, kind: ListKind, v: &mut Value) {
    match v {
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| filter_answer(up, held, kind, i)),
        Value::Object(o) => {
            if let Some(result) = o.get_mut("result") {
                if kind == ListKind::Tools {
                    up.learn_tools(result);
                }
                mcp::filter_list(kind, result, |name| visible(up, held, kind, name));
            }
        }
        _ => {}
    }
}

pub(crate) fn upstream_error(name: &str, what: &str) -> Response {
    rpc_response(
        StatusCode::BAD_GATEWAY,
        RpcError::new(codes::UNAVAILABLE, format!("upstream {name} {what}")).response(&Value::Null),
    )
}

/// Relays to a stdio child: `initialize` and `ping` are answered here (the gateway holds the one
/// session with the child), requests go to the child under the gateway's ids, notifications to
/// the child except the ones about the caller's own session.
pub(super) async fn forward_stdio(
    gw: &Gateway,
    up: &Upstream,
    claims: &MandateClaims,
    messages: &[Message],
    batch: bool,
    allowed_events: &[mandate_audit::event::Event],
) -> Response {
    let Link::Stdio(child) = &up.link else {
        unreachable!("forward_stdio is called for stdio upstreams")
    };
    let held = crate::gateway::held_scopes(claims);
    let mut answers = vec![];
    let mut failed = None;
    for m in messages {
        match m {
            Message::Request(r) => {
                let answer = match r.method.as_str() {
                    "initialize" => match child.initialize_result().await {
                        Ok(mut init) => {
                            let asked = r
                                .params
                                .as_ref()
                                .and_then(|p| p.get("protocolVersion"))
                                .and_then(Value::as_str);
                            // The revision the client asked for when the gateway knows it, else
                            // the child's when the gateway knows that, else the newest the gateway
                            // knows: the client then sends a revision the gateway accepts.
                            let theirs = init.get("protocolVersion").and_then(Value::as_str);
                            let v = asked
                                .filter(|v| KNOWN_REVISIONS.contains(v))
                                .or(theirs.filter(|v| KNOWN_REVISIONS.contains(v)))
                                .unwrap_or(LATEST_STATEFUL_REVISION)
                                .to_string();
                            init["protocolVersion"] = Value::String(v);
                            jsonrpc::result_response(&r.id, init)
                        }
                        Err(e) => {
                            failed = Some(e.to_string());
                            stdio_error(e).response(&r.id)
                        }
                    },
                    "ping" => jsonrpc::result_response(&r.id, json!({})),
                    _ => match child
                        .request(&r.method, r.params.as_ref(), up.checked.timeout)
                        .await
                    {
                        Ok(mut resp) => {
                            if let Value::Object(o) = &mut resp {
                                o.insert("id".into(), r.id.clone());
                            }
                            if let Ok(Call::List(kind)) = mcp::classify(r) {
                                filter_answer(up, &held, kind, &mut resp);
                            }
                            resp
                        }
                        Err(e) => {
                            failed = Some(e.to_string());
                            stdio_error(e).response(&r.id)
                        }
                    },
                };
                answers.push(answer);
            }
            Message::Notification(n) => {
                // The caller's own session's notifications stay here: the child's session is the
                // gateway's. (Cancellation would name the caller's ids, which the child never saw.)
                if !matches!(
                    n.method.as_str(),
                    "notifications/initialized" | "notifications/cancelled"
                ) {
                    child.notify(&n.method, n.params.as_ref()).await;
                }
            }
            // Answers to requests the child made: the gateway relays none, so there are none.
            Message::Response(_) => {}
        }
    }
    if let Some(why) = &failed {
        for ev in allowed_events {
            gw.record_failure(ev, why).await;
        }
    }
    if answers.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    let body = if batch {
        Value::Array(answers)
    } else {
        answers.remove(0)
    };
    rpc_response(StatusCode::OK, body)
}

pub(super) fn stdio_error(e: StdioError) -> RpcError {
    RpcError::new(codes::UNAVAILABLE, e.to_string())
}

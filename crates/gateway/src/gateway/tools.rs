//! Learning an upstream's tools and their MCP annotations (which decide how a call is
//! treated): from a stdio child, or in a short MCP session of the gateway's own over HTTP.

use serde_json::Value;

use super::Gateway;
use crate::upstream::Upstream;

impl Gateway {
    /// Asks a stdio upstream for its tools when what it said is missing or old, so that the
    /// policy sees each tool's annotations even when the caller never listed them. (An HTTP
    /// upstream's annotations are learned from the `tools/list` answers that pass through; the
    /// default policy's name rules apply either way.) A failure leaves the annotations empty.
    pub async fn refresh_tools(&self, up: &Upstream) {
        self.learn_tools_for(up, "").await;
    }

    /// Learns `up`'s tools when what it said is missing or old (a stdio child is asked; an MCP
    /// server over HTTP is asked in a session of the gateway's own, with the credentials of
    /// `subject`). True when the tools are known (learned now, or earlier), false when they
    /// never could be.
    pub async fn learn_tools_for(&self, up: &Upstream, subject: &str) -> bool {
        if !up.tools_stale() {
            return true;
        }
        match &up.link {
            crate::upstream::Link::Stdio(_) => self.learn_stdio_tools(up).await,
            crate::upstream::Link::Http(url) if up.checked.transport.is_mcp() => {
                if let Err(e) = self.learn_http_tools(up, url, subject).await {
                    tracing::warn!(upstream = %up.name, error = %e, "could not list the upstream's tools");
                }
            }
            crate::upstream::Link::Http(_) => return true,
        }
        up.tools_known()
    }

    /// Lists an MCP server's tools over Streamable HTTP in a short session of the gateway's own.
    async fn learn_http_tools(
        &self,
        up: &Upstream,
        url: &url::Url,
        subject: &str,
    ) -> Result<(), String> {
        let creds = up.headers_for(subject)?;
        let init = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": crate::stdio::CHILD_PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "mandate-gateway", "version": env!("CARGO_PKG_VERSION")}}});
        let (session, _) = self.rpc(up, url, &creds, None, &init).await?;
        let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.rpc(up, url, &creds, session.as_deref(), &note).await?;
        let mut cursor: Option<Value> = None;
        let mut result = Ok(());
        for page in 1..=16 {
            let mut req = serde_json::json!({"jsonrpc": "2.0", "id": page, "method": "tools/list"});
            if let Some(c) = cursor.take() {
                req["params"] = serde_json::json!({ "cursor": c });
            }
            let (_, msgs) = match self.rpc(up, url, &creds, session.as_deref(), &req).await {
                Ok(x) => x,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let Some(r) = msgs
                .iter()
                .find(|m| m.get("id") == Some(&serde_json::json!(page)))
                .and_then(|m| m.get("result"))
            else {
                result = Err("tools/list had no result".into());
                break;
            };
            up.learn_tools(r);
            match r.get("nextCursor") {
                Some(c) if !c.is_null() => cursor = Some(c.clone()),
                _ => break,
            }
        }
        if let Some(s) = session {
            let mut del = self.http.delete(url.clone()).header("mcp-session-id", s);
            for (h, v) in &creds {
                del = del.header(h, v.clone());
            }
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), del.send()).await;
        }
        result
    }

    /// One JSON-RPC exchange with an MCP server over HTTP: the session id it names, and the
    /// messages of its answer (JSON, or the data of an SSE stream), read whole within bounds.
    async fn rpc(
        &self,
        up: &Upstream,
        url: &url::Url,
        creds: &[(http::HeaderName, http::HeaderValue)],
        session: Option<&str>,
        body: &Value,
    ) -> Result<(Option<String>, Vec<Value>), String> {
        use futures_util::StreamExt;
        let mut req = self
            .http
            .post(url.clone())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(s) = session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", crate::stdio::CHILD_PROTOCOL);
        }
        for (h, v) in creds {
            req = req.header(h, v.clone());
        }
        let limit = self.settings.max_list_body;
        let exchange = async {
            let resp = req
                .send()
                .await
                .map_err(|_| "the upstream could not be reached".to_string())?;
            if !resp.status().is_success() {
                return Err(format!("the upstream answered {}", resp.status()));
            }
            let session = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let sse = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            let mut buf = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|_| "the upstream stopped answering".to_string())?;
                buf.extend_from_slice(&chunk);
                if buf.len() > limit {
                    return Err(format!(
                        "the upstream's answer is larger than {limit} bytes"
                    ));
                }
                // An SSE answer to a request ends with its response; the stream may stay open.
                if sse && buf.windows(2).any(|w| w == b"\n\n") && body.get("id").is_some() {
                    let text = String::from_utf8_lossy(&buf);
                    let id = body.get("id");
                    if crate::sse::parse(&text).iter().any(|e| {
                        e.data
                            .as_deref()
                            .and_then(|d| serde_json::from_str::<Value>(d).ok())
                            .is_some_and(|v| v.get("id") == id)
                    }) {
                        break;
                    }
                }
            }
            let messages = if sse {
                crate::sse::parse(&String::from_utf8_lossy(&buf))
                    .into_iter()
                    .filter_map(|e| e.data.and_then(|d| serde_json::from_str::<Value>(&d).ok()))
                    .collect()
            } else if buf.is_empty() {
                vec![]
            } else {
                match serde_json::from_slice::<Value>(&buf) {
                    Ok(Value::Array(v)) => v,
                    Ok(v) => vec![v],
                    Err(_) => return Err("the upstream's answer is not JSON".into()),
                }
            };
            Ok((session, messages))
        };
        tokio::time::timeout(
            up.checked.timeout.min(std::time::Duration::from_secs(30)),
            exchange,
        )
        .await
        .map_err(|_| "the upstream did not answer in time".to_string())?
    }

    async fn learn_stdio_tools(&self, up: &Upstream) {
        let crate::upstream::Link::Stdio(child) = &up.link else {
            return;
        };
        let mut cursor: Option<Value> = None;
        for _ in 0..16 {
            let params = cursor.take().map(|c| serde_json::json!({ "cursor": c }));
            match child
                .request("tools/list", params.as_ref(), up.checked.timeout)
                .await
            {
                Ok(resp) => {
                    let Some(result) = resp.get("result") else {
                        return;
                    };
                    up.learn_tools(result);
                    match result.get("nextCursor") {
                        Some(c) if !c.is_null() => cursor = Some(c.clone()),
                        _ => return,
                    }
                }
                Err(e) => {
                    tracing::debug!(upstream = %up.name, error = %e, "could not list the upstream's tools");
                    return;
                }
            }
        }
    }
}

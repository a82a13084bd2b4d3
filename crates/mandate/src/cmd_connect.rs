//! `mandate connect --as AGENT --server NAME`: a stdio MCP server that off-the-shelf MCP clients
//! (Claude Desktop, Cursor, VS Code, the MCP Inspector) launch. It holds the agent's key, gets a
//! DPoP-bound mandate for the upstream (`mcp:NAME`) and renews it before it expires (`held`), signs a DPoP
//! proof for every request, and relays each message from stdin to the gateway's `/mcp/NAME`, and
//! the gateway's answers (JSON, or each message of an SSE stream) back to stdout. A client that
//! knows nothing of Mandate gets per-agent identity.
//!
//! Refusals the gateway answers at the HTTP level (401, 403 `insufficient_scope`) are turned into
//! JSON-RPC errors for the request, with the gateway's description, so the client shows why.
//! Logs go to stderr (never stdout, which carries the protocol). Bounds: a message line from the
//! client is at most 8 MiB; at most 32 requests are relayed at once.
//!
//! Once an `initialize` opened an MCP session, the upstream's `GET` stream of server-initiated
//! messages is followed too ([`crate::connect_stream`]); the client's answers to server-initiated
//! requests are relayed as every other message. Everything written to stdout goes through one
//! writer task, one line per message, so lines never interleave.
//!
//! `--print-config claude|cursor|vscode` prints the snippet that makes a client launch it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use mandate_core::dpop;
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Semaphore};

use crate::cli::ConnectArgs;
use crate::client::{random_id, unix_now};
use crate::ctx::Ctx;
use crate::held::HeldMandate;

/// Longest message line taken from the client (and event read from the gateway).
pub(crate) const MAX_LINE: usize = 8 * 1024 * 1024;
/// Requests relayed at once.
const MAX_IN_FLIGHT: usize = 32;

pub async fn run(ctx: &Ctx, a: ConnectArgs) -> Result<()> {
    if let Some(kind) = &a.print_config {
        return print_config(ctx, &a, kind);
    }
    let agent = a
        .as_
        .clone()
        .context("give --as AGENT (the agent whose key this machine holds), or --print-config")?;
    let server = a
        .server
        .clone()
        .context("give --server NAME (the upstream, as `mandate upstream list` names it)")?;
    let id = ctx.identity(&agent)?;
    let base = match &a.gateway {
        Some(g) => g.trim_end_matches('/').to_string(),
        None => ctx.server_url()?.trim_end_matches('/').to_string(),
    };
    let audience = a
        .audience
        .clone()
        .unwrap_or_else(|| format!("mcp:{server}"));
    let scope = a.scope.clone().unwrap_or_else(|| format!("{server}:*"));
    let relay = Arc::new(Relay {
        url: format!("{base}/mcp/{server}"),
        mandate: HeldMandate::new(ctx.api()?, id, &scope, &audience, a.ttl.clone()),
        session: std::sync::Mutex::new(None),
        opened: std::sync::Mutex::new(None),
        protocol: std::sync::Mutex::new(None),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()?,
    });
    // Fail early, with the reason, when no mandate can be had.
    relay.mandate.get(false).await.with_context(|| {
        format!(
            "{} cannot get a mandate for {}",
            relay.mandate.id.name, relay.mandate.audience
        )
    })?;
    tracing::info!(agent = %relay.mandate.id.name, upstream = %server, "mandate connect relaying stdio to {}", relay.url);
    let (out_tx, mut out_rx) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err()
                || stdout.write_all(b"\n").await.is_err()
                || stdout.flush().await.is_err()
            {
                break;
            }
        }
    });
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // The upstream's GET stream of server-initiated messages, once a session is open.
    let mut stream: Option<tokio::task::JoinHandle<()>> = None;
    let mut stdin = BufReader::new(tokio::io::stdin());
    loop {
        let line = match mandate_gateway::stdio::read_line_bounded(&mut stdin, MAX_LINE).await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(mandate_gateway::stdio::LineError::TooLong { .. }) => {
                let _ = out_tx
                    .send(
                        error(
                            &Value::Null,
                            -32600,
                            &format!("message longer than {MAX_LINE} bytes"),
                        )
                        .to_string(),
                    )
                    .await;
                continue;
            }
            Err(mandate_gateway::stdio::LineError::Io(e)) => bail!("reading stdin: {e}"),
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let msg: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = out_tx
                    .send(error(&Value::Null, -32700, &format!("Parse error: {e}")).to_string())
                    .await;
                continue;
            }
        };
        let permit = slots.clone().acquire_owned().await?;
        let r = relay.clone();
        let out = out_tx.clone();
        // `initialize` is relayed before anything else is read, so the session id it opens is
        // known to every later message.
        let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize");
        let task = tokio::spawn(async move {
            for answer in r.send(&msg).await {
                let _ = out.send(answer.to_string()).await;
            }
            drop(permit);
        });
        if is_init {
            let _ = task.await;
            if let Some(session) = relay.take_opened() {
                if let Some(old) = stream.take() {
                    old.abort();
                }
                stream = Some(tokio::spawn(crate::connect_stream::follow(
                    relay.clone(),
                    session,
                    out_tx.clone(),
                )));
            }
        }
    }
    if let Some(s) = stream.take() {
        s.abort();
    }
    // Stdin closed: let relayed requests finish (bounded), then end.
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        slots.acquire_many(MAX_IN_FLIGHT as u32),
    )
    .await;
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}

pub(crate) struct Relay {
    pub(crate) url: String,
    /// The agent's mandate for the upstream (renewed as `held` says).
    pub(crate) mandate: HeldMandate,
    session: std::sync::Mutex<Option<String>>,
    /// A session an `initialize` just opened, for its GET stream to be followed.
    opened: std::sync::Mutex<Option<String>>,
    protocol: std::sync::Mutex<Option<String>>,
    pub(crate) http: reqwest::Client,
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

impl Relay {
    /// The MCP session in use, if any.
    pub(crate) fn session(&self) -> Option<String> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The protocol revision the `initialize` settled on, if any.
    pub(crate) fn protocol(&self) -> Option<String> {
        self.protocol
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The session a successful `initialize` opened since the last call, if any.
    fn take_opened(&self) -> Option<String> {
        self.opened.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Relays one message; returns the messages to write back (none for a notification).
    async fn send(&self, msg: &Value) -> Vec<Value> {
        let id = msg.get("id").cloned();
        let is_request = id.is_some() && msg.get("method").is_some();
        let reply_id = id.clone().unwrap_or(Value::Null);
        let mut retried = false;
        loop {
            let token = match self.mandate.get(false).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "no mandate");
                    return if is_request {
                        vec![error(
                            &reply_id,
                            -32001,
                            &format!("no mandate for {}: {e:#}", self.mandate.audience),
                        )]
                    } else {
                        vec![]
                    };
                }
            };
            let resp = match self.post(msg, &token).await {
                Ok(r) => r,
                Err(e) => {
                    return if is_request {
                        vec![error(
                            &reply_id,
                            -32050,
                            &format!("the gateway at {} could not be reached: {e}", self.url),
                        )]
                    } else {
                        vec![]
                    }
                }
            };
            let status = resp.status().as_u16();
            // An expired or revoked mandate: get a fresh one, once.
            if status == 401 && !retried {
                retried = true;
                if self.mandate.get(true).await.is_ok() {
                    continue;
                }
            }
            let new_session = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if let Some(s) = &new_session {
                *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
            }
            if status == 404 {
                // The session ended at the upstream: the client must initialize again.
                *self.session.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            let out = self.answers(resp, &reply_id, is_request, msg).await;
            // A session opened by a successful initialize gets its GET stream (the stateless
            // revision opens none, and then there is no stream to follow).
            let initialized = msg.get("method").and_then(Value::as_str) == Some("initialize")
                && (200..300).contains(&status)
                && out.iter().any(|m| m.get("result").is_some());
            if let (true, Some(s)) = (initialized, new_session) {
                *self.opened.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
            }
            return out;
        }
    }

    /// A fresh DPoP proof of `htm` on the gateway URL, bound to `token`.
    pub(crate) fn proof(&self, htm: &str, token: &str) -> String {
        dpop::make_proof(
            &self.mandate.id.key,
            htm,
            &self.url,
            unix_now(),
            &random_id(),
            Some(token),
        )
    }

    async fn post(&self, msg: &Value, token: &str) -> reqwest::Result<reqwest::Response> {
        let proof = self.proof("POST", token);
        let mut req = self
            .http
            .post(&self.url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .body(msg.to_string());
        if let Some(s) = self.session() {
            req = req.header("Mcp-Session-Id", s);
        }
        if let Some(p) = self.protocol() {
            req = req.header("MCP-Protocol-Version", p);
        }
        req.send().await
    }

    /// The messages of the gateway's answer.
    async fn answers(
        &self,
        resp: reqwest::Response,
        id: &Value,
        is_request: bool,
        msg: &Value,
    ) -> Vec<Value> {
        let status = resp.status();
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let challenge = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect::<Vec<_>>();
        if status.as_u16() == 202 {
            return vec![];
        }
        let mut out = vec![];
        if is_sse {
            let mut stream = resp.bytes_stream();
            let mut sse = crate::connect_stream::SseBuffer::default();
            while let Some(chunk) = stream.next().await {
                let Ok(chunk) = chunk else { break };
                let Ok(events) = sse.push(&chunk) else { break };
                out.extend(events.iter().filter_map(|e| {
                    e.data
                        .as_deref()
                        .and_then(|d| serde_json::from_str::<Value>(d).ok())
                }));
            }
        } else {
            let body = resp.bytes().await.unwrap_or_default();
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(items)) => out.extend(items),
                Ok(v) if v.get("jsonrpc").is_some() => {
                    let mut v = v;
                    // The gateway's own refusals of a request carry no id when they come before
                    // the body was read: give the client its id back.
                    if is_request && v.get("id").is_none_or(Value::is_null) {
                        v["id"] = id.clone();
                    }
                    out.push(v);
                }
                other => {
                    if is_request {
                        let description = other
                            .ok()
                            .and_then(|v| {
                                v.get("error_description")
                                    .and_then(Value::as_str)
                                    .map(str::to_string)
                            })
                            .or_else(|| challenge.first().cloned())
                            .unwrap_or_else(|| format!("HTTP {status}"));
                        let code = match status.as_u16() {
                            401 => -32001,
                            403 => -32003,
                            429 => -32029,
                            _ => -32050,
                        };
                        out.push(error(
                            id,
                            code,
                            &format!("the gateway refused ({status}): {description}"),
                        ));
                    }
                }
            }
        }
        if msg.get("method").and_then(Value::as_str) == Some("initialize") {
            if let Some(v) = out
                .iter()
                .find_map(|m| m.pointer("/result/protocolVersion").and_then(Value::as_str))
            {
                *self.protocol.lock().unwrap_or_else(|e| e.into_inner()) = Some(v.to_string());
            }
        }
        out
    }
}

/// The snippet for `--print-config`.
fn print_config(ctx: &Ctx, a: &ConnectArgs, kind: &str) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let agent = a.as_.clone().unwrap_or_else(|| "AGENT".into());
    let server = a.server.clone().unwrap_or_else(|| "NAME".into());
    let mut args = vec![
        "connect".to_string(),
        "--as".into(),
        agent,
        "--server".into(),
        server.clone(),
    ];
    if let Some(s) = &a.scope {
        args.extend(["--scope".into(), s.clone()]);
    }
    let env = json!({"MANDATE_HOME": ctx.home.root.display().to_string()});
    let entry = json!({"command": exe.display().to_string(), "args": args, "env": env});
    let name = format!("mandate-{server}");
    let snippet = match kind {
        "claude" | "cursor" => json!({"mcpServers": {name: entry}}),
        "vscode" => {
            let mut e = entry;
            e["type"] = json!("stdio");
            json!({"servers": {name: e}})
        }
        other => bail!("--print-config {other:?}: give claude, cursor or vscode"),
    };
    let text = serde_json::to_string_pretty(&snippet)?;
    let hint = match kind {
        "claude" => "Add to claude_desktop_config.json (Settings > Developer > Edit Config):",
        "cursor" => "Add to ~/.cursor/mcp.json (or .cursor/mcp.json in a project):",
        _ => "Add to .vscode/mcp.json (or your user mcp.json):",
    };
    ctx.print(&snippet, || format!("{hint}\n{text}"));
    Ok(())
}

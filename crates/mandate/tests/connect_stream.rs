//! `mandate connect` follows the Streamable HTTP `GET` stream of an HTTP upstream: an `rmcp`
//! server (the official Rust MCP SDK) in this process sends `notifications/tools/list_changed` on
//! its standalone stream after `initialize`, behind a real `mandate serve` gateway, and the stdio
//! client, speaking to `connect` over its pipes as an MCP client does, sees it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bin, Server};
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::service::{NotificationContext, RoleServer};
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::ServerHandler;
use serde_json::{json, Value};

/// An upstream that, once a client has initialized, announces a changed tool list every 200 ms
/// (on the session's standalone stream: the notification answers no request), and asks the
/// client for its roots.
#[derive(Clone)]
struct Announcer;

impl ServerHandler for Announcer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    // Roots are deprecated from the 2026-07-28 revision on; this session speaks 2025-06-18.
    #[allow(deprecated)]
    async fn on_initialized(&self, cx: NotificationContext<RoleServer>) {
        let peer = cx.peer;
        // A server-initiated request too: once the client names a root `file:///pipes`, the
        // prompt list is announced as changed.
        let asking = peer.clone();
        tokio::spawn(async move {
            if let Ok(r) = asking.list_roots().await {
                if r.roots.iter().any(|r| r.uri == "file:///pipes") {
                    let _ = asking.notify_prompt_list_changed().await;
                }
            }
        });
        tokio::spawn(async move {
            for _ in 0..150 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if peer.notify_tool_list_changed().await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Starts the upstream on loopback (stateful: sessions and a standalone stream); its URL.
fn start_upstream(rt: &tokio::runtime::Runtime) -> String {
    rt.block_on(async {
        let service = StreamableHttpService::new(
            || Ok(Announcer),
            std::sync::Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().nest_service("/mcp", service);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}/mcp")
    })
}

/// `mandate connect --as watcher --server live EXTRA...` on pipes, as an MCP client runs it.
struct Connect {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    seen: mpsc::Receiver<String>,
    log: std::path::PathBuf,
}

impl Connect {
    fn start(s: &Server, extra: &[&str]) -> Connect {
        let log = s.home().join("connect.log");
        let mut child = Command::new(bin())
            .args(["connect", "--as", "watcher", "--server", "live"])
            .args(extra)
            .env("MANDATE_HOME", s.home())
            .env("HOME", s.home())
            .env_remove("MANDATE_SERVER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("mandate connect starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, seen) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Connect {
            child,
            stdin,
            seen,
            log,
        }
    }

    fn send(&mut self, v: Value) {
        self.stdin.write_all(format!("{v}\n").as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Reads lines (each must be one whole JSON-RPC message) until `want` matches one.
    fn next_matching(&self, want: impl Fn(&Value) -> bool, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.seen.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no {what} within 15 s\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            });
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a line that is not one JSON message ({e}): {line}"));
            assert_eq!(v["jsonrpc"], "2.0", "{line}");
            if want(&v) {
                return v;
            }
        }
    }

    /// `initialize` (offering roots) and `notifications/initialized`.
    fn initialize(&mut self) {
        self.send(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {"roots": {}},
            "clientInfo": {"name": "pipes", "version": "1"}}}),
        );
        let init = self.next_matching(
            |v| v["id"] == 1 && v.get("method").is_none(),
            "initialize answer",
        );
        assert!(init["result"]["protocolVersion"].is_string(), "{init}");
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    }

    fn notification(&self) -> Value {
        self.next_matching(|v| v.get("id").is_none(), "server-initiated notification")
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The authority serving the upstream as `live`, and an agent `watcher` that may use it.
fn authority(rt: &tokio::runtime::Runtime) -> Server {
    let upstream = start_upstream(rt);
    let s = Server::start_with(true, &format!("[upstream.live]\nurl = {upstream:?}\n"));
    s.ok(&["agent", "create", "watcher", "--scopes", "live:*"]);
    s
}

#[test]
fn a_notification_the_http_upstream_sends_on_its_get_stream_reaches_the_stdio_client() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = authority(&rt);
    let mut c = Connect::start(&s, &[]);
    c.initialize();
    // Nothing else is sent: the notification can only come over the GET stream.
    let note = c.notification();
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
    // Requests still go through while the stream is open, their answers on their own lines.
    c.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let listed = c.next_matching(
        |v| v["id"] == 2 && v.get("method").is_none(),
        "tools/list answer",
    );
    assert!(listed["result"]["tools"].is_array(), "{listed}");
}

#[test]
fn the_get_stream_is_opened_again_with_a_fresh_mandate_after_the_gateway_ends_it_at_expiry() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = authority(&rt);
    // The gateway ends a stream within a second of its mandate's expiry.
    let mut c = Connect::start(&s, &["--ttl", "4s"]);
    c.initialize();
    c.notification();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(7) {
        c.notification();
    }
    // Past the first mandate's lifetime, notifications still come.
    let note = c.notification();
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
    let log = std::fs::read_to_string(&c.log).unwrap_or_default();
    assert!(
        log.matches("mandate obtained").count() >= 2,
        "the stream outlived its mandate instead of being reopened with a fresh one:\n{log}"
    );
}

#[test]
fn the_stdio_clients_answer_to_a_server_initiated_request_reaches_the_http_upstream() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = authority(&rt);
    let mut c = Connect::start(&s, &[]);
    c.initialize();
    let ask = c.next_matching(
        |v| v["method"] == "roots/list" && v.get("id").is_some(),
        "roots/list request from the upstream",
    );
    c.send(json!({"jsonrpc": "2.0", "id": ask["id"],
                  "result": {"roots": [{"uri": "file:///pipes", "name": "pipes"}]}}));
    // The upstream read the answer: it announces what it said it would.
    c.next_matching(
        |v| v["method"] == "notifications/prompts/list_changed",
        "the upstream's reaction to the answer",
    );
}

//! MCP over stdio: a child process the gateway starts, owns and supervises.
//!
//! The gateway is the child's one MCP client: it initializes the child once, then relays each
//! caller's requests under ids of its own (so callers cannot collide or answer each other's
//! calls) and hands each response back to the caller that asked. The child gets only the
//! environment its configuration names, runs in a process group of its own (killed as a group on
//! shutdown, so `npx` wrappers do not leave orphans), and is restarted with exponential backoff
//! (200 ms doubling to 30 s, back to 200 ms after a minute of good health) when it exits. Calls
//! made while it restarts wait for it a bounded time, then fail with a clear "restarting" error.
//!
//! Bounds: a message line from the child is at most [`MAX_LINE`] bytes (a longer one ends the
//! child, which is restarted); stderr lines are logged at debug level, cut at 1 KiB.

use std::collections::HashMap;
use std::process::Stdio as StdStdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};

/// Longest JSON-RPC message line accepted from a child.
pub const MAX_LINE: usize = 8 * 1024 * 1024;
/// How long a call waits for a (re)starting child before failing.
pub const READY_WAIT: Duration = Duration::from_secs(10);
/// How long the child has to answer `initialize`.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Grace between SIGTERM and SIGKILL on shutdown.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// The MCP revision the gateway asks a child for.
pub const CHILD_PROTOCOL: &str = "2025-06-18";

/// Builds a child's whole environment (name, value), or says why it cannot.
pub type EnvBuilder = dyn Fn() -> Result<Vec<(String, String)>, String> + Send + Sync;

/// What to start.
#[derive(Clone)]
pub struct Launch {
    /// The upstream's name (for logs).
    pub name: String,
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Builds the child's whole environment at each start (secrets are read then).
    pub env: Arc<EnvBuilder>,
    /// The names of the variables in that environment whose values are secrets: removed from
    /// anything the child writes to stderr before it is logged.
    pub secret_names: Vec<String>,
    /// The sandbox the child runs in (`None`: `sandbox = "off"`, the gateway's rights).
    pub sandbox: Option<mandate_sandbox::Policy>,
}

/// Why a call did not get an answer from the child.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StdioError {
    /// The child is not running (starting, restarting, or failing to start).
    #[error("upstream {0} is not running (it is starting or restarting); retry shortly")]
    NotRunning(String),
    /// The child exited while the call was in progress.
    #[error("upstream {0} exited during the call; it is being restarted")]
    Exited(String),
    /// No answer in time.
    #[error("upstream {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    Stopped,
}

/// One running child.
struct Session {
    to_child: mpsc::Sender<String>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    initialize: Value,
    /// The child's secret environment values, taken out of every answer it gives.
    scrubber: crate::scrub::Scrubber,
}

/// A request sent to the child and not yet answered: dropped unanswered (timed out, or the
/// caller's future dropped), it removes its id from the pending calls and sends the child
/// `notifications/cancelled`.
struct Waiting<'a> {
    session: &'a Session,
    id: u64,
    reason: &'static str,
    answered: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        self.session
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": self.id, "reason": self.reason}});
        let _ = self.session.to_child.try_send(cancel.to_string());
    }
}

/// A supervised stdio upstream.
pub struct StdioUpstream {
    launch: Launch,
    next_id: AtomicU64,
    live: watch::Sender<Option<Arc<Session>>>,
    stopping: AtomicBool,
    stop: tokio::sync::Notify,
    /// Times the child was (re)started, for `/metrics`.
    pub starts: AtomicU64,
    /// Whether the current child answered `initialize`.
    came_up: AtomicBool,
    /// Times the child was killed by a signal the gateway did not send (a sandbox limit, such
    /// as its CPU time, or a crash), for `/metrics`.
    pub killed: AtomicU64,
    /// The child's process group, while it runs.
    pgid: Mutex<Option<i32>>,
    last_error: Mutex<Option<String>>,
}

impl StdioUpstream {
    /// Starts supervising (the first start happens in the background).
    pub fn start(launch: Launch) -> Arc<Self> {
        let (live, _) = watch::channel(None);
        let up = Arc::new(StdioUpstream {
            launch,
            next_id: AtomicU64::new(1),
            live,
            stopping: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
            starts: AtomicU64::new(0),
            killed: AtomicU64::new(0),
            came_up: AtomicBool::new(false),
            pgid: Mutex::new(None),
            last_error: Mutex::new(None),
        });
        tokio::spawn(supervise(up.clone()));
        up
    }

    /// Whether the child is up and initialized.
    pub fn is_running(&self) -> bool {
        self.live.borrow().is_some()
    }

    /// Why the last start failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The child's answer to `initialize` (waiting for it to be up).
    pub async fn initialize_result(&self) -> Result<Value, StdioError> {
        Ok(self.session(READY_WAIT).await?.initialize.clone())
    }

    async fn session(&self, wait: Duration) -> Result<Arc<Session>, StdioError> {
        let mut rx = self.live.subscribe();
        let deadline = tokio::time::Instant::now() + wait.min(READY_WAIT);
        loop {
            if self.stopping.load(Ordering::Relaxed) {
                return Err(StdioError::Stopped);
            }
            if let Some(s) = rx.borrow_and_update().clone() {
                return Ok(s);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(StdioError::NotRunning(self.launch.name.clone()));
            }
        }
    }

    /// Sends a request (`method`, `params`) and returns the child's response message, with the
    /// id it had here (the caller puts its own back).
    pub async fn request(
        &self,
        method: &str,
        params: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, StdioError> {
        let start = Instant::now();
        let s = self.session(timeout).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        s.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        // A call given up on before its answer (the caller went away, its mandate stopped being
        // good, the timeout below) forgets its id and tells the child to stop working on it.
        let mut waiting = Waiting {
            session: &s,
            id,
            reason: "the gateway's caller went away or its mandate stopped being good",
            answered: false,
        };
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(p) = params {
            msg["params"] = p.clone();
        }
        let name = self.launch.name.clone();
        if s.to_child.send(msg.to_string()).await.is_err() {
            waiting.answered = true;
            s.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return Err(StdioError::Exited(name));
        }
        let left = timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, rx).await {
            Ok(Ok(v)) => {
                waiting.answered = true;
                Ok(v)
            }
            Ok(Err(_)) => {
                waiting.answered = true;
                Err(StdioError::Exited(name))
            }
            Err(_) => {
                waiting.reason = "the gateway's timeout for this upstream passed";
                Err(StdioError::Timeout(name, timeout))
            }
        }
    }

    /// Sends a notification (best effort: dropped while the child restarts).
    pub async fn notify(&self, method: &str, params: Option<&Value>) {
        if let Ok(s) = self.session(Duration::ZERO).await {
            let mut msg = json!({"jsonrpc": "2.0", "method": method});
            if let Some(p) = params {
                msg["params"] = p.clone();
            }
            let _ = s.to_child.send(msg.to_string()).await;
        }
    }

    /// Stops the child (SIGTERM to its process group, SIGKILL after a grace) and supervision.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop.notify_waiters();
        self.stop.notify_one();
        let pgid = *self.pgid.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pgid) = pgid {
            signal_group(pgid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + KILL_GRACE;
            while Instant::now() < deadline && group_alive(pgid) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// The child's process group id, while it runs (tests kill it to check restarts).
    pub fn process_group(&self) -> Option<i32> {
        *self.pgid.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for StdioUpstream {
    fn drop(&mut self) {
        if let Some(pgid) = *self.pgid.lock().unwrap_or_else(|e| e.into_inner()) {
            signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn signal_group(pgid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), sig);
}

fn group_alive(pgid: i32) -> bool {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_ok()
}

async fn supervise(up: Arc<StdioUpstream>) {
    let name = up.launch.name.clone();
    let mut backoff = BACKOFF_MIN;
    while !up.stopping.load(Ordering::Relaxed) {
        let started = Instant::now();
        match run_once(&up).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(upstream = %name, error = %e, "stdio upstream failed");
                *up.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        }
        if up.stopping.load(Ordering::Relaxed) {
            break;
        }
        if started.elapsed() >= HEALTHY_AFTER {
            backoff = BACKOFF_MIN;
        }
        tracing::warn!(upstream = %name, retry_in_ms = backoff.as_millis() as u64, "stdio upstream stopped; restarting");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = up.stop.notified() => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Starts the child, initializes it, relays until it exits.
async fn run_once(up: &Arc<StdioUpstream>) -> Result<(), String> {
    let l = &up.launch;
    let env = (l.env)()?;
    let env_secrets: Vec<String> = env
        .iter()
        .filter(|(k, _)| l.secret_names.contains(k))
        .map(|(_, v)| v.clone())
        .collect();
    let scrubber = crate::scrub::Scrubber::new(env_secrets.iter().map(|v| v.as_bytes().to_vec()));
    // Sandboxed: the trampoline's command, and what must outlive the child (its private home,
    // its pids cgroup), dropped once it has been waited for.
    let (mut cmd, _sandboxed, mark) = match &l.sandbox {
        Some(policy) => {
            let prepared = mandate_sandbox::prepare(mandate_sandbox::Request {
                name: &l.name,
                policy,
                program: &l.command,
                args: &l.args,
                env,
                protected: crate::config::protected_paths(),
            })
            .map_err(|e| e.to_string())?;
            let mandate_sandbox::Prepared {
                command,
                home,
                cgroup,
                spec,
            } = prepared;
            let mark = spec.failure_mark();
            (Command::from(command), Some((home, cgroup)), Some(mark))
        }
        None => {
            let mut c = Command::new(&l.command);
            c.args(&l.args).env_clear().envs(env);
            (c, None, None)
        }
    };
    cmd.stdin(StdStdio::piped())
        .stdout(StdStdio::piped())
        .stderr(StdStdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child: Child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", l.command))?;
    let said = Arc::new(Mutex::new(Said::default()));
    up.starts.fetch_add(1, Ordering::Relaxed);
    let pid = child.id().map(|p| p as i32);
    *up.pgid.lock().unwrap_or_else(|e| e.into_inner()) = pid;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let name = l.name.clone();
    let secrets: Vec<String> = env_secrets.into_iter().filter(|v| v.len() >= 4).collect();
    let stderr_done = tokio::spawn(log_stderr(
        name.clone(),
        stderr,
        secrets,
        said.clone(),
        mark,
    ));
    let (to_child, mut from_gateway) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        while let Some(line) = from_gateway.recv().await {
            if stdin.write_all(line.as_bytes()).await.is_err()
                || stdin.write_all(b"\n").await.is_err()
                || stdin.flush().await.is_err()
            {
                break;
            }
        }
    });
    let mut reader = BufReader::new(stdout);
    let result = async {
        // The handshake: initialize, its answer, then `notifications/initialized`.
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": CHILD_PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "mandate-gateway", "version": env!("CARGO_PKG_VERSION")},
        }});
        to_child
            .send(init.to_string())
            .await
            .map_err(|_| "the child closed its input")?;
        let answer = tokio::time::timeout(INIT_TIMEOUT, async {
            loop {
                let Some(msg) = read_message(&mut reader).await? else {
                    return Err("the child exited before answering initialize".to_string());
                };
                if msg.get("id") == Some(&json!(0)) {
                    return Ok(msg);
                }
            }
        })
        .await
        .map_err(|_| format!("no answer to initialize within {INIT_TIMEOUT:?}"))??;
        let mut initialize = answer.get("result").cloned().ok_or_else(|| {
            format!(
                "the child refused initialize: {}",
                answer.get("error").cloned().unwrap_or_default()
            )
        })?;
        to_child
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
            .await
            .map_err(|_| "the child closed its input")?;
        scrubber.value(&mut initialize);
        let session = Arc::new(Session {
            to_child: to_child.clone(),
            pending: Mutex::new(HashMap::new()),
            initialize,
            scrubber,
        });
        *up.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        up.live.send_replace(Some(session.clone()));
        up.came_up.store(true, Ordering::Relaxed);
        tracing::info!(upstream = %name, pid = pid.unwrap_or(0), "stdio upstream started");
        let ended = relay(&name, &mut reader, &session).await;
        up.live.send_replace(None);
        // Every call still waiting learns the child is gone (its sender is dropped).
        session
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        ended
    }
    .await;
    up.live.send_replace(None);
    writer.abort();
    // How the child ended on its own (a moment to exit after closing its output), before the
    // group is killed: a signal then is its own doing or a limit's, not ours.
    let own = tokio::time::timeout(Duration::from_millis(100), child.wait())
        .await
        .ok()
        .and_then(Result::ok);
    if let Some(pgid) = pid {
        signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
    }
    let status = match own {
        Some(s) => Some(s),
        None => {
            let _ = child.wait().await;
            None
        }
    };
    *up.pgid.lock().unwrap_or_else(|e| e.into_inner()) = None;
    // Everything in the sandbox's cgroup is killed and its home removed.
    drop(_sandboxed);
    // The trampoline's reason arrives on stderr just before it exits.
    let _ = tokio::time::timeout(Duration::from_millis(500), stderr_done).await;
    let said = std::mem::take(&mut *said.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(why) = said.refusal {
        return Err(why);
    }
    // A child that never came up: its last words say why (a file its sandbox does not let it
    // read, a missing module), at the level operators read.
    if !up.came_up.swap(false, Ordering::Relaxed) && !said.tail.is_empty() {
        let words: Vec<&str> = said.tail.iter().map(String::as_str).collect();
        tracing::warn!(upstream = %name, "the child's last words on stderr: {:?}", words.join(" | "));
    }
    if let Some(sig) = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)) {
        if !up.stopping.load(Ordering::Relaxed) {
            up.killed.fetch_add(1, Ordering::Relaxed);
            let name_of = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("an unknown signal");
            let hint = if sig == nix::sys::signal::Signal::SIGXCPU as i32 {
                "; it used up its CPU time limit (sandbox `cpu`)"
            } else {
                ""
            };
            return Err(format!("the child was killed by {name_of}{hint}"));
        }
    }
    match result {
        Ok(()) => Err(format!(
            "the child exited ({})",
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "status unknown".into())
        )),
        Err(e) => Err(e),
    }
}

/// Reads the child's messages until it closes stdout: responses go to the caller waiting for
/// them; requests from the child are refused (the gateway relays no server-to-client requests
/// from a stdio child: it has no single client to ask); notifications are logged.
async fn relay(
    name: &str,
    reader: &mut BufReader<tokio::process::ChildStdout>,
    session: &Session,
) -> Result<(), String> {
    let wanted = |n: u64| {
        session
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&n)
    };
    loop {
        let msg = match read_any(reader, &wanted).await? {
            None => return Ok(()),
            Some(Read::Message(m)) => m,
            Some(Read::TooLong(id)) => {
                tracing::warn!(upstream = %name, "the upstream answered with a message longer than {MAX_LINE} bytes; dropped");
                let waiting = id.and_then(|n| {
                    session
                        .pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&n)
                });
                if let (Some(tx), Some(n)) = (waiting, id) {
                    let _ = tx.send(json!({"jsonrpc": "2.0", "id": n, "error": {
                        "code": mandate_core::refusal::jsonrpc::UNAVAILABLE,
                        "message": format!("upstream {name} answered with more than {MAX_LINE} bytes; the answer was dropped"),
                    }}));
                }
                continue;
            }
        };
        let id = msg.get("id").cloned();
        let is_response = msg.get("result").is_some() || msg.get("error").is_some();
        match (id, is_response) {
            (Some(id), true) => {
                let waiting = id.as_u64().and_then(|n| {
                    session
                        .pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&n)
                });
                match waiting {
                    Some(tx) => {
                        let mut msg = msg;
                        session.scrubber.value(&mut msg);
                        let _ = tx.send(msg);
                    }
                    None => {
                        tracing::debug!(upstream = %name, "a response nobody waits for (late, or for a cancelled call)")
                    }
                }
            }
            (Some(id), false) => {
                let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
                tracing::debug!(upstream = %name, method, "refused a request from a stdio upstream");
                let refusal = json!({"jsonrpc": "2.0", "id": id, "error": {
                    "code": mandate_core::refusal::jsonrpc::METHOD_NOT_FOUND,
                    "message": "the Mandate gateway does not relay requests from a stdio upstream to its callers",
                }});
                let _ = session.to_child.send(refusal.to_string()).await;
            }
            (None, _) => {
                let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
                tracing::debug!(upstream = %name, method, "notification from a stdio upstream (not relayed)");
            }
        }
    }
}

/// What the child wrote: a message, or a line too long to take (drained, so the child keeps
/// running; the id found at either end of it, if any, says whose call it answered).
enum Read {
    Message(Value),
    TooLong(Option<u64>),
}

/// The next JSON message line (blank and non-JSON lines are skipped: some servers print banners).
async fn read_message<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Value>, String> {
    loop {
        match read_any(reader, &|n| n == 0).await? {
            None => return Ok(None),
            Some(Read::Message(v)) => return Ok(Some(v)),
            Some(Read::TooLong(_)) => continue,
        }
    }
}

/// What is read of a message before deciding whether to read all of it: a line of up to 8 MiB
/// parsed whole is a tree many times its size, so only a response somebody waits for is.
#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Option<Id>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    result: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// A JSON-RPC id as a child may send it: anything else is read without being kept (a derived
/// untagged enum would buffer it whole first).
enum Id {
    Number(u64),
    Text(String),
    Other,
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON-RPC id")
            }
            fn visit_u64<E>(self, n: u64) -> Result<Id, E> {
                Ok(Id::Number(n))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Id, E> {
                Ok(Id::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Id, E> {
                Ok(Id::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Id, E> {
                Ok(Id::Other)
            }
            fn visit_unit<E>(self) -> Result<Id, E> {
                Ok(Id::Other)
            }
            fn visit_str<E>(self, t: &str) -> Result<Id, E> {
                Ok(Id::Text(t.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Id, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Id::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Id, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Id::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The next message; `wanted` says which response ids somebody waits for (a response to no one
/// is skipped unread, and a request or notification is read as its id and method only).
async fn read_any<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    wanted: &(dyn Fn(u64) -> bool + Sync),
) -> Result<Option<Read>, String> {
    loop {
        let line = match read_line_bounded(reader, MAX_LINE).await {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(None),
            Err(LineError::TooLong { head, tail }) => {
                return Ok(Some(Read::TooLong(id_of(&head, &tail))))
            }
            Err(LineError::Io(e)) => return Err(e),
        };
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let Ok(env) = serde_json::from_slice::<Envelope>(text) else {
            tracing::debug!(
                "a line from a stdio upstream that is not a JSON-RPC message was skipped"
            );
            continue;
        };
        let id = match &env.id {
            Some(Id::Number(n)) => Some(json!(n)),
            Some(Id::Text(t)) => Some(json!(t)),
            Some(Id::Other) | None => None,
        };
        if env.result.is_some() || env.error.is_some() {
            match env.id {
                Some(Id::Number(n)) if wanted(n) => {}
                _ => {
                    tracing::debug!("a response nobody waits for (late, or for a cancelled call)");
                    continue;
                }
            }
            match serde_json::from_slice::<Value>(text) {
                Ok(v) if v.is_object() => return Ok(Some(Read::Message(v))),
                _ => continue,
            }
        }
        let mut small = json!({"jsonrpc": "2.0", "method": env.method.unwrap_or_default()});
        if let Some(id) = id {
            small["id"] = id;
        }
        return Ok(Some(Read::Message(small)));
    }
}

/// Bytes kept from each end of a line too long to take, to find whose answer it was.
const KEEP: usize = 256;

/// Why a line was not read.
#[derive(Debug)]
pub enum LineError {
    /// Reading failed.
    Io(String),
    /// Longer than the bound: it was read to its end and dropped; its first and last bytes.
    TooLong {
        /// The first bytes.
        head: Vec<u8>,
        /// The last bytes.
        tail: Vec<u8>,
    },
}

/// One line (without its newline), at most `max` bytes; `None` at end of input. A longer line
/// is consumed to its end (so the stream stays in step) and reported with its ends.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    let mut over: Option<(Vec<u8>, Vec<u8>)> = None;
    loop {
        let buf = reader
            .fill_buf()
            .await
            .map_err(|e| LineError::Io(e.to_string()))?;
        if buf.is_empty() {
            if let Some((head, tail)) = over {
                return Err(LineError::TooLong { head, tail });
            }
            return Ok(if line.is_empty() { None } else { Some(line) });
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        match &mut over {
            None if line.len() + take > max => {
                line.extend_from_slice(&buf[..take]);
                let head = line[..KEEP.min(line.len())].to_vec();
                let tail = line[line.len().saturating_sub(KEEP)..].to_vec();
                line = Vec::new();
                over = Some((head, tail));
            }
            None => line.extend_from_slice(&buf[..take]),
            Some((_, tail)) => {
                tail.extend_from_slice(&buf[..take]);
                let cut = tail.len().saturating_sub(KEEP);
                tail.drain(..cut);
            }
        }
        reader.consume(take + usize::from(done));
        if done {
            if let Some((head, tail)) = over {
                return Err(LineError::TooLong { head, tail });
            }
            return Ok(Some(line));
        }
    }
}

/// The gateway's numeric id of a message from its first or last bytes, only where it is surely
/// the top-level member: at the start (`{"id":12,` or `{"jsonrpc":"2.0","id":12,`) or as the
/// last member (`,"id":12}`). An `"id"` inside a result (which a tool could forge) is never taken.
fn id_of(head: &[u8], tail: &[u8]) -> Option<u64> {
    let head = String::from_utf8_lossy(head);
    let mut h = head.trim_start().strip_prefix('{')?.trim_start();
    if let Some(rest) = h.strip_prefix("\"jsonrpc\"") {
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        let rest = rest.strip_prefix("\"2.0\"")?.trim_start();
        h = rest.strip_prefix(',')?.trim_start();
    }
    let from_head = h.strip_prefix("\"id\"").and_then(|r| {
        let r = r.trim_start().strip_prefix(':')?.trim_start();
        let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
        let after = r[digits.len()..].trim_start();
        (!digits.is_empty() && (after.starts_with(',') || after.starts_with('}'))).then_some(digits)
    });
    let from_tail = || {
        let tail = String::from_utf8_lossy(tail);
        let t = tail.trim_end().strip_suffix('}')?.trim_end();
        let digits: String = t.chars().rev().take_while(char::is_ascii_digit).collect();
        let digits: String = digits.chars().rev().collect();
        let before = t[..t.len() - digits.len()]
            .trim_end()
            .strip_suffix(':')?
            .trim_end();
        (!digits.is_empty()
            && before.ends_with("\"id\"")
            && before[..before.len() - 4].trim_end().ends_with(','))
        .then_some(digits)
    };
    from_head.or_else(from_tail)?.parse().ok()
}

/// What a child wrote on stderr that the supervisor uses: the sandbox's refusal, if the
/// trampoline gave one, and the last lines (scrubbed), shown when the child never came up.
#[derive(Default)]
struct Said {
    refusal: Option<String>,
    tail: std::collections::VecDeque<String>,
}

/// Lines of a child's stderr kept for when it fails to come up.
const LAST_WORDS: usize = 5;
/// Bytes of a child's stderr read per second: beyond, the gateway stops reading until the next
/// second, the pipe fills and the child waits on its own writes, so that a child flooding stderr
/// spends its time, not the gateway's (every line is scrubbed before it is logged).
const STDERR_BUDGET: usize = 256 * 1024;

/// A reader that reads at most `budget` bytes per second from `inner`.
struct Throttled<R> {
    inner: R,
    budget: usize,
    spent: usize,
    window: tokio::time::Instant,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<R> Throttled<R> {
    fn new(inner: R, budget: usize) -> Self {
        Throttled {
            inner,
            budget,
            spent: 0,
            window: tokio::time::Instant::now(),
            pause: None,
        }
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Throttled<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let second = Duration::from_secs(1);
        if self.window.elapsed() >= second {
            self.window = tokio::time::Instant::now();
            self.spent = 0;
            self.pause = None;
        }
        if self.spent >= self.budget {
            let until = self.window + second;
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
            if std::future::Future::poll(pause.as_mut(), cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
            self.window = tokio::time::Instant::now();
            self.spent = 0;
        }
        // Never more than what is left of this second's budget (copied through a small buffer
        // of our own: stderr is not the data path).
        let room = buf.remaining().min(self.budget - self.spent).min(16 * 1024);
        let mut local = [0u8; 16 * 1024];
        let mut sub = tokio::io::ReadBuf::new(&mut local[..room]);
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut sub);
        if let Poll::Ready(Ok(())) = r {
            let n = sub.filled().len();
            buf.put_slice(&local[..n]);
            self.spent += n;
        }
        r
    }
}

async fn log_stderr(
    name: String,
    stderr: tokio::process::ChildStderr,
    secrets: Vec<String>,
    said: Arc<Mutex<Said>>,
    mark: Option<String>,
) {
    let mut reader = BufReader::new(Throttled::new(stderr, STDERR_BUDGET));
    loop {
        match read_line_bounded(&mut reader, 64 * 1024).await {
            Ok(Some(line)) => {
                let text = String::from_utf8_lossy(&line[..line.len().min(1024)]).into_owned();
                let mut text =
                    mandate_core::secrets::scrub_secrets_with(&text, &|_| false).into_owned();
                // The upstream's own secrets, whatever their shape.
                for v in &secrets {
                    if text.contains(v.as_str()) {
                        text = text.replace(v.as_str(), "[secret]");
                    }
                }
                // The sandbox's trampoline saying why it could not sandbox (it ran nothing),
                // known by the nonce only it had.
                if let Some(why) = mark.as_deref().and_then(|m| text.strip_prefix(m)) {
                    tracing::error!(upstream = %name, "the sandbox could not be set up: {why}");
                    said.lock().unwrap_or_else(|e| e.into_inner()).refusal =
                        Some(format!("sandbox: {why}"));
                    continue;
                }
                tracing::debug!(upstream = %name, "stderr: {}", text.escape_debug());
                let mut s = said.lock().unwrap_or_else(|e| e.into_inner());
                if s.tail.len() == LAST_WORDS {
                    s.tail.pop_front();
                }
                s.tail.push_back(text);
            }
            Ok(None) | Err(LineError::Io(_)) => return,
            Err(LineError::TooLong { .. }) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_the_last_line_needs_no_newline() {
        let mut r = BufReader::new(&b"abc\ndef"[..]);
        assert_eq!(
            read_line_bounded(&mut r, 10).await.unwrap(),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            read_line_bounded(&mut r, 10).await.unwrap(),
            Some(b"def".to_vec())
        );
        assert_eq!(read_line_bounded(&mut r, 10).await.unwrap(), None);
        let mut long = BufReader::new(&b"{\"id\":42,\"x\":\"0123456789abc\"}\nnext\n"[..]);
        match read_line_bounded(&mut long, 10).await {
            Err(LineError::TooLong { head, tail }) => assert_eq!(id_of(&head, &tail), Some(42)),
            other => panic!("{other:?}"),
        }
        // The long line was drained: the stream is still in step.
        assert_eq!(
            read_line_bounded(&mut long, 10).await.unwrap(),
            Some(b"next".to_vec())
        );
    }

    #[test]
    fn the_id_is_taken_only_where_it_is_surely_the_top_level_member() {
        assert_eq!(
            id_of(br#"{"jsonrpc":"2.0","id": 7,"result""#, b"x"),
            Some(7)
        );
        assert_eq!(id_of(br#"{"id":3,"jsonrpc""#, b"x"), Some(3));
        assert_eq!(
            id_of(br#"{"result":{"#, br#"...","jsonrpc":"2.0","id":19}"#),
            Some(19)
        );
        // A tool's output cannot name another caller's call.
        assert_eq!(
            id_of(br#"{"result":{"id":5,"x""#, br#"...","id":6}}"#),
            None
        );
        assert_eq!(id_of(br#"{"id":12345678901234567890123,"#, b"x"), None);
    }

    #[tokio::test]
    async fn a_throttled_reader_takes_its_budget_per_second_and_no_more() {
        use tokio::io::AsyncReadExt as _;
        let data = vec![b'x'; 10_000];
        let mut r = Throttled::new(&data[..], 4_000);
        let start = tokio::time::Instant::now();
        let mut got = vec![];
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 10_000);
        // 10,000 bytes at 4,000 a second: two full pauses.
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn only_a_response_somebody_waits_for_is_read_whole() {
        let big = format!("[{}0]", "0,".repeat(100_000));
        let input = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{big}}}\n\
             {{\"jsonrpc\":\"2.0\",\"id\":{big},\"method\":\"sampling/createMessage\"}}\n\
             {{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{big}}}\n\
             {{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"method\":\"roots/list\"}}\n\
             {{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{{\"ok\":true}}}}\n"
        );
        let mut r = BufReader::new(input.as_bytes());
        let wanted = |n: u64| n == 7;
        let mut got = vec![];
        while let Some(Read::Message(m)) = read_any(&mut r, &wanted).await.unwrap() {
            got.push(m);
        }
        // The notification and the odd-id request are read as their method only; the response
        // to nobody (id 9) is skipped; the wanted one is whole.
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[0],
            json!({"jsonrpc": "2.0", "method": "notifications/message"})
        );
        assert_eq!(
            got[1],
            json!({"jsonrpc": "2.0", "method": "sampling/createMessage"})
        );
        assert_eq!(got[2]["id"], "s");
        assert_eq!(got[3]["result"]["ok"], true);
    }

    fn sh(script: &str) -> Launch {
        Launch {
            name: "t".into(),
            command: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: Arc::new(|| Ok(vec![("PATH".into(), "/usr/bin:/bin".into())])),
            secret_names: vec![],
            // The supervisor is tested here; the sandbox with the real binary (tests/sandbox.rs).
            sandbox: None,
        }
    }

    /// A one-line MCP server in shell: answers initialize, then echoes each request's id.
    const ECHO: &str = r#"while read -r line; do
      id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
      case "$line" in
        *'"method":"initialize"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"echo","version":"1"}}}\n' "$id";;
        *'"method":"notifications/'*) ;;
        *'"method":"exit"'*) exit 3;;
        *'"method":"big"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"x":"' "$id"; head -c 9000000 /dev/zero | tr '\0' a; printf '"}}\n';;
        *) printf '{"jsonrpc":"2.0","id":%s,"result":{"env":"%s"}}\n' "$id" "${SECRET:-unset}";;
      esac
    done"#;

    #[tokio::test]
    async fn calls_are_relayed_with_ids_of_the_gateways_own() {
        let up = StdioUpstream::start(sh(ECHO));
        let init = up.initialize_result().await.unwrap();
        assert_eq!(init["serverInfo"]["name"], "echo");
        let a = up
            .request("tools/list", None, Duration::from_secs(5))
            .await
            .unwrap();
        let b = up
            .request("tools/list", None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_ne!(a["id"], b["id"]);
        // Only the configured environment: the test process's own variables are not passed.
        assert_eq!(a["result"]["env"], "unset");
        up.shutdown().await;
    }

    #[tokio::test]
    async fn a_child_that_exits_is_restarted_and_the_next_call_works() {
        let up = StdioUpstream::start(sh(ECHO));
        up.initialize_result().await.unwrap();
        let e = up
            .request("exit", None, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, StdioError::Exited(_)), "{e:?}");
        let again = up
            .request("tools/list", None, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(again.get("result").is_some());
        assert!(up.starts.load(Ordering::Relaxed) >= 2);
        up.shutdown().await;
    }

    #[tokio::test]
    async fn an_answer_over_the_bound_fails_only_its_call_and_the_child_keeps_running() {
        let up = StdioUpstream::start(sh(ECHO));
        up.initialize_result().await.unwrap();
        let big = up
            .request("big", None, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(big["error"]["code"], -32050, "{big}");
        let next = up
            .request("tools/list", None, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(next.get("result").is_some());
        assert_eq!(
            up.starts.load(Ordering::Relaxed),
            1,
            "the child was not restarted"
        );
        up.shutdown().await;
    }

    #[tokio::test]
    async fn a_call_given_up_on_is_cancelled_at_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("seen");
        let script = format!(
            r#"while read -r line; do
              printf '%s\n' "$line" >> {log:?}
              case "$line" in
                *'"method":"initialize"'*) printf '{{"jsonrpc":"2.0","id":0,"result":{{}}}}\n';;
              esac
            done"#
        );
        let up = StdioUpstream::start(sh(&script));
        up.initialize_result().await.unwrap();
        // The caller stops waiting (its future is dropped) long before the gateway's timeout.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(200),
            up.request("tools/call", None, Duration::from_secs(30)),
        )
        .await;
        assert!(gave_up.is_err());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = std::fs::read_to_string(&log).unwrap_or_default();
            if seen.contains("notifications/cancelled") {
                assert!(seen.contains("caller went away"), "{seen}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no cancellation reached the child: {seen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        up.shutdown().await;
    }

    #[tokio::test]
    async fn a_childs_secret_variables_are_scrubbed_from_its_answers() {
        let mut launch = sh(ECHO);
        launch.env = Arc::new(|| {
            Ok(vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("SECRET".into(), "sk-test-0123456789".into()),
            ])
        });
        launch.secret_names = vec!["SECRET".into()];
        let up = StdioUpstream::start(launch);
        up.initialize_result().await.unwrap();
        let a = up
            .request("tools/list", None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(a["result"]["env"], "[redacted]", "{a}");
        up.shutdown().await;
    }

    #[tokio::test]
    async fn a_child_that_never_answers_times_out() {
        let up = StdioUpstream::start(sh(
            r#"read -r line; printf '{"jsonrpc":"2.0","id":0,"result":{}}\n'; sleep 100"#,
        ));
        up.initialize_result().await.unwrap();
        let e = up
            .request("tools/list", None, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, StdioError::Timeout(..)), "{e:?}");
        up.shutdown().await;
    }

    #[tokio::test]
    async fn a_program_that_does_not_exist_says_so() {
        let up = StdioUpstream::start(Launch {
            command: "/nonexistent/mcp-server".into(),
            ..sh("")
        });
        let e = up
            .request("tools/list", None, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(matches!(e, StdioError::NotRunning(_)));
        assert!(up.last_error().unwrap().contains("cannot start"));
        up.shutdown().await;
    }
}

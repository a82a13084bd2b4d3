//! Shared fixture for the `mandate` integration tests: a real `mandate serve` child process in its
//! own MANDATE_HOME on its own port, the CLI run against it, and raw token endpoint requests built
//! with `mandate_core` (client assertions, DPoP proofs).
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod fake;
mod policy;

// Not every test binary edits the policy.
#[allow(unused_imports)]
pub use policy::*;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mandate_core::{assertion, dpop, SecretKey};
use serde_json::Value;
use tempfile::TempDir;

/// The RFC 8693 grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The RFC 8693 token type of a mandate.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Audiences of the demo fleet's ceilings.
pub const GITHUB: &str = "https://api.github.com";
pub const CI: &str = "https://ci.example.com";

/// The `mandate` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mandate")
}

/// Runs `mandate ARGS` with MANDATE_HOME=`home`, isolated from the caller's environment.
pub fn mandate(home: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("MANDATE_HOME", home)
        .env("HOME", home)
        .env_remove("MANDATE_SERVER")
        .env_remove("MANDATE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("the mandate binary runs")
}

/// Describes a finished command for assertion messages.
pub fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "mandate {}\n  status: {}\n  stdout: {}\n  stderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that a command failed the documented way: exit code 1 and exactly one stderr line that
/// starts with `error: `. Returns that line.
pub fn assert_one_line_error(args: &[&str], out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", describe(args, out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stderr must be one line: {}",
        describe(args, out)
    );
    assert!(lines[0].starts_with("error: "), "{}", describe(args, out));
    lines[0].to_string()
}

/// A free TCP port on the loopback interface (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Creates a MANDATE_HOME with `mandate init` for `127.0.0.1:port`.
pub fn init_home(port: u16, demo: bool) -> TempDir {
    let home = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["init", "--listen", listen.as_str()];
    if demo {
        args.push("--demo");
    }
    let out = mandate(home.path(), &args);
    assert!(out.status.success(), "{}", describe(&args, &out));
    home
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A fresh random identifier (for `jti`s).
pub fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A fresh Ed25519 key that no principal has registered.
pub fn fresh_key() -> SecretKey {
    SecretKey::generate(&mut rand::rngs::OsRng)
}

fn decode_part(token: &str, i: usize) -> Value {
    let part = token
        .trim()
        .split('.')
        .nth(i)
        .unwrap_or_else(|| panic!("not a compact JWS: {token}"));
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url part");
    serde_json::from_slice(&bytes).expect("JSON part")
}

/// The (unverified) JOSE header of a compact JWS.
pub fn jwt_header(token: &str) -> Value {
    decode_part(token, 0)
}

/// The (unverified) payload of a compact JWS.
pub fn jwt_payload(token: &str) -> Value {
    decode_part(token, 1)
}

/// A compact JWS of `header` and the raw `payload`, signed with `key` (for forged or re-signed
/// tokens and proofs).
pub fn sign_raw(header: &Value, payload: &[u8], key: &SecretKey) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("JSON")),
        URL_SAFE_NO_PAD.encode(payload)
    );
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()))
    )
}

/// A compact JWS of `header` and `claims`, signed with `key`.
pub fn sign_jws(header: &Value, claims: &Value, key: &SecretKey) -> String {
    sign_raw(header, &serde_json::to_vec(claims).expect("JSON"), key)
}

/// The file a principal's private key is stored in: `user:alice` -> `keys/user_alice.jwk`.
pub fn key_path(home: &Path, principal: &str) -> PathBuf {
    let file = format!("{}.jwk", principal.replacen(':', "_", 1));
    home.join("keys").join(file)
}

/// Unix permission bits of a file.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Asserts an RFC 6749 §5.2 error response with the given `error` and a non-empty description.
pub fn assert_oauth_error(resp: &(u16, Value), code: &str) {
    let (status, body) = resp;
    assert_eq!(
        body["error"], code,
        "unexpected answer (HTTP {status}): {body}"
    );
    let desc = body["error_description"].as_str().unwrap_or("");
    assert!(
        !desc.trim().is_empty(),
        "error_description is empty: {body}"
    );
    if code == "invalid_client" {
        assert!(matches!(status, 400 | 401), "HTTP {status} for {body}");
    } else {
        assert_eq!(*status, 400, "HTTP status for {body}");
    }
}

/// Asserts a successful token response and returns the access token.
pub fn assert_token(resp: &(u16, Value)) -> String {
    let (status, body) = resp;
    assert_eq!(*status, 200, "token request failed: {body}");
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_string()
}

/// A token request as owned data: the form and the DPoP header, if any.
pub type RawRequest = (Vec<(String, String)>, Option<String>);

/// Which DPoP header a raw token request carries.
pub enum Proof {
    /// A fresh, correct proof signed with the client's own key.
    Own,
    /// No DPoP header.
    None,
    /// This exact header value.
    Custom(String),
}

/// Starts `mandate serve` in `home`, appending its log to `home/serve.log`.
fn spawn_serve(home: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join("serve.log"))
        .expect("log file");
    Command::new(bin())
        .arg("serve")
        .env("MANDATE_HOME", home)
        .env("HOME", home)
        .env_remove("MANDATE_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn mandate serve")
}

/// A running `mandate serve` in its own MANDATE_HOME. Killed (and reaped) on drop.
pub struct Server {
    pub home: TempDir,
    pub port: u16,
    pub url: String,
    child: Child,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Server {
    /// `mandate init --demo` then `mandate serve`, waiting until the metadata endpoint answers.
    pub fn demo() -> Server {
        Server::start(true)
    }

    /// `mandate init [--demo]` then `mandate serve`, waiting until the metadata endpoint answers.
    pub fn start(demo: bool) -> Server {
        Server::start_with(demo, "")
    }

    /// [`Server::start`] with `patch` (TOML) merged into `server.toml` before serving, table by
    /// table (`[limits]\nheader_timeout = "2s"` changes that one setting).
    pub fn start_with(demo: bool, patch: &str) -> Server {
        let port = free_port();
        let home = init_home(port, demo);
        if !patch.is_empty() {
            let path = home.path().join("server/server.toml");
            let mut cfg: toml::Table = std::fs::read_to_string(&path)
                .expect("server.toml")
                .parse()
                .expect("server.toml is TOML");
            let patch: toml::Table = patch.parse().expect("the patch is TOML");
            for (k, v) in patch {
                match (cfg.get_mut(&k), v) {
                    (Some(toml::Value::Table(t)), toml::Value::Table(p)) => t.extend(p),
                    (_, v) => {
                        cfg.insert(k, v);
                    }
                }
            }
            std::fs::write(&path, toml::to_string(&cfg).expect("TOML")).expect("write config");
        }
        let child = spawn_serve(home.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        let mut s = Server {
            home,
            port,
            url: format!("http://127.0.0.1:{port}"),
            child,
            rt,
            http,
        };
        s.wait_ready();
        s
    }

    /// Stops the server (kill and reap) and starts it again on the same home and port.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_serve(self.home.path());
        self.wait_ready();
    }

    /// Runs `f` with a connection to the server's database (running or stopped).
    fn with_db<T>(&self, f: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> T) -> T {
        let db = self.home.path().join("server/mandate.db");
        self.rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                .await
                .expect("open the server's database");
            let out = f(&mut c).await;
            c.close().await.expect("close the database");
            out
        })
    }

    /// Runs one SQL query returning a single integer on the server's database.
    pub fn db_i64(&self, query: &str) -> i64 {
        self.with_db(async |c| {
            sqlx::query_scalar::<_, i64>(query)
                .fetch_one(c)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"))
        })
    }

    /// Runs SQL statements on the server's database (tests that tamper with it).
    pub fn sql(&self, statements: &[&str]) {
        self.with_db(async |c| {
            for q in statements {
                sqlx::query(q)
                    .execute(&mut *c)
                    .await
                    .unwrap_or_else(|e| panic!("{q}: {e}"));
            }
        })
    }

    /// Every audit event body stored so far, in order.
    pub fn event_bodies(&self) -> Vec<String> {
        self.with_db(async |c| {
            sqlx::query_scalar::<_, String>("SELECT body FROM audit_events ORDER BY seq")
                .fetch_all(c)
                .await
                .expect("read events")
        })
    }

    /// An enforcement point: `agent:pep`, registered with `mandate:pdp` named explicitly and the
    /// issuer as audience, and its DPoP-bound mandate for the decision point.
    pub fn pep(&self) -> (String, String) {
        self.ok(&[
            "agent",
            "create",
            "pep",
            "--scopes",
            "mandate:pdp",
            "--audiences",
            &self.url,
        ]);
        let m = self.own_mandate("agent:pep", "mandate:pdp", &self.url);
        ("agent:pep".into(), m)
    }

    /// Stops the server the way an operator does (SIGTERM: it signs a final checkpoint and
    /// exits; killed after 10 s) and reaps it. [`Server::start_again`] brings it back.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }

    /// Starts a stopped server again on the same home and port.
    pub fn start_again(&mut self) {
        self.child = spawn_serve(self.home.path());
        self.wait_ready();
    }

    /// The server process's id (for `kill -9` from another thread).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reaps a server that was killed from outside and starts it again on the same home.
    pub fn restart_after_kill(&mut self) {
        let _ = self.child.wait();
        self.child = spawn_serve(self.home.path());
        self.wait_ready();
    }

    /// A GET on the server: status and body text.
    pub fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            let r = self.http.get(&url).send().await.expect("server reachable");
            let status = r.status().as_u16();
            (status, r.text().await.expect("body"))
        })
    }

    /// A POST of `form` to `path`: status, headers and body text.
    pub fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            let r = self
                .http
                .post(&url)
                .form(form)
                .send()
                .await
                .expect("server reachable");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.text().await.expect("body"))
        })
    }

    /// A POST of JSON to `path` without authentication: status, headers and body text.
    pub fn post_json_plain(
        &self,
        path: &str,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            let r = self
                .http
                .post(&url)
                .json(body)
                .send()
                .await
                .expect("server reachable");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.text().await.expect("body"))
        })
    }

    /// Sends every request at once (form and DPoP header each) and returns the HTTP statuses.
    pub fn concurrent_token_requests(&self, reqs: Vec<RawRequest>) -> Vec<u16> {
        let url = self.token_url();
        self.rt.block_on(async {
            let sends = reqs.into_iter().map(|(form, dpop)| {
                let mut req = self.http.post(&url).form(&form);
                if let Some(p) = dpop {
                    req = req.header("DPoP", p);
                }
                async move {
                    req.send()
                        .await
                        .expect("token endpoint reachable")
                        .status()
                        .as_u16()
                }
            });
            let mut set = tokio::task::JoinSet::new();
            for f in sends {
                set.spawn(f);
            }
            let mut out = vec![];
            while let Some(s) = set.join_next().await {
                out.push(s.expect("request task"));
            }
            out
        })
    }

    fn wait_ready(&mut self) {
        let meta = format!("{}/.well-known/oauth-authorization-server", self.url);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("mandate serve exited early ({status}):\n{}", self.log());
            }
            let ok = self.rt.block_on(async {
                match self.http.get(&meta).send().await {
                    Ok(r) => r.status().as_u16() == 200,
                    Err(_) => false,
                }
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("serve.log")).unwrap_or_default()
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.url)
    }

    /// Runs the CLI in this server's home.
    pub fn cli(&self, args: &[&str]) -> Output {
        mandate(self.home.path(), args)
    }

    /// Runs the CLI, asserts success and returns stdout (trimmed).
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "{}", describe(args, &out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs the CLI with `--json`, asserts success and parses stdout.
    pub fn ok_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("stdout of {a:?} is not JSON ({e}): {out}"))
    }

    /// The private key of a principal made in this home (`agent:planner`, `user:alice`).
    pub fn key(&self, principal: &str) -> SecretKey {
        let path = key_path(self.home.path(), principal);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        SecretKey::parse(&text).expect("a usable private key")
    }

    /// A fresh RFC 7523 client assertion for `principal`, signed with `key`.
    pub fn assertion(&self, key: &SecretKey, principal: &str) -> String {
        assertion::make(key, principal, &self.url, now(), &random_id())
    }

    /// A fresh DPoP proof for `POST token_endpoint` signed with `key`.
    pub fn proof(&self, key: &SecretKey) -> String {
        dpop::make_proof(key, "POST", &self.token_url(), now(), &random_id(), None)
    }

    /// POSTs a form to the token endpoint, with an optional DPoP header.
    /// Returns the HTTP status and the JSON body.
    pub fn token_request(&self, form: &[(&str, &str)], dpop: Option<&str>) -> (u16, Value) {
        self.try_token_request(form, dpop)
            .unwrap_or_else(|e| panic!("token endpoint: {e}"))
    }

    /// [`Server::token_request`], with a failed connection or a cut-off answer as an error
    /// (for tests that kill the server mid-request).
    pub fn try_token_request(
        &self,
        form: &[(&str, &str)],
        dpop: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let url = self.token_url();
        self.rt.block_on(async {
            let mut req = self.http.post(&url).form(form);
            if let Some(p) = dpop {
                req = req.header("DPoP", p);
            }
            let resp = req.send().await.map_err(|e| format!("unreachable: {e}"))?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| format!("no body: {e}"))?;
            let body = serde_json::from_str(&text)
                .map_err(|e| format!("HTTP {status}: body is not JSON ({e}): {text}"))?;
            Ok((status, body))
        })
    }

    /// A token request authenticated as `principal` with its key from this home (fresh assertion),
    /// carrying `params` and the given DPoP header.
    pub fn as_client(
        &self,
        principal: &str,
        params: &[(&str, &str)],
        proof: Proof,
    ) -> (u16, Value) {
        self.try_client_request(principal, params, proof)
            .unwrap_or_else(|e| panic!("token endpoint: {e}"))
    }

    fn try_client_request(
        &self,
        principal: &str,
        params: &[(&str, &str)],
        proof: Proof,
    ) -> Result<(u16, Value), String> {
        let key = self.key(principal);
        let assertion = self.assertion(&key, principal);
        let mut form: Vec<(&str, &str)> = vec![
            ("client_assertion_type", assertion::ASSERTION_TYPE),
            ("client_assertion", assertion.as_str()),
        ];
        form.extend_from_slice(params);
        let header = match proof {
            Proof::Own => Some(self.proof(&key)),
            Proof::None => None,
            Proof::Custom(h) => Some(h),
        };
        self.try_token_request(&form, header.as_deref())
    }

    /// [`Server::as_client`] with `Proof::Own`, where a connection failure is an error.
    pub fn try_as_client(
        &self,
        principal: &str,
        params: &[(&str, &str)],
    ) -> Result<(u16, Value), String> {
        self.try_client_request(principal, params, Proof::Own)
    }

    /// `principal`'s own DPoP-bound mandate (client_credentials) for `scope` at `aud`.
    pub fn own_mandate(&self, principal: &str, scope: &str, aud: &str) -> String {
        let params = [
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("audience", aud),
        ];
        assert_token(&self.as_client(principal, &params, Proof::Own))
    }

    /// RFC 8693 push: `holder` delegates `subject` to `to`, with extra parameters.
    pub fn push(
        &self,
        holder: &str,
        subject: &str,
        to: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut params = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_actor", to),
        ];
        params.extend_from_slice(extra);
        self.as_client(holder, &params, Proof::Own)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------------
// Introspection (RFC 7662), revocation (RFC 7009) and the revocation feed: used by
// tests/revocation.rs and tests/attacks_server.rs.
// ------------------------------------------------------------------------------------------------

/// The principal the tests introspect as: registered by `mandate init`, never revoked by them.
pub const INTROSPECTOR: &str = "user:admin";

/// RFC 7662 introspection path.
pub const INTROSPECT_PATH: &str = "/oauth2/introspect";
/// RFC 7009 revocation path.
pub const REVOKE_PATH: &str = "/oauth2/revoke";
/// Revocation feed path.
pub const FEED_PATH: &str = "/revocations/v1";

/// Parses a response body as JSON, or panics with the status and the text.
pub fn json_body(status: u16, text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("HTTP {status}: body is not JSON ({e}): {text}"))
}

/// `GET {url}/revocations/v1?since=N&wait=S` from any thread (its own runtime and client).
/// Returns the status, the JSON body and how long the request took.
pub fn feed_get(base_url: &str, since: i64, wait: u64) -> (u16, Value, Duration) {
    let url = format!("{base_url}{FEED_PATH}?since={since}&wait={wait}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client");
        let started = Instant::now();
        let r = http.get(&url).send().await.expect("feed reachable");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let took = started.elapsed();
        (status, json_body(status, &text), took)
    })
}

impl Server {
    /// The introspection endpoint URL.
    pub fn introspect_url(&self) -> String {
        format!("{}{INTROSPECT_PATH}", self.url)
    }

    /// The RFC 7009 revocation endpoint URL.
    pub fn revoke_url(&self) -> String {
        format!("{}{REVOKE_PATH}", self.url)
    }

    /// The private signing key of an issuer `kid` (`MANDATE_HOME/server/issuer-keys/KID.jwk`).
    pub fn issuer_key(&self, kid: &str) -> SecretKey {
        let path = self
            .home()
            .join("server")
            .join("issuer-keys")
            .join(format!("{kid}.jwk"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        SecretKey::parse(&text).expect("a usable issuer key")
    }

    /// The kids the JWKS publishes.
    pub fn jwks_kids(&self) -> Vec<String> {
        let (status, text) = self.get("/oauth2/jwks");
        assert_eq!(status, 200, "{text}");
        json_body(status, &text)["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_string())
            .collect()
    }

    /// POSTs a form to `path` with an optional DPoP header: status and body text, whatever the
    /// body is (the body limit answers without JSON).
    pub fn post_raw(&self, path: &str, form: &[(&str, &str)], dpop: Option<&str>) -> (u16, String) {
        self.try_post_raw(path, form, dpop)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Like [`Server::post_raw`], but a connection the server cut while the request was being
    /// sent (as it may when it refuses an oversized body before reading it) is an `Err`.
    pub fn try_post_raw(
        &self,
        path: &str,
        form: &[(&str, &str)],
        dpop: Option<&str>,
    ) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            let mut req = self.http.post(&url).form(form);
            if let Some(p) = dpop {
                req = req.header("DPoP", p);
            }
            let r = req.send().await.map_err(|e| format!("{e:?}"))?;
            let status = r.status().as_u16();
            let text = r.text().await.map_err(|e| format!("{e:?}"))?;
            Ok((status, text))
        })
    }

    /// Like [`Server::try_post_raw`], on a connection of its own that is never reused: for
    /// requests the server may answer and then drop the connection for (oversized bodies), so a
    /// dead pooled connection cannot fail the next, unrelated request.
    pub fn try_post_raw_once(
        &self,
        path: &str,
        form: &[(&str, &str)],
        dpop: Option<&str>,
    ) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(0)
                .build()
                .expect("HTTP client");
            let mut req = http.post(&url).form(form);
            if let Some(p) = dpop {
                req = req.header("DPoP", p);
            }
            let r = req.send().await.map_err(|e| format!("{e:?}"))?;
            let status = r.status().as_u16();
            let text = r.text().await.map_err(|e| format!("{e:?}"))?;
            Ok((status, text))
        })
    }

    /// POSTs `params` to `path` authenticated as `principal` (fresh assertion, aud = issuer,
    /// no DPoP); see [`Server::try_post_raw`].
    pub fn try_authed_raw(
        &self,
        path: &str,
        principal: &str,
        params: &[(&str, &str)],
    ) -> Result<(u16, String), String> {
        let a = self.assertion_for(principal, &self.url);
        let mut form: Vec<(&str, &str)> = vec![
            ("client_assertion_type", assertion::ASSERTION_TYPE),
            ("client_assertion", a.as_str()),
        ];
        form.extend_from_slice(params);
        self.try_post_raw(path, &form, None)
    }

    /// A client assertion for `principal` (key from this home) with the given `aud`.
    pub fn assertion_for(&self, principal: &str, aud: &str) -> String {
        assertion::make(&self.key(principal), principal, aud, now(), &random_id())
    }

    /// POSTs `params` to `path` authenticated as `principal` (fresh assertion, aud = issuer,
    /// no DPoP). Status and body text.
    pub fn authed_raw(
        &self,
        path: &str,
        principal: &str,
        params: &[(&str, &str)],
    ) -> (u16, String) {
        let a = self.assertion_for(principal, &self.url);
        let mut form: Vec<(&str, &str)> = vec![
            ("client_assertion_type", assertion::ASSERTION_TYPE),
            ("client_assertion", a.as_str()),
        ];
        form.extend_from_slice(params);
        self.post_raw(path, &form, None)
    }

    /// RFC 7662 introspection of `token` by `principal`: status and JSON body.
    pub fn introspect_as(&self, principal: &str, token: &str) -> (u16, Value) {
        let (status, text) = self.authed_raw(INTROSPECT_PATH, principal, &[("token", token)]);
        (status, json_body(status, &text))
    }

    /// RFC 7009 revocation of `token` by `principal`: status and JSON body.
    pub fn revoke_as(&self, principal: &str, token: &str) -> (u16, Value) {
        let (status, text) = self.authed_raw(REVOKE_PATH, principal, &[("token", token)]);
        (status, json_body(status, &text))
    }

    /// Asserts that introspection (by [`INTROSPECTOR`]) finds `token` active; returns the answer.
    #[track_caller]
    pub fn assert_active(&self, token: &str, what: &str) -> Value {
        let (status, body) = self.introspect_as(INTROSPECTOR, token);
        assert_eq!(status, 200, "introspecting {what}: {body}");
        assert_eq!(body["active"], true, "{what} should be active: {body}");
        assert_eq!(
            body["jti"],
            jwt_payload(token)["jti"],
            "{what}: introspection answered for another token: {body}"
        );
        body
    }

    /// Asserts that introspection (by [`INTROSPECTOR`]) answers exactly `{"active": false}`.
    #[track_caller]
    pub fn assert_inactive(&self, token: &str, what: &str) {
        let (status, body) = self.introspect_as(INTROSPECTOR, token);
        assert_eq!(status, 200, "introspecting {what}: {body}");
        assert_eq!(
            body,
            serde_json::json!({"active": false}),
            "{what} should be inactive, with nothing else said"
        );
    }

    /// `GET /revocations/v1?since=N&wait=S` on this server.
    pub fn feed(&self, since: i64, wait: u64) -> (u16, Value, Duration) {
        feed_get(&self.url, since, wait)
    }
}

/// A client assertion for `principal` addressed to `aud`, signed with any `key`.
pub fn assertion_by(key: &SecretKey, principal: &str, aud: &str) -> String {
    assertion::make(key, principal, aud, now(), &random_id())
}

impl Server {
    /// POSTs JSON to `path` with exactly these headers (repeated names sent as repeated headers):
    /// status and body text.
    pub fn post_json_with_headers(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &Value,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            let mut req = self.http.post(&url).json(body);
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            let r = req.send().await.expect("server reachable");
            let status = r.status().as_u16();
            (status, r.text().await.expect("body"))
        })
    }

    /// POSTs JSON to `path` with `Authorization: DPoP <mandate>` and a fresh proof signed by
    /// `principal`'s key: status, headers and body text.
    pub fn post_json_dpop(
        &self,
        path: &str,
        principal: &str,
        mandate: &str,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let json = [("content-type", "application/json")];
        let body = Some(serde_json::to_vec(body).unwrap());
        self.dpop_send("POST", path, principal, mandate, &json, body)
    }

    /// Any method, without a body, with `Authorization: DPoP <mandate>` and a fresh proof.
    pub fn dpop_call(
        &self,
        method: &str,
        path: &str,
        principal: &str,
        mandate: &str,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        self.dpop_send(method, path, principal, mandate, &[], None)
    }

    /// GET with `Authorization: DPoP <mandate>` and a fresh proof: status and body text.
    pub fn get_dpop(&self, path: &str, principal: &str, mandate: &str) -> (u16, String) {
        let (status, _, body) = self.dpop_send("GET", path, principal, mandate, &[], None);
        (status, body)
    }

    /// Any method with these headers and raw body bytes, `Authorization: DPoP <mandate>` and a
    /// fresh proof: status, headers and body text.
    pub fn dpop_send(
        &self,
        method: &str,
        path: &str,
        principal: &str,
        mandate: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let url = format!("{}{path}", self.url);
        let key = self.key(principal);
        let proof = dpop::make_proof(
            &key,
            method.as_str(),
            &url,
            now(),
            &random_id(),
            Some(mandate),
        );
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method, &url)
                .header("Authorization", format!("DPoP {mandate}"))
                .header("DPoP", proof);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.body(b);
            }
            let r = req.send().await.expect("server reachable");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.text().await.expect("body"))
        })
    }
}

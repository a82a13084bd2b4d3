//! Upstreams as configured: `[upstream.NAME]` tables in `server.toml`, or added live with
//! `mandate upstream add` (stored by the authority in the same shape). Parsing is strict (unknown
//! keys are errors) and [`UpstreamConfig::validate`] says in one line what is wrong and how to
//! fix it; nothing is guessed.
//!
//! ```toml
//! [upstream.files]
//! stdio = ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv/repo"]
//! pass_env = ["PATH"]
//! secret_env = { GITHUB_TOKEN = "@/etc/mandate/github-token" }
//! scopes = [{ tools = "read_*", scope = "files:read" }]
//! [upstream.files.sandbox]            # stdio upstreams are always sandboxed (docs/sandbox.md)
//! read = ["/srv/docs"]
//! write = ["/srv/repo"]
//! network = ["api.github.com:443"]
//! memory = "1GiB"
//!
//! [upstream.search]
//! url = "https://search.internal/mcp"
//! secret_header = { Authorization = "env:SEARCH_AUTHORIZATION" }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use mandate_core::Scope;
use serde::{Deserialize, Serialize};

use crate::scopes::{ToolRule, ToolScopes};

/// Longest upstream name.
pub const MAX_NAME_LEN: usize = 64;
/// Most scope rules, environment entries, headers or routes one upstream may declare.
pub const MAX_ENTRIES: usize = 256;
/// Environment variables passed to a stdio upstream when its configuration names none
/// (`pass_env`): what a program needs to find its interpreter and cache, nothing secret.
pub const DEFAULT_PASS_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];
/// How long a call may wait for its upstream when the configuration does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One upstream's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// MCP over Streamable HTTP: the server's endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// MCP over stdio: the command and its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stdio: Vec<String>,
    /// A plain HTTP API: its base URL (routes map requests to actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// The audience mandates must name (default `mcp:NAME`, or `http:NAME` for an HTTP API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// stdio: the gateway's environment variables passed on (default [`DEFAULT_PASS_ENV`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_env: Option<Vec<String>>,
    /// stdio: plain (non-secret) environment values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// stdio: environment variables whose values are secrets (`@FILE` or `env:NAME`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// HTTP: headers whose values are secrets (`@FILE` or `env:NAME`), sent to this upstream only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_header: BTreeMap<String, String>,
    /// HTTP: per subject (`user:alice`), headers that replace `secret_header`'s for calls on that
    /// subject's behalf, so alice's calls carry alice's token and never bob's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subject_header: BTreeMap<String, BTreeMap<String, String>>,
    /// When set, calls of subjects without an entry in `subject_header` are refused instead of
    /// sent with the upstream's shared `secret_header`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub subject_header_required: bool,
    /// Tools mapped to scopes other than `NAME:TOOL`, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<ScopeRuleConfig>,
    /// HTTP API: routes mapped to actions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    /// How long one call may take (`30s`, `2m`; default 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The environment label policies see for this upstream (`production`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Free-form labels policies see.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// stdio: the sandbox the child runs in (`[upstream.NAME.sandbox]`; absent: the defaults,
    /// which let it read the system and write only its private home, with no network), or
    /// `sandbox = "off"` to run it with the gateway's rights (audited, shown by `upstream list`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxSetting>,
    /// HTTP: send, with each request, a mandate the issuer mints for it (`Authorization: Bearer`:
    /// the caller's chain, the call's scope, at most 60 s, audience `forward_audience`), so a
    /// Mandate-aware upstream can check the whole chain itself. The caller's own mandate is never
    /// forwarded.
    #[serde(default, skip_serializing_if = "is_false")]
    pub forward_mandate: bool,
    /// The audience of forwarded mandates (default: the upstream URL's origin). Never the
    /// gateway's own audience for the upstream, so a forwarded mandate is no good at the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_audience: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `sandbox = "off"`, or a `[upstream.NAME.sandbox]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxSetting {
    /// No sandbox: the child runs with the gateway's rights.
    Off,
    /// The sandbox as declared.
    On(mandate_sandbox::SandboxConfig),
}

impl Serialize for SandboxSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SandboxSetting::Off => s.serialize_str("off"),
            SandboxSetting::On(c) => c.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SandboxSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SandboxSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "\"off\" or a table (read, write, network, memory, processes, open_files, cpu)",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SandboxSetting, E> {
                if v == "off" {
                    Ok(SandboxSetting::Off)
                } else {
                    Err(E::custom(format!(
                        "sandbox = {v:?}: the one word accepted is \"off\"; declare a sandbox as a table ([upstream.NAME.sandbox] with read, write, network, memory, processes)"
                    )))
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<SandboxSetting, A::Error> {
                mandate_sandbox::SandboxConfig::deserialize(
                    serde::de::value::MapAccessDeserializer::new(m),
                )
                .map(SandboxSetting::On)
            }
        }
        d.deserialize_any(V)
    }
}

/// `{ tools = "GLOB", scope = "SCOPE" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeRuleConfig {
    /// A tool name or glob (`*`, `?`).
    pub tools: String,
    /// The scope those tools need.
    pub scope: String,
}

/// `{ method = "GET", path = "/repos/*/pulls", action = "list_pulls" }`: an HTTP API route, decided
/// as a call of the tool `action` (scope `NAME:ACTION` unless a scope rule maps it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The method (`GET`, or `*` for any).
    pub method: String,
    /// The path pattern below the upstream (`*` matches within one segment, `**` any rest).
    pub path: String,
    /// The action (tool name) the route is decided as.
    pub action: String,
}

/// How a configured upstream is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// MCP over Streamable HTTP.
    McpHttp(url::Url),
    /// MCP over stdio.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// A plain HTTP API.
    Http(url::Url),
}

impl Transport {
    /// `mcp-http`, `stdio` or `http`.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::McpHttp(_) => "mcp-http",
            Transport::Stdio { .. } => "stdio",
            Transport::Http(_) => "http",
        }
    }

    /// Whether calls are MCP (served at `/mcp/NAME`) rather than HTTP (`/http/NAME/...`).
    pub fn is_mcp(&self) -> bool {
        !matches!(self, Transport::Http(_))
    }
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `@FILE`: the file's contents, trailing newline removed.
    File(std::path::PathBuf),
    /// `env:NAME`: the gateway's environment variable.
    Env(String),
}

impl SecretSource {
    /// Reads `@FILE` or `env:NAME`.
    pub fn parse(s: &str) -> Result<SecretSource, ConfigError> {
        if let Some(path) = s.strip_prefix('@') {
            if path.is_empty() {
                return Err(ConfigError(
                    "a secret `@FILE` names no file: write `@/path/to/file`".into(),
                ));
            }
            return Ok(SecretSource::File(path.into()));
        }
        if let Some(name) = s.strip_prefix("env:") {
            if name.starts_with("MANDATE_") {
                return Err(ConfigError(format!(
                    "secret source env:{name} is the gateway's own setting and is never sent to an upstream"
                )));
            }
            if !valid_env_name(name) {
                return Err(ConfigError(format!(
                    "secret source env:{name:?} is not an environment variable name (letters, digits, _)"
                )));
            }
            return Ok(SecretSource::Env(name.to_string()));
        }
        Err(ConfigError(
            "a secret is given as `@FILE` or `env:NAME`, never inline (so it stays out of server.toml and the audit log)".into(),
        ))
    }

    /// The secret's value now (read at each use, so a rotated file takes effect at once). A file
    /// is checked on every read, not only when it is configured (it can be replaced since): see
    /// [`read_secret_file`].
    pub fn read(&self) -> Result<String, ConfigError> {
        match self {
            SecretSource::File(p) => read_secret_file(p),
            SecretSource::Env(n) => std::env::var(n).map_err(|_| {
                ConfigError(format!("the secret's environment variable {n} is not set"))
            }),
        }
    }
}

/// Directories no secret file may resolve into: the server's own directory (issuer keys, the
/// audit log's HMAC key, the database) and the gateway's, registered at startup.
static PROTECTED_DIRS: std::sync::RwLock<Vec<std::path::PathBuf>> =
    std::sync::RwLock::new(Vec::new());

/// Registers `dir` as a directory whose files are never read as an upstream's secret, whatever
/// path, symbolic link or hard link leads to them.
pub fn protect_directory(dir: &std::path::Path) {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut dirs = PROTECTED_DIRS.write().unwrap_or_else(|e| e.into_inner());
    if !dirs.contains(&dir) {
        dirs.push(dir);
    }
}

/// Paths no sandboxed upstream may reach, beside [`PROTECTED_DIRS`]: the whole MANDATE_HOME,
/// the configuration the gateway was started with, every upstream's secret files.
static SANDBOX_PROTECTED: std::sync::RwLock<Vec<std::path::PathBuf>> =
    std::sync::RwLock::new(Vec::new());

/// Registers a file or directory no sandboxed upstream may reach (a secret file, the
/// configuration, MANDATE_HOME). Secret files may still be read from it by the gateway.
pub fn protect_from_sandbox(file: &std::path::Path) {
    let mut files = SANDBOX_PROTECTED.write().unwrap_or_else(|e| e.into_inner());
    for f in [file.to_path_buf(), file.canonicalize().unwrap_or_default()] {
        if !f.as_os_str().is_empty() && !files.contains(&f) {
            files.push(f);
        }
    }
}

/// Everything a sandboxed upstream must never reach: the protected directories and files.
pub fn protected_paths() -> Vec<std::path::PathBuf> {
    let mut all = PROTECTED_DIRS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    all.extend(
        SANDBOX_PROTECTED
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned(),
    );
    all
}

/// Reads a secret file (trailing newline removed), refusing what could be one of the server's own
/// files under another name. The file is opened once and everything is checked on that open file,
/// so it cannot be swapped between the checks and the read:
/// - it must be a regular file with a single link (a hard link elsewhere could be a key file);
/// - the path the kernel reports for the open file (`/proc/self/fd/N`, symbolic links resolved)
///   must not lie in a [`protect_directory`] directory.
///
/// Symbolic links are otherwise followed, as Kubernetes secret volumes need.
fn read_secret_file(p: &std::path::Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let fail = |why: String| ConfigError(format!("cannot read secret file {}: {why}", p.display()));
    let f = std::fs::File::open(p).map_err(|e| fail(e.to_string()))?;
    let meta = f.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("it is not a regular file".into()));
    }
    if meta.nlink() != 1 {
        return Err(fail(format!(
            "it has {} hard links, so it may be another file under a second name; give the secret a file of its own",
            meta.nlink()
        )));
    }
    let real = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map_err(|e| fail(format!("cannot tell where it really is ({e})")))?;
    let dirs = PROTECTED_DIRS.read().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = dirs.iter().find(|d| real.starts_with(d)) {
        return Err(fail(format!(
            "it resolves to {}, inside the server's own directory {} (issuer keys, audit keys, the database); never send those to an upstream",
            real.display(),
            d.display()
        )));
    }
    drop(dirs);
    // Bounded: a secret is a token or a key, not a file to stream.
    let mut text = String::new();
    f.take(MAX_SECRET_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    if text.len() as u64 > MAX_SECRET_BYTES {
        return Err(fail(format!(
            "it is larger than {MAX_SECRET_BYTES} bytes, which no credential is"
        )));
    }
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// The largest secret file read (64 KiB).
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// A configuration error: one line saying what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Whether `name` is a valid upstream name: 1 to 64 lower-case letters, digits, `-` and `_`,
/// starting with a letter (it appears in URLs, audiences and scopes).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Headers that are never set from configuration: framing and hop-by-hop headers, and the ones
/// the gateway itself owns on the way to the upstream.
const RESERVED_HEADERS: [&str; 12] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "dpop",
    "mcp-session-id",
    "mcp-protocol-version",
];

/// An upstream checked: everything the gateway needs to serve it.
#[derive(Debug, Clone)]
pub struct Checked {
    /// How it is reached.
    pub transport: Transport,
    /// The audience mandates must name.
    pub audience: String,
    /// Which scope each tool needs.
    pub scopes: ToolScopes,
    /// Environment names passed through (stdio).
    pub pass_env: Vec<String>,
    /// Secret environment variables (stdio).
    pub secret_env: Vec<(String, SecretSource)>,
    /// Secret headers (HTTP), shared by every subject.
    pub secret_header: Vec<(http::HeaderName, SecretSource)>,
    /// Secret headers per subject.
    pub subject_header: BTreeMap<String, Vec<(http::HeaderName, SecretSource)>>,
    /// How long one call may take.
    pub timeout: Duration,
    /// HTTP API routes, in order.
    pub routes: Vec<RouteConfig>,
    /// The audience of the mandate minted for each forwarded request, when one is forwarded.
    pub forward_audience: Option<String>,
    /// stdio: the sandbox the child runs in (`None`: `sandbox = "off"`, or not stdio).
    pub sandbox: Option<mandate_sandbox::Policy>,
}

impl UpstreamConfig {
    /// Checks the sandbox's declared paths against this machine: each exists, and none reaches
    /// a protected path (MANDATE_HOME, keys, configuration, secret files). Run when the upstream
    /// is added or the server starts, so a mistake is refused at once, not at the child's start.
    pub fn check_sandbox_paths(&self, name: &str) -> Result<(), ConfigError> {
        if let Some(SandboxSetting::On(c)) = &self.sandbox {
            let policy = c
                .check()
                .map_err(|e| ConfigError(format!("upstream {name}: {e}")))?;
            let mut protected = protected_paths();
            protected.extend(self.secret_files());
            mandate_sandbox::launch::declared(name, &policy, &protected)
                .map_err(|e| ConfigError(e.to_string()))?;
        }
        Ok(())
    }

    /// Whether a stdio child runs unsandboxed (`sandbox = "off"`).
    pub fn sandbox_off(&self) -> bool {
        self.sandbox == Some(SandboxSetting::Off)
    }

    /// The secret files this configuration reads (`@FILE` sources), for a caller that must keep
    /// them out of places no upstream may read from (the server's own directory).
    pub fn secret_files(&self) -> Vec<std::path::PathBuf> {
        let mut all: Vec<&String> = self
            .secret_env
            .values()
            .chain(self.secret_header.values())
            .collect();
        for t in self.subject_header.values() {
            all.extend(t.values());
        }
        all.iter()
            .filter_map(|v| v.strip_prefix('@'))
            .map(std::path::PathBuf::from)
            .collect()
    }

    /// Refuses secret files inside `dir` (the server's own directory: issuer keys, the audit
    /// log's HMAC key, the database), so no upstream is configured to receive them.
    pub fn check_secret_files_outside(
        &self,
        name: &str,
        dir: &std::path::Path,
    ) -> Result<(), ConfigError> {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        for f in self.secret_files() {
            use std::os::unix::fs::MetadataExt as _;
            if let Ok(m) = std::fs::metadata(&f) {
                if m.nlink() > 1 {
                    return Err(ConfigError(format!(
                        "upstream {name}: secret file {} has {} hard links, so it may be another file under a second name; give the secret a file of its own",
                        f.display(),
                        m.nlink()
                    )));
                }
            }
            let abs = f.canonicalize().unwrap_or(f.clone());
            if abs.starts_with(&dir) {
                return Err(ConfigError(format!(
                    "upstream {name}: secret file {} is inside the server's own directory {} (issuer keys, audit keys, the database); never send those to an upstream",
                    f.display(),
                    dir.display()
                )));
            }
        }
        Ok(())
    }

    /// Checks the configuration of upstream `name`.
    pub fn validate(&self, name: &str) -> Result<Checked, ConfigError> {
        let err = |m: String| ConfigError(format!("upstream {name}: {m}"));
        if !valid_name(name) {
            return Err(ConfigError(format!(
                "upstream name {name:?} is not valid: 1 to {MAX_NAME_LEN} lower-case letters, digits, '-' or '_', starting with a letter"
            )));
        }
        let given = [
            self.url.is_some(),
            !self.stdio.is_empty(),
            self.http.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(err(
                "give exactly one of `url` (MCP over HTTP), `stdio` (a command) or `http` (an HTTP API)".into(),
            ));
        }
        let parse_url = |u: &str, what: &str| -> Result<url::Url, ConfigError> {
            let parsed =
                url::Url::parse(u).map_err(|e| err(format!("{what} {u:?} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(err(format!(
                    "{what} {u:?} must be an http:// or https:// URL with a host"
                )));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(err(format!(
                    "{what} must not carry credentials; put them in `secret_header`"
                )));
            }
            // A query could carry a key (`?api_key=...`), and the URL is stored, shown and
            // recorded in the admin change's event: keys go in `secret_header`.
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(err(format!(
                    "{what} must not have a query or fragment (a key there would be stored and shown); put credentials in `secret_header`"
                )));
            }
            Ok(parsed)
        };
        let transport = if let Some(u) = &self.url {
            Transport::McpHttp(parse_url(u, "url")?)
        } else if let Some(u) = &self.http {
            Transport::Http(parse_url(u, "http")?)
        } else {
            let command = self.stdio[0].clone();
            if command.trim().is_empty() {
                return Err(err("stdio names an empty command".into()));
            }
            Transport::Stdio {
                command,
                args: self.stdio[1..].to_vec(),
            }
        };
        let counts = [
            self.env.len(),
            self.secret_env.len(),
            self.secret_header.len(),
            self.scopes.len(),
            self.routes.len(),
            self.subject_header.len(),
            self.labels.len(),
            self.pass_env.as_ref().map_or(0, Vec::len),
        ];
        if counts.iter().any(|n| *n > MAX_ENTRIES) {
            return Err(err(format!(
                "at most {MAX_ENTRIES} entries in each list or table"
            )));
        }
        let stdio = matches!(transport, Transport::Stdio { .. });
        if !stdio
            && (!self.env.is_empty() || !self.secret_env.is_empty() || self.pass_env.is_some())
        {
            return Err(err(
                "`env`, `pass_env` and `secret_env` are for stdio upstreams; an HTTP upstream takes `secret_header`".into(),
            ));
        }
        if stdio && (!self.secret_header.is_empty() || !self.subject_header.is_empty()) {
            return Err(err(
                "`secret_header` and `subject_header` are for HTTP upstreams; a stdio upstream takes `secret_env`".into(),
            ));
        }
        let sandbox = match (&self.sandbox, stdio) {
            (Some(_), false) => {
                return Err(err(
                    "`sandbox` is for stdio upstreams (an HTTP upstream runs elsewhere)".into(),
                ));
            }
            (_, false) | (Some(SandboxSetting::Off), true) => None,
            (None, true) => Some(mandate_sandbox::Policy::default()),
            (Some(SandboxSetting::On(c)), true) => Some(c.check().map_err(|e| err(e.0))?),
        };
        if self.subject_header_required && self.subject_header.is_empty() {
            return Err(err(
                "`subject_header_required` needs `subject_header` entries".into(),
            ));
        }
        if !self.routes.is_empty() && !matches!(transport, Transport::Http(_)) {
            return Err(err(
                "`routes` are for HTTP API upstreams (`http = URL`)".into()
            ));
        }
        for k in self.env.keys().chain(self.secret_env.keys()) {
            if !valid_env_name(k) {
                return Err(err(format!("{k:?} is not an environment variable name")));
            }
        }
        let pass_env = match &self.pass_env {
            Some(v) => v.clone(),
            None => DEFAULT_PASS_ENV.iter().map(|s| s.to_string()).collect(),
        };
        for k in &pass_env {
            if !valid_env_name(k) {
                return Err(err(format!(
                    "pass_env: {k:?} is not an environment variable name"
                )));
            }
            if k.starts_with("MANDATE_") {
                return Err(err(format!(
                    "pass_env: {k} is the gateway's own setting and is never passed to an upstream"
                )));
            }
        }
        let secret_env = self
            .secret_env
            .iter()
            .map(|(k, v)| Ok((k.clone(), SecretSource::parse(v).map_err(|e| err(e.0))?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let headers = |table: &BTreeMap<String, String>| {
            table
                .iter()
                .map(|(k, v)| {
                    let h = http::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| err(format!("{k:?} is not an HTTP header name")))?;
                    if RESERVED_HEADERS.contains(&h.as_str()) {
                        return Err(err(format!("header {k} is set by the gateway itself")));
                    }
                    Ok((h, SecretSource::parse(v).map_err(|e| err(e.0))?))
                })
                .collect::<Result<Vec<_>, ConfigError>>()
        };
        let secret_header = headers(&self.secret_header)?;
        let mut subject_header = BTreeMap::new();
        for (subject, table) in &self.subject_header {
            if !subject.contains(':') {
                return Err(err(format!(
                    "subject_header: {subject:?} is not a principal like user:alice"
                )));
            }
            subject_header.insert(subject.clone(), headers(table)?);
        }
        let mut rules = vec![];
        for r in &self.scopes {
            let scope = Scope::parse(&r.scope)
                .map_err(|e| err(format!("scope {:?} for tools {:?}: {e}", r.scope, r.tools)))?;
            if scope.is_reserved() {
                return Err(err(format!(
                    "scope {} is Mandate's own and cannot guard a tool",
                    r.scope
                )));
            }
            if r.tools.is_empty() {
                return Err(err("a scope rule has an empty `tools` pattern".into()));
            }
            rules.push(ToolRule {
                pattern: r.tools.clone(),
                scope,
            });
        }
        for r in &self.routes {
            let m = r.method.to_ascii_uppercase();
            if m != "*" && http::Method::from_bytes(m.as_bytes()).is_err() {
                return Err(err(format!(
                    "route method {:?} is not an HTTP method",
                    r.method
                )));
            }
            if !r.path.starts_with('/') {
                return Err(err(format!("route path {:?} must start with /", r.path)));
            }
            if r.action.is_empty() || r.action.len() > crate::mcp::MAX_NAME_LEN {
                return Err(err("a route's action must be 1 to 256 characters".into()));
            }
        }
        let timeout = match &self.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => parse_duration(t).map_err(|e| err(format!("timeout: {e}")))?,
        };
        let audience = self.audience.clone().unwrap_or_else(|| {
            let prefix = if transport.is_mcp() { "mcp" } else { "http" };
            format!("{prefix}:{name}")
        });
        if audience.is_empty() || audience.chars().any(char::is_whitespace) {
            return Err(err(format!("audience {audience:?} must be one word")));
        }
        let forward_audience = self
            .forward_audience(&transport, &audience, &secret_header, &subject_header)
            .map_err(|e| err(e.0))?;
        Ok(Checked {
            sandbox,
            forward_audience,
            transport,
            audience,
            scopes: ToolScopes::new(name, rules),
            pass_env,
            secret_env,
            secret_header,
            subject_header,
            timeout,
            routes: self.routes.clone(),
        })
    }
}

impl UpstreamConfig {
    /// The audience forwarded mandates name, when mandates are forwarded.
    fn forward_audience(
        &self,
        transport: &Transport,
        audience: &str,
        secret_header: &[(http::HeaderName, SecretSource)],
        subject_header: &BTreeMap<String, Vec<(http::HeaderName, SecretSource)>>,
    ) -> Result<Option<String>, ConfigError> {
        let url = match transport {
            Transport::McpHttp(u) | Transport::Http(u) => u,
            Transport::Stdio { .. } if self.forward_mandate || self.forward_audience.is_some() => {
                return Err(ConfigError(
                    "`forward_mandate` is for HTTP upstreams (a stdio child has no request headers to carry it)".into(),
                ))
            }
            Transport::Stdio { .. } => return Ok(None),
        };
        if !self.forward_mandate {
            if self.forward_audience.is_some() {
                return Err(ConfigError(
                    "`forward_audience` needs `forward_mandate = true`".into(),
                ));
            }
            return Ok(None);
        }
        let sets_authorization = secret_header
            .iter()
            .chain(subject_header.values().flatten())
            .any(|(h, _)| h == http::header::AUTHORIZATION);
        if sets_authorization {
            return Err(ConfigError(
                "the forwarded mandate is sent as `Authorization: Bearer`, so `secret_header`/`subject_header` cannot also set Authorization: use another header for the upstream's own key".into(),
            ));
        }
        let forward = self
            .forward_audience
            .clone()
            .unwrap_or_else(|| url.origin().ascii_serialization());
        if forward.is_empty() || forward.chars().any(char::is_whitespace) || forward == "*" {
            return Err(ConfigError(format!(
                "forward_audience {forward:?} must be one word naming the upstream"
            )));
        }
        if forward == audience {
            return Err(ConfigError(format!(
                "forward_audience {forward} is the audience callers present at the gateway: a forwarded mandate must not be good there; name the upstream itself"
            )));
        }
        Ok(Some(forward))
    }
}

/// `90s`, `10m`, `1h`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "{s:?} is not a duration like 500ms, 30s, 10m or 1h"
        ))
    };
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(ConfigError(format!("{s:?} must be more than zero")));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_swapped_for_a_link_into_a_protected_directory_is_refused_at_read() {
        let protected = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let key = protected.path().join("issuer.jwk");
        std::fs::write(&key, "private\n").unwrap();
        protect_directory(protected.path());
        let secret = outside.path().join("api.key");
        std::fs::write(&secret, "harmless\n").unwrap();
        let src = SecretSource::File(secret.clone());
        assert_eq!(src.read().unwrap(), "harmless");
        // Replaced, after it was configured, by a symbolic link to a protected file.
        std::fs::remove_file(&secret).unwrap();
        std::os::unix::fs::symlink(&key, &secret).unwrap();
        let e = src.read().unwrap_err().0;
        assert!(e.contains("inside the server's own directory"), "{e}");
        assert!(!e.contains("private"), "{e}");
        // A hard link to it is refused too (it is the same file under a second name).
        std::fs::remove_file(&secret).unwrap();
        std::fs::hard_link(&key, &secret).unwrap();
        let e = src.read().unwrap_err().0;
        assert!(e.contains("hard links"), "{e}");
        // A link to an ordinary file elsewhere still works (Kubernetes secret volumes are links).
        std::fs::remove_file(&secret).unwrap();
        let real = outside.path().join("real.key");
        std::fs::write(&real, "rotated\n").unwrap();
        std::os::unix::fs::symlink(&real, &secret).unwrap();
        assert_eq!(src.read().unwrap(), "rotated");
    }

    #[test]
    fn a_secret_file_larger_than_any_credential_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 70 * 1024]).unwrap();
        let e = SecretSource::File(big).read().unwrap_err().0;
        assert!(e.contains("larger than"), "{e}");
    }

    fn stdio(cmd: &[&str]) -> UpstreamConfig {
        UpstreamConfig {
            stdio: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn forwarded_mandates_name_the_upstreams_origin_and_never_the_gateways_audience() {
        let mut c = UpstreamConfig {
            url: Some("http://10.0.0.5:9000/mcp".into()),
            forward_mandate: true,
            ..Default::default()
        };
        let checked = c.validate("files").unwrap();
        assert_eq!(
            checked.forward_audience.as_deref(),
            Some("http://10.0.0.5:9000")
        );
        c.forward_audience = Some("mcp:files".into());
        assert!(c
            .validate("files")
            .unwrap_err()
            .0
            .contains("must not be good there"));
        c.forward_audience = Some("https://files.internal".into());
        assert_eq!(
            c.validate("files").unwrap().forward_audience.as_deref(),
            Some("https://files.internal")
        );
        c.secret_header
            .insert("Authorization".into(), "env:FILES_KEY".into());
        assert!(c.validate("files").unwrap_err().0.contains("Authorization"));
        let mut s = stdio(&["x"]);
        s.forward_mandate = true;
        assert!(s.validate("x").unwrap_err().0.contains("HTTP upstreams"));
        let off = UpstreamConfig {
            url: Some("http://h/mcp".into()),
            forward_audience: Some("a".into()),
            ..Default::default()
        };
        assert!(off
            .validate("f")
            .unwrap_err()
            .0
            .contains("forward_mandate = true"));
    }

    #[test]
    fn a_stdio_upstream_is_sandboxed_by_default_and_off_only_when_said() {
        let mut c = stdio(&["x"]);
        let on = c.validate("a").unwrap().sandbox.unwrap();
        assert_eq!(on, mandate_sandbox::Policy::default());
        c.sandbox = Some(SandboxSetting::Off);
        assert!(c.validate("a").unwrap().sandbox.is_none());
        assert!(c.sandbox_off());
        c.sandbox = Some(SandboxSetting::On(mandate_sandbox::SandboxConfig {
            read: vec!["relative".into()],
            ..Default::default()
        }));
        assert!(c.validate("a").unwrap_err().0.contains("not absolute"));
        let http = UpstreamConfig {
            url: Some("http://127.0.0.1:1/mcp".into()),
            sandbox: Some(SandboxSetting::Off),
            ..Default::default()
        };
        assert!(http.validate("a").unwrap_err().0.contains("stdio"));
    }

    #[test]
    fn the_sandbox_reads_as_off_or_as_a_table_and_nothing_else() {
        let t: BTreeMap<String, UpstreamConfig> = toml::from_str(
            "[a]\nstdio = [\"x\"]\nsandbox = \"off\"\n[b]\nstdio = [\"y\"]\n[b.sandbox]\nwrite = [\"/srv\"]\nnetwork = [\"h:443\"]\nprocesses = 8\n",
        )
        .unwrap();
        assert!(t["a"].sandbox_off());
        let b = t["b"].validate("b").unwrap().sandbox.unwrap();
        assert_eq!(b.write, vec![std::path::PathBuf::from("/srv")]);
        assert_eq!(b.limits.processes, 8);
        // The stored (JSON) form reads back the same.
        let json = serde_json::to_string(&t["b"]).unwrap();
        assert_eq!(
            serde_json::from_str::<UpstreamConfig>(&json).unwrap(),
            t["b"]
        );
        let off = serde_json::to_string(&t["a"]).unwrap();
        assert!(off.contains("\"sandbox\":\"off\""), "{off}");
        for bad in [
            "[a]\nstdio = [\"x\"]\nsandbox = \"strict\"\n",
            "[a]\nstdio = [\"x\"]\n[a.sandbox]\nreed = [\"/x\"]\n",
        ] {
            let e = toml::from_str::<BTreeMap<String, UpstreamConfig>>(bad).unwrap_err();
            assert!(
                e.to_string().contains("off") || e.to_string().contains("reed"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_stdio_upstream_gets_the_default_audience_and_environment() {
        let c = stdio(&["npx", "-y", "pkg"]).validate("files").unwrap();
        assert_eq!(c.audience, "mcp:files");
        assert_eq!(c.pass_env, DEFAULT_PASS_ENV.map(String::from).to_vec());
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert!(matches!(c.transport, Transport::Stdio { ref command, .. } if command == "npx"));
    }

    #[test]
    fn exactly_one_transport_is_required() {
        let mut c = stdio(&["x"]);
        c.url = Some("http://127.0.0.1:1/mcp".into());
        assert!(c.validate("a").unwrap_err().0.contains("exactly one"));
        assert!(UpstreamConfig::default().validate("a").is_err());
    }

    #[test]
    fn secrets_are_references_never_inline_values() {
        let mut c = stdio(&["x"]);
        c.secret_env.insert("TOKEN".into(), "ghp_abc".into());
        assert!(c.validate("a").unwrap_err().0.contains("never inline"));
        c.secret_env.insert("TOKEN".into(), "env:GH_TOKEN".into());
        assert!(c.validate("a").is_ok());
        c.secret_env
            .insert("TOKEN".into(), "env:MANDATE_HOME".into());
        assert!(c.validate("a").unwrap_err().0.contains("never sent"));
    }

    #[test]
    fn reserved_headers_and_mandate_settings_are_refused() {
        let mut c = UpstreamConfig {
            url: Some("https://x.example/mcp".into()),
            ..Default::default()
        };
        c.secret_header.insert("Host".into(), "env:X".into());
        assert!(c
            .validate("a")
            .unwrap_err()
            .0
            .contains("set by the gateway"));
        let mut s = stdio(&["x"]);
        s.pass_env = Some(vec!["MANDATE_HOME".into()]);
        assert!(s.validate("a").unwrap_err().0.contains("never passed"));
    }

    #[test]
    fn urls_with_credentials_or_other_schemes_are_refused() {
        for u in [
            "ftp://x/mcp",
            "https://user:pw@x/mcp",
            "not a url",
            "https://x/mcp?api_key=k",
        ] {
            let c = UpstreamConfig {
                url: Some(u.into()),
                ..Default::default()
            };
            assert!(c.validate("a").is_err(), "{u}");
        }
    }

    #[test]
    fn names_are_url_and_scope_safe() {
        for bad in ["", "A", "1a", "a b", "a/b", "a:b", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in ["a", "files", "git-hub_2"] {
            assert!(valid_name(good));
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<UpstreamConfig>("stdio = [\"x\"]\nsecrets = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10").is_err());
    }
}

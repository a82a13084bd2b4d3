//! `MANDATE_HOME`: the local configuration, the server's data and this machine's private keys.
//!
//! ```text
//! MANDATE_HOME/config.toml        server URL and the default (admin) principal
//! MANDATE_HOME/keys/KIND_NAME.jwk this machine's private keys (0600, dir 0700)
//! MANDATE_HOME/server/server.toml the server's configuration
//! MANDATE_HOME/server/mandate.db  SQLite database (WAL)
//! MANDATE_HOME/server/issuer-keys issuer signing keys (0600)
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mandate_core::{PrincipalName, SecretKey};
use serde::{Deserialize, Serialize};

/// Where `mandate init` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8700";

/// The local home directory.
pub struct Home {
    pub root: PathBuf,
}

/// `config.toml`: what the command line talks to and as whom.
#[derive(Debug, Serialize, Deserialize, Default)]
pub struct ClientConfig {
    pub server: Option<String>,
    pub principal: Option<String>,
}

/// `server/server.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub issuer: String,
    /// SQLite database file, relative to the config file's directory unless absolute.
    pub database: String,
    /// Issuer key directory, relative like `database`.
    pub issuer_keys: String,
    /// How long enrollment codes stay valid (e.g. "15m").
    #[serde(default = "default_enrollment_ttl")]
    pub enrollment_ttl: String,
    /// The environment label policies see as `input.context.environment`.
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Where decisions come from.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Bounds on connections, sources and requests (docs/security.md).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The gateway served beside the authority (docs/gateway.md).
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// Notification of approval changes (README, "Approvals").
    #[serde(default, skip_serializing_if = "ApprovalsConfig::is_empty")]
    pub approvals: ApprovalsConfig,
    /// Upstreams the gateway serves at `/mcp/NAME` (docs/gateway.md).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub upstream: std::collections::BTreeMap<String, mandate_gateway::UpstreamConfig>,
}

/// `[approvals]` in `server.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// Standard Webhooks targets told of every approval change:
    /// `webhooks = [{ url = "https://...", secret = "@/path/whsec" }]` (`env:NAME` also).
    pub webhooks: Vec<WebhookConfig>,
}

impl ApprovalsConfig {
    fn is_empty(&self) -> bool {
        self.webhooks.is_empty()
    }
}

/// One webhook target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST (http or https).
    pub url: String,
    /// `@FILE` or `env:NAME` holding the `whsec_...` signing secret.
    pub secret: String,
}

/// `[gateway]` in `server.toml`; every field is optional.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// The URL agents reach the gateway at (default: the issuer URL, since `mandate serve` serves
    /// both on one listener). DPoP proofs name URLs below it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Calls per second one agent may make through the gateway (0 turns the limit off).
    pub per_agent_rps: u32,
    /// Burst allowance per agent.
    pub per_agent_burst: u32,
    /// Largest request body, in bytes (a tool call's arguments).
    pub max_body: usize,
    /// How long a call held for approval waits for its quorum before its caller is told the
    /// request is pending (a duration, `60s` by default; at most `10m`).
    pub approval_hold: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            public_url: None,
            per_agent_rps: 100,
            per_agent_burst: 200,
            max_body: 4 * 1024 * 1024,
            approval_hold: "60s".into(),
        }
    }
}

impl GatewayConfig {
    /// The gateway's settings from this table (`mandate serve`'s `[gateway]` and `mandate
    /// gateway`'s alike), each bound checked with a one-line reason.
    pub fn settings(
        &self,
        public_url: &str,
        issuer: &str,
        environment: &str,
    ) -> Result<mandate_gateway::Settings> {
        let mut settings = mandate_gateway::Settings::new(public_url, issuer, environment);
        settings.per_agent_rps = self.per_agent_rps;
        settings.per_agent_burst = self.per_agent_burst.max(self.per_agent_rps);
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body) {
            bail!("[gateway] max_body must be between 1024 and 67108864 bytes");
        }
        settings.max_body = self.max_body;
        // `0s` (answer at once) is allowed here, unlike the durations parse_duration reads.
        let hold = self.approval_hold.trim();
        let hold = (if hold == "0s" || hold == "0" {
            Ok(0)
        } else {
            mandate_core::duration::parse_duration(hold)
        })
        .ok()
        .filter(|s| (0..=600).contains(s))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "[gateway] approval_hold {:?} must be a duration from 0s to 10m (e.g. \"60s\")",
                self.approval_hold
            )
        })?;
        settings.approval_hold = std::time::Duration::from_secs(hold as u64);
        Ok(settings)
    }
}

/// `[limits]` in `server.toml`; every field is optional and defaults to what `mandate up` uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most connections open at once (bounded again by the open-files limit).
    pub max_connections: usize,
    /// Most connections one source (IPv4 address or IPv6 /64) may hold open.
    pub max_connections_per_source: usize,
    /// Most connections one network (IPv4 /24 or IPv6 /48) may hold open.
    pub max_connections_per_network: usize,
    /// Time to send a request's headers, from accept or the previous response (e.g. "10s").
    pub header_timeout: String,
    /// Time to read and answer one request (e.g. "30s").
    pub request_timeout: String,
    /// A connection with no request in progress that moves no byte for this long is closed.
    pub idle_timeout: String,
    /// Requests per second per source (IPv4 address or IPv6 /64); 0 turns the limit off.
    pub per_source_rps: u32,
    /// Burst allowance per source.
    pub per_source_burst: u32,
    /// Unauthenticated refusals are written as one audit event per source per this window.
    pub refusal_window: String,
    /// Time for a request body to arrive once the handler reads it (e.g. "10s").
    pub body_timeout: String,
    /// Revocation feed long polls held at once (at most a quarter of `max_connections`); more
    /// are answered at once.
    pub max_long_polls: usize,
    /// See `max_long_polls`.
    pub max_long_polls_per_source: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = mandate_server::Limits::default();
        let secs = |t: std::time::Duration| format!("{}s", t.as_secs());
        LimitsConfig {
            max_connections: d.max_connections,
            max_connections_per_source: d.max_connections_per_source,
            max_connections_per_network: d.max_connections_per_network,
            header_timeout: secs(d.header_timeout),
            request_timeout: secs(d.request_timeout),
            idle_timeout: secs(d.idle_timeout),
            per_source_rps: d.per_source_rps,
            per_source_burst: d.per_source_burst,
            refusal_window: secs(d.refusal_window),
            body_timeout: secs(d.body_timeout),
            max_long_polls: d.max_long_polls,
            max_long_polls_per_source: d.max_long_polls_per_source,
        }
    }
}

impl LimitsConfig {
    /// The validated limits; each error names the setting and how to fix it.
    pub fn validate(&self) -> Result<mandate_server::Limits> {
        let dur = |name: &str, v: &str, max: i64| -> Result<std::time::Duration> {
            let s = mandate_core::duration::parse_duration(v)
                .map_err(|e| anyhow::anyhow!("[limits] {name} = {v:?}: {e}"))?;
            if !(1..=max).contains(&s) {
                bail!("[limits] {name} = {v:?} must be between 1s and {max}s");
            }
            Ok(std::time::Duration::from_secs(s as u64))
        };
        if !(1..=1_000_000).contains(&self.max_connections) {
            bail!("[limits] max_connections must be between 1 and 1000000");
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_source) {
            bail!("[limits] max_connections_per_source must be between 1 and max_connections");
        }
        if self.max_connections_per_network == 0 {
            bail!("[limits] max_connections_per_network must be at least 1");
        }
        if self.per_source_rps > 1_000_000 || self.per_source_burst > 1_000_000 {
            bail!("[limits] per_source_rps and per_source_burst must be at most 1000000");
        }
        Ok(mandate_server::Limits {
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            // A network holds at least what one source may, at most everything.
            max_connections_per_network: self
                .max_connections_per_network
                .clamp(self.max_connections_per_source, self.max_connections),
            header_timeout: dur("header_timeout", &self.header_timeout, 300)?,
            request_timeout: dur("request_timeout", &self.request_timeout, 3600)?,
            idle_timeout: dur("idle_timeout", &self.idle_timeout, 3600)?,
            per_source_rps: self.per_source_rps,
            per_source_burst: self.per_source_burst,
            refusal_window: dur("refusal_window", &self.refusal_window, 3600)?,
            body_timeout: dur("body_timeout", &self.body_timeout, 3600)?,
            // Waiting polls never take more than a quarter of the connections.
            max_long_polls: self.max_long_polls.min(self.max_connections / 4).max(1),
            max_long_polls_per_source: self
                .max_long_polls_per_source
                .min(self.max_long_polls)
                .max(1),
        })
    }
}

fn default_environment() -> String {
    "development".into()
}

/// `[policy]` in `server.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The policy directory (relative to the config file's directory unless absolute). A missing
    /// directory is created with the shipped default pack.
    pub dir: String,
    /// Limit on one evaluation, in milliseconds; past it the decision is a deny.
    pub timeout_ms: u64,
    /// How often the directory is checked for changes, in milliseconds.
    pub reload_ms: u64,
    /// Optional external decision point instead of the embedded engine.
    pub external: Option<ExternalConfig>,
    /// What decision points (holders of `mandate:pdp`) may query through the OPA data API: paths
    /// under `data`, `/`-separated; a query at or below one is allowed. Admins may query all.
    pub data_api_paths: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            dir: "policies".into(),
            timeout_ms: 100,
            reload_ms: 1000,
            external: None,
            data_api_paths: mandate_server::default_data_api_paths(),
        }
    }
}

/// `[policy.external]`: an OPA server or an AuthZEN PDP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    /// `opa` or `authzen`.
    pub kind: String,
    /// Base URL, e.g. `http://127.0.0.1:8181`.
    pub url: String,
    /// Limit on one remote decision, in milliseconds; past it the decision is a deny.
    #[serde(default = "default_external_timeout")]
    pub timeout_ms: u64,
}

fn default_external_timeout() -> u64 {
    500
}

fn default_enrollment_ttl() -> String {
    "15m".into()
}

impl Home {
    /// `MANDATE_HOME`, or `~/.mandate`.
    pub fn locate() -> Result<Self> {
        let root = match std::env::var_os("MANDATE_HOME") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                let home =
                    std::env::var_os("HOME").context("neither MANDATE_HOME nor HOME is set")?;
                PathBuf::from(home).join(".mandate")
            }
        };
        Ok(Home { root })
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn server_dir(&self) -> PathBuf {
        self.root.join("server")
    }
    pub fn server_config_path(&self) -> PathBuf {
        self.server_dir().join("server.toml")
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    pub fn key_path(&self, p: &PrincipalName) -> PathBuf {
        self.keys_dir()
            .join(format!("{}_{}.jwk", p.kind().as_str(), p.bare()))
    }

    pub fn ensure_private_dir(path: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", path.display()))
    }

    pub fn client_config(&self) -> Result<ClientConfig> {
        match std::fs::read_to_string(self.config_path()) {
            Ok(t) => toml::from_str(&t)
                .with_context(|| format!("{} is not valid TOML", self.config_path().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read {}", self.config_path().display()))
            }
        }
    }

    pub fn write_client_config(&self, c: &ClientConfig) -> Result<()> {
        Self::ensure_private_dir(&self.root)?;
        std::fs::write(self.config_path(), toml::to_string(c)?)
            .with_context(|| format!("cannot write {}", self.config_path().display()))
    }

    pub fn server_config(&self, path: Option<&Path>) -> Result<(ServerConfig, PathBuf)> {
        let path = path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.server_config_path());
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read server config {}: run `mandate init` (or `mandate up`) first",
                path.display()
            )
        })?;
        let cfg: ServerConfig = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid server config", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok((cfg, dir))
    }

    /// Writes a new private key for `p`; refuses to overwrite one.
    pub fn save_key(&self, p: &PrincipalName, key: &SecretKey) -> Result<PathBuf> {
        Self::ensure_private_dir(&self.keys_dir())?;
        let path = self.key_path(p);
        if path.exists() {
            bail!("{} already exists: a key for {p} is already on this machine (remove it first if it is stale)", path.display());
        }
        mandate_server::issuer::write_secret_file(&path, key)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    pub fn load_key(&self, p: &PrincipalName) -> Result<SecretKey> {
        let path = self.key_path(p);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no private key for {p} on this machine ({} is missing)",
                path.display()
            )
        })?;
        SecretKey::parse(&text).with_context(|| format!("{} is not a usable key", path.display()))
    }
}

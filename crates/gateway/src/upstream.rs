//! Upstreams at run time: each configured upstream with its link (a supervised stdio child, or an
//! HTTP client pointed at its URL), the credentials it gets, and what it said about its tools; and
//! [`Upstreams`], the live set the gateway serves, changed without a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::{Checked, ConfigError, SecretSource, Transport, UpstreamConfig};
use crate::stdio::{Launch, StdioUpstream};

/// Where an upstream's configuration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `[upstream.NAME]` in `server.toml` (changed by editing it).
    Config,
    /// Added with `mandate upstream add` (stored by the authority).
    Admin,
}

/// How the gateway reaches an upstream.
pub enum Link {
    /// MCP over Streamable HTTP, or a plain HTTP API, at this URL.
    Http(url::Url),
    /// A supervised child.
    Stdio(Arc<StdioUpstream>),
}

/// How long what an upstream said about its tools is trusted before it is asked again.
const TOOLS_TTL: Duration = Duration::from_secs(60);

/// One upstream being served.
pub struct Upstream {
    /// Its name (`/mcp/NAME`).
    pub name: String,
    /// The configuration as given.
    pub config: UpstreamConfig,
    /// Where it came from.
    pub origin: Origin,
    /// The configuration checked.
    pub checked: Checked,
    /// How it is reached.
    pub link: Link,
    /// Tool annotations from its last `tools/list`, and when they were learned.
    tools: RwLock<Learned>,
}

/// When tools were last learned, and each tool's annotations.
type Learned = (Option<Instant>, HashMap<String, Map<String, Value>>);

impl Upstream {
    /// Starts serving `name` as configured (a stdio child is started in the background).
    pub fn start(
        name: &str,
        config: UpstreamConfig,
        origin: Origin,
    ) -> Result<Arc<Self>, ConfigError> {
        let checked = config.validate(name)?;
        // Its secret files are out of every sandbox's reach from now on.
        for f in config.secret_files() {
            crate::config::protect_from_sandbox(&f);
        }
        let link = match &checked.transport {
            Transport::McpHttp(u) | Transport::Http(u) => Link::Http(u.clone()),
            Transport::Stdio { command, args } => {
                let env = child_env(&config, &checked);
                Link::Stdio(StdioUpstream::start(Launch {
                    name: name.to_string(),
                    command: command.clone(),
                    args: args.clone(),
                    env: Arc::new(env),
                    secret_names: checked.secret_env.iter().map(|(k, _)| k.clone()).collect(),
                    sandbox: checked.sandbox.clone(),
                }))
            }
        };
        Ok(Arc::new(Upstream {
            name: name.to_string(),
            config,
            origin,
            checked,
            link,
            tools: RwLock::new((None, HashMap::new())),
        }))
    }

    /// The annotations `tool` was advertised with (empty when unknown).
    pub fn annotations(&self, tool: &str) -> Map<String, Value> {
        let t = self.tools.read().unwrap_or_else(|e| e.into_inner());
        t.1.get(tool).cloned().unwrap_or_default()
    }

    /// Whether the upstream's tools were ever learned.
    pub fn tools_known(&self) -> bool {
        self.tools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .is_some()
    }

    /// Whether what the upstream said about its tools is missing or old.
    pub fn tools_stale(&self) -> bool {
        let t = self.tools.read().unwrap_or_else(|e| e.into_inner());
        t.0.is_none_or(|at| at.elapsed() > TOOLS_TTL)
    }

    /// Learns tool annotations from a `tools/list` result (a page adds to what is known).
    pub fn learn_tools(&self, result: &Value) {
        let found = crate::mcp::tool_annotations(result);
        let mut t = self.tools.write().unwrap_or_else(|e| e.into_inner());
        let first_page =
            result.get("nextCursor").is_none() || t.0.is_none_or(|at| at.elapsed() > TOOLS_TTL);
        if first_page && t.1.len() > 10_000 {
            t.1.clear();
        }
        t.0 = Some(Instant::now());
        for (name, ann) in found {
            t.1.insert(name, ann);
        }
    }

    /// The tools learned so far, by name.
    pub fn known_tools(&self) -> Vec<String> {
        let t = self.tools.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = t.1.keys().cloned().collect();
        names.sort();
        names
    }

    /// The headers to send for a call on `subject`'s behalf: the subject's own when configured,
    /// else the upstream's shared ones (refused when the configuration requires the subject's).
    pub fn headers_for(&self, subject: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let c = &self.checked;
        let chosen = match c.subject_header.get(subject) {
            Some(own) => own,
            None if self.config.subject_header_required => {
                return Err(format!(
                    "upstream {} has no credentials for {subject} (subject_header_required)",
                    self.name
                ))
            }
            None => &c.secret_header,
        };
        let mut out = Vec::with_capacity(chosen.len());
        for (h, src) in chosen {
            let value = src.read().map_err(|e| e.0)?;
            let mut v = HeaderValue::from_str(&value).map_err(|_| {
                format!(
                    "the secret for header {h} of upstream {} is not a valid header value",
                    self.name
                )
            })?;
            v.set_sensitive(true);
            out.push((h.clone(), v));
        }
        Ok(out)
    }

    /// Whether the upstream can take calls now (a stdio child is running; an HTTP upstream is
    /// assumed up until a call fails).
    pub fn is_up(&self) -> bool {
        match &self.link {
            Link::Stdio(s) => s.is_running(),
            Link::Http(_) => true,
        }
    }

    /// Stops it (a stdio child is killed with its process group).
    pub async fn shutdown(&self) {
        if let Link::Stdio(s) = &self.link {
            s.shutdown().await;
        }
    }
}

/// The action of the admin change that records an upstream run without its sandbox.
pub const SANDBOX_OFF_ACTION: &str = "upstream.sandbox_off";

/// Fills `ev` (an `admin.change` made by its writer: the authority for `server.toml`, a gateway
/// run apart for its own configuration) as the record that upstream `name` runs unsandboxed.
pub fn describe_sandbox_off(
    ev: &mut mandate_audit::event::Event,
    name: &str,
    config: &UpstreamConfig,
) {
    ev.resource = Some(name.to_string());
    ev.details
        .insert("origin".into(), Value::String("config".into()));
    ev.details.insert(
        "config".into(),
        serde_json::to_value(config).unwrap_or_default(),
    );
    ev.reasons = vec![format!(
        "stdio upstream {name} runs without its sandbox, with the gateway's rights (sandbox = \"off\" in its configuration)"
    )];
}

/// The child's whole environment, built at each start: the named variables of the gateway's
/// own environment, the plain values, and the secrets read now.
fn child_env(
    config: &UpstreamConfig,
    checked: &Checked,
) -> impl Fn() -> Result<Vec<(String, String)>, String> + Send + Sync + 'static {
    let pass: Vec<String> = checked.pass_env.clone();
    let plain: Vec<(String, String)> = config.env.clone().into_iter().collect();
    let secrets: Vec<(String, SecretSource)> = checked.secret_env.clone();
    move || {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for k in &pass {
            if let Ok(v) = std::env::var(k) {
                env.insert(k.clone(), v);
            }
        }
        env.extend(plain.iter().cloned());
        for (k, src) in &secrets {
            env.insert(k.clone(), src.read().map_err(|e| e.0)?);
        }
        Ok(env.into_iter().collect())
    }
}

/// The upstreams being served, by name; replaced as a whole on every change (readers never
/// wait on a writer for long).
#[derive(Default)]
pub struct Upstreams {
    map: RwLock<BTreeMap<String, Arc<Upstream>>>,
}

impl Upstreams {
    /// The upstream called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Upstream>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every upstream, by name.
    pub fn all(&self) -> Vec<Arc<Upstream>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Adds or replaces `up`; the one it replaces (if any) is returned, to be shut down.
    pub fn put(&self, up: Arc<Upstream>) -> Option<Arc<Upstream>> {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(up.name.clone(), up)
    }

    /// Removes `name`, returning it to be shut down.
    pub fn remove(&self, name: &str) -> Option<Arc<Upstream>> {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    /// Stops every upstream.
    pub async fn shutdown(&self) {
        for up in self.all() {
            up.shutdown().await;
        }
    }
}

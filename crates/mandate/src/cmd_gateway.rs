//! `mandate gateway --authority URL`: the enforcement point run on its own, apart from the
//! authority. It
//!
//! 1. reads its configuration (`--config`, default `MANDATE_HOME/gateway.toml`: `[upstream.NAME]`
//!    tables as in `server.toml`, checked by `mandate_gateway::config`, and optional `[gateway]`,
//!    `[limits]` and `environment`), before anything is started;
//! 2. loads the key of its own principal (`--as`, default `gateway`) from MANDATE_HOME;
//! 3. reads the authority's RFC 8414 metadata and checks that it names the authority as issuer
//!    (§3.3), with the token endpoint on the issuer's origin;
//! 4. gets its own DPoP-bound `mandate:audit` mandate for the issuer (renewed by
//!    [`crate::held::HeldMandate`]) and reads the installation's audit HMAC key with it;
//! 5. follows the authority's JWKS and revocation feed ([`mandate_verify::Verifier`]) and waits
//!    for the first view;
//! 6. decides with a local policy (`--policy DIR`, default `MANDATE_HOME/policy` if it exists,
//!    else the default pack built into the binary), hot-reloaded as the authority's is; calls
//!    it holds for approval wait at the authority's approval desk (`/approvals/v1/holds`, the
//!    same mandate), up to `[gateway] approval_hold`;
//! 7. serves `/mcp/NAME`, `/http/NAME/...`, their RFC 9728 metadata (naming the authority as
//!    authorization server), `/metrics` and `/healthz`, with the authority's connection bounds,
//!    until SIGTERM or Ctrl-C: connections drain (up to 10 s), then stdio children stop.
//!
//! Every call's event is appended to the authority's log before the call is forwarded; if that
//! fails (the authority is down, the mandate refused, 5 s passed) the call is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::routing::get;
use mandate_core::delegation::AUDIT_SCOPE;
use mandate_gateway::gateway::BoxFuture;
use mandate_gateway::remote::approvals::RemoteApprovals;
use mandate_gateway::remote::{OwnMandate, RemoteAudit, RemoteAuth};
use mandate_policy::{DecisionPoint, LivePolicy, Policy};
use serde::Deserialize;

use crate::cli::GatewayArgs;
use crate::client::{random_id, unix_now, Api, Metadata};
use crate::ctx::Ctx;
use crate::held::HeldMandate;
use crate::home::{GatewayConfig, LimitsConfig, PolicyConfig};

/// The gateway's configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayFile {
    /// The environment label policies see as `input.context.environment`.
    #[serde(default)]
    environment: Option<String>,
    /// Rates, body size and public URL, as `[gateway]` in `server.toml`.
    #[serde(default)]
    gateway: GatewayConfig,
    /// Connection and request bounds, as `[limits]` in `server.toml`.
    #[serde(default)]
    limits: LimitsConfig,
    /// The upstreams served.
    #[serde(default)]
    upstream: BTreeMap<String, mandate_gateway::UpstreamConfig>,
}

/// How long to wait at start for the authority's first revocation view.
const FIRST_VIEW: Duration = Duration::from_secs(10);
/// Largest configuration file read.
const MAX_CONFIG: u64 = 1024 * 1024;

pub async fn run(ctx: &Ctx, a: GatewayArgs) -> Result<()> {
    let authority = a.authority.trim_end_matches('/').to_string();
    let parsed = url::Url::parse(&authority)
        .with_context(|| format!("--authority {authority:?} is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("--authority {authority:?} must be an http or https URL");
    }
    // Everything that can refuse the configuration is checked before anything starts.
    let (file, path) = read_config(ctx, a.config.as_deref())?;
    // The gateway's own credentials and any server files in its home are never read as an
    // upstream's secret, whatever link leads to them (checked again at every read).
    mandate_gateway::config::protect_directory(&ctx.home.server_dir());
    mandate_gateway::config::protect_directory(&ctx.home.keys_dir());
    // No sandboxed upstream reaches MANDATE_HOME or this configuration.
    mandate_gateway::config::protect_from_sandbox(&ctx.home.root);
    mandate_gateway::config::protect_from_sandbox(&path);
    for up in file.upstream.values() {
        for f in up.secret_files() {
            mandate_gateway::config::protect_from_sandbox(&f);
        }
    }
    for (name, up) in &file.upstream {
        let at = |e: String| anyhow::anyhow!("{} [upstream.{name}]: {e}", path.display());
        up.validate(name).map_err(|e| at(e.to_string()))?;
        up.check_secret_files_outside(name, &ctx.home.server_dir())
            .map_err(|e| at(e.to_string()))?;
        up.check_sandbox_paths(name)
            .map_err(|e| at(e.to_string()))?;
        // Forwarded mandates are signed with the issuer's key, which only the authority holds.
        if up.forward_mandate {
            return Err(at("forward_mandate needs the gateway in the authority's process (`mandate serve`), which holds the issuer key; a gateway on its own cannot mint mandates: remove it here or serve this upstream from the authority".into()));
        }
    }
    let g = &file.gateway;
    // Checked before anything starts (the URLs are set once they are known).
    g.settings("http://localhost", "http://localhost", "development")
        .with_context(|| format!("{}", path.display()))?;
    let mut limits = file.limits.validate()?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let public_url = a
        .public_url
        .clone()
        .or_else(|| g.public_url.clone())
        .unwrap_or(format!("http://{}", listener.local_addr()?));
    url::Url::parse(&public_url)
        .with_context(|| format!("the public URL {public_url:?} is not a URL"))?;
    let id = ctx.identity(&a.as_).map_err(|e| {
        anyhow::anyhow!(
            "no key for {} in {} ({e:#}): create the gateway's principal with `mandate agent create {} --scopes {AUDIT_SCOPE}` on a machine that administers the authority, and copy its key here (or enroll it: `mandate agent enroll` / `mandate agent join`)",
            a.as_,
            ctx.home.keys_dir().display(),
            a.as_.trim_start_matches("agent:"),
        )
    })?;
    let http = reqwest::Client::builder()
        // A redirect would carry the gateway's mandate and proofs elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let meta = metadata(&http, &authority).await?;
    let issuer = meta.issuer.trim_end_matches('/').to_string();
    let principal = id.name.to_string();
    let own = Arc::new(Credentials(HeldMandate::new(
        Api::new(&issuer),
        id,
        AUDIT_SCOPE,
        &issuer,
        None,
    )));
    own.0
        .get(false)
        .await
        .map_err(|e| own_mandate_error(&principal, &issuer, e))?;
    let audit = RemoteAudit::connect(&issuer, http.clone(), own.clone())
        .await
        .with_context(|| format!("{principal} cannot use the audit log of {issuer}"))?;
    let verifier = mandate_verify::Verifier::with_replay(
        mandate_verify::Config {
            issuer: issuer.clone(),
            // Each call names its upstream's audience (`verify_for`); none is the default.
            audience: String::new(),
            max_staleness: mandate_gateway::remote::MAX_STALENESS,
            skew: mandate_core::verify::DEFAULT_SKEW,
        },
        http.clone(),
        // Refuses proofs made before this process started (spent ones are forgotten on restart).
        Arc::new(mandate_verify::MemoryReplay::started_at(
            mandate_gateway::remote::REPLAY_CAPACITY,
            mandate_gateway::gateway::now(),
        )),
    );
    verifier
        .refresh_jwks()
        .await
        .with_context(|| format!("cannot read the issuer keys of {issuer}"))?;
    let _follower = verifier.spawn_follower();
    let started = std::time::Instant::now();
    while !verifier.is_fresh() {
        if started.elapsed() > FIRST_VIEW {
            bail!("the revocation feed of {issuer} did not answer within {} s, so no mandate can be checked", FIRST_VIEW.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let policy = decision_point(ctx, a.policy.as_deref())?;
    let environment = file
        .environment
        .clone()
        .unwrap_or_else(|| "development".into());
    let settings = g.settings(&public_url, &issuer, &environment)?;
    let auth = Arc::new(RemoteAuth::new(verifier.clone()));
    let audit = Arc::new(audit);
    // Calls the policy holds for humans wait at the authority's one desk, where every approver
    // votes, whichever gateway holds them.
    let desk = Arc::new(RemoteApprovals::new(&issuer, http.clone(), own.clone()));
    let gw = Arc::new(
        mandate_gateway::Gateway::new(settings, auth, policy, audit.clone()).with_approvals(desk),
    );
    // An upstream run without its sandbox is on the record before it starts (fail closed).
    for (name, up) in file.upstream.iter().filter(|(_, u)| u.sandbox_off()) {
        use mandate_audit::sink::AuditSink as _;
        let mut ev = mandate_audit::event::Event::new(
            mandate_audit::event::kinds::ADMIN_CHANGE,
            &principal,
            mandate_gateway::upstream::SANDBOX_OFF_ACTION,
            mandate_gateway::gateway::now() * 1000,
            mandate_audit::event::event_randomness(),
        );
        mandate_gateway::upstream::describe_sandbox_off(&mut ev, name, up);
        audit.append(&ev).await.map_err(|_| {
            anyhow::anyhow!("cannot record in the audit log of {issuer} that upstream {name} runs unsandboxed, so it is not started")
        })?;
    }
    for (name, up) in &file.upstream {
        let started =
            mandate_gateway::Upstream::start(name, up.clone(), mandate_gateway::Origin::Config)
                .map_err(|e| anyhow::anyhow!("{} [upstream.{name}]: {e}", path.display()))?;
        tracing::info!(upstream = %name, transport = started.checked.transport.kind(), audience = %started.checked.audience, "serving upstream {name}");
        if started.config.sandbox_off() {
            tracing::warn!(upstream = %name, "stdio upstream runs unsandboxed (sandbox = \"off\"), with the gateway's rights");
        }
        gw.upstreams.put(started);
    }
    let idle = gw.clone();
    let forget = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            idle.forget_idle_agents();
        }
    });
    let health = verifier.clone();
    let app = mandate_gateway::serve::routes(gw.clone()).route(
        "/healthz",
        get(move || {
            let (fresh, audit_failing) = (health.is_fresh(), audit.failing());
            async move { healthz(fresh, audit_failing) }
        }),
    );
    limits.max_connections = crate::cmd_server::fit_open_files(limits.max_connections);
    tracing::info!(addr = %listener.local_addr()?, authority = %issuer, principal = %principal, public_url = %public_url, "mandate gateway serving");
    if !ctx.json {
        println!(
            "Mandate gateway serving {} upstream(s) at {public_url} for {issuer}, as {principal} (Ctrl-C stops)",
            file.upstream.len()
        );
    }
    let served =
        mandate_server::serve_edge(listener, app, limits, crate::cmd_server::shutdown_signal())
            .await;
    gw.upstreams.shutdown().await;
    forget.abort();
    served?;
    Ok(())
}

/// `/healthz`: 200 while calls can go through: the revocation view is fresh (calls can be
/// checked) and the audit log can be written (the last append to finish did not fail, or one has
/// succeeded since). Otherwise 503 with the first problem as `status` and every problem's
/// reason.
fn healthz(fresh: bool, audit_failing: Option<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut problems: Vec<(&str, String)> = vec![];
    if !fresh {
        problems.push((
            "revocations_stale",
            format!(
                "the authority's revocation feed has not answered for more than {} s",
                mandate_gateway::remote::MAX_STALENESS.as_secs()
            ),
        ));
    }
    if let Some(why) = audit_failing {
        problems.push((
            "audit_unavailable",
            format!("the authority's audit log could not be written: {why}"),
        ));
    }
    match problems.first() {
        None => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
        Some((status, _)) => {
            let reason: Vec<&str> = problems.iter().map(|(_, r)| r.as_str()).collect();
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": status, "reason": reason.join("; ")})),
            )
                .into_response()
        }
    }
}

/// The configuration: `--config FILE` (must exist), or MANDATE_HOME/gateway.toml when it exists
/// (otherwise no upstreams).
fn read_config(ctx: &Ctx, given: Option<&Path>) -> Result<(GatewayFile, PathBuf)> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => {
            let p = ctx.home.root.join("gateway.toml");
            if !p.exists() {
                tracing::warn!(path = %p.display(), "no gateway configuration: no upstreams are served");
                return Ok((GatewayFile::default(), p));
            }
            p
        }
    };
    let len = std::fs::metadata(&path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > MAX_CONFIG {
        bail!("{} is larger than {MAX_CONFIG} bytes", path.display());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file: GatewayFile = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a gateway configuration: {}",
            path.display(),
            e.message()
        )
    })?;
    Ok((file, path))
}

/// The authority's RFC 8414 metadata, checked: it names the authority as issuer (RFC 8414 §3.3:
/// otherwise mandates and proofs would be made for another issuer) and keeps its token endpoint
/// on the issuer's origin.
async fn metadata(http: &reqwest::Client, authority: &str) -> Result<Metadata> {
    let url = format!("{authority}/.well-known/oauth-authorization-server");
    let resp = tokio::time::timeout(Duration::from_secs(10), http.get(&url).send())
        .await
        .map_err(|_| anyhow::anyhow!("the authority at {authority} did not answer within 10 s"))?
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the authority at {authority} ({}): is `mandate serve` running there, and is --authority right?",
                e.without_url()
            )
        })?;
    if !resp.status().is_success() {
        bail!(
            "{url} answered HTTP {}: is {authority} a Mandate authority?",
            resp.status()
        );
    }
    let m: Metadata = resp
        .json()
        .await
        .with_context(|| format!("the metadata at {url} is not valid"))?;
    if mandate_verify::check_issuer(authority, &m.issuer).is_err() {
        bail!(
            "the authority at {authority} names another issuer, {:?} (RFC 8414 §3.3), so nothing was sent to it: pass --authority {:?} if that is your authority",
            m.issuer,
            m.issuer
        );
    }
    if mandate_verify::check_same_origin(&m.issuer, "token_endpoint", &m.token_endpoint).is_err() {
        bail!(
            "the metadata of {authority} names a token_endpoint on another origin, {:?}, so no client assertion was sent",
            m.token_endpoint
        );
    }
    Ok(m)
}

/// Why the gateway's own mandate could not be had, in one line an operator can act on.
fn own_mandate_error(principal: &str, issuer: &str, e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    let bare = principal.trim_start_matches("agent:");
    if text.contains("invalid_scope") {
        anyhow::anyhow!(
            "{principal} may not hold {AUDIT_SCOPE} at {issuer}: grant it where the authority is administered (`mandate agent create {bare} --scopes {AUDIT_SCOPE}`, or add {AUDIT_SCOPE} to its ceiling; wildcards never include it) ({text})"
        )
    } else if text.contains("invalid_client") {
        anyhow::anyhow!(
            "{principal} is not registered at {issuer} with the key in this MANDATE_HOME, or is disabled: `mandate agent create {bare} --scopes {AUDIT_SCOPE}` there ({text})"
        )
    } else {
        anyhow::anyhow!("{principal} cannot get its {AUDIT_SCOPE} mandate from {issuer}: {text}")
    }
}

/// The gateway's own mandate and proofs, for its hooks.
struct Credentials(HeldMandate);

impl OwnMandate for Credentials {
    fn mandate(&self, renew: bool) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move { self.0.get(renew).await.map_err(|e| format!("{e:#}")) })
    }

    fn proof(&self, method: &str, url: &str, token: &str) -> String {
        mandate_core::dpop::make_proof(
            &self.0.id.key,
            method,
            url,
            unix_now(),
            &random_id(),
            Some(token),
        )
    }
}

/// The local policy: `--policy DIR` (hot-reloaded), MANDATE_HOME/policy if it exists, or the
/// default pack built into the binary (nothing to reload).
fn decision_point(ctx: &Ctx, given: Option<&Path>) -> Result<Arc<DecisionPoint>> {
    let defaults = PolicyConfig::default();
    let timeout = Duration::from_millis(defaults.timeout_ms);
    let dir = match given {
        Some(d) if !d.is_dir() => bail!("--policy {} is not a directory", d.display()),
        Some(d) => Some(d.to_path_buf()),
        None => Some(ctx.home.root.join("policy")).filter(|d| d.is_dir()),
    };
    let live = match &dir {
        Some(dir) => {
            let live = LivePolicy::load(dir, timeout).map_err(|e| {
                anyhow::anyhow!("the policy in {} does not load: {e}", dir.display())
            })?;
            let live = Arc::new(live);
            tokio::spawn(
                live.clone()
                    .watch(Duration::from_millis(defaults.reload_ms)),
            );
            tracing::info!(dir = %dir.display(), version = %live.current().version(), "policy loaded");
            live
        }
        None => {
            let p = Policy::build(&crate::policy_pack::sources(), timeout)
                .map_err(|e| anyhow::anyhow!("the built-in policy does not load: {e}"))?;
            tracing::info!(version = %p.version(), "the built-in default policy decides (no --policy, no MANDATE_HOME/policy)");
            Arc::new(LivePolicy::fixed(p))
        }
    };
    Ok(Arc::new(DecisionPoint::embedded(live)))
}

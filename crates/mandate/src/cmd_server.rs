//! `mandate init`, `serve` and `up`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mandate_core::duration::parse_duration;
use mandate_core::{PrincipalName, SecretKey};
use mandate_policy::{DecisionPoint, External, LivePolicy};
use mandate_server::issuer::IssuerKeys;
use mandate_server::revocation::Revocations;
use mandate_server::{AppState, Config};
use mandate_store::{NewKey, NewPrincipal, Store};
use std::time::Duration;

use crate::cli::{InitArgs, ServeArgs, UpArgs};
use crate::ctx::Ctx;
use crate::home::{ClientConfig, Home, PolicyConfig, ServerConfig};

/// The admin user `mandate init` makes.
pub const ADMIN: &str = "user:admin";

/// The file `mandate serve` holds an exclusive lock on, in its server directory, for as long as
/// it runs: commands that need the server stopped (`mandate audit archive`) take the same lock,
/// and a second server cannot run on the same directory.
pub const LOCK_FILE: &str = "serve.lock";

/// The server directory's lock; released when dropped (or when the process ends, however).
pub struct ServerLock {
    _file: std::fs::File,
}

/// Takes the exclusive lock on `dir/serve.lock` (made 0600 on first use); `None` when another
/// process holds it.
pub fn try_lock_server_dir(dir: &Path) -> Result<Option<ServerLock>> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(ServerLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

pub fn resolve(dir: &Path, p: &str) -> std::path::PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Registers a principal directly in the database with a new key (bootstrap and benchmarks
/// only; everything else goes through the admin API). Returns the key.
pub async fn register_with_new_key(
    store: &Store,
    name: &PrincipalName,
    role: Option<&str>,
    scopes: &str,
    audiences: &str,
    now: i64,
) -> Result<SecretKey> {
    let key = SecretKey::generate(&mut rand::rngs::OsRng);
    store
        .create_principal(&NewPrincipal {
            name: name.to_string(),
            kind: name.kind().as_str().into(),
            role: role.map(String::from),
            allow_bearer: false,
            ceiling_scopes: scopes.into(),
            ceiling_audiences: audiences.into(),
            max_ttl_secs: 3600,
            max_depth: 5,
            key: Some(NewKey {
                kid: key.public().thumbprint(),
                public_key: key.public().x(),
            }),
            now,
        })
        .await?;
    Ok(key)
}

/// Registers a principal at bootstrap with a key made here and saved in MANDATE_HOME.
async fn bootstrap_principal(
    home: &Home,
    store: &Store,
    name: &str,
    role: Option<&str>,
    scopes: &str,
    audiences: &str,
    now: i64,
) -> Result<String> {
    let name: PrincipalName = name.parse()?;
    let key = register_with_new_key(store, &name, role, scopes, audiences, now).await?;
    let path = home.save_key(&name, &key)?;
    Ok(path.display().to_string())
}

pub async fn init(ctx: &Ctx, a: InitArgs) -> Result<serde_json::Value> {
    let home = &ctx.home;
    if home.server_config_path().exists() {
        bail!(
            "{} is already initialised: run `mandate serve` (or `mandate up`)",
            home.root.display()
        );
    }
    let addr: std::net::SocketAddr = a.listen.parse().with_context(|| {
        format!(
            "--listen {:?} is not an address like 127.0.0.1:8700",
            a.listen
        )
    })?;
    let issuer = a
        .issuer
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();
    url::Url::parse(&issuer).with_context(|| format!("issuer {issuer:?} is not a URL"))?;
    Home::ensure_private_dir(&home.root)?;
    Home::ensure_private_dir(&home.server_dir())?;
    let cfg = ServerConfig {
        listen: addr.to_string(),
        issuer: issuer.clone(),
        database: "mandate.db".into(),
        issuer_keys: "issuer-keys".into(),
        enrollment_ttl: "15m".into(),
        environment: "development".into(),
        policy: PolicyConfig::default(),
        limits: Default::default(),
        gateway: Default::default(),
        approvals: Default::default(),
        upstream: if a.demo {
            demo_upstreams()?
        } else {
            Default::default()
        },
    };
    let dir = home.server_dir();
    crate::policy_pack::install(&resolve(&dir, &cfg.policy.dir))?;
    let store = Store::open_sqlite(&resolve(&dir, &cfg.database))
        .await
        .context("cannot create the database")?;
    let now = mandate_server::now();
    let kid = IssuerKeys::ensure(&store, &resolve(&dir, &cfg.issuer_keys), now).await?;
    let admin_key = bootstrap_principal(home, &store, ADMIN, Some("admin"), "*", "*", now).await?;
    let mut demo = vec![];
    if a.demo {
        for (name, scopes, auds) in [
            ("user:alice", "*", "*"),
            (
                "agent:planner",
                "github:* ci:* demo:*",
                "https://api.github.com https://ci.example.com mcp:demo",
            ),
            (
                "agent:coder",
                "github:pulls.* github:contents.* demo:list_notes demo:read_note",
                "https://api.github.com mcp:demo",
            ),
        ] {
            bootstrap_principal(home, &store, name, None, scopes, auds, now).await?;
            demo.push(name);
        }
    }
    // The installation's first events: what `init` created, before any server ran. The server's
    // integrator puts them in the first checkpoint.
    let mut created = vec![ADMIN];
    created.extend(demo.iter().copied());
    let mut ev = mandate_server::audit::new_event(
        mandate_audit::event::kinds::ADMIN_CHANGE,
        INIT_PRINCIPAL,
        "installation.init",
    );
    ev.resource = Some(issuer.clone());
    ev.details.insert("issuer_kid".into(), kid.clone().into());
    ev.details
        .insert("principals".into(), created.clone().into());
    store
        .audit(mandate_store::AuditRecord::from_event(&ev))
        .await
        .context("cannot write the audit log")?;
    for name in created {
        let mut ev = mandate_server::audit::new_event(
            mandate_audit::event::kinds::ADMIN_CHANGE,
            INIT_PRINCIPAL,
            "principal.create",
        );
        ev.resource = Some(name.to_string());
        store
            .audit(mandate_store::AuditRecord::from_event(&ev))
            .await
            .context("cannot write the audit log")?;
    }
    std::fs::write(home.server_config_path(), toml::to_string(&cfg)?)?;
    home.write_client_config(&ClientConfig {
        server: Some(issuer.clone()),
        principal: Some(ADMIN.into()),
    })?;
    let out = serde_json::json!({
        "home": home.root, "issuer": issuer, "listen": cfg.listen, "issuer_kid": kid,
        "database": resolve(&dir, &cfg.database), "admin": ADMIN, "admin_key": admin_key, "demo": demo,
    });
    ctx.print(&out, || {
        let mut s = format!(
            "Initialised Mandate in {}\n  issuer     {issuer}\n  database   {} (SQLite)\n  issuer key {kid}\n  admin      {ADMIN} (private key {admin_key})",
            home.root.display(),
            resolve(&dir, &cfg.database).display()
        );
        if !demo.is_empty() {
            s.push_str(&format!("\n  demo       {} (keys in {})", demo.join(", "), home.keys_dir().display()));
        }
        s
    });
    Ok(out)
}

/// Who the audit log names for what `mandate init` did (a local operator, not a principal).
const INIT_PRINCIPAL: &str = "local:init";

fn next_steps(demo: bool) -> String {
    let mut s = String::from("\nNext, in another terminal (same MANDATE_HOME):\n");
    if demo {
        s.push_str("  T=$(mandate delegate --as user:alice --to planner --aud https://api.github.com --scope 'github:pulls.write github:contents.read')\n");
        s.push_str("  C=$(mandate delegate --as planner --to coder --subject-token \"$T\" --scope github:pulls.write)\n");
        s.push_str("  mandate token inspect \"$C\"\n");
    } else {
        s.push_str("  mandate user create alice\n");
        s.push_str("  mandate agent create planner --scopes 'github:*' --audiences https://api.github.com\n");
        s.push_str("  T=$(mandate delegate --as user:alice --to planner --aud https://api.github.com --scope github:pulls.write)\n");
        s.push_str("  mandate token inspect \"$T\"\n");
    }
    s
}

pub async fn up(ctx: &Ctx, a: UpArgs) -> Result<()> {
    if !ctx.home.server_config_path().exists() {
        let listen = a
            .listen
            .clone()
            .unwrap_or_else(|| crate::home::DEFAULT_LISTEN.into());
        init(
            ctx,
            InitArgs {
                listen,
                issuer: None,
                demo: a.demo,
            },
        )
        .await?;
        if !ctx.json {
            println!("{}", next_steps(a.demo));
        }
    } else if !ctx.json {
        println!(
            "Using the existing installation in {}",
            ctx.home.root.display()
        );
    }
    serve(
        ctx,
        ServeArgs {
            config: None,
            listen: a.listen,
        },
    )
    .await
}

pub async fn serve(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    let (cfg, dir) = ctx.home.server_config(a.config.as_deref())?;
    // No sandboxed upstream reaches the configuration given, wherever it is.
    if let Some(c) = &a.config {
        mandate_gateway::config::protect_from_sandbox(c);
    }
    // Held until the server stops: the database and the audit files are this process's alone.
    let _lock = try_lock_server_dir(&dir)?.with_context(|| {
        format!(
            "another `mandate serve` (or `mandate audit archive`) is using {} (it holds {}): stop it first",
            dir.display(),
            dir.join(LOCK_FILE).display()
        )
    })?;
    let listen = a.listen.unwrap_or(cfg.listen.clone());
    let enrollment_ttl =
        parse_duration(&cfg.enrollment_ttl).context("enrollment_ttl in the server config")?;
    let store = Store::open_sqlite(&resolve(&dir, &cfg.database))
        .await
        .context("cannot open the database")?;
    let keys_dir = resolve(&dir, &cfg.issuer_keys);
    // Issuer keys kept outside MANDATE_HOME are out of every sandbox's reach too.
    mandate_gateway::config::protect_from_sandbox(&keys_dir);
    let keys = IssuerKeys::load(&store, &keys_dir).await?;
    mandate_server::audit::check_database_against_last_checkpoint(&store, &keys_dir)
        .await
        .map_err(|e| anyhow::anyhow!("refusing to serve: {e}"))?;
    let mut limits = cfg.limits.validate()?;
    // Everything that can refuse the configuration is checked before anything is logged.
    let policy = decision_point(&cfg.policy, &dir)?;
    limits.max_connections = fit_open_files(limits.max_connections);
    let config = Config {
        issuer: cfg.issuer.trim_end_matches('/').to_string(),
        keys_dir,
        enrollment_ttl,
        environment: cfg.environment.clone(),
        limits,
        data_api_paths: cfg.policy.data_api_paths.clone(),
    };
    let revocations = Revocations::load(&store)
        .await
        .context("cannot read revocations")?;
    let audit_log = mandate_server::audit::AuditLog::open(&config.keys_dir, &config.issuer)
        .context("cannot open the audit log's key")?;
    let state = Arc::new(AppState::new(
        config,
        store,
        keys,
        revocations,
        policy,
        audit_log,
    ));
    if !cfg.approvals.webhooks.is_empty() {
        let mut targets = Vec::new();
        for (i, w) in cfg.approvals.webhooks.iter().enumerate() {
            targets.push(
                mandate_server::webhooks::Target::parse(&w.url, &w.secret)
                    .map_err(|e| anyhow::anyhow!("server.toml [approvals] webhooks[{i}]: {e}"))?,
            );
        }
        tracing::info!(targets = targets.len(), "approval webhooks");
        let _ = state
            .webhooks
            .set(mandate_server::webhooks::Webhooks::start(targets));
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let gateway = start_gateway(&cfg, &state, &dir)?;
    for (name, up) in cfg.upstream.iter().filter(|(_, u)| u.sandbox_off()) {
        mandate_server::admin_upstreams::audit_unsandboxed(&state, name, up)
            .await
            .with_context(|| format!("cannot audit that upstream {name} runs unsandboxed"))?;
    }
    // Announced once everything that can refuse the configuration has accepted it.
    tracing::info!(addr = %listener.local_addr()?, issuer = %cfg.issuer, "mandate serving");
    if !ctx.json {
        println!(
            "Mandate is serving {} on {} (Ctrl-C stops)",
            cfg.issuer,
            listener.local_addr()?
        );
    }
    let _ = state.gateway.set(Arc::downgrade(&gateway));
    mandate_server::admin_upstreams::start_stored(&state, &gateway)
        .await
        .context("cannot read the upstreams added with `mandate upstream add`")?;
    mandate_server::serve_with(listener, state, Some(gateway), shutdown_signal()).await?;
    Ok(())
}

/// The gateway in this process: the authority's own hooks, and the upstreams `server.toml`
/// declares (each checked; one that does not check out stops the start with its reason).
fn start_gateway(
    cfg: &crate::home::ServerConfig,
    state: &Arc<AppState>,
    server_dir: &std::path::Path,
) -> Result<Arc<mandate_gateway::Gateway>> {
    let issuer = cfg.issuer.trim_end_matches('/');
    let g = &cfg.gateway;
    let public_url = g.public_url.as_deref().unwrap_or(issuer);
    url::Url::parse(public_url)
        .with_context(|| format!("[gateway] public_url {public_url:?} is not a URL"))?;
    let settings = g.settings(public_url, issuer, &cfg.environment)?;
    // The server's files, and the agent keys beside them, are never read as an upstream's secret,
    // whatever link leads to them (checked again at every read, not only here).
    mandate_gateway::config::protect_directory(server_dir);
    if let Some(home) = server_dir.parent() {
        mandate_gateway::config::protect_directory(&home.join("keys"));
        // No sandboxed upstream reaches anything in MANDATE_HOME.
        mandate_gateway::config::protect_from_sandbox(home);
    }
    // Every upstream's secret files are out of every sandbox's reach before any child starts.
    for up in cfg.upstream.values() {
        for f in up.secret_files() {
            mandate_gateway::config::protect_from_sandbox(&f);
        }
    }
    // Every upstream is checked before any child is started.
    for (name, up) in &cfg.upstream {
        up.validate(name)
            .map_err(|e| anyhow::anyhow!("server.toml [upstream.{name}]: {e}"))?;
        up.check_secret_files_outside(name, server_dir)
            .map_err(|e| anyhow::anyhow!("server.toml [upstream.{name}]: {e}"))?;
        up.check_sandbox_paths(name)
            .map_err(|e| anyhow::anyhow!("server.toml [upstream.{name}]: {e}"))?;
    }
    let gw = Arc::new(
        mandate_gateway::Gateway::new(
            settings,
            Arc::new(mandate_server::gateway_hooks::AuthorityAuth::new(
                state.clone(),
            )),
            state.policy.clone(),
            state.clone(),
        )
        .with_minter(Arc::new(mandate_server::gateway_hooks::AuthorityMinter(
            state.clone(),
        )))
        .with_approvals(Arc::new(mandate_server::approvals::Desk::new(
            state.clone(),
        ))),
    );
    for (name, up) in &cfg.upstream {
        let started =
            mandate_gateway::Upstream::start(name, up.clone(), mandate_gateway::Origin::Config)
                .map_err(|e| anyhow::anyhow!("server.toml [upstream.{name}]: {e}"))?;
        tracing::info!(upstream = %name, transport = started.checked.transport.kind(), audience = %started.checked.audience, "serving upstream {name}");
        if started.config.sandbox_off() {
            tracing::warn!(upstream = %name, "stdio upstream runs unsandboxed (sandbox = \"off\"), with the gateway's rights");
        }
        gw.upstreams.put(started);
    }
    let idle = gw.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            idle.forget_idle_agents();
        }
    });
    Ok(gw)
}

/// `up --demo`'s upstream: this binary's own demo MCP server over stdio.
fn demo_upstreams() -> Result<std::collections::BTreeMap<String, mandate_gateway::UpstreamConfig>> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let demo = mandate_gateway::UpstreamConfig {
        stdio: vec![exe.display().to_string(), "demo-mcp".into()],
        pass_env: Some(vec![]),
        // Sandboxed like any stdio upstream where this kernel can; our own code otherwise.
        sandbox: match mandate_sandbox::launch::support().require(false) {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!("the demo upstream runs unsandboxed: {e}");
                Some(mandate_gateway::config::SandboxSetting::Off)
            }
        },
        ..Default::default()
    };
    Ok([("demo".to_string(), demo)].into_iter().collect())
}

/// File descriptors kept free for the database, policy files, logs and outgoing connections.
const RESERVED_FDS: u64 = 128;

/// Raises the soft limit on open files to the hard limit (a server holding a connection per
/// client needs more than the common default of 1024), and bounds `max_connections` by it.
pub fn fit_open_files(max_connections: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let fits = limit.saturating_sub(RESERVED_FDS).max(1) as usize;
    if max_connections > fits {
        tracing::warn!(
            max_connections,
            open_files = limit,
            "[limits] max_connections is more than the open files limit allows; serving at most {fits} connections"
        );
        return fits;
    }
    tracing::info!(open_files = limit, max_connections, "connection limits");
    max_connections
}

/// The embedded engine over the policy directory (installing the default pack where the directory
/// does not exist yet), or the configured external decision point.
fn decision_point(cfg: &PolicyConfig, base: &Path) -> Result<Arc<DecisionPoint>> {
    if let Some(ext) = &cfg.external {
        let external = match ext.kind.as_str() {
            "opa" => External::Opa {
                url: ext.url.clone(),
            },
            "authzen" => External::AuthZen {
                url: ext.url.clone(),
            },
            other => bail!("[policy.external] kind {other:?} is not \"opa\" or \"authzen\""),
        };
        url::Url::parse(&ext.url)
            .with_context(|| format!("[policy.external] url {:?} is not a URL", ext.url))?;
        tracing::info!(kind = %ext.kind, url = %ext.url, "policy decisions by an external decision point");
        return Ok(Arc::new(DecisionPoint::external(
            external,
            Duration::from_millis(ext.timeout_ms.max(1)),
        )));
    }
    let dir = resolve(base, &cfg.dir);
    if !dir.exists() {
        // Installations made before policies existed get the default pack in the default place;
        // a configured directory that is missing is a mistake to report, not to paper over.
        if cfg.dir != PolicyConfig::default().dir {
            bail!(
                "[policy] dir {} does not exist: create it (e.g. copy policies/default) or fix the path in the server config",
                dir.display()
            );
        }
        crate::policy_pack::install(&dir)?;
        tracing::info!(dir = %dir.display(), "installed the default policy pack");
    }
    let live = LivePolicy::load(&dir, Duration::from_millis(cfg.timeout_ms.max(1)))
        .map_err(|e| anyhow::anyhow!("the policy in {} does not load: {e}", dir.display()))?;
    let live = Arc::new(live);
    tracing::info!(dir = %dir.display(), version = %live.current().version(), "policy loaded");
    tokio::spawn(
        live.clone()
            .watch(Duration::from_millis(cfg.reload_ms.max(50))),
    );
    Ok(Arc::new(DecisionPoint::embedded(live)))
}

pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

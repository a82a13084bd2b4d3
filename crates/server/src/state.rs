//! The server's shared state and validated configuration.

use std::path::PathBuf;

use std::sync::Arc;

use mandate_policy::DecisionPoint;
use mandate_store::Store;

use crate::audit::AuditLog;
use crate::issuer::IssuerKeys;
use crate::paths;
use crate::principals::PrincipalCache;
use crate::revocation::Revocations;
use crate::verified_cache::VerifiedCache;

/// Validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The issuer URL, without a trailing slash (e.g. `http://127.0.0.1:8700`).
    pub issuer: String,
    /// Where the issuer's private keys live (files mode 0600).
    pub keys_dir: PathBuf,
    /// How long an enrollment code stays valid, in seconds.
    pub enrollment_ttl: i64,
    /// The environment label policies see as `input.context.environment`.
    pub environment: String,
    /// Bounds on connections, sources and requests.
    pub limits: crate::limits::Limits,
    /// What decision points (holders of `mandate:pdp`) may read through the OPA data API: paths
    /// under `data`, `/`-separated (`mandate/authz/decision`). A query is allowed when its path is
    /// one of these or below one. Admins may read everything.
    pub data_api_paths: Vec<String>,
}

/// The data API paths a decision point may query unless configured otherwise: the two decisions.
pub fn default_data_api_paths() -> Vec<String> {
    vec![
        "mandate/authz/decision".into(),
        "mandate/delegation/decision".into(),
    ]
}

/// Absolute URLs of the endpoints, computed once from the issuer.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Token endpoint.
    pub token: String,
    /// JWKS.
    pub jwks: String,
    /// Introspection.
    pub introspect: String,
    /// Revocation.
    pub revoke: String,
}

impl Endpoints {
    /// Derives every endpoint from the issuer URL.
    pub fn new(issuer: &str) -> Self {
        Endpoints {
            token: format!("{issuer}{}", paths::TOKEN),
            jwks: format!("{issuer}{}", paths::JWKS),
            introspect: format!("{issuer}{}", paths::INTROSPECT),
            revoke: format!("{issuer}{}", paths::REVOKE),
        }
    }
}

/// Everything a handler needs.
pub struct AppState {
    /// Configuration.
    pub cfg: Config,
    /// Endpoint URLs.
    pub endpoints: Endpoints,
    /// Storage.
    pub store: Store,
    /// The issuer's signing and verification keys.
    pub keys: IssuerKeys,
    /// Principals recently read on the token path.
    pub principals: PrincipalCache,
    /// Mandates of this issuer already verified (subject and actor tokens).
    pub verified: VerifiedCache,
    /// Everything revoked.
    pub revocations: Revocations,
    /// Where policy decisions come from.
    pub policy: Arc<DecisionPoint>,
    /// The audit log's settings (origin, redaction key).
    pub audit_log: AuditLog,
    /// Unauthenticated refusals of the current window, per source.
    pub refusals: crate::refusals::RefusalCounter,
    /// Per-source request limits.
    pub limiter: crate::ratelimit::SourceLimiter,
    /// The lane decision-point requests evaluate in: one permit per evaluation or batch, at most
    /// one fewer than the CPUs (at least one), so that enforcement points asking for decisions
    /// can never take every core from the token endpoint and the rest (FIFO, so fair among them).
    pub decision_lane: tokio::sync::Semaphore,
    /// Revocation feed long polls being held (bounded in total and per source).
    pub long_polls: std::sync::Arc<crate::limits::Slots>,
    /// The gateway served in this process, for the admin API's upstream changes (weak: the
    /// gateway holds this state as its audit sink).
    pub gateway: std::sync::OnceLock<std::sync::Weak<mandate_gateway::Gateway>>,
    /// Bumped at every change of an approval request, so that held calls look again.
    pub approvals_changed: tokio::sync::watch::Sender<u64>,
    /// Held while a vote is read, checked and stored, or a request found or opened, so that two
    /// votes count each other and two identical calls find one request (one process on SQLite).
    pub approvals_lock: tokio::sync::Mutex<()>,
    /// Approval changes (`approval.requested`, ...) for the event stream, with their data.
    pub approval_events:
        tokio::sync::broadcast::Sender<std::sync::Arc<(String, serde_json::Value)>>,
    /// Webhooks told of approval changes, when `[approvals]` names any.
    pub webhooks: std::sync::OnceLock<crate::webhooks::Webhooks>,
    /// Open approval event streams per user.
    pub approval_streams: mandate_gateway::approvals::PerPrincipal,
    /// When each CIBA request was last polled (`slow_down`).
    pub ciba_polls: crate::ciba::Polls,
}

impl AppState {
    /// Assembles the state.
    pub fn new(
        cfg: Config,
        store: Store,
        keys: IssuerKeys,
        revocations: Revocations,
        policy: Arc<DecisionPoint>,
        audit_log: AuditLog,
    ) -> Self {
        AppState {
            endpoints: Endpoints::new(&cfg.issuer),
            limiter: crate::ratelimit::SourceLimiter::new(&cfg.limits),
            refusals: Default::default(),
            long_polls: crate::limits::Slots::new(
                cfg.limits.max_long_polls,
                cfg.limits.max_long_polls_per_source,
            ),
            decision_lane: tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get().saturating_sub(1))
                    .max(1),
            ),
            cfg,
            store,
            keys,
            principals: PrincipalCache::default(),
            verified: VerifiedCache::default(),
            revocations,
            policy,
            audit_log,
            gateway: std::sync::OnceLock::new(),
            approvals_changed: tokio::sync::watch::channel(0).0,
            approvals_lock: tokio::sync::Mutex::new(()),
            approval_events: tokio::sync::broadcast::channel(256).0,
            webhooks: std::sync::OnceLock::new(),
            ciba_polls: Default::default(),
            approval_streams: mandate_gateway::approvals::PerPrincipal::new(
                crate::approvals::MAX_STREAMS_PER_USER,
            ),
        }
    }
}

/// The current time in Unix seconds; the only clock read in the server.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

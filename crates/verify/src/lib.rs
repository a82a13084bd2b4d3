//! The one mandate verifier every enforcement point uses: the authority's introspection, a
//! gateway, a `mandate verify --follow` process.
//!
//! [`check`] is the pure decision (signature, claims, revocation, DPoP binding, proof replay) over
//! state passed in. [`Verifier`] owns that state and keeps it current: the issuer's keys from its
//! RFC 8414 metadata and JWKS, refreshed when an unknown `kid` shows up, and the revocation view
//! from the authority's long-poll feed. Security code fails closed: any error is a [`Refusal`],
//! and a revocation view that has not been confirmed recently refuses everything.
#![forbid(unsafe_code)]

pub mod check;
pub mod feed;
mod fetch;
pub mod jwks;
pub mod metadata;
mod replay;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mandate_core::keys::PublicKey;
use mandate_core::revocation::{RevocationEntry, RevocationSet};

pub use check::{
    check, check_mandate, check_unspent, check_unspent_with, BoxFuture, CheckedProof, Expectations,
    MemoryReplay, Presentation, Presented, Refusal, RefusalCode, ReplayGuard, Unspent,
};
pub use mandate_core::verify::VerifiedMandate;
pub use metadata::{check_issuer, check_same_origin};
pub use replay::{ReplayCache, DEFAULT_CAPACITY};

/// Shortest interval between two JWKS fetches caused by unknown `kid`s, so that tokens with
/// made-up key ids cannot turn the verifier into a request amplifier against the authority.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// How a [`Verifier`] is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The issuer URL: mandates' `iss`, and the base of the metadata and feed URLs.
    pub issuer: String,
    /// The audience this enforcement point serves.
    pub audience: String,
    /// How old the last confirmed revocation view may be before everything is refused.
    pub max_staleness: Duration,
    /// Allowed clock difference with the issuer, in seconds.
    pub skew: i64,
}

/// Why talking to the authority failed. These never decide a request by themselves: the
/// verifier keeps its last good state, and staleness turns a lasting failure into refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifierError {
    /// The request did not complete (connection, timeout, body).
    #[error("request to {url} failed: {message}")]
    Http {
        /// The URL asked.
        url: String,
        /// What the HTTP client said.
        message: String,
    },
    /// The authority answered with a status other than 200.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The answer was larger than the crate reads.
    #[error("the answer from {0} is over the size limit")]
    TooLarge(String),
    /// The answer was not the expected JSON document.
    #[error("the {0} is not valid: {1}")]
    Json(&'static str, String),
    /// The metadata belongs to another issuer (RFC 8414 §3.3).
    #[error("the authorization server metadata names issuer {found:?}, not {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The issuer in the metadata.
        found: String,
    },
    /// A metadata endpoint that would receive credentials is not on the issuer's origin.
    #[error("the authorization server metadata sends {member} to {url:?}, which is not on the origin of issuer {issuer:?}")]
    EndpointElsewhere {
        /// The metadata member, e.g. `token_endpoint`.
        member: String,
        /// Its value.
        url: String,
        /// The issuer.
        issuer: String,
    },
    /// The feed answered with a cursor behind the one asked for.
    #[error("the revocation feed went backwards (asked since {since}, answered cursor {cursor})")]
    FeedBackwards {
        /// The cursor asked for.
        since: i64,
        /// The cursor answered.
        cursor: i64,
    },
}

/// A verifier for one issuer and audience. Clones share keys, revocations and replay memory.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

/// The shared state. Each lock guards one independent piece and none is held across an `.await`
/// (except `last_refresh`, which exists to serialise JWKS fetches).
pub(crate) struct Inner {
    pub(crate) cfg: Config,
    pub(crate) http: reqwest::Client,
    keys: RwLock<HashMap<String, PublicKey>>,
    revoked: RwLock<RevocationSet>,
    replay: Arc<dyn ReplayGuard>,
    last_sync: Mutex<Option<Instant>>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

/// Whether a view last confirmed at `last_sync` is too old at `now` (never confirmed: stale).
pub fn is_stale(last_sync: Option<Instant>, now: Instant, max_staleness: Duration) -> bool {
    last_sync.is_none_or(|t| now.saturating_duration_since(t) > max_staleness)
}

/// Reads a lock even if a panicking thread poisoned it: every critical section here leaves the
/// data consistent, and refusing all traffic forever after one bug would help nobody.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Current Unix time in seconds. A clock before 1970 reads as 0, which makes every mandate "not
/// yet valid": a broken clock refuses rather than accepts.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Inner {
    pub(crate) fn revocation_cursor(&self) -> i64 {
        read(&self.revoked).cursor()
    }

    /// Applies a feed answer and marks the view confirmed as of now. The entries go in first, so
    /// that a request seeing the new confirmation time also sees what it confirms.
    pub(crate) fn apply_feed(&self, entries: &[RevocationEntry]) {
        {
            let mut set = write(&self.revoked);
            for e in entries {
                set.apply(e);
            }
        }
        *lock(&self.last_sync) = Some(Instant::now());
    }

    fn fresh(&self) -> Result<(), Refusal> {
        let last = *lock(&self.last_sync);
        let max = self.cfg.max_staleness;
        if !is_stale(last, Instant::now(), max) {
            return Ok(());
        }
        let message = match last {
            None => "no revocation list has been received from the authority yet".to_string(),
            Some(t) => format!(
                "the revocation list was last confirmed {:.1}s ago, over the {:.1}s limit: the \
                 authority's feed is unreachable",
                t.elapsed().as_secs_f64(),
                max.as_secs_f64()
            ),
        };
        Err(Refusal::new(RefusalCode::RevocationsStale, message))
    }

    /// Runs the pure checks at `now` for `audience`, under read locks only; the proof is spent
    /// afterwards.
    fn check_now(
        &self,
        p: &Presentation<'_>,
        audience: &str,
        now: i64,
    ) -> Result<Unspent, Refusal> {
        let e = Expectations {
            issuer: &self.cfg.issuer,
            audience,
            now,
            skew: self.cfg.skew,
        };
        let keys = read(&self.keys);
        let revoked = read(&self.revoked);
        check::check_unspent(p, &*keys, &revoked, e)
    }

    /// Fetches the keys and replaces the whole set, so that keys the issuer retired stop
    /// verifying. Callers hold `last_refresh`, which serialises fetches.
    async fn fetch_and_replace_keys(&self) -> Result<(), VerifierError> {
        let keys = jwks::fetch_keys(&self.http, &self.cfg.issuer).await?;
        if keys.is_empty() {
            tracing::warn!(issuer = %self.cfg.issuer, "the issuer's JWKS has no usable key");
        }
        tracing::debug!(count = keys.len(), "issuer keys refreshed");
        *write(&self.keys) = keys;
        Ok(())
    }
}

impl Verifier {
    /// A verifier with no keys and no revocation view yet: it refuses everything until the
    /// follower's first answer arrives (see [`Verifier::spawn_follower`]). DPoP proofs are
    /// remembered in this process ([`MemoryReplay`]), which refuses proofs made before it started
    /// (their single use before a restart cannot be known).
    pub fn new(cfg: Config, http: reqwest::Client) -> Self {
        let replay = MemoryReplay::started_at(replay::DEFAULT_CAPACITY, unix_now());
        Self::with_replay(cfg, http, Arc::new(replay))
    }

    /// [`Verifier::new`] with the single use of DPoP proofs enforced by `replay` (for example a
    /// store shared by every replica).
    pub fn with_replay(cfg: Config, http: reqwest::Client, replay: Arc<dyn ReplayGuard>) -> Self {
        Verifier {
            inner: Arc::new(Inner {
                cfg,
                http,
                keys: RwLock::new(HashMap::new()),
                revoked: RwLock::new(RevocationSet::default()),
                replay,
                last_sync: Mutex::new(None),
                last_refresh: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// Fetches RFC 8414 metadata at `{issuer}/.well-known/oauth-authorization-server`, then
    /// `jwks_uri`, and replaces the key set. On error the previous keys stay in use.
    pub async fn refresh_jwks(&self) -> Result<(), VerifierError> {
        let mut last = self.inner.last_refresh.lock().await;
        *last = Some(Instant::now());
        self.inner.fetch_and_replace_keys().await
    }

    /// Long-polls the revocation feed until every clone of this verifier is dropped (or the
    /// handle is aborted), keeping the last good view while the authority is unreachable and
    /// retrying with backoff from 100 ms to 2 s.
    pub fn spawn_follower(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(feed::follow(Arc::downgrade(&self.inner)))
    }

    /// Verifies a presentation at the current time.
    ///
    /// Refuses everything with `revocations_stale` when the last successful feed answer is
    /// older than `max_staleness` (or there never was one). On `unknown_kid` the JWKS is fetched
    /// again, at most once per [`JWKS_REFRESH_INTERVAL`], and the presentation checked once more.
    /// The proof is spent (its single use recorded) only when everything else passed.
    pub async fn verify(&self, p: &Presentation<'_>) -> Result<Presented, Refusal> {
        let audience = self.inner.cfg.audience.clone();
        self.verify_for(p, &audience).await
    }

    /// [`Verifier::verify`] for another audience than the configured one: an enforcement point
    /// that serves several resources (a gateway's `mcp:NAME` and `http:NAME`) with one view of
    /// the issuer's keys, revocations and proofs.
    pub async fn verify_for(
        &self,
        p: &Presentation<'_>,
        audience: &str,
    ) -> Result<Presented, Refusal> {
        self.inner.fresh()?;
        let unspent = match self.inner.check_now(p, audience, unix_now()) {
            Err(r) if r.code == RefusalCode::UnknownKid => {
                self.refresh_for_unknown_kid().await;
                // The fetch may have taken seconds: the view must still be fresh afterwards.
                self.inner.fresh()?;
                self.inner.check_now(p, audience, unix_now())?
            }
            outcome => outcome?,
        };
        unspent.spend(&*self.inner.replay, unix_now()).await
    }

    /// Whether a mandate accepted earlier is still good at `now`: not expired, nothing in its
    /// chain (or its holder's key) revoked, and the revocation view fresh (a stale view answers
    /// no: fail closed). Checked while a stream the mandate opened stays open.
    pub fn still_valid(&self, claims: &mandate_core::MandateClaims, now: i64) -> bool {
        claims.exp > now
            && self.inner.fresh().is_ok()
            && read(&self.inner.revoked).check(claims, None).is_ok()
    }

    /// Whether the revocation view is fresh enough to accept presentations now.
    pub fn is_fresh(&self) -> bool {
        self.inner.fresh().is_ok()
    }

    /// The revocation feed position the view reflects.
    pub fn revocation_cursor(&self) -> i64 {
        self.inner.revocation_cursor()
    }

    /// Refreshes the keys unless that happened less than [`JWKS_REFRESH_INTERVAL`] ago. Waiting
    /// on the lock coalesces concurrent callers: those that queued behind a fetch reuse it.
    async fn refresh_for_unknown_kid(&self) {
        let mut last = self.inner.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < JWKS_REFRESH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.inner.fetch_and_replace_keys().await {
            tracing::warn!(error = %e, "refreshing the issuer's keys failed");
        }
    }
}

#[cfg(test)]
mod tests;

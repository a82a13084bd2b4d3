//! Revocation at the authority: the in-memory set every issuance checks, kept in step with the
//! database, the admin operation that revokes, and the feed enforcement points follow.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::Json;
use mandate_core::revocation::{RevocationEntry, RevocationSet, Revoked, RevokedKind};
use mandate_core::verify::VerifiedMandate;
use mandate_store::{Revocation, Store, StoreError};
use serde::Deserialize;
use tokio::sync::watch;

use crate::api_error::ApiError;
use crate::state::AppState;

/// How long a follower whose long poll could not be held should wait before asking again.
const SHED_RETRY_MS: u64 = 1000;

/// Longest a feed request is held open waiting for a new entry.
pub const MAX_WAIT: u64 = 30;
/// Most entries in one feed answer.
const PAGE: i64 = 1000;

/// The authority's view of everything revoked, and a signal that fires when it grows.
pub struct Revocations {
    set: RwLock<RevocationSet>,
    changed: watch::Sender<i64>,
}

fn entry(r: &Revocation) -> Option<RevocationEntry> {
    let kind = match r.kind.as_str() {
        "jti" => RevokedKind::Jti,
        "principal" => RevokedKind::Principal,
        "key" => RevokedKind::Key,
        _ => return None,
    };
    Some(RevocationEntry {
        seq: r.seq,
        kind,
        value: r.value.clone(),
        revoked_at: r.revoked_at,
    })
}

impl Revocations {
    /// Loads every revocation from the database.
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let r = Revocations {
            set: RwLock::new(RevocationSet::default()),
            changed: watch::channel(0).0,
        };
        r.sync(store).await?;
        Ok(r)
    }

    /// Applies entries newer than the current view (also those written by other nodes).
    pub async fn sync(&self, store: &Store) -> Result<(), StoreError> {
        loop {
            let rows = store.revocations_since(self.cursor(), PAGE).await?;
            if rows.is_empty() {
                return Ok(());
            }
            self.apply(&rows);
        }
    }

    /// Adds rows to the view and wakes feed requests.
    pub fn apply(&self, rows: &[Revocation]) {
        let cursor = {
            let mut set = self.set.write().expect("revocation lock");
            for e in rows.iter().filter_map(entry) {
                set.apply(&e);
            }
            set.cursor()
        };
        self.changed.send_replace(cursor);
    }

    /// The feed position of the view.
    pub fn cursor(&self) -> i64 {
        self.set.read().expect("revocation lock").cursor()
    }

    /// Checks a verified mandate.
    pub fn check(&self, v: &VerifiedMandate) -> Result<(), Revoked> {
        self.set
            .read()
            .expect("revocation lock")
            .check(v.claims(), Some(v.kid()))
    }

    /// Runs `f` with the current set.
    pub fn with_set<T>(&self, f: impl FnOnce(&RevocationSet) -> T) -> T {
        f(&self.set.read().expect("revocation lock"))
    }

    /// Whether a principal was revoked at or after `at`.
    pub fn principal_revoked_since(&self, name: &str, at: i64) -> bool {
        self.set
            .read()
            .expect("revocation lock")
            .principal_revoked_since(name, at)
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.changed.subscribe()
    }
}

/// Keeps the view in step with the database, for entries written through other nodes.
pub async fn follow_database(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        if let Err(e) = state.revocations.sync(&state.store).await {
            tracing::warn!(error = %e, "reading new revocations failed; will retry");
        }
    }
}

#[derive(Deserialize)]
pub struct FeedQuery {
    #[serde(default)]
    since: i64,
    #[serde(default)]
    wait: u64,
}

/// `GET /revocations/v1?since=N&wait=S`: entries after `since`; with none, waits up to `S`
/// seconds for one. Public, like the JWKS: a revocation list is meant to be read by anyone who
/// verifies mandates, and it holds ids and names, never tokens or keys.
///
/// A waiting poll holds a connection, so polls that may wait are bounded in total and per source
/// (`max_long_polls`, `max_long_polls_per_source`). Over either bound the poll is answered at once
/// with `retry_after_ms`: the view it gives is current, and the follower waits that long before
/// asking again.
pub async fn feed(
    State(st): State<Arc<AppState>>,
    ext: axum::http::Extensions,
    Query(q): Query<FeedQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let mut changed = st.revocations.subscribe();
    let mut wait = q.wait.min(MAX_WAIT);
    let held = match (wait, crate::pdp::peer_source(&ext)) {
        (0, _) | (_, None) => None,
        (_, Some(source)) => st.long_polls.try_take(source),
    };
    let shed = wait > 0 && held.is_none();
    if shed {
        wait = 0;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let rows = st.store.revocations_since(q.since, PAGE).await?;
        if !rows.is_empty() || tokio::time::Instant::now() >= deadline {
            let entries: Vec<RevocationEntry> = rows.iter().filter_map(entry).collect();
            let cursor = entries.last().map_or(q.since, |e| e.seq);
            let mut body = serde_json::json!({"cursor": cursor, "entries": entries});
            if shed {
                body["retry_after_ms"] = SHED_RETRY_MS.into();
            }
            drop(held);
            return Ok(Json(body));
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

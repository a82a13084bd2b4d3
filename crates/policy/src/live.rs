//! The policy in force, hot-reloaded from its directory.
//!
//! The directory is re-read on a timer (default every second) rather than through file-system
//! notifications: polling works the same on every file system (bind mounts, network shares,
//! Kubernetes ConfigMap symlink swaps) and a policy directory is small. A change is loaded,
//! validated and swapped in atomically once two consecutive checks see the same content (so a file
//! caught half-written is never loaded); a broken edit keeps the last good policy in force and is
//! reported (log and [`LivePolicy::status`]) until it is fixed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::error::LoadError;
use crate::policy::{Policy, DEFAULT_TIMEOUT};
use crate::sources::Sources;

/// What the reloader last saw.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// The directory watched (none for a fixed policy).
    pub dir: Option<PathBuf>,
    /// Version in force.
    pub version: String,
    /// Why the newest content on disk is not in force, if it is not.
    pub error: Option<String>,
    /// How many times a new version was swapped in since start.
    pub reloads: u64,
}

/// What one reload check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Nothing changed (or the same broken content as last time).
    Unchanged,
    /// New content, seen for the first time: it is loaded only if the next check sees the same
    /// content, so that a file caught half-written is never put in force.
    Settling,
    /// A new version is in force.
    Loaded(String),
    /// The content changed but does not load; the last good policy stays.
    Failed(LoadError),
}

/// The policy in force.
pub struct LivePolicy {
    dir: Option<PathBuf>,
    timeout: Duration,
    current: RwLock<Arc<Policy>>,
    /// The status, the fingerprint last attempted, and the one seen at the previous check.
    status: Mutex<(Status, Option<String>, Option<String>)>,
}

impl LivePolicy {
    /// Loads `dir`; fails if it does not load (a server must not start without a policy).
    pub fn load(dir: &Path, timeout: Duration) -> Result<Self, LoadError> {
        let p = Policy::build(&Sources::read_dir(dir)?, timeout)?;
        Ok(Self::new(Some(dir.to_path_buf()), timeout, p))
    }

    /// A policy that never reloads.
    pub fn fixed(p: Policy) -> Self {
        Self::new(None, DEFAULT_TIMEOUT, p)
    }

    fn new(dir: Option<PathBuf>, timeout: Duration, p: Policy) -> Self {
        let status = Status {
            dir: dir.clone(),
            version: p.version().to_string(),
            error: None,
            reloads: 0,
        };
        LivePolicy {
            dir,
            timeout,
            current: RwLock::new(Arc::new(p)),
            status: Mutex::new((status, None, None)),
        }
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        // A poisoned lock still holds a complete policy (it is only ever replaced whole).
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What the reloader last saw.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Re-reads the directory and swaps in a changed policy that loads.
    pub fn reload(&self) -> Reload {
        let Some(dir) = &self.dir else {
            return Reload::Unchanged;
        };
        let read = Sources::read_dir(dir);
        let version = read.as_ref().map(|s| s.version()).ok();
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let in_force = self.current().version().to_string();
        if version.as_deref() == Some(in_force.as_str()) {
            if st.0.error.take().is_some() {
                tracing::info!(version = %in_force, "policy on disk is back to the version in force");
            }
            st.1 = None;
            st.2 = None;
            return Reload::Unchanged;
        }
        // Content that already failed is not re-validated (or re-logged) every tick.
        let fingerprint = match &read {
            Ok(_) => version.clone(),
            Err(e) => Some(format!("error:{e}")),
        };
        if fingerprint.is_some() && st.1 == fingerprint {
            return Reload::Unchanged;
        }
        if st.2 != fingerprint {
            st.2 = fingerprint;
            return Reload::Settling;
        }
        st.1 = fingerprint;
        match read.and_then(|s| Policy::build(&s, self.timeout)) {
            Ok(p) => {
                let v = p.version().to_string();
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
                st.0.version = v.clone();
                st.0.error = None;
                st.0.reloads += 1;
                tracing::info!(version = %v, previous = %in_force, "policy reloaded");
                Reload::Loaded(v)
            }
            Err(e) => {
                tracing::warn!(error = %e, version = %in_force,
                    "policy change not loaded; the last good policy stays in force");
                st.0.error = Some(e.to_string());
                Reload::Failed(e)
            }
        }
    }

    /// Checks for changes every `every` until the task is dropped.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        if self.dir.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let me = self.clone();
            // Reading and compiling is blocking work.
            let _ = tokio::task::spawn_blocking(move || me.reload()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Outcome, Query};
    use serde_json::json;

    fn write(dir: &Path, allow: &str) {
        std::fs::write(
            dir.join("authz.rego"),
            format!("package mandate.authz\ndecision := {{\"allow\": {allow}}}\n"),
        )
        .unwrap();
    }

    /// A change is loaded at the second check that sees it.
    fn settle(live: &LivePolicy) -> Reload {
        assert_eq!(live.reload(), Reload::Settling);
        live.reload()
    }

    #[test]
    fn a_good_edit_is_swapped_in_and_a_broken_one_keeps_the_last_good_policy() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "false");
        let live = LivePolicy::load(dir.path(), DEFAULT_TIMEOUT).unwrap();
        let v1 = live.current().version().to_string();
        assert_eq!(live.reload(), Reload::Unchanged);
        assert_eq!(
            live.current().decide(Query::Authz, &json!({})).outcome(),
            Outcome::Deny
        );

        write(dir.path(), "true");
        assert!(matches!(settle(&live), Reload::Loaded(v) if v != v1));
        assert_eq!(
            live.current().decide(Query::Authz, &json!({})).outcome(),
            Outcome::Allow
        );
        let v2 = live.current().version().to_string();

        std::fs::write(
            dir.path().join("authz.rego"),
            "package mandate.authz\ndecision := {\n",
        )
        .unwrap();
        let Reload::Failed(e) = settle(&live) else {
            panic!("broken edit loaded")
        };
        assert!(e.to_string().starts_with("authz.rego:"), "{e}");
        assert_eq!(
            live.reload(),
            Reload::Unchanged,
            "the same broken content is not retried"
        );
        assert_eq!(live.current().version(), v2);
        assert_eq!(
            live.current().decide(Query::Authz, &json!({})).outcome(),
            Outcome::Allow
        );
        let st = live.status();
        assert_eq!(st.version, v2);
        assert!(st.error.unwrap().contains("authz.rego"));

        write(dir.path(), "false");
        assert!(matches!(settle(&live), Reload::Loaded(_)));
        assert_eq!(live.status().error, None);
        assert_eq!(live.status().reloads, 2);
    }

    #[test]
    fn a_deleted_directory_keeps_the_policy_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("p");
        std::fs::create_dir(&sub).unwrap();
        write(&sub, "true");
        let live = LivePolicy::load(&sub, DEFAULT_TIMEOUT).unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        assert!(matches!(settle(&live), Reload::Failed(_)));
        assert_eq!(
            live.current().decide(Query::Authz, &json!({})).outcome(),
            Outcome::Allow
        );
    }
}

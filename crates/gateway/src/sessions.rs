//! Which caller opened which upstream session. An MCP session id (`Mcp-Session-Id`) is a bearer
//! secret of the upstream's; through a gateway every caller reaches the upstream with the same
//! credentials, so without this one agent could use another's session (and read its
//! notifications). A session is usable only by the principal whose `initialize` opened it; an
//! unknown or foreign session id is answered `404` as the MCP spec says for an expired session,
//! so the client starts a new one.
//!
//! Bound: [`MAX_SESSIONS`] remembered; past it the oldest are forgotten (their callers start new
//! sessions).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Most sessions remembered.
pub const MAX_SESSIONS: usize = 100_000;

/// Session id -> the principal that opened it.
#[derive(Default)]
pub struct Owners {
    inner: Mutex<(HashMap<String, String>, VecDeque<String>)>,
}

impl Owners {
    /// `principal` opened `session`.
    pub fn record(&self, session: &str, principal: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *g;
        if map
            .insert(session.to_string(), principal.to_string())
            .is_none()
        {
            order.push_back(session.to_string());
        }
        // The order queue is bounded too: sessions ended with `forget` leave their ids in it.
        while map.len() > MAX_SESSIONS || order.len() > MAX_SESSIONS {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Whether `principal` may use `session`.
    pub fn owned_by(&self, session: &str, principal: &str) -> bool {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(session).is_some_and(|p| p == principal)
    }

    /// The session ended.
    pub fn forget(&self, session: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_usable_only_by_the_principal_that_opened_it() {
        let o = Owners::default();
        o.record("s1", "agent:a");
        assert!(o.owned_by("s1", "agent:a"));
        assert!(!o.owned_by("s1", "agent:b"));
        assert!(!o.owned_by("s2", "agent:a"));
        o.forget("s1");
        assert!(!o.owned_by("s1", "agent:a"));
    }
}

//! Which caller opened which upstream session. An MCP session id (`Mcp-Session-Id`) is a bearer
//! secret of the upstream's; through a gateway every caller reaches the upstream with the same
//! credentials, so without this one agent could use another's session (and read its
//! notifications). A session is usable only by the principal whose `initialize` opened it; an
//! unknown or foreign session id is answered `404` as the MCP spec says for an expired session,
//! so the client starts a new one.
//!
//! Bounds: [`MAX_SESSIONS`] remembered in all, and [`MAX_SESSIONS_PER_HOLDER`] per agent, so
//! that no agent can push other agents' sessions out by opening many of its own. Past either
//! bound the oldest session (of all, or of that agent) is forgotten, and its caller starts a new
//! one on its next request.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Most sessions remembered.
pub const MAX_SESSIONS: usize = 100_000;

/// Most sessions remembered for one holder (an agent, whichever subjects it acts for). An MCP
/// client keeps one session per connection, so an agent at this bound is opening sessions it
/// never uses again.
pub const MAX_SESSIONS_PER_HOLDER: usize = 256;

/// Who opened a session: the owner string it is matched against, and the holder it counts for.
struct Opened {
    owner: String,
    holder: String,
}

#[derive(Default)]
struct Table {
    /// Session id -> who opened it.
    by_id: HashMap<String, Opened>,
    /// Every remembered session id, oldest first.
    order: VecDeque<String>,
    /// Each holder's remembered session ids, oldest first (holders with none are removed).
    by_holder: HashMap<String, VecDeque<String>>,
}

impl Table {
    fn remove(&mut self, session: &str) {
        let Some(o) = self.by_id.remove(session) else {
            return;
        };
        if let Some(q) = self.by_holder.get_mut(&o.holder) {
            q.retain(|s| s != session);
            if q.is_empty() {
                self.by_holder.remove(&o.holder);
            }
        }
    }
}

/// Session id -> the principal that opened it.
#[derive(Default)]
pub struct Owners {
    inner: Mutex<Table>,
}

impl Owners {
    /// `owner` opened `session`, as `holder` (the agent whose share of the table it takes).
    pub fn record(&self, session: &str, owner: &str, holder: &str) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.remove(session);
        t.by_id.insert(
            session.to_string(),
            Opened {
                owner: owner.to_string(),
                holder: holder.to_string(),
            },
        );
        t.order.push_back(session.to_string());
        let mine = t.by_holder.entry(holder.to_string()).or_default();
        mine.push_back(session.to_string());
        let oldest_of_holder = (mine.len() > MAX_SESSIONS_PER_HOLDER)
            .then(|| mine.front().cloned())
            .flatten();
        if let Some(old) = oldest_of_holder {
            t.remove(&old);
        }
        // The order queue is bounded too: ids of ended or replaced sessions stay in it until they
        // reach its front.
        while t.by_id.len() > MAX_SESSIONS || t.order.len() > MAX_SESSIONS {
            match t.order.pop_front() {
                Some(old) => t.remove(&old),
                None => break,
            }
        }
    }

    /// Whether `owner` may use `session`.
    pub fn owned_by(&self, session: &str, owner: &str) -> bool {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.by_id.get(session).is_some_and(|o| o.owner == owner)
    }

    /// The session ended.
    pub fn forget(&self, session: &str) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_usable_only_by_the_principal_that_opened_it() {
        let o = Owners::default();
        o.record("s1", "agent:a", "agent:a");
        assert!(o.owned_by("s1", "agent:a"));
        assert!(!o.owned_by("s1", "agent:b"));
        assert!(!o.owned_by("s2", "agent:a"));
        o.forget("s1");
        assert!(!o.owned_by("s1", "agent:a"));
    }

    #[test]
    fn one_holder_cannot_push_out_the_sessions_of_another() {
        let o = Owners::default();
        o.record("theirs", "agent:b for user:x", "agent:b");
        for i in 0..MAX_SESSIONS_PER_HOLDER + 10 {
            o.record(&format!("mine{i}"), "agent:a for user:y", "agent:a");
        }
        assert!(o.owned_by("theirs", "agent:b for user:x"));
        // Only the holder's own oldest sessions went.
        assert!(!o.owned_by("mine0", "agent:a for user:y"));
        assert!(!o.owned_by("mine9", "agent:a for user:y"));
        assert!(o.owned_by("mine10", "agent:a for user:y"));
        let last = format!("mine{}", MAX_SESSIONS_PER_HOLDER + 9);
        assert!(o.owned_by(&last, "agent:a for user:y"));
        let t = o.inner.lock().unwrap();
        assert_eq!(t.by_holder["agent:a"].len(), MAX_SESSIONS_PER_HOLDER);
        assert_eq!(t.by_id.len(), MAX_SESSIONS_PER_HOLDER + 1);
    }

    #[test]
    fn an_ended_session_frees_its_holders_share() {
        let o = Owners::default();
        o.record("kept", "agent:a for user:y", "agent:a");
        for i in 0..2 * MAX_SESSIONS_PER_HOLDER {
            let s = format!("brief{i}");
            o.record(&s, "agent:a for user:y", "agent:a");
            o.forget(&s);
        }
        assert!(o.owned_by("kept", "agent:a for user:y"));
        assert!(!o.inner.lock().unwrap().by_holder.is_empty());
        o.forget("kept");
        assert!(o.inner.lock().unwrap().by_holder.is_empty());
    }
}

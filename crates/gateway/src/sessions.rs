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
    /// Which recording of the session id this is (an id can be recorded again).
    generation: u64,
}

#[derive(Default)]
struct Table {
    /// Session id -> who opened it.
    by_id: HashMap<String, Opened>,
    /// Recordings, oldest first. Entries of sessions since ended or recorded again stay until
    /// they reach the front or the queue is compacted; they never count as live.
    order: VecDeque<(String, u64)>,
    /// Each holder's remembered session ids, oldest first (holders with none are removed).
    by_holder: HashMap<String, VecDeque<String>>,
    generation: u64,
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

    /// Whether a queue entry is the live recording of its session.
    fn is_live(&self, (id, generation): &(String, u64)) -> bool {
        self.by_id
            .get(id)
            .is_some_and(|o| o.generation == *generation)
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
        t.generation += 1;
        let generation = t.generation;
        t.by_id.insert(
            session.to_string(),
            Opened {
                owner: owner.to_string(),
                holder: holder.to_string(),
                generation,
            },
        );
        t.order.push_back((session.to_string(), generation));
        let mine = t.by_holder.entry(holder.to_string()).or_default();
        mine.push_back(session.to_string());
        let oldest_of_holder = (mine.len() > MAX_SESSIONS_PER_HOLDER)
            .then(|| mine.front().cloned())
            .flatten();
        if let Some(old) = oldest_of_holder {
            t.remove(&old);
        }
        // Past the bound, the oldest live session goes (entries that are no longer live are
        // skipped: they are not sessions, and must not push one out).
        while t.by_id.len() > MAX_SESSIONS {
            match t.order.pop_front() {
                Some(entry) => {
                    if t.is_live(&entry) {
                        t.remove(&entry.0);
                    }
                }
                None => break,
            }
        }
        // Entries that are no longer live are dropped in one pass when they could make up half
        // the queue: amortised constant time per recording, and the queue stays bounded.
        if t.order.len() > 2 * MAX_SESSIONS {
            let order = std::mem::take(&mut t.order);
            t.order = order.into_iter().filter(|e| t.is_live(e)).collect();
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

    #[test]
    fn sessions_opened_and_ended_by_one_holder_never_push_out_anothers() {
        let o = Owners::default();
        o.record("theirs", "agent:b for user:x", "agent:b");
        // Far more openings than the table holds, each ended or pushed out by the holder's own
        // bound: none of them is live for long, so none counts against the other agent.
        for i in 0..MAX_SESSIONS + 1_000 {
            let s = format!("brief{i}");
            o.record(&s, "agent:a for user:y", "agent:a");
            if i % 2 == 0 {
                o.forget(&s);
            }
        }
        assert!(o.owned_by("theirs", "agent:b for user:x"));
        let t = o.inner.lock().unwrap();
        assert!(t.order.len() <= 2 * MAX_SESSIONS);
        assert_eq!(t.by_id.len(), MAX_SESSIONS_PER_HOLDER + 1);
    }

    #[test]
    fn past_the_bound_in_all_the_oldest_live_session_goes() {
        let o = Owners::default();
        // Many holders, each within its own bound, fill the table.
        for i in 0..MAX_SESSIONS + 1 {
            let holder = format!("agent:h{}", i / MAX_SESSIONS_PER_HOLDER);
            o.record(&format!("s{i}"), &holder, &holder);
        }
        let first = format!("agent:h{}", 0);
        assert!(!o.owned_by("s0", &first));
        assert!(o.owned_by("s1", &first));
        assert_eq!(o.inner.lock().unwrap().by_id.len(), MAX_SESSIONS);
    }

    #[test]
    fn a_session_recorded_again_is_not_pushed_out_by_its_old_entry() {
        let o = Owners::default();
        o.record("s", "agent:a for user:y", "agent:a");
        o.record("s", "agent:b for user:x", "agent:b");
        assert!(o.owned_by("s", "agent:b for user:x"));
        assert!(!o.owned_by("s", "agent:a for user:y"));
        let t = o.inner.lock().unwrap();
        assert!(!t.is_live(&t.order[0]));
        assert!(t.is_live(&t.order[1]));
    }
}

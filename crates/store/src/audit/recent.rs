//! What this process's writer just committed to the audit log: each event's leaf hash and the
//! parties it names, kept in memory so that the integrator and the parties index need not read
//! back, and parse again, every event the writer wrote a moment before (on the gateway's hot path
//! that read-back was a few percent of the CPU per call).
//!
//! Only a shortcut: whenever it does not hold exactly the events asked for (after a restart, when
//! another process appends to the same database, or past its bound), the caller reads the rows
//! as before. Integrating from what was committed, rather than from what is stored a moment
//! later, also means a row edited in between is signed as it was written, so `audit verify` names
//! the edit.

use std::collections::VecDeque;
use std::sync::Mutex;

use mandate_audit::merkle::Hash;

/// Most events remembered; past it the oldest are dropped (and read from the database instead).
const MAX_RECENT: usize = 65_536;

/// One committed event.
#[derive(Debug, Clone)]
pub(crate) struct Committed {
    pub seq: i64,
    pub leaf: Hash,
    /// Everyone the event names, each with whether it is only asserted.
    pub parties: Vec<(String, bool)>,
}

/// Committed events in seq order, with no gap.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    events: Mutex<VecDeque<Committed>>,
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Committed>> {
        // Every critical section leaves the queue consistent, so a poisoned lock is still usable.
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events just committed, in seq order. Ones that do not follow on from those remembered
    /// (some other writer appended in between) replace them.
    pub(crate) fn push(&self, committed: impl IntoIterator<Item = Committed>) {
        let mut q = self.lock();
        for c in committed {
            if q.back().is_some_and(|b| b.seq + 1 != c.seq) {
                q.clear();
            }
            q.push_back(c);
            if q.len() > MAX_RECENT {
                q.pop_front();
            }
        }
    }

    /// The events after `after` (a seq), at most `max` and none past `through`, if every one of
    /// them from `after + 1` on is remembered; `None` when the first is not (read the rows).
    pub(crate) fn after(&self, after: i64, through: i64, max: usize) -> Option<Vec<Committed>> {
        let q = self.lock();
        let first = q.front()?.seq;
        if after + 1 < first || after >= q.back()?.seq {
            return None;
        }
        let skip = usize::try_from(after + 1 - first).ok()?;
        Some(
            q.iter()
                .skip(skip)
                .take_while(|c| c.seq <= through)
                .take(max)
                .cloned()
                .collect(),
        )
    }

    /// Forgets the events up to `seq`: both readers are past them.
    pub(crate) fn drop_through(&self, seq: i64) {
        let mut q = self.lock();
        while q.front().is_some_and(|c| c.seq <= seq) {
            q.pop_front();
        }
    }

    /// Forgets everything (the log was started again).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(seq: i64) -> Committed {
        Committed {
            seq,
            leaf: [seq as u8; 32],
            parties: vec![(format!("agent:{seq}"), false)],
        }
    }

    fn seqs(v: Option<Vec<Committed>>) -> Option<Vec<i64>> {
        v.map(|v| v.into_iter().map(|c| c.seq).collect())
    }

    #[test]
    fn only_a_run_that_starts_right_after_the_asked_seq_is_answered() {
        let r = Recent::default();
        assert_eq!(seqs(r.after(0, i64::MAX, 10)), None);
        r.push((3..=7).map(c));
        // From 1 or 2 on, events 1 and 2 are missing: read the rows.
        assert_eq!(seqs(r.after(0, i64::MAX, 10)), None);
        assert_eq!(seqs(r.after(1, i64::MAX, 10)), None);
        assert_eq!(seqs(r.after(2, i64::MAX, 10)), Some(vec![3, 4, 5, 6, 7]));
        assert_eq!(seqs(r.after(4, i64::MAX, 2)), Some(vec![5, 6]));
        assert_eq!(seqs(r.after(4, 5, 10)), Some(vec![5]));
        // Nothing after the last one remembered: it may be in the database.
        assert_eq!(seqs(r.after(7, i64::MAX, 10)), None);
    }

    #[test]
    fn a_gap_in_what_is_pushed_starts_the_memory_again() {
        let r = Recent::default();
        r.push((1..=3).map(c));
        r.push([c(5), c(6)]);
        assert_eq!(seqs(r.after(2, i64::MAX, 10)), None);
        assert_eq!(seqs(r.after(4, i64::MAX, 10)), Some(vec![5, 6]));
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_what_both_readers_passed() {
        let r = Recent::default();
        r.push((1..=(MAX_RECENT as i64 + 5)).map(c));
        assert_eq!(r.lock().len(), MAX_RECENT);
        assert_eq!(seqs(r.after(0, i64::MAX, 1)), None);
        assert_eq!(seqs(r.after(5, i64::MAX, 1)), Some(vec![6]));
        r.drop_through(100);
        assert_eq!(r.lock().front().unwrap().seq, 101);
        r.clear();
        assert!(r.lock().is_empty());
    }
}

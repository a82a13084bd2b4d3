//! Single use of DPoP proofs (RFC 9449 §11.1): a bounded memory of the `(jkt, jti)` pairs seen
//! while their proofs could still be accepted.
//!
//! A proof is accepted while `now <= iat + MAX_AGE`, so its pair is kept until
//! `iat + MAX_AGE + MAX_FUTURE` (the extra margin covers a verifier clock that steps back a
//! little). Expired pairs are purged lazily, on the next insertion. The cache never forgets a
//! live pair to make room: when it is full it refuses new proofs instead (fail closed), because
//! forgetting would let an attacker flush the cache and then replay a captured proof.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use mandate_core::dpop::{MAX_AGE, MAX_FUTURE};

use crate::check::{Refusal, RefusalCode};

/// How many live proofs the default cache holds.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The pairs seen, with a min-heap of expiry times for cheap purging.
#[derive(Debug)]
pub struct ReplayCache {
    seen: HashSet<(String, String)>,
    expiries: BinaryHeap<Reverse<(i64, String, String)>>,
    capacity: usize,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl ReplayCache {
    /// An empty cache that holds at most `capacity` live proofs.
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            seen: HashSet::new(),
            expiries: BinaryHeap::new(),
            capacity,
        }
    }

    /// Number of pairs remembered (including expired ones not purged yet).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records the proof `(jkt, jti)` issued at `iat`, refusing it if it was seen before
    /// (`dpop_replayed`) or if the cache is full of live proofs (`replay_cache_full`).
    pub fn use_once(&mut self, jkt: &str, jti: &str, iat: i64, now: i64) -> Result<(), Refusal> {
        self.purge(now);
        let key = (jkt.to_string(), jti.to_string());
        if self.seen.contains(&key) {
            return Err(Refusal::new(
                RefusalCode::DpopReplayed,
                "this DPoP proof was already used: make a new proof for every request",
            ));
        }
        if self.seen.len() >= self.capacity {
            tracing::warn!(
                capacity = self.capacity,
                "DPoP replay cache is full; refusing proofs until entries expire"
            );
            return Err(Refusal::new(
                RefusalCode::ReplayCacheFull,
                "too many recent DPoP proofs to remember; retry in a minute",
            ));
        }
        let expires = iat.saturating_add(MAX_AGE + MAX_FUTURE);
        self.expiries
            .push(Reverse((expires, key.0.clone(), key.1.clone())));
        self.seen.insert(key);
        Ok(())
    }

    /// Forgets pairs whose proofs can no longer be accepted at `now`.
    fn purge(&mut self, now: i64) {
        while let Some(Reverse((expires, _, _))) = self.expiries.peek() {
            if *expires >= now {
                break;
            }
            if let Some(Reverse((_, jkt, jti))) = self.expiries.pop() {
                self.seen.remove(&(jkt, jti));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_refused_the_second_time_but_other_pairs_pass() {
        let mut c = ReplayCache::default();
        c.use_once("k1", "j1", 100, 100).unwrap();
        assert_eq!(
            c.use_once("k1", "j1", 100, 101).unwrap_err().code,
            "dpop_replayed"
        );
        // The same jti from another key is another proof.
        c.use_once("k2", "j1", 100, 101).unwrap();
        c.use_once("k1", "j2", 100, 101).unwrap();
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn pairs_are_kept_for_the_whole_acceptance_window_then_purged() {
        let mut c = ReplayCache::default();
        c.use_once("k", "j", 100, 100).unwrap();
        let last_second = 100 + MAX_AGE + MAX_FUTURE;
        assert_eq!(
            c.use_once("k", "j", 100, last_second).unwrap_err().code,
            "dpop_replayed"
        );
        c.use_once("k", "other", last_second + 1, last_second + 1)
            .unwrap();
        assert_eq!(c.len(), 1, "the expired pair was purged");
    }

    #[test]
    fn a_full_cache_refuses_instead_of_forgetting() {
        let mut c = ReplayCache::new(2);
        c.use_once("k", "a", 100, 100).unwrap();
        c.use_once("k", "b", 100, 100).unwrap();
        assert_eq!(
            c.use_once("k", "c", 100, 100).unwrap_err().code,
            "replay_cache_full"
        );
        // A replay is still reported as a replay when full.
        assert_eq!(
            c.use_once("k", "a", 100, 100).unwrap_err().code,
            "dpop_replayed"
        );
        // Once the live entries expire there is room again.
        let later = 100 + MAX_AGE + MAX_FUTURE + 1;
        c.use_once("k", "c", later, later).unwrap();
        assert_eq!(c.len(), 1);
    }
}

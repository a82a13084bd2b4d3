//! A cache of mandates this issuer has already verified, keyed by the SHA-256 of the token.
//!
//! A holder typically exchanges the same parent mandate many times (a planner delegating to each
//! worker it starts). The token's bytes fully determine the signature check, so a repeat needs
//! only the checks that depend on time and on the current key set, which are redone on every hit.

use std::collections::HashMap;
use std::sync::Mutex;

use mandate_core::verify::VerifiedMandate;
use sha2::{Digest, Sha256};

const MAX_ENTRIES: usize = 10_000;

/// Verified mandates by token hash.
#[derive(Default)]
pub struct VerifiedCache {
    map: Mutex<HashMap<[u8; 32], VerifiedMandate>>,
}

/// The cache key of a token.
pub fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedCache {
    /// A previously verified mandate that has not expired at `now`.
    pub fn get(&self, key: &[u8; 32], now: i64) -> Option<VerifiedMandate> {
        let map = self.map.lock().expect("verified cache lock");
        map.get(key).filter(|v| v.claims().exp > now).cloned()
    }

    /// Remembers a verified mandate.
    pub fn put(&self, key: [u8; 32], v: VerifiedMandate) {
        let mut map = self.map.lock().expect("verified cache lock");
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, v);
    }

    /// Forgets everything (after the key set changed).
    pub fn clear(&self) {
        self.map.lock().expect("verified cache lock").clear();
    }
}

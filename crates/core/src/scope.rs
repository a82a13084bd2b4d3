//! The scope algebra: `resource:action` scopes, `*` suffix wildcards, coverage and narrowing.
//!
//! A held scope ending in `*` covers every scope that starts with what precedes the `*`
//! (`github:*` covers `github:pulls.write` and `github:pulls.*`). A request is granted only when
//! every requested scope is covered by what the delegator holds and by the delegate's ceiling:
//! nothing is ever widened or silently dropped.
//!
//! Scopes of the `mandate:` resource are Mandate's own privileges (`mandate:admin`,
//! `mandate:pdp`, `mandate:audit`). No wildcard covers them, not even `*` or `mandate:*`: each is held only when
//! named exactly, so that a principal whose ceiling is `*` (every user) never gains one by
//! implication. The delegation rules grant them only by role or an explicit ceiling.

use std::fmt;

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {0:?}: write resource:action (e.g. github:pulls.write), printable ASCII without spaces, quotes or backslashes, with at most one '*' and only at the end")]
pub struct ScopeError(pub String);

/// The resource of Mandate's own privileges.
pub const RESERVED_RESOURCE: &str = "mandate";

/// One validated scope such as `github:pulls.write` or `github:*` (or `*`, everything).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    /// Parses one scope token.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let err = || ScopeError(s.to_string());
        // RFC 6749 §3.3 scope-token characters: %x21 / %x23-5B / %x5D-7E.
        let token_chars = s
            .bytes()
            .all(|c| c == 0x21 || (0x23..=0x5B).contains(&c) || (0x5D..=0x7E).contains(&c));
        if s.is_empty() || s.len() > 200 || !token_chars {
            return Err(err());
        }
        let stars = s.bytes().filter(|&c| c == b'*').count();
        if stars > 1 || (stars == 1 && !s.ends_with('*')) {
            return Err(err());
        }
        if s != "*" {
            let (res, _) = s.split_once(':').ok_or_else(err)?;
            if res.is_empty() || res.contains('*') {
                return Err(err());
            }
        }
        Ok(Scope(s.to_string()))
    }

    /// The scope as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The resource part (`github` in `github:pulls.write`); `*` for the universal scope.
    pub fn resource(&self) -> &str {
        self.0.split_once(':').map(|(r, _)| r).unwrap_or(&self.0)
    }

    /// Whether this is in Mandate's own namespace (resource `mandate`, in any case: `Mandate:pdp`
    /// is not an ordinary scope that a verifier comparing without case could take for one).
    pub fn is_reserved(&self) -> bool {
        self.resource().eq_ignore_ascii_case(RESERVED_RESOURCE)
    }

    /// Whether holding `self` covers holding `other`. A reserved scope is covered only by itself.
    pub fn covers(&self, other: &Scope) -> bool {
        if other.is_reserved() {
            return self.0 == other.0;
        }
        match self.0.strip_suffix('*') {
            Some(prefix) => other.0.starts_with(prefix),
            None => self.0 == other.0,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of scopes, sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// Parses an OAuth space-separated scope string (extra whitespace is tolerated).
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let v = s
            .split_ascii_whitespace()
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_scopes(v))
    }

    /// Builds a set from scopes.
    pub fn from_scopes(mut v: Vec<Scope>) -> Self {
        v.sort();
        v.dedup();
        ScopeSet(v)
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether some scope in this set covers `s`.
    pub fn covers(&self, s: &Scope) -> bool {
        self.0.iter().any(|h| h.covers(s))
    }

    /// The scopes of `requested` that this set does not cover (empty means all are covered).
    pub fn uncovered<'a>(&self, requested: &'a ScopeSet) -> Vec<&'a Scope> {
        requested.0.iter().filter(|s| !self.covers(s)).collect()
    }

    /// Whether every scope in `other` is covered by this set.
    pub fn covers_all(&self, other: &ScopeSet) -> bool {
        other.0.iter().all(|s| self.covers(s))
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&s.0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

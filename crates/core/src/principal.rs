//! Principal names: `user:<name>` for humans and `agent:<name>` for agents.
//!
//! A name is parsed once into a `PrincipalName`, so every later function can rely on its shape.

use std::fmt;
use std::str::FromStr;

/// Whether a principal is a human or an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A human, `user:<name>`.
    User,
    /// An AI agent or other workload, `agent:<name>`.
    Agent,
}

impl PrincipalKind {
    /// The prefix used on the wire (`user` or `agent`).
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Agent => "agent",
        }
    }
}

/// A validated principal name such as `agent:planner`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrincipalName {
    // Invariant: `full` is `<kind>:<bare>` and `bare` matches `[a-z0-9][a-z0-9._-]{0,62}`.
    full: String,
    kind_len: usize,
}

/// Why a principal name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid principal name {0:?}: use user:<name> or agent:<name>, where <name> is 1-63 characters of a-z, 0-9, '.', '_' or '-' starting with a letter or digit")]
pub struct PrincipalNameError(pub String);

/// Checks the bare part of a name (`planner` in `agent:planner`).
pub fn valid_bare_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

impl PrincipalName {
    /// Builds a name from a kind and a bare name.
    pub fn new(kind: PrincipalKind, bare: &str) -> Result<Self, PrincipalNameError> {
        if !valid_bare_name(bare) {
            return Err(PrincipalNameError(format!("{}:{bare}", kind.as_str())));
        }
        Ok(PrincipalName {
            full: format!("{}:{bare}", kind.as_str()),
            kind_len: kind.as_str().len(),
        })
    }

    /// Parses a principal as written on the command line: a bare name means an agent.
    pub fn parse_cli(s: &str) -> Result<Self, PrincipalNameError> {
        if s.contains(':') {
            s.parse()
        } else {
            PrincipalName::new(PrincipalKind::Agent, s)
        }
    }

    /// The kind of principal.
    pub fn kind(&self) -> PrincipalKind {
        if self.kind_len == 4 {
            PrincipalKind::User
        } else {
            PrincipalKind::Agent
        }
    }

    /// The bare name, without the kind prefix.
    pub fn bare(&self) -> &str {
        &self.full[self.kind_len + 1..]
    }

    /// The full name, e.g. `agent:planner`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl FromStr for PrincipalName {
    type Err = PrincipalNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PrincipalNameError(s.to_string());
        let (kind, bare) = s.split_once(':').ok_or_else(err)?;
        let kind = match kind {
            "user" => PrincipalKind::User,
            "agent" => PrincipalKind::Agent,
            _ => return Err(err()),
        };
        PrincipalName::new(kind, bare).map_err(|_| err())
    }
}

impl fmt::Display for PrincipalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl serde::Serialize for PrincipalName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for PrincipalName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_user_and_agent_names() {
        let p: PrincipalName = "agent:planner".parse().unwrap();
        assert_eq!(p.kind(), PrincipalKind::Agent);
        assert_eq!(p.bare(), "planner");
        let u: PrincipalName = "user:alice".parse().unwrap();
        assert_eq!(u.kind(), PrincipalKind::User);
        assert_eq!(u.to_string(), "user:alice");
    }

    #[test]
    fn bare_cli_name_means_agent() {
        assert_eq!(
            PrincipalName::parse_cli("coder").unwrap().as_str(),
            "agent:coder"
        );
        assert_eq!(
            PrincipalName::parse_cli("user:bob").unwrap().as_str(),
            "user:bob"
        );
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "",
            "agent:",
            "agent:Planner",
            "robot:x",
            "agent:-x",
            "agent:a b",
            "user:é",
            "agent:a/b",
            "planner",
        ] {
            assert!(bad.parse::<PrincipalName>().is_err(), "{bad} accepted");
        }
        let long = format!("agent:{}", "a".repeat(64));
        assert!(long.parse::<PrincipalName>().is_err());
        let ok = format!("agent:{}", "a".repeat(63));
        assert!(ok.parse::<PrincipalName>().is_ok());
    }
}

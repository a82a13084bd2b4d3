//! The claims of a mandate (an RFC 9068 access token with RFC 8693 delegation members).

use serde::{Deserialize, Serialize};

/// The media type in every mandate's JOSE header (RFC 9068 §2.1).
pub const MANDATE_TYP: &str = "at+jwt";

/// Hard bound on the `act` nesting and on `mandate.parents`, whatever a ceiling says.
pub const MAX_CHAIN_DEPTH: u32 = 16;

/// A fresh `jti` for a mandate: 128 bits from `rng`, base64url without padding. The caller
/// supplies the cryptographically secure source (`core` draws no randomness of its own), so the
/// authority and every gateway mint identifiers of one form.
pub fn new_jti<R: rand_core::CryptoRngCore + ?Sized>(rng: &mut R) -> String {
    use base64::Engine;
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3). Serialised as a string when single.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Builds the claim from a list, as a plain string when there is exactly one.
    pub fn from_vec(mut v: Vec<String>) -> Self {
        if v.len() == 1 {
            Audience::One(v.remove(0))
        } else {
            Audience::Many(v)
        }
    }

    /// The audiences as a slice.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Audience::One(s) => std::slice::from_ref(s),
            Audience::Many(v) => v,
        }
    }

    /// Whether `aud` is one of the audiences.
    pub fn contains(&self, aud: &str) -> bool {
        self.as_slice().iter().any(|a| a == aud)
    }
}

/// RFC 8693 §4.1 actor claim: the current actor outermost, earlier actors nested inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Act {
    /// The actor.
    pub sub: String,
    /// The actor before this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Act>>,
}

impl Act {
    /// Number of actors in this nesting.
    pub fn len(&self) -> usize {
        let mut n = 1;
        let mut cur = self;
        while let Some(next) = &cur.act {
            n += 1;
            cur = next;
        }
        n
    }

    /// Always false: an `Act` names at least one actor.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Actors from the earliest to the current one.
    pub fn earliest_first(&self) -> Vec<&str> {
        let mut v = vec![self.sub.as_str()];
        let mut cur = self;
        while let Some(next) = &cur.act {
            v.push(next.sub.as_str());
            cur = next;
        }
        v.reverse();
        v
    }
}

/// RFC 8693 §4.4 `may_act`: who may later act for the subject by pulling an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MayAct {
    /// The principal allowed to act.
    pub sub: String,
}

/// RFC 7800 / RFC 9449 confirmation: the DPoP key this mandate is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cnf {
    /// RFC 7638 thumbprint of the holder's key.
    pub jkt: String,
}

/// Mandate's own claim: where this mandate stands in its delegation chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MandateInfo {
    /// Hops from the root: 0 for a mandate a principal got for itself.
    pub depth: u32,
    /// The `jti`s of every ancestor, root first, so revocation of any of them can be enforced.
    pub parents: Vec<String>,
    /// The deepest `depth` any descendant may reach (narrows at every hop).
    pub max_depth: u32,
    /// Minted by a gateway for one forwarded call under the mandate last in `parents`: the same
    /// chain (same `act`, same depth), with that mandate's `jti` added to `parents` so that
    /// revoking it revokes this one too. Absent (false) on every other mandate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
}

/// Every claim of a mandate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MandateClaims {
    /// Issuer URL.
    pub iss: String,
    /// The principal on whose behalf: the root of the chain.
    pub sub: String,
    /// Where this mandate may be presented.
    pub aud: Audience,
    /// Space-separated scopes.
    pub scope: String,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// Unique id; the only way a mandate is ever logged.
    pub jti: String,
    /// The principal that holds and presents this mandate.
    pub client_id: String,
    /// The chain of actors, current outermost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Act>,
    /// Who may pull an exchange of this mandate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<MayAct>,
    /// DPoP binding; absent for bearer mandates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Cnf>,
    /// Position in the delegation chain.
    pub mandate: MandateInfo,
    /// RFC 9396 authorization details: the one action a human approved through CIBA
    /// (`[{"type": "tool_call", "server", "tool", "arguments", "approval_id"}]`). Never
    /// delegated or forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Vec<serde_json::Value>>,
}

impl MandateClaims {
    /// The whole chain as principals, root first: `sub`, then every actor.
    pub fn chain(&self) -> Vec<&str> {
        let mut v = vec![self.sub.as_str()];
        if let Some(act) = &self.act {
            v.extend(act.earliest_first());
        }
        v
    }

    /// [`MandateClaims::chain`] ending with the holder (`client_id`) when it is not already the
    /// last: the chain an action taken with this mandate runs under, as policies and the audit
    /// log see it.
    pub fn chain_to_holder(&self) -> Vec<String> {
        let mut v: Vec<String> = self.chain().into_iter().map(String::from).collect();
        if v.last() != Some(&self.client_id) {
            v.push(self.client_id.clone());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_jti_is_128_random_bits_in_base64url() {
        let mut rng = rand::rngs::OsRng;
        let (a, b) = (new_jti(&mut rng), new_jti(&mut rng));
        assert_ne!(a, b);
        for j in [&a, &b] {
            assert_eq!(j.len(), 22, "{j}");
            assert!(
                j.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
                "{j}"
            );
        }
    }
}

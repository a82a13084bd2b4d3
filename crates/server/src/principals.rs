//! Reading stored principals into the core's types: ceilings, active keys, and the JSON view.

use mandate_core::delegation::Ceiling;
use mandate_core::{PrincipalName, PublicKey, ScopeSet};
use mandate_store::Principal;

/// A stored principal read into validated types. Corrupt rows fail closed.
pub struct Loaded {
    /// The stored row.
    pub row: Principal,
    /// Its name.
    pub name: PrincipalName,
    /// Its ceiling.
    pub ceiling: Ceiling,
    /// Keys that are not disabled, oldest first.
    pub keys: Vec<PublicKey>,
    /// The `x` (base64url) of each key in `keys`, in the same order.
    pub key_xs: Vec<String>,
}

impl Loaded {
    /// Validates a stored row.
    pub fn new(row: Principal) -> Result<Self, String> {
        let name: PrincipalName = row.name.parse().map_err(|e| format!("{e}"))?;
        let scopes = ScopeSet::parse(&row.ceiling_scopes).map_err(|e| e.to_string())?;
        let keys = row
            .keys
            .iter()
            .filter(|k| k.disabled_at.is_none())
            .map(|k| PublicKey::parse(&k.public_key).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let ceiling = Ceiling {
            scopes,
            audiences: row
                .ceiling_audiences
                .split_ascii_whitespace()
                .map(String::from)
                .collect(),
            max_ttl: row.max_ttl_secs,
            max_depth: u32::try_from(row.max_depth).map_err(|_| "bad max_depth".to_string())?,
        };
        let key_xs = keys.iter().map(PublicKey::x).collect();
        Ok(Loaded {
            row,
            name,
            ceiling,
            keys,
            key_xs,
        })
    }

    /// Whether the principal has the admin role.
    pub fn is_admin(&self) -> bool {
        self.row.role.as_deref() == Some("admin")
    }

    /// The key new mandates are bound to: the newest active one.
    pub fn primary_key(&self) -> Option<&PublicKey> {
        self.keys.last()
    }
}

/// The admin API's JSON view of a principal.
pub fn to_json(p: &Principal) -> serde_json::Value {
    let keys: Vec<_> = p
        .keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "kid": k.kid, "x": k.public_key, "created_at": k.created_at,
                "disabled_at": k.disabled_at,
            })
        })
        .collect();
    let kid = p
        .keys
        .iter()
        .rev()
        .find(|k| k.disabled_at.is_none())
        .map(|k| k.kid.clone());
    serde_json::json!({
        "name": p.name, "kind": p.kind, "role": p.role, "disabled": p.disabled,
        "allow_bearer": p.allow_bearer, "scopes": p.ceiling_scopes,
        "audiences": p.ceiling_audiences, "max_ttl": p.max_ttl_secs, "max_depth": p.max_depth,
        "kid": kid, "keys": keys, "created_at": p.created_at, "updated_at": p.updated_at,
    })
}

/// How long a principal read from the database is trusted on the token path. Changes made through
/// this node invalidate at once; changes made through another node sharing the database are seen
/// within this bound.
pub const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
const CACHE_MAX: usize = 10_000;

type Entry = (std::time::Instant, Option<std::sync::Arc<Loaded>>);

/// A short-lived cache of principals for the token endpoint's hot path.
#[derive(Default)]
pub struct PrincipalCache {
    map: std::sync::Mutex<std::collections::HashMap<String, Entry>>,
}

impl PrincipalCache {
    /// A cached lookup, fresh within [`CACHE_TTL`]; `None` inside means "known not to exist".
    pub fn get(&self, name: &str) -> Option<Option<std::sync::Arc<Loaded>>> {
        let map = self.map.lock().expect("principal cache lock");
        map.get(name)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, p)| p.clone())
    }

    /// Remembers a lookup.
    pub fn put(&self, name: &str, p: Option<std::sync::Arc<Loaded>>) {
        let mut map = self.map.lock().expect("principal cache lock");
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(name.to_string(), (std::time::Instant::now(), p));
    }

    /// Forgets a principal after a change made through this node.
    pub fn invalidate(&self, name: &str) {
        self.map.lock().expect("principal cache lock").remove(name);
    }
}

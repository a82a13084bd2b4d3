//! A principal's own mandate, kept and renewed: obtained by `client_credentials` with
//! `private_key_jwt` and a DPoP proof (so it is bound to the principal's key), renewed when a
//! fifth of its lifetime is left, or at once when asked (after a `401`: revoked or expired
//! early). `mandate connect` holds one for its upstream; `mandate gateway` holds its
//! `mandate:audit` mandate for the authority with it. The token is never logged (its jti is).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::Mutex;

use crate::client::{Api, Identity};

struct Held {
    token: String,
    renew_at: Instant,
}

/// One principal's mandate for one audience and scope.
pub struct HeldMandate {
    api: Mutex<Api>,
    /// Whose mandate it is (the key that signs its DPoP proofs).
    pub id: Identity,
    /// The scopes asked for.
    pub scope: String,
    /// The audience asked for.
    pub audience: String,
    ttl: Option<String>,
    held: Mutex<Option<Held>>,
}

impl HeldMandate {
    /// Holds `id`'s mandate for `audience` with `scope` (lifetime `ttl`, default the server's),
    /// obtained through `api` on first use.
    pub fn new(api: Api, id: Identity, scope: &str, audience: &str, ttl: Option<String>) -> Self {
        HeldMandate {
            api: Mutex::new(api),
            id,
            scope: scope.to_string(),
            audience: audience.to_string(),
            ttl,
            held: Mutex::new(None),
        }
    }

    /// The mandate to use now: renewed when a fifth of its lifetime is left (or when `renew`).
    pub async fn get(&self, renew: bool) -> Result<String> {
        let mut held = self.held.lock().await;
        if let Some(h) = held.as_ref() {
            if !renew && Instant::now() < h.renew_at {
                return Ok(h.token.clone());
            }
        }
        let mut params = vec![
            ("grant_type", "client_credentials".to_string()),
            ("scope", self.scope.clone()),
            ("audience", self.audience.clone()),
        ];
        if let Some(t) = &self.ttl {
            let secs = mandate_core::duration::parse_duration(t).context("--ttl")?;
            params.push(("ttl", secs.to_string()));
        }
        let t = self.api.lock().await.token(&self.id, &params, true).await?;
        let lifetime = t.expires_in.max(1) as u64;
        let renew_in = Duration::from_secs(lifetime - lifetime / 5);
        tracing::info!(principal = %self.id.name, audience = %self.audience, expires_in = t.expires_in, "mandate obtained");
        *held = Some(Held {
            token: t.access_token.clone(),
            renew_at: Instant::now() + renew_in,
        });
        Ok(t.access_token)
    }
}

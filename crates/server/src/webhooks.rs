//! Approval notifications by webhook, following the Standard Webhooks convention: a JSON POST
//! (`{"type", "timestamp", "data"}`) with `webhook-id` (the same on every retry of one
//! message), `webhook-timestamp` (unix seconds of the attempt) and `webhook-signature`
//! (`v1,` + base64 HMAC-SHA256 over `id.timestamp.body` with the secret, `whsec_` + base64).
//!
//! Delivery is best effort and never blocks a vote or a held call: messages are queued (bounded),
//! each target is tried at once and then after 1 s, 5 s, 30 s, 2 min and 10 min until it answers
//! 2xx; a full queue drops the message with an error in the log (the request itself is stored;
//! `mandate approvals list` still shows it). Redirects are not followed; each attempt has 10 s.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use mandate_gateway::config::SecretSource;
use serde_json::{json, Value};
use sha2::Sha256;

/// Messages waiting to be delivered (over it, new ones are dropped and logged).
pub const QUEUE: usize = 1000;
/// Deliveries in flight at once, retries included.
pub const IN_FLIGHT: usize = 64;
/// Waits between attempts.
pub const RETRIES: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];

/// One webhook target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to POST.
    pub url: url::Url,
    /// The signing secret (`whsec_...`), read at each delivery so a rotated file takes effect.
    pub secret: SecretSource,
}

impl Target {
    /// A target from `server.toml` values: an http(s) URL and `@FILE` / `env:NAME` holding a
    /// `whsec_` secret (checked now, so a mistake stops the start with its reason).
    pub fn parse(url: &str, secret: &str) -> Result<Target, String> {
        let u = url::Url::parse(url).map_err(|e| format!("webhook url {url:?}: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
            return Err(format!(
                "webhook url {url:?} must be an http(s) URL with a host"
            ));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(format!(
                "webhook url for {} carries credentials; sign with the secret instead",
                u.host_str().unwrap_or("")
            ));
        }
        let secret = SecretSource::parse(secret).map_err(|e| format!("webhook secret: {e}"))?;
        let value = secret.read().map_err(|e| format!("webhook secret: {e}"))?;
        key_of(&value)?;
        Ok(Target { url: u, secret })
    }
}

/// The key bytes of a Standard Webhooks secret (`whsec_` + base64).
pub fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.trim().strip_prefix("whsec_").ok_or_else(|| {
        "a webhook secret is `whsec_` followed by base64 (make one with: echo whsec_$(openssl rand -base64 32))".to_string()
    })?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the webhook secret after whsec_ is not base64".to_string())?;
    if key.len() < 24 {
        return Err("the webhook secret is shorter than 24 bytes: make a longer one".into());
    }
    Ok(key)
}

/// `v1,` + base64 HMAC-SHA256 of `id.timestamp.body` (Standard Webhooks).
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

struct Message {
    id: String,
    body: String,
}

/// The sender: a bounded queue and a task that delivers.
pub struct Webhooks {
    tx: tokio::sync::mpsc::Sender<Arc<Message>>,
}

impl Webhooks {
    /// Starts delivering to `targets` (none: nothing is sent).
    pub fn start(targets: Vec<Target>) -> Webhooks {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Arc<Message>>(QUEUE);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("the HTTP client builds");
        let targets = Arc::new(targets);
        let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                for t in targets.iter() {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    let (http, t, m) = (http.clone(), t.clone(), m.clone());
                    tokio::spawn(async move {
                        deliver(&http, &t, &m).await;
                        drop(permit);
                    });
                }
            }
        });
        Webhooks { tx }
    }

    /// Queues one message of `kind` (`approval.requested`, ...) about `data`; never waits.
    pub fn send(&self, kind: &str, data: Value) {
        let id = format!(
            "msg_{}",
            mandate_core::claims::new_jti(&mut rand::rngs::OsRng)
        );
        let body = json!({
            "type": kind,
            "timestamp": mandate_audit::event::rfc3339_millis(crate::audit::now_ms()),
            "data": data,
        })
        .to_string();
        if self
            .tx
            .try_send(Arc::new(Message {
                id: id.clone(),
                body,
            }))
            .is_err()
        {
            tracing::error!(webhook = %id, kind, "webhook queue full: message dropped (the request is stored; see `mandate approvals list`)");
        }
    }
}

async fn deliver(http: &reqwest::Client, t: &Target, m: &Message) {
    let host = t.url.host_str().unwrap_or("").to_string();
    for (attempt, wait) in std::iter::once(Duration::ZERO).chain(RETRIES).enumerate() {
        tokio::time::sleep(wait).await;
        let key = match t
            .secret
            .read()
            .map_err(|e| e.to_string())
            .and_then(|s| key_of(&s))
        {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(webhook = %m.id, host, error = %e, "webhook secret unreadable: not sent");
                continue;
            }
        };
        let ts = crate::state::now();
        let r = http
            .post(t.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &m.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature(&key, &m.id, ts, &m.body))
            .body(m.body.clone())
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => {
                tracing::debug!(webhook = %m.id, host, attempt, "webhook delivered");
                return;
            }
            Ok(resp) => {
                tracing::warn!(webhook = %m.id, host, attempt, status = resp.status().as_u16(), "webhook refused; will retry")
            }
            Err(e) => {
                tracing::warn!(webhook = %m.id, host, attempt, error = %mandate_core::causes::with_causes(&e), "webhook not delivered; will retry")
            }
        }
    }
    tracing::error!(webhook = %m.id, host, "webhook given up after every retry");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_reference_example() {
        // The example of the Standard Webhooks specification (and its reference libraries).
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_and_urls_are_checked_with_a_reason() {
        assert!(key_of("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_err()
            .contains("whsec_"));
        assert!(key_of("whsec_!!!").unwrap_err().contains("base64"));
        assert!(key_of("whsec_c2hvcnQ=").unwrap_err().contains("shorter"));
        std::env::set_var(
            "WEBHOOK_TEST_WHSEC",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let e = Target::parse("ftp://x/", "env:WEBHOOK_TEST_WHSEC").unwrap_err();
        assert!(e.contains("http(s)"), "{e}");
        let e = Target::parse("https://u:p@x/", "env:WEBHOOK_TEST_WHSEC").unwrap_err();
        assert!(e.contains("credentials"), "{e}");
        let e = Target::parse("https://x/", "whsec_inline").unwrap_err();
        assert!(e.contains("never inline"), "{e}");
    }
}

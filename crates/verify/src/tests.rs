//! Unit tests of the [`Verifier`]'s state rules that need no network: staleness refuses
//! everything, a fresh view accepts, and feed entries take effect on the next request.

use std::time::{Duration, Instant};

use mandate_core::claims::{Audience, MandateClaims, MandateInfo};
use mandate_core::jws;
use mandate_core::keys::SecretKey;
use mandate_core::revocation::{RevocationEntry, RevokedKind};

use super::*;

const ISSUER: &str = "http://127.0.0.1:9";
const AUD: &str = "https://api.example";

fn issuer_key() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

/// A bearer mandate valid now, signed by the issuer key.
fn bearer_token() -> String {
    let now = unix_now();
    let c = MandateClaims {
        iss: ISSUER.into(),
        sub: "agent:fetcher".into(),
        aud: Audience::One(AUD.into()),
        scope: "x:read".into(),
        iat: now,
        nbf: now,
        exp: now + 300,
        jti: "j1".into(),
        client_id: "agent:fetcher".into(),
        act: None,
        may_act: None,
        cnf: None,
        authorization_details: None,
        mandate: MandateInfo {
            depth: 0,
            parents: vec![],
            max_depth: 0,
            forwarded: false,
        },
    };
    let k = issuer_key();
    jws::sign(
        &jws::header("at+jwt", Some(k.public().thumbprint()), None),
        &c,
        &k,
    )
}

/// A verifier that knows the issuer key, without having fetched anything. Its HTTP client
/// points at the discard port, so any accidental network use fails instead of hanging.
fn verifier(max_staleness: Duration) -> Verifier {
    let v = Verifier::new(
        Config {
            issuer: ISSUER.into(),
            audience: AUD.into(),
            max_staleness,
            skew: 30,
        },
        reqwest::Client::builder().no_proxy().build().unwrap(),
    );
    let k = issuer_key().public();
    write(&v.inner.keys).insert(k.thumbprint(), k);
    v
}

fn set_last_sync(v: &Verifier, ago: Duration) {
    *lock(&v.inner.last_sync) = Some(Instant::now() - ago);
}

#[test]
fn staleness_rule_never_synced_is_stale_and_the_limit_itself_is_still_fresh() {
    let now = Instant::now();
    let max = Duration::from_secs(3);
    assert!(is_stale(None, now, max));
    assert!(!is_stale(Some(now), now, max));
    assert!(!is_stale(Some(now - max), now, max));
    assert!(is_stale(
        Some(now - max - Duration::from_millis(1)),
        now,
        max
    ));
    // A sync timestamp from "the future" (clock oddities between threads) is fresh, not a panic.
    assert!(!is_stale(Some(now + Duration::from_secs(1)), now, max));
}

#[tokio::test]
async fn a_verifier_that_never_heard_from_the_feed_refuses_everything() {
    let v = verifier(Duration::from_secs(60));
    let auth = format!("Bearer {}", bearer_token());
    let p = Presentation {
        authorization: &auth,
        dpop: None,
        method: "GET",
        url: "https://api.example/x",
    };
    let r = v.verify(&p).await.unwrap_err();
    assert_eq!(r.code, "revocations_stale");
    assert!(r.message.contains("no revocation list"), "{r}");
}

#[tokio::test]
async fn a_fresh_view_accepts_and_an_old_one_refuses_even_valid_mandates() {
    let v = verifier(Duration::from_secs(3));
    let auth = format!("Bearer {}", bearer_token());
    let p = Presentation {
        authorization: &auth,
        dpop: None,
        method: "GET",
        url: "https://api.example/x",
    };
    v.inner.apply_feed(&[]);
    assert_eq!(v.verify(&p).await.unwrap().mandate.claims().jti, "j1");
    set_last_sync(&v, Duration::from_secs(2));
    assert!(v.verify(&p).await.is_ok(), "2 s old is within 3 s");
    set_last_sync(&v, Duration::from_secs(4));
    let r = v.verify(&p).await.unwrap_err();
    assert_eq!(r.code, "revocations_stale");
    assert!(r.message.contains("last confirmed"), "{r}");
    // Any successful answer, even an empty one, makes the view fresh again.
    v.inner.apply_feed(&[]);
    assert!(v.verify(&p).await.is_ok());
}

#[tokio::test]
async fn feed_entries_take_effect_on_the_next_request_and_move_the_cursor() {
    let v = verifier(Duration::from_secs(60));
    let auth = format!("Bearer {}", bearer_token());
    let p = Presentation {
        authorization: &auth,
        dpop: None,
        method: "GET",
        url: "https://api.example/x",
    };
    v.inner.apply_feed(&[]);
    assert!(v.verify(&p).await.is_ok());
    assert_eq!(v.revocation_cursor(), 0);
    v.inner.apply_feed(&[RevocationEntry {
        seq: 42,
        kind: RevokedKind::Jti,
        value: "j1".into(),
        revoked_at: unix_now(),
    }]);
    assert_eq!(v.verify(&p).await.unwrap_err().code, "revoked");
    assert_eq!(v.revocation_cursor(), 42);
    // Clones share the view.
    assert_eq!(v.clone().verify(&p).await.unwrap_err().code, "revoked");
}

#[tokio::test]
async fn an_unknown_kid_refresh_is_attempted_once_then_rate_limited() {
    // The issuer is unreachable here: the refresh fails, the answer stays unknown_kid, and the
    // attempt is remembered so the next unknown kid within the interval does not fetch again.
    let v = verifier(Duration::from_secs(60));
    v.inner.apply_feed(&[]);
    write(&v.inner.keys).clear();
    let auth = format!("Bearer {}", bearer_token());
    let p = Presentation {
        authorization: &auth,
        dpop: None,
        method: "GET",
        url: "https://api.example/x",
    };
    assert!(v.inner.last_refresh.lock().await.is_none());
    assert_eq!(v.verify(&p).await.unwrap_err().code, "unknown_kid");
    let first = v
        .inner
        .last_refresh
        .lock()
        .await
        .expect("a refresh was attempted");
    assert_eq!(v.verify(&p).await.unwrap_err().code, "unknown_kid");
    assert_eq!(*v.inner.last_refresh.lock().await, Some(first));
}

#[tokio::test]
async fn verify_for_checks_the_audience_named_and_still_valid_follows_revocation_and_freshness() {
    let v = verifier(Duration::from_secs(3));
    v.inner.apply_feed(&[]);
    let auth = format!("Bearer {}", bearer_token());
    let p = Presentation {
        authorization: &auth,
        dpop: None,
        method: "GET",
        url: "https://api.example/x",
    };
    let claims = v
        .verify_for(&p, AUD)
        .await
        .unwrap()
        .mandate
        .claims()
        .clone();
    assert_eq!(
        v.verify_for(&p, "mcp:other").await.unwrap_err().code,
        "wrong_aud"
    );
    assert!(v.still_valid(&claims, unix_now()));
    assert!(!v.still_valid(&claims, claims.exp), "expired");
    v.inner.apply_feed(&[RevocationEntry {
        seq: 1,
        kind: RevokedKind::Principal,
        value: "agent:fetcher".into(),
        revoked_at: unix_now(),
    }]);
    assert!(
        !v.still_valid(&claims, unix_now()),
        "its holder was revoked"
    );
    let fresh = verifier(Duration::from_secs(3));
    set_last_sync(&fresh, Duration::from_secs(4));
    assert!(
        !fresh.still_valid(&claims, unix_now()),
        "a stale view says no"
    );
}

//! The I/O half against a fake authority (a few lines of HTTP/1.1 on a local port): metadata and
//! JWKS discovery, the unknown-kid refresh and its rate limit, the revocation follower, failing
//! closed when the feed goes quiet, and recovering when it comes back.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use mandate_core::claims::MandateClaims;
use mandate_core::keys::SecretKey;
use mandate_verify::{Config, Presentation, Refusal, Verifier, VerifierError};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    issuer: String,
    /// When set, the metadata claims to be this issuer instead.
    metadata_issuer: Option<String>,
    keys: Vec<Value>,
    entries: Vec<Value>,
    down: bool,
    jwks_hits: usize,
}

type Shared = Arc<Mutex<State>>;

async fn fake_authority(keys: &[&SecretKey]) -> (String, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(State {
        issuer: issuer.clone(),
        keys: keys.iter().map(|k| jwk(k)).collect(),
        ..State::default()
    }));
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            tokio::spawn(handle(sock, st.clone()));
        }
    });
    (issuer, state)
}

fn jwk(k: &SecretKey) -> Value {
    let mut v = k.public().to_jwk();
    v["kid"] = kid(k).into();
    v["alg"] = "EdDSA".into();
    v["use"] = "sig".into();
    v
}

async fn handle(mut sock: TcpStream, st: Shared) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (status, body) = route(path, query, &st).await;
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
}

fn param(query: &str, name: &str) -> i64 {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn route(path: &str, query: &str, st: &Shared) -> (&'static str, String) {
    let unavailable = ("503 Service Unavailable", "{}".to_string());
    if st.lock().unwrap().down {
        return unavailable;
    }
    match path {
        "/.well-known/oauth-authorization-server" => {
            let s = st.lock().unwrap();
            let iss = s.metadata_issuer.clone().unwrap_or(s.issuer.clone());
            let body = json!({"issuer": iss, "jwks_uri": format!("{}/jwks", s.issuer)});
            ("200 OK", body.to_string())
        }
        "/jwks" => {
            let mut s = st.lock().unwrap();
            s.jwks_hits += 1;
            ("200 OK", json!({"keys": s.keys}).to_string())
        }
        "/revocations/v1" => {
            let since = param(query, "since");
            let deadline = Instant::now() + Duration::from_secs(param(query, "wait") as u64);
            loop {
                {
                    let s = st.lock().unwrap();
                    if s.down {
                        return unavailable;
                    }
                    let new: Vec<&Value> = s
                        .entries
                        .iter()
                        .filter(|e| e["seq"].as_i64().unwrap() > since)
                        .collect();
                    if !new.is_empty() || Instant::now() >= deadline {
                        let cursor = new.last().map_or(since, |e| e["seq"].as_i64().unwrap());
                        return (
                            "200 OK",
                            json!({"cursor": cursor, "entries": new}).to_string(),
                        );
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        _ => ("404 Not Found", "{}".to_string()),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A mandate from `issuer`, valid now, signed by `key`.
fn token_from(issuer: &str, key: &SecretKey, f: impl FnOnce(&mut MandateClaims)) -> String {
    let now = unix_now();
    let mut c = MandateClaims {
        iss: issuer.into(),
        iat: now,
        nbf: now,
        exp: now + 300,
        ..chain_claims()
    };
    f(&mut c);
    signed_by(&c, key, Some(kid(key)))
}

fn verifier(issuer: &str, max_staleness: Duration) -> Verifier {
    let cfg = Config {
        issuer: issuer.into(),
        audience: AUD.into(),
        max_staleness,
        skew: SKEW,
    };
    Verifier::new(cfg, reqwest::Client::builder().no_proxy().build().unwrap())
}

/// Presents `token` with a fresh holder proof (a DPoP-bound mandate) or as a bearer token.
async fn present(v: &Verifier, token: &str, jti: &str) -> Result<String, Refusal> {
    let bound = !token_claims(token)["cnf"].is_null();
    let auth = format!("{} {token}", if bound { "DPoP" } else { "Bearer" });
    let p =
        mandate_core::dpop::make_proof(&holder_key(), METHOD, URL, unix_now(), jti, Some(token));
    let pres = Presentation {
        authorization: &auth,
        dpop: bound.then_some(p.as_str()),
        method: METHOD,
        url: URL,
    };
    v.verify(&pres)
        .await
        .map(|m| m.mandate.claims().jti.clone())
}

fn token_claims(token: &str) -> Value {
    let j = mandate_core::jws::Jws::decode(token).unwrap();
    j.unverified_claims().unwrap()
}

async fn wait_until(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn the_follower_applies_revocations_fails_closed_when_the_feed_stops_and_recovers() {
    let (issuer, st) = fake_authority(&[&issuer_key()]).await;
    let v = verifier(&issuer, Duration::from_secs(2));
    v.refresh_jwks().await.unwrap();
    let doomed = token_from(&issuer, &issuer_key(), |c| c.jti = "doomed".into());
    let survivor = token_from(&issuer, &issuer_key(), |c| c.jti = "survivor".into());
    assert_eq!(
        present(&v, &survivor, "p0").await.unwrap_err().code,
        "revocations_stale"
    );
    let follower = v.spawn_follower();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("p{n}")
    };
    wait_until(
        "the first feed answer",
        Duration::from_secs(5),
        async || present(&v, &survivor, &next()).await.is_ok(),
    )
    .await;
    assert_eq!(present(&v, &doomed, &next()).await.unwrap(), "doomed");

    // A revocation appears in the feed: the long poll delivers it at once.
    st.lock()
        .unwrap()
        .entries
        .push(json!({"seq": 5, "kind": "jti", "value": "doomed", "revoked_at": unix_now()}));
    let took = wait_until(
        "the revocation taking effect",
        Duration::from_secs(1),
        async || {
            present(&v, &doomed, &next())
                .await
                .is_err_and(|r| r.code == "revoked")
        },
    )
    .await;
    eprintln!("revocation applied after {took:?}");
    assert_eq!(v.revocation_cursor(), 5);
    assert!(present(&v, &survivor, &next()).await.is_ok());

    // The authority stops answering: the last view serves until it is 2 s old, then nothing.
    st.lock().unwrap().down = true;
    let stopped = Instant::now();
    assert!(present(&v, &survivor, &next()).await.is_ok());
    assert_eq!(
        present(&v, &doomed, &next()).await.unwrap_err().code,
        "revoked"
    );
    wait_until("failing closed", Duration::from_secs(5), async || {
        present(&v, &survivor, &next())
            .await
            .is_err_and(|r| r.code == "revocations_stale")
    })
    .await;
    let after = stopped.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "refused after {after:?}: the view was fresh"
    );

    // It comes back: the follower's backoff (at most 2 s) finds it again.
    st.lock().unwrap().down = false;
    wait_until("recovering", Duration::from_secs(5), async || {
        present(&v, &survivor, &next()).await.is_ok()
    })
    .await;
    assert_eq!(
        present(&v, &doomed, &next()).await.unwrap_err().code,
        "revoked"
    );

    // Dropping every verifier ends the follower.
    drop(v);
    tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("follower ended")
        .unwrap();
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_jwks_at_most_once_per_five_seconds() {
    let (issuer, st) = fake_authority(&[&issuer_key()]).await;
    let v = verifier(&issuer, Duration::from_secs(60));
    let _follower = v.spawn_follower();
    let first = token_from(&issuer, &issuer_key(), |_| {});
    // No keys yet: the first unknown kid fetches them, and the retry passes.
    wait_until(
        "the first feed answer",
        Duration::from_secs(5),
        async || present(&v, &first, "p-first").await.is_ok(),
    )
    .await;
    assert_eq!(st.lock().unwrap().jwks_hits, 1);
    assert!(present(&v, &first, "p-again").await.is_ok());

    // The issuer rotates in a new key; the refresh that would find it is rate-limited for now.
    let rotated = other_key();
    st.lock().unwrap().keys.push(jwk(&rotated));
    let new = token_from(&issuer, &rotated, |_| {});
    let refused_at = Instant::now();
    assert_eq!(
        present(&v, &new, "p1").await.unwrap_err().code,
        "unknown_kid"
    );
    for (i, bogus) in ["../../etc/passwd", "x", "' OR 1=1 --"].iter().enumerate() {
        let header = mandate_core::jws::header("at+jwt", Some(bogus.to_string()), None);
        let claims = token_claims(&first);
        let forged = mandate_core::jws::sign(&header, &claims, &issuer_key());
        let code = present(&v, &forged, &format!("b{i}"))
            .await
            .unwrap_err()
            .code;
        assert_eq!(code, "unknown_kid");
    }
    assert_eq!(
        st.lock().unwrap().jwks_hits,
        1,
        "unknown kids must not each fetch the JWKS"
    );

    // Five seconds later the next unknown kid refreshes once more, and the new key verifies.
    tokio::time::sleep(
        Duration::from_secs(5).saturating_sub(refused_at.elapsed()) + Duration::from_millis(50),
    )
    .await;
    assert_eq!(present(&v, &new, "p2").await.unwrap(), "j-coder");
    assert_eq!(st.lock().unwrap().jwks_hits, 2);
}

#[tokio::test]
async fn metadata_naming_another_issuer_is_refused_and_the_keys_stay_unchanged() {
    let (issuer, st) = fake_authority(&[&issuer_key()]).await;
    st.lock().unwrap().metadata_issuer = Some("https://evil.example".into());
    let v = verifier(&issuer, Duration::from_secs(60));
    let err = v.refresh_jwks().await.unwrap_err();
    assert!(matches!(err, VerifierError::IssuerMismatch { .. }), "{err}");
    assert_eq!(
        st.lock().unwrap().jwks_hits,
        0,
        "the JWKS of an impostor is never read"
    );
}

#[tokio::test]
async fn metadata_is_accepted_only_for_the_issuer_asked_trailing_slashes_aside() {
    let (issuer, st) = fake_authority(&[&issuer_key()]).await;
    let port = issuer.rsplit(':').next().unwrap().to_string();
    // (the configured issuer, the issuer the metadata names, accepted)
    let rows = [
        (format!("{issuer}/"), issuer.clone(), true),
        (issuer.clone(), format!("{issuer}/"), true),
        (issuer.clone(), issuer.clone(), true),
        // The same server under another name is another issuer.
        (issuer.clone(), format!("http://localhost:{port}"), false),
        (issuer.clone(), issuer.replace("http:", "https:"), false),
        (issuer.clone(), format!("{issuer}/tenant"), false),
    ];
    for (configured, answered, ok) in rows {
        st.lock().unwrap().metadata_issuer = Some(answered.clone());
        let hits = st.lock().unwrap().jwks_hits;
        let got = verifier(&configured, Duration::from_secs(60))
            .refresh_jwks()
            .await;
        assert_eq!(got.is_ok(), ok, "{configured} / {answered}: {got:?}");
        if !ok {
            assert!(
                matches!(got, Err(VerifierError::IssuerMismatch { .. })),
                "{got:?}"
            );
        }
        assert_eq!(
            st.lock().unwrap().jwks_hits - hits,
            usize::from(ok),
            "the JWKS is read only for the issuer asked"
        );
    }
}

#[tokio::test]
async fn an_unreachable_authority_is_an_error_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let v = verifier(&issuer, Duration::from_secs(60));
    let err = tokio::time::timeout(Duration::from_secs(10), v.refresh_jwks())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, VerifierError::Http { .. }), "{err}");
}

/// Slow authority: a server that accepts the connection and then never answers (or trickles a
/// byte at a time) costs the verifier at most its fetch deadline, never a hung refresh.
#[tokio::test]
async fn an_authority_that_accepts_and_never_answers_is_an_error_within_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            // Headers of an answer that never finishes, one byte a second.
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                for b in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{".iter() {
                    if sock.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    let v = verifier(&issuer, Duration::from_secs(60));
    let start = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(20), v.refresh_jwks())
        .await
        .expect("the refresh must end by its own deadline")
        .unwrap_err();
    assert!(matches!(err, VerifierError::Http { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
}

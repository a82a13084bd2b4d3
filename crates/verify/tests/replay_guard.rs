//! The single use of DPoP proofs goes through a [`ReplayGuard`]: the checks hand over the proof
//! they verified (key thumbprint, jti, iat), nothing is spent before every other check passed, and
//! a guard that fails refuses (fail closed) with a code that says "retry", not "forged".

mod common;

use std::sync::Mutex;

use common::*;
use mandate_core::revocation::RevocationSet;
use mandate_verify::{
    check_unspent, BoxFuture, CheckedProof, MemoryReplay, Presentation, Refusal, RefusalCode,
    ReplayGuard,
};

/// Records what it was asked; answers with `fail` when set.
#[derive(Default)]
struct Recording {
    seen: Mutex<Vec<CheckedProof>>,
    fail: Option<RefusalCode>,
}

impl ReplayGuard for Recording {
    fn use_once<'a>(
        &'a self,
        proof: &'a CheckedProof,
        _now: i64,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        self.seen.lock().unwrap().push(proof.clone());
        let r = match self.fail {
            Some(code) => Err(Refusal::new(code, "the store is down")),
            None => Ok(()),
        };
        Box::pin(std::future::ready(r))
    }
}

fn presentation<'a>(auth: &'a str, proof: &'a str) -> Presentation<'a> {
    Presentation {
        authorization: auth,
        dpop: Some(proof),
        method: METHOD,
        url: URL,
    }
}

#[tokio::test]
async fn the_guard_receives_the_checked_proof_and_its_verdict_stands() {
    let token = mandate(&chain_claims());
    let auth = format!("DPoP {token}");
    let p = proof(&token, "p-1");
    let set = RevocationSet::default();
    let guard = Recording::default();
    let presented = check_unspent(&presentation(&auth, &p), &keys(), &set, expectations())
        .unwrap()
        .spend(&guard, NOW)
        .await
        .unwrap();
    let seen = guard.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].jti, "p-1");
    assert_eq!(seen[0].jkt, holder_key().public().thumbprint());
    assert_eq!(presented.proof.as_ref(), Some(&seen[0]));
    assert!(seen[0].remember_until() > seen[0].iat);
}

#[tokio::test]
async fn a_failing_guard_refuses_with_a_retryable_code() {
    let token = mandate(&chain_claims());
    let auth = format!("DPoP {token}");
    let p = proof(&token, "p-2");
    let guard = Recording {
        fail: Some(RefusalCode::ReplayCheckFailed),
        ..Recording::default()
    };
    let r = check_unspent(
        &presentation(&auth, &p),
        &keys(),
        &RevocationSet::default(),
        expectations(),
    )
    .unwrap()
    .spend(&guard, NOW)
    .await
    .unwrap_err();
    assert_eq!(r.code, RefusalCode::ReplayCheckFailed);
    assert_eq!(r.code.http_status(), 503);
}

#[tokio::test]
async fn a_presentation_refused_by_another_check_spends_nothing() {
    let token = mandate(&chain_claims());
    let auth = format!("DPoP {token}");
    let p = proof(&token, "p-3");
    let wrong_url = Presentation {
        url: "https://elsewhere.example/mcp",
        ..presentation(&auth, &p)
    };
    let memory = MemoryReplay::default();
    let r = check_unspent(
        &wrong_url,
        &keys(),
        &RevocationSet::default(),
        expectations(),
    );
    assert_eq!(r.unwrap_err().code, RefusalCode::DpopWrongUrl);
    // The same proof at the right URL is still unused.
    let ok = check_unspent(
        &presentation(&auth, &p),
        &keys(),
        &RevocationSet::default(),
        expectations(),
    )
    .unwrap();
    ok.spend(&memory, NOW).await.expect("first use");
    let again = check_unspent(
        &presentation(&auth, &p),
        &keys(),
        &RevocationSet::default(),
        expectations(),
    )
    .unwrap()
    .spend(&memory, NOW)
    .await
    .unwrap_err();
    assert_eq!(again.code, RefusalCode::DpopReplayed);
}

#[tokio::test]
async fn a_memory_started_after_a_proof_was_made_refuses_it_as_possibly_spent() {
    // A restarted process has forgotten which proofs it saw; a proof made before it started may
    // have been used already, so it is refused rather than accepted a second time.
    let token = mandate(&chain_claims());
    let auth = format!("DPoP {token}");
    let p = proof(&token, "p-restart");
    let unspent = || {
        check_unspent(
            &presentation(&auth, &p),
            &keys(),
            &RevocationSet::default(),
            expectations(),
        )
        .unwrap()
    };
    let restarted = MemoryReplay::started_at(10, NOW + 1);
    let r = unspent().spend(&restarted, NOW + 1).await.unwrap_err();
    assert_eq!(r.code, RefusalCode::DpopReplayed);
    assert!(
        r.message.contains("before this server started"),
        "{}",
        r.message
    );
    // The same proof at a memory that started when it was made is accepted once.
    let running = MemoryReplay::started_at(10, NOW);
    unspent().spend(&running, NOW).await.expect("first use");
}

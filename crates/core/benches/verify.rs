//! Cost of checking a presented mandate (mandate verification + DPoP proof check) beside the raw
//! cost of the two Ed25519 verifications it contains, measured in the same run.

use std::collections::HashMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mandate_core::claims::{Act, Audience, Cnf, MandateClaims, MandateInfo};
use mandate_core::dpop::{self, ProofCheck};
use mandate_core::jws;
use mandate_core::verify::{verify_mandate, Expect};
use mandate_core::SecretKey;

const ISS: &str = "http://127.0.0.1:8700";
const URL: &str = "https://mcp.example.com/mcp";

fn bench(c: &mut Criterion) {
    let issuer = SecretKey::from_seed(&[1; 32]);
    let holder = SecretKey::from_seed(&[2; 32]);
    let kid = issuer.public().thumbprint();
    let claims = MandateClaims {
        iss: ISS.into(),
        sub: "user:alice".into(),
        aud: Audience::One("https://mcp.example.com".into()),
        scope: "github:pulls.write github:contents.read".into(),
        iat: 1000,
        nbf: 1000,
        exp: 1600,
        jti: "HuTgDmlxvPutpPEaKP83aw".into(),
        client_id: "agent:coder".into(),
        act: Some(Act {
            sub: "agent:coder".into(),
            act: Some(Box::new(Act {
                sub: "agent:planner".into(),
                act: None,
            })),
        }),
        may_act: None,
        cnf: Some(Cnf {
            jkt: holder.public().thumbprint(),
        }),
        authorization_details: None,
        mandate: MandateInfo {
            depth: 2,
            parents: vec![
                "WfYHcpwPj3FppqUn8FoIJA".into(),
                "u2uRX2LPnmv5PjBeagog3Q".into(),
            ],
            max_depth: 5,
            forwarded: false,
        },
    };
    let token = jws::sign(
        &jws::header("at+jwt", Some(kid.clone()), None),
        &claims,
        &issuer,
    );
    let proof = dpop::make_proof(&holder, "POST", URL, 1100, "proof-jti", Some(&token));
    let keys: HashMap<_, _> = [(kid, issuer.public())].into();
    let expect = Expect {
        issuer: ISS,
        audience: Some("https://mcp.example.com"),
        now: 1100,
        skew: 30,
    };
    let check = ProofCheck {
        method: "POST",
        url: URL,
        now: 1100,
        access_token: Some(&token),
    };

    // The raw baseline: the two signature verifications, on the same bytes.
    let (t_in, t_sig) = token.rsplit_once('.').unwrap();
    let (p_in, p_sig) = proof.rsplit_once('.').unwrap();
    use base64::Engine;
    let dec = |s: &str| -> [u8; 64] {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
            .try_into()
            .unwrap()
    };
    let (ts, ps) = (dec(t_sig), dec(p_sig));
    let ik = ed25519_dalek::VerifyingKey::from_bytes(issuer.public().as_bytes()).unwrap();
    let hk = ed25519_dalek::VerifyingKey::from_bytes(holder.public().as_bytes()).unwrap();
    let (ts, ps) = (
        ed25519_dalek::Signature::from_bytes(&ts),
        ed25519_dalek::Signature::from_bytes(&ps),
    );

    let mut g = c.benchmark_group("presentation");
    g.bench_function("raw_two_ed25519_verify_strict", |b| {
        b.iter(|| {
            ik.verify_strict(black_box(t_in.as_bytes()), &ts).unwrap();
            hk.verify_strict(black_box(p_in.as_bytes()), &ps).unwrap();
        })
    });
    g.bench_function("mandate_plus_dpop_verify", |b| {
        b.iter(|| {
            let m = verify_mandate(black_box(&token), &keys, expect).unwrap();
            let p = dpop::check_proof(black_box(&proof), check).unwrap();
            assert_eq!(m.claims().cnf.as_ref().unwrap().jkt, p.jkt);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

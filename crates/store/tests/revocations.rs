//! The revocation feed on a real SQLite file: sequence numbers, reading after a cursor,
//! concurrent appends, and disabling keys.

use mandate_store::{NewKey, NewPrincipal, Store};

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_sqlite(&dir.path().join("m.db")).await.unwrap();
    (dir, s)
}

#[tokio::test]
async fn revocations_get_increasing_sequence_numbers_and_are_read_after_a_cursor() {
    let (_d, s) = store().await;
    let a = s
        .add_revocation("jti", "j1", Some("leak"), "user:admin", 10)
        .await
        .unwrap();
    let b = s
        .add_revocation("principal", "agent:x", None, "user:admin", 11)
        .await
        .unwrap();
    assert_eq!((a.seq, b.seq), (1, 2));
    let all = s.revocations_since(0, 100).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].reason.as_deref(), Some("leak"));
    let after = s.revocations_since(1, 100).await.unwrap();
    assert_eq!(after, vec![b]);
    assert!(s.add_revocation("bogus", "x", None, "u", 1).await.is_err());
}

#[tokio::test]
async fn concurrent_revocations_each_get_their_own_sequence_number() {
    let (_d, s) = store().await;
    let mut tasks = vec![];
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.add_revocation("jti", &format!("j{i}"), None, "u", 1)
                .await
                .unwrap()
                .seq
        }));
    }
    let mut seqs = vec![];
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=20).collect::<Vec<i64>>());
}

#[tokio::test]
async fn disabling_a_key_names_its_owner_and_marks_it() {
    let (_d, s) = store().await;
    s.create_principal(&NewPrincipal {
        name: "agent:x".into(),
        kind: "agent".into(),
        role: None,
        allow_bearer: false,
        ceiling_scopes: "".into(),
        ceiling_audiences: "*".into(),
        max_ttl_secs: 60,
        max_depth: 1,
        key: Some(NewKey {
            kid: "k1".into(),
            public_key: "x".into(),
        }),
        now: 1,
    })
    .await
    .unwrap();
    assert_eq!(
        s.disable_key("k1", 5).await.unwrap().as_deref(),
        Some("agent:x")
    );
    assert_eq!(s.disable_key("nope", 5).await.unwrap(), None);
    let p = s.principal("agent:x").await.unwrap().unwrap();
    assert_eq!(p.keys[0].disabled_at, Some(5));
}

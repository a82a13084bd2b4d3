//! Integration tests for single-use jtis (replay detection through the
//! group-commit writer) and their purging, on a real SQLite file.

use std::collections::HashSet;

use mandate_store::Store;
use tempfile::TempDir;

/// Opens a store on a fresh database file; the directory must outlive the store.
async fn open_temp() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("mandate.db"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn second_use_of_a_jti_is_a_replay() {
    let (_dir, store) = open_temp().await;
    assert!(store.use_jti("proof:a", 100).await.unwrap());
    assert!(!store.use_jti("proof:a", 100).await.unwrap());
    assert!(store.use_jti("proof:b", 100).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uses_accept_each_jti_exactly_once() {
    let (_dir, store) = open_temp().await;
    // 100 distinct jtis, each used twice, all at once: the pairs land in the
    // same or different batches, and either way only one use may win.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            let jti = format!("jti-{}", i % 100);
            tokio::spawn(async move {
                let fresh = store.use_jti(&jti, 1_000).await.unwrap();
                (jti, fresh)
            })
        })
        .collect();
    let mut winners = HashSet::new();
    for task in tasks {
        let (jti, fresh) = task.await.unwrap();
        if fresh {
            assert!(winners.insert(jti), "a jti was accepted twice");
        }
    }
    assert_eq!(winners.len(), 100);
}

#[tokio::test]
async fn jtis_used_in_one_batch_detect_replays_within_it() {
    let (_dir, store) = open_temp().await;
    // On the single-threaded test runtime, joining the futures queues all
    // three uses before the writer task gets to run, so they share a batch.
    let (a, b, c) = tokio::join!(
        store.use_jti("same", 10),
        store.use_jti("same", 10),
        store.use_jti("other", 10),
    );
    let same_wins = [a.unwrap(), b.unwrap()];
    assert_eq!(same_wins.iter().filter(|fresh| **fresh).count(), 1);
    assert!(c.unwrap());
}

#[tokio::test]
async fn purge_removes_only_expired_jtis() {
    let (_dir, store) = open_temp().await;
    assert!(store.use_jti("old", 100).await.unwrap());
    assert!(store.use_jti("edge", 200).await.unwrap());
    assert!(store.use_jti("live", 300).await.unwrap());

    assert_eq!(store.purge_expired_jtis(200).await.unwrap(), 2);
    assert_eq!(store.purge_expired_jtis(200).await.unwrap(), 0);
    // The live jti is still remembered; the purged ones can be used again.
    assert!(!store.use_jti("live", 300).await.unwrap());
    assert!(store.use_jti("old", 100).await.unwrap());
}

#[tokio::test]
async fn issue_spends_jtis_and_records_the_mandate_in_one_commit_or_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = mandate_store::Store::open_sqlite(&dir.path().join("m.db"))
        .await
        .unwrap();
    let rec = |jti: &str| mandate_store::MandateRecord {
        jti: jti.into(),
        parent_jti: None,
        subject: "agent:a".into(),
        delegator: "agent:a".into(),
        holder: "agent:a".into(),
        audiences: "https://api".into(),
        scopes: "x:y".into(),
        depth: 0,
        grant_type: "client_credentials".into(),
        reason: None,
        issued_at: 1,
        expires_at: 100,
        kid: "k".into(),
        may_act: None,
        may_act_by: None,
    };
    let jtis = |a: &str, d: &str| vec![(a.to_string(), 100), (d.to_string(), 100)];
    assert_eq!(
        store.issue(jtis("a1", "d1"), rec("m1")).await.unwrap(),
        mandate_store::IssueOutcome::Recorded
    );
    assert!(store.mandate("m1").await.unwrap().is_some());
    // A replayed DPoP jti (index 1): nothing recorded, and the fresh assertion jti is spent.
    assert_eq!(
        store.issue(jtis("a2", "d1"), rec("m2")).await.unwrap(),
        mandate_store::IssueOutcome::Replayed(1)
    );
    assert!(store.mandate("m2").await.unwrap().is_none());
    assert!(!store.use_jti("a2", 100).await.unwrap());
    // Concurrent issues with the same assertion jti: exactly one is recorded.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let (j, r) = (jtis("same", &format!("dp{i}")), rec(&format!("c{i}")));
        tasks.push(tokio::spawn(
            async move { store.issue(j, r).await.unwrap() },
        ));
    }
    let mut recorded = 0;
    for t in tasks {
        if t.await.unwrap() == mandate_store::IssueOutcome::Recorded {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 1);
}

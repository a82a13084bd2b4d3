//! Integration tests for recording and reading issued mandates on a real
//! SQLite file.

use mandate_store::{MandateRecord, Store, StoreError};
use tempfile::TempDir;

/// Opens a store on a fresh database file; the directory must outlive the store.
async fn open_temp() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("mandate.db"))
        .await
        .unwrap();
    (dir, store)
}

fn record(jti: &str, parent: Option<&str>) -> MandateRecord {
    MandateRecord {
        jti: jti.to_owned(),
        parent_jti: parent.map(str::to_owned),
        subject: "user:alice".to_owned(),
        delegator: "agent:planner".to_owned(),
        holder: "agent:worker".to_owned(),
        audiences: "https://api.example".to_owned(),
        scopes: "read".to_owned(),
        depth: 1,
        grant_type: "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
        reason: Some("book travel".to_owned()),
        issued_at: 1_000,
        expires_at: 1_600,
        kid: "issuer-1".to_owned(),
        may_act: None,
        may_act_by: None,
    }
}

#[tokio::test]
async fn recorded_mandate_reads_back_unchanged() {
    let (_dir, store) = open_temp().await;
    let with_parent = record("m2", Some("m1"));
    let mut root = record("m1", None);
    root.reason = None;
    root.depth = 0;
    store.record_mandate(&root).await.unwrap();
    store.record_mandate(&with_parent).await.unwrap();

    assert_eq!(store.mandate("m1").await.unwrap(), Some(root));
    assert_eq!(store.mandate("m2").await.unwrap(), Some(with_parent));
}

#[tokio::test]
async fn unknown_mandate_is_none() {
    let (_dir, store) = open_temp().await;
    assert_eq!(store.mandate("nope").await.unwrap(), None);
}

#[tokio::test]
async fn duplicate_mandate_jti_is_already_exists_without_failing_its_batch() {
    let (_dir, store) = open_temp().await;
    store.record_mandate(&record("m1", None)).await.unwrap();
    // On the single-threaded test runtime both ops are queued before the
    // writer runs, so they share a batch; the duplicate must fail alone
    // while the jti in the same batch is still stored.
    let duplicate = record("m1", None);
    let (dup, fresh) = tokio::join!(store.record_mandate(&duplicate), store.use_jti("j1", 10),);
    assert!(matches!(dup, Err(StoreError::AlreadyExists(jti)) if jti == "m1"));
    assert!(fresh.unwrap());
    assert!(!store.use_jti("j1", 10).await.unwrap());
}

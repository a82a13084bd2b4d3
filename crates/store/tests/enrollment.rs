//! Integration tests for enrollment codes on a real SQLite file.

use mandate_store::{NewPrincipal, Store, StoreError};
use tempfile::TempDir;

/// Opens a store holding one agent, `agent:new`; the directory must outlive the store.
async fn open_with_agent() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("mandate.db"))
        .await
        .unwrap();
    store
        .create_principal(&NewPrincipal {
            name: "agent:new".to_owned(),
            kind: "agent".to_owned(),
            role: None,
            allow_bearer: false,
            ceiling_scopes: "read".to_owned(),
            ceiling_audiences: "api".to_owned(),
            max_ttl_secs: 600,
            max_depth: 1,
            key: None,
            now: 100,
        })
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn enrollment_code_redeems_once() {
    let (_dir, store) = open_with_agent().await;
    store
        .create_enrollment("hash1", "agent:new", "user:admin", 100, 200)
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_enrollment("hash1", 150)
            .await
            .unwrap()
            .as_deref(),
        Some("agent:new")
    );
    assert_eq!(store.redeem_enrollment("hash1", 151).await.unwrap(), None);
}

#[tokio::test]
async fn expired_enrollment_code_does_not_redeem() {
    let (_dir, store) = open_with_agent().await;
    store
        .create_enrollment("hash1", "agent:new", "user:admin", 100, 200)
        .await
        .unwrap();
    // Expiry is exclusive: at exactly expires_at the code is already dead.
    assert_eq!(store.redeem_enrollment("hash1", 200).await.unwrap(), None);
    assert_eq!(store.redeem_enrollment("hash1", 500).await.unwrap(), None);
}

#[tokio::test]
async fn unknown_enrollment_code_does_not_redeem() {
    let (_dir, store) = open_with_agent().await;
    assert_eq!(store.redeem_enrollment("nope", 150).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_of_one_code_succeed_exactly_once() {
    let (_dir, store) = open_with_agent().await;
    store
        .create_enrollment("hash1", "agent:new", "user:admin", 100, 200)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.redeem_enrollment("hash1", 150).await.unwrap() })
        })
        .collect();
    let mut redeemed = 0;
    for task in tasks {
        if task.await.unwrap().is_some() {
            redeemed += 1;
        }
    }
    assert_eq!(redeemed, 1);
}

#[tokio::test]
async fn enrollment_for_unknown_principal_is_not_found() {
    let (_dir, store) = open_with_agent().await;
    let err = store
        .create_enrollment("hash1", "agent:ghost", "user:admin", 100, 200)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(name) if name == "agent:ghost"));
}

#[tokio::test]
async fn duplicate_enrollment_code_hash_is_already_exists() {
    let (_dir, store) = open_with_agent().await;
    store
        .create_enrollment("hash1", "agent:new", "user:admin", 100, 200)
        .await
        .unwrap();
    let err = store
        .create_enrollment("hash1", "agent:new", "user:admin", 100, 300)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)));
}

#[tokio::test]
async fn a_key_conflict_does_not_burn_the_code() {
    use mandate_store::{JoinOutcome, NewKey};
    let (_dir, store) = open_with_agent().await;
    let taken = NewKey {
        kid: "kid-taken".into(),
        public_key: "x1".into(),
    };
    store.add_key("agent:new", &taken, 100).await.unwrap();
    store
        .create_enrollment("hash1", "agent:new", "user:admin", 100, 200)
        .await
        .unwrap();
    assert_eq!(
        store.join_enrollment("hash1", &taken, 150).await.unwrap(),
        JoinOutcome::KeyTaken
    );
    // The code is still good for a fresh key, once.
    let fresh = NewKey {
        kid: "kid-fresh".into(),
        public_key: "x2".into(),
    };
    assert_eq!(
        store.join_enrollment("hash1", &fresh, 151).await.unwrap(),
        JoinOutcome::Joined("agent:new".into())
    );
    assert_eq!(
        store.join_enrollment("hash1", &fresh, 152).await.unwrap(),
        JoinOutcome::InvalidCode
    );
    let p = store.principal("agent:new").await.unwrap().unwrap();
    assert_eq!(p.keys.len(), 2);
}

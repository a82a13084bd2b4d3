//! Integration tests for the issuer's signing keys on a real SQLite file.

use mandate_store::{IssuerKey, Store, StoreError};
use tempfile::TempDir;

/// Opens a store on a fresh database file; the directory must outlive the store.
async fn open_temp() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("mandate.db"))
        .await
        .unwrap();
    (dir, store)
}

fn issuer_key(kid: &str, created_at: i64) -> IssuerKey {
    IssuerKey {
        kid: kid.to_owned(),
        public_key: format!("pk-{kid}"),
        created_at,
        retired_at: None,
        retire_until: None,
    }
}

#[tokio::test]
async fn issuer_keys_are_listed_oldest_first() {
    let (_dir, store) = open_temp().await;
    store.add_issuer_key(&issuer_key("new", 200)).await.unwrap();
    store.add_issuer_key(&issuer_key("old", 100)).await.unwrap();
    let keys = store.issuer_keys().await.unwrap();
    assert_eq!(keys, [issuer_key("old", 100), issuer_key("new", 200)]);
}

#[tokio::test]
async fn duplicate_issuer_kid_is_already_exists() {
    let (_dir, store) = open_temp().await;
    store.add_issuer_key(&issuer_key("k", 100)).await.unwrap();
    let err = store
        .add_issuer_key(&issuer_key("k", 200))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(kid) if kid == "k"));
}

#[tokio::test]
async fn retired_issuer_key_keeps_its_retirement_window() {
    let (_dir, store) = open_temp().await;
    store.add_issuer_key(&issuer_key("k", 100)).await.unwrap();
    store.retire_issuer_key("k", 500, 900).await.unwrap();
    let keys = store.issuer_keys().await.unwrap();
    assert_eq!(keys[0].retired_at, Some(500));
    assert_eq!(keys[0].retire_until, Some(900));
}

#[tokio::test]
async fn removed_issuer_key_is_gone() {
    let (_dir, store) = open_temp().await;
    store.add_issuer_key(&issuer_key("k", 100)).await.unwrap();
    store.remove_issuer_key("k").await.unwrap();
    assert!(store.issuer_keys().await.unwrap().is_empty());
}

#[tokio::test]
async fn retiring_or_removing_an_unknown_issuer_key_is_not_found() {
    let (_dir, store) = open_temp().await;
    let err = store.retire_issuer_key("nope", 1, 2).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(kid) if kid == "nope"));
    let err = store.remove_issuer_key("nope").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(kid) if kid == "nope"));
}

//! Integration tests for principals and their keys on a real SQLite file.

use mandate_store::{NewKey, NewPrincipal, Store, StoreError};
use tempfile::TempDir;

/// Opens a store on a fresh database file; the directory must outlive the store.
async fn open_temp() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("mandate.db"))
        .await
        .unwrap();
    (dir, store)
}

fn key(kid: &str) -> NewKey {
    NewKey {
        kid: kid.to_owned(),
        public_key: format!("pk-{kid}"),
    }
}

fn new_principal(name: &str, kind: &str, key: Option<NewKey>) -> NewPrincipal {
    NewPrincipal {
        name: name.to_owned(),
        kind: kind.to_owned(),
        role: None,
        allow_bearer: false,
        ceiling_scopes: "read write".to_owned(),
        ceiling_audiences: "https://api.example".to_owned(),
        max_ttl_secs: 3600,
        max_depth: 3,
        key,
        now: 1_000,
    }
}

#[tokio::test]
async fn created_principal_reads_back_with_all_fields_and_its_key() {
    let (_dir, store) = open_temp().await;
    let mut p = new_principal("user:alice", "user", Some(key("k1")));
    p.role = Some("admin".to_owned());
    p.allow_bearer = true;
    store.create_principal(&p).await.unwrap();

    let got = store.principal("user:alice").await.unwrap().unwrap();
    assert_eq!(got.name, "user:alice");
    assert_eq!(got.kind, "user");
    assert_eq!(got.role.as_deref(), Some("admin"));
    assert!(!got.disabled);
    assert!(got.allow_bearer);
    assert_eq!(got.ceiling_scopes, "read write");
    assert_eq!(got.ceiling_audiences, "https://api.example");
    assert_eq!(got.max_ttl_secs, 3600);
    assert_eq!(got.max_depth, 3);
    assert_eq!(got.created_at, 1_000);
    assert_eq!(got.updated_at, 1_000);
    assert_eq!(got.keys.len(), 1);
    assert_eq!(got.keys[0].kid, "k1");
    assert_eq!(got.keys[0].public_key, "pk-k1");
    assert_eq!(got.keys[0].created_at, 1_000);
    assert_eq!(got.keys[0].disabled_at, None);
}

#[tokio::test]
async fn unknown_principal_is_none() {
    let (_dir, store) = open_temp().await;
    assert!(store.principal("user:nobody").await.unwrap().is_none());
    assert!(store.principal_by_kid("nokid").await.unwrap().is_none());
}

#[tokio::test]
async fn duplicate_principal_name_is_already_exists() {
    let (_dir, store) = open_temp().await;
    store
        .create_principal(&new_principal("user:alice", "user", None))
        .await
        .unwrap();
    let err = store
        .create_principal(&new_principal("user:alice", "user", None))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(name) if name == "user:alice"));
}

#[tokio::test]
async fn duplicate_kid_is_already_exists_and_rolls_back_the_new_principal() {
    let (_dir, store) = open_temp().await;
    store
        .create_principal(&new_principal("agent:a", "agent", Some(key("k1"))))
        .await
        .unwrap();
    let err = store
        .create_principal(&new_principal("agent:b", "agent", Some(key("k1"))))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(kid) if kid == "k1"));
    assert!(store.principal("agent:b").await.unwrap().is_none());
}

#[tokio::test]
async fn unknown_kind_or_role_is_invalid() {
    let (_dir, store) = open_temp().await;
    let err = store
        .create_principal(&new_principal("robot:x", "robot", None))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let mut p = new_principal("user:x", "user", None);
    p.role = Some("root".to_owned());
    let err = store.create_principal(&p).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn list_principals_is_ordered_by_name_and_filters_by_kind() {
    let (_dir, store) = open_temp().await;
    for (name, kind, kid) in [
        ("user:zoe", "user", "kz"),
        ("agent:planner", "agent", "kp"),
        ("user:alice", "user", "ka"),
    ] {
        store
            .create_principal(&new_principal(name, kind, Some(key(kid))))
            .await
            .unwrap();
    }

    let all = store.list_principals(None).await.unwrap();
    let names: Vec<_> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["agent:planner", "user:alice", "user:zoe"]);
    assert_eq!(all[1].keys[0].kid, "ka");

    let users = store.list_principals(Some("user")).await.unwrap();
    let names: Vec<_> = users.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["user:alice", "user:zoe"]);
    assert_eq!(users[1].keys.len(), 1);
    assert_eq!(users[1].keys[0].kid, "kz");

    assert!(store
        .list_principals(Some("nothing"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn set_disabled_toggles_the_flag_and_reports_unknown_principals() {
    let (_dir, store) = open_temp().await;
    store
        .create_principal(&new_principal("agent:a", "agent", None))
        .await
        .unwrap();

    assert!(store.set_disabled("agent:a", true, 2_000).await.unwrap());
    let got = store.principal("agent:a").await.unwrap().unwrap();
    assert!(got.disabled);
    assert_eq!(got.updated_at, 2_000);

    assert!(store.set_disabled("agent:a", false, 3_000).await.unwrap());
    let got = store.principal("agent:a").await.unwrap().unwrap();
    assert!(!got.disabled);
    assert_eq!(got.updated_at, 3_000);

    assert!(!store
        .set_disabled("agent:nobody", true, 3_000)
        .await
        .unwrap());
}

#[tokio::test]
async fn added_keys_are_listed_oldest_first_and_found_by_kid() {
    let (_dir, store) = open_temp().await;
    store
        .create_principal(&new_principal("agent:a", "agent", Some(key("k1"))))
        .await
        .unwrap();
    store.add_key("agent:a", &key("k2"), 5_000).await.unwrap();

    let got = store.principal_by_kid("k2").await.unwrap().unwrap();
    assert_eq!(got.name, "agent:a");
    assert_eq!(got.updated_at, 5_000);
    let kids: Vec<_> = got.keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["k1", "k2"]);
    assert_eq!(got.keys[1].created_at, 5_000);
}

#[tokio::test]
async fn add_key_rejects_unknown_principal_and_taken_kid() {
    let (_dir, store) = open_temp().await;
    store
        .create_principal(&new_principal("agent:a", "agent", Some(key("k1"))))
        .await
        .unwrap();

    let err = store
        .add_key("agent:nobody", &key("k9"), 5_000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(name) if name == "agent:nobody"));

    let err = store
        .add_key("agent:a", &key("k1"), 5_000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(kid) if kid == "k1"));
    // The failed add must not have bumped updated_at.
    let got = store.principal("agent:a").await.unwrap().unwrap();
    assert_eq!(got.updated_at, 1_000);
}

#[tokio::test]
async fn in_memory_store_supports_principals_and_hot_writes() {
    let store = Store::open_sqlite_memory().await.unwrap();
    store
        .create_principal(&new_principal("user:alice", "user", Some(key("k1"))))
        .await
        .unwrap();
    assert!(store.principal_by_kid("k1").await.unwrap().is_some());
    assert!(store.use_jti("j1", 10).await.unwrap());
    assert!(!store.use_jti("j1", 10).await.unwrap());
}

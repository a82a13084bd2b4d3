//! Integration test that data written through every path survives closing
//! and reopening the database file.

use mandate_store::{IssuerKey, MandateRecord, NewKey, NewPrincipal, Store};

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mandate.db");
    let mandate = MandateRecord {
        jti: "m1".to_owned(),
        parent_jti: None,
        subject: "user:alice".to_owned(),
        delegator: "user:alice".to_owned(),
        holder: "agent:a".to_owned(),
        audiences: "api".to_owned(),
        scopes: "read".to_owned(),
        depth: 0,
        grant_type: "authorization_code".to_owned(),
        reason: None,
        issued_at: 10,
        expires_at: 20,
        kid: "issuer-1".to_owned(),
        may_act: None,
        may_act_by: None,
    };
    {
        let store = Store::open_sqlite(&path).await.unwrap();
        store
            .create_principal(&NewPrincipal {
                name: "agent:a".to_owned(),
                kind: "agent".to_owned(),
                role: None,
                allow_bearer: false,
                ceiling_scopes: "read".to_owned(),
                ceiling_audiences: "api".to_owned(),
                max_ttl_secs: 60,
                max_depth: 2,
                key: Some(NewKey {
                    kid: "k1".to_owned(),
                    public_key: "pk".to_owned(),
                }),
                now: 1,
            })
            .await
            .unwrap();
        store
            .create_enrollment("hash", "agent:a", "user:admin", 1, 100)
            .await
            .unwrap();
        store
            .add_issuer_key(&IssuerKey {
                kid: "issuer-1".to_owned(),
                public_key: "ipk".to_owned(),
                created_at: 1,
                retired_at: None,
                retire_until: None,
            })
            .await
            .unwrap();
        store.record_mandate(&mandate).await.unwrap();
        assert!(store.use_jti("j1", 100).await.unwrap());
    }

    let store = Store::open_sqlite(&path).await.unwrap();
    let agent = store.principal_by_kid("k1").await.unwrap().unwrap();
    assert_eq!(agent.name, "agent:a");
    assert_eq!(store.mandate("m1").await.unwrap(), Some(mandate));
    assert_eq!(store.issuer_keys().await.unwrap().len(), 1);
    assert!(!store.use_jti("j1", 100).await.unwrap());
    assert_eq!(
        store
            .redeem_enrollment("hash", 50)
            .await
            .unwrap()
            .as_deref(),
        Some("agent:a")
    );
}

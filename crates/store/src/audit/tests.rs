use super::*;
use mandate_audit::merkle::{verify_consistency, verify_inclusion};

/// Ids of the events that name `party`, newest first.
async fn ids_naming(store: &Store, party: &str) -> Vec<String> {
    let q = AuditQuery {
        party: Some(party.into()),
        limit: 100,
        ..AuditQuery::default()
    };
    store
        .audit_events(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

fn rec(i: usize) -> AuditRecord {
    AuditRecord::from_event(&mandate_audit::event::Event {
        id: format!("evt_{i}"),
        time: "2026-11-26T00:00:00.000Z".into(),
        kind: "token.issued".into(),
        principal: format!("agent:a{}", i % 3),
        chain: vec!["user:alice".into(), format!("agent:a{}", i % 3)],
        action: "token.client_credentials".into(),
        decision: Some("allow".into()),
        result: "ok".into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn appended_events_get_consecutive_seqs_and_integrate_into_a_provable_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("a.db")).await.unwrap();
    let mut tasks = vec![];
    for i in 0..50 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.audit(rec(i)).await.unwrap() }));
    }
    let mut seqs = vec![];
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=50).collect::<Vec<i64>>());
    let mut integ = Integrator::new();
    let (size, root) = integ
        .step(&store, 5, |n, _| Ok(format!("note {n}")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(size, 50);
    assert_eq!(store.audit_root(50).await.unwrap(), root);
    for i in [0u64, 17, 49] {
        let ev = store
            .audit_event(&(i + 1).to_string())
            .await
            .unwrap()
            .unwrap();
        let proof = store.audit_inclusion_proof(i, 50).await.unwrap();
        verify_inclusion(&merkle::leaf_hash(ev.body.as_bytes()), i, 50, &proof, &root).unwrap();
    }
    for i in 50..60 {
        store.audit(rec(i)).await.unwrap();
    }
    // A fresh integrator (a restarted server) picks up from the stored nodes.
    let mut again = Integrator::new();
    let (size2, root2) = again
        .step(&store, 6, |_, _| Ok("n".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(size2, 60);
    let proof = store.audit_consistency_proof(50, 60).await.unwrap();
    verify_consistency(50, 60, &root, &root2, &proof).unwrap();
    assert_eq!(store.audit_checkpoints().await.unwrap().len(), 2);
    let q = AuditQuery {
        party: Some("user:alice".into()),
        principal: Some("agent:a1".into()),
        limit: 100,
        ..AuditQuery::default()
    };
    assert_eq!(store.audit_events(&q).await.unwrap().len(), 20);
    // Events not yet integrated are found by their body.
    store.audit(rec(61)).await.unwrap();
    let q = AuditQuery {
        party: Some("agent:a1".into()),
        limit: 100,
        ..AuditQuery::default()
    };
    assert_eq!(store.audit_events(&q).await.unwrap().len(), 21);
}

#[tokio::test]
async fn the_integrator_is_behind_only_after_a_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("a.db")).await.unwrap();
    store.audit(rec(0)).await.unwrap();
    let mut integ = Integrator::new();
    let sign = |n: u64, _: &Hash| Ok(format!("note {n}"));
    integ.step(&store, 1, sign).await.unwrap().unwrap();
    let tasks: Vec<_> = (1..=2_005)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { s.audit(rec(i)).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (size, _) = integ.step(&store, 2, sign).await.unwrap().unwrap();
    assert_eq!(size, 2_001);
    assert!(integ.behind(), "a whole batch was taken: more may wait");
    let (size, _) = integ.step(&store, 3, sign).await.unwrap().unwrap();
    assert_eq!(size, 2_006);
    assert!(!integ.behind(), "a partial batch means the tree caught up");
    assert!(integ.step(&store, 4, sign).await.unwrap().is_none());
    assert!(!integ.behind());
}

#[tokio::test]
async fn an_approval_query_finds_the_events_of_that_request_not_events_that_mention_it() {
    let store = Store::open_sqlite_memory().await.unwrap();
    let id = "apr_AAAAAAAAAAAAAAAAAAAAAA";
    let mut ours = mandate_audit::event::Event {
        id: "evt_ours".into(),
        time: "2026-11-26T00:00:00.000Z".into(),
        kind: "approval".into(),
        principal: "user:bob".into(),
        action: "approval.vote".into(),
        result: "ok".into(),
        ..Default::default()
    };
    ours.approval_id = Some(id.into());
    let mut mention = ours.clone();
    mention.id = "evt_mention".into();
    mention.approval_id = None;
    mention
        .details
        .insert("arguments".into(), serde_json::json!({ "approval_id": id }));
    store.audit(AuditRecord::from_event(&ours)).await.unwrap();
    store
        .audit(AuditRecord::from_event(&mention))
        .await
        .unwrap();
    let found = store
        .audit_events(&AuditQuery {
            approval: Some(id.into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].body.contains("evt_ours"));
}

#[tokio::test]
async fn asserted_parties_match_only_when_asked_for_before_and_after_indexing() {
    let store = Store::open_sqlite_memory().await.unwrap();
    let mut e = mandate_audit::event::Event {
        id: "evt_pdp".into(),
        time: "2026-11-26T00:00:00.000Z".into(),
        kind: "policy.decision".into(),
        principal: "agent:pep".into(),
        chain: vec!["agent:pep".into()],
        action: "pdp.evaluation".into(),
        result: "ok".into(),
        ..Default::default()
    };
    e.asserted = Some(mandate_audit::event::Asserted {
        by: "agent:pep".into(),
        principal: Some("agent:coder".into()),
        chain: vec!["user:admin".into(), "agent:coder".into()],
        jti: None,
    });
    store.audit(AuditRecord::from_event(&e)).await.unwrap();
    store.audit(rec(1)).await.unwrap();
    let q = |party: &str, include_asserted| AuditQuery {
        party: Some(party.into()),
        include_asserted,
        limit: 10,
        ..AuditQuery::default()
    };
    let mut integ = Integrator::new();
    for indexed in [false, true] {
        if indexed {
            integ.step(&store, 1, |_, _| Ok("n".into())).await.unwrap();
            assert_eq!(integ.index_step(&store).await.unwrap(), 2);
            assert_eq!(integ.index_step(&store).await.unwrap(), 0);
        }
        let ids = |v: Vec<StoredEvent>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert!(
            store
                .audit_events(&q("user:admin", false))
                .await
                .unwrap()
                .is_empty(),
            "indexed {indexed}"
        );
        assert_eq!(
            ids(store.audit_events(&q("user:admin", true)).await.unwrap()),
            ["evt_pdp"]
        );
        assert_eq!(
            ids(store.audit_events(&q("agent:pep", false)).await.unwrap()),
            ["evt_pdp"]
        );
        // A verified party elsewhere is still found.
        assert_eq!(
            ids(store.audit_events(&q("user:alice", false)).await.unwrap()),
            ["evt_1"]
        );
    }
}

#[tokio::test]
async fn a_new_log_starts_empty_at_seq_1_with_its_first_event() {
    let store = Store::open_sqlite_memory().await.unwrap();
    for i in 0..5 {
        store.audit(rec(i)).await.unwrap();
    }
    Integrator::new()
        .step(&store, 1, |_, _| Ok("n".into()))
        .await
        .unwrap();
    assert_eq!(store.audit_start_new_log(rec(100)).await.unwrap(), 1);
    assert_eq!(store.audit_event_count().await.unwrap(), 1);
    assert_eq!(store.audit_tree_size().await.unwrap(), 0);
    assert!(store.audit_checkpoints().await.unwrap().is_empty());
    assert_eq!(store.audit_event("1").await.unwrap().unwrap().id, "evt_100");
    // The new log grows from there and integrates from leaf 0.
    assert_eq!(store.audit(rec(101)).await.unwrap(), 2);
    let (size, _) = Integrator::new()
        .step(&store, 2, |_, _| Ok("n".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(size, 2);
    assert_eq!(ids_naming(&store, "agent:a1").await, ["evt_100"]);
}

#[tokio::test]
async fn a_deleted_event_stops_integration_at_the_gap() {
    let store = Store::open_sqlite_memory().await.unwrap();
    for i in 0..5 {
        store.audit(rec(i)).await.unwrap();
    }
    // As after a restart: the rows are all there is to integrate from.
    store.recent.clear();
    sqlx::query("DELETE FROM audit_events WHERE seq = 3")
        .execute(&store.pool)
        .await
        .unwrap();
    let err = Integrator::new()
        .step(&store, 1, |_, _| Ok("n".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, IntegrateError::Gap { index: 2, found: 4 }),
        "{err}"
    );
    assert_eq!(store.audit_tree_size().await.unwrap(), 0);
}

#[tokio::test]
async fn events_are_integrated_and_indexed_as_committed_even_if_a_row_changes_before() {
    let store = Store::open_sqlite_memory().await.unwrap();
    for i in 0..5 {
        store.audit(rec(i)).await.unwrap();
    }
    let leaves: Vec<Hash> = (0..5)
        .map(|i| merkle::leaf_hash(rec(i).body.as_bytes()))
        .collect();
    sqlx::query("UPDATE audit_events SET body = '{}' WHERE seq = 2")
        .execute(&store.pool)
        .await
        .unwrap();
    let mut integrator = Integrator::new();
    let (size, root) = integrator
        .step(&store, 1, |_, _| Ok("n".into()))
        .await
        .unwrap()
        .unwrap();
    // The tree holds the event as written, so `audit verify` will name the edited row.
    assert_eq!(size, 5);
    assert_eq!(root, merkle::root_of(&leaves));
    assert_eq!(integrator.index_step(&store).await.unwrap(), 5);
    assert_eq!(ids_naming(&store, "agent:a2").await, ["evt_2"]);
    let indexed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_parties")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    // Each event names its principal and user:alice.
    assert_eq!(indexed, 10);
    // Both readers are past them: nothing is kept.
    assert!(store.recent.after(0, i64::MAX, 10).is_none());
}

#[tokio::test]
async fn an_issuance_event_is_stored_only_with_its_mandate() {
    let store = Store::open_sqlite_memory().await.unwrap();
    let m = crate::MandateRecord {
        jti: "m1".into(),
        parent_jti: None,
        subject: "agent:a".into(),
        delegator: "agent:a".into(),
        holder: "agent:a".into(),
        audiences: "x".into(),
        scopes: "s".into(),
        depth: 0,
        grant_type: "client_credentials".into(),
        reason: None,
        issued_at: 1,
        expires_at: 2,
        kid: "k".into(),
        may_act: None,
        may_act_by: None,
    };
    let ok = store
        .issue_audited(vec![("j1".into(), 9)], m.clone(), rec(1))
        .await
        .unwrap();
    assert_eq!(ok, crate::IssueOutcome::Recorded);
    // A replayed jti: nothing is issued, so nothing is audited as issued.
    let mut m2 = m.clone();
    m2.jti = "m2".into();
    let replay = store
        .issue_audited(vec![("j1".into(), 9)], m2, rec(2))
        .await
        .unwrap();
    assert_eq!(replay, crate::IssueOutcome::Replayed(0));
    assert_eq!(store.audit_event_count().await.unwrap(), 1);
    assert!(store.audit_event("evt_2").await.unwrap().is_none());
}

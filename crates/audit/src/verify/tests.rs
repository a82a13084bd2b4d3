//! Tests of the log verifier: a clean log passes, and each way of tampering with a log is caught
//! at the right place with the right reason.

use ed25519_dalek::SigningKey;

use super::*;
use crate::event::rfc3339_millis;
use crate::merkle::MemoryTree;

const ORIGIN: &str = "auth.example.com";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn trust(k: &SigningKey) -> Trust {
    let mut t = Trust::new();
    t.add_note_key(ORIGIN.into(), k.verifying_key());
    t
}

fn event(i: u64) -> Event {
    Event {
        id: format!("evt_{i:04}"),
        time: rfc3339_millis(1_795_654_923_000 + i as i64),
        kind: "token.exchanged".into(),
        principal: "agent:planner".into(),
        chain: vec!["user:alice".into(), "agent:planner".into()],
        action: "token.exchange".into(),
        decision: Some(if matches!(i % 3, 0) { "deny" } else { "allow" }.into()),
        result: "ok".into(),
        ..Event::default()
    }
}

fn note(k: &SigningKey, size: u64, root: Hash) -> String {
    let body = Checkpoint {
        origin: ORIGIN.into(),
        size,
        root,
        extensions: vec![],
    }
    .body();
    checkpoint::sign(&body, ORIGIN, k).unwrap()
}

/// A stored log: bodies, the leaf hashes stored when each was logged, and checkpoints.
struct Log {
    bodies: Vec<String>,
    ids: Vec<String>,
    leaves: Vec<Option<String>>,
    checkpoints: Vec<(u64, String)>,
}

fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` events with checkpoints at `sizes`, signed with `k`.
fn log(n: u64, sizes: &[u64], k: &SigningKey) -> Log {
    let bodies: Vec<String> = (0..n).map(|i| event(i).canonical()).collect();
    let mut tree = MemoryTree::new();
    for b in &bodies {
        tree.push(merkle::leaf_hash(b.as_bytes()));
    }
    Log {
        ids: (0..n).map(|i| event(i).id).collect(),
        leaves: bodies
            .iter()
            .map(|b| Some(hex(&merkle::leaf_hash(b.as_bytes()))))
            .collect(),
        checkpoints: sizes
            .iter()
            .map(|&s| (s, note(k, s, tree.root_at(s))))
            .collect(),
        bodies,
    }
}

/// Feeds the log the way `mandate audit verify` does: each checkpoint after the entry that
/// completes it, the ones beyond the log at the end. `indexes` maps position to stated index.
fn run_with(l: &Log, t: Trust, indexes: &[u64]) -> Result<Summary, Failure> {
    let mut v = LogVerifier::new(t);
    let mut cps = l.checkpoints.iter().peekable();
    while let Some((size, n)) = cps.next_if(|(s, _)| *s == 0) {
        v.checkpoint(*size, n)?;
    }
    for (pos, body) in l.bodies.iter().enumerate() {
        v.entry(&Entry {
            index: indexes[pos],
            body,
            id: Some(&l.ids[pos]),
            stored_leaf: l.leaves[pos].as_deref(),
            columns: None,
        })?;
        while let Some((size, n)) = cps.next_if(|(s, _)| *s <= pos as u64 + 1) {
            v.checkpoint(*size, n)?;
        }
    }
    for (size, n) in cps {
        v.checkpoint(*size, n)?;
    }
    v.finish()
}

fn run(l: &Log, t: Trust) -> Result<Summary, Failure> {
    let indexes: Vec<u64> = (0..l.bodies.len() as u64).collect();
    run_with(l, t, &indexes)
}

fn at(index: u64, id: &str) -> Location {
    Location::Entry {
        index,
        id: Some(id.into()),
    }
}

#[test]
fn a_clean_log_verifies_and_reports_its_unsigned_tail() {
    let k = key(1);
    let l = log(10, &[3, 4, 8], &k);
    let s = run(&l, trust(&k)).unwrap();
    let mut tree = MemoryTree::new();
    for b in &l.bodies {
        tree.push(merkle::leaf_hash(b.as_bytes()));
    }
    assert_eq!(s.entries, 10);
    assert_eq!(s.checkpoints, 3);
    assert_eq!(s.last_checkpoint, Some((8, tree.root_at(8))));
    assert_eq!(s.root, tree.root());
    assert_eq!(s.tail, 2);
    assert_eq!(s.origins, [ORIGIN]);
    // No checkpoint at all: everything is tail.
    let s = run(&log(5, &[], &k), trust(&k)).unwrap();
    assert_eq!((s.checkpoints, s.tail, s.last_checkpoint), (0, 5, None));
    // The empty log.
    let s = run(&log(0, &[], &k), trust(&k)).unwrap();
    assert_eq!((s.entries, s.root), (0, merkle::empty_root()));
}

#[test]
fn consistency_proofs_are_built_from_kept_nodes_for_every_pair_of_sizes() {
    let k = key(1);
    let n = 26;
    let full = log(n, &[], &k);
    let mut tree = MemoryTree::new();
    for b in &full.bodies {
        tree.push(merkle::leaf_hash(b.as_bytes()));
    }
    for old in 1..n {
        for new in old + 1..=n {
            let mut l = log(new, &[], &k);
            l.checkpoints = vec![
                (old, note(&k, old, tree.root_at(old))),
                (new, note(&k, new, tree.root_at(new))),
            ];
            let s = run(&l, trust(&k)).unwrap_or_else(|f| panic!("{old}->{new}: {f}"));
            assert_eq!(s.checkpoints, 2);
        }
    }
    // A longer log checkpointed at irregular sizes, as the server does.
    let sizes = [1, 2, 5, 64, 65, 200, 511, 512, 513, 1000, 1023, 1500];
    let s = run(&log(1500, &sizes, &k), trust(&k)).unwrap();
    assert_eq!((s.checkpoints, s.tail), (12, 0));
}

#[test]
fn an_edited_event_is_named_and_the_checkpoint_confirms_it() {
    let k = key(1);
    let mut l = log(10, &[4, 8], &k);
    l.bodies[5] = l.bodies[5]
        .replace("\"deny\"", "\"allow\"")
        .replace("\"result\":\"ok\"", "\"result\":\"refused\"");
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(f.location, at(5, "evt_0005"));
    assert_eq!(f.problem, Problem::Changed { checkpoint: 8 });
    assert_eq!(f.position(), Some(5));
    assert_eq!(f.event_id(), Some("evt_0005"));
    assert!(f
        .to_string()
        .starts_with("at position 5 (event evt_0005): the event was changed"));
}

#[test]
fn an_edit_with_a_rewritten_stored_tree_or_without_one_is_located_by_checkpoints() {
    let k = key(1);
    let mut l = log(10, &[4, 8], &k);
    l.bodies[5] = l.bodies[5].replace("\"ok\"", "\"failed\"");
    // An export carries no stored leaf hashes; a careful forger rewrites them.
    for stored in [None, Some(hex(&merkle::leaf_hash(l.bodies[5].as_bytes())))] {
        l.leaves[5] = stored;
        let f = run(&l, trust(&k)).unwrap_err();
        assert_eq!(f.location, Location::Range { from: 4, to: 7 });
        assert_eq!(
            f.problem,
            Problem::RootMismatch {
                size: 8,
                from: 4,
                to: 7
            }
        );
        assert!(f.to_string().contains("positions 4..7"), "{f}");
    }
}

#[test]
fn a_changed_stored_leaf_hash_is_told_apart_from_a_changed_event() {
    let k = key(1);
    let mut l = log(10, &[4, 8], &k);
    l.leaves[6] = Some(hex(&[9; 32]));
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(f.location, at(6, "evt_0006"));
    assert_eq!(f.problem, Problem::StoredLeafChanged { checkpoint: 8 });
    l.leaves[6] = Some("not hex".into());
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(f.problem, Problem::BadStoredLeaf("not hex".into()));
}

#[test]
fn an_edit_in_the_unsigned_tail_is_still_named() {
    let k = key(1);
    let mut l = log(10, &[4, 8], &k);
    l.bodies[9] = l.bodies[9].replace("planner\"", "mallory\"");
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(f.location, at(9, "evt_0009"));
    assert_eq!(f.problem, Problem::LeafMismatch);
}

#[test]
fn a_deleted_event_is_named_by_its_position() {
    let k = key(1);
    let mut l = log(10, &[4, 8], &k);
    for v in [&mut l.ids, &mut l.bodies] {
        v.remove(6);
    }
    l.leaves.remove(6);
    let indexes = [0, 1, 2, 3, 4, 5, 7, 8, 9];
    let f = run_with(&l, trust(&k), &indexes).unwrap_err();
    assert_eq!(f.location, Location::Entry { index: 6, id: None });
    assert_eq!(f.problem, Problem::Missing { index: 6, next: 7 });
    assert!(f.to_string().contains("entry 6 is missing"), "{f}");
}

#[test]
fn swapped_events_are_caught_whether_or_not_their_ids_were_swapped_too() {
    let k = key(1);
    let mut l = log(10, &[4, 8], &k);
    l.bodies.swap(2, 5);
    // Bodies moved, rows kept their ids.
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(f.location, at(2, "evt_0002"));
    assert_eq!(
        f.problem,
        Problem::WrongEvent {
            recorded: "evt_0002".into(),
            body: "evt_0005".into()
        }
    );
    // Whole rows moved (ids and stored leaves with them): the leaf order breaks the root.
    l.ids.swap(2, 5);
    l.leaves.swap(2, 5);
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(
        f.problem,
        Problem::RootMismatch {
            size: 4,
            from: 0,
            to: 3
        }
    );
}

#[test]
fn reordered_duplicated_and_copied_entries_fail() {
    let k = key(1);
    let l = log(6, &[6], &k);
    let f = run_with(&l, trust(&k), &[0, 1, 2, 2, 3, 4]).unwrap_err();
    assert_eq!(f.location, at(2, "evt_0003"));
    assert_eq!(f.problem, Problem::OutOfOrder { index: 2, last: 2 });
    let f = run_with(&l, trust(&k), &[0, 1, 3, 2, 4, 5]).unwrap_err();
    assert_eq!(f.problem, Problem::Missing { index: 2, next: 3 });
    // An event copied over another one, with its id.
    let mut c = log(6, &[6], &k);
    c.bodies[4] = c.bodies[1].clone();
    c.ids[4] = c.ids[1].clone();
    c.leaves[4] = None;
    let f = run(&c, trust(&k)).unwrap_err();
    assert_eq!(f.location, at(4, "evt_0001"));
    assert_eq!(
        f.problem,
        Problem::DuplicateEvent {
            id: "evt_0001".into(),
            first: 1
        }
    );
}

#[test]
fn a_truncated_tail_is_proved_by_the_largest_checkpoint() {
    let k = key(1);
    let mut l = log(10, &[4, 8, 10], &k);
    for v in [&mut l.ids, &mut l.bodies] {
        v.truncate(6);
    }
    l.leaves.truncate(6);
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(f.location, Location::Entry { index: 6, id: None });
    assert_eq!(
        f.problem,
        Problem::Truncated {
            size: 10,
            entries: 6
        }
    );
    assert_eq!(
        f.to_string(),
        "at position 6: truncated: checkpoint signs 10 entries but the log holds 6"
    );
    // Without the checkpoints, the stored tree still remembers the leaves.
    let mut v = LogVerifier::new(trust(&k));
    v.stored_tree_size(10);
    for (i, body) in l.bodies.iter().enumerate() {
        v.entry(&Entry {
            index: i as u64,
            body,
            id: None,
            stored_leaf: None,
            columns: None,
        })
        .unwrap();
    }
    let f = v.finish().unwrap_err();
    assert_eq!(
        f.problem,
        Problem::TreeLonger {
            leaves: 10,
            entries: 6
        }
    );
}

#[test]
fn a_forged_checkpoint_signature_fails() {
    let k = key(1);
    let mut l = log(10, &[4, 8], &k);
    // The note's root is changed to the root of a forged history; the signature stays.
    let forged_root = base64_root(&[7; 32]);
    let (body, sigs) = l.checkpoints[1].1.split_once("\n\n").unwrap();
    let mut lines: Vec<&str> = body.lines().collect();
    lines[2] = forged_root.as_str();
    l.checkpoints[1].1 = format!("{}\n\n{sigs}", lines.join("\n"));
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(f.location, Location::Checkpoint { size: 8 });
    assert!(
        matches!(
            &f.problem,
            Problem::Note(NoteProblem::Untrusted {
                err: CheckpointError::InvalidSignature { .. },
                ..
            })
        ),
        "{f}"
    );
    // A note that is not a note at all.
    l.checkpoints[1].1 = "garbage".into();
    let f = run(&l, trust(&k)).unwrap_err();
    assert!(
        matches!(f.problem, Problem::Note(NoteProblem::Unreadable(_))),
        "{f}"
    );
}

fn base64_root(h: &Hash) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(h)
}

#[test]
fn a_checkpoint_signed_by_an_untrusted_key_or_for_another_origin_fails() {
    let (k, other) = (key(1), key(2));
    let l = log(10, &[4, 8], &other);
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(f.location, Location::Checkpoint { size: 4 });
    assert_eq!(
        f.problem,
        Problem::Note(NoteProblem::Untrusted {
            origin: ORIGIN.into(),
            err: CheckpointError::NoTrustedSignature { unknown: 1 }
        })
    );
    // The right key, but trusted under another log's name.
    let mut t = Trust::new();
    t.add_note_key("other.example".into(), other.verifying_key());
    assert!(run(&l, t).is_err());
    // A bare public key is trusted under whatever origin the checkpoint names.
    let mut t = Trust::new();
    t.add_any_origin(other.verifying_key());
    assert!(!t.is_empty());
    assert_eq!(run(&l, t).unwrap().checkpoints, 2);
    assert!(Trust::new().is_empty());
}

#[test]
fn inconsistent_and_forked_checkpoints_fail() {
    let k = key(1);
    // The signer signed size 8 over a different history than size 4: the log cannot match both.
    let mut l = log(10, &[4, 8], &k);
    let mut forked = MemoryTree::new();
    for (i, b) in l.bodies.iter().enumerate() {
        let data = if i == 1 {
            "forged".to_string()
        } else {
            b.clone()
        };
        forked.push(merkle::leaf_hash(data.as_bytes()));
    }
    l.checkpoints[1].1 = note(&k, 8, forked.root_at(8));
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(f.location, Location::Range { from: 4, to: 7 });
    // Two checkpoints of one size with different roots.
    let mut l = log(10, &[4, 8], &k);
    l.checkpoints.insert(2, (8, note(&k, 8, forked.root_at(8))));
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(f.problem, Problem::Fork { size: 8 });
    // The consistency check itself, given a head whose signed root is not the log's.
    let mut tree = Frontier::new();
    let mut kept = MemoryTree::new();
    for b in &l.bodies {
        tree.append(merkle::leaf_hash(b.as_bytes()));
        kept.push(merkle::leaf_hash(b.as_bytes()));
    }
    let mut at4 = Frontier::new();
    for b in &l.bodies[..4] {
        at4.append(merkle::leaf_hash(b.as_bytes()));
    }
    let head = Head {
        size: 4,
        root: forked.root_at(4),
        nodes: frontier_nodes(&at4),
    };
    let mut right = HashMap::new();
    right.insert((2, 1), merkle::root_of(&leaves_of(&l.bodies[4..8])));
    right.insert((1, 4), merkle::root_of(&leaves_of(&l.bodies[8..10])));
    let p = consistent(&head, &right, &frontier_nodes(&tree), 10, &kept.root()).unwrap_err();
    assert!(
        matches!(
            p,
            Problem::Inconsistent {
                old: 4,
                new: 10,
                ..
            }
        ),
        "{p}"
    );
    assert!(p
        .to_string()
        .starts_with("checkpoints 4 and 10 are not consistent"));
}

fn leaves_of(bodies: &[String]) -> Vec<Hash> {
    bodies
        .iter()
        .map(|b| merkle::leaf_hash(b.as_bytes()))
        .collect()
}

#[test]
fn checkpoints_out_of_order_late_or_mislabelled_fail() {
    let k = key(1);
    let l = log(10, &[4, 8], &k);
    let mut v = LogVerifier::new(trust(&k));
    for (i, body) in l.bodies.iter().take(5).enumerate() {
        v.entry(&Entry {
            index: i as u64,
            body,
            id: None,
            stored_leaf: None,
            columns: None,
        })
        .unwrap();
    }
    let f = v.checkpoint(4, &l.checkpoints[0].1).unwrap_err();
    assert_eq!(f.problem, Problem::CheckpointLate { size: 4, last: 4 });
    // After a failure every call repeats it.
    assert_eq!(v.checkpoint(8, &l.checkpoints[1].1).unwrap_err(), f);

    let mut v = LogVerifier::new(trust(&k));
    v.checkpoint(8, &l.checkpoints[1].1).unwrap();
    let f = v.checkpoint(4, &l.checkpoints[0].1).unwrap_err();
    assert_eq!(
        f.problem,
        Problem::CheckpointOrder {
            size: 4,
            previous: 8
        }
    );

    let mut v = LogVerifier::new(trust(&k));
    let f = v.checkpoint(5, &l.checkpoints[0].1).unwrap_err();
    assert_eq!(
        f.problem,
        Problem::SizeMismatch {
            stored: 5,
            signed: 4
        }
    );
}

#[test]
fn bodies_must_be_canonical_events_and_agree_with_their_columns() {
    let k = key(1);
    let mut l = log(4, &[4], &k);
    l.bodies[1] = l.bodies[1].replacen('{', "{ ", 1);
    let f = run(&l, trust(&k)).unwrap_err();
    assert_eq!(
        (f.location, f.problem),
        (at(1, "evt_0001"), Problem::NotCanonical)
    );
    l.bodies[1] = "{\"not\":\"an event\"}".into();
    let f = run(&l, trust(&k)).unwrap_err();
    assert!(matches!(f.problem, Problem::NotAnEvent(_)), "{f}");
    assert_eq!(f.event_id(), Some("evt_0001"));

    let body = event(3).canonical();
    let parties = vec!["agent:planner".to_string(), "user:alice".to_string()];
    let good = Columns {
        time_ms: 1_795_654_923_003,
        kind: "token.exchanged",
        principal: "agent:planner",
        action: "token.exchange",
        decision: Some("deny"),
        result: "ok",
        parties: Some(&parties),
    };
    let check = |c: Columns<'_>| {
        let mut v = LogVerifier::new(trust(&k));
        for i in 0..3 {
            let b = event(i).canonical();
            v.entry(&Entry {
                index: i,
                body: &b,
                id: None,
                stored_leaf: None,
                columns: None,
            })
            .unwrap();
        }
        v.entry(&Entry {
            index: 3,
            body: &body,
            id: Some("evt_0003"),
            stored_leaf: None,
            columns: Some(c),
        })
        .err()
        .map(|f| f.problem)
    };
    assert_eq!(check(good), None);
    let hidden = Columns {
        decision: Some("allow"),
        ..good
    };
    assert_eq!(
        check(hidden),
        Some(Problem::ColumnMismatch {
            column: "decision",
            stored: "\"allow\"".into(),
            event: "\"deny\"".into()
        })
    );
    let moved = Columns { time_ms: 0, ..good };
    assert!(matches!(
        check(moved),
        Some(Problem::ColumnMismatch {
            column: "time_ms",
            ..
        })
    ));
    let only_alice = vec!["user:alice".to_string()];
    let unlisted = Columns {
        parties: Some(&only_alice),
        ..good
    };
    assert!(matches!(
        check(unlisted),
        Some(Problem::ColumnMismatch {
            column: "parties",
            ..
        })
    ));
    let other = Columns {
        principal: "agent:coder",
        ..good
    };
    assert!(matches!(
        check(other),
        Some(Problem::ColumnMismatch {
            column: "principal",
            ..
        })
    ));
}

#[test]
fn times_read_back_as_the_server_writes_them() {
    for ms in [
        0i64,
        1,
        999,
        951_782_400_000,
        1_795_654_923_456,
        4_102_444_800_123,
    ] {
        assert_eq!(unix_millis(&rfc3339_millis(ms)), Some(ms), "{ms}");
    }
    assert_eq!(unix_millis("1970-01-01T01:00:00+01:00"), Some(0));
    assert_eq!(unix_millis("1970-01-01T00:00:00.1239Z"), Some(123));
    assert_eq!(unix_millis("1969-12-31T23:00:00-01:00"), Some(0));
    for bad in [
        "",
        "yesterday",
        "2026-02-30T00:00:00Z",
        "2026-11-26T24:00:00Z",
        "2026-11-26T01:02:03",
        "2026-11-26T01:02:03.Z",
        "2026-11-26T01:02:03+0100",
        // Found reviewing the `audit` fuzz target (FUZZING.md): a multi-byte character in the
        // offset panicked (byte index 3 is not a char boundary) instead of failing to parse.
        "2026-11-26T01:02:03+0\u{e9}00",
        "2026-11-26T01:02:03+\u{e9}:00",
        "2026-11-26T01:02:03+0:\u{e9}0",
    ] {
        assert_eq!(unix_millis(bad), None, "{bad}");
    }
}

#[test]
fn an_inclusion_proof_bundle_verifies_offline() {
    let k = key(1);
    let l = log(10, &[10], &k);
    let mut tree = MemoryTree::new();
    for b in &l.bodies {
        tree.push(merkle::leaf_hash(b.as_bytes()));
    }
    let note = &l.checkpoints[0].1;
    let proof = tree.inclusion_proof(6, 10).unwrap();
    let leaf = merkle::leaf_hash(l.bodies[6].as_bytes());
    let t = trust(&k);
    let cp = verify_event_inclusion(&l.bodies[6], 6, 10, Some(&leaf), &proof, note, &t).unwrap();
    assert_eq!((cp.size, cp.origin.as_str()), (10, ORIGIN));
    let changed = l.bodies[6].replace("ok", "refused");
    assert_eq!(
        verify_event_inclusion(&changed, 6, 10, Some(&leaf), &proof, note, &t),
        Err(InclusionProblem::LeafMismatch)
    );
    assert!(matches!(
        verify_event_inclusion(&changed, 6, 10, None, &proof, note, &t),
        Err(InclusionProblem::NotIncluded { index: 6, .. })
    ));
    assert!(matches!(
        verify_event_inclusion(&l.bodies[6], 5, 10, None, &proof, note, &t),
        Err(InclusionProblem::NotIncluded { index: 5, .. })
    ));
    assert_eq!(
        verify_event_inclusion(&l.bodies[6], 6, 11, None, &proof, note, &t),
        Err(InclusionProblem::SizeMismatch {
            claimed: 11,
            signed: 10
        })
    );
    assert!(matches!(
        verify_event_inclusion(&l.bodies[6], 6, 10, None, &proof, note, &trust(&key(2))),
        Err(InclusionProblem::Note(NoteProblem::Untrusted { .. }))
    ));
}

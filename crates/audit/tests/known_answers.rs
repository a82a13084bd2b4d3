//! Known-answer tests against values published by others (see `tests/vectors/*.json`, each of
//! which names the repository, path and commit its values were copied from).

use base64::{engine::general_purpose::STANDARD, Engine as _};
use mandate_audit::checkpoint::{
    key_id, parse_note, parse_signer_key, parse_verifier_key, sign, signer_key, verifier_key,
    verify_checkpoint, verify_note, Checkpoint, CheckpointError,
};
use mandate_audit::merkle::{
    empty_root, leaf_hash, node_hash, root_of, tree_root, verify_consistency, verify_inclusion,
    Frontier, Hash, MemoryTree, NodeSource, ProofError,
};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() & 1 == 0, "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex {s}")))
        .collect()
}

fn hash(v: &Value) -> Hash {
    unhex(v.as_str().expect("hex string"))
        .try_into()
        .expect("32 bytes")
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().expect("array").iter().map(hash).collect()
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().expect("integer")
}

fn str_of(v: &Value) -> &str {
    v.as_str().expect("string")
}

// ------------------------------------------------------------------------------------ RFC 6962

struct Classic {
    leaves: Vec<Hash>,
    tree: MemoryTree,
    roots: Vec<Hash>, // roots[size - 1]
}

fn classic(v: &Value) -> Classic {
    let leaves: Vec<Hash> = v["leaves_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| leaf_hash(&unhex(str_of(l))))
        .collect();
    let mut tree = MemoryTree::new();
    for l in &leaves {
        tree.push(*l);
    }
    let roots = v["roots"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(u64_of(&r["size"]), i as u64 + 1);
            hash(&r["root"])
        })
        .collect();
    Classic {
        leaves,
        tree,
        roots,
    }
}

#[test]
fn rfc6962_hashes() {
    let v = load("rfc6962_tree.json");
    assert_eq!(empty_root(), hash(&v["empty_root"]));
    for case in v["leaf_hashes"].as_array().unwrap() {
        assert_eq!(
            leaf_hash(&unhex(str_of(&case["input_hex"]))),
            hash(&case["hash"])
        );
    }
}

#[test]
fn rfc6962_roots() {
    let v = load("rfc6962_tree.json");
    let c = classic(&v);
    assert_eq!(c.leaves.len(), 8);
    let mut frontier = Frontier::new();
    for size in 1..=8usize {
        let want = c.roots[size - 1];
        assert_eq!(root_of(&c.leaves[..size]), want, "root_of size {size}");
        assert_eq!(c.tree.root_at(size as u64), want, "MemoryTree size {size}");
        assert_eq!(tree_root(&c.tree, size as u64), Ok(want));
        frontier.append(c.leaves[size - 1]);
        assert_eq!(frontier.root(), want, "Frontier size {size}");
    }
    assert_eq!(tree_root(&c.tree, 0), Ok(empty_root()));
}

/// (index, size, leaf, proof, root, what was changed)
type InclusionProbe = (u64, u64, Hash, Vec<Hash>, Hash, &'static str);
/// (old, new, old root, new root, proof, what was changed)
type ConsistencyProbe = (u64, u64, Hash, Hash, Vec<Hash>, &'static str);

#[test]
fn rfc6962_inclusion_proofs() {
    let v = load("rfc6962_tree.json");
    let c = classic(&v);
    let cases = v["inclusion"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let (index, size) = (u64_of(&case["index"]), u64_of(&case["size"]));
        assert_eq!(u64_of(&case["go_leaf"]), index + 1);
        let want = hashes(&case["proof"]);
        assert_eq!(
            c.tree.inclusion_proof(index, size),
            Ok(want.clone()),
            "generated proof {index}/{size}"
        );
        let (leaf, root) = (c.leaves[index as usize], c.roots[size as usize - 1]);
        assert_eq!(verify_inclusion(&leaf, index, size, &want, &root), Ok(()));

        // The corruptions of transparency-dev/merkle's corruptInclusionProof.
        let some = leaf_hash(b"some hash");
        let mut probes: Vec<InclusionProbe> = vec![
            (
                index.wrapping_sub(1),
                size,
                leaf,
                want.clone(),
                root,
                "index - 1",
            ),
            (index + 1, size, leaf, want.clone(), root, "index + 1"),
            (index ^ 2, size, leaf, want.clone(), root, "index ^ 2"),
            (index, size * 2, leaf, want.clone(), root, "size * 2"),
            (index, size / 2, leaf, want.clone(), root, "size / 2"),
            (
                index,
                size,
                leaf_hash(b"WrongLeaf"),
                want.clone(),
                root,
                "wrong leaf",
            ),
            (index, size, leaf, want.clone(), empty_root(), "empty root"),
            (index, size, leaf, want.clone(), some, "random root"),
            (
                index,
                size,
                leaf,
                [want.clone(), vec![root]].concat(),
                root,
                "trailing root",
            ),
            (
                index,
                size,
                leaf,
                [vec![root], want.clone()].concat(),
                root,
                "preceding root",
            ),
        ];
        for i in 0..want.len() {
            let mut p = want.clone();
            p[i][0] ^= 8;
            probes.push((index, size, leaf, p, root, "modified proof element"));
        }
        if !want.is_empty() {
            probes.push((
                index,
                size,
                leaf,
                want[..want.len() - 1].to_vec(),
                root,
                "removed",
            ));
        }
        if want.len() > 1 {
            let p = [vec![want[0], some], want[1..].to_vec()].concat();
            probes.push((index, size, leaf, p, root, "inserted"));
        }
        for (i, s, l, p, r, what) in probes {
            assert!(
                verify_inclusion(&l, i, s, &p, &r).is_err(),
                "{what} verified for {index}/{size}"
            );
        }
    }
}

#[test]
fn rfc6962_consistency_proofs() {
    let v = load("rfc6962_tree.json");
    let c = classic(&v);
    let cases = v["consistency"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let (old, new) = (u64_of(&case["old"]), u64_of(&case["new"]));
        let want = hashes(&case["proof"]);
        assert_eq!(
            c.tree.consistency_proof(old, new),
            Ok(want.clone()),
            "generated proof {old}->{new}"
        );
        let (r1, r2) = (c.roots[old as usize - 1], c.roots[new as usize - 1]);
        assert_eq!(verify_consistency(old, new, &r1, &r2, &want), Ok(()));
        if want.is_empty() {
            continue;
        }
        // The corruptions of transparency-dev/merkle's corruptConsistencyProof.
        let wrong = leaf_hash(b"WrongRoot");
        let mut probes: Vec<ConsistencyProbe> = vec![
            (old - 1, new, r1, r2, want.clone(), "old - 1"),
            (old + 1, new, r1, r2, want.clone(), "old + 1"),
            (old ^ 2, new, r1, r2, want.clone(), "old ^ 2"),
            (old, new * 2, r1, r2, want.clone(), "new * 2"),
            (old, new / 2, r1, r2, want.clone(), "new / 2"),
            (old, new, wrong, r2, want.clone(), "wrong old root"),
            (old, new, r1, wrong, want.clone(), "wrong new root"),
            (old, new, r2, r1, want.clone(), "swapped roots"),
            (old, new, r1, r2, vec![], "empty proof"),
            (
                old,
                new,
                r1,
                r2,
                [want.clone(), vec![r1]].concat(),
                "trailing old root",
            ),
            (
                old,
                new,
                r1,
                r2,
                [want.clone(), vec![r2]].concat(),
                "trailing new root",
            ),
            (
                old,
                new,
                r1,
                r2,
                [vec![r1], want.clone()].concat(),
                "preceding old root",
            ),
            (
                old,
                new,
                r1,
                r2,
                [vec![r2], want.clone()].concat(),
                "preceding new root",
            ),
            (
                old,
                new,
                r1,
                r2,
                [vec![want[0]], want.clone()].concat(),
                "preceding proof[0]",
            ),
            (
                old,
                new,
                r1,
                r2,
                want[..want.len() - 1].to_vec(),
                "truncated",
            ),
        ];
        for i in 0..want.len() {
            let mut p = want.clone();
            p[i][0] ^= 16;
            probes.push((old, new, r1, r2, p, "modified proof element"));
        }
        for (m, n, a, b, p, what) in probes {
            assert!(
                verify_consistency(m, n, &a, &b, &p).is_err(),
                "{what} verified for {old}->{new}"
            );
        }
    }
}

// ---------------------------------------------------------------------- Go proof node layouts

fn expected_from_layout(tree: &MemoryTree, case: &Value) -> Vec<Hash> {
    let nodes: Vec<Hash> = case["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            let id = id.as_array().unwrap();
            let (level, index) = (u64_of(&id[0]) as u32, u64_of(&id[1]));
            match tree.node(level, index) {
                Ok(h) => h,
                Err(never) => match never {},
            }
        })
        .collect();
    match case["rehash"].as_array() {
        None => nodes,
        Some(r) => {
            let (begin, end) = (u64_of(&r[0]) as usize, u64_of(&r[1]) as usize);
            let ephemeral = nodes[begin + 1..end]
                .iter()
                .fold(nodes[begin], |acc, h| node_hash(h, &acc));
            [
                nodes[..begin].to_vec(),
                vec![ephemeral],
                nodes[end..].to_vec(),
            ]
            .concat()
        }
    }
}

#[test]
fn go_proof_layouts() {
    let v = load("proof_layouts.json");
    let mut tree = MemoryTree::new();
    for i in 0u64..100 {
        tree.push(leaf_hash(format!("leaf {i}").as_bytes()));
    }
    let inclusion = v["inclusion"].as_array().unwrap();
    assert_eq!(inclusion.len(), 18);
    for case in inclusion {
        let (index, size) = (u64_of(&case["index"]), u64_of(&case["size"]));
        let want = expected_from_layout(&tree, case);
        let got = tree.inclusion_proof(index, size).unwrap();
        assert_eq!(got, want, "inclusion {index}/{size}");
        let leaf = tree.node(0, index).unwrap();
        assert_eq!(
            verify_inclusion(&leaf, index, size, &got, &tree.root_at(size)),
            Ok(())
        );
    }
    for case in v["inclusion_errors"].as_array().unwrap() {
        let (index, size) = (u64_of(&case["index"]), u64_of(&case["size"]));
        assert_eq!(
            tree.inclusion_proof(index, size),
            Err(ProofError::IndexOutOfRange { index, size })
        );
    }
    let consistency = v["consistency"].as_array().unwrap();
    assert_eq!(consistency.len(), 25);
    for case in consistency {
        let (old, new) = (u64_of(&case["old"]), u64_of(&case["new"]));
        let want = expected_from_layout(&tree, case);
        let got = tree.consistency_proof(old, new).unwrap();
        assert_eq!(got, want, "consistency {old}->{new}");
        assert_eq!(
            verify_consistency(old, new, &tree.root_at(old), &tree.root_at(new), &got),
            Ok(())
        );
    }
    for case in v["consistency_errors"].as_array().unwrap() {
        let (old, new) = (u64_of(&case["old"]), u64_of(&case["new"]));
        assert_eq!(
            tree.consistency_proof(old, new),
            Err(ProofError::BadSizes { old, new })
        );
    }
}

// ------------------------------------------------------------------------------- signed notes

#[test]
fn go_note_keys() {
    let v = load("signed_notes.json");
    let g = &v["go_note"];
    let vkey = str_of(&g["peter_verifier_key"]);
    let (name, public) = parse_verifier_key(vkey).unwrap();
    assert_eq!(name, "PeterNeumann");
    assert_eq!(
        format!("{:08x}", key_id(&name, &public)),
        str_of(&g["peter_key_id"])
    );
    assert_eq!(verifier_key(&name, &public), vkey);

    let skey = str_of(&g["peter_signer_key"]);
    let (sname, secret) = parse_signer_key(skey).unwrap();
    assert_eq!(sname, "PeterNeumann");
    assert_eq!(secret.verifying_key(), public);
    assert_eq!(signer_key(&sname, &secret), skey);

    let (ename, epublic) = parse_verifier_key(str_of(&g["enoch_verifier_key"])).unwrap();
    assert_eq!(ename, "EnochRoot");
    assert_eq!(
        format!("{:08x}", key_id(&ename, &epublic)),
        str_of(&g["enoch_key_id"])
    );

    for bad in g["bad_verifier_keys"].as_array().unwrap() {
        assert!(parse_verifier_key(str_of(bad)).is_err(), "{bad}");
    }
    // TestNewVerifier / TestNewSigner: every proper substring and every single-byte increment of
    // the key strings is rejected.
    for (key, parse) in [
        (
            vkey,
            (|s: &str| parse_verifier_key(s).is_ok()) as fn(&str) -> bool,
        ),
        (skey, |s: &str| parse_signer_key(s).is_ok()),
    ] {
        let b = key.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if i != 0 || j != b.len() {
                    let s = std::str::from_utf8(&b[i..j]).unwrap();
                    assert!(!parse(s), "accepted substring {s:?}");
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] += 1;
            let s = String::from_utf8(m).unwrap();
            assert!(!parse(&s), "accepted mangled {s:?}");
        }
    }
}

fn go_verifiers(g: &Value, which: &[&str]) -> Vec<(String, ed25519_dalek::VerifyingKey)> {
    which
        .iter()
        .map(|k| parse_verifier_key(str_of(&g[*k])).unwrap())
        .collect()
}

#[test]
fn go_note_sign_reproduces_reference_output() {
    let v = load("signed_notes.json");
    let g = &v["go_note"];
    let (name, secret) = parse_signer_key(str_of(&g["peter_signer_key"])).unwrap();
    let note = sign(str_of(&g["text"]), &name, &secret).unwrap();
    assert_eq!(note, str_of(&g["signed_by_peter"]));
}

#[test]
fn go_note_open() {
    let v = load("signed_notes.json");
    let g = &v["go_note"];
    let text = str_of(&g["text"]);
    let peter_sig = str_of(&g["peter_sig_line"]);
    let enoch_sig = str_of(&g["enoch_sig_line"]);
    let peter = go_verifiers(g, &["peter_verifier_key"]);
    let both = go_verifiers(g, &["peter_verifier_key", "enoch_verifier_key"]);
    let peter_id = u32::from_str_radix(str_of(&g["peter_key_id"]), 16).unwrap();
    let enoch_id = u32::from_str_radix(str_of(&g["enoch_key_id"]), 16).unwrap();

    let two = format!("{text}\n{peter_sig}{enoch_sig}");
    let parsed = parse_note(&two).unwrap();
    assert_eq!(parsed.text, text);
    assert_eq!(
        parsed
            .signatures
            .iter()
            .map(|s| (s.name.as_str(), s.key_id))
            .collect::<Vec<_>>(),
        [("PeterNeumann", peter_id), ("EnochRoot", enoch_id)]
    );
    assert!(parsed.signatures.iter().all(|s| s.signature.len() == 64));

    // One verified, one unknown.
    let n = verify_note(&two, &peter).unwrap();
    assert_eq!(n.text, text);
    assert_eq!(n.signatures.len(), 1);
    assert_eq!(n.signatures[0].name, "PeterNeumann");
    // Both verified.
    let n = verify_note(&two, &both).unwrap();
    assert_eq!(n.signatures.len(), 2);
    // None known.
    assert_eq!(
        verify_note(&two, &[]),
        Err(CheckpointError::NoTrustedSignature { unknown: 2 })
    );
    // Too many signatures.
    assert_eq!(
        verify_note(&format!("{text}\n{}", peter_sig.repeat(101)), &peter),
        Err(CheckpointError::TooManySignatures { max: 100 })
    );
    // Invalid signature by a known key.
    let corrupt = format!("{}ABCD{}", &peter_sig[..60], &peter_sig[60..]);
    assert_eq!(
        verify_note(&format!("{text}\n{corrupt}"), &peter),
        Err(CheckpointError::InvalidSignature {
            name: "PeterNeumann".into(),
            key_id: peter_id
        })
    );
    // Duplicated verified and unverified signatures.
    let enoch_corrupt = format!("{}ABCD{}", &enoch_sig[..60], &enoch_sig[60..]);
    let dup = format!("{text}\n{peter_sig}{peter_sig}{enoch_sig}{enoch_sig}{enoch_corrupt}");
    let n = verify_note(&dup, &peter).unwrap();
    assert_eq!(n.signatures.len(), 1);
    // Malformed messages.
    for bad in g["malformed_notes"].as_array().unwrap() {
        assert!(parse_note(str_of(bad)).is_err(), "{bad}");
    }
    // Misnamed signature: an unknown key.
    let misnamed = peter_sig.replace("PeterNeumann", "CarmenSandiego");
    assert_eq!(
        verify_note(&format!("{text}\n{misnamed}"), &peter),
        Err(CheckpointError::NoTrustedSignature { unknown: 1 })
    );
    // The Go example is not a checkpoint.
    assert_eq!(
        verify_checkpoint(&format!("{text}\n{peter_sig}"), &peter),
        Err(CheckpointError::BodyTooFewLines { lines: 2 })
    );
}

#[test]
fn sumdb_checkpoint_verifies() {
    let v = load("signed_notes.json");
    let s = &v["sumdb_checkpoint"];
    let vkey = str_of(&s["verifier_key"]);
    let (name, public) = parse_verifier_key(vkey).unwrap();
    assert_eq!(name, "sum.golang.org");
    assert_eq!(key_id(&name, &public), 0x033de0ae);
    assert_eq!(verifier_key(&name, &public), vkey);
    let note = str_of(&s["note"]);
    let cp = verify_checkpoint(note, &[(name.clone(), public)]).unwrap();
    assert_eq!(
        cp,
        Checkpoint {
            origin: str_of(&s["origin"]).to_owned(),
            size: u64_of(&s["size"]),
            root: STANDARD
                .decode(str_of(&s["root_base64"]))
                .unwrap()
                .try_into()
                .unwrap(),
            extensions: vec![],
        }
    );
    let text = parse_note(note).unwrap().text;
    assert_eq!(cp.body(), text, "body() reproduces the signed text");
    // One changed character of the body breaks it.
    let tampered = note.replacen("6476701", "6476702", 1);
    assert_eq!(
        verify_checkpoint(&tampered, &[(name, public)]),
        Err(CheckpointError::InvalidSignature {
            name: "sum.golang.org".into(),
            key_id: 0x033de0ae
        })
    );
}

#[test]
fn formats_key_pairs() {
    let v = load("signed_notes.json");
    let pairs = v["formats_key_pairs"]["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 4);
    for p in pairs {
        let (vs, ss) = (str_of(&p["verifier"]), str_of(&p["signer"]));
        let (name, public) = parse_verifier_key(vs).unwrap();
        let (sname, secret) = parse_signer_key(ss).unwrap();
        assert_eq!(name, sname);
        assert_eq!(secret.verifying_key(), public);
        assert_eq!(verifier_key(&name, &secret.verifying_key()), vs);
        assert_eq!(signer_key(&name, &secret), ss);
        // And what we sign with the key verifies against the published verifier key.
        let body = Checkpoint {
            origin: "TestParseCheckpoint".into(),
            size: 42,
            root: leaf_hash(b"abcdef"),
            extensions: vec![],
        }
        .body();
        let note = sign(&body, &sname, &secret).unwrap();
        assert_eq!(
            verify_checkpoint(&note, &[(name, public)]).unwrap().size,
            42
        );
    }
}

#[test]
fn formats_rejected_bodies() {
    let v = load("signed_notes.json");
    let bodies = v["formats_rejected_bodies"]["bodies"].as_array().unwrap();
    assert_eq!(bodies.len(), 7);
    for b in bodies {
        assert!(Checkpoint::parse_body(str_of(b)).is_err(), "{b}");
    }
}

#[test]
fn c2sp_examples_parse() {
    let v = load("signed_notes.json");
    let c = &v["c2sp_checkpoint_example"];
    let note = parse_note(str_of(&c["note"])).unwrap();
    let cp = Checkpoint::parse_body(&note.text).unwrap();
    assert_eq!(cp.origin, str_of(&c["origin"]));
    assert_eq!(cp.size, u64_of(&c["size"]));
    assert_eq!(STANDARD.encode(cp.root), str_of(&c["root_base64"]));
    assert_eq!(note.signatures.len(), 1);
    assert_eq!(note.signatures[0].name, "example.com/behind-the-sofa");
    // Its key is not published: with any other trusted key it is rejected as unsigned.
    let g = &v["go_note"];
    assert_eq!(
        verify_checkpoint(
            str_of(&c["note"]),
            &go_verifiers(g, &["peter_verifier_key"])
        ),
        Err(CheckpointError::NoTrustedSignature { unknown: 1 })
    );

    let n = &v["c2sp_note_example"];
    let note = parse_note(str_of(&n["note"])).unwrap();
    assert_eq!(note.text, str_of(&n["text"]));
    assert_eq!(note.signatures.len(), 1);
    assert_eq!(note.signatures[0].name, str_of(&n["key_name"]));
    assert_eq!(note.encode(), str_of(&n["note"]));
}

//! The audit log's parsers (`mandate-audit`): signed notes, checkpoint bodies, note key strings,
//! audit events and their canonical JSON, argument redaction, Merkle proof verification, and the
//! streaming log verifier fed the lines of an export.
//!
//! The first byte picks the part (`mode % 7`), the rest is its input. Besides "no panic":
//! - 0 notes: a note that parses re-encodes to its exact text; one that verifies (fixed trusted
//!   keys: the fuzzing key and the Go vectors' keys) parses to the same text and keeps only
//!   trusted 64-byte signatures; the input *as a note text*, signed with the fuzzing key,
//!   verifies, and `verify_checkpoint` on it answers exactly what `Checkpoint::parse_body` does.
//! - 1 checkpoint bodies: an accepted body re-encodes (`body()`) to the input; signed with the
//!   fuzzing key under its origin, the log verifier's `Trust` accepts it as that checkpoint.
//! - 2 key strings: an accepted verifier or signer key re-encodes to the input (key id in lower
//!   case) and parses back to the same key.
//! - 3 events: an accepted event's `canonical()` parses back to an equal event and is a fixed
//!   point (`canonical_json(parse(c)) == c`); the same for any JSON value; `unix_millis`; the
//!   event bounded (`Event::bound`) fits `MAX_EVENT_BYTES`, parses back, and an event that was
//!   within every bound is left unchanged; verified and asserted parties never overlap.
//! - 4 redaction: `key \n arguments-json \n pointer \n pointer ...`: no value the policy input
//!   `{"action": {"arguments": ...}}` holds at a redacted pointer is left unchanged; after
//!   `redact_secret_keys`, no member under a secret-looking key holds anything but an HMAC.
//! - 5 Merkle proofs: arbitrary sizes, indexes and proofs; for trees of up to 128 leaves, the
//!   proofs the tree builds verify, and no other proof does (a changed one fails).
//! - 6 the log verifier: export lines (header, event, checkpoint); see [`log`]. After its first
//!   failure it answers that failure again; a log that verifies has the root a `MemoryTree`
//!   computes; it never reports an internal error.
#![no_main]

use std::any::Any;
use std::borrow::Cow;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mandate_audit::checkpoint::{self, Checkpoint, MAX_NOTE_BYTES, MAX_SIGNATURES};
use mandate_audit::event::{
    canonical_json, redact_arguments, redact_secret_keys, Event, MAX_EVENT_BYTES,
    REDACTED_PREFIX, SECRET_KEY_FRAGMENTS,
};
use mandate_audit::merkle::{self, Hash, MemoryTree};
use mandate_audit::verify::{self, Columns, Entry, Failure, LogVerifier, Problem, Trust};
use mandate_fuzz::text;
use serde_json::{json, Value};

/// Note verifier keys the targets trust besides the fuzzing key (Go's `note_test.go` and
/// transparency-dev's sum.golang.org key, from `crates/audit/tests/vectors/signed_notes.json`),
/// so the real notes among the seeds verify.
const VECTOR_KEYS: [&str; 3] = [
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop",
    "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8",
];

/// Key name of the fuzzing key's signatures in the note modes.
const FUZZ_NAME: &str = "fuzz";

/// A value computed once. ed25519-dalek is not a dependency of this crate, so its key types
/// cannot be named in a `static`; each caller passes its own cell and always the same `T`.
fn once<T: Send + Sync + 'static>(
    cell: &'static OnceLock<Box<dyn Any + Send + Sync>>,
    init: impl FnOnce() -> T,
) -> &'static T {
    cell.get_or_init(|| Box::new(init()))
        .downcast_ref()
        .expect("one type per cell")
}

/// What the log verifier trusts when an export's header names no key: the fuzzing key, for any
/// origin.
fn fuzz_trust() -> Trust {
    let mut t = Trust::new();
    t.add_any_origin(mandate_fuzz::secret().signing_key().verifying_key());
    t
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 7 {
        0 => notes(&text(rest)),
        1 => bodies(&text(rest)),
        2 => keys(&text(rest)),
        3 => events(&text(rest)),
        4 => redaction(&text(rest)),
        5 => proofs(rest),
        _ => log(&text(rest)),
    }
});

fn notes(input: &str) {
    // The trusted note verifiers: the fuzzing key (seed `[5; 32]`, as `fuzz/src/lib.rs`) under
    // FUZZ_NAME, and VECTOR_KEYS.
    static TRUSTED: OnceLock<Box<dyn Any + Send + Sync>> = OnceLock::new();
    let sk = mandate_fuzz::secret().signing_key();
    let trusted = once(&TRUSTED, || {
        let mut v = vec![(FUZZ_NAME.to_owned(), sk.verifying_key())];
        for k in VECTOR_KEYS {
            v.push(checkpoint::parse_verifier_key(k).expect("vector key"));
        }
        v
    });
    let parsed = checkpoint::parse_note(input);
    if let Ok(p) = &parsed {
        assert_eq!(p.encode(), input, "a parsed note re-encodes to its text");
        assert!(p.text.ends_with('\n') && input.starts_with(&p.text));
        assert!((1..=MAX_SIGNATURES).contains(&p.signatures.len()));
    }
    let verified = checkpoint::verify_note(input, trusted);
    if let Ok(v) = &verified {
        let p = parsed.as_ref().expect("a note that verifies parses");
        assert_eq!(v.text, p.text);
        assert!(!v.signatures.is_empty());
        for s in &v.signatures {
            assert!(p.signatures.contains(s));
            assert_eq!(s.signature.len(), 64);
            assert!(trusted
                .iter()
                .any(|(name, _)| *name == s.name && !s.name.is_empty()));
        }
    }
    match checkpoint::verify_checkpoint(input, trusted) {
        Ok(cp) => assert_eq!(cp.body(), verified.as_ref().expect("verified").text),
        Err(e) => {
            if let Ok(v) = &verified {
                assert_eq!(Checkpoint::parse_body(&v.text), Err(e));
            }
        }
    }
    let _ = fuzz_trust().verify(input);

    // Signed mode: the input is the note text.
    if let Ok(note) = checkpoint::sign(input, FUZZ_NAME, &sk) {
        if note.len() <= MAX_NOTE_BYTES {
            let v = checkpoint::verify_note(&note, trusted).expect("a note just signed verifies");
            assert_eq!(v.text, input);
            assert_eq!(v.signatures.len(), 1);
            assert_eq!(
                checkpoint::verify_checkpoint(&note, trusted),
                Checkpoint::parse_body(input)
            );
            // Cosigning again with the same key replaces its line (Ed25519 is deterministic).
            assert_eq!(
                checkpoint::add_signature(&note, FUZZ_NAME, &sk).as_ref(),
                Ok(&note)
            );
        }
    }
}

fn bodies(input: &str) {
    let Ok(cp) = Checkpoint::parse_body(input) else {
        return;
    };
    assert_eq!(cp.body(), input, "an accepted body re-encodes to itself");
    assert!(!cp.origin.is_empty() && cp.extensions.iter().all(|e| !e.is_empty()));
    let sk = mandate_fuzz::secret().signing_key();
    if let Ok(note) = checkpoint::sign(input, &cp.origin, &sk) {
        if note.len() <= MAX_NOTE_BYTES {
            assert_eq!(fuzz_trust().verify(&note), Ok(cp));
        }
    }
}

/// `name+ID+data` with the 8 hex digits of the key id in lower case (the parsers accept either
/// case, as Go's `strconv.ParseUint(id, 16, 32)` does; the encoders write lower case).
fn lower_id(s: &str) -> Option<String> {
    let (name, rest) = s.split_once('+')?;
    let (id, data) = rest.split_once('+')?;
    Some(format!("{name}+{}+{data}", id.to_ascii_lowercase()))
}

fn keys(input: &str) {
    if let Ok((name, vk)) = checkpoint::parse_verifier_key(input) {
        let again = checkpoint::verifier_key(&name, &vk);
        assert_eq!(Some(&again), lower_id(input).as_ref());
        assert_eq!(checkpoint::parse_verifier_key(&again), Ok((name, vk)));
    }
    if let Ok((name, sk)) = checkpoint::parse_signer_key(input) {
        let again = checkpoint::signer_key(&name, &sk);
        let stated = input.strip_prefix("PRIVATE+KEY+").and_then(lower_id);
        assert_eq!(again.strip_prefix("PRIVATE+KEY+"), stated.as_deref());
        let vk = checkpoint::verifier_key(&name, &sk.verifying_key());
        assert_eq!(
            checkpoint::parse_verifier_key(&vk),
            Ok((name, sk.verifying_key()))
        );
    }
}

fn events(input: &str) {
    let _ = verify::unix_millis(input);
    if let Ok(e) = Event::parse(input) {
        let c = e.canonical();
        let back = Event::parse(&c).expect("the canonical form of an event parses");
        assert_eq!(back, e, "the canonical form reads back as the same event");
        let v: Value = serde_json::from_str(&c).expect("canonical JSON is JSON");
        assert_eq!(canonical_json(&v), c, "the canonical form is a fixed point");
        let verified = e.parties();
        let asserted = e.asserted_parties();
        assert!(
            asserted.iter().all(|p| !verified.contains(p)),
            "a party is both verified and asserted"
        );
        let _ = verify::unix_millis(&e.time);
        let mut bounded = e.clone();
        let cut = bounded.bound(b"fuzz");
        let c = bounded.canonical();
        assert!(c.len() <= MAX_EVENT_BYTES, "a bounded event is {} bytes", c.len());
        assert_eq!(Event::parse(&c).expect("a bounded event parses"), bounded);
        if !cut {
            assert_eq!(bounded, e, "an event within its bounds is unchanged");
        }
    }
    if let Ok(v) = serde_json::from_str::<Value>(input) {
        let c = canonical_json(&v);
        let again: Value = serde_json::from_str(&c).expect("canonical JSON is JSON");
        assert_eq!(canonical_json(&again), c, "canonical JSON is a fixed point");
    }
}

/// Every member whose key looks secret holds an HMAC, at any depth.
fn assert_no_secret_left(v: &Value) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                let name: String = k
                    .chars()
                    .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
                    .flat_map(char::to_lowercase)
                    .collect();
                if SECRET_KEY_FRAGMENTS.iter().any(|f| name.contains(f)) {
                    assert!(
                        v.as_str().is_some_and(|s| s.starts_with(REDACTED_PREFIX)),
                        "{k} kept {v}"
                    );
                } else {
                    assert_no_secret_left(v);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(assert_no_secret_left),
        _ => {}
    }
}

fn redaction(input: &str) {
    let mut lines = input.split('\n');
    let key = lines.next().unwrap_or_default().as_bytes();
    let args_text = lines.next().unwrap_or_default();
    let original = serde_json::from_str::<Value>(args_text)
        .unwrap_or_else(|_| Value::String(args_text.to_owned()));
    let paths: Vec<String> = lines.map(str::to_owned).collect();
    let mut floor = original.clone();
    redact_secret_keys(key, &mut floor, &SECRET_KEY_FRAGMENTS);
    assert_no_secret_left(&floor);
    let mut args = original.clone();
    redact_arguments(key, &mut args, &paths);
    if paths.is_empty() {
        assert_eq!(args, original);
        return;
    }
    // The paths point into the policy input, which holds the arguments at /action/arguments.
    let before = json!({"action": {"arguments": original}});
    let after = json!({"action": {"arguments": args}});
    for p in &paths {
        if let Some(old) = before.pointer(p) {
            assert_ne!(
                after.pointer(p),
                Some(old),
                "the value at redact path {p:?} is still there"
            );
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        x.copy_from_slice(s);
    }
    u64::from_le_bytes(x)
}

fn proofs(data: &[u8]) {
    // a (8 bytes LE) | b (8 bytes LE) | flags | proof hashes (32 bytes each)
    if data.len() < 17 {
        return;
    }
    let (a, b, flags) = (u64_at(data, 0), u64_at(data, 8), data[16]);
    let proof: Vec<Hash> = data[17..]
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    let h0 = proof.first().copied().unwrap_or([0; 32]);
    let h1 = proof.last().copied().unwrap_or([1; 32]);
    let _ = merkle::verify_inclusion(&h0, a, b, &proof, &h1);
    let _ = merkle::root_from_inclusion(&h0, a, b, &proof);
    let _ = merkle::verify_consistency(a, b, &h0, &h1, &proof);
    let _ = merkle::verify_consistency(b, a, &h0, &h0, &proof);

    // A real tree of up to 128 leaves: its proofs verify, no other proof does.
    let (x, y) = (a % 129, b % 129);
    let n = x.max(y);
    let mut tree = MemoryTree::new();
    let leaves: Vec<Hash> = (0..n)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    for l in &leaves {
        tree.push(*l);
    }
    let tamper = |good: &[Hash]| -> Vec<Hash> {
        let mut bad = good.to_vec();
        if bad.is_empty() {
            bad.push(h0);
        } else if flags & 0x80 != 0 {
            bad.pop();
        } else {
            let i = usize::from(flags) % bad.len();
            bad[i][usize::from(flags) % 32] ^= 1 | (flags & 0x7f);
        }
        bad
    };
    if x < y {
        let (index, size) = (x, y);
        let root = tree.root_at(size);
        let good = tree
            .inclusion_proof(index, size)
            .expect("index < size <= len");
        let leaf = &leaves[index as usize];
        assert_eq!(
            merkle::verify_inclusion(leaf, index, size, &good, &root),
            Ok(())
        );
        let bad = tamper(&good);
        assert!(merkle::verify_inclusion(leaf, index, size, &bad, &root).is_err());
        if merkle::verify_inclusion(leaf, index, size, &proof, &root).is_ok() {
            assert_eq!(proof, good, "only the tree's own inclusion proof verifies");
        }
    }
    let (old, new) = (x.min(y), x.max(y));
    let (old_root, new_root) = (tree.root_at(old), tree.root_at(new));
    let good = if old == 0 {
        Vec::new()
    } else {
        tree.consistency_proof(old, new)
            .expect("0 < old <= new <= len")
    };
    assert_eq!(
        merkle::verify_consistency(old, new, &old_root, &new_root, &good),
        Ok(())
    );
    let bad = tamper(&good);
    assert!(merkle::verify_consistency(old, new, &old_root, &new_root, &bad).is_err());
    if merkle::verify_consistency(old, new, &old_root, &new_root, &proof).is_ok() {
        assert_eq!(
            proof, good,
            "only the tree's own consistency proof verifies"
        );
    }
}

/// The raw text of an export line's `event` member when it is the line's last member (as
/// `mandate audit export` writes it, and as the CLI reads it with a `RawValue`): the bytes are
/// kept as they are, so non-canonical events reach the verifier. Otherwise the event's
/// canonical JSON.
fn event_body<'a>(line: &'a str, event: &Value) -> Cow<'a, str> {
    if let Some(at) = line.find("\"event\":") {
        if let Some(raw) = line[at + 8..].trim_end().strip_suffix('}') {
            let raw = raw.trim();
            if serde_json::from_str::<Value>(raw).ok().as_ref() == Some(event) {
                return Cow::Borrowed(raw);
            }
        }
    }
    Cow::Owned(canonical_json(event))
}

/// Feeds a `LogVerifier` the lines of an export (`docs/audit.md`, `mandate-audit-export/1`):
/// - a first `{"type":"header",...}` line: its `verifier_keys` are trusted for their names'
///   origins, and `stored_tree_size` (not in exports; what storage reports) is passed on; the
///   fuzzing key is trusted for any origin;
/// - `{"type":"event","index":I,"id":"...","event":{...}}` entries; as in storage, a line may
///   also carry `leaf` (the stored leaf hash) and the query columns `time_ms` (which turns them
///   on), `kind`, `principal`, `action`, `decision`, `result`, `parties`;
/// - `{"type":"checkpoint","size":S,"note":"..."}`, or, instead of `note`, `"sign":"ORIGIN"`:
///   a checkpoint of size S (default: the entries so far) with the root of the entries accepted
///   so far, signed with the fuzzing key (a mutated note almost never keeps a valid signature).
///
/// Unlike the CLI, which stops at the first line that is not an export line, such lines are
/// skipped, so the verifier sees any sequence of calls.
fn log(input: &str) {
    let sk = mandate_fuzz::secret().signing_key();
    let mut lines = input.lines().filter(|l| !l.trim().is_empty()).peekable();
    let mut trust = fuzz_trust();
    let mut stored_size = None;
    if let Some(Ok(h)) = lines.peek().map(|l| serde_json::from_str::<Value>(l)) {
        if h["type"] == "header" {
            for k in h["verifier_keys"].as_array().into_iter().flatten() {
                if let Some(Ok((name, key))) = k.as_str().map(checkpoint::parse_verifier_key) {
                    trust.add_note_key(name, key);
                }
            }
            stored_size = h["stored_tree_size"].as_u64();
            lines.next();
        }
    }
    let mut v = LogVerifier::new(trust);
    if let Some(n) = stored_size {
        v.stored_tree_size(n);
    }
    // The leaves of the entries the verifier accepted, kept independently of it.
    let mut tree = MemoryTree::new();
    let mut first: Option<Failure> = None;
    for line in lines {
        let Ok(l) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let step = match l["type"].as_str() {
            Some("event") => {
                let Some(event) = l.get("event") else {
                    continue;
                };
                let body = event_body(line, event);
                let parties: Option<Vec<String>> = l["parties"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect()
                });
                let columns = l["time_ms"].as_i64().map(|time_ms| Columns {
                    time_ms,
                    kind: l["kind"].as_str().unwrap_or_default(),
                    principal: l["principal"].as_str().unwrap_or_default(),
                    action: l["action"].as_str().unwrap_or_default(),
                    decision: l["decision"].as_str(),
                    result: l["result"].as_str().unwrap_or_default(),
                    parties: parties.as_deref(),
                });
                let step = v.entry(&Entry {
                    index: l["index"].as_u64().unwrap_or(v.entries()),
                    body: &body,
                    id: l["id"].as_str(),
                    stored_leaf: l["leaf"].as_str(),
                    columns,
                });
                if step.is_ok() {
                    tree.push(merkle::leaf_hash(body.as_bytes()));
                }
                step
            }
            Some("checkpoint") => {
                let size = l["size"].as_u64().unwrap_or(tree.len());
                let note = match (l["note"].as_str(), l["sign"].as_str()) {
                    (Some(note), _) => note.to_owned(),
                    (None, Some(origin)) => {
                        let cp = Checkpoint {
                            origin: origin.to_owned(),
                            size,
                            root: tree.checked_root_at(size).unwrap_or([0; 32]),
                            extensions: Vec::new(),
                        };
                        match checkpoint::sign(&cp.body(), origin, &sk) {
                            Ok(note) => note,
                            Err(_) => continue,
                        }
                    }
                    (None, None) => continue,
                };
                v.checkpoint(size, &note)
            }
            _ => continue,
        };
        match (&first, step) {
            (None, Ok(())) => {}
            (None, Err(f)) => {
                assert!(!matches!(f.problem, Problem::Internal(_)), "{f}");
                first = Some(f);
            }
            (Some(f), step) => assert_eq!(step.as_ref().err(), Some(f), "a failure is final"),
        }
    }
    match (first, v.finish()) {
        (Some(f), end) => assert_eq!(end.err(), Some(f), "a failure is final"),
        (None, Err(f)) => assert!(!matches!(f.problem, Problem::Internal(_)), "{f}"),
        (None, Ok(s)) => {
            assert_eq!(s.entries, tree.len());
            assert_eq!(s.root, tree.root());
            match s.last_checkpoint {
                Some((size, root)) => {
                    assert_eq!(tree.checked_root_at(size), Ok(root));
                    assert_eq!(s.tail, s.entries - size);
                }
                None => assert_eq!(s.tail, s.entries),
            }
        }
    }
}

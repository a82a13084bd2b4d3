//! Properties of checkpoints and signed notes: round trips, tamper detection, and parsers that
//! never panic on arbitrary input.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use ed25519_dalek::SigningKey;
use mandate_audit::checkpoint::{
    add_signature, parse_note, parse_signer_key, parse_verifier_key, sign, sign_many, verifier_key,
    verify_checkpoint, verify_note, Checkpoint, CheckpointError,
};
use proptest::prelude::*;

fn key(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

fn checkpoint_strategy() -> impl Strategy<Value = Checkpoint> {
    (
        "[^\\x00-\\x1f]{1,40}",
        any::<u64>(),
        any::<[u8; 32]>(),
        proptest::collection::vec("[^\\x00-\\x1f]{1,20}", 0..3),
    )
        .prop_map(|(origin, size, root, extensions)| Checkpoint {
            origin,
            size,
            root,
            extensions,
        })
}

/// Strings made of note-like pieces, so that parsing gets past the first checks.
fn note_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_owned()),
        Just("\n\n".to_owned()),
        Just("\u{2014} ".to_owned()),
        Just("\u{2014}".to_owned()),
        Just(" ".to_owned()),
        Just("+".to_owned()),
        Just("=".to_owned()),
        Just("log".to_owned()),
        Just("0".to_owned()),
        Just("42".to_owned()),
        Just("AAAAAAAA".to_owned()),
        Just("AQ==".to_owned()),
        Just(STANDARD.encode([9u8; 32])),
        Just(STANDARD.encode([7u8; 68])),
        "[a-zA-Z0-9/+=]{0,12}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsers_never_panic(s in any::<String>()) {
        let _ = parse_note(&s);
        let _ = Checkpoint::parse_body(&s);
        let _ = parse_verifier_key(&s);
        let _ = parse_signer_key(&s);
        let _ = verify_checkpoint(&s, &[]);
    }

    #[test]
    fn parsers_never_panic_on_note_like_input(s in note_like(), seed in any::<[u8; 32]>()) {
        let k = key(seed);
        let _ = parse_note(&s);
        let _ = Checkpoint::parse_body(&s);
        let _ = parse_verifier_key(&s);
        let _ = parse_signer_key(&format!("PRIVATE+KEY+{s}"));
        let _ = verify_checkpoint(&s, &[("log".to_owned(), k.verifying_key())]);
        let _ = add_signature(&s, "log", &k);
    }

    #[test]
    fn checkpoint_round_trip(cp in checkpoint_strategy(), seed in any::<[u8; 32]>()) {
        let body = cp.body();
        prop_assert_eq!(Checkpoint::parse_body(&body), Ok(cp.clone()));
        let k = key(seed);
        let note = sign(&body, "log.example/a", &k).unwrap();
        let trusted = [("log.example/a".to_owned(), k.verifying_key())];
        prop_assert_eq!(verify_checkpoint(&note, &trusted), Ok(cp));
        let parsed = parse_note(&note).unwrap();
        prop_assert_eq!(parsed.text, body);
        prop_assert_eq!(parsed.signatures[0].signature.len(), 64);
        // Key strings round trip too.
        prop_assert_eq!(
            parse_verifier_key(&verifier_key("log.example/a", &k.verifying_key())),
            Ok(("log.example/a".to_owned(), k.verifying_key()))
        );
    }

    #[test]
    fn any_change_to_the_signed_text_is_rejected(
        cp in checkpoint_strategy(),
        seed in any::<[u8; 32]>(),
        at in any::<usize>(),
        with in "[ -~]",
    ) {
        let k = key(seed);
        let body = cp.body();
        let note = sign(&body, "log", &k).unwrap();
        let trusted = [("log".to_owned(), k.verifying_key())];
        // Replace one character of the body (not its final newline) by another printable one.
        let chars: Vec<(usize, char)> = body.char_indices().collect();
        let (pos, old) = chars[at % (chars.len() - 1)];
        prop_assume!(old.to_string() != with);
        let mut tampered = body.clone();
        tampered.replace_range(pos..pos + old.len_utf8(), &with);
        let tampered_note = format!("{tampered}{}", &note[body.len()..]);
        prop_assert!(verify_checkpoint(&tampered_note, &trusted).is_err());
    }

    #[test]
    fn any_change_to_the_signature_is_rejected(
        cp in checkpoint_strategy(),
        seed in any::<[u8; 32]>(),
        at in 0usize..68,
        bit in 0u8..8,
    ) {
        let k = key(seed);
        let note = sign(&cp.body(), "log", &k).unwrap();
        let trusted = [("log".to_owned(), k.verifying_key())];
        let mut parsed = parse_note(&note).unwrap();
        let mut raw = parsed.signatures[0].key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&parsed.signatures[0].signature);
        raw[at] ^= 1 << bit;
        parsed.signatures[0].key_id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        parsed.signatures[0].signature = raw[4..].to_vec();
        let err = verify_checkpoint(&parsed.encode(), &trusted).unwrap_err();
        if at < 4 {
            // A changed key id names another (unknown) key.
            prop_assert_eq!(err, CheckpointError::NoTrustedSignature { unknown: 1 });
        } else {
            let is_invalid = matches!(err, CheckpointError::InvalidSignature { .. });
            prop_assert!(is_invalid);
        }
    }
}

#[test]
fn unknown_signature_types_are_ignored() {
    // A witness cosignature (c2sp.org/tlog-cosignature, 8-byte timestamp + 64-byte signature) by a
    // key we do not know has 72 signature bytes: it must be skipped, not rejected.
    let k = key([1; 32]);
    let body = Checkpoint {
        origin: "log".into(),
        size: 1,
        root: [0; 32],
        extensions: vec![],
    }
    .body();
    let note = sign(&body, "log", &k).unwrap();
    let cosig = STANDARD.encode([0x5au8; 4 + 72]);
    let with_cosig = format!("{note}\u{2014} witness.example {cosig}\n");
    let trusted = [("log".to_owned(), k.verifying_key())];
    assert_eq!(verify_checkpoint(&with_cosig, &trusted).unwrap().size, 1);
    let parsed = parse_note(&with_cosig).unwrap();
    assert_eq!(parsed.signatures[1].signature.len(), 72);
    assert_eq!(parsed.encode(), with_cosig);
}

#[test]
fn verify_note_reports_each_trusted_key_once() {
    let (a, b) = (key([1; 32]), key([2; 32]));
    let body = "text\n";
    let note = sign_many(body, &[("a", &a), ("b", &b), ("a", &a)]).unwrap();
    let trusted = [
        ("a".to_owned(), a.verifying_key()),
        ("b".to_owned(), b.verifying_key()),
    ];
    let v = verify_note(&note, &trusted).unwrap();
    assert_eq!(
        v.signatures
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
}

#[test]
fn two_different_trusted_keys_with_the_same_name_and_id_are_refused() {
    // Key ids are 32 bits, so finding a real collision is out of reach here; the check is on the
    // trusted list itself: the same name and key but listed twice is fine, and a signature by a
    // key whose name matches but whose id does not is ignored.
    let (a, b) = (key([1; 32]), key([2; 32]));
    let note = sign("text\n", "same", &a).unwrap();
    let trusted = [
        ("same".to_owned(), a.verifying_key()),
        ("same".to_owned(), b.verifying_key()),
    ];
    assert_eq!(verify_note(&note, &trusted).unwrap().signatures.len(), 1);
    let only_b = [("same".to_owned(), b.verifying_key())];
    assert_eq!(
        verify_note(&note, &only_b),
        Err(CheckpointError::NoTrustedSignature { unknown: 1 })
    );
}

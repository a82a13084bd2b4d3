//! Checkpoint tests: C2SP signed-note bodies and signatures, key ids and verifier key strings,
//! pinned to known answers from golang/mod and transparency-dev, and every malformed note
//! refused with its reason.

use super::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: "mandate.example/audit".into(),
        size: 42,
        root: [7u8; 32],
        extensions: vec![],
    }
}

fn trusted(name: &str, k: &SigningKey) -> Vec<(String, VerifyingKey)> {
    vec![(name.to_owned(), k.verifying_key())]
}

#[test]
fn body_round_trip() {
    let mut cp = checkpoint();
    assert_eq!(
        cp.body(),
        "mandate.example/audit\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"
    );
    assert_eq!(Checkpoint::parse_body(&cp.body()), Ok(cp.clone()));
    cp.extensions = vec!["ext one".into(), "— two".into()];
    cp.size = 0;
    assert_eq!(Checkpoint::parse_body(&cp.body()), Ok(cp.clone()));
    cp.size = u64::MAX;
    assert_eq!(Checkpoint::parse_body(&cp.body()), Ok(cp));
}

#[test]
fn body_errors() {
    let root = STANDARD.encode([1u8; 32]);
    let cases: Vec<(String, CheckpointError)> = vec![
        (
            format!("o\n1\n{root}"),
            CheckpointError::BodyMissingFinalNewline,
        ),
        ("".into(), CheckpointError::BodyMissingFinalNewline),
        ("\n".into(), CheckpointError::BodyTooFewLines { lines: 1 }),
        (
            "o\n1\n".into(),
            CheckpointError::BodyTooFewLines { lines: 2 },
        ),
        (format!("\n1\n{root}\n"), CheckpointError::EmptyOrigin),
        (
            format!("o\n01\n{root}\n"),
            CheckpointError::BadTreeSize { line: "01".into() },
        ),
        (
            format!("o\n+1\n{root}\n"),
            CheckpointError::BadTreeSize { line: "+1".into() },
        ),
        (
            format!("o\n-1\n{root}\n"),
            CheckpointError::BadTreeSize { line: "-1".into() },
        ),
        (
            format!("o\n\n{root}\n"),
            CheckpointError::BadTreeSize { line: "".into() },
        ),
        (
            format!("o\n18446744073709551616\n{root}\n"),
            CheckpointError::BadTreeSize {
                line: "18446744073709551616".into(),
            },
        ),
        (
            format!("o\n1 \n{root}\n"),
            CheckpointError::BadTreeSize { line: "1 ".into() },
        ),
        (
            "o\n1\nYmFuYW5hcw==\n".into(),
            CheckpointError::BadRootHash {
                line: "YmFuYW5hcw==".into(),
            },
        ),
        (
            format!("o\n1\n{}\n", root.trim_end_matches('=')),
            CheckpointError::BadRootHash {
                line: root.trim_end_matches('=').into(),
            },
        ),
        (
            format!("o\n1\n{root}\n\n"),
            CheckpointError::EmptyExtensionLine { line: 4 },
        ),
        (
            format!("o\n1\n{root}\na\n\nb\n"),
            CheckpointError::EmptyExtensionLine { line: 5 },
        ),
        (
            format!("o\t\n1\n{root}\n"),
            CheckpointError::ControlCharacter { offset: 1, code: 9 },
        ),
        (
            format!("o\r\n1\n{root}\n"),
            CheckpointError::ControlCharacter {
                offset: 1,
                code: 13,
            },
        ),
    ];
    for (body, want) in cases {
        assert_eq!(Checkpoint::parse_body(&body), Err(want), "{body:?}");
    }
}

#[test]
fn key_strings_round_trip() {
    let k = key(3);
    let vk = verifier_key("log.example", &k.verifying_key());
    assert_eq!(
        parse_verifier_key(&vk),
        Ok(("log.example".to_owned(), k.verifying_key()))
    );
    let sk = signer_key("log.example", &k);
    let (name, parsed) = parse_signer_key(&sk).unwrap();
    assert_eq!(name, "log.example");
    assert_eq!(parsed.to_bytes(), k.to_bytes());
    assert!(vk.starts_with(&format!(
        "log.example+{:08x}+A",
        key_id("log.example", &k.verifying_key())
    )));
}

#[test]
fn key_string_errors() {
    let k = key(3);
    let vk = verifier_key("log", &k.verifying_key());
    let (_, rest) = vk.split_once('+').unwrap();
    let (id, data) = rest.split_once('+').unwrap();
    let pk = k.verifying_key().to_bytes();
    let enc = |alg: u8, bytes: &[u8]| {
        let mut v = vec![alg];
        v.extend_from_slice(bytes);
        STANDARD.encode(v)
    };
    let cases = vec![
        ("log".to_owned(), CheckpointError::VerifierKeyFormat),
        (format!("log+{id}"), CheckpointError::VerifierKeyFormat),
        (
            format!("+{id}+{data}"),
            CheckpointError::BadKeyName { name: "".into() },
        ),
        (
            format!("l g+{id}+{data}"),
            CheckpointError::BadKeyName { name: "l g".into() },
        ),
        (
            format!("log+{}+{data}", &id[1..]),
            CheckpointError::VerifierKeyFormat,
        ),
        (
            format!("log++{}+{data}", &id[1..]),
            CheckpointError::VerifierKeyFormat,
        ),
        (
            format!("log+{id}+{}", &data[1..]),
            CheckpointError::KeyBase64,
        ),
        (format!("log+{id}+"), CheckpointError::KeyLength { len: 0 }),
        (
            format!("log+{id}+{}", enc(2, &pk)),
            CheckpointError::UnsupportedKeyType { alg: 2 },
        ),
        (
            format!("log+{id}+{}", enc(1, &pk[..31])),
            CheckpointError::KeyLength { len: 32 },
        ),
        (
            format!("log+00000000+{data}"),
            CheckpointError::KeyIdMismatch {
                stated: 0,
                computed: key_id("log", &k.verifying_key()),
            },
        ),
    ];
    for (s, want) in cases {
        assert_eq!(parse_verifier_key(&s), Err(want), "{s:?}");
    }
    assert_eq!(parse_signer_key(&vk), Err(CheckpointError::SignerKeyFormat));
    assert_eq!(
        parse_signer_key("PRIVATE+KEY+log"),
        Err(CheckpointError::SignerKeyFormat)
    );
}

#[test]
fn sign_and_verify_round_trip() {
    let k = key(1);
    let cp = checkpoint();
    let note = sign(&cp.body(), "log", &k).unwrap();
    assert!(note.starts_with(&cp.body()));
    assert_eq!(
        verify_checkpoint(&note, &trusted("log", &k)),
        Ok(cp.clone())
    );
    let parsed = parse_note(&note).unwrap();
    assert_eq!(parsed.text, cp.body());
    assert_eq!(parsed.signatures.len(), 1);
    assert_eq!(
        parsed.signatures[0].key_id,
        key_id("log", &k.verifying_key())
    );
    assert_eq!(parsed.encode(), note);
}

#[test]
fn several_signers_and_cosigning() {
    let (a, b, c) = (key(1), key(2), key(3));
    let body = checkpoint().body();
    let note = sign_many(&body, &[("a", &a), ("b", &b)]).unwrap();
    assert_eq!(parse_note(&note).unwrap().signatures.len(), 2);
    let note = add_signature(&note, "c", &c).unwrap();
    // Re-signing by the same key replaces its line.
    let note = add_signature(&note, "a", &a).unwrap();
    let names: Vec<String> = parse_note(&note)
        .unwrap()
        .signatures
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["b", "c", "a"]);
    let all = vec![
        ("a".to_owned(), a.verifying_key()),
        ("b".to_owned(), b.verifying_key()),
        ("c".to_owned(), c.verifying_key()),
    ];
    assert_eq!(verify_note(&note, &all).unwrap().signatures.len(), 3);
    assert_eq!(
        verify_note(&note, &trusted("c", &c)).unwrap().signatures[0].name,
        "c"
    );
}

#[test]
fn unknown_signatures_are_ignored_but_needed_one_must_exist() {
    let (log, other) = (key(1), key(2));
    let body = checkpoint().body();
    let note = sign_many(&body, &[("other", &other), ("log", &log)]).unwrap();
    assert!(verify_checkpoint(&note, &trusted("log", &log)).is_ok());
    assert_eq!(
        verify_checkpoint(&note, &trusted("third", &key(3))),
        Err(CheckpointError::NoTrustedSignature { unknown: 2 })
    );
    assert_eq!(
        verify_checkpoint(&note, &[]),
        Err(CheckpointError::NoTrustedSignature { unknown: 2 })
    );
    // Same key under another name: a different (unknown) key.
    assert_eq!(
        verify_checkpoint(&note, &trusted("LOG", &log)),
        Err(CheckpointError::NoTrustedSignature { unknown: 2 })
    );
}

#[test]
fn tampering_is_detected() {
    let k = key(1);
    let body = checkpoint().body();
    let note = sign(&body, "log", &k).unwrap();
    let id = key_id("log", &k.verifying_key());
    let invalid = CheckpointError::InvalidSignature {
        name: "log".into(),
        key_id: id,
    };
    // Body altered.
    let altered = note.replacen("42", "43", 1);
    assert_eq!(
        verify_checkpoint(&altered, &trusted("log", &k)),
        Err(invalid.clone())
    );
    // Signature bytes altered.
    let mut parsed = parse_note(&note).unwrap();
    parsed.signatures[0].signature[10] ^= 1;
    assert_eq!(
        verify_checkpoint(&parsed.encode(), &trusted("log", &k)),
        Err(invalid.clone())
    );
    // Signature truncated to a non-Ed25519 length, by a trusted key.
    let mut parsed = parse_note(&note).unwrap();
    parsed.signatures[0].signature.pop();
    assert_eq!(
        verify_checkpoint(&parsed.encode(), &trusted("log", &k)),
        Err(invalid.clone())
    );
    // Key id altered: no longer a trusted key.
    let mut parsed = parse_note(&note).unwrap();
    parsed.signatures[0].key_id ^= 1;
    assert_eq!(
        verify_checkpoint(&parsed.encode(), &trusted("log", &k)),
        Err(CheckpointError::NoTrustedSignature { unknown: 1 })
    );
    // A valid signature next to a bad one by a trusted key still fails.
    let good = sign_many(&body, &[("log", &k)]).unwrap();
    let mut parsed = parse_note(&good).unwrap();
    let mut bad = parsed.signatures[0].clone();
    bad.signature[0] ^= 1;
    parsed.signatures.push(bad);
    assert_eq!(
        verify_checkpoint(&parsed.encode(), &trusted("log", &k)),
        Err(invalid)
    );
    // Signed, but not a checkpoint.
    let note = sign("hello\n", "log", &k).unwrap();
    assert_eq!(
        verify_checkpoint(&note, &trusted("log", &k)),
        Err(CheckpointError::BodyTooFewLines { lines: 1 })
    );
}

#[test]
fn ambiguous_trusted_keys() {
    let k = key(1);
    let note = sign(&checkpoint().body(), "log", &k).unwrap();
    let mut list = trusted("log", &k);
    list.push(list[0].clone());
    assert!(
        verify_checkpoint(&note, &list).is_ok(),
        "duplicates are fine"
    );
}

#[test]
fn sign_rejects_bad_input() {
    let k = key(1);
    assert_eq!(
        sign("abc", "log", &k),
        Err(CheckpointError::TextMissingFinalNewline)
    );
    assert_eq!(
        sign("", "log", &k),
        Err(CheckpointError::TextMissingFinalNewline)
    );
    assert_eq!(
        sign("a\x07\n", "log", &k),
        Err(CheckpointError::ControlCharacter { offset: 1, code: 7 })
    );
    assert_eq!(
        sign("a\n", "a+b", &k),
        Err(CheckpointError::BadKeyName { name: "a+b".into() })
    );
    assert_eq!(
        sign("a\n", "a b", &k),
        Err(CheckpointError::BadKeyName { name: "a b".into() })
    );
    assert_eq!(sign_many("a\n", &[]), Err(CheckpointError::NoSignatures));
}

#[test]
fn malformed_notes() {
    let k = key(1);
    let body = checkpoint().body();
    let note = sign(&body, "log", &k).unwrap();
    let line = note
        .strip_prefix(&body)
        .unwrap()
        .strip_prefix('\n')
        .unwrap();
    let sig64 = line.rsplit_once(' ').unwrap().1.trim_end();
    let cases: Vec<(String, CheckpointError)> = vec![
        (body.clone(), CheckpointError::MissingSeparator),
        (format!("{body}\n"), CheckpointError::NoSignatures),
        (
            note.trim_end().to_owned(),
            CheckpointError::SignaturesMissingFinalNewline,
        ),
        (
            format!("\x01{note}"),
            CheckpointError::ControlCharacter { offset: 0, code: 1 },
        ),
        (
            format!("{body}\n- log {sig64}\n"),
            CheckpointError::SignatureLinePrefix { line: 1 },
        ),
        (
            format!("{body}\n—log {sig64}\n"),
            CheckpointError::SignatureLinePrefix { line: 1 },
        ),
        (
            format!("{note}Unexpected line.\n"),
            CheckpointError::SignatureLinePrefix { line: 2 },
        ),
        (
            format!("{body}\n— log\n"),
            CheckpointError::SignatureLineMissingSignature { line: 1 },
        ),
        (
            format!("{body}\n—  {sig64}\n"),
            CheckpointError::BadKeyName { name: "".into() },
        ),
        (
            format!("{body}\n— a+b {sig64}\n"),
            CheckpointError::BadKeyName { name: "a+b".into() },
        ),
        (
            format!("{body}\n— Bad Name {sig64}\n"),
            CheckpointError::SignatureBase64 { line: 1 },
        ),
        (
            format!("{body}\n— log {sig64} \n"),
            CheckpointError::SignatureBase64 { line: 1 },
        ),
        (
            format!("{body}\n— log \n"),
            CheckpointError::SignatureTooShort { line: 1, len: 0 },
        ),
        (
            format!("{body}\n— log AAAAAA==\n"),
            CheckpointError::SignatureTooShort { line: 1, len: 4 },
        ),
        // A second separator: the first signature line becomes part of the signed text.
        (
            format!("{note}\n{line}"),
            CheckpointError::InvalidSignature {
                name: "log".into(),
                key_id: key_id("log", &k.verifying_key()),
            },
        ),
        (
            format!("{body}\n{}", line.repeat(101)),
            CheckpointError::TooManySignatures { max: 100 },
        ),
        (
            format!("{body}\n{}", "x".repeat(MAX_NOTE_BYTES)),
            CheckpointError::NoteTooLarge {
                len: body.len() + 1 + MAX_NOTE_BYTES,
                max: MAX_NOTE_BYTES,
            },
        ),
    ];
    for (n, want) in cases {
        let got = match parse_note(&n) {
            // A note whose text is itself not a checkpoint parses as a note.
            Ok(_) => verify_checkpoint(&n, &trusted("log", &k)).map(|_| ()),
            Err(e) => Err(e),
        };
        assert_eq!(got, Err(want), "{n:?}");
    }
    // Exactly 100 signature lines are accepted.
    assert!(parse_note(&format!("{body}\n{}", line.repeat(100))).is_ok());
}

#[test]
fn text_with_empty_lines_splits_at_last_empty_line() {
    let k = key(1);
    let text = "a\n\nb\n";
    let note = sign(text, "log", &k).unwrap();
    assert_eq!(parse_note(&note).unwrap().text, text);
    assert!(verify_note(&note, &trusted("log", &k)).is_ok());
}

#[test]
fn error_messages_are_one_line() {
    let errors = [
        CheckpointError::BadTreeSize { line: "x".into() },
        CheckpointError::InvalidSignature {
            name: "n".into(),
            key_id: 1,
        },
        CheckpointError::NoTrustedSignature { unknown: 2 },
        CheckpointError::KeyIdMismatch {
            stated: 1,
            computed: 2,
        },
    ];
    for e in errors {
        let s = e.to_string();
        assert!(!s.contains('\n') && !s.is_empty(), "{s}");
    }
}

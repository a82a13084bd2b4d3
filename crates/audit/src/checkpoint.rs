//! C2SP `tlog-checkpoint` bodies inside C2SP `signed-note` envelopes, signed with Ed25519.
//!
//! A checkpoint body is `<origin>\n<tree size>\n<base64 root hash>\n` followed by optional
//! non-empty extension lines (<https://c2sp.org/tlog-checkpoint>). A signed note is the text, an
//! empty line, and one or more lines `— <key name> <base64(key id || signature)>\n`
//! (<https://c2sp.org/signed-note>); the formats and key strings are those of Go's
//! `golang.org/x/mod/sumdb/note`, so notes and keys are interchangeable with it.
//!
//! Verification follows the signed-note rules: signatures whose (key name, key id) is not among
//! the trusted keys are ignored, a signature by a trusted key that does not verify rejects the
//! note, and at least one trusted signature must verify.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Largest note accepted by [`parse_note`], in bytes (room for well over 16 post-quantum-sized
/// signatures, as the signed-note spec asks verifiers to accept).
pub const MAX_NOTE_BYTES: usize = 256 * 1024;
/// Most signature lines accepted in one note.
pub const MAX_SIGNATURES: usize = 100;
/// Signature type byte of Ed25519 keys in key ids and key strings.
const ALG_ED25519: u8 = 0x01;
/// Starts every signature line: em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// What went wrong reading, signing or verifying a checkpoint or note.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CheckpointError {
    // --- checkpoint body ---
    /// The body does not end with a newline.
    #[error("checkpoint body must end with a newline")]
    BodyMissingFinalNewline,
    /// Origin, size and root are mandatory.
    #[error(
        "checkpoint body has {lines} line(s); it needs an origin, a tree size and a root hash line"
    )]
    BodyTooFewLines { lines: usize },
    /// The first line is empty.
    #[error("checkpoint origin (line 1) is empty")]
    EmptyOrigin,
    /// The tree size line is not canonical decimal.
    #[error("checkpoint tree size (line 2) {line:?} is not a decimal number without sign or leading zeros that fits in 64 bits")]
    BadTreeSize { line: String },
    /// The root hash line is not base64 of 32 bytes.
    #[error("checkpoint root hash (line 3) {line:?} is not standard padded base64 of 32 bytes")]
    BadRootHash { line: String },
    /// Extension lines must be non-empty.
    #[error("checkpoint extension line {line} is empty; extension lines must be non-empty")]
    EmptyExtensionLine { line: usize },

    // --- note text and envelope ---
    /// Notes are bounded in size.
    #[error("note is {len} bytes, more than the {max} accepted")]
    NoteTooLarge { len: usize, max: usize },
    /// Notes must not contain ASCII control characters other than newline.
    #[error(
        "note contains control character U+{code:04X} at byte {offset}; only newline is allowed"
    )]
    ControlCharacter { offset: usize, code: u32 },
    /// A note text must be non-empty and end with a newline.
    #[error("note text must be non-empty and end with a newline")]
    TextMissingFinalNewline,
    /// There is no empty line before the signatures.
    #[error("note has no empty line separating its text from its signature lines")]
    MissingSeparator,
    /// The signature block is empty.
    #[error("note has no signature lines after the empty line")]
    NoSignatures,
    /// The last signature line lacks its newline.
    #[error("the last signature line of the note does not end with a newline")]
    SignaturesMissingFinalNewline,
    /// A signature line does not start with "— ".
    #[error("signature line {line} does not start with an em dash (U+2014) and a space")]
    SignatureLinePrefix { line: usize },
    /// A signature line has no space between name and signature.
    #[error("signature line {line} has no space between the key name and the signature")]
    SignatureLineMissingSignature { line: usize },
    /// A key name is not valid.
    #[error("key name {name:?} is invalid: it must be non-empty, without spaces or '+'")]
    BadKeyName { name: String },
    /// The signature is not standard base64.
    #[error("signature on signature line {line} is not standard padded base64")]
    SignatureBase64 { line: usize },
    /// The signature is too short for a key id and a signature.
    #[error("signature on signature line {line} decodes to {len} bytes; it needs a 4-byte key id and at least one signature byte")]
    SignatureTooShort { line: usize, len: usize },
    /// Too many signature lines.
    #[error("note has more than {max} signature lines")]
    TooManySignatures { max: usize },

    // --- verification ---
    /// No trusted key signed the note.
    #[error("note has no signature by a trusted key ({unknown} signature(s) by unknown keys were ignored)")]
    NoTrustedSignature { unknown: usize },
    /// A trusted key's signature did not verify.
    #[error("signature by trusted key {name}+{key_id:08x} does not verify: the note was altered or the signature is corrupt")]
    InvalidSignature { name: String, key_id: u32 },
    /// Two different trusted keys share a name and key id.
    #[error("two different trusted keys have name {name} and key id {key_id:08x}; remove one")]
    AmbiguousKey { name: String, key_id: u32 },

    // --- key strings ---
    /// The key string does not have the right shape.
    #[error("verifier key must look like <name>+<8 hex digit key id>+<base64 key>")]
    VerifierKeyFormat,
    /// The signer key string does not have the right shape.
    #[error("signer key must look like PRIVATE+KEY+<name>+<8 hex digit key id>+<base64 key>")]
    SignerKeyFormat,
    /// The key data is not base64.
    #[error("key data is not standard padded base64")]
    KeyBase64,
    /// Only Ed25519 keys are supported.
    #[error("key type byte 0x{alg:02x} is not supported; only Ed25519 (0x01) is")]
    UnsupportedKeyType { alg: u8 },
    /// The key data has the wrong length.
    #[error("Ed25519 key data is {len} bytes; expected 33 (type byte 0x01 and 32 key bytes)")]
    KeyLength { len: usize },
    /// The public key bytes are not a valid Ed25519 point.
    #[error("key bytes are not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// The key id in the string is not the one of the key.
    #[error("key id {stated:08x} in the key string does not match the key and name (expected {computed:08x})")]
    KeyIdMismatch { stated: u32, computed: u32 },
}

/// A `tlog-checkpoint` body: origin, tree size, root hash and optional extension lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identifies the log (line 1); non-empty, no newline.
    pub origin: String,
    /// Number of leaves in the tree (line 2).
    pub size: u64,
    /// RFC 6962 root of the first `size` leaves (line 3).
    pub root: Hash,
    /// Opaque extension lines, each non-empty and without newline.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: every line ending in a newline. The result parses back with
    /// [`Checkpoint::parse_body`] when the origin and extensions are valid (non-empty, no newline
    /// or other control character).
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body strictly (see the module docs for the format).
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        check_control_chars(text)?;
        let Some(content) = text.strip_suffix('\n') else {
            return Err(CheckpointError::BodyMissingFinalNewline);
        };
        let lines: Vec<&str> = content.split('\n').collect();
        if lines.len() < 3 {
            // `content` may be empty ("\n"), which is one empty line.
            return Err(CheckpointError::BodyTooFewLines { lines: lines.len() });
        }
        let origin = lines[0];
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(lines[1]).ok_or_else(|| CheckpointError::BadTreeSize {
            line: lines[1].to_owned(),
        })?;
        let root = STANDARD
            .decode(lines[2])
            .ok()
            .and_then(|b| Hash::try_from(b).ok())
            .ok_or_else(|| CheckpointError::BadRootHash {
                line: lines[2].to_owned(),
            })?;
        let mut extensions = Vec::with_capacity(lines.len() - 3);
        for (i, ext) in lines[3..].iter().enumerate() {
            if ext.is_empty() {
                return Err(CheckpointError::EmptyExtensionLine { line: i + 4 });
            }
            extensions.push((*ext).to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// Canonical decimal: digits only, no leading zero unless the number is 0, fits in u64.
fn parse_size(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn check_control_chars(s: &str) -> Result<(), CheckpointError> {
    match s.bytes().position(|b| b < 0x20 && b != b'\n') {
        Some(offset) => Err(CheckpointError::ControlCharacter {
            offset,
            code: u32::from(s.as_bytes()[offset]),
        }),
        None => Ok(()),
    }
}

/// Signed-note key names: non-empty, no Unicode white space, no '+'.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '+')
}

fn check_name(name: &str) -> Result<(), CheckpointError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(CheckpointError::BadKeyName {
            name: name.to_owned(),
        })
    }
}

/// Key id of an Ed25519 key: the first 4 bytes, big-endian, of
/// `SHA-256(name || "\n" || 0x01 || public key)`.
pub fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn key_data(public: &VerifyingKey) -> String {
    let mut data = Vec::with_capacity(33);
    data.push(ALG_ED25519);
    data.extend_from_slice(public.as_bytes());
    STANDARD.encode(data)
}

/// The verifier key string `<name>+<key id as 8 lower-case hex>+<base64(0x01 || public key)>`, as
/// Go's `note.NewVerifier` reads it. The name is not checked; [`parse_verifier_key`] rejects
/// invalid ones.
pub fn verifier_key(name: &str, public: &VerifyingKey) -> String {
    format!("{name}+{:08x}+{}", key_id(name, public), key_data(public))
}

/// The signer key string `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`, as Go's
/// `note.NewSigner` reads it. It holds the secret key: keep it secret.
pub fn signer_key(name: &str, key: &SigningKey) -> String {
    let mut data = Vec::with_capacity(33);
    data.push(ALG_ED25519);
    data.extend_from_slice(key.as_bytes());
    format!(
        "PRIVATE+KEY+{name}+{:08x}+{}",
        key_id(name, &key.verifying_key()),
        STANDARD.encode(data)
    )
}

/// Splits `<name>+<8 hex>+<base64>` and decodes the Ed25519 key data (type byte and 32 bytes).
fn parse_key_parts(s: &str) -> Result<(&str, u32, [u8; 32]), CheckpointError> {
    let (name, rest) = s
        .split_once('+')
        .ok_or(CheckpointError::VerifierKeyFormat)?;
    let (id_hex, data64) = rest
        .split_once('+')
        .ok_or(CheckpointError::VerifierKeyFormat)?;
    check_name(name)?;
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CheckpointError::VerifierKeyFormat);
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| CheckpointError::VerifierKeyFormat)?;
    let data = STANDARD
        .decode(data64)
        .map_err(|_| CheckpointError::KeyBase64)?;
    match data.first() {
        None => return Err(CheckpointError::KeyLength { len: 0 }),
        Some(&alg) if alg != ALG_ED25519 => {
            return Err(CheckpointError::UnsupportedKeyType { alg })
        }
        Some(_) => {}
    }
    let key: [u8; 32] = data[1..]
        .try_into()
        .map_err(|_| CheckpointError::KeyLength { len: data.len() })?;
    Ok((name, id, key))
}

/// Parses a verifier key string (see [`verifier_key`]); checks the name, the key type, the key
/// and that the key id matches.
pub fn parse_verifier_key(s: &str) -> Result<(String, VerifyingKey), CheckpointError> {
    let (name, stated, key) = parse_key_parts(s)?;
    let public = VerifyingKey::from_bytes(&key).map_err(|_| CheckpointError::InvalidPublicKey)?;
    let computed = key_id(name, &public);
    if stated != computed {
        return Err(CheckpointError::KeyIdMismatch { stated, computed });
    }
    Ok((name.to_owned(), public))
}

/// Parses a signer key string (see [`signer_key`]); checks that the key id matches the public key.
pub fn parse_signer_key(s: &str) -> Result<(String, SigningKey), CheckpointError> {
    let rest = s
        .strip_prefix("PRIVATE+KEY+")
        .ok_or(CheckpointError::SignerKeyFormat)?;
    let (name, stated, seed) = parse_key_parts(rest).map_err(|e| match e {
        CheckpointError::VerifierKeyFormat => CheckpointError::SignerKeyFormat,
        other => other,
    })?;
    let key = SigningKey::from_bytes(&seed);
    let computed = key_id(name, &key.verifying_key());
    if stated != computed {
        return Err(CheckpointError::KeyIdMismatch { stated, computed });
    }
    Ok((name.to_owned(), key))
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id (first 4 decoded bytes, big-endian).
    pub key_id: u32,
    /// The signature bytes after the key id: 64 bytes for Ed25519; other signature types (e.g.
    /// witness cosignatures) have other lengths and are kept so that they can be ignored.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    fn line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, STANDARD.encode(raw))
    }
}

/// A parsed (not verified) signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, including its final newline.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// The note in its wire form: text, empty line, signature lines.
    pub fn encode(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.line());
        }
        s
    }
}

/// Checks the rules a note text must follow: non-empty, ends with a newline, no control
/// characters other than newline.
fn check_text(text: &str) -> Result<(), CheckpointError> {
    check_control_chars(text)?;
    if !text.ends_with('\n') {
        return Err(CheckpointError::TextMissingFinalNewline);
    }
    Ok(())
}

fn ed25519_signature(
    text: &str,
    name: &str,
    key: &SigningKey,
) -> Result<NoteSignature, CheckpointError> {
    check_name(name)?;
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: key_id(name, &key.verifying_key()),
        signature: key.sign(text.as_bytes()).to_bytes().to_vec(),
    })
}

/// Signs `body` (the note text, which must end with a newline) with one Ed25519 key and returns
/// the whole note.
pub fn sign(body: &str, name: &str, key: &SigningKey) -> Result<String, CheckpointError> {
    sign_many(body, &[(name, key)])
}

/// Signs `body` with several keys, one signature line each, in the order given.
pub fn sign_many(body: &str, signers: &[(&str, &SigningKey)]) -> Result<String, CheckpointError> {
    check_text(body)?;
    if signers.is_empty() {
        return Err(CheckpointError::NoSignatures);
    }
    let signatures = signers
        .iter()
        .map(|(name, key)| ed25519_signature(body, name, key))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SignedNote {
        text: body.to_owned(),
        signatures,
    }
    .encode())
}

/// Adds a signature to an existing note (e.g. a witness cosigning a checkpoint). An existing
/// signature line with the same key name and key id is replaced; the other lines are kept as they
/// are, unverified.
pub fn add_signature(note: &str, name: &str, key: &SigningKey) -> Result<String, CheckpointError> {
    let mut parsed = parse_note(note)?;
    let new = ed25519_signature(&parsed.text, name, key)?;
    parsed
        .signatures
        .retain(|s| !(s.name == new.name && s.key_id == new.key_id));
    if parsed.signatures.len() >= MAX_SIGNATURES {
        return Err(CheckpointError::TooManySignatures {
            max: MAX_SIGNATURES,
        });
    }
    parsed.signatures.push(new);
    Ok(parsed.encode())
}

/// Parses a signed note strictly, without verifying anything: size limit, UTF-8 without control
/// characters other than newline, text ending in a newline, an empty line, then 1 to
/// [`MAX_SIGNATURES`] well-formed signature lines and nothing else.
pub fn parse_note(note: &str) -> Result<SignedNote, CheckpointError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(CheckpointError::NoteTooLarge {
            len: note.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    check_control_chars(note)?;
    // The text ends at the last empty line; it keeps its own final newline.
    let split = note
        .rfind("\n\n")
        .ok_or(CheckpointError::MissingSeparator)?;
    let (text, block) = (&note[..=split], &note[split + 2..]);
    if block.is_empty() {
        return Err(CheckpointError::NoSignatures);
    }
    let Some(block) = block.strip_suffix('\n') else {
        return Err(CheckpointError::SignaturesMissingFinalNewline);
    };
    let mut signatures = Vec::new();
    for (i, line) in block.split('\n').enumerate() {
        let n = i + 1;
        if n > MAX_SIGNATURES {
            return Err(CheckpointError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(CheckpointError::SignatureLinePrefix { line: n })?;
        let (name, sig64) = rest
            .split_once(' ')
            .ok_or(CheckpointError::SignatureLineMissingSignature { line: n })?;
        check_name(name)?;
        let raw = STANDARD
            .decode(sig64)
            .map_err(|_| CheckpointError::SignatureBase64 { line: n })?;
        if raw.len() < 5 {
            return Err(CheckpointError::SignatureTooShort {
                line: n,
                len: raw.len(),
            });
        }
        signatures.push(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            signature: raw[4..].to_vec(),
        });
    }
    Ok(SignedNote {
        text: text.to_owned(),
        signatures,
    })
}

/// Verifies a note's signatures against trusted `(name, key)` pairs. Signatures whose name and key
/// id match no trusted key are ignored; every signature by a trusted key must verify; at least one
/// must exist. Returns the note with only the verified signatures (each trusted key once).
pub fn verify_note(
    note: &str,
    verifiers: &[(String, VerifyingKey)],
) -> Result<SignedNote, CheckpointError> {
    let parsed = parse_note(note)?;
    let known: Vec<(&str, u32, &VerifyingKey)> = verifiers
        .iter()
        .map(|(name, key)| (name.as_str(), key_id(name, key), key))
        .collect();
    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut unknown = 0;
    for sig in &parsed.signatures {
        let mut matching = known
            .iter()
            .filter(|(name, id, _)| *name == sig.name && *id == sig.key_id)
            .map(|(_, _, key)| *key);
        let Some(key) = matching.next() else {
            unknown += 1;
            continue;
        };
        if matching.any(|other| other != key) {
            return Err(CheckpointError::AmbiguousKey {
                name: sig.name.clone(),
                key_id: sig.key_id,
            });
        }
        let ok = <[u8; 64]>::try_from(sig.signature.as_slice())
            .map(|bytes| Signature::from_bytes(&bytes))
            .is_ok_and(|s| key.verify_strict(parsed.text.as_bytes(), &s).is_ok());
        if !ok {
            return Err(CheckpointError::InvalidSignature {
                name: sig.name.clone(),
                key_id: sig.key_id,
            });
        }
        if !verified
            .iter()
            .any(|v| v.name == sig.name && v.key_id == sig.key_id)
        {
            verified.push(sig.clone());
        }
    }
    if verified.is_empty() {
        return Err(CheckpointError::NoTrustedSignature { unknown });
    }
    Ok(SignedNote {
        text: parsed.text,
        signatures: verified,
    })
}

/// Verifies a note: at least one signature by one of `verifiers` (name, key) must be valid;
/// signatures by unknown keys are ignored (per spec); a signature by a known key (matching name
/// AND key id) that does not verify is an error. Returns the checkpoint parsed from the text.
///
/// The origin is not compared with anything: callers that expect a given log must check
/// `checkpoint.origin` themselves.
pub fn verify_checkpoint(
    note: &str,
    verifiers: &[(String, VerifyingKey)],
) -> Result<Checkpoint, CheckpointError> {
    let verified = verify_note(note, verifiers)?;
    Checkpoint::parse_body(&verified.text)
}

#[cfg(test)]
mod tests;

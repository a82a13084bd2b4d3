//! Helpers shared by the fuzz targets and the seed generator.
//!
//! Each target feeds its input to the parsers twice:
//! 1. as text (`String::from_utf8_lossy`, so non-UTF-8 bytes still reach the parsers as U+FFFD),
//! 2. for the token targets, as a *signed* token: when the input holds a newline, the part
//!    before it is taken as the JWS header JSON and the rest as the payload JSON; both are
//!    base64url-encoded and signed with the fuzzing key. The signature then verifies, so the
//!    fuzzer reaches the claim checks (iss/aud/time window/delegation chain, DPoP htm/htu/ath)
//!    instead of stopping at the signature, which no mutation of a raw token can get past.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mandate_core::{PublicKey, SecretKey};

/// Seed of the only key the targets trust (the same one as `parsers_never_panic.rs`).
pub const SEED: [u8; 32] = [5; 32];

/// The fuzzing signing key.
pub fn secret() -> &'static SecretKey {
    static K: OnceLock<SecretKey> = OnceLock::new();
    K.get_or_init(|| SecretKey::from_seed(&SEED))
}

/// Its public half.
pub fn public() -> PublicKey {
    secret().public()
}

/// The issuer's key map: one key, under its RFC 7638 thumbprint.
pub fn keys() -> &'static HashMap<String, PublicKey> {
    static M: OnceLock<HashMap<String, PublicKey>> = OnceLock::new();
    M.get_or_init(|| [(public().thumbprint(), public())].into())
}

/// The input as text; invalid UTF-8 sequences become U+FFFD instead of being skipped.
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// `header-json \n payload-json` → a compact JWS signed by [`secret`]; `None` without a newline.
pub fn signed(data: &[u8]) -> Option<String> {
    let i = data.iter().position(|&b| b == b'\n')?;
    Some(sign_raw(&data[..i], &data[i + 1..]))
}

/// Signs raw header and payload bytes (not necessarily JSON) with [`secret`].
pub fn sign_raw(header: &[u8], payload: &[u8]) -> String {
    let mut out = URL_SAFE_NO_PAD.encode(header);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    let sig = secret().sign(out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    out
}

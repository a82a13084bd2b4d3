//! Ed25519 keys in every form Mandate reads, and their RFC 7638 key ids.
//!
//! A public key is accepted as base64 of the raw 32 bytes (what `tweetnacl`'s
//! `nacl.sign.keyPair()` gives), base64url of the same, a JWK, an OpenSSH `ssh-ed25519` line or a
//! PEM SPKI block. Anything else is refused with a message naming those forms. Secret keys are
//! read from a private JWK (our file format), a tweetnacl 64-byte secret key or PKCS#8 PEM.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The accepted public key forms, quoted in every refusal.
pub const ACCEPTED_FORMS: &str = "base64 of the raw 32-byte key (tweetnacl), base64url of the same, \
a JWK {\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":...}, an OpenSSH 'ssh-ed25519 AAAA...' line, or a PEM \
'-----BEGIN PUBLIC KEY-----' block";

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is none of the accepted public key forms.
    #[error("unrecognised public key ({0}); accepted forms: {ACCEPTED_FORMS}")]
    Unrecognised(String),
    /// The encoding was recognised but the bytes are not a usable Ed25519 public key.
    #[error("not a usable Ed25519 public key ({0}); accepted forms: {ACCEPTED_FORMS}")]
    BadKey(String),
    /// A private key was given where a public key belongs.
    #[error("this is a private key: pass only the public half (for a JWK, drop the \"d\" member)")]
    PrivateGiven,
    /// A secret key file or value could not be read.
    #[error("unreadable Ed25519 secret key ({0}); expected a private JWK with \"d\", a tweetnacl base64 64-byte secret key, or PKCS#8 PEM")]
    BadSecret(String),
}

/// An Ed25519 public key that is a valid, non-weak curve point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.x())
    }
}

impl PublicKey {
    /// Builds a key from its raw 32 bytes, refusing invalid and small-order points.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let key = Self::decode_point(bytes)?;
        if key.0.is_weak() {
            return Err(KeyError::BadKey("a small-order (weak) point".into()));
        }
        Ok(key)
    }

    fn decode_point(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::BadKey(format!("{} bytes where 32 are needed", bytes.len())))?;
        if let Some(k) = decoded::get(&arr) {
            return Ok(k);
        }
        let key = VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|_| KeyError::BadKey("not a point on Ed25519".into()))?;
        decoded::put(arr, key);
        Ok(key)
    }

    /// Reads a public key in any of the accepted forms (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(KeyError::Unrecognised("empty".into()));
        }
        if t.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(t)
                .map_err(|e| KeyError::Unrecognised(format!("invalid JSON: {e}")))?;
            return Self::from_jwk(&v);
        }
        if t.starts_with("-----BEGIN") {
            if t.contains("PRIVATE KEY") {
                return Err(KeyError::PrivateGiven);
            }
            return VerifyingKey::from_public_key_pem(t)
                .map_err(|e| KeyError::BadKey(format!("PEM: {e}")))
                .and_then(|vk| Self::from_bytes(vk.as_bytes()));
        }
        if let Some(rest) = t.strip_prefix("ssh-ed25519 ") {
            return Self::from_openssh_blob(rest.split_whitespace().next().unwrap_or(""));
        }
        if t.starts_with("ssh-") || t.starts_with("ecdsa-") {
            return Err(KeyError::BadKey(
                "an OpenSSH key of another type; only ssh-ed25519 is accepted".into(),
            ));
        }
        // Raw 32 bytes in base64 (tweetnacl) or base64url, padded or not. A 64-byte value is a
        // tweetnacl secret key, which must never be registered.
        let bytes = STANDARD
            .decode(t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(t))
            .or_else(|_| URL_SAFE.decode(t))
            .map_err(|_| KeyError::Unrecognised("not base64, JWK, OpenSSH or PEM".into()))?;
        match bytes.len() {
            32 => Self::from_bytes(&bytes),
            64 => Err(KeyError::PrivateGiven),
            n => Err(KeyError::BadKey(format!(
                "base64 decodes to {n} bytes where 32 are needed"
            ))),
        }
    }

    /// Reads a public JWK (`kty` OKP, `crv` Ed25519, `x`). A JWK carrying `d` is refused.
    pub fn from_jwk(v: &serde_json::Value) -> Result<Self, KeyError> {
        let key = Self::from_jwk_for_signature(v)?;
        if key.0.is_weak() {
            return Err(KeyError::BadKey("a small-order (weak) point".into()));
        }
        Ok(key)
    }

    /// Reads a JWK that is only used to check one signature (a DPoP proof's `jwk`). The
    /// small-order test is skipped here because [`PublicKey::verify`] (strict verification)
    /// refuses small-order keys itself: such a key can never verify anything.
    pub fn from_jwk_for_signature(v: &serde_json::Value) -> Result<Self, KeyError> {
        let get = |k: &str| v.get(k).and_then(|x| x.as_str());
        if get("kty") != Some("OKP") || get("crv") != Some("Ed25519") {
            return Err(KeyError::BadKey(
                "JWK must have \"kty\":\"OKP\" and \"crv\":\"Ed25519\"".into(),
            ));
        }
        if v.get("d").is_some() {
            return Err(KeyError::PrivateGiven);
        }
        let x = get("x").ok_or_else(|| KeyError::BadKey("JWK has no \"x\"".into()))?;
        let raw = URL_SAFE_NO_PAD
            .decode(x)
            .map_err(|_| KeyError::BadKey("JWK \"x\" is not unpadded base64url".into()))?;
        Self::decode_point(&raw)
    }

    fn from_openssh_blob(b64: &str) -> Result<Self, KeyError> {
        let blob = STANDARD
            .decode(b64)
            .map_err(|_| KeyError::BadKey("OpenSSH key body is not base64".into()))?;
        let bad = || KeyError::BadKey("malformed OpenSSH ssh-ed25519 key body".into());
        let mut rest: &[u8] = &blob;
        let mut field = || -> Result<Vec<u8>, KeyError> {
            if rest.len() < 4 {
                return Err(bad());
            }
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if rest.len() < 4 + n {
                return Err(bad());
            }
            let f = rest[4..4 + n].to_vec();
            rest = &rest[4 + n..];
            Ok(f)
        };
        if field()? != b"ssh-ed25519" {
            return Err(bad());
        }
        let key = field()?;
        if !rest.is_empty() {
            return Err(bad());
        }
        Self::from_bytes(&key)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The key's `x` member: base64url of the raw bytes, unpadded.
    pub fn x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }

    /// The public JWK, members in RFC 7638 order.
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({"crv": "Ed25519", "kty": "OKP", "x": self.x()})
    }

    /// RFC 7638 JWK thumbprint (SHA-256, base64url): Mandate's `kid` and DPoP `jkt`.
    pub fn thumbprint(&self) -> String {
        // The required members in lexicographic order, no whitespace (RFC 7638 §3.2, RFC 8037 §2).
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, self.x());
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The key as an OpenSSH public key line.
    pub fn to_openssh(&self) -> String {
        let mut blob = Vec::with_capacity(51);
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(self.as_bytes());
        format!("ssh-ed25519 {}", STANDARD.encode(blob))
    }

    /// Verifies an Ed25519 signature with the strict checks (no malleable or small-order forms).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        self.0.verify_strict(msg, &sig).is_ok()
    }
}

/// Points decompressed recently, by their encoding. Decompressing costs a field exponentiation
/// (a few microseconds), and a verifier sees the same few keys again and again: every DPoP proof
/// of an agent carries its key. A pure function's memo, so it changes no answer; bounded, and
/// emptied when full (keys a stranger sends only cost what they cost without it).
mod decoded {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use super::PublicKey;

    /// Most points remembered.
    const MAX: usize = 4096;

    fn memo() -> &'static Mutex<HashMap<[u8; 32], PublicKey>> {
        static MEMO: OnceLock<Mutex<HashMap<[u8; 32], PublicKey>>> = OnceLock::new();
        MEMO.get_or_init(Default::default)
    }

    pub(super) fn get(bytes: &[u8; 32]) -> Option<PublicKey> {
        memo()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(bytes)
            .copied()
    }

    pub(super) fn put(bytes: [u8; 32], key: PublicKey) {
        let mut m = memo().lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX {
            m.clear();
        }
        m.insert(bytes, key);
    }
}

/// An Ed25519 signing key. It never appears in `Debug` output.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(kid={})", self.public().thumbprint())
    }
}

impl SecretKey {
    /// Builds a key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// Makes a new key from the given cryptographically secure random source.
    pub fn generate<R: rand_core::CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        SecretKey(SigningKey::generate(rng))
    }

    /// Reads a private JWK, a tweetnacl base64 64-byte secret key, or PKCS#8 PEM.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        let bad = |m: &str| KeyError::BadSecret(m.to_string());
        if t.starts_with('{') {
            let v: serde_json::Value =
                serde_json::from_str(t).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
            let d = v
                .get("d")
                .and_then(|d| d.as_str())
                .ok_or_else(|| bad("JWK has no \"d\""))?;
            let seed = URL_SAFE_NO_PAD
                .decode(d)
                .map_err(|_| bad("\"d\" is not base64url"))?;
            let seed: [u8; 32] = seed.try_into().map_err(|_| bad("\"d\" is not 32 bytes"))?;
            let sk = Self::from_seed(&seed);
            if let Some(x) = v.get("x").and_then(|x| x.as_str()) {
                if x != sk.public().x() {
                    return Err(bad("\"x\" does not match \"d\""));
                }
            }
            return Ok(sk);
        }
        if t.starts_with("-----BEGIN") {
            return SigningKey::from_pkcs8_pem(t)
                .map(SecretKey)
                .map_err(|e| bad(&format!("PEM: {e}")));
        }
        let bytes = STANDARD
            .decode(t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(t))
            .map_err(|_| bad("not JSON, PEM or base64"))?;
        match bytes.len() {
            64 => {
                let seed: [u8; 32] = bytes[..32].try_into().expect("length checked");
                let sk = Self::from_seed(&seed);
                if sk.public().as_bytes()[..] != bytes[32..] {
                    return Err(bad("the public half does not match the seed"));
                }
                Ok(sk)
            }
            32 => Ok(Self::from_seed(
                bytes[..].try_into().expect("length checked"),
            )),
            n => Err(bad(&format!("{n} bytes"))),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The private JWK (our key file format), with `kid`.
    pub fn to_private_jwk(&self) -> serde_json::Value {
        let p = self.public();
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": p.x(),
            "d": URL_SAFE_NO_PAD.encode(self.0.to_bytes()), "kid": p.thumbprint(),
        })
    }

    /// The ed25519-dalek signing key (for signing formats other than JWS, such as the audit
    /// log's signed notes).
    pub fn signing_key(&self) -> SigningKey {
        self.0.clone()
    }

    /// Signs a message.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

#[cfg(test)]
mod tests;

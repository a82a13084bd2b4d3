//! The issuer's Ed25519 signing keys: creation, loading, signing, JWKS and rotation.
//!
//! Private keys live in files (mode 0600) named by their `kid`; the database lists the keys with
//! their retirement times. After `rotate`, the old key stays in the JWKS until the last mandate it
//! signed has expired, then it is dropped.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::RwLock;

use mandate_core::claims::MandateClaims;
use mandate_core::jws;
use mandate_core::{PublicKey, SecretKey};
use mandate_store::{IssuerKey, Store, StoreError};

/// Why the issuer keys could not be loaded or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerKeyError {
    /// The database failed.
    #[error("issuer keys: {0}")]
    Store(#[from] StoreError),
    /// A key file could not be read or written.
    #[error("issuer key file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key file or database entry is corrupt.
    #[error("issuer key {0} is corrupt: {1}")]
    Corrupt(String, String),
    /// No active key exists.
    #[error("no active issuer key: run `mandate init` first")]
    NoActiveKey,
}

struct Keys {
    signing: SecretKey,
    kid: String,
    verify: HashMap<String, PublicKey>,
    // The latest `exp` signed with `signing` by this process. Updated under the read lock as part
    // of signing, so a rotation (which takes the write lock) sees every mandate signed before it,
    // including those whose delegation records are not yet written.
    max_exp: AtomicI64,
}

/// The issuer's keys, shared by every request.
pub struct IssuerKeys {
    dir: PathBuf,
    inner: RwLock<Keys>,
}

fn key_path(dir: &Path, kid: &str) -> PathBuf {
    dir.join(format!("{kid}.jwk"))
}

/// Writes a secret key as a private JWK readable only by its owner.
pub fn write_secret_file(path: &Path, key: &SecretKey) -> std::io::Result<()> {
    write_private_file(path, key.to_private_jwk().to_string().as_bytes())
}

/// Creates a file readable only by its owner (refusing to overwrite one), with its parent
/// directories, and syncs it.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        private_dir(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Creates `dir` (and its parents) if missing and makes it owner-only (0700): it holds the
/// issuer's private keys and the audit HMAC key. A directory found wider is tightened, with a
/// warning.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        return std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    }
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "the issuer keys directory was open to others; made it owner-only (0700)");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

async fn create_key(store: &Store, dir: &Path, now: i64) -> Result<SecretKey, IssuerKeyError> {
    let key = SecretKey::generate(&mut rand::rngs::OsRng);
    let kid = key.public().thumbprint();
    let path = key_path(dir, &kid);
    write_secret_file(&path, &key).map_err(|source| IssuerKeyError::File { path, source })?;
    store
        .add_issuer_key(&IssuerKey {
            kid,
            public_key: key.public().x(),
            created_at: now,
            retired_at: None,
            retire_until: None,
        })
        .await?;
    Ok(key)
}

impl IssuerKeys {
    /// Makes the first signing key if none exists (used by `mandate init`). Returns its kid.
    pub async fn ensure(store: &Store, dir: &Path, now: i64) -> Result<String, IssuerKeyError> {
        let keys = store.issuer_keys().await?;
        if let Some(k) = keys.iter().find(|k| k.retired_at.is_none()) {
            return Ok(k.kid.clone());
        }
        Ok(create_key(store, dir, now).await?.public().thumbprint())
    }

    /// Loads the active signing key and every key still published.
    pub async fn load(store: &Store, dir: &Path) -> Result<Self, IssuerKeyError> {
        private_dir(dir).map_err(|source| IssuerKeyError::File {
            path: dir.to_path_buf(),
            source,
        })?;
        let rows = store.issuer_keys().await?;
        let active = rows
            .iter()
            .rev()
            .find(|k| k.retired_at.is_none())
            .ok_or(IssuerKeyError::NoActiveKey)?;
        let path = key_path(dir, &active.kid);
        let text = std::fs::read_to_string(&path).map_err(|source| IssuerKeyError::File {
            path: path.clone(),
            source,
        })?;
        let signing = SecretKey::parse(&text)
            .map_err(|e| IssuerKeyError::Corrupt(active.kid.clone(), e.to_string()))?;
        if signing.public().thumbprint() != active.kid {
            return Err(IssuerKeyError::Corrupt(
                active.kid.clone(),
                "file holds a different key".into(),
            ));
        }
        let verify = published(&rows)?;
        Ok(IssuerKeys {
            dir: dir.to_path_buf(),
            inner: RwLock::new(Keys {
                kid: active.kid.clone(),
                signing,
                verify,
                max_exp: AtomicI64::new(0),
            }),
        })
    }

    /// Signs a mandate with the active key. Returns the token and the kid that signed it.
    pub fn sign(&self, claims: &MandateClaims) -> (String, String) {
        let k = self.inner.read().expect("issuer key lock");
        let header = jws::header(mandate_core::claims::MANDATE_TYP, Some(k.kid.clone()), None);
        let token = jws::sign(&header, claims, &k.signing);
        k.max_exp.fetch_max(claims.exp, Ordering::SeqCst);
        (token, k.kid.clone())
    }

    /// Stops publishing and trusting a retired key (after its revocation).
    pub async fn forget(&self, store: &Store, kid: &str) -> Result<(), IssuerKeyError> {
        store.remove_issuer_key(kid).await?;
        self.inner
            .write()
            .expect("issuer key lock")
            .verify
            .remove(kid);
        let _ = std::fs::remove_file(key_path(&self.dir, kid));
        Ok(())
    }

    /// Runs `f` with the active signing key and its kid (for audit checkpoints).
    pub fn with_signing_key<T>(&self, f: impl FnOnce(&str, &SecretKey) -> T) -> T {
        let k = self.inner.read().expect("issuer key lock");
        f(&k.kid, &k.signing)
    }

    /// The kid of the active signing key.
    pub fn signing_kid(&self) -> String {
        self.inner.read().expect("issuer key lock").kid.clone()
    }

    /// Runs `f` with the verification keys, without copying them.
    pub fn with_keys<T>(&self, f: impl FnOnce(&HashMap<String, PublicKey>) -> T) -> T {
        f(&self.inner.read().expect("issuer key lock").verify)
    }

    /// The JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        let k = self.inner.read().expect("issuer key lock");
        let mut kids: Vec<&String> = k.verify.keys().collect();
        kids.sort();
        let keys: Vec<_> = kids
            .into_iter()
            .map(|kid| {
                let mut jwk = k.verify[kid].to_jwk();
                jwk["kid"] = kid.clone().into();
                jwk["alg"] = "EdDSA".into();
                jwk["use"] = "sig".into();
                jwk
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Makes a new signing key; the old one stays published until the last mandate it signed
    /// expires. Returns (new kid, old kid, old key's removal time).
    pub async fn rotate(
        &self,
        store: &Store,
        now: i64,
    ) -> Result<(String, String, i64), IssuerKeyError> {
        let new = create_key(store, &self.dir, now).await?;
        let new_kid = new.public().thumbprint();
        let (old_kid, signed_here) = {
            let mut k = self.inner.write().expect("issuer key lock");
            let old = std::mem::replace(&mut k.kid, new_kid.clone());
            let signed_here = k.max_exp.swap(0, Ordering::SeqCst);
            k.verify.insert(new_kid.clone(), new.public());
            k.signing = new;
            (old, signed_here)
        };
        // The old key is needed until the last mandate it signed expires: the latest seen by this
        // process (in memory) or recorded by any process (in the database).
        let recorded = store.last_expiry_for_kid(&old_kid).await?.unwrap_or(now);
        let until = recorded.max(signed_here).max(now);
        store.retire_issuer_key(&old_kid, now, until).await?;
        Ok((new_kid, old_kid, until))
    }

    /// Drops retired keys whose every mandate has expired, from the JWKS, the database and disk.
    pub async fn drop_expired(&self, store: &Store, now: i64) -> Result<usize, IssuerKeyError> {
        let mut dropped = 0;
        for row in store.issuer_keys().await? {
            if row.retire_until.is_some_and(|t| t < now) {
                store.remove_issuer_key(&row.kid).await?;
                self.inner
                    .write()
                    .expect("issuer key lock")
                    .verify
                    .remove(&row.kid);
                let _ = std::fs::remove_file(key_path(&self.dir, &row.kid));
                tracing::info!(kid = %row.kid, "retired issuer key dropped from JWKS");
                dropped += 1;
            }
        }
        Ok(dropped)
    }
}

fn published(rows: &[IssuerKey]) -> Result<HashMap<String, PublicKey>, IssuerKeyError> {
    rows.iter()
        .map(|r| {
            PublicKey::parse(&r.public_key)
                .map(|k| (r.kid.clone(), k))
                .map_err(|e| IssuerKeyError::Corrupt(r.kid.clone(), e.to_string()))
        })
        .collect()
}

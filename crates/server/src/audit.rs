//! Auditing: building events, appending them (durably, before the call that produced them is
//! answered), and the integrator task that extends the Merkle tree and signs a checkpoint at least
//! every second while events arrive.
//!
//! Checkpoints are C2SP signed notes (`mandate_audit::checkpoint`) signed with the issuer's
//! active key. Their origin and key name is the issuer URL without its scheme. Every note key
//! that ever signed a checkpoint is appended to `audit-note-keys` beside the issuer keys, so that
//! `mandate audit verify` can check old checkpoints after the issuer key that signed them has
//! been rotated out (the private key files are deleted then; the public keys are kept there).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use mandate_audit::checkpoint::{self, Checkpoint};
use mandate_audit::event::{self, Event};
use mandate_store::{AuditRecord, Integrator, StoreError};
use rand::RngCore;

use crate::state::AppState;

/// Name of the per-installation HMAC key file (in the issuer keys directory).
pub const HMAC_KEY_FILE: &str = "audit-hmac.key";
/// Name of the file listing every note verifier key that signed a checkpoint.
pub const NOTE_KEYS_FILE: &str = "audit-note-keys";
/// How often the integrator looks for new events.
const INTEGRATE_EVERY: Duration = Duration::from_millis(500);

/// The audit log's settings and secrets.
pub struct AuditLog {
    hmac_key: [u8; 32],
    origin: String,
    note_keys: PathBuf,
    /// Note keys already listed in the file.
    listed: Mutex<Vec<String>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The checkpoint origin (and note key name) for an issuer URL: the URL without its scheme.
pub fn origin_for(issuer: &str) -> String {
    let rest = issuer
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(issuer)
        .trim_end_matches('/');
    rest.chars()
        .map(|c| {
            if c.is_whitespace() || c == '+' {
                '-'
            } else {
                c
            }
        })
        .collect()
}

impl AuditLog {
    /// Loads (creating on first use, mode 0600) the installation's HMAC key from `keys_dir`.
    pub fn open(keys_dir: &Path, issuer: &str) -> std::io::Result<AuditLog> {
        let path = keys_dir.join(HMAC_KEY_FILE);
        let hmac_key = match std::fs::read_to_string(&path) {
            Ok(text) => parse_hex32(text.trim()).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is not 64 hex digits: restore it from a backup (a new key would make earlier redacted values unmatchable)",
                        path.display()
                    ),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_private(&path, &mandate_store::hex(&key))?;
                key
            }
            Err(e) => return Err(e),
        };
        let note_keys = keys_dir.join(NOTE_KEYS_FILE);
        let listed = std::fs::read_to_string(&note_keys)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        Ok(AuditLog {
            hmac_key,
            origin: origin_for(issuer),
            note_keys,
            listed: Mutex::new(listed),
        })
    }

    /// The checkpoint origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The HMAC key for redaction.
    pub fn hmac_key(&self) -> &[u8] {
        &self.hmac_key
    }

    /// Records a note verifier key in the keys file (once; synced before first use).
    fn list_note_key(&self, vkey: &str) -> std::io::Result<()> {
        let mut listed = self.listed.lock().expect("audit key list lock");
        if listed.iter().any(|k| k == vkey) {
            return Ok(());
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.note_keys)?;
        writeln!(f, "{vkey}")?;
        f.sync_all()?;
        listed.push(vkey.to_string());
        Ok(())
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    mandate_store::unhex(s)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A new event with id and time filled in.
pub fn new_event(kind: &str, principal: &str, action: &str) -> Event {
    let ms = now_ms();
    let mut random = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut random);
    Event {
        id: event::new_event_id(ms.max(0) as u64, random),
        time: event::rfc3339_millis(ms),
        kind: kind.to_string(),
        principal: principal.to_string(),
        action: action.to_string(),
        result: "ok".to_string(),
        ..Event::default()
    }
}

/// The chain of a mandate for the audit log: subject, every actor, and the holder, root first.
pub fn chain_of(c: &mandate_core::claims::MandateClaims) -> Vec<String> {
    let mut chain: Vec<String> = c.chain().into_iter().map(String::from).collect();
    if chain.last() != Some(&c.client_id) {
        chain.push(c.client_id.clone());
    }
    chain
}

/// Runs an administrative change audited: the event is durable before the change is made (so
/// no change is ever un-audited), and if the change then fails, a second event records that,
/// naming the first in `details.request_event`. If the first event cannot be written, nothing
/// is changed and the call fails.
pub async fn audited<T, E, F>(st: &AppState, ev: Event, change: F) -> Result<T, E>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: From<AuditUnavailable> + AuditableError,
{
    if st.audit(&ev).await.is_err() {
        return Err(E::from(AuditUnavailable));
    }
    let out = change.await;
    if let Err(e) = &out {
        let mut failed = new_event(&ev.kind, &ev.principal, &ev.action);
        failed.chain = ev.chain.clone();
        failed.resource = ev.resource.clone();
        failed.result = e.audit_result().to_string();
        failed.error = Some(e.audit_code().to_string());
        failed.reasons = vec![e.audit_reason()];
        failed
            .details
            .insert("request_event".into(), ev.id.clone().into());
        let _ = st.audit(&failed).await;
    }
    out
}

/// The audit log could not be written, so the operation was not carried out.
#[derive(Debug, Clone, Copy)]
pub struct AuditUnavailable;

/// What the audit log records of an error.
pub trait AuditableError {
    /// `refused` or `failed`.
    fn audit_result(&self) -> &'static str;
    /// A reason code.
    fn audit_code(&self) -> &str;
    /// The description.
    fn audit_reason(&self) -> String;
}

/// The storage form of an event.
pub fn record(e: &Event) -> AuditRecord {
    AuditRecord {
        id: e.id.clone(),
        time_ms: time_ms_of(&e.time),
        kind: e.kind.clone(),
        principal: e.principal.clone(),
        action: e.action.clone(),
        decision: e.decision.clone(),
        result: e.result.clone(),
        parties: e.parties(),
        body: e.canonical(),
    }
}

/// Unix milliseconds of an RFC 3339 time as written by `rfc3339_millis` (0 if it is not one).
pub fn time_ms_of(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .unwrap_or(0)
}

impl AppState {
    /// Appends an event; returns once it is durable. Callers refuse what they were doing when
    /// this fails (fail closed).
    pub async fn audit(&self, e: &Event) -> Result<i64, StoreError> {
        let seq = self.store.audit(record(e)).await;
        if let Err(err) = &seq {
            tracing::error!(event = %e.id, kind = %e.kind, error = %err, "audit event could not be written");
        }
        seq
    }
}

/// Runs the integrator every half second until the task is stopped.
pub async fn integrate(state: std::sync::Arc<AppState>) {
    let mut integrator = Integrator::new();
    let mut tick = tokio::time::interval(INTEGRATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match integrate_once(&state, &mut integrator).await {
            Ok(_) => {
                if failing {
                    tracing::info!("audit log integration recovered");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "audit log integration failed; will retry");
                }
                failing = true;
            }
        }
    }
}

/// Integrates everything committed so far and signs a checkpoint if the tree grew.
pub async fn integrate_once(
    state: &AppState,
    integrator: &mut Integrator,
) -> Result<Option<(u64, [u8; 32])>, mandate_store::IntegrateError> {
    let mut last = None;
    loop {
        let step = integrator
            .step(&state.store, now_ms(), |size, root| sign(state, size, root))
            .await?;
        match step {
            Some(head) => last = Some(head),
            None => return Ok(last),
        }
    }
}

/// Signs the checkpoint for (size, root) with the issuer's active key.
fn sign(state: &AppState, size: u64, root: &[u8; 32]) -> Result<String, String> {
    let log = &state.audit_log;
    let body = Checkpoint {
        origin: log.origin.clone(),
        size,
        root: *root,
        extensions: vec![],
    }
    .body();
    let (note, vkey) = state.keys.with_signing_key(|_kid, key| {
        let signing = key.signing_key();
        let vkey = checkpoint::verifier_key(&log.origin, &signing.verifying_key());
        (checkpoint::sign(&body, &log.origin, &signing), vkey)
    });
    log.list_note_key(&vkey).map_err(|e| {
        format!(
            "cannot record the note key in {}: {e}",
            log.note_keys.display()
        )
    })?;
    note.map_err(|e| e.to_string())
}

/// Reads the note verifier keys recorded in `keys_dir`.
pub fn recorded_note_keys(keys_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(keys_dir.join(NOTE_KEYS_FILE))
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Appends and integrates synchronously (tests and shutdown): everything written so far gets a
/// checkpoint.
pub async fn flush(state: &AppState) -> Result<(), mandate_store::IntegrateError> {
    let mut integrator = Integrator::new();
    integrate_once(state, &mut integrator).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_the_issuer_without_its_scheme() {
        assert_eq!(origin_for("http://127.0.0.1:8700"), "127.0.0.1:8700");
        assert_eq!(
            origin_for("https://auth.example.com/mandate/"),
            "auth.example.com/mandate"
        );
    }
}

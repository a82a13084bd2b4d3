//! Auditing: building events, appending them (durably, before the call that produced them is
//! answered), and the integrator task that extends the Merkle tree and signs a checkpoint at least
//! every second while events arrive.
//!
//! Checkpoints are C2SP signed notes (`mandate_audit::checkpoint`) signed with the issuer's
//! active key. Their origin and key name is the issuer URL without its scheme. Every note key
//! that ever signed a checkpoint is appended to `audit-note-keys` beside the issuer keys, so that
//! `mandate audit verify` can check old checkpoints after the issuer key that signed them has
//! been rotated out (the private key files are deleted then; the public keys are kept there).
//!
//! An installation's log can be archived and a new one started (`mandate audit archive`); each log
//! has a number, kept in `audit-log-number` beside the issuer keys (absent: log 1), and its own
//! checkpoint origin ([`log_origin`]), so checkpoints of one log can never pass for another's.

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
/// Name of the file holding the latest checkpoint this installation signed (outside the database,
/// so that deleting checkpoints from the database cannot hide a rewrite).
pub const LAST_CHECKPOINT_FILE: &str = "audit-checkpoint";
/// Name of the file holding the number of the current audit log (absent: log 1).
pub const LOG_NUMBER_FILE: &str = "audit-log-number";
/// How long the integrator may fail before audited operations are refused.
const MAX_UNCHECKPOINTED_MS: i64 = 5_000;
/// How often the integrator looks for new events.
const INTEGRATE_EVERY: Duration = Duration::from_millis(500);

/// The audit log's settings and secrets.
pub struct AuditLog {
    /// Since when (unix ms) the integrator has been failing; 0 while it works.
    failing_since: std::sync::atomic::AtomicI64,
    keys_dir: PathBuf,
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

/// The checkpoint origin of log `n` of an issuer: [`origin_for`] the issuer for the first log (as
/// installations made before logs were numbered have it), `ORIGIN/log/N` for later ones. C2SP
/// tlog-checkpoint: the origin identifies the log, so a new log needs a new one.
pub fn log_origin(issuer: &str, n: u64) -> String {
    match n {
        0 | 1 => origin_for(issuer),
        n => format!("{}/log/{n}", origin_for(issuer)),
    }
}

/// The number of the current audit log, kept in `keys_dir` (1 when the file does not exist).
pub fn log_number(keys_dir: &Path) -> std::io::Result<u64> {
    let path = keys_dir.join(LOG_NUMBER_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => t
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} does not hold a log number (1, 2, ...): restore it from a backup",
                        path.display()
                    ),
                )
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
        Err(e) => Err(e),
    }
}

/// Records `n` as the current log's number.
pub fn save_log_number(keys_dir: &Path, n: u64) -> std::io::Result<()> {
    replace_private_file(keys_dir, LOG_NUMBER_FILE, format!("{n}\n").as_bytes())
}

/// Replaces `dir/name` with `bytes`, owner-only, all or nothing: written to a temporary file,
/// synced, renamed over the old one, and the directory synced.
fn replace_private_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

impl AuditLog {
    /// Loads (creating on first use, mode 0600) the installation's HMAC key from `keys_dir`.
    pub fn open(keys_dir: &Path, issuer: &str) -> std::io::Result<AuditLog> {
        let path = keys_dir.join(HMAC_KEY_FILE);
        let hmac_key = match std::fs::read_to_string(&path) {
            Ok(text) => mandate_store::unhex(text.trim()).ok_or_else(|| {
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
                crate::issuer::write_private_file(&path, mandate_store::hex(&key).as_bytes())?;
                key
            }
            Err(e) => return Err(e),
        };
        let note_keys = keys_dir.join(NOTE_KEYS_FILE);
        let listed = std::fs::read_to_string(&note_keys)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        Ok(AuditLog {
            failing_since: std::sync::atomic::AtomicI64::new(0),
            keys_dir: keys_dir.to_path_buf(),
            hmac_key,
            origin: log_origin(issuer, log_number(keys_dir)?),
            note_keys,
            listed: Mutex::new(listed),
        })
    }

    /// The checkpoint origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether the log is healthy enough to take new events: the integrator has not been failing
    /// for more than a few seconds. When it has, nothing new is signed, so audited operations are
    /// refused until it recovers (fail closed).
    pub fn accepting(&self) -> Result<(), AuditUnavailable> {
        let since = self
            .failing_since
            .load(std::sync::atomic::Ordering::Relaxed);
        if since != 0 && now_ms() - since > MAX_UNCHECKPOINTED_MS {
            return Err(AuditUnavailable);
        }
        Ok(())
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
        use std::os::unix::fs::OpenOptionsExt;
        // Public keys, but the directory keeps one rule: owner-only files.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.note_keys)?;
        writeln!(f, "{vkey}")?;
        f.sync_all()?;
        listed.push(vkey.to_string());
        Ok(())
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A new event with id and time filled in (now, and randomness from a CSPRNG).
pub fn new_event(kind: &str, principal: &str, action: &str) -> Event {
    let random = mandate_audit::event::event_randomness();
    Event::new(kind, principal, action, now_ms(), random)
}

/// `text` with credentials removed: their shapes (`mandate_core::secrets`) and the values of
/// secret-named assignments (`password=...`, with the audit log's secret key names).
pub fn scrub_text(text: &str) -> std::borrow::Cow<'_, str> {
    mandate_core::secrets::scrub_secrets_with(text, &event::is_secret_key)
}

/// Text fit for the log (`mandate_core::secrets::clean_text_with`, with the audit log's secret
/// names).
fn clean_text(text: &str) -> std::borrow::Cow<'_, str> {
    mandate_core::secrets::clean_text_with(text, &event::is_secret_key)
}

/// Every free-text field of an event: what `clean_text` is applied to. Identifiers a caller can
/// write (an action label built from a method name, a decision id, a policy version, asserted
/// parties) are free text too. A macro so that the shared and the mutable listing are one list.
macro_rules! text_fields {
    ($e:expr, $iter:ident $(, $r:tt)?) => {{
        let e = $e;
        let mut v: Vec<& $($r)? String> = vec![& $($r)? e.action, & $($r)? e.principal, & $($r)? e.result];
        v.extend(e.reasons.$iter());
        v.extend(e.chain.$iter());
        for s in [
            & $($r)? e.resource,
            & $($r)? e.decision,
            & $($r)? e.policy_version,
            & $($r)? e.decision_id,
            & $($r)? e.approval_id,
            & $($r)? e.error,
            & $($r)? e.jti,
        ]
        .into_iter()
        .flatten()
        {
            v.push(s);
        }
        if let Some(a) = & $($r)? e.asserted {
            v.push(& $($r)? a.by);
            v.extend(a.principal.$iter());
            v.extend(a.jti.$iter());
            v.extend(a.chain.$iter());
        }
        v
    }};
}

/// The event with credentials and control characters removed from its free text (every field in
/// `text_fields!`, a delegation's `details.reason`, and `details` keys), or `None` when there was
/// nothing to remove (the common case: no copy).
fn scrub_event_text(e: &Event) -> Option<Event> {
    use std::borrow::Cow;
    let dirty = |s: &str| matches!(clean_text(s), Cow::Owned(_));
    let reason = e.details.get("reason").and_then(|v| v.as_str());
    let any_key = e.details.iter().any(|(k, v)| dirty(k) || has_dirty_key(v));
    if !any_key
        && !reason.is_some_and(dirty)
        && !text_fields!(e, iter).into_iter().any(|s| dirty(s))
    {
        return None;
    }
    let mut e = e.clone();
    for s in text_fields!(&mut e, iter_mut, mut) {
        if let Cow::Owned(c) = clean_text(s) {
            *s = c;
        }
    }
    if let Some(serde_json::Value::String(r)) = e.details.get_mut("reason") {
        *r = clean_text(r).into_owned();
    }
    if any_key {
        let details = std::mem::take(&mut e.details);
        e.details = details
            .into_iter()
            .map(|(k, v)| (clean_text(&k).into_owned(), clean_keys(v)))
            .collect();
    }
    Some(e)
}

/// Whether a member name at any depth of `v` needs `clean_text`.
fn has_dirty_key(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(o) => o
            .iter()
            .any(|(k, v)| matches!(clean_text(k), std::borrow::Cow::Owned(_)) || has_dirty_key(v)),
        serde_json::Value::Array(a) => a.iter().any(has_dirty_key),
        _ => false,
    }
}

/// `v` with every member name, at any depth, put through `clean_text` (values are redacted
/// elsewhere, by `recorded_action`).
fn clean_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(o) => serde_json::Value::Object(
            o.into_iter()
                .map(|(k, v)| (clean_text(&k).into_owned(), clean_keys(v)))
                .collect(),
        ),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(clean_keys).collect())
        }
        other => other,
    }
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
    match change.await {
        Ok(v) => Ok(v),
        Err(e) => {
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
            Err(e.mark_audited())
        }
    }
}

pub use mandate_audit::sink::AuditUnavailable;

/// What the audit log records of an error.
pub trait AuditableError {
    /// `refused` or `failed`.
    fn audit_result(&self) -> &'static str;
    /// A reason code.
    fn audit_code(&self) -> &str;
    /// The description.
    fn audit_reason(&self) -> String;
    /// The same error, marked as already recorded in the audit log.
    fn mark_audited(self) -> Self;
}

/// Records a refused API call: after authentication as its own event naming the caller; before
/// it, counted for the source's per-window event (see [`crate::refusals`]). The refusal stands
/// whether or not the event could be written.
pub async fn refusal(
    st: &AppState,
    caller: Option<&mandate_core::claims::MandateClaims>,
    source: Option<crate::limits::Source>,
    action: &str,
    code: &str,
    reason: &str,
) {
    let Some(c) = caller else {
        st.refusals.record(
            source,
            crate::refusals::Refused {
                action,
                code,
                reason,
                claimed: None,
            },
        );
        return;
    };
    let ev = new_event(event::kinds::REQUEST_REFUSED, &c.client_id, action)
        .under(c.chain_to_holder(), Some(c.jti.clone()))
        .refused(code, reason);
    let _ = st.audit(&ev).await;
}

impl AppState {
    /// The storage form of an event, bounded to [`event::MAX_EVENT_BYTES`] (every event goes
    /// through here, so no request can add more than that per event it causes).
    pub fn record(&self, e: &Event) -> AuditRecord {
        // Free text echoes requests: credentials in it are removed, whoever wrote the event.
        let scrubbed = scrub_event_text(e);
        let e = scrubbed.as_ref().unwrap_or(e);
        // The common case: within every bound, recorded as is, its canonical form computed once.
        if e.within_field_bounds() {
            let body = e.canonical();
            if body.len() <= event::MAX_EVENT_BYTES {
                return AuditRecord::with_body(e, body);
            }
        }
        let mut e = e.clone();
        if e.bound(self.audit_log.hmac_key()) {
            // Not a warning: a caller can cause this at will, and the event itself says so.
            tracing::debug!(event = %e.id, kind = %e.kind, "audit event over its size bound; large values recorded as HMACs");
        }
        AuditRecord::from_event(&e)
    }

    /// Appends an event; returns once it is durable. Callers refuse what they were doing when
    /// this fails (fail closed).
    pub async fn audit(&self, e: &Event) -> Result<i64, StoreError> {
        if self.audit_log.accepting().is_err() {
            tracing::error!(event = %e.id, kind = %e.kind, "audit log not accepting events: checkpoints are failing");
            return Err(StoreError::WriterGone);
        }
        let seq = self.store.audit(self.record(e)).await;
        if let Err(err) = &seq {
            tracing::error!(event = %e.id, kind = %e.kind, error = %err, "audit event could not be written");
        }
        seq
    }
}

impl AppState {
    /// Whether the log takes new events now, found without writing one: the checkpoints are not
    /// failing past their bound (what [`AppState::audit`] checks before every append) and the
    /// group-commit writer is running. `Err` says why not (`GET /audit/v1/health`).
    pub fn audit_health(&self) -> Result<(), &'static str> {
        if self.audit_log.accepting().is_err() {
            return Err("the audit log's checkpoints have been failing for more than 5 s, so it takes no new event");
        }
        if !self.store.writer_running() {
            return Err("the database writer has stopped, so no event can be written");
        }
        Ok(())
    }
}

/// The authority's own log: events appended through the group-commit writer, bounded first.
impl mandate_audit::sink::AuditSink for AppState {
    fn append<'a>(
        &'a self,
        event: &'a Event,
    ) -> mandate_audit::sink::BoxFuture<'a, Result<i64, AuditUnavailable>> {
        Box::pin(async move { self.audit(event).await.map_err(|_| AuditUnavailable) })
    }

    fn hmac_key(&self) -> &[u8] {
        self.audit_log.hmac_key()
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
        let flag = &state.audit_log.failing_since;
        let done = match integrate_once(&state, &mut integrator, Catchup::Backlog).await {
            // The parties index follows the tree, a bounded step per tick; it never holds back
            // a checkpoint (a failure is retried on the next tick).
            Ok(head) => {
                if let Err(e) = index_some(&state, &mut integrator).await {
                    tracing::warn!(error = %e, "indexing audit parties failed; will retry");
                }
                Ok(head)
            }
            Err(e) => Err(e),
        };
        match done {
            Ok(_) => {
                if failing {
                    tracing::info!("audit log integration recovered");
                }
                failing = false;
                flag.store(0, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "audit log integration failed; will retry (audited operations are refused after 5s)");
                    flag.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
                }
                failing = true;
            }
        }
    }
}

/// Most index steps per integrator tick (each covers up to 1,000 events).
const INDEX_STEPS_PER_TICK: usize = 20;

async fn index_some(
    state: &AppState,
    integrator: &mut Integrator,
) -> Result<(), mandate_store::IntegrateError> {
    for _ in 0..INDEX_STEPS_PER_TICK {
        if integrator.index_step(&state.store).await? == 0 {
            break;
        }
    }
    Ok(())
}

/// How far [`integrate_once`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catchup {
    /// Until the tree holds every event committed, however many arrive meanwhile (shutdown, tests).
    Everything,
    /// Until a step finds less than a whole batch waiting (the periodic task): events committed
    /// during the steps wait for the next tick, so under steady load there is one checkpoint
    /// per tick, not one per handful of events.
    Backlog,
}

/// Integrates what is committed (see [`Catchup`]) and signs a checkpoint if the tree grew.
pub async fn integrate_once(
    state: &AppState,
    integrator: &mut Integrator,
    catchup: Catchup,
) -> Result<Option<(u64, [u8; 32])>, mandate_store::IntegrateError> {
    let mut last = None;
    loop {
        let mut note = None;
        let step = integrator
            .step(&state.store, now_ms(), |size, root| {
                let n = sign(state, size, root)?;
                note = Some(n.clone());
                Ok(n)
            })
            .await?;
        match (step, note) {
            (Some(head), Some(note)) => {
                // Two fsyncs and a rename: off the runtime's worker threads, which would otherwise
                // stall the requests they run for the length of the syncs.
                let dir = state.audit_log.keys_dir.clone();
                let saved = tokio::task::spawn_blocking(move || save_last_checkpoint(&dir, &note))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                saved.map_err(|e| {
                    mandate_store::IntegrateError::Sign(format!(
                        "cannot keep the latest checkpoint in {}: {e}",
                        state
                            .audit_log
                            .keys_dir
                            .join(LAST_CHECKPOINT_FILE)
                            .display()
                    ))
                })?;
                last = Some(head);
            }
            (Some(head), None) => last = Some(head),
            (None, _) => return Ok(last),
        }
        if catchup == Catchup::Backlog && !integrator.behind() {
            return Ok(last);
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

/// Replaces the kept latest checkpoint.
fn save_last_checkpoint(keys_dir: &Path, note: &str) -> std::io::Result<()> {
    replace_private_file(keys_dir, LAST_CHECKPOINT_FILE, note.as_bytes())
}

/// The latest checkpoint this installation signed, as kept beside the issuer keys (None before the
/// first one).
pub fn last_checkpoint(keys_dir: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(keys_dir.join(LAST_CHECKPOINT_FILE)) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks, before serving, that the database still holds the latest checkpoint this installation
/// signed and a tree that matches it; otherwise the log was edited (or the database restored
/// from an older backup) and the server must not extend it.
pub async fn check_database_against_last_checkpoint(
    store: &mandate_store::Store,
    keys_dir: &Path,
) -> Result<(), String> {
    let file = keys_dir.join(LAST_CHECKPOINT_FILE);
    let Some(note) = last_checkpoint(keys_dir).map_err(|e| format!("{}: {e}", file.display()))?
    else {
        return Ok(());
    };
    let fix = "the audit log was edited or the database restored from an older copy; run `mandate audit verify` to find where";
    let signed = checkpoint::parse_note(&note)
        .and_then(|n| Checkpoint::parse_body(&n.text))
        .map_err(|e| format!("{} is not a checkpoint ({e}): restore it", file.display()))?;
    let stored = store
        .audit_checkpoints_at(signed.size)
        .await
        .map_err(|e| e.to_string())?;
    if stored.as_deref() != Some(note.as_str()) {
        return Err(format!(
            "the database does not hold the latest signed audit checkpoint (size {}, kept in {}): {fix}",
            signed.size,
            file.display()
        ));
    }
    let size = store.audit_tree_size().await.map_err(|e| e.to_string())?;
    let root = if size >= signed.size {
        store.audit_root(signed.size).await.ok()
    } else {
        None
    };
    if root != Some(signed.root) {
        return Err(format!(
            "the audit tree in the database does not match the latest signed checkpoint (size {}): {fix}",
            signed.size
        ));
    }
    Ok(())
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
    integrate_once(state, &mut integrator, Catchup::Everything)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_token_is_not_taken_for_a_plain_word() {
        let token = "eyJhbGciOiIifQ..x";
        assert!(!mandate_core::secrets::is_plain_short_word(token));
        assert!(matches!(clean_text(token), std::borrow::Cow::Owned(_)));
        assert!(mandate_core::secrets::is_plain_short_word("agent:coder"));
    }

    #[test]
    fn credentials_and_control_characters_leave_every_free_text_field_and_details_key() {
        let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
        let mut e = new_event("tool.call", "agent:gateway", &format!("mcp.x/{token}"));
        e.policy_version = Some("password=hunter2".into());
        e.decision_id = Some(format!("Bearer {token}"));
        e.approval_id = Some("https://u:pw@example.com/a".into());
        e.resource = Some("demo/\u{1b}[2J\u{202e}note".into());
        e.error = Some(token.into());
        e.asserted = Some(event::Asserted {
            by: "agent:gateway".into(),
            principal: Some(format!("agent:{token}")),
            chain: vec![format!("user:{token}")],
            jti: Some(format!("eyJ\u{7}{token}")),
        });
        e.details.insert(token.into(), serde_json::json!(1));
        e.details.insert(
            "arguments".into(),
            serde_json::json!({"n": {format!("Bearer {token}"): 1, "deep": [{"k\u{7}": 2}]}}),
        );
        let clean = scrub_event_text(&e).expect("something to scrub");
        let body = clean.canonical();
        for leaked in [token, "hunter2", "u:pw", "\u{1b}", "\u{202e}", "\u{7}"] {
            assert!(!body.contains(leaked), "{leaked:?} in {body}");
        }
        // An event with nothing to remove is not copied.
        assert!(
            scrub_event_text(&new_event("tool.call", "agent:coder", "mcp.tools/call")).is_none()
        );
    }

    #[test]
    fn a_token_glued_to_a_word_leaves_the_events_text_and_an_ordinary_name_stays() {
        let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
        let mut e = new_event("tool.call", "agent:gateway", "mcp.tools/call");
        e.resource = Some(format!("demo/x_{token}"));
        e.reasons = vec![format!("sent token{token} upstream")];
        e.details
            .insert(format!("my_{token}"), serde_json::json!(1));
        let clean = scrub_event_text(&e).expect("something to scrub");
        assert!(!clean.canonical().contains(token), "{}", clean.canonical());
        let mut e = new_event("tool.call", "agent:gateway", "mcp.tools/call");
        e.resource = Some("demo/my_ghp_notes".into());
        assert!(
            scrub_event_text(&e).is_none(),
            "a short name is not a token"
        );
    }

    #[test]
    fn the_origin_is_the_issuer_without_its_scheme() {
        assert_eq!(origin_for("http://127.0.0.1:8700"), "127.0.0.1:8700");
        assert_eq!(
            origin_for("https://auth.example.com/mandate/"),
            "auth.example.com/mandate"
        );
    }

    #[test]
    fn each_log_has_its_own_origin_and_the_first_keeps_the_old_one() {
        assert_eq!(log_origin("http://127.0.0.1:8700", 1), "127.0.0.1:8700");
        assert_eq!(
            log_origin("http://127.0.0.1:8700/", 2),
            "127.0.0.1:8700/log/2"
        );
        let dir = std::env::temp_dir().join(format!("mandate-log-number-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(log_number(&dir).unwrap(), 1);
        save_log_number(&dir, 3).unwrap();
        assert_eq!(log_number(&dir).unwrap(), 3);
        std::fs::write(dir.join(LOG_NUMBER_FILE), "zero").unwrap();
        assert!(log_number(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

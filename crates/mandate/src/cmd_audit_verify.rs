//! `mandate audit verify | proof | verify-proof`: the whole log checked by
//! `mandate_audit::verify` (from the database or from an export), and inclusion proofs of single
//! events made and checked offline.
//!
//! Trust never comes from the log: checkpoints are checked against `--key` values, or, for the
//! database, against the keys in the issuer keys directory (the note keys the server recorded
//! and the issuer keys themselves). Someone who can write the database cannot add a trusted key.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ed25519_dalek::VerifyingKey;
use mandate_audit::checkpoint::{self, Checkpoint};
use mandate_audit::event::canonical_json;
use mandate_audit::merkle::{self, Hash};
use mandate_audit::verify::{
    verify_event_inclusion, Columns, Entry, Failure, LogVerifier, Summary, Trust,
};
use mandate_core::{PublicKey, SecretKey};
use mandate_store::{hex, unhex, Store, StoredEvent};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cli::AuditSource;
use crate::cmd_audit::{event_json, find_event, locate, open, Failed, PAGE};
use crate::ctx::Ctx;
use crate::term::safe;

/// The `format` of an export's header line.
pub const EXPORT_FORMAT: &str = "mandate-audit-export/1";

/// The origin a checkpoint note names (unverified: for labels only).
pub fn note_origin(note: &str) -> Option<String> {
    let parsed = checkpoint::parse_note(note).ok()?;
    Checkpoint::parse_body(&parsed.text).ok().map(|c| c.origin)
}

// ----- trusted keys -----

/// The trusted keys given with `--key`: each a note verifier key, a public key in any accepted
/// form (trusted under any origin), a file of them (one per line, a PEM block, a JWK or a JWKS),
/// or an issuer keys directory.
pub fn trust_from_args(values: &[String]) -> Result<Trust> {
    let mut trust = Trust::new();
    for v in values {
        let path = Path::new(v);
        if path.is_dir() {
            // An issuer keys directory: its recorded note keys and issuer keys.
            add_keys_dir(&mut trust, path)?;
        } else if path.is_file() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --key file {}", path.display()))?;
            add_keys_text(&mut trust, &text)
                .with_context(|| format!("--key file {}", path.display()))?;
        } else {
            add_key(&mut trust, v).map_err(|why| anyhow!("--key {}: {why}", shorten_key(v)))?;
        }
    }
    Ok(trust)
}

fn shorten_key(v: &str) -> String {
    let one_line = v.replace('\n', " ");
    if one_line.chars().count() > 60 {
        format!("{}...", one_line.chars().take(57).collect::<String>())
    } else {
        one_line
    }
}

fn add_keys_text(trust: &mut Trust, text: &str) -> Result<()> {
    let t = text.trim();
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).context("not JSON (expected a JWK or a JWKS)")?;
        let keys = match v.get("keys").and_then(Value::as_array) {
            Some(keys) => keys.clone(),
            None => vec![v],
        };
        let mut added = 0;
        for k in &keys {
            // A JWKS may hold keys of other types; only Ed25519 ones can sign checkpoints.
            if k.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                continue;
            }
            let pk = PublicKey::from_jwk(k).map_err(|e| anyhow!("{e}"))?;
            trust.add_any_origin(verifying_key(&pk)?);
            added += 1;
        }
        if added == 0 {
            bail!("no Ed25519 key in it");
        }
        return Ok(());
    }
    if t.starts_with("-----BEGIN") {
        return add_key(trust, t).map_err(|e| anyhow!(e));
    }
    let mut added = 0;
    for (n, line) in t.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        add_key(trust, line).map_err(|why| anyhow!("line {}: {why}", n + 1))?;
        added += 1;
    }
    if added == 0 {
        bail!("it holds no key");
    }
    Ok(())
}

/// Whether `s` has the shape `name+8 hex digits+data` of a note verifier key.
fn looks_like_note_key(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(3, '+').collect();
    parts.len() == 3 && parts[1].len() == 8 && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
}

fn add_key(trust: &mut Trust, s: &str) -> std::result::Result<(), String> {
    match checkpoint::parse_verifier_key(s) {
        Ok((name, key)) => {
            trust.add_note_key(name, key);
            Ok(())
        }
        Err(e) if looks_like_note_key(s) => Err(format!("not a usable note verifier key: {e}")),
        Err(_) => {
            let pk = PublicKey::parse(s).map_err(|e| {
                format!(
                    "neither a note verifier key (name+id+base64) nor an Ed25519 public key: {e}"
                )
            })?;
            trust.add_any_origin(verifying_key(&pk).map_err(|e| e.to_string())?);
            Ok(())
        }
    }
}

fn verifying_key(pk: &PublicKey) -> Result<VerifyingKey> {
    VerifyingKey::from_bytes(pk.as_bytes()).map_err(|_| anyhow!("not a valid Ed25519 public key"))
}

/// The keys trusted by default for a database: the note keys the server recorded in the issuer
/// keys directory, and the public halves of the issuer keys there.
pub fn default_trust(keys_dir: Option<&Path>) -> Result<Trust> {
    let dir = keys_dir.context(
        "no trusted checkpoint keys: pass --key (the issuer's public key or note verifier key) or --keys-dir DIR (the server's issuer keys directory)",
    )?;
    let mut trust = Trust::new();
    add_keys_dir(&mut trust, dir)?;
    if trust.is_empty() {
        bail!(
            "no trusted checkpoint keys in {} (audit-note-keys, *.jwk): pass --key with the issuer's public key",
            dir.display()
        );
    }
    Ok(trust)
}

/// Trusts the note keys recorded in an issuer keys directory and its issuer keys.
fn add_keys_dir(trust: &mut Trust, dir: &Path) -> Result<()> {
    for (n, line) in mandate_server::audit::recorded_note_keys(dir)
        .iter()
        .enumerate()
    {
        let (name, key) = checkpoint::parse_verifier_key(line).map_err(|e| {
            anyhow!(
                "{} line {}: {e}: fix or remove the line",
                dir.join(mandate_server::audit::NOTE_KEYS_FILE).display(),
                n + 1
            )
        })?;
        trust.add_note_key(name, key);
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("jwk") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read issuer key {}", path.display()))?;
            let key = SecretKey::parse(&text)
                .with_context(|| format!("{} is not a usable issuer key", path.display()))?;
            trust.add_any_origin(verifying_key(&key.public())?);
        }
    }
    Ok(())
}

// ----- the whole log -----

/// What events after the last checkpoint mean.
#[derive(Clone, Copy)]
enum Unsigned {
    /// A warning: the server signs a checkpoint within a second (database).
    Warns,
    /// A failure: nobody will sign them (export).
    Fails,
}

/// Why an export that verified still fails: events not covered by any signed checkpoint in it.
pub fn unsigned_in_export(s: &Summary) -> Option<String> {
    (s.entries > 0 && (s.checkpoints == 0 || s.tail > 0)).then(|| {
        format!(
            "FAILED at positions {}..{}: {} events are not covered by any signed checkpoint in the export (checkpoints removed, or events appended after the last one)",
            s.entries - s.tail.min(s.entries),
            s.entries,
            if s.checkpoints == 0 { s.entries } else { s.tail }
        )
    })
}

/// Prints the verdict: the summary, or the first failure (then exits 1).
fn report(
    ctx: &Ctx,
    source: &str,
    verdict: std::result::Result<Summary, Failure>,
    unsigned: Unsigned,
) -> Result<()> {
    // An export proves only what its checkpoints sign: events after the last one (or an export
    // with none) could have been added or changed by anyone, so they fail the verification.
    if let (Ok(s), Unsigned::Fails) = (&verdict, unsigned) {
        if let Some(message) = unsigned_in_export(s) {
            let out = json!({
                "ok": false, "source": source, "location": "unsigned tail",
                "position": s.entries - s.tail.min(s.entries), "reason": message, "message": message,
            });
            ctx.print(&out, || safe(&message).into_owned());
            return Err(Failed.into());
        }
    }
    match verdict {
        Ok(s) => {
            let last = s
                .last_checkpoint
                .map(|(size, root)| json!({"size": size, "root": hex(&root)}));
            let out = json!({
                "ok": true, "source": source, "events": s.entries, "checkpoints": s.checkpoints,
                "last_checkpoint": last, "root": hex(&s.root), "unchecked_tail": s.tail,
                "origins": s.origins,
            });
            ctx.print(&out, || match s.last_checkpoint {
                Some((size, root)) => format!(
                    "ok: {} events, {} checkpoints, last checkpoint size {size} root {}",
                    s.entries,
                    s.checkpoints,
                    hex(&root)
                ),
                None => format!("ok: {} events, 0 checkpoints", s.entries),
            });
            if s.tail > 0 && !ctx.json {
                eprintln!(
                    "warning: the last {} events are not in a signed checkpoint yet (the server signs one within a second of new events; run again to cover them)",
                    s.tail
                );
            }
            Ok(())
        }
        Err(f) => {
            let message = format!("FAILED {f}");
            let out = json!({
                "ok": false, "source": source, "location": f.location.to_string(),
                "position": f.position(),
                "event_id": f.event_id(), "reason": f.problem.to_string(), "message": message,
            });
            ctx.print(&out, || safe(&message).into_owned());
            Err(Failed.into())
        }
    }
}

/// What checking the log in a database found.
pub enum DbVerdict {
    /// The latest checkpoint the server signed (kept beside the issuer keys) is missing from the
    /// database or differs: checkpoints were deleted or replaced.
    KeptCheckpointMissing {
        /// Its tree size.
        size: u64,
        /// The file it is kept in.
        file: std::path::PathBuf,
    },
    /// The verifier's verdict on the whole log.
    Log(std::result::Result<Summary, Failure>),
}

impl DbVerdict {
    /// The one-line failure message (`FAILED ...`), unless the log verified.
    pub fn failure(&self) -> Option<String> {
        match self {
            DbVerdict::KeptCheckpointMissing { size, file } => Some(format!(
                "FAILED at checkpoint {size}: the latest checkpoint the server signed (kept in {}) is missing from the database or differs: checkpoints were deleted or replaced",
                file.display()
            )),
            DbVerdict::Log(Err(f)) => Some(format!("FAILED {f}")),
            DbVerdict::Log(Ok(_)) => None,
        }
    }
}

/// Checks the log in `store` as `mandate audit verify` does: the kept latest checkpoint in
/// `keys_dir` must be in the database, then every event and checkpoint against `trust`.
pub async fn database_verdict(
    store: &Store,
    keys_dir: Option<&Path>,
    trust: Trust,
) -> Result<DbVerdict> {
    // The latest checkpoint the server signed is kept beside the issuer keys, outside the
    // database: the database must still hold it, or checkpoints were deleted to hide a rewrite.
    if let Some(dir) = keys_dir {
        if let Some(note) = mandate_server::audit::last_checkpoint(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
        {
            let file = dir.join(mandate_server::audit::LAST_CHECKPOINT_FILE);
            let signed = checkpoint::parse_note(&note)
                .and_then(|n| Checkpoint::parse_body(&n.text))
                .map_err(|e| {
                    anyhow!(
                        "{} is not a checkpoint ({e}): restore it from a backup",
                        file.display()
                    )
                })?;
            if store.audit_checkpoints_at(signed.size).await?.as_deref() != Some(note.as_str()) {
                return Ok(DbVerdict::KeptCheckpointMissing {
                    size: signed.size,
                    file,
                });
            }
        }
    }
    // Being in the database, the kept checkpoint is checked against the recomputed tree below
    // like every other (a rewrite, a deletion or a truncation before it fails there).
    Ok(DbVerdict::Log(verify_store(store, trust).await?))
}

pub async fn verify_database(ctx: &Ctx, keys: &[String], src: &AuditSource) -> Result<()> {
    let loc = locate(ctx, src)?;
    let trust = if keys.is_empty() {
        default_trust(loc.keys_dir.as_deref())?
    } else {
        trust_from_args(keys)?
    };
    let store = open(&loc).await?;
    let source = loc.database.display().to_string();
    match database_verdict(&store, loc.keys_dir.as_deref(), trust).await? {
        DbVerdict::Log(verdict) => report(ctx, &source, verdict, Unsigned::Warns),
        missing @ DbVerdict::KeptCheckpointMissing { size, .. } => {
            let message = missing.failure().expect("a failure");
            let out = json!({
                "ok": false, "source": source,
                "location": format!("checkpoint {size}"), "position": size,
                "reason": message, "message": message,
            });
            ctx.print(&out, || message.clone());
            Err(Failed.into())
        }
    }
}

/// Streams the stored log through the verifier, a page of events at a time, each checkpoint
/// right after the event that completes it.
async fn verify_store(
    store: &Store,
    trust: Trust,
) -> Result<std::result::Result<Summary, Failure>> {
    let checkpoints = store.audit_checkpoints().await?;
    let mut v = LogVerifier::new(trust);
    v.stored_tree_size(store.audit_tree_size().await?);
    let mut cps = checkpoints.iter().peekable();
    let mut after = 0i64;
    macro_rules! check {
        ($e:expr) => {
            if let Err(f) = $e {
                return Ok(Err(f));
            }
        };
    }
    while let Some(c) = cps.next_if(|c| c.size <= 0) {
        check!(v.checkpoint(c.size.max(0) as u64, &c.note));
    }
    loop {
        let page = store.audit_event_range(after, PAGE).await?;
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            break;
        };
        let leaves = stored_leaves(
            store,
            first.seq.saturating_sub(1),
            last.seq.saturating_sub(1),
        )
        .await?;
        for e in &page {
            let index = e.seq.saturating_sub(1).max(0) as u64;
            check!(v.entry(&entry(e, index, leaves.get(&index).map(String::as_str))));
            while let Some(c) = cps.next_if(|c| c.size.max(0) as u64 <= index + 1) {
                check!(v.checkpoint(c.size.max(0) as u64, &c.note));
            }
        }
        after = last.seq;
    }
    for c in cps {
        check!(v.checkpoint(c.size.max(0) as u64, &c.note));
    }
    Ok(v.finish())
}

/// Stored leaf hashes of leaves `first..=last`, by index.
async fn stored_leaves(store: &Store, first: i64, last: i64) -> Result<HashMap<u64, String>> {
    let first = first.max(0);
    // A gap makes the verifier stop at it, so a page never needs more than its own span.
    let limit = (last - first + 1).clamp(1, 4 * PAGE);
    Ok(store
        .audit_leaf_hashes(first as u64, limit)
        .await?
        .into_iter()
        .collect())
}

/// An entry with its stored query columns. The parties index is not compared: the store reads
/// it only per event, by a column it is not indexed on, which is far too slow for a whole log.
fn entry<'a>(e: &'a StoredEvent, index: u64, stored_leaf: Option<&'a str>) -> Entry<'a> {
    Entry {
        index,
        body: &e.body,
        id: Some(&e.id),
        stored_leaf,
        columns: Some(Columns {
            time_ms: e.time_ms,
            kind: &e.kind,
            principal: &e.principal,
            action: &e.action,
            decision: e.decision.as_deref(),
            result: &e.result,
            parties: None,
        }),
    }
}

/// One line of an export.
#[derive(Deserialize)]
struct ExportLine<'a> {
    #[serde(rename = "type")]
    kind: String,
    format: Option<String>,
    from_index: Option<u64>,
    index: Option<u64>,
    id: Option<String>,
    #[serde(borrow)]
    event: Option<&'a serde_json::value::RawValue>,
    size: Option<u64>,
    note: Option<String>,
}

pub fn verify_file(ctx: &Ctx, file: &Path, keys: &[String]) -> Result<()> {
    if keys.is_empty() {
        bail!("an export is verified against the issuer's public key: pass --key");
    }
    let trust = trust_from_args(keys)?;
    let name = file.display().to_string();
    let verdict = verify_export(file, trust)?;
    report(ctx, &name, verdict, Unsigned::Fails)
}

/// Checks an export file (`-`: standard input) against `trust`. Events the export's checkpoints
/// do not cover are not a failure here; [`unsigned_in_export`] says whether there are any.
pub fn verify_export(file: &Path, trust: Trust) -> Result<std::result::Result<Summary, Failure>> {
    let name = file.display().to_string();
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {name}"))?,
        ))
    };
    verify_lines(reader, &name, trust)
}

/// Reads an export line by line into the verifier. Lines that are not export lines are errors
/// (the file is not an export), not verdicts on the log.
fn verify_lines(
    reader: impl BufRead,
    name: &str,
    trust: Trust,
) -> Result<std::result::Result<Summary, Failure>> {
    let mut v = LogVerifier::new(trust);
    let mut header = false;
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {name}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("line {} of {name}", n + 1);
        let l: ExportLine<'_> = serde_json::from_str(&line).with_context(|| {
            format!(
                "{} is not an export line (make the file with `mandate audit export`)",
                at()
            )
        })?;
        if !header {
            if l.kind != "header" || l.format.as_deref() != Some(EXPORT_FORMAT) {
                bail!("{name} is not a Mandate audit export (its first line is not a {EXPORT_FORMAT} header): make it with `mandate audit export`");
            }
            if let Some(from) = l.from_index.filter(|&f| f > 0) {
                bail!("{name} holds the log only from position {from} (exported with --since): verify an export made without --since");
            }
            header = true;
            continue;
        }
        let step = match l.kind.as_str() {
            "event" => {
                let (Some(index), Some(event)) = (l.index, l.event) else {
                    bail!("{}: an event line needs \"index\" and \"event\"", at());
                };
                v.entry(&Entry {
                    index,
                    body: event.get(),
                    id: l.id.as_deref(),
                    stored_leaf: None,
                    columns: None,
                })
            }
            "checkpoint" => {
                let (Some(size), Some(note)) = (l.size, l.note.as_deref()) else {
                    bail!("{}: a checkpoint line needs \"size\" and \"note\"", at());
                };
                v.checkpoint(size, note)
            }
            other => bail!("{}: unknown line type {other:?}", at()),
        };
        if let Err(f) = step {
            return Ok(Err(f));
        }
    }
    if !header {
        bail!("{name} is empty: make an export with `mandate audit export`");
    }
    Ok(v.finish())
}

// ----- single events -----

pub async fn proof(id: &str, tree_size: Option<u64>, src: &AuditSource, ctx: &Ctx) -> Result<()> {
    let loc = locate(ctx, src)?;
    let store = open(&loc).await?;
    let e = find_event(&store, id).await?;
    let index = e.seq.saturating_sub(1).max(0) as u64;
    let cp = match tree_size {
        Some(n) if n <= index => bail!(
            "event {} is at position {index}, outside a tree of size {n}: pass a larger --tree-size, or none",
            e.id
        ),
        Some(n) => store
            .audit_checkpoints()
            .await?
            .into_iter()
            .find(|c| c.size as u64 == n)
            .with_context(|| format!("there is no signed checkpoint of size {n}: omit --tree-size to use the smallest one covering the event"))?,
        None => store
            .audit_checkpoint_covering(index)
            .await?
            .with_context(|| format!("event {} is not yet in a checkpoint; retry in a second", e.id))?,
    };
    let size = cp.size as u64;
    let path = store
        .audit_inclusion_proof(index, size)
        .await
        .map_err(|err| anyhow!("cannot build the proof: {err}"))?;
    let leaf = merkle::leaf_hash(e.body.as_bytes());
    // Never hand out a proof that does not check against the signed root.
    let signed = checkpoint::parse_note(&cp.note)
        .and_then(|n| Checkpoint::parse_body(&n.text))
        .map_err(|err| anyhow!("the stored checkpoint of size {size} is unreadable ({err}): run `mandate audit verify`"))?;
    merkle::verify_inclusion(&leaf, index, size, &path, &signed.root).map_err(|err| {
        anyhow!("the stored tree does not prove event {} in checkpoint {size} ({err}): run `mandate audit verify`", e.id)
    })?;
    let keys = loc
        .keys_dir
        .as_deref()
        .map(mandate_server::audit::recorded_note_keys)
        .unwrap_or_default();
    let ev = event_json(&e);
    let out = json!({
        "index": index, "seq": e.seq, "tree_size": size, "leaf_hash": hex(&leaf),
        "event": ev["event"], "inclusion_proof": path.iter().map(hex).collect::<Vec<_>>(),
        "checkpoint": cp.note, "verifier_keys": keys,
    });
    println!(
        "{}",
        crate::term::json_text(&serde_json::to_string_pretty(&out)?)
    );
    Ok(())
}

/// A proof as `mandate audit proof` writes it.
#[derive(Deserialize)]
struct ProofFile {
    index: u64,
    tree_size: u64,
    leaf_hash: Option<String>,
    event: Value,
    inclusion_proof: Vec<String>,
    checkpoint: String,
}

pub fn verify_proof(ctx: &Ctx, file: &Path, keys: &[String]) -> Result<()> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let p: ProofFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a proof made by `mandate audit proof`",
            file.display()
        )
    })?;
    let trust = trust_from_args(keys)?;
    let hashes = |v: &[String], what: &str| -> Result<Vec<Hash>> {
        v.iter()
            .map(|h| unhex(h).with_context(|| format!("{what} {h:?} is not 64 hex digits")))
            .collect()
    };
    let path = hashes(&p.inclusion_proof, "inclusion_proof entry")?;
    let leaf = match &p.leaf_hash {
        Some(h) => Some(hashes(std::slice::from_ref(h), "leaf_hash")?[0]),
        None => None,
    };
    // The leaf bytes are the event's canonical JSON, whatever spacing the file uses.
    let body = canonical_json(&p.event);
    let id = p.event["id"].as_str().unwrap_or("?").to_string();
    match verify_event_inclusion(
        &body,
        p.index,
        p.tree_size,
        leaf.as_ref(),
        &path,
        &p.checkpoint,
        &trust,
    ) {
        Ok(cp) => {
            let out = json!({"ok": true, "event_id": id, "index": p.index, "tree_size": cp.size, "origin": cp.origin, "root": hex(&cp.root)});
            ctx.print(&out, || {
                format!(
                    "ok: event {} is entry {} of the log {} signed at size {}",
                    safe(&id),
                    p.index,
                    safe(&cp.origin),
                    cp.size
                )
            });
            Ok(())
        }
        Err(problem) => {
            let message = format!("FAILED: {problem}");
            let out = json!({"ok": false, "event_id": id, "index": p.index, "reason": problem.to_string(), "message": message});
            ctx.print(&out, || safe(&message).into_owned());
            Err(Failed.into())
        }
    }
}

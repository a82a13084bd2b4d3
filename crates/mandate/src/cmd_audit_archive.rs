//! `mandate audit archive --out FILE`: retention for the append-only audit log. With the server
//! stopped, the whole log is verified, exported to FILE and FILE verified offline; then a new log
//! is started whose first event records the old log's final size, root, checkpoint and FILE's
//! SHA-256, so the two are chained. The new log has its own number and checkpoint origin
//! (`mandate_server::audit::log_origin`), and the kept latest checkpoint of the old one is moved
//! aside so that `mandate serve` accepts the new log.
//!
//! Order matters for a crash half-way: nothing is changed until FILE is durable and verified;
//! the database transaction that starts the new log is the commit point; the log number and the
//! kept checkpoint are updated after it. A crash between the two leaves a server that refuses to
//! start (the kept checkpoint is not in the new database) rather than one that signs the new log
//! under the old origin.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use mandate_audit::event::kinds;
use mandate_audit::verify::Summary;
use mandate_server::audit as server_audit;
use mandate_store::{hex, AuditRecord, Store};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cmd_audit::{write_export, ExportHeader};
use crate::cmd_audit_verify::{
    database_verdict, default_trust, unsigned_in_export, verify_export, DbVerdict,
};
use crate::cmd_server::{resolve, try_lock_server_dir, LOCK_FILE};
use crate::ctx::Ctx;
use crate::term::safe;

/// Who the new log's first event names: the local operator who archived, not a principal.
const ARCHIVE_PRINCIPAL: &str = "local:archive";
/// The action of the new log's first event.
const LOG_STARTED: &str = "audit.log_started";

/// The old log, as verified and archived.
struct Archived {
    log: u64,
    origin: String,
    summary: Summary,
    final_checkpoint: String,
    sha256: String,
}

pub async fn archive(ctx: &Ctx, out: &Path, config: Option<&Path>) -> Result<()> {
    let (cfg, dir) = ctx.home.server_config(config)?;
    // Held to the end: no server may start (and append) while the log is archived and replaced.
    let _lock = try_lock_server_dir(&dir)?.with_context(|| {
        format!(
            "the server is running (it holds {}): stop `mandate serve`, then run `mandate audit archive` again; a log that is still growing cannot be archived",
            dir.join(LOCK_FILE).display()
        )
    })?;
    if out.symlink_metadata().is_ok() {
        bail!(
            "{} already exists: archive to a new file (an archive is never overwritten)",
            out.display()
        );
    }
    let database = resolve(&dir, &cfg.database);
    let keys_dir = resolve(&dir, &cfg.issuer_keys);
    let issuer = cfg.issuer.trim_end_matches('/').to_string();
    if !database.is_file() {
        bail!("database {} does not exist", database.display());
    }
    let store = Store::open_sqlite(&database)
        .await
        .with_context(|| format!("cannot open the database {}", database.display()))?;
    let old = archive_to_file(&store, &keys_dir, &issuer, out).await?;

    // The commit point: the new log, whose first event chains it to the archived one.
    let new_log = old.log + 1;
    let new_origin = server_audit::log_origin(&issuer, new_log);
    let ev = log_started_event(&old, new_log, &new_origin, out);
    store
        .audit_start_new_log(AuditRecord::from_event(&ev))
        .await
        .context("starting the new audit log failed; nothing was changed")?;
    let moved = finish_files(&keys_dir, &old, new_log)?;

    let previous = json!({
        "log": old.log, "origin": old.origin, "size": old.summary.entries,
        "root": hex(&old.summary.root), "checkpoint": old.final_checkpoint,
    });
    let result = json!({
        "archive": out, "sha256": old.sha256, "previous": previous,
        "log": new_log, "origin": new_origin, "first_event": ev.id,
        "kept_checkpoint_moved_to": moved,
    });
    ctx.print(&result, || {
        let mut s = format!(
            "Archived audit log {} (origin {}): {} events, {} checkpoints, final root {}\n  file       {} (0600, sha256 {}), verified offline\n  new log    {new_log} (origin {new_origin}); its first event (seq 1, {LOG_STARTED}) records the old log's size, root, final checkpoint and the file's SHA-256",
            old.log,
            safe(&old.origin),
            old.summary.entries,
            old.summary.checkpoints,
            hex(&old.summary.root),
            out.display(),
            old.sha256,
        );
        if let Some(m) = &moved {
            s.push_str(&format!("\n  moved      {} (the old log's kept checkpoint)", m.display()));
        }
        s.push_str(&format!(
            "\nStore the file somewhere else (and give its final checkpoint to a witness): it is the only copy of the old events. Check it with: mandate audit verify --file {} --key {}",
            out.display(),
            keys_dir.display()
        ));
        s
    });
    Ok(())
}

/// Verifies the log as `audit verify` does, writes it to `out` (0600, synced) as `audit export`
/// does and verifies `out` as `audit verify --file out --key KEYS_DIR` does. On any failure
/// nothing is changed and no file is left behind.
async fn archive_to_file(
    store: &Store,
    keys_dir: &Path,
    issuer: &str,
    out: &Path,
) -> Result<Archived> {
    let trust = default_trust(Some(keys_dir))?;
    let summary = match database_verdict(store, Some(keys_dir), trust.clone()).await? {
        DbVerdict::Log(Ok(s)) => s,
        failed => bail!(
            "refusing to archive a log that does not verify: {} (run `mandate audit verify`)",
            failed.failure().unwrap_or_default()
        ),
    };
    if summary.entries == 0 {
        bail!("the audit log is empty: there is nothing to archive");
    }
    if summary.tail > 0 {
        bail!(
            "the last {} events are not in a signed checkpoint yet (the server was not stopped cleanly): start `mandate serve` once so that it signs them, stop it, then archive",
            summary.tail
        );
    }
    let final_checkpoint = store
        .audit_checkpoints_at(summary.entries)
        .await?
        .context("the final checkpoint is missing from the database: run `mandate audit verify`")?;
    let log = server_audit::log_number(keys_dir)
        .with_context(|| format!("cannot read the audit log number in {}", keys_dir.display()))?;
    let origin = server_audit::log_origin(issuer, log);
    let written = write_file(store, keys_dir, &origin, out).await;
    let checked = match written {
        Ok(()) => check_file(out, trust, &summary),
        Err(e) => Err(e),
    };
    if let Err(e) = checked {
        let _ = std::fs::remove_file(out);
        return Err(e.context(format!(
            "the archive was not kept ({} removed) and the log was not changed",
            out.display()
        )));
    }
    Ok(Archived {
        log,
        origin,
        summary,
        final_checkpoint,
        sha256: sha256_of(out)?,
    })
}

/// Writes the whole export to a new file, mode 0600, synced with its directory entry.
async fn write_file(store: &Store, keys_dir: &Path, origin: &str, out: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let mut sink = std::io::BufWriter::new(file);
    let keys = server_audit::recorded_note_keys(keys_dir);
    let header = ExportHeader {
        origin: Some(origin),
        verifier_keys: &keys,
    };
    let checkpoints = store.audit_checkpoints().await?;
    write_export(store, &mut sink, &header, &checkpoints, 0, None)
        .await
        .with_context(|| format!("writing {} failed", out.display()))?;
    let file = sink
        .into_inner()
        .map_err(|e| anyhow!("writing {} failed: {}", out.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync the directory {}", parent.display()))?;
    Ok(())
}

/// The file must verify on its own, every event covered by a checkpoint in it, and hold exactly
/// the log that was verified in the database.
fn check_file(out: &Path, trust: mandate_audit::verify::Trust, db: &Summary) -> Result<()> {
    let file = match verify_export(out, trust)? {
        Ok(s) => s,
        Err(f) => bail!("the archive does not verify: FAILED {f}"),
    };
    if let Some(why) = unsigned_in_export(&file) {
        bail!("the archive does not verify: {why}");
    }
    if file.entries != db.entries || file.root != db.root {
        bail!(
            "the archive holds {} events with root {}, the database {} with root {}",
            file.entries,
            hex(&file.root),
            db.entries,
            hex(&db.root)
        );
    }
    Ok(())
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize().into()))
}

/// The new log's first event: what was archived, so that the new log's first checkpoint also
/// signs the old log's final state.
fn log_started_event(
    old: &Archived,
    new_log: u64,
    new_origin: &str,
    out: &Path,
) -> mandate_audit::event::Event {
    let mut ev = server_audit::new_event(kinds::ADMIN_CHANGE, ARCHIVE_PRINCIPAL, LOG_STARTED);
    ev.resource = Some(new_origin.to_string());
    let file_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let details: [(&str, Value); 8] = [
        ("log", json!(new_log)),
        ("previous_log", json!(old.log)),
        ("previous_origin", json!(old.origin)),
        ("previous_size", json!(old.summary.entries)),
        ("previous_root", json!(hex(&old.summary.root))),
        ("previous_checkpoint", json!(old.final_checkpoint)),
        ("archive_sha256", json!(old.sha256)),
        ("archive_file", json!(file_name)),
    ];
    for (k, v) in details {
        ev.details.insert(k.into(), v);
    }
    ev
}

/// After the commit point: records the new log's number, then moves the old log's kept
/// checkpoint aside (`audit-checkpoint.logN-SIZE`), so that `mandate serve` checks the new log
/// against its own checkpoints only. Returns where the kept checkpoint went.
fn finish_files(keys_dir: &Path, old: &Archived, new_log: u64) -> Result<Option<PathBuf>> {
    let kept = keys_dir.join(server_audit::LAST_CHECKPOINT_FILE);
    let aside = keys_dir.join(format!(
        "{}.log{}-{}",
        server_audit::LAST_CHECKPOINT_FILE,
        old.log,
        old.summary.entries
    ));
    let manual = format!(
        "the new log is started, but finish by hand before `mandate serve`: write {new_log} to {} and move {} to {}",
        keys_dir.join(server_audit::LOG_NUMBER_FILE).display(),
        kept.display(),
        aside.display()
    );
    server_audit::save_log_number(keys_dir, new_log)
        .with_context(|| format!("cannot record the new log number ({manual})"))?;
    if kept.exists() {
        std::fs::rename(&kept, &aside)
            .and_then(|()| std::fs::File::open(keys_dir)?.sync_all())
            .with_context(|| format!("cannot move the old kept checkpoint ({manual})"))?;
        return Ok(Some(aside));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_hash_is_the_files_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_of(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

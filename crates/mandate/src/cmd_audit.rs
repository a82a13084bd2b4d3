//! `mandate audit tail | query | show | export | hash` (and, in `cmd_audit_verify.rs`,
//! `verify | proof | verify-proof`): the audit log read straight from the database, so no
//! server needs to run. Only reads: the commands never add to or change the log (except
//! `archive`, in `cmd_audit_archive.rs`, which replaces it with the server stopped).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mandate_audit::event::{self, Event};
use mandate_core::duration::parse_duration;
use mandate_core::PrincipalName;
use mandate_store::{AuditQuery, Store, StoredCheckpoint, StoredEvent};
use serde_json::{json, Value};

use crate::cli::{AuditCmd, AuditSource, TimeRange};
use crate::cmd_audit_verify as verify;
use crate::ctx::Ctx;
use crate::term::safe;

/// The command printed its own verdict (`FAILED ...`) and exits with status 1.
#[derive(Debug)]
pub struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("verification failed")
    }
}

impl std::error::Error for Failed {}

/// How often `tail -f` looks for new events.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// Events read per database page when streaming the whole log.
pub const PAGE: i64 = 2000;

pub async fn run(ctx: &Ctx, c: AuditCmd) -> Result<()> {
    match c {
        AuditCmd::Tail {
            lines,
            follow,
            source,
        } => tail(ctx, lines, follow, &source).await,
        AuditCmd::Query {
            principal,
            party,
            asserted,
            action,
            kind,
            decision,
            result,
            approval,
            range,
            limit,
            source,
        } => {
            let now = now_ms();
            if let Some(a) = &approval {
                if !mandate_core::approval::is_id(a) {
                    anyhow::bail!("--approval {a:?} is not an approval request id (apr_ and 22 characters; see `mandate approvals list`)");
                }
            }
            let q = AuditQuery {
                approval,
                principal: principal.as_deref().map(principal_arg).transpose()?,
                party: party.as_deref().map(principal_arg).transpose()?,
                include_asserted: asserted,
                action,
                kind,
                decision,
                result,
                since_ms: time_arg(range.since.as_deref(), "since", now)?,
                until_ms: time_arg(range.until.as_deref(), "until", now)?,
                after_seq: None,
                limit: limit.max(0),
                oldest_first: false,
            };
            query(ctx, q, &source).await
        }
        AuditCmd::Show { id, source } => show(ctx, &id, &source).await,
        AuditCmd::Proof {
            id,
            tree_size,
            source,
        } => verify::proof(&id, tree_size, &source, ctx).await,
        AuditCmd::VerifyProof { file, key } => verify::verify_proof(ctx, &file, &key),
        AuditCmd::Verify { file, key, source } => match file {
            Some(f) => verify::verify_file(ctx, &f, &key),
            None => verify::verify_database(ctx, &key, &source).await,
        },
        AuditCmd::Export {
            format,
            output,
            range,
            source,
        } => export(ctx, &format, output.as_deref(), &range, &source).await,
        AuditCmd::Hash {
            value,
            json_value,
            source,
        } => hash(ctx, &value, json_value, &source),
        AuditCmd::Archive { out, config } => {
            crate::cmd_audit_archive::archive(ctx, &out, config.as_deref()).await
        }
    }
}

/// Where the log is: the database, and (when known) the issuer keys directory and issuer URL.
pub struct Location {
    pub database: PathBuf,
    pub keys_dir: Option<PathBuf>,
    pub issuer: Option<String>,
}

/// Finds the database and keys directory: the flags, else the server config in MANDATE_HOME.
/// The config's keys directory is used only for the config's own database, so that a database
/// from elsewhere is never checked against this installation's keys by accident.
pub fn locate(ctx: &Ctx, src: &AuditSource) -> Result<Location> {
    let cfg = if src.config.is_some() || ctx.home.server_config_path().exists() {
        let (cfg, dir) = ctx.home.server_config(src.config.as_deref())?;
        Some((
            crate::cmd_server::resolve(&dir, &cfg.database),
            crate::cmd_server::resolve(&dir, &cfg.issuer_keys),
            cfg.issuer,
        ))
    } else {
        None
    };
    let (database, same_install) = match (&src.database, &cfg) {
        (Some(db), Some((cfg_db, _, _))) => (db.clone(), same_file(db, cfg_db)),
        (Some(db), None) => (db.clone(), false),
        (None, Some((cfg_db, _, _))) => (cfg_db.clone(), true),
        (None, None) => bail!(
            "no audit log to read: pass --database PATH (the server's SQLite file) or run where `mandate init` ran (MANDATE_HOME={})",
            ctx.home.root.display()
        ),
    };
    let (keys_dir, issuer) = match cfg {
        Some((_, keys, issuer)) if same_install => (Some(keys), Some(issuer)),
        _ => (None, None),
    };
    Ok(Location {
        database,
        keys_dir: src.keys_dir.clone().or(keys_dir),
        issuer,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Opens the database for reading the log. A missing file is an error (opening would create an
/// empty database).
pub async fn open(loc: &Location) -> Result<Store> {
    if !loc.database.is_file() {
        bail!(
            "database {} does not exist: pass --database PATH of the server's SQLite file",
            loc.database.display()
        );
    }
    Store::open_sqlite(&loc.database)
        .await
        .with_context(|| format!("cannot open the database {}", loc.database.display()))
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    mandate_server::audit::now_ms()
}

fn principal_arg(p: &str) -> Result<String> {
    Ok(PrincipalName::parse_cli(p)
        .with_context(|| {
            format!(
                "{p:?} is not a principal (user:NAME or agent:NAME; a bare name means an agent)"
            )
        })?
        .to_string())
}

/// `--since` / `--until`: a duration ago, an RFC 3339 time or a date (UTC midnight).
fn time_arg(v: Option<&str>, flag: &str, now_ms: i64) -> Result<Option<i64>> {
    let Some(s) = v else { return Ok(None) };
    if let Ok(secs) = parse_duration(s) {
        return Ok(Some(now_ms - secs.saturating_mul(1000)));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.timestamp_millis()));
    }
    if let Some(t) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(Some(t.and_utc().timestamp_millis()));
    }
    bail!("--{flag} {s:?} is neither a duration (90s, 10m, 1h, 7d), an RFC 3339 time (2026-11-26T10:00:00Z) nor a date (2026-11-26)")
}

/// An event as `--json` prints it: its seq, its leaf index and the event object.
pub fn event_json(e: &StoredEvent) -> Value {
    let event: Value =
        serde_json::from_str(&e.body).unwrap_or_else(|_| Value::String(e.body.clone()));
    json!({"seq": e.seq, "index": e.seq.saturating_sub(1), "event": event})
}

/// One table row.
struct Row([String; 8]);

const HEADER: [&str; 8] = [
    "TIME",
    "ID",
    "KIND",
    "PRINCIPAL",
    "ACTION",
    "DECISION",
    "RESULT",
    "REASONS",
];

fn row(e: &StoredEvent) -> Row {
    let parsed = Event::parse(&e.body).ok();
    let time = parsed
        .as_ref()
        .map(|p| p.time.clone())
        .unwrap_or_else(|| event::rfc3339_millis(e.time_ms));
    let result = match parsed.as_ref().and_then(|p| p.error.as_deref()) {
        Some(code) => format!("{} ({code})", e.result),
        None => e.result.clone(),
    };
    let reasons = parsed.map(|p| p.reasons.join("; ")).unwrap_or_default();
    // Every cell is escaped before widths are measured, so columns line up as printed.
    let cell = |s: &str| safe(s).into_owned();
    Row([
        cell(&time),
        cell(&e.id),
        cell(&e.kind),
        cell(&e.principal),
        cell(&e.action),
        cell(e.decision.as_deref().unwrap_or("-")),
        cell(&result),
        shorten(&safe(&reasons), 70),
    ])
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 3).collect();
    out.push_str("...");
    out
}

/// Column widths fitting the header and rows (the last column is not padded).
fn widths(rows: &[Row]) -> [usize; 8] {
    let mut w = HEADER.map(str::len);
    for r in rows {
        for (i, cell) in r.0.iter().enumerate() {
            w[i] = w[i].max(cell.chars().count());
        }
    }
    w
}

fn format_row(cells: &[String; 8], w: &[usize; 8]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i == 7 {
            line.push_str(cell);
        } else {
            line.push_str(&format!("{cell:<width$}  ", width = w[i]));
        }
    }
    line.trim_end().to_string()
}

/// Writes lines to stdout; false when the reader went away (`| head`).
fn emit(lines: &[String]) -> bool {
    let mut out = std::io::stdout().lock();
    for l in lines {
        if writeln!(out, "{l}").is_err() {
            return false;
        }
    }
    out.flush().is_ok()
}

/// The lines printing `events` (oldest first): JSON lines, or table rows (with the header first
/// when `header`).
fn render(ctx: &Ctx, events: &[StoredEvent], w: &[usize; 8], header: bool) -> Vec<String> {
    if ctx.json {
        return events
            .iter()
            .map(|e| crate::term::json_text(&event_json(e).to_string()).into_owned())
            .collect();
    }
    let mut lines = Vec::with_capacity(events.len() + 1);
    if header {
        lines.push(format_row(&HEADER.map(String::from), w));
    }
    lines.extend(events.iter().map(|e| format_row(&row(e).0, w)));
    lines
}

async fn tail(ctx: &Ctx, lines: i64, follow: bool, src: &AuditSource) -> Result<()> {
    let store = open(&locate(ctx, src)?).await?;
    let mut events = store
        .audit_events(&AuditQuery {
            limit: lines.max(0),
            ..AuditQuery::default()
        })
        .await?;
    events.reverse();
    let rows: Vec<Row> = events.iter().map(row).collect();
    // Following keeps the first widths, with room for typical values.
    let mut w = widths(&rows);
    if follow {
        for (i, min) in [24, 30, 15, 16, 20, 8, 7, 0].into_iter().enumerate() {
            w[i] = w[i].max(min);
        }
    }
    let header = !ctx.json && (follow || !events.is_empty());
    if !emit(&render(ctx, &events, &w, header)) {
        return Ok(());
    }
    if !follow {
        if events.is_empty() && !ctx.json {
            emit(&["no audit events yet".to_string()]);
        }
        return Ok(());
    }
    let mut last = events.last().map_or(0, |e| e.seq);
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let new = store
            .audit_events(&AuditQuery {
                after_seq: Some(last),
                limit: 1000,
                oldest_first: true,
                ..AuditQuery::default()
            })
            .await?;
        if let Some(e) = new.last() {
            last = e.seq;
        }
        if !new.is_empty() && !emit(&render(ctx, &new, &w, false)) {
            return Ok(());
        }
    }
}

async fn query(ctx: &Ctx, q: AuditQuery, src: &AuditSource) -> Result<()> {
    let store = open(&locate(ctx, src)?).await?;
    let mut events = store.audit_events(&q).await?;
    events.reverse();
    if ctx.json {
        let all: Vec<Value> = events.iter().map(event_json).collect();
        ctx.print(&Value::Array(all), String::new);
        return Ok(());
    }
    if events.is_empty() {
        emit(&["no matching audit events".to_string()]);
        return Ok(());
    }
    let rows: Vec<Row> = events.iter().map(row).collect();
    emit(&render(ctx, &events, &widths(&rows), true));
    Ok(())
}

/// Finds one event by id or seq.
pub async fn find_event(store: &Store, id: &str) -> Result<StoredEvent> {
    store.audit_event(id).await?.with_context(|| {
        format!("no audit event {id:?}: give an event id (evt_...) or a seq, as `mandate audit query` shows them")
    })
}

async fn show(ctx: &Ctx, id: &str, src: &AuditSource) -> Result<()> {
    let store = open(&locate(ctx, src)?).await?;
    let e = find_event(&store, id).await?;
    let index = e.seq.saturating_sub(1).max(0) as u64;
    let covering = store.audit_checkpoint_covering(index).await?;
    let mut out = event_json(&e);
    out["checkpoint_size"] = json!(covering.as_ref().map(|c| c.size));
    ctx.print(&out, || {
        let mut s = match Event::parse(&e.body) {
            Ok(ev) => describe(&ev, e.seq),
            Err(err) => format!(
                "event {} (seq {}) does not read back ({}): run `mandate audit verify`\n{}",
                safe(&e.id),
                e.seq,
                safe(&err.to_string()),
                safe(&e.body)
            ),
        };
        s.push_str(&match &covering {
            Some(c) => format!(
                "\nlog        position {index}, in the signed checkpoint of size {}",
                c.size
            ),
            None => format!("\nlog        position {index}, not yet in a signed checkpoint"),
        });
        s
    });
    Ok(())
}

/// The human form of one event: fields, then the delegation chain as a tree, then details.
fn describe(ev: &Event, seq: i64) -> String {
    let mut s = String::new();
    // Every value is the log's, so escaped: one value can neither break its line nor act.
    let mut field = |name: &str, value: &str| {
        s.push_str(&format!("{name:<10} {}\n", safe(value)));
    };
    field("event", &format!("{} (seq {seq})", ev.id));
    field("time", &ev.time);
    field("kind", &ev.kind);
    field("principal", &ev.principal);
    field("action", &ev.action);
    if let Some(r) = &ev.resource {
        field("resource", r);
    }
    if let Some(d) = &ev.decision {
        field("decision", d);
    }
    match &ev.error {
        Some(code) => field("result", &format!("{} ({code})", ev.result)),
        None => field("result", &ev.result),
    }
    for (i, r) in ev.reasons.iter().enumerate() {
        field(if i == 0 { "reasons" } else { "" }, &format!("- {r}"));
    }
    if let Some(v) = &ev.policy_version {
        field("policy", v);
    }
    if let Some(d) = &ev.decision_id {
        field("decision#", d);
    }
    if let Some(a) = &ev.approval_id {
        field("approval", a);
    }
    if let Some(j) = &ev.jti {
        field("jti", j);
    }
    s.push_str("chain\n");
    s.push_str(&chain_tree(ev));
    if let Some(a) = &ev.asserted {
        // What the caller said, never verified: kept apart from the chain above.
        s.push_str(&format!("asserted   by {} (not verified)\n", safe(&a.by)));
        if let Some(p) = &a.principal {
            s.push_str(&format!("  principal  {}\n", safe(p)));
        }
        if !a.chain.is_empty() {
            let chain: Vec<String> = a.chain.iter().map(|p| safe(p).into_owned()).collect();
            s.push_str(&format!("  chain      {}\n", chain.join(" -> ")));
        }
        if let Some(j) = &a.jti {
            s.push_str(&format!("  jti        {}\n", safe(j)));
        }
    }
    if !ev.details.is_empty() {
        s.push_str("details\n");
        let w = ev
            .details
            .keys()
            .map(|k| safe(k).chars().count())
            .max()
            .unwrap_or(0);
        for (k, v) in &ev.details {
            let v = match v {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            s.push_str(&format!("  {:<w$}  {}\n", safe(k), safe(&v)));
        }
    }
    s.trim_end().to_string()
}

/// The delegation chain, root first, each hop under the previous one:
/// ```text
///   user:alice
///   └─ agent:planner
///      └─ agent:coder
/// ```
fn chain_tree(ev: &Event) -> String {
    let chain: Vec<&str> = if ev.chain.is_empty() {
        vec![ev.principal.as_str()]
    } else {
        ev.chain.iter().map(String::as_str).collect()
    };
    let mut s = String::new();
    for (depth, who) in chain.iter().enumerate() {
        s.push_str("  ");
        if depth > 0 {
            s.push_str(&"   ".repeat(depth - 1));
            s.push_str("└─ ");
        }
        s.push_str(&safe(who));
        s.push('\n');
    }
    s
}

/// The export's first line.
fn export_header(origin: Option<&str>, verifier_keys: &[String], from_index: u64) -> String {
    let mut line = format!(
        "{{\"type\":\"header\",\"format\":\"{}\",\"origin\":{},\"verifier_keys\":{}",
        verify::EXPORT_FORMAT,
        json!(origin),
        json!(verifier_keys)
    );
    if from_index > 0 {
        line.push_str(&format!(",\"from_index\":{from_index}"));
    }
    line.push('}');
    line
}

/// The checkpoint origin of the log a location holds: the current log's origin when the issuer
/// is known (log number from the keys directory), else the one its latest checkpoint names.
pub fn current_origin(loc: &Location, checkpoints: &[StoredCheckpoint]) -> Result<Option<String>> {
    Ok(match (&loc.issuer, loc.keys_dir.as_deref()) {
        (Some(i), Some(dir)) => {
            let n = mandate_server::audit::log_number(dir).with_context(|| {
                format!("cannot read the audit log number in {}", dir.display())
            })?;
            Some(mandate_server::audit::log_origin(i, n))
        }
        (Some(i), None) => Some(mandate_server::audit::origin_for(i)),
        (None, _) => checkpoints
            .last()
            .and_then(|c| verify::note_origin(&c.note)),
    })
}

async fn export(
    ctx: &Ctx,
    format: &str,
    output: Option<&Path>,
    range: &TimeRange,
    src: &AuditSource,
) -> Result<()> {
    if format != "jsonl" {
        bail!("--format {format:?} is not supported: use --format jsonl");
    }
    let now = now_ms();
    let since = time_arg(range.since.as_deref(), "since", now)?;
    let until = time_arg(range.until.as_deref(), "until", now)?;
    let loc = locate(ctx, src)?;
    let store = open(&loc).await?;
    let checkpoints = store.audit_checkpoints().await?;
    let origin = current_origin(&loc, &checkpoints)?;
    let keys = loc
        .keys_dir
        .as_deref()
        .map(mandate_server::audit::recorded_note_keys)
        .unwrap_or_default();
    // The export is contiguous: from the first event (in log order) at or after --since, up to
    // the first event at or after --until.
    let mut after = 0i64;
    if since.is_some() {
        let first = store
            .audit_events(&AuditQuery {
                since_ms: since,
                limit: 1,
                oldest_first: true,
                ..AuditQuery::default()
            })
            .await?;
        after = first.first().map_or(i64::MAX, |e| e.seq.saturating_sub(1));
    }
    let mut sink: Box<dyn Write> = match output {
        Some(p) => Box::new(std::io::BufWriter::new({
            // An export holds the whole log: owner-only, like the database it comes from.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(p)
                .with_context(|| format!("cannot create {}", p.display()))?
        })),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let header = ExportHeader {
        origin: origin.as_deref(),
        verifier_keys: &keys,
    };
    let result = write_export(&store, &mut sink, &header, &checkpoints, after, until).await;
    let written = match result {
        Ok(w) => w,
        // `mandate audit export | head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe && output.is_none() => return Ok(()),
        Err(e) => return Err(e).context("writing the export failed"),
    };
    if let Some(p) = output {
        let Exported {
            events,
            checkpoints: written_cps,
            from_index,
        } = written;
        let out = json!({"file": p, "events": events, "checkpoints": written_cps, "from_index": from_index});
        ctx.print(&out, || {
            format!(
                "exported {events} events and {written_cps} checkpoints to {}",
                p.display()
            )
        });
    }
    Ok(())
}

/// The export header's members that come from the installation.
pub struct ExportHeader<'a> {
    /// The log's checkpoint origin, when known.
    pub origin: Option<&'a str>,
    /// Every recorded note verifier key.
    pub verifier_keys: &'a [String],
}

/// What [`write_export`] wrote.
pub struct Exported {
    pub events: u64,
    pub checkpoints: u64,
    pub from_index: u64,
}

/// Writes an export (`mandate-audit-export/1`) of the events after seq `after` and before
/// `until`, with every checkpoint right after the event that completes it, and flushes `sink`.
/// The whole log when `after` is 0 and `until` is None (then checkpoints past the last event
/// come last, so that verifying the export finds a truncation as verifying the database does).
pub async fn write_export(
    store: &Store,
    sink: &mut dyn Write,
    header: &ExportHeader<'_>,
    checkpoints: &[StoredCheckpoint],
    mut after: i64,
    until: Option<i64>,
) -> std::io::Result<Exported> {
    let from_index = after.max(0) as u64;
    let mut cps = checkpoints
        .iter()
        .filter(|c| c.size as u64 > from_index || (from_index == 0 && c.size == 0))
        .peekable();
    let (mut events, mut written_cps) = (0u64, 0u64);
    write_line(
        sink,
        &export_header(header.origin, header.verifier_keys, from_index),
    )?;
    while let Some(c) = cps.next_if(|c| c.size == 0) {
        write_line(sink, &checkpoint_line(c.size, &c.note))?;
        written_cps += 1;
    }
    'pages: loop {
        let page = store
            .audit_event_range(after, PAGE)
            .await
            .map_err(std::io::Error::other)?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            if until.is_some_and(|u| e.time_ms >= u) {
                break 'pages;
            }
            let index = e.seq.saturating_sub(1).max(0);
            write_line(
                sink,
                &format!(
                    "{{\"type\":\"event\",\"index\":{index},\"id\":{},\"event\":{}}}",
                    json!(e.id),
                    e.body
                ),
            )?;
            events += 1;
            while let Some(c) = cps.next_if(|c| c.size <= index + 1) {
                write_line(sink, &checkpoint_line(c.size, &c.note))?;
                written_cps += 1;
            }
            after = e.seq;
        }
    }
    if until.is_none() {
        for c in cps {
            write_line(sink, &checkpoint_line(c.size, &c.note))?;
            written_cps += 1;
        }
    }
    sink.flush()?;
    Ok(Exported {
        events,
        checkpoints: written_cps,
        from_index,
    })
}

fn write_line(sink: &mut dyn Write, line: &str) -> std::io::Result<()> {
    writeln!(sink, "{line}")
}

fn checkpoint_line(size: i64, note: &str) -> String {
    format!(
        "{{\"type\":\"checkpoint\",\"size\":{size},\"note\":{}}}",
        json!(note)
    )
}

fn hash(ctx: &Ctx, value: &str, json_value: bool, src: &AuditSource) -> Result<()> {
    let keys_dir = locate(ctx, src)?.keys_dir.context(
        "no issuer keys directory: pass --keys-dir DIR (the server's issuer keys directory, which holds audit-hmac.key)",
    )?;
    let path = keys_dir.join(mandate_server::audit::HMAC_KEY_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the audit HMAC key {} (the server makes it when it first starts): pass --keys-dir DIR",
            path.display()
        )
    })?;
    let key = mandate_store::unhex(text.trim()).with_context(|| {
        format!(
            "{} is not 64 hex digits: restore it from a backup",
            path.display()
        )
    })?;
    let v = if json_value {
        serde_json::from_str(value)
            .with_context(|| format!("--json-value: {value:?} is not JSON"))?
    } else {
        Value::String(value.to_string())
    };
    let hashed = event::redact_value(&key, &v);
    ctx.print(&json!({"hash": hashed}), || hashed.clone());
    Ok(())
}

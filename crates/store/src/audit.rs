//! The audit log's storage: events (appended through the group-commit writer, so an event is
//! durable before the call that produced it is answered), the Merkle tree's nodes, and signed
//! checkpoints. The Merkle arithmetic itself is `mandate_audit::merkle` (pure); this module only
//! reads and writes rows.

use std::collections::HashMap;

use mandate_audit::merkle::{self, Frontier, Hash, NodeSource};
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::error::StoreError;
use crate::store::Store;

mod integrate;
pub(crate) mod recent;

pub(crate) use integrate::Maintenance;
pub use integrate::{IntegrateError, Integrator};

/// An event to append. `body` is the event's canonical JSON (its leaf bytes); the other fields
/// repeat parts of it for queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Event id.
    pub id: String,
    /// Event time, unix milliseconds.
    pub time_ms: i64,
    /// Event kind.
    pub kind: String,
    /// Who acted.
    pub principal: String,
    /// What was done.
    pub action: String,
    /// The policy decision, if any.
    pub decision: Option<String>,
    /// `ok`, `refused` or `failed`.
    pub result: String,
    /// Canonical JSON of the event.
    pub body: String,
    /// Everyone the event names, each with whether it is only asserted (what the parties index
    /// records for it).
    pub parties: Vec<(String, bool)>,
}

impl AuditRecord {
    /// The storage form of an event: its canonical JSON, and the columns queries use, read from
    /// it the way `audit verify` reads them back.
    pub fn from_event(e: &mandate_audit::event::Event) -> AuditRecord {
        Self::with_body(e, e.canonical())
    }

    /// [`AuditRecord::from_event`] for a caller that already computed `body`, the event's
    /// canonical JSON.
    pub fn with_body(e: &mandate_audit::event::Event, body: String) -> AuditRecord {
        debug_assert_eq!(body, e.canonical());
        let mut parties: Vec<(String, bool)> =
            e.parties().into_iter().map(|p| (p, false)).collect();
        parties.extend(e.asserted_parties().into_iter().map(|p| (p, true)));
        AuditRecord {
            parties,
            id: e.id.clone(),
            time_ms: mandate_audit::verify::unix_millis(&e.time).unwrap_or(0),
            kind: e.kind.clone(),
            principal: e.principal.clone(),
            action: e.action.clone(),
            decision: e.decision.clone(),
            result: e.result.clone(),
            body,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEvent {
    /// Position + 1 in the log (the leaf index is `seq - 1`).
    pub seq: i64,
    /// Event id.
    pub id: String,
    /// Unix milliseconds.
    pub time_ms: i64,
    /// Kind.
    pub kind: String,
    /// Who acted.
    pub principal: String,
    /// What was done.
    pub action: String,
    /// Decision.
    pub decision: Option<String>,
    /// Result.
    pub result: String,
    /// Canonical JSON.
    pub body: String,
}

/// A signed tree head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredCheckpoint {
    /// Tree size.
    pub size: i64,
    /// Root hash, lower-case hex.
    pub root: String,
    /// When it was signed, unix milliseconds.
    pub time_ms: i64,
    /// The signed note.
    pub note: String,
}

/// A filter over the events. Every set field must match.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// The acting principal.
    pub principal: Option<String>,
    /// Anyone the event names as verified (the principal or anyone in the chain).
    pub party: Option<String>,
    /// With `party`: also match events where a caller only asserted the party (a decision
    /// point's chain); without it, asserted parties never match.
    pub include_asserted: bool,
    /// The action, exactly, or every action starting with it when it ends in `*`.
    pub action: Option<String>,
    /// The kind, exactly.
    pub kind: Option<String>,
    /// The decision, exactly.
    pub decision: Option<String>,
    /// The result, exactly.
    pub result: Option<String>,
    /// Events of this approval request (their `approval_id`: its request, votes, decision,
    /// expiry, and the call it released); bodies are read, so narrow with a time range on a
    /// large log.
    pub approval: Option<String>,
    /// At or after this time (unix ms).
    pub since_ms: Option<i64>,
    /// Before this time (unix ms).
    pub until_ms: Option<i64>,
    /// Only events with a larger seq.
    pub after_seq: Option<i64>,
    /// At most this many (the newest ones unless `oldest_first`).
    pub limit: i64,
    /// Return the oldest matches first (for following a log) instead of the newest.
    pub oldest_first: bool,
}

const EVENT_COLUMNS: &str = "seq, id, time_ms, kind, principal, action, decision, result, body";

fn event_row(r: &SqliteRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        time_ms: r.try_get(2)?,
        kind: r.try_get(3)?,
        principal: r.try_get(4)?,
        action: r.try_get(5)?,
        decision: r.try_get(6)?,
        result: r.try_get(7)?,
        body: r.try_get(8)?,
    })
}

fn checkpoint_row(r: &SqliteRow) -> Result<StoredCheckpoint, sqlx::Error> {
    Ok(StoredCheckpoint {
        size: r.try_get(0)?,
        root: r.try_get(1)?,
        time_ms: r.try_get(2)?,
        note: r.try_get(3)?,
    })
}

/// Lower-case hex of a hash.
pub fn hex(h: &Hash) -> String {
    use std::fmt::Write as _;
    h.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A hash from lower-case (or upper-case) hex.
pub fn unhex(s: &str) -> Option<Hash> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Most events one INSERT statement takes (8 variables a row; SQLite allows 32,766 a statement).
pub(crate) const EVENTS_PER_STATEMENT: usize = 2000;

/// Inserts events (one multi-row statement) inside the writer's transaction and returns their
/// seqs. Parties are indexed later by the integrator, off the request path. AUTOINCREMENT gives one statement's rows consecutive seqs.
pub(crate) async fn insert_events(
    conn: &mut SqliteConnection,
    records: &[&AuditRecord],
) -> Result<Vec<i64>, sqlx::Error> {
    if records.is_empty() {
        return Ok(vec![]);
    }
    let mut seqs = Vec::with_capacity(records.len());
    for chunk in records.chunks(EVENTS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO audit_events (id, time_ms, kind, principal, action, decision, result, body) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(&r.id)
                .push_bind(r.time_ms)
                .push_bind(&r.kind)
                .push_bind(&r.principal)
                .push_bind(&r.action)
                .push_bind(&r.decision)
                .push_bind(&r.result)
                .push_bind(&r.body);
        });
        let done = q.build().execute(&mut *conn).await?;
        let last = done.last_insert_rowid();
        let first = last - chunk.len() as i64 + 1;
        seqs.extend(first..=last);
    }
    Ok(seqs)
}

/// Nodes fetched ahead of a pure computation that asks for them.
struct Prefetched(HashMap<(u32, u64), Hash>);

/// Records which nodes a computation asks for (answering zeros), so they can be fetched in one
/// query. Merkle computations ask for the same nodes whatever their hashes are.
#[derive(Default)]
struct Wanted(std::cell::RefCell<Vec<(u32, u64)>>);

impl NodeSource for Wanted {
    type Error = std::convert::Infallible;
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        self.0.borrow_mut().push((level, index));
        Ok([0; 32])
    }
}

/// How an audit query is narrowed to one party.
enum PartyFilter<'a> {
    None,
    /// Events the parties index covers.
    Indexed {
        party: &'a str,
        through: i64,
    },
    /// Events past the index, whose bodies mention the party.
    Recent {
        party: &'a str,
        through: i64,
    },
}

/// A node the database does not hold.
#[derive(Debug)]
struct MissingNode(u32, u64);

impl NodeSource for Prefetched {
    type Error = MissingNode;
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        self.0
            .get(&(level, index))
            .copied()
            .ok_or(MissingNode(level, index))
    }
}

/// A proof or root computed from stored nodes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofBuildError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The arguments do not describe a proof (index past the size, sizes out of order...).
    #[error("{0}")]
    Proof(#[from] merkle::ProofError),
    /// The tree is missing a node it should have: it was edited or not yet integrated.
    #[error("audit tree node ({0}, {1}) is missing or corrupt: run `mandate audit verify`")]
    Node(u32, u64),
}

impl Store {
    /// Appends one event through the group-commit writer. Returns its seq once it is durable.
    pub async fn audit(&self, record: AuditRecord) -> Result<i64, StoreError> {
        self.writer.audit(record).await
    }

    /// Events matching `q`, newest first unless `q.oldest_first`.
    pub async fn audit_events(&self, q: &AuditQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let Some(party) = &q.party else {
            let rows = self
                .audit_query(q, PartyFilter::None)
                .build()
                .fetch_all(&self.pool)
                .await?;
            return Ok(rows.iter().map(event_row).collect::<Result<_, _>>()?);
        };
        // Indexed events through the parties index; the few not indexed yet by their bodies,
        // read back exactly (a body that merely contains the name is not a match).
        let through: i64 = sqlx::query_scalar("SELECT through FROM audit_index WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
            .unwrap_or(0);
        let indexed = self
            .audit_query(q, PartyFilter::Indexed { party, through })
            .build()
            .fetch_all(&self.pool)
            .await?;
        let recent = self
            .audit_query(q, PartyFilter::Recent { party, through })
            .build()
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<StoredEvent> = indexed.iter().map(event_row).collect::<Result<_, _>>()?;
        for r in &recent {
            let e = event_row(r)?;
            let names = match mandate_audit::event::Event::parse(&e.body) {
                Ok(ev) => {
                    let mut n = ev.parties();
                    if q.include_asserted {
                        n.extend(ev.asserted_parties());
                    }
                    n
                }
                Err(_) => vec![],
            };
            if names.iter().any(|n| n == party) {
                out.push(e);
            }
        }
        if q.oldest_first {
            out.sort_by_key(|e| e.seq);
        } else {
            out.sort_by_key(|e| std::cmp::Reverse(e.seq));
        }
        out.truncate(q.limit.max(0) as usize);
        Ok(out)
    }

    /// The query for `q`'s filters other than the party, plus the party filter given.
    fn audit_query<'a>(
        &self,
        q: &'a AuditQuery,
        party: PartyFilter<'a>,
    ) -> QueryBuilder<'a, Sqlite> {
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE 1 = 1"
        ));
        match party {
            PartyFilter::None => {}
            PartyFilter::Indexed { party, through } => {
                b.push(" AND seq <= ")
                    .push_bind(through)
                    .push(" AND seq IN (SELECT seq FROM audit_parties WHERE principal = ")
                    .push_bind(party.to_string());
                if !q.include_asserted {
                    b.push(" AND asserted = FALSE");
                }
                b.push(")");
            }
            PartyFilter::Recent { party, through } => {
                b.push(" AND seq > ")
                    .push_bind(through)
                    .push(" AND instr(body, ")
                    .push_bind(serde_json::Value::String(party.to_string()).to_string())
                    .push(") > 0");
            }
        }
        if let Some(p) = &q.principal {
            b.push(" AND principal = ").push_bind(p.clone());
        }
        if let Some(a) = &q.action {
            match a.strip_suffix('*') {
                Some(prefix) => {
                    b.push(" AND substr(action, 1, ")
                        .push_bind(prefix.len() as i64)
                        .push(") = ")
                        .push_bind(prefix.to_string());
                }
                None => {
                    b.push(" AND action = ").push_bind(a.clone());
                }
            }
        }
        for (col, v) in [
            ("kind", &q.kind),
            ("decision", &q.decision),
            ("result", &q.result),
        ] {
            if let Some(v) = v {
                b.push(format!(" AND {col} = ")).push_bind(v.clone());
            }
        }
        if let Some(id) = &q.approval {
            // The event's own `approval_id` member, not text anywhere in its body (a tool's
            // arguments can say anything).
            b.push(" AND json_extract(body, '$.approval_id') = ")
                .push_bind(id.clone());
        }
        if let Some(t) = q.since_ms {
            b.push(" AND time_ms >= ").push_bind(t);
        }
        if let Some(t) = q.until_ms {
            b.push(" AND time_ms < ").push_bind(t);
        }
        if let Some(s) = q.after_seq {
            b.push(" AND seq > ").push_bind(s);
        }
        b.push(if q.oldest_first {
            " ORDER BY seq ASC LIMIT "
        } else {
            " ORDER BY seq DESC LIMIT "
        })
        .push_bind(q.limit.max(0));
        b
    }

    /// One event by id (`evt_...`) or by seq (a number).
    pub async fn audit_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let by_seq = format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq = $1");
        let by_id = format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE id = $1");
        let q = match id.parse::<i64>() {
            Ok(seq) => sqlx::query(&by_seq).bind(seq),
            Err(_) => sqlx::query(&by_id).bind(id.to_string()),
        };
        let row = q.fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(event_row).transpose()?)
    }

    /// Events in seq order after `after_seq`, at most `limit` (for verification and export).
    pub async fn audit_event_range(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(event_row).collect::<Result<_, _>>()?)
    }

    /// Every checkpoint, smallest first.
    pub async fn audit_checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT size, root, time_ms, note FROM audit_checkpoints ORDER BY size ASC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(checkpoint_row).collect::<Result<_, _>>()?)
    }

    /// The note of the checkpoint of exactly this size, if stored.
    pub async fn audit_checkpoints_at(&self, size: u64) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT note FROM audit_checkpoints WHERE size = $1")
                .bind(size as i64)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The newest checkpoint.
    pub async fn audit_latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row = sqlx::query(
            "SELECT size, root, time_ms, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(checkpoint_row).transpose()?)
    }

    /// The smallest checkpoint that covers leaf `index` (size > index).
    pub async fn audit_checkpoint_covering(
        &self,
        index: u64,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row = sqlx::query(
            "SELECT size, root, time_ms, note FROM audit_checkpoints WHERE size > $1 ORDER BY size ASC LIMIT 1",
        )
        .bind(index as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(checkpoint_row).transpose()?)
    }

    /// How many events the tree holds (integrated leaves).
    pub async fn audit_tree_size(&self) -> Result<u64, StoreError> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT MAX(idx) + 1 FROM audit_nodes WHERE level = 0")
                .fetch_one(&self.pool)
                .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Starts a new audit log in one transaction: every event, party index row, tree node and
    /// checkpoint of the current log is deleted, the `seq` counter is reset, and `first` is
    /// stored as the new log's first event (seq 1). Returns its seq.
    ///
    /// This is the one exception to the log being append-only, for `mandate audit archive`, which
    /// calls it only with the server stopped and after the whole log was exported to a file that
    /// verified; `first` records that log's final size, root and checkpoint, which chains the two.
    pub async fn audit_start_new_log(&self, first: AuditRecord) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        for table in [
            "audit_events",
            "audit_parties",
            "audit_nodes",
            "audit_checkpoints",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        // AUTOINCREMENT keeps the largest seq ever handed out here; without it the new log's
        // first event would not be seq 1 (leaf 0).
        sqlx::query("DELETE FROM sqlite_sequence WHERE name = 'audit_events'")
            .execute(&mut *tx)
            .await?;
        // The parties index starts again with the log.
        sqlx::query("UPDATE audit_index SET through = 0 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let seqs = insert_events(&mut tx, &[&first]).await?;
        tx.commit().await?;
        // What the writer remembers belongs to the log just removed.
        self.recent.clear();
        Ok(seqs[0])
    }

    /// The total size of the stored event bodies, in bytes.
    pub async fn audit_body_bytes(&self) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT SUM(LENGTH(body)) FROM audit_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// How many events are stored (the largest seq).
    pub async fn audit_event_count(&self) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Stored leaf hashes (level 0) for leaves `[from, from + limit)`, as (index, hex).
    pub async fn audit_leaf_hashes(
        &self,
        from: u64,
        limit: i64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT idx, hash FROM audit_nodes WHERE level = 0 AND idx >= $1 ORDER BY idx LIMIT $2",
        )
        .bind(from as i64)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)? as u64, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn fetch_nodes(&self, wanted: &[(u32, u64)]) -> Result<Prefetched, ProofBuildError> {
        let mut out = HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(400) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT level, idx, hash FROM audit_nodes WHERE (level, idx) IN (",
            );
            let mut sep = q.separated(", ");
            for (l, i) in chunk {
                sep.push("(")
                    .push_bind_unseparated(*l as i64)
                    .push_unseparated(", ")
                    .push_bind_unseparated(*i as i64)
                    .push_unseparated(")");
            }
            q.push(")");
            let rows = q
                .build()
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from)?;
            for r in rows {
                let l: i64 = r.try_get(0).map_err(StoreError::from)?;
                let i: i64 = r.try_get(1).map_err(StoreError::from)?;
                let h: String = r.try_get(2).map_err(StoreError::from)?;
                let hash = unhex(&h).ok_or(ProofBuildError::Node(l as u32, i as u64))?;
                out.insert((l as u32, i as u64), hash);
            }
        }
        Ok(Prefetched(out))
    }

    /// Runs a Merkle computation over stored nodes: once to learn which nodes it needs, then
    /// with those nodes fetched in one go.
    async fn with_nodes<T>(
        &self,
        f: impl Fn(&dyn DynSource) -> Result<T, merkle::BuildError<MissingNodeOrNone>>,
    ) -> Result<T, ProofBuildError> {
        let wanted = Wanted::default();
        let _ = f(&wanted);
        let list = wanted.0.into_inner();
        let nodes = self.fetch_nodes(&list).await?;
        f(&nodes).map_err(|e| match e {
            merkle::BuildError::Proof(p) => ProofBuildError::Proof(p),
            merkle::BuildError::Source(MissingNodeOrNone(Some((l, i)))) => {
                ProofBuildError::Node(l, i)
            }
            merkle::BuildError::Source(MissingNodeOrNone(None)) => ProofBuildError::Node(0, 0),
        })
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves, from stored nodes.
    pub async fn audit_inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, ProofBuildError> {
        self.with_nodes(|src| merkle::inclusion_proof(&Dyn(src), index, size))
            .await
    }

    /// Consistency proof between tree sizes `old` and `new`, from stored nodes.
    pub async fn audit_consistency_proof(
        &self,
        old: u64,
        new: u64,
    ) -> Result<Vec<Hash>, ProofBuildError> {
        self.with_nodes(|src| merkle::consistency_proof(&Dyn(src), old, new))
            .await
    }

    /// The root of the first `size` leaves, from stored nodes.
    pub async fn audit_root(&self, size: u64) -> Result<Hash, ProofBuildError> {
        self.with_nodes(|src| merkle::tree_root(&Dyn(src), size))
            .await
    }
}

/// The error of a type-erased node source: the missing node, if known.
#[derive(Debug)]
pub struct MissingNodeOrNone(Option<(u32, u64)>);

/// Object-safe view of the two sources `with_nodes` runs over.
trait DynSource {
    fn get(&self, level: u32, index: u64) -> Result<Hash, MissingNodeOrNone>;
}

impl DynSource for Wanted {
    fn get(&self, level: u32, index: u64) -> Result<Hash, MissingNodeOrNone> {
        Ok(self.node(level, index).unwrap_or([0; 32]))
    }
}

impl DynSource for Prefetched {
    fn get(&self, level: u32, index: u64) -> Result<Hash, MissingNodeOrNone> {
        self.node(level, index)
            .map_err(|MissingNode(l, i)| MissingNodeOrNone(Some((l, i))))
    }
}

struct Dyn<'a>(&'a dyn DynSource);

impl NodeSource for Dyn<'_> {
    type Error = MissingNodeOrNone;
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        self.0.get(level, index)
    }
}

#[cfg(test)]
mod tests;

//! Extending the audit log: the [`Integrator`] reads committed events in order (refusing to
//! pass a gap), computes the tree's new nodes and has a checkpoint signed for the new size, and
//! indexes who each event names; the writes are [`Maintenance`] work the writer runs in
//! transactions of their own, apart from requests.

use super::*;

/// Why the tree could not be extended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrateError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event row is missing: the log was edited.
    #[error("audit event at position {index} is missing (the next stored event is seq {found}): the log was edited; run `mandate audit verify`")]
    Gap {
        /// Leaf index that should come next.
        index: u64,
        /// The seq found instead.
        found: i64,
    },
    /// A stored node is not a hash: the tree was edited.
    #[error("audit tree node ({level}, {index}) is corrupt: run `mandate audit verify`")]
    CorruptNode {
        /// Level.
        level: u32,
        /// Index.
        index: u64,
    },
    /// The checkpoint could not be signed.
    #[error("signing the audit checkpoint failed: {0}")]
    Sign(String),
}

/// Everyone an event body names, each with whether it is only asserted (a body that is not an
/// event names nobody; `audit verify` reports it).
fn parties_of(body: &str) -> Vec<(String, bool)> {
    match mandate_audit::event::Event::parse(body) {
        Ok(e) => {
            let mut v: Vec<(String, bool)> = e.parties().into_iter().map(|p| (p, false)).collect();
            v.extend(e.asserted_parties().into_iter().map(|p| (p, true)));
            v
        }
        Err(_) => vec![],
    }
}

/// The audit log's upkeep, run by the writer on its own connection, each in a transaction of its
/// own (see `writer::WriteOp::Maintain`).
#[derive(Debug)]
pub(crate) enum Maintenance {
    /// New tree nodes and the checkpoint that signs the new size.
    Extend {
        nodes: Vec<(u32, u64, Hash)>,
        size: u64,
        root: Hash,
        time_ms: i64,
        note: String,
    },
    /// Party rows for events `(from, through]`, and the new reach of the index.
    Index {
        rows: Vec<(String, i64, bool)>,
        from: i64,
        through: i64,
    },
}

impl Maintenance {
    pub(crate) async fn run(&self, pool: &sqlx::SqlitePool) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        match self {
            Maintenance::Extend {
                nodes,
                size,
                root,
                time_ms,
                note,
            } => {
                for chunk in nodes.chunks(10_000) {
                    let mut q: QueryBuilder<Sqlite> =
                        QueryBuilder::new("INSERT INTO audit_nodes (level, idx, hash) ");
                    q.push_values(chunk, |mut b, (l, i, h)| {
                        b.push_bind(*l as i64)
                            .push_bind(*i as i64)
                            .push_bind(hex(h));
                    });
                    q.build().execute(&mut *tx).await?;
                }
                sqlx::query(
                    "INSERT INTO audit_checkpoints (size, root, time_ms, note) VALUES ($1, $2, $3, $4)",
                )
                .bind(*size as i64)
                .bind(hex(root))
                .bind(*time_ms)
                .bind(note)
                .execute(&mut *tx)
                .await?;
            }
            Maintenance::Index {
                rows,
                from,
                through,
            } => {
                for chunk in rows.chunks(10_000) {
                    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                        "INSERT OR IGNORE INTO audit_parties (principal, seq, asserted) ",
                    );
                    q.push_values(chunk, |mut b, (p, seq, asserted)| {
                        b.push_bind(p).push_bind(*seq).push_bind(*asserted);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                // Only from where the index stood: a concurrent indexer cannot move it twice.
                let moved = sqlx::query(
                    "UPDATE audit_index SET through = $1 WHERE id = 1 AND through = $2",
                )
                .bind(*through)
                .bind(*from)
                .execute(&mut *tx)
                .await?;
                if moved.rows_affected() != 1 {
                    return Err(sqlx::Error::Protocol(
                        "the parties index moved meanwhile".into(),
                    ));
                }
            }
        }
        tx.commit().await
    }
}

/// Extends the Merkle tree with the events committed since the last run and signs a checkpoint.
/// One integrator runs per database (the server's); it keeps the tree's right edge in memory and
/// reloads it from stored nodes after any failure.
#[derive(Debug, Default)]
pub struct Integrator {
    frontier: Option<Frontier>,
    /// Whether the last step took a whole batch, so more may be waiting (see
    /// [`Integrator::behind`]).
    last_step_full: bool,
}

/// Most events integrated in one step: its nodes are committed by the writer between request
/// batches, so the step is kept small (about 4,000 rows, a few milliseconds); a catch-up after a
/// restart signs one checkpoint per 2,000 events.
const INTEGRATE_BATCH: i64 = 2_000;

/// Most events indexed in one step (each names at most a few dozen parties: chains are bounded).
const INDEX_BATCH: i64 = 1_000;

impl Integrator {
    /// A fresh integrator (loads the tree's edge on its first step).
    pub fn new() -> Self {
        Self::default()
    }

    async fn load(store: &Store) -> Result<Frontier, IntegrateError> {
        let size = store.audit_tree_size().await?;
        // The frontier of `size` leaves is one full subtree per set bit, largest first.
        let mut wanted = vec![];
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                wanted.push((level, start >> level));
                start += 1u64 << level;
            }
        }
        let nodes = store.fetch_nodes(&wanted).await.map_err(|e| match e {
            ProofBuildError::Store(s) => IntegrateError::Store(s),
            ProofBuildError::Node(level, index) => IntegrateError::CorruptNode { level, index },
            ProofBuildError::Proof(_) => IntegrateError::CorruptNode { level: 0, index: 0 },
        })?;
        Frontier::load(&nodes, size)
            .map_err(|MissingNode(level, index)| IntegrateError::CorruptNode { level, index })
    }

    /// Integrates up to one batch of new events. When the tree grew, `sign(size, root)` makes the
    /// checkpoint note, stored in the same transaction as the new nodes. Returns the new
    /// (size, root), or None when there was nothing new.
    pub async fn step(
        &mut self,
        store: &Store,
        now_ms: i64,
        sign: impl FnOnce(u64, &Hash) -> Result<String, String>,
    ) -> Result<Option<(u64, Hash)>, IntegrateError> {
        let before = self.frontier.as_ref().map(Frontier::size);
        let result = self.try_step(store, now_ms, sign).await;
        self.last_step_full = match (&result, before) {
            (Ok(Some((size, _))), Some(before)) => size - before >= INTEGRATE_BATCH as u64,
            // The edge was loaded in this step: whether it was a whole batch is unknown.
            (Ok(Some(_)), None) => true,
            _ => false,
        };
        if result.is_err() {
            // Start again from what is stored.
            self.frontier = None;
        }
        result
    }

    async fn try_step(
        &mut self,
        store: &Store,
        now_ms: i64,
        sign: impl FnOnce(u64, &Hash) -> Result<String, String>,
    ) -> Result<Option<(u64, Hash)>, IntegrateError> {
        if self.frontier.is_none() {
            self.frontier = Some(Self::load(store).await?);
        }
        let mut frontier = self.frontier.clone().expect("loaded above");
        let size = frontier.size();
        let mut nodes: Vec<(u32, u64, Hash)> = Vec::new();
        // What the writer just committed, when it remembers it from the next leaf on; the rows
        // otherwise (after a restart, or when it fell behind).
        if let Some(recent) = store
            .recent
            .after(size as i64, i64::MAX, INTEGRATE_BATCH as usize)
        {
            for c in recent {
                nodes.extend(frontier.append(c.leaf));
            }
            return self.extend(store, frontier, nodes, now_ms, sign).await;
        }
        let rows =
            sqlx::query("SELECT seq, body FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(size as i64)
                .bind(INTEGRATE_BATCH)
                .fetch_all(&store.pool)
                .await
                .map_err(StoreError::from)?;
        if rows.is_empty() {
            return Ok(None);
        }
        nodes.reserve(rows.len() * 2);
        for (i, r) in rows.iter().enumerate() {
            let seq: i64 = r.try_get(0).map_err(StoreError::from)?;
            let expected = size + i as u64 + 1;
            if seq != expected as i64 {
                return Err(IntegrateError::Gap {
                    index: expected - 1,
                    found: seq,
                });
            }
            let body: String = r.try_get(1).map_err(StoreError::from)?;
            nodes.extend(frontier.append(merkle::leaf_hash(body.as_bytes())));
        }
        self.extend(store, frontier, nodes, now_ms, sign).await
    }

    /// Stores the new `nodes` of `frontier` with a checkpoint for its size, and keeps it.
    async fn extend(
        &mut self,
        store: &Store,
        frontier: Frontier,
        nodes: Vec<(u32, u64, Hash)>,
        now_ms: i64,
        sign: impl FnOnce(u64, &Hash) -> Result<String, String>,
    ) -> Result<Option<(u64, Hash)>, IntegrateError> {
        let new_size = frontier.size();
        let root = frontier.root();
        let note = sign(new_size, &root).map_err(IntegrateError::Sign)?;
        store
            .writer
            .maintain(Maintenance::Extend {
                nodes,
                size: new_size,
                root,
                time_ms: now_ms,
                note,
            })
            .await?;
        self.frontier = Some(frontier);
        Ok(Some((new_size, root)))
    }

    /// Whether the last step integrated a whole batch, so that events committed before it began
    /// may still be waiting. A periodic integrator steps again only while this holds: chasing
    /// events committed during its own step would sign a checkpoint (and sync its file) every
    /// few events under steady load, which cost more CPU per call than the call itself.
    pub fn behind(&self) -> bool {
        self.last_step_full
    }

    /// Indexes who the next integrated events name (at most [`INDEX_BATCH`] events). Returns
    /// how many were indexed; 0 when the index has caught up with the tree. Kept apart from
    /// [`Integrator::step`] so that indexing never holds back a checkpoint.
    pub async fn index_step(&mut self, store: &Store) -> Result<u64, IntegrateError> {
        let from: i64 = sqlx::query_scalar("SELECT through FROM audit_index WHERE id = 1")
            .fetch_optional(&store.pool)
            .await
            .map_err(StoreError::from)?
            .unwrap_or(0);
        let size = store.audit_tree_size().await? as i64;
        if from >= size {
            return Ok(0);
        }
        if let Some(recent) = store.recent.after(from, size, INDEX_BATCH as usize) {
            let through = recent.last().map_or(from, |c| c.seq);
            let parties = recent
                .into_iter()
                .flat_map(|c| {
                    let seq = c.seq;
                    c.parties.into_iter().map(move |(p, a)| (p, seq, a))
                })
                .collect();
            return Self::index(store, parties, from, through).await;
        }
        let rows = sqlx::query(
            "SELECT seq, body FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        )
        .bind(from)
        .bind(size)
        .bind(INDEX_BATCH)
        .fetch_all(&store.pool)
        .await
        .map_err(StoreError::from)?;
        let mut parties = Vec::with_capacity(rows.len() * 3);
        let mut through = from;
        for r in &rows {
            let seq: i64 = r.try_get(0).map_err(StoreError::from)?;
            let body: String = r.try_get(1).map_err(StoreError::from)?;
            parties.extend(parties_of(&body).into_iter().map(|(p, a)| (p, seq, a)));
            through = seq;
        }
        Self::index(store, parties, from, through).await
    }

    /// Stores the parties of events `(from, through]` and moves the index's reach to `through`.
    async fn index(
        store: &Store,
        parties: Vec<(String, i64, bool)>,
        from: i64,
        through: i64,
    ) -> Result<u64, IntegrateError> {
        store
            .writer
            .maintain(Maintenance::Index {
                rows: parties,
                from,
                through,
            })
            .await?;
        // The index trails the tree, so both readers are past these events now.
        store.recent.drop_through(through);
        Ok((through - from) as u64)
    }
}

//! The group-commit writer: one task that owns the write connection and
//! commits queued hot-path writes (`use_jti`, `record_mandate`) together.
//!
//! With `synchronous=FULL` every commit costs an fsync, so committing each
//! write on its own would cap throughput at the disk's fsync rate. The writer
//! instead takes whatever has queued up while the previous batch was being
//! committed, runs it all in one transaction, and answers every caller only
//! after that transaction is durable.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::audit::recent::{Committed, Recent};
use crate::audit::{insert_events, AuditRecord, Maintenance};
use crate::error::StoreError;
use crate::jtis::insert_jtis;
use crate::mandates::{insert_mandates, MandateRecord};

/// Most operations committed together.
const MAX_BATCH: usize = 256;

/// Operations queued before callers wait for room (back-pressure).
const QUEUE_CAPACITY: usize = 4096;

/// What an [`crate::Store::issue`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueOutcome {
    /// Every jti was fresh and the mandate is recorded, durably.
    Recorded,
    /// The jti at this index of the request was used before: nothing was recorded.
    Replayed(usize),
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum WriteOp {
    UseJti {
        jti: String,
        expires_at: i64,
        reply: Reply<bool>,
    },
    RecordMandate {
        record: Box<MandateRecord>,
        reply: Reply<()>,
    },
    Issue {
        jtis: Vec<(String, i64)>,
        record: Box<MandateRecord>,
        /// Appended in the same commit, only if the mandate is recorded.
        audit: Option<Box<AuditRecord>>,
        reply: Reply<IssueOutcome>,
    },
    Audit {
        record: Box<AuditRecord>,
        reply: Reply<i64>,
    },
    /// The audit log's own upkeep (extending the tree with a checkpoint, indexing parties). It
    /// runs on the writer's connection, so it never contends with request writes for SQLite's
    /// lock, but in a transaction of its own, so its failure never fails a request.
    Maintain {
        work: Box<Maintenance>,
        reply: Reply<()>,
    },
}

/// The result of one operation inside a committed batch.
enum Verdict {
    Jti(bool),
    Mandate(bool),
    Issue(IssueOutcome),
    Audit(i64),
}

impl WriteOp {
    fn answer(self, v: Verdict) {
        match (self, v) {
            (WriteOp::UseJti { reply, .. }, Verdict::Jti(fresh)) => {
                let _ = reply.send(Ok(fresh));
            }
            (WriteOp::RecordMandate { record, reply }, Verdict::Mandate(new)) => {
                let _ = reply.send(if new {
                    Ok(())
                } else {
                    Err(StoreError::AlreadyExists(record.jti))
                });
            }
            (WriteOp::Issue { record, reply, .. }, Verdict::Issue(outcome)) => {
                let _ = reply.send(match outcome {
                    // A jti collision on the mandate itself is reported as a conflict.
                    IssueOutcome::Recorded => Ok(outcome),
                    IssueOutcome::Replayed(i) if i == usize::MAX => {
                        Err(StoreError::AlreadyExists(record.jti))
                    }
                    IssueOutcome::Replayed(_) => Ok(outcome),
                });
            }
            (WriteOp::Audit { reply, .. }, Verdict::Audit(seq)) => {
                let _ = reply.send(Ok(seq));
            }
            // Verdicts are built from the ops in order, so kinds always match; an op dropped
            // unanswered makes its caller see WriterGone, which also fails closed.
            _ => {}
        }
    }

    fn fail(self, err: Arc<sqlx::Error>) {
        let e = StoreError::BatchFailed(err);
        let _ = match self {
            WriteOp::UseJti { reply, .. } => reply.send(Err(e)).map_err(drop),
            WriteOp::RecordMandate { reply, .. } => reply.send(Err(e)).map_err(drop),
            WriteOp::Issue { reply, .. } => reply.send(Err(e)).map_err(drop),
            WriteOp::Audit { reply, .. } => reply.send(Err(e)).map_err(drop),
            WriteOp::Maintain { reply, .. } => reply.send(Err(e)).map_err(drop),
        };
    }
}

/// Handle to the group-commit writer task.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    ops: mpsc::Sender<WriteOp>,
}

impl Writer {
    /// Starts the writer task on `pool` (a single-connection pool owned by the writer).
    /// Audit events it commits are also told to `recent`.
    pub(crate) fn spawn(pool: SqlitePool, recent: Arc<Recent>) -> Writer {
        let (ops, queue) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(pool, queue, recent));
        Writer { ops }
    }

    pub(crate) async fn use_jti(&self, jti: &str, expires_at: i64) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteOp::UseJti {
            jti: jti.to_owned(),
            expires_at,
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(crate) async fn record_mandate(&self, record: &MandateRecord) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteOp::RecordMandate {
            record: Box::new(record.clone()),
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(crate) async fn issue(
        &self,
        jtis: Vec<(String, i64)>,
        record: MandateRecord,
        audit: Option<AuditRecord>,
    ) -> Result<IssueOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteOp::Issue {
            jtis,
            record: Box::new(record),
            audit: audit.map(Box::new),
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(crate) async fn audit(&self, record: AuditRecord) -> Result<i64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteOp::Audit {
            record: Box::new(record),
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(crate) async fn maintain(&self, work: Maintenance) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteOp::Maintain {
            work: Box::new(work),
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Whether the writer task is still there to take operations.
    pub(crate) fn is_running(&self) -> bool {
        !self.ops.is_closed()
    }

    async fn submit(&self, op: WriteOp) -> Result<(), StoreError> {
        self.ops.send(op).await.map_err(|_| StoreError::WriterGone)
    }
}

/// The writer loop: take what is queued (up to [`MAX_BATCH`]), commit it in one transaction, then
/// answer every operation. Nothing is answered before its commit.
async fn run(pool: SqlitePool, mut queue: mpsc::Receiver<WriteOp>, recent: Arc<Recent>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // More than one op waiting means callers are concurrent: let the tasks already runnable
        // (requests a step or two from their own append) run once before committing, so that
        // they join this commit instead of paying for the next fsync. A lone op commits at once:
        // at low load this costs nothing, and under load the wait is one pass over the run
        // queue, which is what commit_delay/commit_siblings approximate in PostgreSQL.
        if batch.len() > 1 && batch.len() < MAX_BATCH {
            tokio::task::yield_now().await;
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
        }
        let (upkeep, ops): (Vec<WriteOp>, Vec<WriteOp>) = std::mem::take(&mut batch)
            .into_iter()
            .partition(|op| matches!(op, WriteOp::Maintain { .. }));
        if !ops.is_empty() {
            commit_requests(&pool, ops, &recent).await;
        }
        // Requests first: they are what callers wait on.
        for op in upkeep {
            if let WriteOp::Maintain { work, reply } = op {
                let done = work.run(&pool).await;
                if let Err(e) = &done {
                    tracing::warn!(error = %e, "audit upkeep failed; it will be retried");
                }
                let _ = reply.send(done.map_err(|e| StoreError::BatchFailed(Arc::new(e))));
            }
        }
    }
}

/// Commits the request operations of one batch in one transaction and answers each.
async fn commit_requests(pool: &SqlitePool, ops: Vec<WriteOp>, recent: &Recent) {
    match execute(pool, &ops, recent).await {
        Ok(verdicts) => {
            tracing::trace!(size = ops.len(), "group commit done");
            for (op, v) in ops.into_iter().zip(verdicts) {
                op.answer(v);
            }
        }
        Err(err) => {
            tracing::error!(size = ops.len(), error = %err, "group commit failed");
            let err = Arc::new(err);
            for op in ops {
                op.fail(Arc::clone(&err));
            }
        }
    }
}

/// The batch's events when it holds nothing else and fits one statement.
fn audit_only(ops: &[WriteOp]) -> Option<Vec<&AuditRecord>> {
    if ops.len() > crate::audit::EVENTS_PER_STATEMENT {
        return None;
    }
    ops.iter()
        .map(|op| match op {
            WriteOp::Audit { record, .. } => Some(&**record),
            _ => None,
        })
        .collect()
}

/// What the integrator needs of events just committed as `seqs`: leaf hashes and parties.
fn committed<'a>(
    records: &'a [&AuditRecord],
    seqs: &'a [i64],
) -> impl Iterator<Item = Committed> + 'a {
    records.iter().zip(seqs).map(|(r, &seq)| Committed {
        seq,
        leaf: mandate_audit::merkle::leaf_hash(r.body.as_bytes()),
        parties: r.parties.clone(),
    })
}

/// Whether `value` was inserted by this batch and this is its first use in the batch.
fn first_new<'a>(
    inserted: &HashSet<String>,
    counted: &mut HashSet<&'a str>,
    value: &'a str,
) -> bool {
    inserted.contains(value) && counted.insert(value)
}

/// Runs one batch in one transaction: one statement inserting every jti, then one inserting the
/// mandates of the operations that may proceed. When a jti repeats inside the batch, only its
/// first use counts as fresh: a second use in the same batch is a replay. An `Issue` records its
/// mandate only if all its jtis were fresh.
async fn execute(
    pool: &SqlitePool,
    ops: &[WriteOp],
    recent: &Recent,
) -> Result<Vec<Verdict>, sqlx::Error> {
    if let Some(records) = audit_only(ops) {
        // The gateway's hot path: nothing but events. One INSERT statement is atomic and, in
        // autocommit with `synchronous=FULL`, durable when it returns, so the explicit
        // BEGIN/COMMIT (two more round trips to SQLite's thread) are not needed.
        let mut conn = pool.acquire().await?;
        let seqs = insert_events(&mut conn, &records).await?;
        recent.push(committed(&records, &seqs));
        return Ok(seqs.into_iter().map(Verdict::Audit).collect());
    }
    let mut jtis: Vec<(&str, i64)> = Vec::new();
    for op in ops {
        match op {
            WriteOp::UseJti {
                jti, expires_at, ..
            } => jtis.push((jti, *expires_at)),
            WriteOp::Issue { jtis: js, .. } => {
                jtis.extend(js.iter().map(|(j, e)| (j.as_str(), *e)))
            }
            WriteOp::RecordMandate { .. } | WriteOp::Audit { .. } | WriteOp::Maintain { .. } => {}
        }
    }
    let mut tx = pool.begin().await?;
    let new_jtis = insert_jtis(&mut tx, &jtis).await?;
    let mut counted: HashSet<&str> = HashSet::new();
    // First pass: jti verdicts, and which mandates may be inserted.
    let mut pre: Vec<Option<IssueOutcome>> = Vec::with_capacity(ops.len());
    let mut jti_fresh: Vec<bool> = Vec::with_capacity(ops.len());
    let mut mandates: Vec<&MandateRecord> = Vec::new();
    for op in ops {
        match op {
            WriteOp::UseJti { jti, .. } => {
                jti_fresh.push(first_new(&new_jtis, &mut counted, jti));
                pre.push(None);
            }
            WriteOp::Issue {
                jtis: js, record, ..
            } => {
                // Every jti is consumed even after a replay is found, so none can be reused.
                let verdicts: Vec<bool> = js
                    .iter()
                    .map(|(j, _)| first_new(&new_jtis, &mut counted, j))
                    .collect();
                let outcome = match verdicts.iter().position(|f| !f) {
                    Some(i) => IssueOutcome::Replayed(i),
                    None => {
                        mandates.push(record);
                        IssueOutcome::Recorded
                    }
                };
                jti_fresh.push(false);
                pre.push(Some(outcome));
            }
            WriteOp::RecordMandate { record, .. } => {
                mandates.push(record);
                jti_fresh.push(false);
                pre.push(None);
            }
            WriteOp::Audit { .. } | WriteOp::Maintain { .. } => {
                jti_fresh.push(false);
                pre.push(None);
            }
        }
    }
    let new_mandates = insert_mandates(&mut tx, &mandates).await?;
    let mut counted_m: HashSet<&str> = HashSet::new();
    let mut new_m = |j| first_new(&new_mandates, &mut counted_m, j);
    let verdicts: Vec<Verdict> = ops
        .iter()
        .zip(pre.into_iter().zip(jti_fresh))
        .map(|(op, (outcome, jf))| match op {
            WriteOp::UseJti { .. } => Verdict::Jti(jf),
            WriteOp::RecordMandate { record, .. } => Verdict::Mandate(new_m(&record.jti)),
            WriteOp::Issue { record, .. } => match outcome {
                Some(IssueOutcome::Recorded) if !new_m(&record.jti) => {
                    Verdict::Issue(IssueOutcome::Replayed(usize::MAX))
                }
                Some(o) => Verdict::Issue(o),
                None => Verdict::Issue(IssueOutcome::Replayed(usize::MAX)),
            },
            WriteOp::Audit { .. } | WriteOp::Maintain { .. } => Verdict::Audit(0),
        })
        .collect();
    // Audit events, in queue order: standalone ones, and those of mandates that were recorded.
    let mut events: Vec<&AuditRecord> = Vec::new();
    // For each event, the op that waits for its seq (None: an issuance's own event).
    let mut owners: Vec<Option<usize>> = Vec::new();
    for (i, (op, v)) in ops.iter().zip(&verdicts).enumerate() {
        match (op, v) {
            (WriteOp::Audit { record, .. }, _) => {
                events.push(record);
                owners.push(Some(i));
            }
            (
                WriteOp::Issue {
                    audit: Some(record),
                    ..
                },
                Verdict::Issue(IssueOutcome::Recorded),
            ) => {
                events.push(record);
                owners.push(None);
            }
            _ => {}
        }
    }
    let seqs = insert_events(&mut tx, &events).await?;
    tx.commit().await?;
    recent.push(committed(&events, &seqs));
    let mut verdicts = verdicts;
    for (owner, seq) in owners.into_iter().zip(seqs) {
        if let Some(i) = owner {
            verdicts[i] = Verdict::Audit(seq);
        }
    }
    Ok(verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_report_writer_gone_when_the_writer_task_has_stopped() {
        let (ops, queue) = mpsc::channel(1);
        drop(queue);
        let writer = Writer { ops };
        assert!(matches!(
            writer.use_jti("j", 10).await,
            Err(StoreError::WriterGone)
        ));
    }

    #[tokio::test]
    async fn calls_report_writer_gone_when_the_writer_drops_the_op_unanswered() {
        let (ops, mut queue) = mpsc::channel(1);
        let writer = Writer { ops };
        let dropper = tokio::spawn(async move {
            // Receiving and dropping the op stands in for a writer that dies mid-batch.
            drop(queue.recv().await);
        });
        assert!(matches!(
            writer.use_jti("j", 10).await,
            Err(StoreError::WriterGone)
        ));
        dropper.await.unwrap();
    }

    #[tokio::test]
    async fn every_op_in_a_batch_fails_when_a_statement_in_it_fails() {
        let store = crate::Store::open_sqlite_memory().await.unwrap();
        // Dropping the table makes the jti insert fail inside the batch.
        sqlx::query("DROP TABLE used_jtis")
            .execute(&store.pool)
            .await
            .unwrap();
        let record = MandateRecord {
            jti: "m1".to_owned(),
            parent_jti: None,
            subject: "user:a".to_owned(),
            delegator: "user:a".to_owned(),
            holder: "agent:b".to_owned(),
            audiences: "api".to_owned(),
            scopes: "read".to_owned(),
            depth: 0,
            grant_type: "code".to_owned(),
            reason: None,
            issued_at: 1,
            expires_at: 2,
            kid: "k".to_owned(),
            may_act: None,
            may_act_by: None,
        };
        // On the single-threaded test runtime both ops are queued before the
        // writer runs, so the mandate shares the failing jti's batch.
        let (mandate, jti) = tokio::join!(store.record_mandate(&record), store.use_jti("j", 10));
        assert!(
            matches!(mandate, Err(StoreError::BatchFailed(_))),
            "{mandate:?}"
        );
        assert!(matches!(jti, Err(StoreError::BatchFailed(_))), "{jti:?}");
        // The rolled-back batch must not have stored the mandate.
        assert_eq!(store.mandate("m1").await.unwrap(), None);
    }
}

//! The group-commit writer: one task that owns the write connection and
//! commits queued hot-path writes (`use_jti`, `record_mandate`) together.
//!
//! With `synchronous=FULL` every commit costs an fsync, so committing each
//! write on its own would cap throughput at the disk's fsync rate. The writer
//! instead takes whatever has queued up while the previous batch was being
//! committed, runs it all in one transaction, and answers every caller only
//! after that transaction is durable.

use std::sync::Arc;

use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::jtis::insert_jti;
use crate::mandates::{insert_mandate, MandateRecord};

/// Most writes committed in one transaction, which bounds how long the
/// first caller of a batch waits for the last one's statement.
const MAX_BATCH: usize = 256;

/// How many writes may wait for the writer before callers are made to wait
/// for room, which gives back-pressure instead of unbounded memory.
const QUEUE_CAPACITY: usize = 4096;

/// One write waiting for the writer, with the channel its result goes back on.
enum WriteOp {
    /// Insert a single-use jti; answers whether it was fresh.
    UseJti {
        jti: String,
        expires_at: i64,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Insert an issued mandate; answers `AlreadyExists` if its jti is taken.
    RecordMandate {
        /// Boxed so that the much smaller jti ops do not pay for its size in the queue.
        record: Box<MandateRecord>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl WriteOp {
    /// Answers the caller after a successful commit; `inserted` says whether
    /// the op's row was new.
    fn succeed(self, inserted: bool) {
        // A send fails only if the caller stopped waiting, and then nobody
        // needs the answer; the write itself is already durable.
        match self {
            WriteOp::UseJti { reply, .. } => {
                let _ = reply.send(Ok(inserted));
            }
            WriteOp::RecordMandate { record, reply } => {
                let answer = if inserted {
                    Ok(())
                } else {
                    Err(StoreError::AlreadyExists(record.jti))
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Tells the caller that its batch was not stored.
    fn fail(self, err: Arc<sqlx::Error>) {
        let answer = StoreError::BatchFailed(err);
        match self {
            WriteOp::UseJti { reply, .. } => {
                let _ = reply.send(Err(answer));
            }
            WriteOp::RecordMandate { reply, .. } => {
                let _ = reply.send(Err(answer));
            }
        }
    }
}

/// The sending side of the writer task; cloning it is cheap.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    ops: mpsc::Sender<WriteOp>,
}

impl Writer {
    /// Starts the writer task on the current Tokio runtime. The task runs
    /// until every `Writer` clone is dropped.
    pub(crate) fn spawn(pool: SqlitePool) -> Writer {
        let (ops, queue) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(pool, queue));
        Writer { ops }
    }

    /// Records a single-use jti; `Ok(false)` means it was already used.
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

    /// Records an issued mandate.
    pub(crate) async fn record_mandate(&self, record: &MandateRecord) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteOp::RecordMandate {
            record: Box::new(record.clone()),
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues an op, failing if the writer task has stopped.
    async fn submit(&self, op: WriteOp) -> Result<(), StoreError> {
        self.ops.send(op).await.map_err(|_| StoreError::WriterGone)
    }
}

/// The writer task's loop: wait for at least one op, take everything else
/// already queued (up to `MAX_BATCH`), and commit it as one batch.
async fn run(pool: SqlitePool, mut queue: mpsc::Receiver<WriteOp>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let ops = std::mem::take(&mut batch);
        match execute(&pool, &ops).await {
            Ok(outcomes) => {
                tracing::trace!(size = ops.len(), "group commit done");
                for (op, inserted) in ops.into_iter().zip(outcomes) {
                    op.succeed(inserted);
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
}

/// Runs every op in one transaction and commits it, returning for each op
/// whether its row was new.
///
/// Later ops see earlier ones' uncommitted rows, so a jti used twice within
/// one batch is reported as a replay the second time. Any statement error
/// aborts the whole batch rather than skipping the op, because PostgreSQL
/// cannot continue a transaction after an error and callers must fail closed.
async fn execute(pool: &SqlitePool, ops: &[WriteOp]) -> Result<Vec<bool>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        let inserted = match op {
            WriteOp::UseJti {
                jti, expires_at, ..
            } => insert_jti(&mut tx, jti, *expires_at).await?,
            WriteOp::RecordMandate { record, .. } => insert_mandate(&mut tx, record).await?,
        };
        outcomes.push(inserted);
    }
    tx.commit().await?;
    Ok(outcomes)
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

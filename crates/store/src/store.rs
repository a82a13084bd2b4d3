//! The `Store` handle and how it is opened: connection settings, schema
//! migration, and starting the group-commit writer.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::audit::recent::Recent;
use crate::error::StoreError;
use crate::writer::Writer;

/// How long a connection waits for another writer's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Size of the pool that serves reads and the infrequent administrative writes.
const READER_CONNECTIONS: u32 = 8;

/// A handle to Mandate's database; cheap to clone and safe to share.
///
/// Reads and administrative writes use a connection pool. The hot-path writes
/// (`use_jti` and `record_mandate`) are sent to a single writer task that
/// commits them in batches.
#[derive(Clone, Debug)]
pub struct Store {
    /// Pool for reads and administrative writes.
    pub(crate) pool: SqlitePool,
    /// Channel to the group-commit writer task.
    pub(crate) writer: Writer,
    /// What the writer just committed to the audit log (leaves and parties), for the integrator.
    pub(crate) recent: Arc<Recent>,
}

impl Store {
    /// Opens (creating if missing) the SQLite database at `path` in WAL mode
    /// with `synchronous=FULL`, applies pending migrations and starts the
    /// group-commit writer.
    ///
    /// Must be called inside a Tokio runtime, which the writer task runs on.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        owner_only(path).map_err(|e| StoreError::Invalid(format!("{}: {e}", path.display())))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(READER_CONNECTIONS)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        // The writer gets its own single, permanent connection so that hot
        // writes never queue behind readers for a pooled connection.
        let writer_pool = single_connection_pool().connect_with(options).await?;
        let recent = Arc::new(Recent::default());
        Ok(Store {
            pool,
            writer: Writer::spawn(writer_pool, recent.clone()),
            recent,
        })
    }

    /// Opens a fresh, private in-memory database, for tests.
    ///
    /// Everything, including the writer, shares one connection, because an
    /// in-memory database disappears when its last connection closes.
    pub async fn open_sqlite_memory() -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = single_connection_pool().connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let recent = Arc::new(Recent::default());
        Ok(Store {
            writer: Writer::spawn(pool.clone(), recent.clone()),
            recent,
            pool,
        })
    }

    /// Whether the group-commit writer still takes operations (its task has not ended). A
    /// probe of the writer that writes nothing: health checks use it, appends do not need it
    /// (a stopped writer fails them with `WriterGone`).
    pub fn writer_running(&self) -> bool {
        self.writer.is_running()
    }
}

/// Makes the database file (created empty if missing) and its WAL and shared-memory files
/// readable and writable by their owner only: the database holds the delegation records and the
/// audit log. SQLite gives the `-wal` and `-shm` files it creates the main file's mode.
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        match std::fs::metadata(file) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                tracing::warn!(file = %file.display(), "the database file was readable by others; made it owner-only (0600)");
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Pool settings for exactly one connection that is never closed for being
/// idle or old, so the writer keeps its connection and in-memory data lives on.
fn single_connection_pool() -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        // The connection is the writer's alone and never idle for long: a ping before every
        // batch would be one more round trip to SQLite's thread per commit (a broken
        // connection still fails the batch, closed).
        .test_before_acquire(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_clone_send_and_sync() {
        // Server handlers share one Store across tasks and threads.
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<Store>();
    }

    #[tokio::test]
    async fn file_store_uses_wal_full_sync_foreign_keys_and_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("mandate.db"))
            .await
            .unwrap();
        let mut conn = store.pool.acquire().await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        // 2 is FULL.
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(synchronous, 2);
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(foreign_keys, 1);
        let busy_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(busy_ms, 5_000);
    }

    #[tokio::test]
    async fn the_database_and_its_wal_are_owner_only_even_when_they_were_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mandate.db");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let store = Store::open_sqlite(&path).await.unwrap();
        store.use_jti("j", 10).await.unwrap();
        assert_eq!(mode(&path), 0o600);
        let wal = dir.path().join("mandate.db-wal");
        assert_eq!(mode(&wal), 0o600);
        drop(store);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open_sqlite(&path).await.unwrap());
        assert_eq!(mode(&path), 0o600);
    }

    #[tokio::test]
    async fn opening_creates_the_file_and_reopening_it_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested-name.db");
        drop(Store::open_sqlite(&path).await.unwrap());
        assert!(path.exists());
        // Reopening must find the migrations already applied and not fail.
        drop(Store::open_sqlite(&path).await.unwrap());
    }
}

//! SQLite on rusqlite. SQLite allows one writer at a time, so there is one writer connection,
//! taken in turn (an async mutex: waiting writers queue instead of spinning in SQLite's busy
//! handler), and a pool of read-only readers that WAL lets run beside it. Statements run in the
//! calling task with their prepared form cached.
//!
//! Commits only append to the WAL (synchronous = NORMAL: durable across process crashes, the WAL
//! is fsynced at checkpoints). Checkpoints, which fsync, run on a background thread instead of in
//! whichever request's commit crossed the WAL limit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{ErrorCode, OpenFlags};
use tokio::sync::OwnedMutexGuard;

use super::{Column, Error, Result, Row, Value};

/// How long a writer waits for another process (the CLI, a second instance) to release the
/// database before the request fails with 503.
const LOCK_WAIT: Duration = Duration::from_secs(5);
const STATEMENT_CACHE: usize = 256;
const IDLE_READERS: usize = 8;
/// Checkpoints run at most this often under load; the WAL in between is a few MiB at most.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// A safety net should the checkpoint thread fall behind: the writer checkpoints itself past this
/// many WAL pages (64 MiB).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16_384;

pub struct SqliteDatabase {
    path: PathBuf,
    writer: Arc<tokio::sync::Mutex<rusqlite::Connection>>,
    readers: Arc<ReaderPool>,
    checkpoints: Checkpointer,
}

/// A connection in use: the writer inside a transaction, or a reader.
pub enum Handle {
    Writer(Writer),
    Reader(Reader),
}

pub struct Writer {
    conn: OwnedMutexGuard<rusqlite::Connection>,
    in_transaction: bool,
    checkpoints: SyncSender<()>,
}

pub struct Reader {
    conn: Option<rusqlite::Connection>,
    pool: Arc<ReaderPool>,
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl SqliteDatabase {
    /// Opens (creating it if needed) the database at `path`, which is already migrated.
    pub fn open(path: &Path) -> Result<SqliteDatabase> {
        let writer = open_connection(path, OpenFlags::SQLITE_OPEN_CREATE)?;
        writer.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
        // Keep the WAL file from staying large after a burst.
        writer.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
        // Never wait inside SQLite: `begin` waits asynchronously for other processes.
        writer.busy_timeout(Duration::ZERO)?;
        let readers = Arc::new(ReaderPool {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        });
        Ok(SqliteDatabase {
            path: path.to_path_buf(),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers,
            checkpoints: Checkpointer::start(path.to_path_buf()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the writer and begins IMMEDIATE, so a transaction that reads and then writes can
    /// never fail on upgrading its lock. While another process holds the database, waits
    /// without blocking the runtime.
    pub async fn begin(&self) -> Result<Handle> {
        let conn = self.writer.clone().lock_owned().await;
        if !conn.is_autocommit() {
            // A transaction left open by a failed commit and a failed rollback.
            run(&conn, "ROLLBACK")?;
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match run(&conn, "BEGIN IMMEDIATE") {
                Ok(()) => break,
                Err(Error::Sqlite(error)) if is_busy(&error) => {
                    if started.elapsed() >= LOCK_WAIT {
                        return Err(Error::LockTimeout(LOCK_WAIT));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(25));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(Handle::Writer(Writer {
            conn,
            in_transaction: true,
            checkpoints: self.checkpoints.nudges.clone(),
        }))
    }

    pub fn read(&self) -> Result<Handle> {
        let idle = self
            .readers
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.readers.path)?,
        };
        Ok(Handle::Reader(Reader {
            conn: Some(conn),
            pool: self.readers.clone(),
        }))
    }

    /// Waits for the writer, stops the checkpoint thread and folds the WAL into the database file.
    pub async fn close(&self) {
        let writer = self.writer.lock().await;
        self.checkpoints.stop();
        self.readers
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        if let Err(error) = writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(error = %error, "final checkpoint failed");
        }
    }
}

impl Handle {
    pub fn connection(&mut self) -> &rusqlite::Connection {
        match self {
            Handle::Writer(writer) => &writer.conn,
            Handle::Reader(reader) => reader
                .conn
                .as_ref()
                .expect("a reader holds its connection until dropped"),
        }
    }

    pub fn commit(mut self) -> Result<()> {
        let Handle::Writer(writer) = &mut self else {
            return Ok(());
        };
        if let Err(error) = run(&writer.conn, "COMMIT") {
            writer.rollback();
            return Err(error);
        }
        writer.in_transaction = false;
        // The thread checkpoints soon; a full channel means it is already due to.
        let _ = writer.checkpoints.try_send(());
        Ok(())
    }

    pub fn rollback(&mut self) {
        if let Handle::Writer(writer) = self {
            writer.rollback();
        }
    }
}

impl Writer {
    fn rollback(&mut self) {
        if self.in_transaction {
            self.in_transaction = false;
            if let Err(error) = run(&self.conn, "ROLLBACK") {
                tracing::warn!(error = %error, "rollback failed");
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}

fn open_connection(path: &Path, extra: OpenFlags) -> Result<rusqlite::Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | extra;
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<rusqlite::Connection> {
    let conn = open_connection(path, OpenFlags::empty())?;
    // A write on a reader would compete with the writer inside SQLite: refuse it outright.
    conn.pragma_update(None, "query_only", "ON")?;
    // WAL readers do not wait for writers; this covers the rare moment of a WAL reset.
    conn.busy_timeout(Duration::from_millis(250))?;
    Ok(conn)
}

/// Runs a statement without parameters or rows (BEGIN, COMMIT, ROLLBACK).
fn run(conn: &rusqlite::Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)?.raw_execute()?;
    Ok(())
}

pub fn execute(conn: &rusqlite::Connection, sql: &str, arguments: &[Value<'_>]) -> Result<u64> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, arguments)?;
    Ok(statement.raw_execute()? as u64)
}

pub fn fetch(
    conn: &rusqlite::Connection,
    sql: &str,
    arguments: &[Value<'_>],
    limit: Option<usize>,
) -> Result<Vec<Row>> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, arguments)?;
    let names: Arc<[String]> = statement.column_names().into_iter().map(String::from).collect();
    let mut rows = statement.raw_query();
    let mut found = Vec::new();
    // Stopping early is safe for INSERT/UPDATE ... RETURNING too: SQLite makes every change
    // of such a statement in its first step.
    while limit.is_none_or(|limit| found.len() < limit) {
        let Some(row) = rows.next()? else {
            break;
        };
        let mut values = Vec::with_capacity(names.len());
        for index in 0..names.len() {
            values.push(column(row.get_ref(index)?));
        }
        found.push(Row {
            names: names.clone(),
            values,
        });
    }
    Ok(found)
}

/// Binds `$N` parameters to the N-th argument, wherever and however often they appear.
fn bind(statement: &mut rusqlite::Statement<'_>, arguments: &[Value<'_>]) -> Result<()> {
    for index in 1..=statement.parameter_count() {
        let position = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|digits| digits.parse::<usize>().ok())
            .ok_or_else(|| Error::decode("?", "parameters must be written $1, $2, ..."))?;
        match arguments.get(position - 1) {
            Some(Value::Int(Some(int))) => statement.raw_bind_parameter(index, int)?,
            Some(Value::Text(Some(text))) => statement.raw_bind_parameter(index, text.as_ref())?,
            Some(Value::Blob(Some(bytes))) => statement.raw_bind_parameter(index, bytes.as_ref())?,
            Some(Value::Int(None) | Value::Text(None) | Value::Blob(None)) | None => {
                statement.raw_bind_parameter(index, rusqlite::types::Null)?
            }
        }
    }
    Ok(())
}

fn column(value: rusqlite::types::ValueRef<'_>) -> Column {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Column::Null,
        ValueRef::Integer(int) => Column::Int(int),
        ValueRef::Real(real) => Column::Real(real),
        ValueRef::Text(text) => Column::Text(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(bytes) => Column::Blob(bytes.to_vec()),
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Busy, locked, I/O error, disk full, cannot open: the database, not the request, is at fault.
pub fn is_unavailable(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
        )
    )
}

/// The background thread that checkpoints the WAL after commits, at most every
/// `CHECKPOINT_INTERVAL`.
struct Checkpointer {
    nudges: SyncSender<()>,
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Checkpointer {
    fn start(path: PathBuf) -> Checkpointer {
        let (nudges, received) = sync_channel(1);
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name("sqlite-checkpoint".into())
                .spawn(move || checkpoint_loop(&path, &received, &stopping))
                .map_err(|error| tracing::warn!(error = %error, "no checkpoint thread: the writer checkpoints"))
                .ok()
        };
        Checkpointer {
            nudges,
            stopping,
            thread: Mutex::new(thread),
        }
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.nudges.try_send(());
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn checkpoint_loop(path: &Path, nudges: &Receiver<()>, stopping: &AtomicBool) {
    let conn = match open_connection(path, OpenFlags::empty()) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(error = %error, "checkpoint thread cannot open the database: the writer checkpoints");
            return;
        }
    };
    let mut last = Instant::now();
    while nudges.recv().is_ok() {
        // Let commits accumulate: one checkpoint copies a page once however often it changed.
        std::thread::sleep(CHECKPOINT_INTERVAL.saturating_sub(last.elapsed()));
        while nudges.try_recv().is_ok() {}
        // After the drain: `stop` sets the flag before it nudges, so a drained stop is seen here.
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %error, "checkpoint failed");
        }
        last = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::{query, query_as, Connection, Handle as AnyHandle, Tx};

    fn database() -> (tempfile::TempDir, SqliteDatabase) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let setup = rusqlite::Connection::open(&path).unwrap();
        setup
            .execute_batch("CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT, note TEXT, data BLOB);")
            .unwrap();
        drop(setup);
        let database = SqliteDatabase::open(&path).unwrap();
        (dir, database)
    }

    async fn begin(database: &SqliteDatabase) -> Tx {
        Tx::new(AnyHandle::Sqlite(database.begin().await.unwrap()), Default::default())
    }

    fn reader(database: &SqliteDatabase) -> Connection {
        Connection::new(AnyHandle::Sqlite(database.read().unwrap()))
    }

    #[tokio::test]
    async fn parameters_bind_by_number_wherever_they_appear() {
        let (_dir, database) = database();
        let mut tx = begin(&database).await;
        query("INSERT INTO items (id, n, note, data) VALUES ($3, $1, $2, $4)")
            .bind(7)
            .bind(None::<String>)
            .bind("a")
            .bind(&[1u8, 2][..])
            .execute(&mut tx)
            .await
            .unwrap();
        let found: (i64, Option<String>, Vec<u8>) =
            query_as("SELECT n, note, data FROM items WHERE id = $1 AND n = $2 AND n >= $2")
                .bind("a")
                .bind(7)
                .fetch_one(&mut tx)
                .await
                .unwrap();
        assert_eq!(found, (7, None, vec![1, 2]));
    }

    #[tokio::test]
    async fn a_dropped_transaction_rolls_back_and_a_committed_one_stays() {
        let (_dir, database) = database();
        let mut tx = begin(&database).await;
        query("INSERT INTO items (id) VALUES ('dropped')")
            .execute(&mut tx)
            .await
            .unwrap();
        drop(tx);
        let mut tx = begin(&database).await;
        query("INSERT INTO items (id) VALUES ('kept')")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let ids: Vec<(String,)> = query_as("SELECT id FROM items ORDER BY id")
            .fetch_all(&mut reader(&database))
            .await
            .unwrap();
        assert_eq!(ids, vec![("kept".to_string(),)]);
    }

    #[tokio::test]
    async fn readers_refuse_writes() {
        let (_dir, database) = database();
        let result = query("INSERT INTO items (id) VALUES ('x')")
            .execute(&mut reader(&database))
            .await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn readers_see_committed_work_while_a_write_is_open() {
        let (_dir, database) = database();
        let mut tx = begin(&database).await;
        query("INSERT INTO items (id) VALUES ('open')")
            .execute(&mut tx)
            .await
            .unwrap();
        let (count,): (i64,) = query_as("SELECT COUNT(*) FROM items")
            .fetch_one(&mut reader(&database))
            .await
            .unwrap();
        assert_eq!(count, 0, "uncommitted work is not visible");
        tx.commit().await.unwrap();
        let (count,): (i64,) = query_as("SELECT COUNT(*) FROM items")
            .fetch_one(&mut reader(&database))
            .await
            .unwrap();
        assert_eq!(count, 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_writer_waits_for_another_connection_without_blocking_the_runtime() {
        let (dir, database) = database();
        // A second database on the same file, as another process would open it.
        let other = SqliteDatabase::open(&dir.path().join("test.db")).unwrap();
        let mut holding = begin(&other).await;
        query("INSERT INTO items (id) VALUES ('first')")
            .execute(&mut holding)
            .await
            .unwrap();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        // On one thread: if `begin` blocked inside SQLite, this task could never commit.
        let holder = tokio::spawn(async move {
            released.await.unwrap();
            holding.commit().await.unwrap();
        });
        let waiting = tokio::spawn(async move {
            let mut tx = begin(&database).await;
            query("INSERT INTO items (id) VALUES ('second')")
                .execute(&mut tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            database
        });
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        holder.await.unwrap();
        let database = waiting.await.unwrap();
        let (count,): (i64,) = query_as("SELECT COUNT(*) FROM items")
            .fetch_one(&mut reader(&database))
            .await
            .unwrap();
        assert_eq!(count, 2);
    }

    #[tokio::test]
    async fn closing_folds_the_wal_into_the_database_file() {
        let (dir, database) = database();
        for index in 0..50 {
            let mut tx = begin(&database).await;
            query("INSERT INTO items (id, data) VALUES ($1, $2)")
                .bind(format!("item-{index}"))
                .bind(vec![0u8; 4096])
                .execute(&mut tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        database.close().await;
        let wal = dir.path().join("test.db-wal");
        let wal_size = std::fs::metadata(&wal).map(|meta| meta.len()).unwrap_or(0);
        assert_eq!(wal_size, 0, "the WAL is truncated after the final checkpoint");
        let copy = rusqlite::Connection::open(dir.path().join("test.db")).unwrap();
        let count: i64 = copy
            .query_row("SELECT COUNT(*) FROM items", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 50);
    }
}

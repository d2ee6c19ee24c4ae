//! SQLite on rusqlite: one writer (`writer.rs`: taken in turn, with group commit), a pool of
//! read-only readers that WAL lets run beside it, and WAL checkpoints on a background thread
//! (`checkpoint.rs`). Statements run in the calling task with their prepared form cached.
//!
//! Commits only append to the WAL (synchronous = NORMAL: durable across process crashes; the WAL
//! is fsynced at checkpoints).

mod checkpoint;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{ErrorCode, OpenFlags};

use super::{Column, Error, Result, Row, Value};
use checkpoint::Checkpointer;
pub use writer::WriteHandle;
use writer::Writer;

const STATEMENT_CACHE: usize = 256;
const IDLE_READERS: usize = 8;
/// A safety net should the checkpoint thread fall behind: the writer checkpoints itself past this
/// many WAL pages (64 MiB).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16_384;

pub struct SqliteDatabase {
    path: PathBuf,
    writer: Writer,
    readers: Arc<ReaderPool>,
    checkpoints: Checkpointer,
}

/// A connection in use: the writer inside a transaction, or a reader.
pub enum Handle {
    Writer(WriteHandle),
    Reader(Reader),
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
        // After a burst the WAL shrinks back to this size, not to nothing: its blocks are reused
        // rather than allocated again by the file system at every write.
        writer.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        // The writer touches the same indexes all day: keep more of them in memory than the
        // default 2 MiB, to read fewer pages back from the WAL and the file.
        writer.pragma_update(None, "cache_size", -16 * 1024)?;
        // Savepoints (one per transaction in a batch) journal the pages they change: in memory,
        // not in a temporary file written at every change.
        writer.pragma_update(None, "temp_store", "MEMORY")?;
        // Never wait inside SQLite: `begin` waits asynchronously for other processes.
        writer.busy_timeout(Duration::ZERO)?;
        let readers = Arc::new(ReaderPool {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        });
        let checkpoints = Checkpointer::start(path.to_path_buf());
        Ok(SqliteDatabase {
            path: path.to_path_buf(),
            writer: Writer::new(writer, checkpoints.nudges()),
            readers,
            checkpoints,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn begin(&self) -> Result<Handle> {
        Ok(Handle::Writer(self.writer.begin().await?))
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

    /// Stops the checkpoint thread, commits what is open and folds the WAL into the database file.
    pub async fn close(&self) {
        self.checkpoints.stop();
        self.readers
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        self.writer.close().await;
    }
}

impl Handle {
    pub fn connection(&mut self) -> &rusqlite::Connection {
        match self {
            Handle::Writer(writer) => writer.connection(),
            Handle::Reader(reader) => reader
                .conn
                .as_ref()
                .expect("a reader holds its connection until dropped"),
        }
    }

    /// Answers once the transaction's work is committed; a reader has nothing to commit.
    pub async fn commit(self) -> Result<()> {
        match self {
            Handle::Writer(writer) => writer.commit().await,
            Handle::Reader(_) => Ok(()),
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

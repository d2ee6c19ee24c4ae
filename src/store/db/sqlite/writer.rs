//! SQLite's one writer, with group commit.
//!
//! Writers take the connection in turn (an async mutex: they queue instead of spinning in SQLite's
//! busy handler). A COMMIT writes every page the transaction changed to the WAL, one system call
//! per page, and most of that is the same few pages each time (the audit head, the last leaf of
//! each index). So a transaction that finishes while others are queued does not commit: it
//! releases its savepoint into the open batch, hands the connection on, and waits. The batch is
//! committed once by the last writer in the queue, or by a flush queued behind them. Nobody is
//! answered before the COMMIT that holds their work succeeded; a transaction that rolls back
//! undoes only its own savepoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use super::{checkpoint, is_busy, run};
use crate::store::db::{Error, Result};

/// How long a writer waits for another process (the CLI, a second instance) to release the
/// database before the request fails with 503.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// Transactions per COMMIT at most, so one batch never holds the database for long.
const MAX_BATCH: usize = 64;

#[derive(Clone)]
pub struct Writer {
    state: Arc<Mutex<WriterState>>,
    /// Tasks waiting for the connection: while there are any, a finished transaction joins the batch.
    queued: Arc<AtomicUsize>,
    checkpoints: SyncSender<()>,
}

struct WriterState {
    conn: rusqlite::Connection,
    /// The transactions released into the open batch, waiting for its COMMIT.
    batch: Vec<oneshot::Sender<Result<(), String>>>,
    /// A flush task is queued for the connection and will commit whatever batch is open.
    flush_queued: bool,
}

/// The writer, held by one transaction (its savepoint open) until commit or drop.
pub struct WriteHandle {
    state: OwnedMutexGuard<WriterState>,
    writer: Writer,
    in_savepoint: bool,
}

/// Counts a task as queued for the connection until it gets it or gives up (is cancelled).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(queued: &'a AtomicUsize) -> Queued<'a> {
        queued.fetch_add(1, Ordering::SeqCst);
        Queued(queued)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Writer {
    pub fn new(conn: rusqlite::Connection, checkpoints: SyncSender<()>) -> Writer {
        Writer {
            state: Arc::new(Mutex::new(WriterState {
                conn,
                batch: Vec::new(),
                flush_queued: false,
            })),
            queued: Arc::new(AtomicUsize::new(0)),
            checkpoints,
        }
    }

    /// Takes the connection and opens this transaction's savepoint, beginning the batch when
    /// none is open (IMMEDIATE, so a transaction that reads then writes never fails on upgrading
    /// its lock). While another process holds the database, waits without blocking the runtime.
    pub async fn begin(&self) -> Result<WriteHandle> {
        let mut state = {
            let _queued = Queued::enter(&self.queued);
            self.state.clone().lock_owned().await
        };
        if state.batch.is_empty() {
            if !state.conn.is_autocommit() {
                // A transaction left open by a failed commit and a failed rollback.
                run(&state.conn, "ROLLBACK")?;
            }
            begin_immediate(&mut state).await?;
        }
        if let Err(error) = run(&state.conn, "SAVEPOINT request") {
            if state.batch.is_empty() {
                let _ = run(&state.conn, "ROLLBACK");
            }
            return Err(error);
        }
        Ok(WriteHandle {
            state,
            writer: self.clone(),
            in_savepoint: true,
        })
    }

    /// Commits the open batch, if any, and folds the WAL into the database file (at shutdown).
    pub async fn close(&self) {
        let mut state = self.state.lock().await;
        if !state.batch.is_empty() {
            let _ = commit_batch(&mut state, &self.checkpoints);
        }
        if let Err(error) = state.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(error = %error, "final checkpoint failed");
        }
    }

    /// Queued behind the writers waiting now: commits the batch they leave open.
    async fn flush(self) {
        let mut state = self.state.lock().await;
        state.flush_queued = false;
        if !state.batch.is_empty() {
            if let Err(error) = commit_batch(&mut state, &self.checkpoints) {
                tracing::warn!(error = %error, "committing a batch of transactions failed");
            }
        }
    }
}

/// Takes `&mut WriterState`, not the connection, across the wait: a connection may move between
/// threads but not be shared by them.
async fn begin_immediate(state: &mut WriterState) -> Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match run(&state.conn, "BEGIN IMMEDIATE") {
            Ok(()) => return Ok(()),
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
}

/// COMMITs the open transaction and tells every transaction in the batch how it went.
fn commit_batch(state: &mut WriterState, checkpoints: &SyncSender<()>) -> Result<()> {
    let outcome = run(&state.conn, "COMMIT");
    if outcome.is_err() && !state.conn.is_autocommit() {
        let _ = run(&state.conn, "ROLLBACK");
    }
    // Transactions per commit: how much group commit saves.
    metrics::counter!("latchkey_sqlite_commits_total").increment(1);
    let told = outcome.as_ref().map(|_| ()).map_err(|error| error.to_string());
    for waiting in state.batch.drain(..) {
        let _ = waiting.send(told.clone());
    }
    if outcome.is_ok() {
        checkpoint::nudge(checkpoints);
    }
    outcome
}

impl WriteHandle {
    pub fn connection(&self) -> &rusqlite::Connection {
        &self.state.conn
    }

    /// Answers once this transaction's work is committed (or its batch failed to commit).
    pub async fn commit(mut self) -> Result<()> {
        self.in_savepoint = false;
        if let Err(error) = run(&self.state.conn, "RELEASE request") {
            self.in_savepoint = true;
            return Err(error);
        }
        metrics::counter!("latchkey_sqlite_transactions_total").increment(1);
        let others_waiting = self.writer.queued.load(Ordering::SeqCst) > 0;
        if !others_waiting || self.state.batch.len() + 1 >= MAX_BATCH {
            return commit_batch(&mut self.state, &self.writer.checkpoints);
        }
        let (done, committed) = oneshot::channel();
        self.state.batch.push(done);
        if !self.state.flush_queued {
            self.state.flush_queued = true;
            tokio::spawn(self.writer.clone().flush());
        }
        drop(self);
        match committed.await {
            Ok(told) => told.map_err(Error::Commit),
            Err(_) => Err(Error::Commit("the batch was abandoned".into())),
        }
    }
}

impl Drop for WriteHandle {
    fn drop(&mut self) {
        if !self.in_savepoint {
            return;
        }
        // Alone in the transaction: end it. In a batch: undo only this savepoint.
        let statements: &[&str] = if self.state.batch.is_empty() {
            &["ROLLBACK"]
        } else {
            &["ROLLBACK TO request", "RELEASE request"]
        };
        for statement in statements {
            if let Err(error) = run(&self.state.conn, statement) {
                tracing::warn!(error = %error, "rollback failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, Writer, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writer.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE parents (id INTEGER PRIMARY KEY);
             CREATE TABLE items (id TEXT PRIMARY KEY,
                 parent INTEGER REFERENCES parents(id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        let (nudges, _received) = std::sync::mpsc::sync_channel(1);
        (dir, Writer::new(conn, nudges), path)
    }

    fn insert(handle: &WriteHandle, id: &str, parent: Option<i64>) {
        handle
            .connection()
            .execute(
                "INSERT INTO items (id, parent) VALUES (?1, ?2)",
                rusqlite::params![id, parent],
            )
            .unwrap();
    }

    /// Committed rows as another connection sees them.
    fn committed(path: &std::path::Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut statement = conn.prepare("SELECT id FROM items ORDER BY id").unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn once_commit_returns_the_work_is_visible_to_other_connections() {
        let (_dir, writer, path) = writer();
        let tasks: Vec<_> = (0..50)
            .map(|index| {
                let (writer, path) = (writer.clone(), path.clone());
                tokio::spawn(async move {
                    let handle = writer.begin().await.unwrap();
                    insert(&handle, &format!("item-{index:02}"), None);
                    handle.commit().await.unwrap();
                    committed(&path).contains(&format!("item-{index:02}"))
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap(), "a commit answered before its work was committed");
        }
        assert_eq!(committed(&path).len(), 50);
    }

    /// `first` finishes while another writer is queued: it joins a batch and waits, uncommitted.
    async fn finish_into_a_batch<'a>(
        writer: &'a Writer,
        first: WriteHandle,
        path: &std::path::Path,
    ) -> (
        tokio::task::JoinHandle<Result<()>>,
        std::pin::Pin<Box<impl std::future::Future<Output = Result<WriteHandle>> + 'a>>,
    ) {
        let mut queued = Box::pin(writer.begin());
        assert!(futures::poll!(&mut queued).is_pending());
        let committing = tokio::spawn(first.commit());
        tokio::task::yield_now().await;
        assert!(!committing.is_finished(), "it waits for the batch");
        assert!(committed(path).is_empty(), "nothing is committed yet");
        (committing, queued)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_rollback_in_a_batch_undoes_only_its_own_work() {
        let (_dir, writer, path) = writer();
        let first = writer.begin().await.unwrap();
        insert(&first, "kept", None);
        let (committing, queued) = finish_into_a_batch(&writer, first, &path).await;
        let second = queued.await.unwrap();
        insert(&second, "rolled-back", None);
        drop(second);
        committing.await.unwrap().unwrap();
        assert_eq!(committed(&path), vec!["kept".to_string()]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn when_a_batch_fails_to_commit_nobody_in_it_is_told_it_succeeded() {
        let (_dir, writer, path) = writer();
        let first = writer.begin().await.unwrap();
        insert(&first, "innocent", None);
        let (committing, queued) = finish_into_a_batch(&writer, first, &path).await;
        let second = queued.await.unwrap();
        // A deferred foreign key fails at COMMIT, taking the whole batch with it.
        insert(&second, "orphan", Some(42));
        assert!(second.commit().await.is_err());
        assert!(committing.await.unwrap().is_err(), "the batch did not commit");
        assert!(committed(&path).is_empty());
        // The writer is usable again.
        let handle = writer.begin().await.unwrap();
        insert(&handle, "after", None);
        handle.commit().await.unwrap();
        assert_eq!(committed(&path), vec!["after".to_string()]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_left_open_by_a_cancelled_waiter_is_still_committed() {
        let (_dir, writer, path) = writer();
        let first = writer.begin().await.unwrap();
        insert(&first, "kept", None);
        let (committing, queued) = finish_into_a_batch(&writer, first, &path).await;
        // The writer that made `first` join a batch goes away before it gets the connection.
        drop(queued);
        committing.await.unwrap().unwrap();
        assert_eq!(committed(&path), vec!["kept".to_string()]);
    }
}

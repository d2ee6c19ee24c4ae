//! WAL checkpoints on a background thread. A checkpoint copies the WAL's pages into the database
//! file and fsyncs both; done inside a commit (SQLite's default), it stalls whichever request
//! crossed the WAL limit. Here commits only nudge this thread, which checkpoints at most every
//! `INTERVAL`, so a page changed by many commits is copied once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(100);

pub struct Checkpointer {
    nudges: SyncSender<()>,
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Checkpointer {
    pub fn start(path: PathBuf) -> Checkpointer {
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

    /// Something for commits to nudge the thread with.
    pub fn nudges(&self) -> SyncSender<()> {
        self.nudges.clone()
    }

    pub fn stop(&self) {
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

/// After a commit: the thread checkpoints soon (a full channel means it is already due to).
pub fn nudge(nudges: &SyncSender<()>) {
    let _ = nudges.try_send(());
}

fn checkpoint_loop(path: &Path, nudges: &Receiver<()>, stopping: &AtomicBool) {
    let conn = match super::open_connection(path, rusqlite::OpenFlags::empty()) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(error = %error, "checkpoint thread cannot open the database: the writer checkpoints");
            return;
        }
    };
    let mut last = Instant::now();
    while nudges.recv().is_ok() {
        std::thread::sleep(INTERVAL.saturating_sub(last.elapsed()));
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

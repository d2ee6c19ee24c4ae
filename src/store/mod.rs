//! Every SQL statement latchkey runs lives below this module. One schema, two engines: SQLite
//! (embedded default) and PostgreSQL (several instances), through sqlx's `Any` driver, with
//! portable SQL and integer Unix-second timestamps.
//!
//! Single-use things are consumed by one conditional UPDATE whose row count decides, so parallel
//! requests, or two instances on one PostgreSQL, can never both win.

pub mod audit;
pub mod keys;
pub mod outbox;
pub mod recovery;
pub mod sessions;
pub mod throttles;
pub mod two_factor;
pub mod users;
pub mod webauthn;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use sqlx::AnyConnection as Connection;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer; queueing writers here in order is fairer and much faster than
    /// letting them spin in SQLite's busy handler.
    write_lock: Option<Arc<Mutex<()>>>,
}

/// A write transaction. Dropping it without `commit` rolls back.
pub struct Tx {
    transaction: Transaction<'static, Any>,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.transaction
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.transaction
    }
}

impl Tx {
    pub async fn commit(self) -> anyhow::Result<()> {
        self.transaction.commit().await.context("committing transaction")
    }
}

impl Store {
    pub async fn connect(database_url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if database_url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let mut url = database_url.to_string();
        if backend == Backend::Sqlite {
            create_sqlite_parent_directory(&url)?;
            if !url.contains("mode=") {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("mode=rwc");
            }
        }
        let options = AnyConnectOptions::from_str(&url).context("parsing the database URL")?;
        let pool_options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            });
        let pool_options = if backend == Backend::Sqlite {
            pool_options.after_connect(|connection, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; NORMAL sync is durable across
                    // process crashes (the WAL is fsynced at checkpoints).
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *connection)
                        .await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *connection)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *connection)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *connection)
                        .await?;
                    Ok(())
                })
            })
        } else {
            pool_options
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to the {backend:?} database"))?;
        let write_lock = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
        Ok(Store {
            pool,
            backend,
            write_lock,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.context("running database migrations")
    }

    /// Starts a write transaction. On SQLite it takes the write lock first and begins
    /// IMMEDIATE, so a transaction that reads then writes can never fail on lock upgrade.
    pub async fn begin(&self) -> anyhow::Result<Tx> {
        let writer = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let transaction = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .context("starting a transaction")?;
        Ok(Tx {
            transaction,
            _writer: writer,
        })
    }

    /// A pooled connection for reads (and single-statement writes that need no transaction).
    pub async fn read(&self) -> anyhow::Result<sqlx::pool::PoolConnection<Any>> {
        self.pool.acquire().await.context("acquiring a database connection")
    }

    pub async fn is_ready(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether an error means the database cannot be reached right now (down, restarting, refusing
/// connections, out of connections, locked), as opposed to a bug: the client gets 503 and may retry.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .is_some_and(sqlx_error_is_unavailable)
    })
}

fn sqlx_error_is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => {
            if let Some(postgres) = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                // Connection exceptions; administrator, crash or start-up shutdown; too many
                // connections; a database not accepting connections; a read-only standby after a
                // failover; and anything FATAL, which ends the connection.
                let code = postgres.code();
                code.starts_with("08")
                    || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "55000" | "25006")
                    || matches!(
                        postgres.severity(),
                        sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                    )
            } else {
                // SQLite (extended) result codes: BUSY, LOCKED, IOERR, FULL, CANTOPEN.
                let code = database
                    .code()
                    .and_then(|code| code.parse::<i64>().ok())
                    .unwrap_or_default();
                matches!(code & 0xff, 5 | 6 | 10 | 13 | 14)
            }
        }
        _ => false,
    }
}

fn create_sqlite_parent_directory(url: &str) -> anyhow::Result<()> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    Ok(())
}

//! Every SQL statement latchkey runs lives below this module. One schema, two engines: SQLite
//! (embedded default, on rusqlite) and PostgreSQL (several instances, on sqlx), behind the small
//! query interface of `db`, with portable SQL, `$1` parameters and integer Unix-second timestamps.
//!
//! Single-use things are consumed by one conditional UPDATE whose row count decides, so parallel
//! requests, or two instances on one PostgreSQL, can never both win.

pub mod audit;
pub mod db;
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

use anyhow::Context;
use tokio::sync::Notify;

pub use db::{Connection, Tx};
use db::{Database, PostgresDatabase, SqliteDatabase};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    database: Arc<Database>,
    database_url: Arc<str>,
    /// Woken when a transaction that queued an email commits.
    mail_queued: Arc<Notify>,
}

impl Store {
    pub async fn connect(database_url: &str) -> anyhow::Result<Store> {
        let database = if database_url.starts_with("sqlite:") {
            let path = sqlite_path(database_url)?;
            create_sqlite_parent_directory(&path)?;
            let sqlite = SqliteDatabase::open(&path)
                .with_context(|| format!("opening the SQLite database {}", path.display()))?;
            Database::Sqlite(sqlite)
        } else {
            let postgres = PostgresDatabase::connect(database_url, 16)
                .await
                .context("connecting to the PostgreSQL database")?;
            Database::Postgres(postgres)
        };
        Ok(Store {
            database: Arc::new(database),
            database_url: database_url.into(),
            mail_queued: Arc::new(Notify::new()),
        })
    }

    pub fn backend(&self) -> Backend {
        match *self.database {
            Database::Sqlite(_) => Backend::Sqlite,
            Database::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &*self.database {
            Database::Sqlite(sqlite) => {
                // sqlx's migrator and its `_sqlx_migrations` table, on a connection of its own.
                use sqlx::Connection as _;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(&self.database_url)
                    .context("parsing the database URL")?
                    .filename(sqlite.path())
                    .create_if_missing(true);
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .context("opening the SQLite database to migrate it")?;
                SQLITE_MIGRATIONS
                    .run(&mut conn)
                    .await
                    .context("running database migrations")?;
                conn.close().await.context("closing the migration connection")?;
            }
            Database::Postgres(postgres) => POSTGRES_MIGRATIONS
                .run(postgres.pool())
                .await
                .context("running database migrations")?,
        }
        Ok(())
    }

    /// Starts a write transaction (on SQLite: the writer, BEGIN IMMEDIATE).
    pub async fn begin(&self) -> anyhow::Result<Tx> {
        self.database
            .begin(self.mail_queued.clone())
            .await
            .context("starting a transaction")
    }

    /// A connection for reads. Writes go through `begin` (on SQLite a reader refuses them).
    pub async fn read(&self) -> anyhow::Result<Connection> {
        self.database.read().await.context("acquiring a database connection")
    }

    pub async fn is_ready(&self) -> bool {
        match self.read().await {
            Ok(mut conn) => db::query_as::<(i64,)>("SELECT 1").fetch_one(&mut conn).await.is_ok(),
            Err(_) => false,
        }
    }

    /// Resolves when an email was committed to the outbox since the last call.
    pub async fn mail_queued(&self) {
        self.mail_queued.notified().await
    }

    pub async fn close(&self) {
        self.database.close().await;
    }
}

/// Whether an error means the database cannot be reached right now (down, restarting, refusing
/// connections, out of connections, locked), as opposed to a bug: the client gets 503 and may retry.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<db::Error>().is_some_and(db::is_unavailable))
}

/// The file of a `sqlite:` URL (`sqlite://data/latchkey.db`, `sqlite:///abs/path.db?mode=rwc`).
fn sqlite_path(url: &str) -> anyhow::Result<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        anyhow::bail!("LATCHKEY_DATABASE_URL: an SQLite database must be a file (sqlite://PATH)");
    }
    Ok(path.into())
}

fn create_sqlite_parent_directory(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(
            sqlite_path("sqlite://data/latchkey.db").unwrap().to_str(),
            Some("data/latchkey.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/latchkey.db?mode=rwc").unwrap().to_str(),
            Some("/var/lib/latchkey.db")
        );
        assert_eq!(sqlite_path("sqlite:latchkey.db").unwrap().to_str(), Some("latchkey.db"));
        assert!(sqlite_path("sqlite::memory:").is_err());
        assert!(sqlite_path("sqlite://").is_err());
    }
}

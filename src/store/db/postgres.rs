//! PostgreSQL on sqlx's native driver: a pool, transactions, and rows turned into `Row`s.

use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnection, PgPoolOptions, PgRow};
use sqlx::{Arguments, Column as _, PgPool, Postgres, Row as _, Transaction, TypeInfo as _};

use super::{Column, Error, Result, Row, Value};

pub struct PostgresDatabase {
    pool: PgPool,
    audit_head: AuditHeadCache,
}

/// The audit chain's head (sequence number, hash) as this instance last committed it, behind a
/// lock that also lines up this instance's appenders. While no other instance appends, an append
/// can then skip reading the head under PostgreSQL's row lock: it writes the head and the events
/// in one statement conditional on the cached sequence number (and falls back to the locking
/// read when another instance moved the head). The row lock is held from the append until
/// commit, so the fewer round trips in between, the more logins a second.
pub type AuditHeadCache = Arc<tokio::sync::Mutex<Option<AuditHead>>>;

/// The chain head: last sequence number and its hash.
pub type AuditHead = (i64, String);

/// This instance's turn at the audit chain, with the head a transaction will leave once committed.
struct AppendingTurn {
    turn: tokio::sync::OwnedMutexGuard<Option<AuditHead>>,
    head_after_commit: Option<AuditHead>,
}

pub enum Handle {
    Pooled(PoolConnection<Postgres>),
    Transaction(Box<WriteTransaction>),
}

pub struct WriteTransaction {
    transaction: Transaction<'static, Postgres>,
    audit_head: AuditHeadCache,
    /// Held from this transaction's audit append until it ends, with the head it will leave
    /// once committed.
    appending: Option<AppendingTurn>,
}

impl PostgresDatabase {
    pub async fn connect(url: &str, max_connections: u32) -> Result<PostgresDatabase> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(max_connections)
            .connect(url)
            .await?;
        Ok(PostgresDatabase {
            pool,
            audit_head: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn begin(&self) -> Result<Handle> {
        Ok(Handle::Transaction(Box::new(WriteTransaction {
            transaction: self.pool.begin().await?,
            audit_head: self.audit_head.clone(),
            appending: None,
        })))
    }

    pub async fn read(&self) -> Result<Handle> {
        Ok(Handle::Pooled(self.pool.acquire().await?))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Handle {
    fn connection(&mut self) -> &mut PgConnection {
        match self {
            Handle::Pooled(conn) => conn,
            Handle::Transaction(write) => &mut write.transaction,
        }
    }

    /// Waits for this instance's turn to append to the audit chain (kept until the transaction
    /// ends) and answers the head this instance last committed, if it knows it.
    pub async fn take_cached_audit_head(&mut self) -> Option<(i64, String)> {
        let Handle::Transaction(write) = self else { return None };
        if write.appending.is_none() {
            let mut turn = write.audit_head.clone().lock_owned().await;
            // Taken out: should this transaction roll back, the next append reads the head.
            let cached = turn.take();
            write.appending = Some(AppendingTurn {
                turn,
                head_after_commit: None,
            });
            return cached;
        }
        None
    }

    /// The head this transaction's append leaves, remembered once it is committed.
    pub fn audit_head_after_commit(&mut self, head: (i64, String)) {
        if let Handle::Transaction(write) = self {
            if let Some(appending) = write.appending.as_mut() {
                appending.head_after_commit = Some(head);
            }
        }
    }

    pub async fn commit(self) -> Result<()> {
        if let Handle::Transaction(write) = self {
            let WriteTransaction {
                transaction, appending, ..
            } = *write;
            transaction.commit().await?;
            // The turn passes on only now that the row lock is released too.
            if let Some(mut appending) = appending {
                *appending.turn = appending.head_after_commit;
            }
        }
        Ok(())
    }
}

fn arguments<'q>(values: &'q [Value<'q>]) -> Result<PgArguments> {
    let mut arguments = PgArguments::default();
    for value in values {
        match value {
            Value::Int(int) => arguments.add(*int),
            Value::Text(text) => arguments.add(text.as_deref()),
            Value::Blob(bytes) => arguments.add(bytes.as_deref()),
        }
        .map_err(|error| Error::Postgres(sqlx::Error::Encode(error)))?;
    }
    Ok(arguments)
}

pub async fn execute(handle: &mut Handle, sql: &str, values: &[Value<'_>]) -> Result<u64> {
    let done = sqlx::query_with(sql, arguments(values)?)
        .execute(handle.connection())
        .await?;
    Ok(done.rows_affected())
}

pub async fn fetch(handle: &mut Handle, sql: &str, values: &[Value<'_>], limit: Option<usize>) -> Result<Vec<Row>> {
    let query = sqlx::query_with(sql, arguments(values)?);
    let rows = match limit {
        Some(1) => query.fetch_optional(handle.connection()).await?.into_iter().collect(),
        _ => query.fetch_all(handle.connection()).await?,
    };
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let names: Arc<[String]> = first.columns().iter().map(|column| column.name().to_string()).collect();
    rows.iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|row| {
            Ok(Row {
                names: names.clone(),
                values: (0..names.len())
                    .map(|index| column(row, index))
                    .collect::<Result<_>>()?,
            })
        })
        .collect()
}

/// One column as a `Column`, by its PostgreSQL type (the schema uses BIGINT, TEXT and BYTEA).
fn column(row: &PgRow, index: usize) -> Result<Column> {
    let type_name = row.columns()[index].type_info().name().to_string();
    let decoded = match type_name.as_str() {
        "INT8" => row.try_get::<Option<i64>, _>(index).map(|v| v.map(Column::Int)),
        "INT4" => row
            .try_get::<Option<i32>, _>(index)
            .map(|v| v.map(|v| Column::Int(v.into()))),
        "INT2" => row
            .try_get::<Option<i16>, _>(index)
            .map(|v| v.map(|v| Column::Int(v.into()))),
        "BOOL" => row
            .try_get::<Option<bool>, _>(index)
            .map(|v| v.map(|v| Column::Int(v.into()))),
        "FLOAT8" => row.try_get::<Option<f64>, _>(index).map(|v| v.map(Column::Real)),
        "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" => row.try_get::<Option<String>, _>(index).map(|v| v.map(Column::Text)),
        "BYTEA" => row.try_get::<Option<Vec<u8>>, _>(index).map(|v| v.map(Column::Blob)),
        other => {
            let name = row.columns()[index].name();
            return Err(Error::decode(name, format!("unsupported PostgreSQL type {other}")));
        }
    };
    Ok(decoded?.unwrap_or(Column::Null))
}

/// Connection exceptions; administrator, crash or start-up shutdown; too many connections; a
/// database not accepting connections; a read-only standby after a failover; and anything
/// FATAL, which ends the connection.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => database
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|postgres| {
                let code = postgres.code();
                code.starts_with("08")
                    || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "55000" | "25006")
                    || matches!(
                        postgres.severity(),
                        sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                    )
            }),
        _ => false,
    }
}

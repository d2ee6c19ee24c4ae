//! PostgreSQL on sqlx's native driver: a pool, transactions, and rows turned into `Row`s.

use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnection, PgPoolOptions, PgRow};
use sqlx::{Arguments, Column as _, PgPool, Postgres, Row as _, Transaction, TypeInfo as _};

use super::{Column, Error, Result, Row, Value};

pub struct PostgresDatabase {
    pool: PgPool,
}

pub enum Handle {
    Pooled(PoolConnection<Postgres>),
    Transaction(Transaction<'static, Postgres>),
}

impl PostgresDatabase {
    pub async fn connect(url: &str, max_connections: u32) -> Result<PostgresDatabase> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(max_connections)
            .connect(url)
            .await?;
        Ok(PostgresDatabase { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn begin(&self) -> Result<Handle> {
        Ok(Handle::Transaction(self.pool.begin().await?))
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
            Handle::Transaction(transaction) => transaction,
        }
    }

    pub async fn commit(self) -> Result<()> {
        if let Handle::Transaction(transaction) = self {
            transaction.commit().await?;
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

//! The two database engines behind one small query interface, so every query in `store` is
//! written once: `query(sql).bind(..).execute(conn)`, `query_as::<Row>(sql)...fetch_optional(conn)`,
//! with `$1`-style parameters that both engines understand.
//!
//! - SQLite runs on rusqlite, in the calling task: a statement with its prepared form cached is a
//!   few microseconds of work, where a hop to a driver thread and back per statement (what an
//!   async SQLite driver does) costs more than the statement. One writer connection, a pool of
//!   read-only readers, group commit (`sqlite/writer.rs`) and WAL checkpoints on a background thread
//!   (`sqlite/checkpoint.rs`).
//! - PostgreSQL runs on sqlx's native driver (`postgres.rs`).

mod postgres;
mod sqlite;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

use tokio::sync::Notify;

pub use postgres::PostgresDatabase;
pub use sqlite::SqliteDatabase;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("the query returned no row")]
    RowNotFound,
    #[error("column {column}: {problem}")]
    Decode { column: String, problem: String },
    #[error("the database stayed locked by another process for {0:?}")]
    LockTimeout(std::time::Duration),
    #[error("this connection is closed")]
    Closed,
    #[error("committing failed: {0}")]
    Commit(String),
}

impl Error {
    /// A UNIQUE or PRIMARY KEY constraint refused the row.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(error, _)) => matches!(
                error.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            Error::Postgres(sqlx::Error::Database(error)) => error.is_unique_violation(),
            _ => false,
        }
    }

    fn decode(column: &str, problem: impl Into<String>) -> Error {
        Error::Decode {
            column: column.to_string(),
            problem: problem.into(),
        }
    }
}

/// A bound parameter. NULLs keep their type, which PostgreSQL needs to plan the statement.
#[derive(Debug, Clone)]
pub enum Value<'q> {
    Int(Option<i64>),
    Text(Option<Cow<'q, str>>),
    Blob(Option<Cow<'q, [u8]>>),
}

macro_rules! value_from {
    ($($type:ty => |$v:ident| $make:expr),* $(,)?) => {$(
        impl<'q> From<$type> for Value<'q> {
            fn from($v: $type) -> Value<'q> {
                $make
            }
        }
    )*};
}

value_from! {
    i64 => |v| Value::Int(Some(v)),
    Option<i64> => |v| Value::Int(v),
    &'q str => |v| Value::Text(Some(Cow::Borrowed(v))),
    &'q String => |v| Value::Text(Some(Cow::Borrowed(v.as_str()))),
    String => |v| Value::Text(Some(Cow::Owned(v))),
    Option<&'q str> => |v| Value::Text(v.map(Cow::Borrowed)),
    Option<String> => |v| Value::Text(v.map(Cow::Owned)),
    &'q Option<String> => |v| Value::Text(v.as_deref().map(Cow::Borrowed)),
    &'q [u8] => |v| Value::Blob(Some(Cow::Borrowed(v))),
    &'q Vec<u8> => |v| Value::Blob(Some(Cow::Borrowed(v.as_slice()))),
    Vec<u8> => |v| Value::Blob(Some(Cow::Owned(v))),
    Option<&'q [u8]> => |v| Value::Blob(v.map(Cow::Borrowed)),
}

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// One result row: column names and values.
#[derive(Debug, Clone)]
pub struct Row {
    names: Arc<[String]>,
    values: Vec<Column>,
}

impl Row {
    /// The named column, decoded.
    pub fn get<T: FromColumn>(&self, name: &str) -> Result<T> {
        let index = self
            .names
            .iter()
            .position(|column| column == name)
            .ok_or_else(|| Error::decode(name, "no such column in the result"))?;
        self.get_at(index)
    }

    pub fn get_at<T: FromColumn>(&self, index: usize) -> Result<T> {
        let name = self.names.get(index).map(String::as_str).unwrap_or("?");
        let value = self
            .values
            .get(index)
            .ok_or_else(|| Error::decode(name, "no such column index"))?;
        T::from_column(value).map_err(|problem| Error::decode(name, problem))
    }
}

pub trait FromColumn: Sized {
    fn from_column(value: &Column) -> Result<Self, String>;
}

impl FromColumn for i64 {
    fn from_column(value: &Column) -> Result<i64, String> {
        match value {
            Column::Int(int) => Ok(*int),
            other => Err(format!("expected an integer, found {}", kind(other))),
        }
    }
}

impl FromColumn for String {
    fn from_column(value: &Column) -> Result<String, String> {
        match value {
            Column::Text(text) => Ok(text.clone()),
            other => Err(format!("expected text, found {}", kind(other))),
        }
    }
}

impl FromColumn for Vec<u8> {
    fn from_column(value: &Column) -> Result<Vec<u8>, String> {
        match value {
            Column::Blob(bytes) => Ok(bytes.clone()),
            other => Err(format!("expected bytes, found {}", kind(other))),
        }
    }
}

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_column(value: &Column) -> Result<Option<T>, String> {
        match value {
            Column::Null => Ok(None),
            other => T::from_column(other).map(Some),
        }
    }
}

/// The kind of a value, for errors (never the value: it may be a secret).
fn kind(value: &Column) -> &'static str {
    match value {
        Column::Null => "NULL",
        Column::Int(_) => "an integer",
        Column::Real(_) => "a real",
        Column::Text(_) => "text",
        Column::Blob(_) => "bytes",
    }
}

/// A type built from a result row: tuples by position, row structs (`row_struct!`) by name.
pub trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self>;
}

macro_rules! tuple_from_row {
    ($($index:tt $type:ident),+) => {
        impl<$($type: FromColumn),+> FromRow for ($($type,)+) {
            fn from_row(row: &Row) -> Result<Self> {
                Ok(($(row.get_at::<$type>($index)?,)+))
            }
        }
    };
}

tuple_from_row!(0 A);
tuple_from_row!(0 A, 1 B);
tuple_from_row!(0 A, 1 B, 2 C);

/// Declares a row struct and reads it from the columns named like its fields.
#[macro_export]
macro_rules! row_struct {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $type:ty),* $(,)?
    }) => {
        $(#[$meta])* $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $type),*
        }
        impl $crate::store::db::FromRow for $name {
            fn from_row(row: &$crate::store::db::Row) -> $crate::store::db::Result<Self> {
                Ok($name { $($field: row.get(stringify!($field))?),* })
            }
        }
    };
}

/// A statement and its parameters.
pub struct Query<'q> {
    sql: Cow<'q, str>,
    arguments: Vec<Value<'q>>,
}

pub fn query<'q>(sql: impl Into<Cow<'q, str>>) -> Query<'q> {
    Query {
        sql: sql.into(),
        arguments: Vec::new(),
    }
}

pub fn query_as<'q, T: FromRow>(sql: impl Into<Cow<'q, str>>) -> QueryAs<'q, T> {
    QueryAs {
        query: query(sql),
        row: PhantomData,
    }
}

/// What a statement changed.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    rows_affected: u64,
}

impl Done {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

impl<'q> Query<'q> {
    pub fn bind(mut self, value: impl Into<Value<'q>>) -> Query<'q> {
        self.arguments.push(value.into());
        self
    }

    pub async fn execute(self, conn: &mut Connection) -> Result<Done> {
        let rows_affected = match &mut conn.handle {
            Handle::Sqlite(sqlite) => sqlite::execute(sqlite.connection(), &self.sql, &self.arguments)?,
            Handle::Postgres(postgres) => postgres::execute(postgres, &self.sql, &self.arguments).await?,
            Handle::Closed => return Err(Error::Closed),
        };
        Ok(Done { rows_affected })
    }

    async fn fetch(self, conn: &mut Connection, limit: Option<usize>) -> Result<Vec<Row>> {
        match &mut conn.handle {
            Handle::Sqlite(sqlite) => sqlite::fetch(sqlite.connection(), &self.sql, &self.arguments, limit),
            Handle::Postgres(postgres) => postgres::fetch(postgres, &self.sql, &self.arguments, limit).await,
            Handle::Closed => Err(Error::Closed),
        }
    }
}

/// A statement whose rows become `T`.
pub struct QueryAs<'q, T> {
    query: Query<'q>,
    row: PhantomData<fn() -> T>,
}

impl<'q, T: FromRow> QueryAs<'q, T> {
    pub fn bind(mut self, value: impl Into<Value<'q>>) -> QueryAs<'q, T> {
        self.query = self.query.bind(value);
        self
    }

    pub async fn fetch_all(self, conn: &mut Connection) -> Result<Vec<T>> {
        let rows = self.query.fetch(conn, None).await?;
        rows.iter().map(T::from_row).collect()
    }

    pub async fn fetch_optional(self, conn: &mut Connection) -> Result<Option<T>> {
        let rows = self.query.fetch(conn, Some(1)).await?;
        rows.first().map(T::from_row).transpose()
    }

    pub async fn fetch_one(self, conn: &mut Connection) -> Result<T> {
        self.fetch_optional(conn).await?.ok_or(Error::RowNotFound)
    }
}

/// A connection: SQLite's writer (inside a transaction) or a reader, or a PostgreSQL connection.
pub struct Connection {
    handle: Handle,
    /// Set when the work on this connection must wake the email sender once it is committed.
    wakes_mailer: bool,
}

enum Handle {
    Sqlite(sqlite::Handle),
    Postgres(postgres::Handle),
    /// A transaction that was committed (its connection went back to its pool).
    Closed,
}

impl Connection {
    fn new(handle: Handle) -> Connection {
        Connection {
            handle,
            wakes_mailer: false,
        }
    }

    /// Before an audit append: on PostgreSQL, waits for this instance's other appenders and
    /// answers the chain head this instance last committed, if known (see
    /// `postgres::AuditHeadCache`). SQLite's single writer already lines appenders up: `None`.
    pub async fn take_cached_audit_head(&mut self) -> Option<(i64, String)> {
        match &mut self.handle {
            Handle::Postgres(postgres) => postgres.take_cached_audit_head().await,
            _ => None,
        }
    }

    /// After an audit append: the head it leaves, to be remembered once committed.
    pub fn audit_head_after_commit(&mut self, head: (i64, String)) {
        if let Handle::Postgres(postgres) = &mut self.handle {
            postgres.audit_head_after_commit(head);
        }
    }

    /// Asks for the email sender to be woken when this work is committed (an email was queued).
    pub fn wake_mailer_after_commit(&mut self) {
        self.wakes_mailer = true;
    }
}

/// A write transaction. Dropping it without `commit` rolls it back (both engines' handles do so
/// when dropped).
pub struct Tx {
    conn: Connection,
    mailer: Arc<Notify>,
}

impl std::ops::Deref for Tx {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Tx {
    fn new(handle: Handle, mailer: Arc<Notify>) -> Tx {
        Tx {
            conn: Connection::new(handle),
            mailer,
        }
    }

    pub async fn commit(mut self) -> Result<()> {
        match std::mem::replace(&mut self.conn.handle, Handle::Closed) {
            Handle::Sqlite(sqlite) => sqlite.commit().await?,
            Handle::Postgres(postgres) => postgres.commit().await?,
            Handle::Closed => return Err(Error::Closed),
        }
        if self.conn.wakes_mailer {
            self.mailer.notify_one();
        }
        Ok(())
    }
}

/// An open database: SQLite or PostgreSQL.
pub enum Database {
    Sqlite(SqliteDatabase),
    Postgres(PostgresDatabase),
}

impl Database {
    pub async fn begin(&self, mailer: Arc<Notify>) -> Result<Tx> {
        let handle = match self {
            Database::Sqlite(sqlite) => Handle::Sqlite(sqlite.begin().await?),
            Database::Postgres(postgres) => Handle::Postgres(postgres.begin().await?),
        };
        Ok(Tx::new(handle, mailer))
    }

    pub async fn read(&self) -> Result<Connection> {
        let handle = match self {
            Database::Sqlite(sqlite) => Handle::Sqlite(sqlite.read()?),
            Database::Postgres(postgres) => Handle::Postgres(postgres.read().await?),
        };
        Ok(Connection::new(handle))
    }

    pub async fn close(&self) {
        match self {
            Database::Sqlite(sqlite) => sqlite.close().await,
            Database::Postgres(postgres) => postgres.close().await,
        }
    }
}

/// Whether an error means the database cannot be reached right now (down, restarting, refusing
/// connections, out of connections, locked) rather than a bug: the client gets 503 and may retry.
pub fn is_unavailable(error: &Error) -> bool {
    match error {
        Error::Sqlite(error) => sqlite::is_unavailable(error),
        Error::Postgres(error) => postgres::is_unavailable(error),
        Error::LockTimeout(_) | Error::Commit(_) => true,
        Error::RowNotFound | Error::Decode { .. } | Error::Closed => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::row_struct! {
        #[derive(Debug)]
        struct Example {
            /// Documented fields keep their docs.
            id: String,
            count: i64,
            note: Option<String>,
        }
    }

    fn row(names: &[&str], values: Vec<Column>) -> Row {
        Row {
            names: names.iter().map(|name| name.to_string()).collect(),
            values,
        }
    }

    #[test]
    fn row_structs_read_columns_by_name_in_any_order() {
        let row = row(
            &["note", "count", "id"],
            vec![Column::Null, Column::Int(3), Column::Text("a".into())],
        );
        let example = Example::from_row(&row).unwrap();
        assert_eq!((example.id.as_str(), example.count, example.note), ("a", 3, None));
    }

    #[test]
    fn tuples_read_columns_by_position() {
        let row = row(&["a", "b"], vec![Column::Int(1), Column::Blob(vec![7])]);
        assert_eq!(<(i64, Vec<u8>)>::from_row(&row).unwrap(), (1, vec![7]));
    }

    #[test]
    fn decoding_errors_name_the_column_and_kind_never_the_value() {
        let row = row(&["id"], vec![Column::Text("secret-value".into())]);
        let error = row.get::<i64>("id").unwrap_err().to_string();
        assert!(error.contains("id"), "{error}");
        assert!(!error.contains("secret-value"), "{error}");
        let missing = row.get::<i64>("absent").unwrap_err().to_string();
        assert!(missing.contains("absent"), "{missing}");
    }

    #[test]
    fn null_needs_an_option() {
        let row = row(&["n"], vec![Column::Null]);
        assert!(row.get::<i64>("n").is_err());
        assert_eq!(row.get::<Option<i64>>("n").unwrap(), None);
    }
}

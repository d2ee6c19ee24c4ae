use super::db::{self, Connection};

crate::row_struct! {
    #[derive(Debug, Clone)]
    pub struct AuditRow {
        pub seq: i64,
        pub at: i64,
        pub kind: String,
        pub user_id: Option<String>,
        pub actor_id: Option<String>,
        pub ip: Option<String>,
        pub user_agent: Option<String>,
        pub detail: String,
        pub hash: String,
    }
}

const COLUMNS: &str = "seq, at, kind, user_id, actor_id, ip, user_agent, detail, hash";

/// Reserves the next `count` sequence numbers and answers the last one with the previous hash.
/// The UPDATE locks the head row until the transaction ends, so concurrent appenders line up
/// behind each other: callers append last, just before commit, to hold it briefly.
pub async fn advance_head(conn: &mut Connection, count: i64) -> db::Result<(i64, String)> {
    db::query_as("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(count)
        .fetch_one(conn)
        .await
}

/// Inserts the events of one change with a single statement.
pub async fn insert_all(conn: &mut Connection, events: &[AuditRow]) -> db::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let statement = db::query(format!(
        "INSERT INTO audit_events ({COLUMNS}) VALUES {}",
        value_rows(events.len(), 1)
    ));
    bind_events(statement, events).execute(conn).await?;
    Ok(())
}

/// PostgreSQL only: moves the head from `expected_seq` to the last of `events` and inserts them,
/// in one statement, if the head is still at `expected_seq`; answers whether it was.
pub async fn append_if_head_is(conn: &mut Connection, expected_seq: i64, events: &[AuditRow]) -> db::Result<bool> {
    let Some(last) = events.last() else {
        return Ok(true);
    };
    let statement = db::query(format!(
        "WITH head AS (UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1 AND seq = $3 RETURNING seq) \
         INSERT INTO audit_events ({COLUMNS}) SELECT * FROM (VALUES {}) AS new_events ({COLUMNS}) \
         WHERE EXISTS (SELECT 1 FROM head)",
        value_rows(events.len(), 4)
    ))
    .bind(last.seq)
    .bind(&last.hash)
    .bind(expected_seq);
    let done = bind_events(statement, events).execute(conn).await?;
    Ok(done.rows_affected() == events.len() as u64)
}

/// `($first, …), (…)`: one group of nine placeholders per event.
fn value_rows(count: usize, first: usize) -> String {
    let rows: Vec<String> = (0..count)
        .map(|row| {
            let start = first + row * 9;
            let placeholders: Vec<String> = (start..start + 9).map(|index| format!("${index}")).collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    rows.join(", ")
}

fn bind_events<'q>(mut statement: db::Query<'q>, events: &'q [AuditRow]) -> db::Query<'q> {
    for event in events {
        statement = statement
            .bind(event.seq)
            .bind(event.at)
            .bind(&event.kind)
            .bind(&event.user_id)
            .bind(&event.actor_id)
            .bind(&event.ip)
            .bind(&event.user_agent)
            .bind(&event.detail)
            .bind(&event.hash);
    }
    statement
}

pub async fn set_head_hash(conn: &mut Connection, hash: &str) -> db::Result<()> {
    db::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Events after `after` in order, optionally only those about one user.
pub async fn page(conn: &mut Connection, user_id: Option<&str>, after: i64, limit: i64) -> db::Result<Vec<AuditRow>> {
    match user_id {
        Some(user_id) => {
            db::query_as(format!(
                "SELECT {COLUMNS} FROM audit_events WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ))
            .bind(user_id)
            .bind(after)
            .bind(limit)
            .fetch_all(conn)
            .await
        }
        None => {
            db::query_as(format!(
                "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
            ))
            .bind(after)
            .bind(limit)
            .fetch_all(conn)
            .await
        }
    }
}

/// The newest events about one user, newest first.
pub async fn recent_for_user(conn: &mut Connection, user_id: &str, limit: i64) -> db::Result<Vec<AuditRow>> {
    db::query_as(format!(
        "SELECT {COLUMNS} FROM audit_events WHERE user_id = $1 ORDER BY seq DESC LIMIT $2"
    ))
    .bind(user_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn head(conn: &mut Connection) -> db::Result<(i64, String)> {
    db::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(conn)
        .await
}

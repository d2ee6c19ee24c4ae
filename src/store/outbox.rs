use super::db::{self, Connection};

crate::row_struct! {
    #[derive(Debug, Clone)]
    pub struct OutboxRow {
        pub id: String,
        pub recipient: String,
        pub subject: String,
        pub body: Option<Vec<u8>>,
        pub attempts: i64,
    }
}

pub async fn insert(
    conn: &mut Connection,
    id: &str,
    recipient: &str,
    subject: &str,
    sealed_body: &[u8],
    now: i64,
) -> db::Result<()> {
    db::query(
        "INSERT INTO outbox (id, recipient, subject, body, created_at, next_attempt_at, attempts, claimed_until)
         VALUES ($1, $2, $3, $4, $5, $5, 0, 0)",
    )
    .bind(id)
    .bind(recipient)
    .bind(subject)
    .bind(sealed_body)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    conn.wake_mailer_after_commit();
    Ok(())
}

/// Ids of emails due for a delivery attempt, oldest first.
pub async fn due(conn: &mut Connection, now: i64, limit: i64) -> db::Result<Vec<String>> {
    let rows: Vec<(String,)> = db::query_as(
        "SELECT id FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
         AND claimed_until <= $1 ORDER BY next_attempt_at, created_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Claims one email for `lease` seconds with a conditional UPDATE, so two senders (two
/// instances) never both deliver it; answers the email when this caller won it.
pub async fn claim(conn: &mut Connection, id: &str, now: i64, lease: i64) -> db::Result<Option<OutboxRow>> {
    let claimed = db::query(
        "UPDATE outbox SET claimed_until = $1 WHERE id = $2 AND sent_at IS NULL AND failed_at IS NULL AND claimed_until <= $3",
    )
    .bind(now + lease)
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if claimed.rows_affected() != 1 {
        return Ok(None);
    }
    db::query_as("SELECT id, recipient, subject, body, attempts FROM outbox WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Delivered: the body (which may hold a token) is wiped.
pub async fn mark_sent(conn: &mut Connection, id: &str, now: i64) -> db::Result<()> {
    db::query("UPDATE outbox SET sent_at = $1, body = NULL, attempts = attempts + 1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn mark_retry(conn: &mut Connection, id: &str, next_attempt_at: i64, error: &str) -> db::Result<()> {
    db::query(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, claimed_until = 0, last_error = $2 WHERE id = $3",
    )
    .bind(next_attempt_at)
    .bind(error)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_failed(conn: &mut Connection, id: &str, now: i64, error: &str) -> db::Result<()> {
    db::query("UPDATE outbox SET attempts = attempts + 1, failed_at = $1, body = NULL, last_error = $2 WHERE id = $3")
        .bind(now)
        .bind(error)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn pending_count(conn: &mut Connection) -> db::Result<i64> {
    let (count,): (i64,) = db::query_as("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL")
        .fetch_one(conn)
        .await?;
    Ok(count)
}

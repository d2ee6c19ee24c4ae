use super::db::{self, Connection};

crate::row_struct! {
    #[derive(Debug, Clone, Copy, Default)]
    pub struct ThrottleRow {
        pub failures: i64,
        /// Unix milliseconds before which no try is taken.
        pub retry_at_ms: i64,
        pub locked: i64,
    }
}

pub async fn get(conn: &mut Connection, subject: &str, kind: &str) -> db::Result<ThrottleRow> {
    let row: Option<ThrottleRow> =
        db::query_as("SELECT failures, retry_at_ms, locked FROM throttles WHERE subject = $1 AND kind = $2")
            .bind(subject)
            .bind(kind)
            .fetch_optional(conn)
            .await?;
    Ok(row.unwrap_or_default())
}

/// Counts one more consecutive failure atomically and answers the new count, so failures from
/// several requests or instances all count.
pub async fn add_failure(conn: &mut Connection, subject: &str, kind: &str) -> db::Result<i64> {
    let (failures,): (i64,) = db::query_as(
        "INSERT INTO throttles (subject, kind, failures, retry_at_ms, locked) VALUES ($1, $2, 1, 0, 0)
         ON CONFLICT (subject, kind) DO UPDATE SET failures = throttles.failures + 1
         RETURNING failures",
    )
    .bind(subject)
    .bind(kind)
    .fetch_one(conn)
    .await?;
    Ok(failures)
}

pub async fn set_retry(
    conn: &mut Connection,
    subject: &str,
    kind: &str,
    retry_at_ms: i64,
    locked: bool,
) -> db::Result<()> {
    db::query("UPDATE throttles SET retry_at_ms = $1, locked = $2 WHERE subject = $3 AND kind = $4")
        .bind(retry_at_ms)
        .bind(i64::from(locked))
        .bind(subject)
        .bind(kind)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn reset(conn: &mut Connection, subject: &str, kind: &str) -> db::Result<()> {
    db::query("DELETE FROM throttles WHERE subject = $1 AND kind = $2")
        .bind(subject)
        .bind(kind)
        .execute(conn)
        .await?;
    Ok(())
}

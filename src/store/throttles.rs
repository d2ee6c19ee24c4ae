use super::db::{self, Connection};

/// SQL for the later of `t.retry_at_ms` and `t.retry_at` (whole seconds, which instances of the
/// previous version still write during a rolling upgrade), for a throttles row named `t`. A
/// literal, so the queries that use it stay static strings.
macro_rules! later_retry_at_ms {
    () => {
        "CASE WHEN t.retry_at_ms > t.retry_at * 1000 THEN t.retry_at_ms ELSE t.retry_at * 1000 END"
    };
}
pub(crate) use later_retry_at_ms;

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
    let row: Option<ThrottleRow> = db::query_as(concat!(
        "SELECT t.failures, ",
        later_retry_at_ms!(),
        " AS retry_at_ms, t.locked FROM throttles t WHERE t.subject = $1 AND t.kind = $2"
    ))
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
    db::query("UPDATE throttles SET retry_at_ms = $1, retry_at = $2, locked = $3 WHERE subject = $4 AND kind = $5")
        .bind(retry_at_ms)
        // Rounded down, as the previous version wrote it: never later than `retry_at_ms`, so the
        // later of the two is this one unless an instance of the previous version wrote since.
        .bind(retry_at_ms / 1000)
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

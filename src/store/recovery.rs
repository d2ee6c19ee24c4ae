//! Email recoveries, password resets, administrators' reset requests, and the per-address count
//! of recovery and reset requests.

use super::db::{self, Connection};

pub const REQUESTED: &str = "requested";
/// Written out as `'pending'` in queries that the partial index on pending recoveries serves.
pub const PENDING: &str = "pending";
pub const COMPLETED: &str = "completed";
pub const CANCELLED: &str = "cancelled";
pub const EXPIRED: &str = "expired";

crate::row_struct! {
    #[derive(Debug, Clone)]
    pub struct RecoveryRow {
        pub id: String,
        pub user_id: String,
        pub status: String,
        pub created_at: i64,
        pub link_expires_at: i64,
        pub lost_password: i64,
        pub confirmed_at: Option<i64>,
        pub completes_at: Option<i64>,
        pub expires_at: Option<i64>,
        pub reminder_due_at: Option<i64>,
        pub reminded_at: Option<i64>,
        pub ip: Option<String>,
        pub user_agent: Option<String>,
    }
}

const RECOVERY_COLUMNS: &str = "id, user_id, status, created_at, link_expires_at, lost_password, confirmed_at, \
     completes_at, expires_at, reminder_due_at, reminded_at, ip, user_agent";

pub async fn insert_recovery(
    conn: &mut Connection,
    id: &str,
    user_id: &str,
    token_hash: &[u8],
    now: i64,
    link_expires_at: i64,
) -> db::Result<()> {
    db::query(
        "INSERT INTO recovery_requests (id, user_id, token_hash, status, created_at, link_expires_at, lost_password)
         VALUES ($1, $2, $3, $4, $5, $6, 0)",
    )
    .bind(id)
    .bind(user_id)
    .bind(token_hash)
    .bind(REQUESTED)
    .bind(now)
    .bind(link_expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_recovery_by_token(conn: &mut Connection, token_hash: &[u8]) -> db::Result<Option<RecoveryRow>> {
    db::query_as(format!(
        "SELECT {RECOVERY_COLUMNS} FROM recovery_requests WHERE token_hash = $1"
    ))
    .bind(token_hash)
    .fetch_optional(conn)
    .await
}

pub async fn find_recovery_by_cancel_token(
    conn: &mut Connection,
    cancel_token_hash: &[u8],
) -> db::Result<Option<RecoveryRow>> {
    db::query_as(format!(
        "SELECT {RECOVERY_COLUMNS} FROM recovery_requests WHERE cancel_token_hash = $1"
    ))
    .bind(cancel_token_hash)
    .fetch_optional(conn)
    .await
}

/// Every second-factor login asks this. `'pending'` is written out, not bound: with a bound value
/// SQLite cannot know in advance that the partial index `recovery_requests_one_pending` applies,
/// and re-plans the statement at every execution.
pub async fn pending_recovery_for_user(conn: &mut Connection, user_id: &str) -> db::Result<Option<RecoveryRow>> {
    db::query_as(format!(
        "SELECT {RECOVERY_COLUMNS} FROM recovery_requests WHERE user_id = $1 AND status = 'pending'"
    ))
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// Marks pending recoveries whose completion window has closed as expired (all accounts, or one).
pub async fn expire_stale_recoveries(conn: &mut Connection, now: i64, user_id: Option<&str>) -> db::Result<u64> {
    let result = db::query(
        "UPDATE recovery_requests SET status = $1, ended_at = $2
         WHERE status = $3 AND expires_at <= $2 AND ($4 = '' OR user_id = $4)",
    )
    .bind(EXPIRED)
    .bind(now)
    .bind(PENDING)
    .bind(user_id.unwrap_or(""))
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

/// What confirming a recovery link decides.
pub struct WaitingPeriod<'a> {
    pub lost_password: bool,
    pub completes_at: i64,
    pub expires_at: i64,
    pub reminder_due_at: Option<i64>,
    pub cancel_token_hash: &'a [u8],
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// How an attempt to start a waiting period ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    Started,
    /// The link was already confirmed, or expired, meanwhile.
    LinkGone,
    /// Another recovery of the account became pending first (the unique index decided).
    AlreadyPending,
}

/// Starts the waiting period with one conditional UPDATE: the link must still be unconfirmed and
/// fresh, so a link confirms exactly once.
pub async fn start_waiting_period(
    conn: &mut Connection,
    id: &str,
    now: i64,
    period: &WaitingPeriod<'_>,
) -> db::Result<StartOutcome> {
    let result = db::query(
        "UPDATE recovery_requests SET status = $1, confirmed_at = $2, lost_password = $3, completes_at = $4,
             expires_at = $5, reminder_due_at = $6, cancel_token_hash = $7, ip = $8, user_agent = $9
         WHERE id = $10 AND status = $11 AND link_expires_at > $2",
    )
    .bind(PENDING)
    .bind(now)
    .bind(i64::from(period.lost_password))
    .bind(period.completes_at)
    .bind(period.expires_at)
    .bind(period.reminder_due_at)
    .bind(period.cancel_token_hash)
    .bind(period.ip)
    .bind(period.user_agent)
    .bind(id)
    .bind(REQUESTED)
    .execute(conn)
    .await;
    match result {
        Ok(done) if done.rows_affected() == 1 => Ok(StartOutcome::Started),
        Ok(_) => Ok(StartOutcome::LinkGone),
        Err(error) if error.is_unique_violation() => Ok(StartOutcome::AlreadyPending),
        Err(error) => Err(error),
    }
}

/// Ends a pending recovery as `completed` or `cancelled`; answers whether this call ended it.
/// Completing also requires the completion window to be open at `now`.
pub async fn end_recovery(conn: &mut Connection, id: &str, status: &str, now: i64) -> db::Result<bool> {
    let window = if status == COMPLETED {
        " AND completes_at <= $3 AND expires_at > $3"
    } else {
        ""
    };
    let result = db::query(format!(
        "UPDATE recovery_requests SET status = $1, ended_at = $3 WHERE id = $2 AND status = $4{window}"
    ))
    .bind(status)
    .bind(id)
    .bind(now)
    .bind(PENDING)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Unconfirmed links of the user stop working (after a completed recovery).
pub async fn retire_unconfirmed_recoveries(conn: &mut Connection, user_id: &str, now: i64) -> db::Result<()> {
    db::query("UPDATE recovery_requests SET status = $1, ended_at = $2 WHERE user_id = $3 AND status = $4")
        .bind(EXPIRED)
        .bind(now)
        .bind(user_id)
        .bind(REQUESTED)
        .execute(conn)
        .await?;
    Ok(())
}

/// Pending recoveries whose reminder is due and not yet sent.
pub async fn due_reminders(conn: &mut Connection, now: i64, limit: i64) -> db::Result<Vec<RecoveryRow>> {
    db::query_as(format!(
        "SELECT {RECOVERY_COLUMNS} FROM recovery_requests
         WHERE status = $1 AND reminded_at IS NULL AND reminder_due_at <= $2 ORDER BY reminder_due_at LIMIT $3"
    ))
    .bind(PENDING)
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Claims a reminder with one conditional UPDATE, so two workers never both send it.
pub async fn claim_reminder(conn: &mut Connection, id: &str, now: i64) -> db::Result<bool> {
    let result = db::query(
        "UPDATE recovery_requests SET reminded_at = $1 WHERE id = $2 AND status = $3 AND reminded_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .bind(PENDING)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Forgets links that were never confirmed and recoveries that ended, after `before`.
pub async fn delete_old_recoveries(conn: &mut Connection, before: i64) -> db::Result<u64> {
    let result = db::query(
        "DELETE FROM recovery_requests WHERE (status = $1 AND link_expires_at < $2) OR (ended_at IS NOT NULL AND ended_at < $2)",
    )
    .bind(REQUESTED)
    .bind(before)
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

crate::row_struct! {
    #[derive(Debug, Clone)]
    pub struct PasswordResetRow {
        pub id: String,
        pub user_id: String,
        pub expires_at: i64,
        pub used_at: Option<i64>,
    }
}

pub async fn insert_password_reset(
    conn: &mut Connection,
    id: &str,
    user_id: &str,
    token_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> db::Result<()> {
    db::query(
        "INSERT INTO password_resets (id, user_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(user_id)
    .bind(token_hash)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_password_reset(conn: &mut Connection, token_hash: &[u8]) -> db::Result<Option<PasswordResetRow>> {
    db::query_as("SELECT id, user_id, expires_at, used_at FROM password_resets WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(conn)
        .await
}

/// Uses the reset token up with one conditional UPDATE; answers whether this call did.
pub async fn consume_password_reset(conn: &mut Connection, id: &str, now: i64) -> db::Result<bool> {
    let result =
        db::query("UPDATE password_resets SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1")
            .bind(now)
            .bind(id)
            .execute(conn)
            .await?;
    Ok(result.rows_affected() == 1)
}

/// Every other outstanding reset link of the user stops working.
pub async fn retire_password_resets(conn: &mut Connection, user_id: &str, now: i64) -> db::Result<()> {
    db::query("UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_old_password_resets(conn: &mut Connection, before: i64) -> db::Result<u64> {
    let result = db::query("DELETE FROM password_resets WHERE expires_at < $1")
        .bind(before)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

crate::row_struct! {
    #[derive(Debug, Clone)]
    pub struct AdminResetRequestRow {
        pub id: String,
        pub user_id: String,
        pub requested_by: String,
        pub reason: String,
        pub created_at: i64,
        pub expires_at: i64,
        pub approved_by: Option<String>,
        pub approved_at: Option<i64>,
    }
}

crate::row_struct! {
    /// A request with the email addresses of the user and of the administrator who asked.
    #[derive(Debug, Clone)]
    pub struct AdminResetRequestListed {
        pub id: String,
        pub user_id: String,
        pub user_email: String,
        pub requested_by: String,
        pub requested_by_email: String,
        pub reason: String,
        pub created_at: i64,
        pub expires_at: i64,
    }
}

pub async fn insert_admin_reset_request(conn: &mut Connection, row: &AdminResetRequestRow) -> db::Result<()> {
    db::query(
        "INSERT INTO admin_reset_requests (id, user_id, requested_by, reason, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&row.id)
    .bind(&row.user_id)
    .bind(&row.requested_by)
    .bind(&row.reason)
    .bind(row.created_at)
    .bind(row.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_admin_reset_request(conn: &mut Connection, id: &str) -> db::Result<Option<AdminResetRequestRow>> {
    db::query_as(
        "SELECT id, user_id, requested_by, reason, created_at, expires_at, approved_by, approved_at
         FROM admin_reset_requests WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Approves a request once, while it is fresh; answers whether this call approved it.
pub async fn approve_admin_reset_request(
    conn: &mut Connection,
    id: &str,
    approved_by: &str,
    now: i64,
) -> db::Result<bool> {
    let result = db::query(
        "UPDATE admin_reset_requests SET approved_by = $1, approved_at = $2
         WHERE id = $3 AND approved_at IS NULL AND expires_at > $2",
    )
    .bind(approved_by)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Requests awaiting approval, oldest first.
pub async fn open_admin_reset_requests(conn: &mut Connection, now: i64) -> db::Result<Vec<AdminResetRequestListed>> {
    db::query_as(
        "SELECT r.id, r.user_id, u.email AS user_email, r.requested_by, a.email AS requested_by_email, r.reason,
                r.created_at, r.expires_at
         FROM admin_reset_requests r JOIN users u ON u.id = r.user_id JOIN users a ON a.id = r.requested_by
         WHERE r.approved_at IS NULL AND r.expires_at > $1 ORDER BY r.created_at, r.id",
    )
    .bind(now)
    .fetch_all(conn)
    .await
}

/// Counts one more request for `subject` in the current one-hour window (a new window starts
/// when the old one is over) and answers the count, atomically across instances.
pub async fn count_request(
    conn: &mut Connection,
    subject: &str,
    kind: &str,
    now: i64,
    window_seconds: i64,
) -> db::Result<i64> {
    let (requests,): (i64,) = db::query_as(
        "INSERT INTO request_counts (subject, kind, window_started_at, requests) VALUES ($1, $2, $3, 1)
         ON CONFLICT (subject, kind) DO UPDATE SET
             requests = CASE WHEN request_counts.window_started_at <= $4 THEN 1 ELSE request_counts.requests + 1 END,
             window_started_at = CASE WHEN request_counts.window_started_at <= $4 THEN $3
                                      ELSE request_counts.window_started_at END
         RETURNING requests",
    )
    .bind(subject)
    .bind(kind)
    .bind(now)
    .bind(now - window_seconds)
    .fetch_one(conn)
    .await?;
    Ok(requests)
}

pub async fn delete_old_request_counts(conn: &mut Connection, before: i64) -> db::Result<u64> {
    let result = db::query("DELETE FROM request_counts WHERE window_started_at < $1")
        .bind(before)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

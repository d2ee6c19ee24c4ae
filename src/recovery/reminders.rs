//! The background side of the waiting period: reminders before it ends, and clean-up. All state
//! lives in the database, so a restart (or another instance) picks up where the last left off.

use crate::store::Connection;

use super::email_recovery::cancel_link;
use super::{notices, requests};
use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::mail;
use crate::store::recovery as rows;
use crate::store::users;

/// Reminders handled per round; the next round (one background interval later) takes the rest.
const REMINDERS_PER_ROUND: i64 = 50;
/// Ended recoveries, old links and used reset tokens are kept this long (for support questions).
const KEEP_ENDED_SECONDS: i64 = 30 * 24 * 3600;

/// Sends every reminder that is due. Only reads unless one is due, since it runs every interval.
pub async fn run_due(state: &AppState) -> anyhow::Result<()> {
    let now = state.clock.unix();
    let due = {
        let mut conn = state.store.read().await?;
        rows::due_reminders(&mut conn, now, REMINDERS_PER_ROUND).await?
    };
    for recovery in due {
        let mut tx = state.store.begin().await?;
        // Another worker (instance) may have sent it meanwhile.
        if !rows::claim_reminder(&mut tx, &recovery.id, now).await? {
            continue;
        }
        let (Some(user), Some(completes_at)) = (
            users::find_by_id(&mut tx, &recovery.user_id).await?,
            recovery.completes_at,
        ) else {
            tx.commit().await?;
            continue;
        };
        // Where the recovery was confirmed from, which is what the owner needs to judge it.
        let confirmed_from = ClientInfo {
            ip: recovery.ip.clone(),
            user_agent: recovery.user_agent.clone(),
        };
        let notice = notices::recovery_reminder(
            state,
            recovery.confirmed_at.unwrap_or(recovery.created_at),
            &confirmed_from,
            completes_at,
            recovery.lost_password != 0,
            &cancel_link(state, &recovery.id),
        );
        mail::queue(&mut tx, &state.config, &state.keys, now, &user.email, &notice).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Expires recoveries whose completion window closed and forgets old rows (the worker's
/// once-a-minute clean-up).
pub async fn sweep(conn: &mut Connection, now: i64) -> anyhow::Result<()> {
    rows::expire_stale_recoveries(conn, now, None).await?;
    rows::delete_old_recoveries(conn, now - KEEP_ENDED_SECONDS).await?;
    rows::delete_old_password_resets(conn, now - KEEP_ENDED_SECONDS).await?;
    requests::sweep(conn, now).await?;
    Ok(())
}

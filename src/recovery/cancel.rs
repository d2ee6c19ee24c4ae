//! Cancelling a pending recovery: by the emailed cancel link, from a signed-in session, by a
//! normal second-factor login, by turning email recovery off, or by an administrator's reset.
//! Every cancel is audited and emailed.

use crate::store::Connection;
use serde_json::json;

use super::{notices, RecoveryError};
use crate::accounts::sessions::CurrentSession;
use crate::app::AppState;
use crate::audit::{self, ClientInfo, Event};
use crate::mail;
use crate::store::recovery::{self as rows, RecoveryRow};
use crate::store::users;

/// What cancelled a recovery (recorded in the audit event and said in the email).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelledBy {
    Link,
    Session,
    SecondFactorLogin,
    EmailRecoveryTurnedOff,
    AdminReset,
}

impl CancelledBy {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelledBy::Link => "cancel_link",
            CancelledBy::Session => "session",
            CancelledBy::SecondFactorLogin => "second_factor_login",
            CancelledBy::EmailRecoveryTurnedOff => "email_recovery_turned_off",
            CancelledBy::AdminReset => "admin_reset",
        }
    }

    /// Completes "The pending recovery of your account was cancelled …".
    pub fn explanation(self) -> &'static str {
        match self {
            CancelledBy::Link => "with the cancel link from our email",
            CancelledBy::Session => "from a signed-in session",
            CancelledBy::SecondFactorLogin => "because you signed in with your second factor",
            CancelledBy::EmailRecoveryTurnedOff => "because recovery by email was turned off",
            CancelledBy::AdminReset => "because an administrator reset two-factor authentication",
        }
    }
}

/// Cancels with the link from the notice email. Opening it twice is fine: the second time finds
/// the recovery already cancelled and says so again.
pub async fn cancel_by_token(state: &AppState, client: &ClientInfo, cancel_token: &str) -> Result<(), RecoveryError> {
    let now = state.clock.unix();
    let mut tx = state.store.begin().await?;
    let recovery = rows::find_recovery_by_cancel_token(&mut tx, &state.keys.token_hash(cancel_token))
        .await?
        .ok_or(RecoveryError::InvalidToken)?;
    match recovery.status.as_str() {
        rows::CANCELLED => return Ok(()),
        rows::PENDING if recovery.expires_at.is_some_and(|expires_at| now < expires_at) => {}
        _ => return Err(RecoveryError::InvalidToken),
    }
    let user = users::find_by_id(&mut tx, &recovery.user_id)
        .await?
        .ok_or(RecoveryError::InvalidToken)?;
    // Whoever holds the link is not known to be the owner: no actor.
    if !end_and_notify(
        &mut tx,
        state,
        &recovery,
        &user.email,
        client,
        now,
        CancelledBy::Link,
        None,
    )
    .await?
    {
        return Err(RecoveryError::InvalidToken);
    }
    tx.commit().await?;
    Ok(())
}

/// `DELETE /me/recovery`: the signed-in owner cancels; `NotFound` when nothing is pending.
pub async fn cancel_for_session(
    state: &AppState,
    client: &ClientInfo,
    session: &CurrentSession,
) -> Result<(), RecoveryError> {
    let now = state.clock.unix();
    let mut tx = state.store.begin().await?;
    rows::expire_stale_recoveries(&mut tx, now, Some(&session.user_id)).await?;
    let cancelled = cancel_pending(
        &mut tx,
        state,
        &session.user_id,
        &session.email,
        client,
        now,
        CancelledBy::Session,
    )
    .await?;
    if !cancelled {
        return Err(RecoveryError::NotFound);
    }
    tx.commit().await?;
    Ok(())
}

/// Cancels the user's pending recovery, if any, inside the caller's transaction (the caller wakes
/// the mailer after commit); answers whether there was one. The owner is the actor, except for an
/// administrator's reset, which records its own event.
pub(crate) async fn cancel_pending(
    conn: &mut Connection,
    state: &AppState,
    user_id: &str,
    email: &str,
    client: &ClientInfo,
    now: i64,
    by: CancelledBy,
) -> anyhow::Result<bool> {
    let Some(recovery) = rows::pending_recovery_for_user(conn, user_id).await? else {
        return Ok(false);
    };
    let actor = (by != CancelledBy::AdminReset).then_some(user_id);
    end_and_notify(conn, state, &recovery, email, client, now, by, actor).await
}

#[allow(clippy::too_many_arguments)]
async fn end_and_notify(
    conn: &mut Connection,
    state: &AppState,
    recovery: &RecoveryRow,
    email: &str,
    client: &ClientInfo,
    now: i64,
    by: CancelledBy,
    actor_id: Option<&str>,
) -> anyhow::Result<bool> {
    if !rows::end_recovery(conn, &recovery.id, rows::CANCELLED, now).await? {
        return Ok(false);
    }
    let event = Event {
        kind: "recovery_cancelled",
        user_id: Some(&recovery.user_id),
        actor_id,
        detail: json!({"by": by.as_str()}),
    };
    let notice = notices::recovery_cancelled(state, now, client, by);
    mail::queue(conn, &state.config, &state.keys, now, email, &notice).await?;
    audit::record(conn, now, client, event).await?;
    Ok(true)
}

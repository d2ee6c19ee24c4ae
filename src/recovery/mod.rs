//! Getting back into an account when the second factor is lost: email recovery with a waiting
//! period, password reset, and admin reset.
//!
//! Email recovery trades a little convenience for a lot of safety: a stolen mailbox alone must not
//! be enough to take an account over. So the emailed link only *starts* a waiting period (72 hours
//! by default), the owner is told at once and reminded before it ends, and any of a cancel link, a
//! signed-in session or a normal second-factor login stops it. Completing still needs the password
//! (or, when that is lost too, a longer wait).

pub mod admin;
mod cancel;
mod email_recovery;
mod notices;
pub mod password;
mod reminders;
mod requests;
mod settings;

use crate::store::Connection;

use crate::accounts::password_policy::WeakPassword;
use crate::accounts::throttle::Blocked;
use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::clock::rfc3339;
use crate::store::recovery as rows;

pub use cancel::{cancel_by_token, cancel_for_session, CancelledBy};
pub use email_recovery::{
    complete, confirm, request_email_recovery, token_status, PendingRecovery, RecoveryProof, TokenStatus,
};
pub use settings::{set_email_recovery, RecoverySettings};

/// The recovery link must be confirmed within this many seconds of the email.
pub const LINK_LIFETIME_SECONDS: i64 = 3600;
/// After the waiting period, the same link completes the recovery for this long.
pub const COMPLETION_WINDOW_SECONDS: i64 = 7 * 24 * 3600;
/// The reminder goes out this long before the end (or at half the waiting period, if shorter).
pub const REMINDER_LEAD_SECONDS: i64 = 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("This recovery link is not valid: it is unknown, expired or already used. Start again at /recover.")]
    InvalidToken,
    #[error("The waiting period is not over yet: recovery completes at {}.", rfc3339(*.completes_at))]
    RecoveryPending { completes_at: i64 },
    #[error("This recovery was cancelled. If you still need it, start again at /recover.")]
    RecoveryCancelled,
    #[error("The password is not right.")]
    InvalidCredentials,
    #[error("{0}")]
    WeakPassword(WeakPassword),
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("Too many attempts. Try again in {retry_after} seconds.")]
    RateLimited { retry_after: i64 },
    #[error("There is no pending recovery.")]
    NotFound,
    #[error("Confirm it's you first.")]
    ReauthRequired,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::db::Error> for RecoveryError {
    fn from(error: crate::store::db::Error) -> Self {
        RecoveryError::Internal(error.into())
    }
}

impl From<Blocked> for RecoveryError {
    fn from(blocked: Blocked) -> Self {
        match blocked {
            Blocked::Wait(seconds) => RecoveryError::RateLimited {
                retry_after: seconds.max(1),
            },
            Blocked::Locked => RecoveryError::RateLimited {
                retry_after: crate::accounts::throttle::MAX_DELAY_SECONDS,
            },
        }
    }
}

/// When the account's pending recovery completes, if one is pending.
pub async fn pending_completes_at(conn: &mut Connection, user_id: &str) -> anyhow::Result<Option<i64>> {
    Ok(rows::pending_recovery_for_user(conn, user_id)
        .await?
        .and_then(|recovery| recovery.completes_at))
}

/// A successful full second-factor login cancels any pending recovery of the account: the owner
/// evidently still has a factor.
pub async fn cancel_pending_after_login(
    conn: &mut Connection,
    state: &AppState,
    user_id: &str,
    email: &str,
    client: &ClientInfo,
    now: i64,
) -> anyhow::Result<()> {
    cancel::cancel_pending(conn, state, user_id, email, client, now, CancelledBy::SecondFactorLogin).await?;
    Ok(())
}

/// Sends due reminders (called by the background worker every interval). Everything it needs is
/// in the database, so it survives restarts and any instance may run it.
pub async fn run_due(state: &AppState) -> anyhow::Result<()> {
    reminders::run_due(state).await
}

/// Expires recoveries whose completion window closed and forgets old requests, links and counts
/// (called by the worker's once-a-minute clean-up).
pub async fn sweep(conn: &mut Connection, now: i64) -> anyhow::Result<()> {
    reminders::sweep(conn, now).await
}

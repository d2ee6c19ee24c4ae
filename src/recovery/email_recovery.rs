//! Email recovery: request a link, confirm it to start the waiting period, complete it afterwards.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

use super::requests::{self, RequestKind};
use super::{notices, RecoveryError, COMPLETION_WINDOW_SECONDS, LINK_LIFETIME_SECONDS, REMINDER_LEAD_SECONDS};
use crate::accounts::sessions::{self, IssuedSession, SessionState};
use crate::accounts::{self, password_policy, throttle};
use crate::app::AppState;
use crate::audit::{self, ClientInfo, Event};
use crate::crypto::random_token;
use crate::mail;
use crate::store::recovery::{self as rows, RecoveryRow, StartOutcome, WaitingPeriod};
use crate::store::{self, users::UserRow};
use crate::twofactor;

/// Answers at once, the same way for every address; the email (a link, or an explanation when
/// the account has no second factor or turned email recovery off) follows from a background task.
pub async fn request_email_recovery(state: &AppState, client: &ClientInfo, email: &str) -> Result<(), RecoveryError> {
    requests::accept(state, client, email, "recovery request", send_recovery_email)
        .map_err(|retry_after| RecoveryError::RateLimited { retry_after })
}

async fn send_recovery_email(state: AppState, client: ClientInfo, email: String) -> anyhow::Result<()> {
    let (state, client) = (&state, &client);
    let now = state.clock.unix();
    let mut tx = state.store.begin().await?;
    let Some(user) = requests::requested_account(&mut tx, state, RequestKind::Recovery, &email, now).await? else {
        tx.commit().await?;
        return Ok(());
    };
    let has_two_factor = !twofactor::methods(&mut tx, &user.id).await?.is_empty();
    let (outcome, notice) = if !has_two_factor {
        ("no_two_factor", notices::recovery_not_needed(state, now, client))
    } else if user.email_recovery_enabled == 0 {
        ("email_recovery_off", notices::recovery_by_email_off(state, now, client))
    } else {
        let token = random_token();
        let id = uuid::Uuid::new_v4().to_string();
        rows::insert_recovery(
            &mut tx,
            &id,
            &user.id,
            &state.keys.token_hash(&token),
            now,
            now + LINK_LIFETIME_SECONDS,
        )
        .await?;
        let link = state.config.link(&format!("/recover/{token}"));
        ("link_sent", notices::recovery_link(state, now, client, &link))
    };
    // Whoever asked is not known to be the owner: no actor.
    let event = Event {
        kind: "recovery_requested",
        user_id: Some(&user.id),
        actor_id: None,
        detail: json!({"outcome": outcome}),
    };
    mail::queue(&mut tx, &state.config, &state.keys, now, &user.email, &notice).await?;
    audit::record(&mut tx, now, client, event).await?;
    tx.commit().await?;
    Ok(())
}

/// When a confirmed recovery completes, reminds, and stops being completable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub completes_at: i64,
    pub expires_at: i64,
    /// None when there is no waiting period to remind of.
    pub reminder_due_at: Option<i64>,
}

/// The reminder goes out 24 hours before the end, or halfway through a shorter waiting period.
pub fn schedule(now: i64, delay_seconds: i64) -> Schedule {
    let completes_at = now + delay_seconds;
    let lead = REMINDER_LEAD_SECONDS.min(delay_seconds / 2);
    Schedule {
        completes_at,
        expires_at: completes_at + COMPLETION_WINDOW_SECONDS,
        reminder_due_at: (delay_seconds > 0).then_some(completes_at - lead),
    }
}

/// The cancel link's token, derived from the recovery's id under the token key rather than
/// stored: the reminder can repeat the link days later, and the database holds only its hash.
pub(super) fn cancel_token(state: &AppState, recovery_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(state.keys.token_hash(&format!("recovery cancel link\0{recovery_id}")))
}

pub(super) fn cancel_link(state: &AppState, recovery_id: &str) -> String {
    state
        .config
        .link(&format!("/recover/cancel/{}", cancel_token(state, recovery_id)))
}

/// A confirmed recovery, waiting for its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRecovery {
    pub completes_at: i64,
    pub lost_password: bool,
}

/// Confirms the emailed link (within an hour, once) and starts the waiting period; the owner is
/// told at once, with a cancel link.
pub async fn confirm(
    state: &AppState,
    client: &ClientInfo,
    token: &str,
    lost_password: bool,
) -> Result<PendingRecovery, RecoveryError> {
    let now = state.clock.unix();
    let mut tx = state.store.begin().await?;
    let recovery = rows::find_recovery_by_token(&mut tx, &state.keys.token_hash(token))
        .await?
        .filter(|recovery| recovery.status == rows::REQUESTED && recovery.link_expires_at > now)
        .ok_or(RecoveryError::InvalidToken)?;
    let user = store::users::find_by_id(&mut tx, &recovery.user_id)
        .await?
        .ok_or(RecoveryError::InvalidToken)?;
    // Since the link was sent, the owner may have turned email recovery, or 2FA, off.
    if user.email_recovery_enabled == 0 || twofactor::methods(&mut tx, &user.id).await?.is_empty() {
        return Err(RecoveryError::InvalidToken);
    }
    rows::expire_stale_recoveries(&mut tx, now, Some(&user.id)).await?;
    if let Some(pending) = rows::pending_recovery_for_user(&mut tx, &user.id).await? {
        return Err(RecoveryError::RecoveryPending {
            completes_at: pending.completes_at.unwrap_or(now),
        });
    }
    let delay = if lost_password {
        state.config.recovery_delay_lost_password
    } else {
        state.config.recovery_delay
    };
    let schedule = schedule(now, delay.as_secs() as i64);
    let cancel_token_hash = state.keys.token_hash(&cancel_token(state, &recovery.id));
    let period = WaitingPeriod {
        lost_password,
        completes_at: schedule.completes_at,
        expires_at: schedule.expires_at,
        reminder_due_at: schedule.reminder_due_at,
        cancel_token_hash: &cancel_token_hash,
        ip: client.ip.as_deref(),
        user_agent: client.user_agent.as_deref(),
    };
    match rows::start_waiting_period(&mut tx, &recovery.id, now, &period).await? {
        StartOutcome::Started => {}
        StartOutcome::LinkGone => return Err(RecoveryError::InvalidToken),
        StartOutcome::AlreadyPending => {
            // The failed statement ended the transaction (PostgreSQL): look with a new connection.
            drop(tx);
            let mut conn = state.store.read().await?;
            let completes_at = super::pending_completes_at(&mut conn, &user.id).await?.unwrap_or(now);
            return Err(RecoveryError::RecoveryPending { completes_at });
        }
    }
    let event = Event::by_user("recovery_confirmed", &user.id).with_detail(json!({
        "lost_password": lost_password,
        "completes_at": crate::clock::rfc3339(schedule.completes_at),
    }));
    let notice = notices::recovery_started(
        state,
        now,
        client,
        schedule.completes_at,
        lost_password,
        &cancel_link(state, &recovery.id),
    );
    mail::queue(&mut tx, &state.config, &state.keys, now, &user.email, &notice).await?;
    audit::record(&mut tx, now, client, event).await?;
    tx.commit().await?;
    Ok(PendingRecovery {
        completes_at: schedule.completes_at,
        lost_password,
    })
}

/// Where a recovery link stands, for the page that opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// Emailed, not confirmed yet: confirm it (optionally saying the password is lost too).
    AwaitingConfirmation { link_expires_at: i64 },
    /// In the waiting period.
    Pending { completes_at: i64, lost_password: bool },
    /// Completable now, with the current password or (`lost_password`) a new one.
    Ready { lost_password: bool, expires_at: i64 },
}

pub async fn token_status(state: &AppState, token: &str) -> Result<TokenStatus, RecoveryError> {
    let now = state.clock.unix();
    let mut conn = state.store.read().await?;
    let recovery = rows::find_recovery_by_token(&mut conn, &state.keys.token_hash(token))
        .await?
        .ok_or(RecoveryError::InvalidToken)?;
    if recovery.status == rows::REQUESTED && recovery.link_expires_at > now {
        return Ok(TokenStatus::AwaitingConfirmation {
            link_expires_at: recovery.link_expires_at,
        });
    }
    match completable(&recovery, now) {
        Ok(()) => Ok(TokenStatus::Ready {
            lost_password: recovery.lost_password != 0,
            expires_at: recovery.expires_at.unwrap_or(now),
        }),
        Err(RecoveryError::RecoveryPending { completes_at }) => Ok(TokenStatus::Pending {
            completes_at,
            lost_password: recovery.lost_password != 0,
        }),
        Err(error) => Err(error),
    }
}

/// Whether a recovery can complete at `now`, and if not, why.
fn completable(recovery: &RecoveryRow, now: i64) -> Result<(), RecoveryError> {
    match recovery.status.as_str() {
        rows::CANCELLED => Err(RecoveryError::RecoveryCancelled),
        rows::PENDING => {
            let completes_at = recovery.completes_at.unwrap_or(i64::MAX);
            if now < completes_at {
                Err(RecoveryError::RecoveryPending { completes_at })
            } else if recovery.expires_at.is_some_and(|expires_at| now < expires_at) {
                Ok(())
            } else {
                Err(RecoveryError::InvalidToken)
            }
        }
        // Never confirmed, already completed, or expired.
        _ => Err(RecoveryError::InvalidToken),
    }
}

/// What completes a recovery: the current password, or a new one when it was confirmed as lost.
pub enum RecoveryProof {
    CurrentPassword(String),
    NewPassword(String),
}

/// Completes a recovery after its waiting period, in one transaction: second factors and backup
/// codes deleted, every session revoked (and the password replaced when lost), the second-factor
/// lock lifted, the owner emailed; answers a `recovered` session that may only enroll a factor.
pub async fn complete(
    state: &AppState,
    client: &ClientInfo,
    token: &str,
    proof: RecoveryProof,
) -> Result<IssuedSession, RecoveryError> {
    let now = state.clock.unix();
    state
        .ip_limiter
        .check(client, now)
        .map_err(|retry_after| RecoveryError::RateLimited { retry_after })?;
    let token_hash = state.keys.token_hash(token);
    let (recovery, user) = {
        let mut conn = state.store.read().await?;
        let recovery = rows::find_recovery_by_token(&mut conn, &token_hash)
            .await?
            .ok_or(RecoveryError::InvalidToken)?;
        let user = store::users::find_by_id(&mut conn, &recovery.user_id)
            .await?
            .ok_or(RecoveryError::InvalidToken)?;
        (recovery, user)
    };
    completable(&recovery, now)?;
    let lost_password = recovery.lost_password != 0;
    // Argon2 runs before the transaction: it must not hold the write lock.
    let new_password_hash = match proof {
        RecoveryProof::NewPassword(new_password) if lost_password => {
            let password = password_policy::parse(&new_password).map_err(RecoveryError::WeakPassword)?;
            Some(state.hasher.hash(password.expose()).await?)
        }
        RecoveryProof::CurrentPassword(password) if !lost_password => {
            check_current_password(state, client, &user, &password, now).await?;
            None
        }
        RecoveryProof::CurrentPassword(_) => {
            return Err(RecoveryError::InvalidRequest(
                "This recovery replaces the lost password: send new_password.",
            ))
        }
        RecoveryProof::NewPassword(_) => {
            return Err(RecoveryError::InvalidRequest(
                "Send the account's current password as password.",
            ))
        }
    };

    let mut tx = state.store.begin().await?;
    if !rows::end_recovery(&mut tx, &recovery.id, rows::COMPLETED, now).await? {
        // Cancelled, completed or expired while the password was checked.
        drop(tx);
        let mut conn = state.store.read().await?;
        let current = rows::find_recovery_by_token(&mut conn, &token_hash)
            .await?
            .ok_or(RecoveryError::InvalidToken)?;
        completable(&current, now)?;
        return Err(RecoveryError::InvalidToken);
    }
    twofactor::delete_all_factors(&mut tx, &user.id).await?;
    let sessions_revoked = store::sessions::delete_all_for_user(&mut tx, &user.id, None).await?;
    if let Some(hash) = &new_password_hash {
        store::users::set_password_hash(&mut tx, &user.id, hash).await?;
    }
    throttle::reset(&mut tx, &user.id, throttle::Kind::SecondFactor).await?;
    throttle::reset(
        &mut tx,
        &accounts::password_subject(state, &user.email),
        throttle::Kind::Password,
    )
    .await?;
    rows::retire_unconfirmed_recoveries(&mut tx, &user.id, now).await?;
    let event = Event::by_user("recovery_completed", &user.id).with_detail(json!({
        "password_replaced": lost_password,
        "sessions_revoked": sessions_revoked,
    }));
    let session = sessions::issue(&mut tx, state, &user.id, SessionState::Recovered, client, now).await?;
    let notice = notices::recovery_completed(state, now, client, lost_password);
    mail::queue(&mut tx, &state.config, &state.keys, now, &user.email, &notice).await?;
    audit::record(&mut tx, now, client, event).await?;
    tx.commit().await?;
    Ok(session)
}

/// The password check of `complete`, throttled like the password step of login (same subject,
/// so guesses here and there add up).
async fn check_current_password(
    state: &AppState,
    client: &ClientInfo,
    user: &UserRow,
    password: &str,
    now: i64,
) -> Result<(), RecoveryError> {
    let subject = accounts::password_subject(state, &user.email);
    {
        let mut conn = state.store.read().await?;
        throttle::check(&mut conn, &subject, throttle::Kind::Password, &*state.clock).await??;
    }
    if state.hasher.verify(password, Some(&user.password_hash)).await?.matches {
        return Ok(());
    }
    state.ip_limiter.record_failure(client, now);
    let mut tx = state.store.begin().await?;
    throttle::record_failure(&mut tx, &subject, throttle::Kind::Password, &*state.clock).await?;
    let event =
        Event::by_user("login_failed", &user.id).with_detail(json!({"reason": "password", "purpose": "recovery"}));
    audit::record(&mut tx, now, client, event).await?;
    tx.commit().await?;
    Err(RecoveryError::InvalidCredentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600;

    #[test]
    fn the_reminder_comes_a_day_before_the_end_of_a_long_wait() {
        let planned = schedule(1000, 72 * HOUR);
        assert_eq!(planned.completes_at, 1000 + 72 * HOUR);
        assert_eq!(planned.reminder_due_at, Some(1000 + 48 * HOUR));
        assert_eq!(planned.expires_at, planned.completes_at + 7 * 24 * HOUR);
    }

    #[test]
    fn the_reminder_comes_halfway_through_a_short_wait() {
        assert_eq!(schedule(0, 10 * HOUR).reminder_due_at, Some(5 * HOUR));
        assert_eq!(schedule(0, 48 * HOUR).reminder_due_at, Some(24 * HOUR));
    }

    #[test]
    fn no_wait_means_no_reminder() {
        let planned = schedule(500, 0);
        assert_eq!(planned.completes_at, 500);
        assert_eq!(planned.reminder_due_at, None);
    }

    fn pending(completes_at: i64) -> RecoveryRow {
        RecoveryRow {
            id: "r".into(),
            user_id: "u".into(),
            status: rows::PENDING.into(),
            created_at: 0,
            link_expires_at: HOUR,
            lost_password: 0,
            confirmed_at: Some(0),
            completes_at: Some(completes_at),
            expires_at: Some(completes_at + COMPLETION_WINDOW_SECONDS),
            reminder_due_at: None,
            reminded_at: None,
            ip: None,
            user_agent: None,
        }
    }

    #[test]
    fn a_recovery_completes_only_inside_its_window() {
        let recovery = pending(100);
        assert!(matches!(
            completable(&recovery, 99),
            Err(RecoveryError::RecoveryPending { completes_at: 100 })
        ));
        assert!(completable(&recovery, 100).is_ok());
        assert!(completable(&recovery, 100 + COMPLETION_WINDOW_SECONDS - 1).is_ok());
        assert!(matches!(
            completable(&recovery, 100 + COMPLETION_WINDOW_SECONDS),
            Err(RecoveryError::InvalidToken)
        ));
        let cancelled = RecoveryRow {
            status: rows::CANCELLED.into(),
            ..pending(100)
        };
        assert!(matches!(
            completable(&cancelled, 200),
            Err(RecoveryError::RecoveryCancelled)
        ));
        let unconfirmed = RecoveryRow {
            status: rows::REQUESTED.into(),
            ..pending(100)
        };
        assert!(matches!(
            completable(&unconfirmed, 200),
            Err(RecoveryError::InvalidToken)
        ));
    }
}

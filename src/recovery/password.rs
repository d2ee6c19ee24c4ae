//! Password reset by email. A mailbox alone never replaces a second factor: when the account has
//! 2FA, the reset also needs a current code (or a backup code). Losing both is what email
//! recovery, with its waiting period, is for.

use serde_json::json;

use super::requests::{self, RequestKind};
use crate::accounts;
use crate::accounts::password_policy::{self, WeakPassword};
use crate::accounts::throttle::{self, Blocked};
use crate::app::AppState;
use crate::audit::{self, ClientInfo, Event};
use crate::crypto::random_token;
use crate::mail;
use crate::store::{self, recovery as rows};
use crate::twofactor::{self, verify_second_factor, CodeError, SecondFactor};

use super::notices;

/// A reset link works this long, once.
pub const LINK_LIFETIME_SECONDS: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum PasswordResetError {
    #[error("This reset link is not valid: it is unknown, expired or already used. Ask for a new one.")]
    InvalidToken,
    #[error("{0}")]
    WeakPassword(WeakPassword),
    #[error(
        "This account uses two-factor authentication: enter a code from your authenticator app or a backup code too."
    )]
    SecondFactorRequired,
    #[error("That code is not right.")]
    InvalidCode,
    #[error("That code was already used.")]
    CodeAlreadyUsed,
    #[error("Too many attempts. Try again in {retry_after} seconds.")]
    RateLimited { retry_after: i64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::db::Error> for PasswordResetError {
    fn from(error: crate::store::db::Error) -> Self {
        PasswordResetError::Internal(error.into())
    }
}

impl From<Blocked> for PasswordResetError {
    fn from(blocked: Blocked) -> Self {
        match blocked {
            Blocked::Wait(seconds) => PasswordResetError::RateLimited {
                retry_after: seconds.max(1),
            },
            Blocked::Locked => PasswordResetError::RateLimited {
                retry_after: throttle::MAX_DELAY_SECONDS,
            },
        }
    }
}

/// Answers at once, the same way for every address; the link follows from a background task when
/// the account exists (at most 5 an hour per address).
pub async fn forgot(state: &AppState, client: &ClientInfo, email: &str) -> Result<(), PasswordResetError> {
    requests::accept(state, client, email, "password reset request", send_reset_email)
        .map_err(|retry_after| PasswordResetError::RateLimited { retry_after })
}

async fn send_reset_email(state: AppState, client: ClientInfo, email: String) -> anyhow::Result<()> {
    let (state, client) = (&state, &client);
    let now = state.clock.unix();
    let mut tx = state.store.begin().await?;
    let Some(user) = requests::requested_account(&mut tx, state, RequestKind::PasswordReset, &email, now).await? else {
        tx.commit().await?;
        return Ok(());
    };
    let token = random_token();
    let id = uuid::Uuid::new_v4().to_string();
    rows::insert_password_reset(
        &mut tx,
        &id,
        &user.id,
        &state.keys.token_hash(&token),
        now,
        now + LINK_LIFETIME_SECONDS,
    )
    .await?;
    let needs_second_factor = !twofactor::methods(&mut tx, &user.id).await?.is_empty();
    let event = Event {
        kind: "password_reset_requested",
        user_id: Some(&user.id),
        actor_id: None,
        detail: json!({}),
    };
    let link = state.config.link(&format!("/reset-password/{token}"));
    let notice = notices::password_reset_link(state, now, client, &link, needs_second_factor);
    mail::queue(&mut tx, &state.config, &state.keys, now, &user.email, &notice).await?;
    audit::record(&mut tx, now, client, event).await?;
    tx.commit().await?;
    Ok(())
}

/// Whether a reset link is usable, and whether it will need a second factor (for the page).
pub async fn link_needs_second_factor(state: &AppState, token: &str) -> Result<bool, PasswordResetError> {
    let now = state.clock.unix();
    let mut conn = state.store.read().await?;
    let reset = rows::find_password_reset(&mut conn, &state.keys.token_hash(token))
        .await?
        .filter(|reset| reset.used_at.is_none() && reset.expires_at > now)
        .ok_or(PasswordResetError::InvalidToken)?;
    Ok(!twofactor::methods(&mut conn, &reset.user_id).await?.is_empty())
}

/// Replaces the password with the emailed token (plus a second factor when the account has 2FA),
/// revokes every session and tells the user. The token is used up only by a successful reset.
pub async fn reset(
    state: &AppState,
    client: &ClientInfo,
    token: &str,
    new_password: &str,
    factor: Option<&SecondFactor>,
) -> Result<(), PasswordResetError> {
    let now = state.clock.unix();
    state
        .ip_limiter
        .check(client, now)
        .map_err(|retry_after| PasswordResetError::RateLimited { retry_after })?;
    let (reset, user, has_two_factor) = {
        let mut conn = state.store.read().await?;
        let reset = rows::find_password_reset(&mut conn, &state.keys.token_hash(token))
            .await?
            .filter(|reset| reset.used_at.is_none() && reset.expires_at > now)
            .ok_or(PasswordResetError::InvalidToken)?;
        let user = store::users::find_by_id(&mut conn, &reset.user_id)
            .await?
            .ok_or(PasswordResetError::InvalidToken)?;
        let has_two_factor = !twofactor::methods(&mut conn, &user.id).await?.is_empty();
        (reset, user, has_two_factor)
    };
    let password = password_policy::parse(new_password).map_err(PasswordResetError::WeakPassword)?;
    let factor = match (has_two_factor, factor) {
        (false, _) => None,
        (true, None) => return Err(PasswordResetError::SecondFactorRequired),
        (true, Some(factor)) => {
            let mut conn = state.store.read().await?;
            throttle::check(&mut conn, &user.id, throttle::Kind::SecondFactor, &*state.clock).await??;
            Some(factor)
        }
    };
    // Argon2 runs before the transaction: it must not hold the write lock.
    let password_hash = state.hasher.hash(password.expose()).await?;

    let mut tx = state.store.begin().await?;
    if let Some(factor) = factor {
        match verify_second_factor(&mut tx, state, &user.id, &user.email, factor, client, now).await? {
            Ok(_) => throttle::reset(&mut tx, &user.id, throttle::Kind::SecondFactor).await?,
            Err(code_error) => {
                // A replayed code was right once: it reveals nothing, so it is not a guess to count.
                let mut detail = json!({"method": factor.method(), "purpose": "password_reset"});
                if code_error == CodeError::Invalid {
                    state.ip_limiter.record_failure(client, now);
                    let failure =
                        throttle::record_failure(&mut tx, &user.id, throttle::Kind::SecondFactor, &*state.clock)
                            .await?;
                    detail["consecutive_failures"] = json!(failure.failures);
                }
                audit::record(
                    &mut tx,
                    now,
                    client,
                    Event::by_user("mfa_failed", &user.id).with_detail(detail),
                )
                .await?;
                tx.commit().await?;
                return Err(match code_error {
                    CodeError::Invalid => PasswordResetError::InvalidCode,
                    CodeError::AlreadyUsed => PasswordResetError::CodeAlreadyUsed,
                });
            }
        }
    }
    // Dropping the transaction here also gives back a backup code used above.
    if !rows::consume_password_reset(&mut tx, &reset.id, now).await? {
        return Err(PasswordResetError::InvalidToken);
    }
    rows::retire_password_resets(&mut tx, &user.id, now).await?;
    store::users::set_password_hash(&mut tx, &user.id, &password_hash).await?;
    let sessions_revoked = store::sessions::delete_all_for_user(&mut tx, &user.id, None).await?;
    throttle::reset(
        &mut tx,
        &accounts::password_subject(state, &user.email),
        throttle::Kind::Password,
    )
    .await?;
    let event = Event::by_user("password_reset", &user.id).with_detail(json!({
        "sessions_revoked": sessions_revoked,
        "second_factor": factor.map(SecondFactor::method),
    }));
    let notice = notices::password_reset_done(state, now, client);
    mail::queue(&mut tx, &state.config, &state.keys, now, &user.email, &notice).await?;
    audit::record(&mut tx, now, client, event).await?;
    tx.commit().await?;
    Ok(())
}

//! Turning 2FA on (TOTP setup confirmed by a code), moving to a new phone, regenerating backup
//! codes, and turning 2FA off — which needs a current second factor and really deletes it.

use rand::rngs::OsRng;
use serde::Serialize;
use serde_json::json;

use crate::accounts::sessions::{CurrentSession, Role};
use crate::accounts::throttle::{self, Blocked};
use crate::app::AppState;
use crate::audit::{self, ClientInfo, Event};
use crate::clock::rfc3339;
use crate::mail::{self, notices};
use crate::store::{self, two_factor as rows};
use crate::twofactor::{self, totp, verify_second_factor, CodeError, SecondFactor};

/// A pending TOTP secret is valid this long.
pub const PENDING_LIFETIME_SECONDS: i64 = 900;

#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    #[error("Confirm it's you first.")]
    ReauthRequired,
    #[error("Start the setup again: there is no pending authenticator, or it expired.")]
    NoPendingSetup,
    #[error("That code is not right. Check the time on your phone and try the current code.")]
    InvalidCode,
    #[error("That code was already used. Wait for the next one.")]
    CodeAlreadyUsed,
    #[error("That code is not right.")]
    SecondFactorInvalid,
    #[error("Two-factor authentication is not turned on.")]
    TwoFactorDisabled,
    #[error("Your organisation requires two-factor authentication for this account.")]
    TwoFactorRequired,
    #[error("Too many attempts. Try again in {retry_after} seconds.")]
    RateLimited { retry_after: i64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::db::Error> for EnrollmentError {
    fn from(error: crate::store::db::Error) -> Self {
        EnrollmentError::Internal(error.into())
    }
}

impl From<Blocked> for EnrollmentError {
    fn from(blocked: Blocked) -> Self {
        match blocked {
            Blocked::Wait(seconds) => EnrollmentError::RateLimited {
                retry_after: seconds.max(1),
            },
            Blocked::Locked => EnrollmentError::RateLimited {
                retry_after: throttle::MAX_DELAY_SECONDS,
            },
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TotpSetup {
    /// Base32 secret for manual entry.
    pub secret: String,
    pub otpauth_uri: String,
    /// The otpauth URI as an inline SVG QR code.
    pub qr_svg: String,
    pub expires_at: String,
    /// The secret in groups of four, easier to type.
    pub secret_grouped: String,
}

/// Setting up a factor needs sudo, except in a session that exists only to enroll one.
pub(crate) fn may_enroll(session: &CurrentSession, now: i64) -> bool {
    !session.is_full() || session.is_sudo(now)
}

pub async fn start_totp_setup(state: &AppState, session: &CurrentSession) -> Result<TotpSetup, EnrollmentError> {
    let now = state.clock.unix();
    if !may_enroll(session, now) {
        return Err(EnrollmentError::ReauthRequired);
    }
    let secret = totp::generate_secret(&mut OsRng);
    let sealed = state.keys.seal_secret(&session.user_id, &secret);
    let expires_at = now + PENDING_LIFETIME_SECONDS;
    let mut tx = state.store.begin().await?;
    rows::save_pending_totp(&mut tx, &session.user_id, &sealed, &state.keys.key_id, now, expires_at).await?;
    tx.commit().await?;
    Ok(describe_setup(state, session, &secret, expires_at))
}

/// The pending setup again, with the same secret, so the page can show the QR code a second time
/// after a mistyped code instead of replacing a key the user may already have scanned.
pub async fn pending_totp_setup(
    state: &AppState,
    session: &CurrentSession,
) -> Result<Option<TotpSetup>, EnrollmentError> {
    let now = state.clock.unix();
    if !may_enroll(session, now) {
        return Err(EnrollmentError::ReauthRequired);
    }
    let mut conn = state.store.read().await?;
    let Some((sealed, key_id, expires_at)) = rows::pending_totp_with_expiry(&mut conn, &session.user_id, now).await?
    else {
        return Ok(None);
    };
    let secret = state.keys.open_secret(&session.user_id, &sealed, &key_id)?;
    Ok(Some(describe_setup(state, session, &secret, expires_at)))
}

fn describe_setup(state: &AppState, session: &CurrentSession, secret: &[u8], expires_at: i64) -> TotpSetup {
    let encoded = totp::encode_secret_base32(secret);
    let otpauth_uri = totp::otpauth_uri(&state.config.product_name, &session.email, secret);
    TotpSetup {
        qr_svg: totp::qr_svg(&otpauth_uri),
        secret_grouped: totp::grouped_key(&encoded),
        secret: encoded,
        otpauth_uri,
        expires_at: rfc3339(expires_at),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TotpConfirmed {
    pub enabled: bool,
    /// New backup codes when this turned 2FA on; null when 2FA was already on.
    pub backup_codes: Option<Vec<String>>,
}

pub async fn confirm_totp(
    state: &AppState,
    client: &ClientInfo,
    session: &CurrentSession,
    code: &str,
) -> Result<TotpConfirmed, EnrollmentError> {
    let now = state.clock.unix();
    let mut tx = state.store.begin().await?;
    let pending = rows::pending_totp(&mut tx, &session.user_id, now)
        .await?
        .ok_or(EnrollmentError::NoPendingSetup)?;
    let secret = state
        .keys
        .open_secret(&session.user_id, &pending.secret, &pending.key_id)?;
    let code = totp::TotpCode::parse(code).map_err(|_| EnrollmentError::InvalidCode)?;
    let step = totp::matching_step(&secret, &code, now).ok_or(EnrollmentError::InvalidCode)?;
    let was_enabled = !twofactor::methods(&mut tx, &session.user_id).await?.is_empty();
    rows::replace_totp(&mut tx, &session.user_id, &pending.secret, &pending.key_id, step, now).await?;
    rows::delete_pending_totp(&mut tx, &session.user_id).await?;
    let backup_codes = twofactor::factor_added(&mut tx, state, client, session, was_enabled, now).await?;
    let event =
        Event::by_user("totp_enabled", &session.user_id).with_detail(json!({"replaced_authenticator": was_enabled}));
    audit::record(&mut tx, now, client, event).await?;
    let notice = if was_enabled {
        notices::authenticator_replaced(state, now, client)
    } else {
        notices::two_factor_enabled(state, now, client)
    };
    mail::queue(&mut tx, &state.config, &state.keys, now, &session.email, &notice).await?;
    tx.commit().await?;
    Ok(TotpConfirmed {
        enabled: true,
        backup_codes,
    })
}

pub async fn regenerate_backup_codes(
    state: &AppState,
    client: &ClientInfo,
    session: &CurrentSession,
) -> Result<Vec<String>, EnrollmentError> {
    let now = state.clock.unix();
    if !session.is_sudo(now) {
        return Err(EnrollmentError::ReauthRequired);
    }
    let mut tx = state.store.begin().await?;
    if twofactor::methods(&mut tx, &session.user_id).await?.is_empty() {
        return Err(EnrollmentError::TwoFactorDisabled);
    }
    let codes = twofactor::issue_backup_codes(&mut tx, state, &session.user_id, now).await?;
    let event = Event::by_user("backup_codes_generated", &session.user_id).with_detail(json!({"regenerated": true}));
    audit::record(&mut tx, now, client, event).await?;
    mail::queue(
        &mut tx,
        &state.config,
        &state.keys,
        now,
        &session.email,
        &notices::backup_codes_regenerated(state, now, client),
    )
    .await?;
    tx.commit().await?;
    Ok(codes)
}

/// Turns 2FA off with a current second factor (a password alone never does): deletes the TOTP
/// secret, pending setups, backup codes and passkeys, and signs out every other session.
pub async fn disable(
    state: &AppState,
    client: &ClientInfo,
    session: &CurrentSession,
    factor: &SecondFactor,
) -> Result<(), EnrollmentError> {
    let now = state.clock.unix();
    if state.config.require_2fa.requires(session.role == Role::Admin) {
        return Err(EnrollmentError::TwoFactorRequired);
    }
    state
        .ip_limiter
        .check(client, now)
        .map_err(|retry_after| EnrollmentError::RateLimited { retry_after })?;
    let mut tx = state.store.begin().await?;
    if twofactor::methods(&mut tx, &session.user_id).await?.is_empty() {
        return Err(EnrollmentError::TwoFactorDisabled);
    }
    throttle::check(&mut tx, &session.user_id, throttle::Kind::SecondFactor, &*state.clock).await??;
    match verify_second_factor(&mut tx, state, &session.user_id, &session.email, factor, client, now).await? {
        Ok(_) => {}
        Err(error) => {
            state.ip_limiter.record_failure(client, now);
            let failure =
                throttle::record_failure(&mut tx, &session.user_id, throttle::Kind::SecondFactor, &*state.clock)
                    .await?;
            let event = Event::by_user("mfa_failed", &session.user_id).with_detail(
                json!({"method": factor.method(), "purpose": "disable", "consecutive_failures": failure.failures}),
            );
            audit::record(&mut tx, now, client, event).await?;
            tx.commit().await?;
            return Err(match error {
                CodeError::Invalid => EnrollmentError::SecondFactorInvalid,
                CodeError::AlreadyUsed => EnrollmentError::CodeAlreadyUsed,
            });
        }
    }
    twofactor::delete_all_factors(&mut tx, &session.user_id).await?;
    throttle::reset(&mut tx, &session.user_id, throttle::Kind::SecondFactor).await?;
    let revoked = store::sessions::delete_all_for_user(&mut tx, &session.user_id, Some(&session.id)).await?;
    let event = Event::by_user("2fa_disabled", &session.user_id)
        .with_detail(json!({"method": factor.method(), "other_sessions_revoked": revoked}));
    audit::record(&mut tx, now, client, event).await?;
    mail::queue(
        &mut tx,
        &state.config,
        &state.keys,
        now,
        &session.email,
        &notices::two_factor_disabled(state, now, client),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// When the key last completed a sign-in; null before its first use.
    pub last_used_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TwoFactorStatus {
    pub enabled: bool,
    pub totp: bool,
    pub webauthn: Vec<PasskeyView>,
    pub backup_codes_remaining: i64,
    pub email_recovery_enabled: bool,
    /// Policy requires 2FA for this account.
    pub required: bool,
}

pub async fn status(state: &AppState, session: &CurrentSession) -> Result<TwoFactorStatus, EnrollmentError> {
    let mut conn = state.store.read().await?;
    let methods = twofactor::methods(&mut conn, &session.user_id).await?;
    let user = store::users::find_by_id(&mut conn, &session.user_id).await?;
    Ok(TwoFactorStatus {
        enabled: !methods.is_empty(),
        totp: methods.contains(&"totp"),
        webauthn: twofactor::webauthn::list(&mut conn, &session.user_id).await?,
        backup_codes_remaining: rows::remaining_backup_codes(&mut conn, &session.user_id).await?,
        email_recovery_enabled: user.map(|u| u.email_recovery_enabled != 0).unwrap_or(true),
        required: state.config.require_2fa.requires(session.role == Role::Admin),
    })
}

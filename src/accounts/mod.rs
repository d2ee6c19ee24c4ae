//! Accounts: sign-up, the password step of login, sessions, re-authentication (sudo) and
//! password changes. The same functions serve the JSON API, the pages and the CLI.

pub mod email;
pub mod password_policy;
pub mod sessions;
pub mod throttle;

use serde::Serialize;
use serde_json::json;

use crate::app::AppState;
use crate::audit::{self, ClientInfo, Event};
use crate::clock::rfc3339;
use crate::mail::{self, notices};
use crate::store::{self, users::UserRow};
use crate::twofactor::{self, challenge, SecondFactor};
use email::Email;
use password_policy::WeakPassword;
use sessions::{CurrentSession, IssuedSession, Role, SessionState};
use throttle::Blocked;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("Sign-up is closed on this server.")]
    SignupDisabled,
    #[error("Enter an email address such as name@example.com.")]
    InvalidEmail,
    #[error("{0}")]
    WeakPassword(WeakPassword),
    #[error("An account with this email already exists.")]
    EmailTaken,
    #[error("The email or password is not right.")]
    InvalidCredentials,
    #[error("That code is not right.")]
    InvalidCode,
    #[error("That code was already used. Wait for the next one.")]
    CodeAlreadyUsed,
    #[error("Too many attempts. Try again in {retry_after} seconds.")]
    RateLimited { retry_after: i64 },
    #[error("Second-factor login is locked after too many wrong codes; recover the account or ask an administrator.")]
    Locked,
    #[error("Confirm it's you first.")]
    ReauthRequired,
    #[error("No such session.")]
    SessionNotFound,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::db::Error> for AccountError {
    fn from(error: crate::store::db::Error) -> Self {
        AccountError::Internal(error.into())
    }
}

impl From<Blocked> for AccountError {
    fn from(blocked: Blocked) -> Self {
        match blocked {
            Blocked::Wait(seconds) => AccountError::RateLimited {
                retry_after: seconds.max(1),
            },
            Blocked::Locked => AccountError::Locked,
        }
    }
}

impl From<twofactor::CodeError> for AccountError {
    fn from(error: twofactor::CodeError) -> Self {
        match error {
            twofactor::CodeError::Invalid => AccountError::InvalidCode,
            twofactor::CodeError::AlreadyUsed => AccountError::CodeAlreadyUsed,
        }
    }
}

/// Throttle subject for password guesses: a keyed hash of the address, the same whether or not an
/// account exists, so throttling reveals nothing.
pub(crate) fn password_subject(state: &AppState, email: &str) -> String {
    format!(
        "email:{}",
        hex::encode(&state.keys.token_hash(&format!("login\0{email}"))[..16])
    )
}

pub async fn signup(
    state: &AppState,
    client: &ClientInfo,
    email: &str,
    password: &str,
) -> Result<String, AccountError> {
    if !state.config.signup_open {
        return Err(AccountError::SignupDisabled);
    }
    let email = Email::parse(email).map_err(|_| AccountError::InvalidEmail)?;
    let password = password_policy::parse(password).map_err(AccountError::WeakPassword)?;
    create_user(state, client, &email, password.expose(), Role::User, None).await
}

/// Creates an account (sign-up, or an administrator at the command line).
pub async fn create_user(
    state: &AppState,
    client: &ClientInfo,
    email: &Email,
    password: &str,
    role: Role,
    actor_id: Option<&str>,
) -> Result<String, AccountError> {
    let password_hash = state.hasher.hash(password).await?;
    let now = state.clock.unix();
    let user = UserRow {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.as_str().to_string(),
        password_hash,
        role: role.as_str().to_string(),
        created_at: now,
        email_recovery_enabled: 1,
    };
    let mut tx = state.store.begin().await?;
    if !store::users::insert(&mut tx, &user).await? {
        return Err(AccountError::EmailTaken);
    }
    let event = Event {
        kind: "signup",
        user_id: Some(&user.id),
        actor_id: Some(actor_id.unwrap_or(&user.id)),
        detail: json!({"role": role.as_str()}),
    };
    audit::record(&mut tx, now, client, event).await?;
    tx.commit().await?;
    Ok(user.id)
}

/// The answer to a correct password.
pub enum LoginOutcome {
    Authenticated(IssuedSession),
    SecondFactorRequired(challenge::Challenge),
}

pub async fn login(
    state: &AppState,
    client: &ClientInfo,
    email: &str,
    password: &str,
) -> Result<LoginOutcome, AccountError> {
    let now = state.clock.unix();
    state
        .ip_limiter
        .check(client, now)
        .map_err(|retry_after| AccountError::RateLimited { retry_after })?;
    let email = Email::parse(email).ok();
    let normalised = email
        .as_ref()
        .map(|e| e.as_str().to_string())
        .unwrap_or_else(|| email_fallback(email.as_ref()));
    let subject = password_subject(state, &normalised);
    let user = {
        let mut conn = state.store.read().await?;
        throttle::check(&mut conn, &subject, throttle::Kind::Password, &*state.clock).await??;
        match &email {
            Some(email) => store::users::find_by_email(&mut conn, email.as_str()).await?,
            None => None,
        }
    };
    let check = state
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    let Some(user) = user.filter(|_| check.matches) else {
        state.ip_limiter.record_failure(client, now);
        let mut tx = state.store.begin().await?;
        throttle::record_failure(&mut tx, &subject, throttle::Kind::Password, &*state.clock).await?;
        if let Some(email) = &email {
            if let Some(user) = store::users::find_by_email(&mut tx, email.as_str()).await? {
                let event = Event::by_user("login_failed", &user.id).with_detail(json!({"reason": "password"}));
                audit::record(&mut tx, now, client, event).await?;
            }
        }
        tx.commit().await?;
        metrics::counter!("latchkey_logins_total", "outcome" => "invalid_credentials").increment(1);
        return Err(AccountError::InvalidCredentials);
    };
    let new_hash = if check.needs_rehash {
        Some(state.hasher.hash(password).await?)
    } else {
        None
    };

    let mut tx = state.store.begin().await?;
    throttle::reset(&mut tx, &subject, throttle::Kind::Password).await?;
    if let Some(hash) = &new_hash {
        store::users::set_password_hash(&mut tx, &user.id, hash).await?;
    }
    let methods = twofactor::methods(&mut tx, &user.id).await?;
    if !methods.is_empty() {
        let challenge = challenge::create(&mut tx, state, &user.id, methods, client, now).await?;
        tx.commit().await?;
        metrics::counter!("latchkey_logins_total", "outcome" => "mfa_required").increment(1);
        return Ok(LoginOutcome::SecondFactorRequired(challenge));
    }
    let session_state = if state
        .config
        .require_2fa
        .requires(Role::parse(&user.role) == Role::Admin)
    {
        SessionState::MfaEnrollmentRequired
    } else {
        SessionState::Full
    };
    let session = sessions::issue(&mut tx, state, &user.id, session_state, client, now).await?;
    let event =
        Event::by_user("login_succeeded", &user.id).with_detail(json!({"session_state": session_state.as_str()}));
    audit::record(&mut tx, now, client, event).await?;
    tx.commit().await?;
    metrics::counter!("latchkey_logins_total", "outcome" => "authenticated").increment(1);
    Ok(LoginOutcome::Authenticated(session))
}

/// A malformed address still gets a throttle subject of its own, so it behaves like any other.
fn email_fallback(email: Option<&Email>) -> String {
    email
        .map(|e| e.as_str().to_string())
        .unwrap_or_else(|| "malformed".into())
}

pub async fn logout(state: &AppState, session: &CurrentSession) -> Result<(), AccountError> {
    let mut tx = state.store.begin().await?;
    store::sessions::delete(&mut tx, &session.id).await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TwoFactorSummary {
    pub enabled: bool,
    pub methods: Vec<String>,
    pub backup_codes_remaining: i64,
    pub email_recovery_enabled: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PendingRecoveryView {
    pub completes_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub id: String,
    pub email: String,
    pub role: String,
    pub created_at: String,
    pub session_state: String,
    pub two_factor: TwoFactorSummary,
    pub pending_recovery: Option<PendingRecoveryView>,
}

pub async fn me(state: &AppState, session: &CurrentSession) -> Result<Me, AccountError> {
    let mut conn = state.store.read().await?;
    let user = store::users::find_by_id(&mut conn, &session.user_id)
        .await?
        .ok_or(AccountError::SessionNotFound)?;
    let methods = twofactor::methods(&mut conn, &user.id).await?;
    let backup_codes_remaining = store::two_factor::remaining_backup_codes(&mut conn, &user.id).await?;
    let pending_recovery = crate::recovery::pending_completes_at(&mut conn, &user.id)
        .await?
        .map(|completes_at| PendingRecoveryView {
            completes_at: rfc3339(completes_at),
        });
    Ok(Me {
        id: user.id,
        email: user.email,
        role: user.role,
        created_at: rfc3339(user.created_at),
        session_state: session.state.as_str().to_string(),
        two_factor: TwoFactorSummary {
            enabled: !methods.is_empty(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            backup_codes_remaining,
            email_recovery_enabled: user.email_recovery_enabled != 0,
        },
        pending_recovery,
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub current: bool,
}

pub async fn list_sessions(state: &AppState, session: &CurrentSession) -> Result<Vec<SessionView>, AccountError> {
    let mut conn = state.store.read().await?;
    let rows = store::sessions::list_for_user(&mut conn, &session.user_id).await?;
    Ok(rows
        .into_iter()
        .map(|row| SessionView {
            current: row.id == session.id,
            id: row.id,
            created_at: rfc3339(row.created_at),
            last_seen_at: rfc3339(row.last_seen_at),
            user_agent: row.user_agent,
            ip: row.ip,
        })
        .collect())
}

pub async fn revoke_session(
    state: &AppState,
    client: &ClientInfo,
    session: &CurrentSession,
    id: &str,
) -> Result<(), AccountError> {
    let now = state.clock.unix();
    let mut tx = state.store.begin().await?;
    if !store::sessions::delete_for_user(&mut tx, &session.user_id, id).await? {
        return Err(AccountError::SessionNotFound);
    }
    let event = Event::by_user("session_revoked", &session.user_id).with_detail(json!({"session_id": id}));
    audit::record(&mut tx, now, client, event).await?;
    tx.commit().await?;
    Ok(())
}

/// How the user proves it is them again.
pub enum Reauth {
    Password(String),
    SecondFactor(SecondFactor),
}

/// Opens the sudo window; answers when it closes.
pub async fn reauthenticate(
    state: &AppState,
    client: &ClientInfo,
    session: &CurrentSession,
    proof: Reauth,
) -> Result<String, AccountError> {
    let now = state.clock.unix();
    state
        .ip_limiter
        .check(client, now)
        .map_err(|retry_after| AccountError::RateLimited { retry_after })?;
    {
        let mut conn = state.store.read().await?;
        throttle::check(&mut conn, &session.user_id, throttle::Kind::Reauth, &*state.clock).await??;
    }
    // The password is checked before the transaction: Argon2 must not hold the write lock.
    let password_matches = match &proof {
        Reauth::Password(password) => {
            let user = {
                let mut conn = state.store.read().await?;
                store::users::find_by_id(&mut conn, &session.user_id).await?
            };
            state
                .hasher
                .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
                .await?
                .matches
        }
        Reauth::SecondFactor(_) => false,
    };
    let mut tx = state.store.begin().await?;
    let (method, outcome) = match &proof {
        Reauth::Password(_) => (
            "password",
            if password_matches {
                Ok(())
            } else {
                Err(AccountError::InvalidCredentials)
            },
        ),
        Reauth::SecondFactor(factor) => {
            let outcome =
                twofactor::verify_second_factor(&mut tx, state, &session.user_id, &session.email, factor, client, now)
                    .await?
                    .map(|_| ())
                    .map_err(AccountError::from);
            (factor.method(), outcome)
        }
    };
    let result = match outcome {
        Ok(()) => {
            throttle::reset(&mut tx, &session.user_id, throttle::Kind::Reauth).await?;
            let until = now + state.config.sudo_ttl.as_secs() as i64;
            store::sessions::set_sudo_until(&mut tx, &session.id, until).await?;
            audit::record(
                &mut tx,
                now,
                client,
                Event::by_user("reauth", &session.user_id).with_detail(json!({"method": method})),
            )
            .await?;
            Ok(rfc3339(until))
        }
        Err(error) => {
            state.ip_limiter.record_failure(client, now);
            throttle::record_failure(&mut tx, &session.user_id, throttle::Kind::Reauth, &*state.clock).await?;
            let event = Event::by_user("login_failed", &session.user_id)
                .with_detail(json!({"reason": "reauth", "method": method}));
            audit::record(&mut tx, now, client, event).await?;
            Err(error)
        }
    };
    tx.commit().await?;
    result
}

/// Replaces the password (sudo) and signs out every other session.
pub async fn change_password(
    state: &AppState,
    client: &ClientInfo,
    session: &CurrentSession,
    new_password: &str,
) -> Result<(), AccountError> {
    let now = state.clock.unix();
    if !session.is_sudo(now) {
        return Err(AccountError::ReauthRequired);
    }
    let password = password_policy::parse(new_password).map_err(AccountError::WeakPassword)?;
    let hash = state.hasher.hash(password.expose()).await?;
    let mut tx = state.store.begin().await?;
    store::users::set_password_hash(&mut tx, &session.user_id, &hash).await?;
    let revoked = store::sessions::delete_all_for_user(&mut tx, &session.user_id, Some(&session.id)).await?;
    let event =
        Event::by_user("password_changed", &session.user_id).with_detail(json!({"other_sessions_revoked": revoked}));
    audit::record(&mut tx, now, client, event).await?;
    mail::queue(
        &mut tx,
        &state.config,
        &state.keys,
        now,
        &session.email,
        &notices::password_changed(state, now, client),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

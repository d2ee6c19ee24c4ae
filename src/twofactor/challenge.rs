//! The second step of login: a short-lived, single-use challenge issued after the password, which
//! a TOTP code, a backup code or a passkey (see `webauthn`) turns into a session.

use serde_json::json;

use crate::accounts::sessions::{self, IssuedSession, SessionState};
use crate::accounts::throttle::{self, Blocked};
use crate::app::AppState;
use crate::audit::{self, ClientInfo, Event};
use crate::crypto::random_token;
use crate::mail::{self, notices};
use crate::store::throttles::ThrottleRow;
use crate::store::{self, two_factor as rows};
use crate::twofactor::{verify_second_factor, CodeError, FactorUsed, SecondFactor};

pub const LIFETIME_SECONDS: i64 = 300;
/// The fifth wrong code still answers `invalid_code`; the challenge is dead after it.
pub const MAX_FAILURES: i64 = 5;

pub struct Challenge {
    pub token: String,
    pub methods: Vec<&'static str>,
    pub expires_at: i64,
}

pub async fn create(
    conn: &mut crate::store::Connection,
    state: &AppState,
    user_id: &str,
    methods: Vec<&'static str>,
    client: &ClientInfo,
    now: i64,
) -> anyhow::Result<Challenge> {
    let token = random_token();
    let expires_at = now + LIFETIME_SECONDS;
    let id = uuid::Uuid::new_v4().to_string();
    let token_hash = state.keys.token_hash(&token);
    let challenge = rows::NewChallenge {
        id: &id,
        token_hash: &token_hash,
        user_id,
        created_at: now,
        expires_at,
        ip: client.ip.as_deref(),
        user_agent: client.user_agent.as_deref(),
    };
    rows::insert_challenge(conn, &challenge).await?;
    Ok(Challenge {
        token,
        methods,
        expires_at,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    #[error("This sign-in has expired. Start again with your password.")]
    Expired,
    #[error("That code is not right.")]
    InvalidCode,
    #[error("That security key was not accepted. Try again, or use another method.")]
    InvalidCredential,
    #[error("This account has no security key. Use another method.")]
    NoSecurityKey,
    #[error("That code was already used. Wait for the next one.")]
    CodeAlreadyUsed,
    #[error("Too many attempts. Try again in {retry_after} seconds.")]
    RateLimited { retry_after: i64 },
    #[error(
        "Second-factor sign-in is locked after too many wrong codes. Recover the account, or ask an administrator."
    )]
    Locked,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::db::Error> for ChallengeError {
    fn from(error: crate::store::db::Error) -> Self {
        ChallengeError::Internal(error.into())
    }
}

impl From<Blocked> for ChallengeError {
    fn from(blocked: Blocked) -> Self {
        match blocked {
            Blocked::Wait(seconds) => ChallengeError::RateLimited {
                retry_after: seconds.max(1),
            },
            Blocked::Locked => ChallengeError::Locked,
        }
    }
}

pub struct LoginCompleted {
    pub session: IssuedSession,
    pub backup_codes_remaining: i64,
    pub backup_codes_low: bool,
}

/// Completes a login with a second factor.
pub async fn complete(
    state: &AppState,
    client: &ClientInfo,
    token: &str,
    factor: &SecondFactor,
) -> Result<LoginCompleted, ChallengeError> {
    let now = state.clock.unix();
    let mut opened = open(state, client, token, now).await?;
    let challenge = &opened.challenge;
    let verified = verify_second_factor(
        &mut opened.tx,
        state,
        &challenge.user_id,
        &challenge.email,
        factor,
        client,
        now,
    )
    .await?;
    let used = match verified {
        Ok(used) => used,
        Err(code_error) => {
            let OpenChallenge { mut tx, challenge } = opened;
            record_failure(
                &mut tx,
                state,
                client,
                &challenge.user_id,
                &challenge.email,
                &challenge.id,
                factor.method(),
                code_error,
                now,
            )
            .await?;
            tx.commit().await?;
            return Err(match code_error {
                CodeError::Invalid => ChallengeError::InvalidCode,
                CodeError::AlreadyUsed => ChallengeError::CodeAlreadyUsed,
            });
        }
    };
    finish(opened, state, client, factor.method(), used, now).await
}

/// A live login challenge, with its user, in the write transaction that will answer it.
pub(crate) struct OpenChallenge {
    pub tx: store::Tx,
    pub challenge: rows::OpenChallengeRow,
}

/// Opens a challenge for one second-factor attempt: the client and the account must not be
/// throttled, and the challenge must be unused, unexpired and not dead of failures.
pub(crate) async fn open(
    state: &AppState,
    client: &ClientInfo,
    token: &str,
    now: i64,
) -> Result<OpenChallenge, ChallengeError> {
    state
        .ip_limiter
        .check(client, now)
        .map_err(|retry_after| ChallengeError::RateLimited { retry_after })?;
    let mut tx = state.store.begin().await?;
    let token_hash = state.keys.token_hash(token);
    let found = rows::open_challenge(&mut tx, &token_hash, throttle::Kind::SecondFactor.as_str()).await?;
    let Some(challenge) = found.filter(|challenge| is_live(challenge, now)) else {
        drop(tx);
        state.ip_limiter.record_failure(client, now);
        return Err(ChallengeError::Expired);
    };
    throttle::verdict(&throttle_of(&challenge), state.clock.unix_millis())?;
    Ok(OpenChallenge { tx, challenge })
}

/// A challenge that may still be answered.
fn is_live(challenge: &rows::OpenChallengeRow, now: i64) -> bool {
    challenge.used_at.is_none() && challenge.expires_at > now && challenge.failures < MAX_FAILURES
}

fn throttle_of(challenge: &rows::OpenChallengeRow) -> ThrottleRow {
    ThrottleRow {
        failures: challenge.throttle_failures.unwrap_or(0),
        retry_at_ms: challenge.throttle_retry_at_ms.unwrap_or(0),
        locked: challenge.throttle_locked.unwrap_or(0),
    }
}

/// The end of every successful second step, whatever the factor: uses the challenge up (one
/// login per challenge), resets the throttle, cancels a pending recovery (the owner evidently
/// still has a factor), issues the session, and audits it. What the challenge's read showed to
/// be absent (failures to forget, a pending recovery) costs no statement.
pub(crate) async fn finish(
    opened: OpenChallenge,
    state: &AppState,
    client: &ClientInfo,
    method: &str,
    used: FactorUsed,
    now: i64,
) -> Result<LoginCompleted, ChallengeError> {
    let OpenChallenge { mut tx, challenge } = opened;
    let user_id = challenge.user_id.as_str();
    if !rows::consume_challenge(&mut tx, &challenge.id, now, MAX_FAILURES).await? {
        // Another request completed this challenge first; this one changes nothing.
        return Err(ChallengeError::Expired);
    }
    if challenge.throttle_failures.is_some() {
        throttle::reset(&mut tx, user_id, throttle::Kind::SecondFactor).await?;
    }
    if challenge.pending_recoveries > 0 {
        crate::recovery::cancel_pending_after_login(&mut tx, state, user_id, &challenge.email, client, now).await?;
    }
    let session = sessions::issue(&mut tx, state, user_id, SessionState::Full, client, now).await?;
    let backup_codes_remaining = match used {
        FactorUsed::BackupCode { remaining } => remaining,
        FactorUsed::Totp | FactorUsed::Webauthn => challenge.backup_codes_remaining,
    };
    // Last before commit: appending locks the chain's head until the transaction ends.
    let events = vec![
        Event::by_user("mfa_succeeded", user_id).with_detail(json!({"method": method})),
        Event::by_user("login_succeeded", user_id)
            .with_detail(json!({"session_state": "full", "second_factor": method})),
    ];
    audit::record_all(&mut tx, now, client, events).await?;
    tx.commit().await?;
    metrics::counter!("latchkey_logins_total", "outcome" => "mfa_succeeded").increment(1);
    Ok(LoginCompleted {
        session,
        backup_codes_remaining,
        backup_codes_low: used.backup_codes_low(),
    })
}

/// Counts a wrong code against the challenge, the account and the client, and tells the user when
/// someone who knows their password starts guessing codes. A replayed code reveals nothing new
/// (it was right once), so it counts against the challenge but is not a guess to throttle.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_failure(
    tx: &mut store::Tx,
    state: &AppState,
    client: &ClientInfo,
    user_id: &str,
    email: &str,
    challenge_id: &str,
    method: &str,
    code_error: CodeError,
    now: i64,
) -> anyhow::Result<()> {
    rows::add_challenge_failure(tx, challenge_id).await?;
    if code_error == CodeError::AlreadyUsed {
        let event = Event::by_user("mfa_failed", user_id).with_detail(json!({"method": method, "reason": "replay"}));
        audit::record(tx, now, client, event).await?;
        return Ok(());
    }
    state.ip_limiter.record_failure(client, now);
    let failure = throttle::record_failure(tx, user_id, throttle::Kind::SecondFactor, &*state.clock).await?;
    let event = Event::by_user("mfa_failed", user_id)
        .with_detail(json!({"method": method, "consecutive_failures": failure.failures}));
    audit::record(tx, now, client, event).await?;
    if failure.started_throttling {
        mail::queue(
            tx,
            &state.config,
            &state.keys,
            now,
            email,
            &notices::second_factor_guessing(state, now, client),
        )
        .await?;
    }
    if failure.locked_now {
        let event = Event::by_user("lockout", user_id).with_detail(json!({"consecutive_failures": failure.failures}));
        audit::record(tx, now, client, event).await?;
        mail::queue(
            tx,
            &state.config,
            &state.keys,
            now,
            email,
            &notices::second_factor_locked(state, now, client),
        )
        .await?;
    }
    metrics::counter!("latchkey_logins_total", "outcome" => "mfa_failed").increment(1);
    Ok(())
}

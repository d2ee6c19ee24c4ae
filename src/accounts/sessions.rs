//! Sessions: 256-bit bearer tokens stored only as HMACs, with an idle timeout, an absolute
//! lifetime, a sudo window, and a state that limits what an unfinished session may do.

use crate::store::Connection;

use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::crypto::random_token;
use crate::store::sessions::{self as rows, SessionRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Full,
    /// Policy requires 2FA and the user has none: may only enroll.
    MfaEnrollmentRequired,
    /// Made by completing a recovery: must enroll a new factor.
    Recovered,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Full => "full",
            SessionState::MfaEnrollmentRequired => "mfa_enrollment_required",
            SessionState::Recovered => "recovered",
        }
    }

    pub fn parse(text: &str) -> SessionState {
        match text {
            "full" => SessionState::Full,
            "recovered" => SessionState::Recovered,
            // Anything unknown is treated as the most restricted state.
            _ => SessionState::MfaEnrollmentRequired,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Role {
        if text == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
}

/// The session a request carries, after its token was checked.
#[derive(Clone)]
pub struct CurrentSession {
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub state: SessionState,
    pub created_at: i64,
    pub sudo_until: i64,
    /// The bearer token itself, kept in memory only to derive the CSRF token of pages.
    pub token: String,
}

impl std::fmt::Debug for CurrentSession {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "CurrentSession {{ id: {}, user_id: {}, state: {:?} }}",
            self.id, self.user_id, self.state
        )
    }
}

impl CurrentSession {
    pub fn is_sudo(&self, now: i64) -> bool {
        self.sudo_until >= now
    }

    pub fn is_full(&self) -> bool {
        self.state == SessionState::Full
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// A freshly issued session token (shown to the client once).
pub struct IssuedSession {
    pub id: String,
    pub token: String,
    pub state: SessionState,
}

/// Issues a session inside the caller's transaction. A login counts as a fresh authentication,
/// so the session starts in sudo mode.
pub async fn issue(
    conn: &mut Connection,
    state: &AppState,
    user_id: &str,
    session_state: SessionState,
    client: &ClientInfo,
    now: i64,
) -> anyhow::Result<IssuedSession> {
    let token = random_token();
    let row = SessionRow {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user_id.to_string(),
        state: session_state.as_str().to_string(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + state.config.session_lifetime.as_secs() as i64,
        sudo_until: now + state.config.sudo_ttl.as_secs() as i64,
        user_agent: client
            .user_agent
            .as_deref()
            .map(|agent| agent.chars().take(300).collect()),
        ip: client.ip.clone(),
    };
    rows::insert(conn, &state.keys.token_hash(&token), &row).await?;
    Ok(IssuedSession {
        id: row.id,
        token,
        state: session_state,
    })
}

/// Finds the live session for a bearer token; expired sessions are deleted on sight.
pub async fn authenticate(state: &AppState, token: &str) -> anyhow::Result<Option<CurrentSession>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let now = state.clock.unix();
    let found = {
        let mut conn = state.store.read().await?;
        rows::find_by_token_hash(&mut conn, &state.keys.token_hash(token)).await?
    };
    let Some(found) = found else {
        return Ok(None);
    };
    let idle_limit = state.config.session_idle_timeout.as_secs() as i64;
    if found.expires_at <= now || found.last_seen_at + idle_limit <= now {
        let mut tx = state.store.begin().await?;
        rows::delete(&mut tx, &found.id).await?;
        tx.commit().await?;
        return Ok(None);
    }
    // Activity is recorded at most once a minute, so most requests only read.
    if found.last_seen_at < now - rows::TOUCH_INTERVAL_SECONDS {
        let mut tx = state.store.begin().await?;
        rows::touch(&mut tx, &found.id, now).await?;
        tx.commit().await?;
    }
    Ok(Some(CurrentSession {
        id: found.id,
        user_id: found.user_id,
        email: found.email,
        role: Role::parse(&found.role),
        state: SessionState::parse(&found.state),
        created_at: found.created_at,
        sudo_until: found.sudo_until,
        token: token.to_string(),
    }))
}

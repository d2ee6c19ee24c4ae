//! Recovery and password-reset requests: the answer must not reveal whether an account exists.
//!
//! The handler only checks the client's address budget and answers; the lookup, the per-address
//! count and the email happen afterwards in a task of their own. The response time is then the
//! same for every address by construction (measured in tests/api/recovery.rs), however long the
//! database or the email template takes for a real account.

use std::future::Future;

use crate::store::Connection;

use crate::accounts::email::Email;
use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::store::recovery as rows;
use crate::store::users::{self, UserRow};

/// At most this many requests of a kind per address and hour act; later ones answer the same but
/// send nothing, so nobody can flood a mailbox through latchkey.
pub const REQUESTS_PER_HOUR: i64 = 5;
const WINDOW_SECONDS: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Recovery,
    PasswordReset,
}

impl RequestKind {
    fn as_str(self) -> &'static str {
        match self {
            RequestKind::Recovery => "recovery_request",
            RequestKind::PasswordReset => "password_reset_request",
        }
    }
}

/// Accepts a request: spends one of the client's per-IP budget (the one failed logins use; past
/// it, `Err(retry_after)`), then runs `work` for the address after the answer was sent. Failures
/// of the work are logged (without the address), since nobody is waiting for them.
pub fn accept<Work, Done>(
    state: &AppState,
    client: &ClientInfo,
    email: &str,
    what: &'static str,
    work: Work,
) -> Result<(), i64>
where
    Work: FnOnce(AppState, ClientInfo, String) -> Done,
    Done: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let now = state.clock.unix();
    state.ip_limiter.check(client, now)?;
    state.ip_limiter.record_failure(client, now);
    let task = work(state.clone(), client.clone(), email.to_string());
    tokio::spawn(async move {
        if let Err(error) = task.await {
            tracing::warn!(error = format!("{error:#}"), "{what} failed");
        }
    });
    Ok(())
}

/// The account a request is about: counted against its address first, and None when over the
/// hourly limit, malformed, or without an account.
pub async fn requested_account(
    conn: &mut Connection,
    state: &AppState,
    kind: RequestKind,
    email: &str,
    now: i64,
) -> anyhow::Result<Option<UserRow>> {
    let Ok(email) = Email::parse(email) else {
        return Ok(None);
    };
    if !within_address_limit(conn, state, kind, &email, now).await? {
        return Ok(None);
    }
    Ok(users::find_by_email(conn, email.as_str()).await?)
}

/// Counts the request against the address (a keyed hash of it, so unknown addresses are not
/// stored in clear); answers whether it is within the hourly limit.
async fn within_address_limit(
    conn: &mut Connection,
    state: &AppState,
    kind: RequestKind,
    email: &Email,
    now: i64,
) -> anyhow::Result<bool> {
    let subject = hex::encode(&state.keys.token_hash(&format!("{}\0{}", kind.as_str(), email.as_str()))[..16]);
    let requests = rows::count_request(conn, &subject, kind.as_str(), now, WINDOW_SECONDS).await?;
    Ok(requests <= REQUESTS_PER_HOUR)
}

/// Forgets request counts whose window is over.
pub async fn sweep(conn: &mut Connection, now: i64) -> anyhow::Result<()> {
    rows::delete_old_request_counts(conn, now - WINDOW_SECONDS).await?;
    Ok(())
}

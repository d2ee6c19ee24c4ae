//! Administrators: finding users, and resetting a user's two-factor authentication after checking
//! who they are through another channel — with a reason, an audit event and an email, and, when
//! configured, a second administrator's approval.

use serde::Serialize;
use serde_json::json;

use super::cancel::{cancel_pending, CancelledBy};
use super::notices;
use crate::accounts::email::Email;
use crate::accounts::sessions::CurrentSession;
use crate::accounts::throttle;
use crate::app::AppState;
use crate::audit::{self, ClientInfo, Event};
use crate::clock::rfc3339;
use crate::mail;
use crate::store::recovery::{self as rows, AdminResetRequestRow};
use crate::store::{self, users::UserRow, Tx};
use crate::twofactor;

pub const MAX_REASON_CHARS: usize = 500;
/// A reset request waits this long for a second administrator.
pub const REQUEST_LIFETIME_SECONDS: i64 = 24 * 3600;
pub const USERS_PER_PAGE: i64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("Give a reason: it is recorded in the audit log and told to the user.")]
    ReasonRequired,
    #[error("Keep the reason under 500 characters.")]
    ReasonTooLong,
    #[error("No such user.")]
    UserNotFound,
    #[error("No such reset request.")]
    RequestNotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("This reset request expired after 24 hours; ask again.")]
    RequestExpired,
    #[error("This reset request was already approved.")]
    AlreadyApproved,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::db::Error> for AdminError {
    fn from(error: crate::store::db::Error) -> Self {
        AdminError::Internal(error.into())
    }
}

/// One user as the administration pages and API list them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    pub id: String,
    pub email: String,
    pub role: String,
    pub two_factor_enabled: bool,
    pub created_at: String,
    pub email_recovery_enabled: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserPage {
    pub users: Vec<UserSummary>,
    /// The `page` to ask for next; null on the last page.
    pub next_page: Option<i64>,
}

async fn summary(conn: &mut crate::store::Connection, user: UserRow) -> anyhow::Result<UserSummary> {
    let two_factor_enabled = !twofactor::methods(conn, &user.id).await?.is_empty();
    Ok(UserSummary {
        two_factor_enabled,
        created_at: rfc3339(user.created_at),
        email_recovery_enabled: user.email_recovery_enabled != 0,
        id: user.id,
        email: user.email,
        role: user.role,
    })
}

/// Users whose email contains `email_fragment` (all users when empty), by email; pages start at 1.
pub async fn find_users(state: &AppState, email_fragment: &str, page: i64) -> Result<UserPage, AdminError> {
    // Bounded, so the offset cannot overflow whatever page a client asks for.
    let page = page.clamp(1, 1_000_000);
    let mut conn = state.store.read().await?;
    let fragment = email_fragment.trim().to_lowercase();
    let rows = store::users::search(&mut conn, &fragment, USERS_PER_PAGE + 1, (page - 1) * USERS_PER_PAGE).await?;
    let has_more = rows.len() as i64 > USERS_PER_PAGE;
    let mut users = Vec::with_capacity(rows.len());
    for row in rows.into_iter().take(USERS_PER_PAGE as usize) {
        users.push(summary(&mut conn, row).await?);
    }
    Ok(UserPage {
        users,
        next_page: has_more.then_some(page + 1),
    })
}

pub async fn find_user(state: &AppState, user_id: &str) -> Result<UserSummary, AdminError> {
    let mut conn = state.store.read().await?;
    let user = store::users::find_by_id(&mut conn, user_id)
        .await?
        .ok_or(AdminError::UserNotFound)?;
    Ok(summary(&mut conn, user).await?)
}

pub async fn find_user_by_email(state: &AppState, email: &str) -> Result<UserSummary, AdminError> {
    let email = Email::parse(email).map_err(|_| AdminError::UserNotFound)?;
    let mut conn = state.store.read().await?;
    let user = store::users::find_by_email(&mut conn, email.as_str())
        .await?
        .ok_or(AdminError::UserNotFound)?;
    Ok(summary(&mut conn, user).await?)
}

/// Who resets: an administrator's session, or the command line of the server (for a single
/// administrator who is locked out; it needs no approval, having shell access already).
#[derive(Clone, Copy)]
pub enum Actor<'a> {
    Admin(&'a CurrentSession),
    CommandLine,
}

impl Actor<'_> {
    fn id(&self) -> &str {
        match self {
            Actor::Admin(session) => &session.user_id,
            Actor::CommandLine => "cli",
        }
    }

    fn description(&self) -> String {
        match self {
            Actor::Admin(session) => format!("The administrator {}", session.email),
            Actor::CommandLine => "An administrator, at the server's command line,".to_string(),
        }
    }
}

/// A reason as given: required, trimmed, at most 500 characters.
pub fn parse_reason(reason: Option<&str>) -> Result<String, AdminError> {
    let reason = reason.map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        return Err(AdminError::ReasonRequired);
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(AdminError::ReasonTooLong);
    }
    Ok(reason.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetOutcome {
    Reset,
    AwaitingApproval { request_id: String },
}

/// Resets the user's 2FA, or (with `LATCHKEY_ADMIN_RESET_APPROVALS=2`, from a session) asks a
/// second administrator to approve it. Nobody resets their own 2FA this way.
pub async fn reset_two_factor(
    state: &AppState,
    client: &ClientInfo,
    actor: Actor<'_>,
    user_id: &str,
    reason: Option<&str>,
) -> Result<ResetOutcome, AdminError> {
    if matches!(actor, Actor::Admin(session) if !session.is_admin()) {
        return Err(AdminError::Forbidden("Only administrators may do this."));
    }
    let reason = parse_reason(reason)?;
    let now = state.clock.unix();
    let mut tx = state.store.begin().await?;
    let user = store::users::find_by_id(&mut tx, user_id)
        .await?
        .ok_or(AdminError::UserNotFound)?;
    if user.id == actor.id() {
        return Err(AdminError::Forbidden(
            "You cannot reset your own two-factor authentication; ask another administrator.",
        ));
    }
    let needs_approval = matches!(actor, Actor::Admin(_)) && state.config.admin_reset_approvals >= 2;
    if needs_approval {
        let request = AdminResetRequestRow {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.id.clone(),
            requested_by: actor.id().to_string(),
            reason: reason.clone(),
            created_at: now,
            expires_at: now + REQUEST_LIFETIME_SECONDS,
            approved_by: None,
            approved_at: None,
        };
        rows::insert_admin_reset_request(&mut tx, &request).await?;
        let event = Event {
            kind: "2fa_reset_requested",
            user_id: Some(&user.id),
            actor_id: Some(actor.id()),
            detail: json!({"reason": reason, "request_id": request.id}),
        };
        audit::record(&mut tx, now, client, event).await?;
        tx.commit().await?;
        return Ok(ResetOutcome::AwaitingApproval { request_id: request.id });
    }
    let detail = json!({"reason": reason});
    apply_reset(
        &mut tx,
        state,
        client,
        &user,
        actor.id(),
        &actor.description(),
        &reason,
        detail,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(ResetOutcome::Reset)
}

/// A second administrator approves a reset request, which then takes effect.
pub async fn approve(
    state: &AppState,
    client: &ClientInfo,
    admin: &CurrentSession,
    request_id: &str,
) -> Result<(), AdminError> {
    if !admin.is_admin() {
        return Err(AdminError::Forbidden("Only administrators may do this."));
    }
    let now = state.clock.unix();
    let mut tx = state.store.begin().await?;
    let request = rows::find_admin_reset_request(&mut tx, request_id)
        .await?
        .ok_or(AdminError::RequestNotFound)?;
    if request.requested_by == admin.user_id {
        return Err(AdminError::Forbidden(
            "You asked for this reset; a different administrator must approve it.",
        ));
    }
    if request.user_id == admin.user_id {
        return Err(AdminError::Forbidden(
            "You cannot approve a reset of your own two-factor authentication.",
        ));
    }
    if request.approved_at.is_some() {
        return Err(AdminError::AlreadyApproved);
    }
    if !rows::approve_admin_reset_request(&mut tx, &request.id, &admin.user_id, now).await? {
        return Err(AdminError::RequestExpired);
    }
    let user = store::users::find_by_id(&mut tx, &request.user_id)
        .await?
        .ok_or(AdminError::UserNotFound)?;
    let requester = store::users::find_by_id(&mut tx, &request.requested_by)
        .await?
        .map(|requester| requester.email)
        .unwrap_or_else(|| "another administrator".into());
    let who = format!("The administrator {requester}, with the approval of {},", admin.email);
    let detail = json!({
        "reason": request.reason,
        "request_id": request.id,
        "requested_by": request.requested_by,
        "approved_by": admin.user_id,
    });
    apply_reset(
        &mut tx,
        state,
        client,
        &user,
        &admin.user_id,
        &who,
        &request.reason,
        detail,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The reset itself: second factors and backup codes deleted, every session revoked, the
/// second-factor lock lifted, a pending email recovery cancelled, audited and emailed.
#[allow(clippy::too_many_arguments)]
async fn apply_reset(
    tx: &mut Tx,
    state: &AppState,
    client: &ClientInfo,
    user: &UserRow,
    actor_id: &str,
    who: &str,
    reason: &str,
    detail: serde_json::Value,
    now: i64,
) -> anyhow::Result<()> {
    twofactor::delete_all_factors(tx, &user.id).await?;
    let sessions_revoked = store::sessions::delete_all_for_user(tx, &user.id, None).await?;
    throttle::reset(tx, &user.id, throttle::Kind::SecondFactor).await?;
    // A recovery completing later would delete the factor the user is about to enroll.
    cancel_pending(tx, state, &user.id, &user.email, client, now, CancelledBy::AdminReset).await?;
    let mut detail = detail;
    detail["sessions_revoked"] = json!(sessions_revoked);
    let event = Event {
        kind: "2fa_reset",
        user_id: Some(&user.id),
        actor_id: Some(actor_id),
        detail,
    };
    let notice = notices::admin_reset(state, now, client, who, reason);
    mail::queue(tx, &state.config, &state.keys, now, &user.email, &notice).await?;
    audit::record(tx, now, client, event).await?;
    Ok(())
}

/// A reset request awaiting a second administrator.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResetRequestView {
    pub id: String,
    pub user_id: String,
    pub user_email: String,
    pub requested_by: String,
    pub requested_by_email: String,
    pub reason: String,
    pub created_at: String,
    pub expires_at: String,
}

/// Requests awaiting approval (unexpired), oldest first.
pub async fn open_requests(state: &AppState) -> Result<Vec<ResetRequestView>, AdminError> {
    let now = state.clock.unix();
    let mut conn = state.store.read().await?;
    Ok(rows::open_admin_reset_requests(&mut conn, now)
        .await?
        .into_iter()
        .map(|row| ResetRequestView {
            id: row.id,
            user_id: row.user_id,
            user_email: row.user_email,
            requested_by: row.requested_by,
            requested_by_email: row.requested_by_email,
            reason: row.reason,
            created_at: rfc3339(row.created_at),
            expires_at: rfc3339(row.expires_at),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_required_and_bounded() {
        assert!(matches!(parse_reason(None), Err(AdminError::ReasonRequired)));
        assert!(matches!(parse_reason(Some("")), Err(AdminError::ReasonRequired)));
        assert!(matches!(parse_reason(Some(" \t\n")), Err(AdminError::ReasonRequired)));
        assert_eq!(
            parse_reason(Some("  lost phone, verified by video call ")).unwrap(),
            "lost phone, verified by video call"
        );
        assert!(parse_reason(Some(&"é".repeat(500))).is_ok());
        assert!(matches!(
            parse_reason(Some(&"a".repeat(501))),
            Err(AdminError::ReasonTooLong)
        ));
    }
}

//! The account's security overview, signing out devices, "confirm it's you", and the password.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use crate::accounts::{self, Me, Reauth};
use crate::app::AppState;
use crate::audit::{self, ClientInfo};
use crate::http::error::ApiError;
use crate::http::web::auth::PageQuery;
use crate::http::web::forms::{next_or_account, SessionForm};
use crate::http::web::page::{
    field_message, notice, readable_time, render, render_status, see_other, Layout, PageError,
};
use crate::http::web::session::{add_cookie, clear_session_cookie, reauth_redirect, FullPageSession};
use crate::recovery;
use crate::twofactor::{backup_codes, enrollment, SecondFactor};

/// How many of the user's own events the overview lists.
const ACTIVITY_SHOWN: i64 = 15;

pub struct DeviceRow {
    pub id: String,
    pub device: String,
    pub ip: String,
    pub signed_in: String,
    pub last_seen: String,
    pub current: bool,
}

pub struct ActivityRow {
    pub when: String,
    pub what: &'static str,
    pub ip: String,
}

#[derive(Template)]
#[template(path = "pages/account.html")]
pub struct AccountPage {
    layout: Layout,
    csrf: String,
    me: Me,
    required: bool,
    codes_low: bool,
    pending_recovery: Option<String>,
    devices: Vec<DeviceRow>,
    activity: Vec<ActivityRow>,
    notice: Option<&'static str>,
}

pub async fn overview(
    State(state): State<AppState>,
    FullPageSession(session): FullPageSession,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    let me = accounts::me(&state, &session).await.map_err(ApiError::from)?;
    let status = enrollment::status(&state, &session).await.map_err(ApiError::from)?;
    let devices = accounts::list_sessions(&state, &session)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|view| DeviceRow {
            device: ClientInfo {
                ip: None,
                user_agent: view.user_agent.clone(),
            }
            .device(),
            ip: view.ip.unwrap_or_else(|| "unknown".into()),
            signed_in: readable_time(&view.created_at),
            last_seen: readable_time(&view.last_seen_at),
            current: view.current,
            id: view.id,
        })
        .collect();
    let activity = audit::recent_for_user(&state.store, &session.user_id, ACTIVITY_SHOWN)
        .await?
        .into_iter()
        .map(|event| ActivityRow {
            when: readable_time(&event.at),
            what: describe_event(&event.kind),
            ip: event.ip.unwrap_or_default(),
        })
        .collect();
    let page = AccountPage {
        layout: Layout::signed_in(&state, &session, "Account security"),
        csrf: state.keys.csrf_token(&session.token),
        codes_low: me.two_factor.enabled && backup_codes::is_low(me.two_factor.backup_codes_remaining),
        pending_recovery: me.pending_recovery.as_ref().map(|p| readable_time(&p.completes_at)),
        required: status.required,
        me,
        devices,
        activity,
        notice: notice(query.done.as_deref()),
    };
    render(&page)
}

#[derive(Deserialize)]
pub struct AccountAction {
    action: String,
    session_id: Option<String>,
    enabled: Option<String>,
}

/// The overview's forms post back to `/account`; `action` says which one.
pub async fn overview_action(
    State(state): State<AppState>,
    client: ClientInfo,
    FullPageSession(session): FullPageSession,
    SessionForm(form): SessionForm<AccountAction>,
) -> Result<Response, PageError> {
    match form.action.as_str() {
        "sign_out_device" => {
            let id = form.session_id.unwrap_or_default();
            accounts::revoke_session(&state, &client, &session, &id)
                .await
                .map_err(ApiError::from)?;
            if id == session.id {
                let mut response = see_other("/login?done=signed_out");
                add_cookie(&mut response, clear_session_cookie(&state.config));
                return Ok(response);
            }
            Ok(see_other("/account?done=session_signed_out"))
        }
        "cancel_recovery" => match recovery::cancel_for_session(&state, &client, &session)
            .await
            .map_err(ApiError::from)
        {
            // Nothing pending (it ended meanwhile) is no reason for an error page.
            Ok(()) | Err(ApiError { code: "not_found", .. }) => Ok(see_other("/account?done=recovery_cancelled")),
            Err(error) => Err(error.into()),
        },
        "email_recovery" => {
            let enabled = form.enabled.as_deref() == Some("true");
            match recovery::set_email_recovery(&state, &client, &session, enabled)
                .await
                .map_err(ApiError::from)
            {
                Ok(_) if enabled => Ok(see_other("/account?done=email_recovery_on")),
                Ok(_) => Ok(see_other("/account?done=email_recovery_off")),
                // The change needs a recent sign-in; the button is pressed again afterwards.
                Err(error) if error.code == "reauth_required" => Err(reauth_redirect("/account")),
                Err(error) => Err(error.into()),
            }
        }
        _ => Err(PageError::bad_request("Unknown action.")),
    }
}

/// The activity list in words.
pub fn describe_event(kind: &str) -> &'static str {
    match kind {
        "signup" => "Account created",
        "login_succeeded" => "Signed in",
        "login_failed" => "Failed sign-in attempt",
        "mfa_succeeded" => "Second step passed",
        "mfa_failed" => "Wrong second-step code",
        "totp_enabled" => "Authenticator app set up",
        "backup_codes_generated" => "New backup codes created",
        "backup_code_used" => "Backup code used",
        "backup_codes_low" => "Backup codes running low",
        "2fa_disabled" => "Two-step verification turned off",
        "webauthn_added" => "Security key added",
        "webauthn_removed" => "Security key removed",
        "reauth" => "Confirmed it was you",
        "password_changed" => "Password changed",
        "session_revoked" => "A device was signed out",
        "recovery_requested" => "Account recovery requested",
        "recovery_confirmed" => "Account recovery started",
        "recovery_cancelled" => "Account recovery cancelled",
        "recovery_completed" => "Account recovered",
        "password_reset_requested" => "Password reset requested",
        "password_reset" => "Password reset",
        "2fa_reset" => "Two-step verification reset by an administrator",
        "2fa_reset_requested" => "Administrator reset requested",
        "lockout" => "Second-step sign-in locked",
        "email_recovery_changed" => "Recovery by email changed",
        _ => "Security event",
    }
}

#[derive(Template)]
#[template(path = "pages/reauth.html")]
pub struct ReauthPage {
    layout: Layout,
    csrf: String,
    next: String,
    /// `password`, `totp` or `backup_code`.
    method: &'static str,
    two_factor_enabled: bool,
    error: Option<String>,
}

fn reauth_method(text: Option<&str>) -> &'static str {
    match text {
        Some("totp") => "totp",
        Some("backup_code") => "backup_code",
        _ => "password",
    }
}

async fn reauth_page_for(
    state: &AppState,
    session: &crate::accounts::sessions::CurrentSession,
    next: String,
    method: &'static str,
    error: Option<String>,
) -> Result<ReauthPage, PageError> {
    let status = enrollment::status(state, session).await.map_err(ApiError::from)?;
    Ok(ReauthPage {
        layout: Layout::signed_in(state, session, "Confirm it's you"),
        csrf: state.keys.csrf_token(&session.token),
        next,
        method: if status.enabled { method } else { "password" },
        two_factor_enabled: status.enabled,
        error,
    })
}

pub async fn reauth_page(
    State(state): State<AppState>,
    FullPageSession(session): FullPageSession,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    let next = next_or_account(query.next.as_deref());
    let method = reauth_method(query.method.as_deref());
    render(&reauth_page_for(&state, &session, next, method, None).await?)
}

#[derive(Deserialize)]
pub struct ReauthForm {
    next: Option<String>,
    method: Option<String>,
    password: Option<String>,
    code: Option<String>,
}

pub async fn reauth(
    State(state): State<AppState>,
    client: ClientInfo,
    FullPageSession(session): FullPageSession,
    SessionForm(form): SessionForm<ReauthForm>,
) -> Result<Response, PageError> {
    let next = next_or_account(form.next.as_deref());
    let method = reauth_method(form.method.as_deref());
    let proof = match method {
        "password" => Reauth::Password(form.password.unwrap_or_default()),
        method => Reauth::SecondFactor(
            SecondFactor::parse(method, form.code.as_deref().unwrap_or_default())
                .ok_or_else(|| PageError::bad_request("Unknown method."))?,
        ),
    };
    match accounts::reauthenticate(&state, &client, &session, proof)
        .await
        .map_err(ApiError::from)
    {
        Ok(_) => Ok(see_other(&next)),
        Err(error) if error.status.is_client_error() => {
            let message = if error.code == "invalid_credentials" {
                "That password is not right.".to_string()
            } else {
                field_message(&error)
            };
            let page = reauth_page_for(&state, &session, next, method, Some(message)).await?;
            render_status(error.status, &page)
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Template)]
#[template(path = "pages/password.html")]
pub struct PasswordPage {
    layout: Layout,
    csrf: String,
    error: Option<String>,
}

pub async fn password_page(
    State(state): State<AppState>,
    FullPageSession(session): FullPageSession,
) -> Result<Response, PageError> {
    if !session.is_sudo(state.clock.unix()) {
        return Err(reauth_redirect("/account/password"));
    }
    render(&PasswordPage {
        layout: Layout::signed_in(&state, &session, "Change password"),
        csrf: state.keys.csrf_token(&session.token),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct NewPasswordForm {
    #[serde(default)]
    new_password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    client: ClientInfo,
    FullPageSession(session): FullPageSession,
    SessionForm(form): SessionForm<NewPasswordForm>,
) -> Result<Response, PageError> {
    match accounts::change_password(&state, &client, &session, &form.new_password)
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => Ok(see_other("/account?done=password_changed")),
        Err(error) if error.code == "reauth_required" => Err(reauth_redirect("/account/password")),
        Err(error) if error.status.is_client_error() => render_status(
            error.status,
            &PasswordPage {
                layout: Layout::signed_in(&state, &session, "Change password"),
                csrf: state.keys.csrf_token(&session.token),
                error: Some(field_message(&error)),
            },
        ),
        Err(error) => Err(error.into()),
    }
}

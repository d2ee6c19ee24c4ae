//! Getting back in: "Lost your authenticator?" (email recovery with a waiting period, then a
//! completion that leads straight into enrolling a new factor), its cancel link, and the password
//! reset. Signed-out pages, so their forms use the double-submit token.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::clock::rfc3339;
use crate::http::error::ApiError;
use crate::http::web::auth::{public_page, PageQuery};
use crate::http::web::forms::{PublicCsrf, PublicForm};
use crate::http::web::page::{field_message, readable_time, see_other, Layout, PageError};
use crate::http::web::session::{add_cookie, session_cookie};
use crate::recovery::{self, password, RecoveryProof, TokenStatus};
use crate::twofactor::SecondFactor;

/// "72 hours", "7 days", "less than a minute".
fn describe_wait(seconds: i64) -> String {
    match seconds {
        ..=59 => "less than a minute".into(),
        60..=7199 => format!("{} minutes", seconds / 60),
        _ if seconds % 86400 == 0 && seconds >= 2 * 86400 => format!("{} days", seconds / 86400),
        _ => format!("{} hours", (seconds + 1800) / 3600),
    }
}

/// A link that no longer works is a page of its own, with the way forward.
fn expired_link(message: &str) -> PageError {
    PageError::Show {
        status: StatusCode::BAD_REQUEST,
        title: "This link has expired",
        message: message.to_string(),
    }
}

#[derive(Template)]
#[template(path = "pages/recover.html")]
pub struct RecoverPage {
    layout: Layout,
    csrf: String,
    email: String,
    sent: bool,
    error: Option<String>,
}

pub async fn recover_page(State(state): State<AppState>, csrf: PublicCsrf) -> Result<Response, PageError> {
    let page = RecoverPage {
        layout: Layout::public(&state, "Lost your authenticator?"),
        csrf: csrf.0.clone(),
        email: String::new(),
        sent: false,
        error: None,
    };
    public_page(&state, &csrf, StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    email: String,
}

pub async fn request_recovery(
    State(state): State<AppState>,
    client: ClientInfo,
    csrf: PublicCsrf,
    PublicForm(form): PublicForm<EmailForm>,
) -> Result<Response, PageError> {
    let mut page = RecoverPage {
        layout: Layout::public(&state, "Lost your authenticator?"),
        csrf: csrf.0.clone(),
        email: form.email.trim().to_string(),
        sent: true,
        error: None,
    };
    // The same answer for every address: whether an account exists is never shown.
    match recovery::request_email_recovery(&state, &client, &form.email)
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => public_page(&state, &csrf, StatusCode::OK, &page),
        Err(error) if error.status.is_client_error() => {
            page.sent = false;
            page.error = Some(field_message(&error));
            public_page(&state, &csrf, error.status, &page)
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Template)]
#[template(path = "pages/recover_link.html")]
pub struct RecoverLinkPage {
    layout: Layout,
    csrf: String,
    action: String,
    /// `confirm`, `pending` or `ready`.
    stage: &'static str,
    wait: String,
    wait_lost_password: String,
    completes_at: String,
    lost_password: bool,
    error: Option<String>,
}

async fn link_page(
    state: &AppState,
    csrf: &PublicCsrf,
    token: &str,
    error: Option<(StatusCode, String)>,
) -> Result<Response, PageError> {
    let status = recovery::token_status(state, token).await.map_err(ApiError::from);
    let mut page = RecoverLinkPage {
        layout: Layout::public(state, "Recover your account"),
        csrf: csrf.0.clone(),
        action: format!("/recover/{token}"),
        stage: "confirm",
        wait: describe_wait(state.config.recovery_delay.as_secs() as i64),
        wait_lost_password: describe_wait(state.config.recovery_delay_lost_password.as_secs() as i64),
        completes_at: String::new(),
        lost_password: false,
        error: None,
    };
    match status {
        Ok(TokenStatus::AwaitingConfirmation { .. }) => {}
        Ok(TokenStatus::Pending {
            completes_at,
            lost_password,
        }) => {
            page.stage = "pending";
            page.completes_at = readable_time(&rfc3339(completes_at));
            page.lost_password = lost_password;
        }
        Ok(TokenStatus::Ready { lost_password, .. }) => {
            page.stage = "ready";
            page.lost_password = lost_password;
        }
        Err(error) if error.code == "recovery_cancelled" => {
            return Err(PageError::Show {
                status: StatusCode::GONE,
                title: "This recovery was cancelled",
                message: "Nothing about the account changed. If you still need to recover it, start again from \
                          \"Lost your authenticator?\" on the sign-in page."
                    .into(),
            })
        }
        Err(error) if error.status.is_client_error() => {
            return Err(expired_link(
                "This recovery link is not valid any more: it expired (links work for an hour), or it was already \
                 used. Ask for a new one from \"Lost your authenticator?\" on the sign-in page.",
            ))
        }
        Err(error) => return Err(error.into()),
    }
    let status = match error {
        Some((status, message)) => {
            page.error = Some(message);
            status
        }
        None => StatusCode::OK,
    };
    public_page(state, csrf, status, &page)
}

pub async fn recover_link_page(
    State(state): State<AppState>,
    csrf: PublicCsrf,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    link_page(&state, &csrf, &token, None).await
}

#[derive(Deserialize)]
pub struct RecoverLinkForm {
    #[serde(default)]
    action: String,
    lost_password: Option<String>,
    password: Option<String>,
    new_password: Option<String>,
}

pub async fn recover_link(
    State(state): State<AppState>,
    client: ClientInfo,
    csrf: PublicCsrf,
    Path(token): Path<String>,
    PublicForm(form): PublicForm<RecoverLinkForm>,
) -> Result<Response, PageError> {
    let here = format!("/recover/{token}");
    if form.action == "confirm" {
        return match recovery::confirm(&state, &client, &token, form.lost_password.is_some())
            .await
            .map_err(ApiError::from)
        {
            // Started now, or already running: either way the link's page says where it stands.
            Ok(_) => Ok(see_other(&here)),
            Err(error) if error.code == "recovery_pending" => Ok(see_other(&here)),
            Err(error) if error.status.is_client_error() => link_page(&state, &csrf, &token, None).await,
            Err(error) => Err(error.into()),
        };
    }
    let proof = match (form.new_password, form.password) {
        (Some(new_password), _) => RecoveryProof::NewPassword(new_password),
        (None, password) => RecoveryProof::CurrentPassword(password.unwrap_or_default()),
    };
    match recovery::complete(&state, &client, &token, proof)
        .await
        .map_err(ApiError::from)
    {
        // A recovered session may only enroll a new factor: straight to it.
        Ok(issued) => {
            let mut response = see_other("/account/2fa/setup");
            add_cookie(&mut response, session_cookie(&state.config, &issued.token));
            Ok(response)
        }
        Err(error) if error.code == "recovery_pending" => Ok(see_other(&here)),
        Err(error)
            if matches!(
                error.code,
                "invalid_credentials" | "weak_password" | "rate_limited" | "invalid_request"
            ) =>
        {
            let message = if error.code == "invalid_credentials" {
                "That password is not right.".to_string()
            } else {
                field_message(&error)
            };
            link_page(&state, &csrf, &token, Some((error.status, message))).await
        }
        Err(error) if error.status.is_client_error() => link_page(&state, &csrf, &token, None).await,
        Err(error) => Err(error.into()),
    }
}

#[derive(Template)]
#[template(path = "pages/recover_cancel.html")]
pub struct CancelPage {
    layout: Layout,
    csrf: String,
    action: String,
    cancelled: bool,
}

pub async fn cancel_page(
    State(state): State<AppState>,
    csrf: PublicCsrf,
    Path(cancel_token): Path<String>,
) -> Result<Response, PageError> {
    // A GET changes nothing (mail scanners open links); the button below cancels.
    let page = CancelPage {
        layout: Layout::public(&state, "Cancel account recovery"),
        csrf: csrf.0.clone(),
        action: format!("/recover/cancel/{cancel_token}"),
        cancelled: false,
    };
    public_page(&state, &csrf, StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn cancel(
    State(state): State<AppState>,
    client: ClientInfo,
    csrf: PublicCsrf,
    Path(cancel_token): Path<String>,
    PublicForm(_): PublicForm<Empty>,
) -> Result<Response, PageError> {
    match recovery::cancel_by_token(&state, &client, &cancel_token)
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => {
            let page = CancelPage {
                layout: Layout::public(&state, "Recovery cancelled"),
                csrf: csrf.0.clone(),
                action: String::new(),
                cancelled: true,
            };
            public_page(&state, &csrf, StatusCode::OK, &page)
        }
        Err(error) if error.status.is_client_error() => Err(expired_link(
            "This cancel link does not work any more: the recovery was already cancelled, completed or expired. \
             Sign in to check your account's security.",
        )),
        Err(error) => Err(error.into()),
    }
}

#[derive(Template)]
#[template(path = "pages/forgot_password.html")]
pub struct ForgotPage {
    layout: Layout,
    csrf: String,
    email: String,
    sent: bool,
    error: Option<String>,
}

pub async fn forgot_page(State(state): State<AppState>, csrf: PublicCsrf) -> Result<Response, PageError> {
    let page = ForgotPage {
        layout: Layout::public(&state, "Forgot your password?"),
        csrf: csrf.0.clone(),
        email: String::new(),
        sent: false,
        error: None,
    };
    public_page(&state, &csrf, StatusCode::OK, &page)
}

pub async fn forgot(
    State(state): State<AppState>,
    client: ClientInfo,
    csrf: PublicCsrf,
    PublicForm(form): PublicForm<EmailForm>,
) -> Result<Response, PageError> {
    let mut page = ForgotPage {
        layout: Layout::public(&state, "Forgot your password?"),
        csrf: csrf.0.clone(),
        email: form.email.trim().to_string(),
        sent: true,
        error: None,
    };
    match password::forgot(&state, &client, &form.email)
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => public_page(&state, &csrf, StatusCode::OK, &page),
        Err(error) if error.status.is_client_error() => {
            page.sent = false;
            page.error = Some(field_message(&error));
            public_page(&state, &csrf, error.status, &page)
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Template)]
#[template(path = "pages/reset_password.html")]
pub struct ResetPage {
    layout: Layout,
    csrf: String,
    action: String,
    needs_code: bool,
    /// `totp` or `backup_code`.
    method: &'static str,
    password_error: Option<String>,
    code_error: Option<String>,
}

fn method_of(text: Option<&str>) -> &'static str {
    if text == Some("backup_code") {
        "backup_code"
    } else {
        "totp"
    }
}

async fn reset_page_for(
    state: &AppState,
    csrf: &PublicCsrf,
    token: &str,
    method: &'static str,
) -> Result<ResetPage, PageError> {
    let needs_code = match password::link_needs_second_factor(state, token)
        .await
        .map_err(ApiError::from)
    {
        Ok(needs_code) => needs_code,
        Err(error) if error.status.is_client_error() => {
            return Err(expired_link(
                "This password reset link is not valid any more: it expired (links work for an hour), or it was \
                 already used. Ask for a new one.",
            ))
        }
        Err(error) => return Err(error.into()),
    };
    Ok(ResetPage {
        layout: Layout::public(state, "Choose a new password"),
        csrf: csrf.0.clone(),
        action: format!("/reset-password/{token}"),
        needs_code,
        method,
        password_error: None,
        code_error: None,
    })
}

pub async fn reset_page(
    State(state): State<AppState>,
    csrf: PublicCsrf,
    Path(token): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    let page = reset_page_for(&state, &csrf, &token, method_of(query.method.as_deref())).await?;
    public_page(&state, &csrf, StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    new_password: String,
    method: Option<String>,
    code: Option<String>,
}

pub async fn reset(
    State(state): State<AppState>,
    client: ClientInfo,
    csrf: PublicCsrf,
    Path(token): Path<String>,
    PublicForm(form): PublicForm<ResetForm>,
) -> Result<Response, PageError> {
    let method = method_of(form.method.as_deref());
    let factor = form
        .code
        .as_deref()
        .filter(|code| !code.trim().is_empty())
        .and_then(|code| SecondFactor::parse(method, code));
    match password::reset(&state, &client, &token, &form.new_password, factor.as_ref())
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => Ok(see_other("/login?done=password_reset")),
        Err(error) if error.code == "invalid_token" => Err(expired_link(
            "This password reset link is not valid any more: it expired (links work for an hour), or it was already \
             used. Ask for a new one.",
        )),
        Err(error) if error.status.is_client_error() => {
            let mut page = reset_page_for(&state, &csrf, &token, method).await?;
            if error.code == "weak_password" {
                page.password_error = Some(error.message.clone());
            } else {
                page.code_error = Some(field_message(&error));
            }
            public_page(&state, &csrf, error.status, &page)
        }
        Err(error) => Err(error.into()),
    }
}

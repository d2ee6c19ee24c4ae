//! Turning two-step verification on (also the forced enrollment of unfinished sessions), new
//! backup codes, and turning it off.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::accounts::sessions::{CurrentSession, SessionState};
use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::http::error::ApiError;
use crate::http::web::auth::PageQuery;
use crate::http::web::forms::SessionForm;
use crate::http::web::page::{field_message, render, render_status, see_other, Layout, PageError};
use crate::http::web::session::{reauth_redirect, FullPageSession, PageSession};
use crate::twofactor::enrollment::{self, TotpSetup};
use crate::twofactor::{backup_codes, SecondFactor};

const SETUP_PATH: &str = "/account/2fa/setup";

#[derive(Template)]
#[template(path = "pages/setup.html")]
pub struct SetupPage {
    layout: Layout,
    csrf: String,
    setup: TotpSetup,
    /// Why this session must enroll before it can do anything else.
    forced: Option<&'static str>,
    replacing: bool,
    account: String,
    error: Option<String>,
}

fn forced_reason(session: &CurrentSession) -> Option<&'static str> {
    match session.state {
        SessionState::Full => None,
        SessionState::MfaEnrollmentRequired => {
            Some("This account must use two-step verification. Set it up now to continue; it takes a minute.")
        }
        SessionState::Recovered => Some(
            "You're back in. Your old authenticator and backup codes were removed, so set up a new authenticator \
             now to finish recovering your account.",
        ),
    }
}

async fn setup_page_for(
    state: &AppState,
    session: &CurrentSession,
    error: Option<String>,
) -> Result<SetupPage, ApiError> {
    // The same key again while one is pending: the user may already have scanned it.
    let setup = match enrollment::pending_totp_setup(state, session).await? {
        Some(setup) => setup,
        None => enrollment::start_totp_setup(state, session).await?,
    };
    let status = enrollment::status(state, session).await?;
    Ok(SetupPage {
        layout: Layout::signed_in(state, session, "Two-step verification"),
        csrf: state.keys.csrf_token(&session.token),
        setup,
        forced: forced_reason(session),
        replacing: status.totp,
        account: session.email.clone(),
        error,
    })
}

async fn show_setup(
    state: &AppState,
    session: &CurrentSession,
    error: Option<(StatusCode, String)>,
) -> Result<Response, PageError> {
    let (status, message) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    match setup_page_for(state, session, message).await {
        Ok(page) => render_status(status, &page),
        Err(error) if error.code == "reauth_required" => Err(reauth_redirect(SETUP_PATH)),
        Err(error) => Err(error.into()),
    }
}

pub async fn setup_page(
    State(state): State<AppState>,
    PageSession(session): PageSession,
) -> Result<Response, PageError> {
    show_setup(&state, &session, None).await
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
    method: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/backup_codes_shown.html")]
pub struct CodesShownPage {
    layout: Layout,
    codes: Vec<String>,
    /// The codes as a text file, for the download button.
    codes_text: String,
    just_enabled: bool,
}

pub fn codes_page(
    state: &AppState,
    session: &CurrentSession,
    codes: Vec<String>,
    just_enabled: bool,
) -> CodesShownPage {
    let mut text = format!(
        "{} backup codes for {}\nEach code works once. Keep them somewhere safe.\n\n",
        state.config.product_name, session.email
    );
    for code in &codes {
        text.push_str(code);
        text.push('\n');
    }
    CodesShownPage {
        layout: Layout::signed_in(state, session, "Your backup codes"),
        codes,
        codes_text: text,
        just_enabled,
    }
}

pub async fn confirm_setup(
    State(state): State<AppState>,
    client: ClientInfo,
    PageSession(session): PageSession,
    SessionForm(form): SessionForm<CodeForm>,
) -> Result<Response, PageError> {
    match enrollment::confirm_totp(&state, &client, &session, &form.code)
        .await
        .map_err(ApiError::from)
    {
        // The codes are shown in this answer and nowhere else: they are never stored in clear,
        // so there is no page to redirect to.
        Ok(confirmed) => match confirmed.backup_codes {
            Some(codes) => render(&codes_page(&state, &session, codes, true)),
            None => Ok(see_other("/account?done=authenticator_replaced")),
        },
        Err(error) if error.code == "no_pending_setup" => {
            show_setup(
                &state,
                &session,
                Some((
                    error.status,
                    "That setup expired, so here is a new key. Scan it again and enter the new code.".into(),
                )),
            )
            .await
        }
        Err(error) if error.status.is_client_error() => {
            let message = if error.code == "invalid_code" {
                "That code is not right. Check that your phone's clock is set automatically, then enter the current code."
                    .to_string()
            } else {
                field_message(&error)
            };
            show_setup(&state, &session, Some((error.status, message))).await
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Template)]
#[template(path = "pages/backup_codes.html")]
pub struct BackupCodesPage {
    layout: Layout,
    csrf: String,
    enabled: bool,
    remaining: i64,
    low: bool,
}

pub async fn backup_codes_page(
    State(state): State<AppState>,
    FullPageSession(session): FullPageSession,
) -> Result<Response, PageError> {
    let status = enrollment::status(&state, &session).await.map_err(ApiError::from)?;
    if status.enabled && !session.is_sudo(state.clock.unix()) {
        return Err(reauth_redirect("/account/2fa/backup-codes"));
    }
    render(&BackupCodesPage {
        layout: Layout::signed_in(&state, &session, "Backup codes"),
        csrf: state.keys.csrf_token(&session.token),
        enabled: status.enabled,
        remaining: status.backup_codes_remaining,
        low: backup_codes::is_low(status.backup_codes_remaining),
    })
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn regenerate(
    State(state): State<AppState>,
    client: ClientInfo,
    FullPageSession(session): FullPageSession,
    SessionForm(_): SessionForm<Empty>,
) -> Result<Response, PageError> {
    match enrollment::regenerate_backup_codes(&state, &client, &session)
        .await
        .map_err(ApiError::from)
    {
        Ok(codes) => render(&codes_page(&state, &session, codes, false)),
        Err(error) if error.code == "reauth_required" => Err(reauth_redirect("/account/2fa/backup-codes")),
        Err(error) => Err(error.into()),
    }
}

#[derive(Template)]
#[template(path = "pages/disable.html")]
pub struct DisablePage {
    layout: Layout,
    csrf: String,
    enabled: bool,
    required: bool,
    /// `totp` or `backup_code`.
    method: &'static str,
    error: Option<String>,
}

fn method_of(text: Option<&str>) -> &'static str {
    if text == Some("backup_code") {
        "backup_code"
    } else {
        "totp"
    }
}

async fn disable_page_for(
    state: &AppState,
    session: &CurrentSession,
    method: &'static str,
    error: Option<String>,
) -> Result<DisablePage, PageError> {
    let status = enrollment::status(state, session).await.map_err(ApiError::from)?;
    Ok(DisablePage {
        layout: Layout::signed_in(state, session, "Turn off two-step verification"),
        csrf: state.keys.csrf_token(&session.token),
        enabled: status.enabled,
        required: status.required,
        method,
        error,
    })
}

pub async fn disable_page(
    State(state): State<AppState>,
    FullPageSession(session): FullPageSession,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    render(&disable_page_for(&state, &session, method_of(query.method.as_deref()), None).await?)
}

pub async fn disable(
    State(state): State<AppState>,
    client: ClientInfo,
    FullPageSession(session): FullPageSession,
    SessionForm(form): SessionForm<CodeForm>,
) -> Result<Response, PageError> {
    let method = method_of(form.method.as_deref());
    let factor = SecondFactor::parse(method, &form.code).ok_or_else(|| PageError::bad_request("Unknown method."))?;
    match enrollment::disable(&state, &client, &session, &factor)
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => Ok(see_other("/account?done=two_factor_disabled")),
        Err(error) if error.status.is_client_error() => {
            let page = disable_page_for(&state, &session, method, Some(field_message(&error))).await?;
            render_status(error.status, &page)
        }
        Err(error) => Err(error.into()),
    }
}

//! Signing up, signing in (password, then the second step), and signing out.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::accounts::{self, LoginOutcome};
use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::http::error::ApiError;
use crate::http::extract::cookie;
use crate::http::web::forms::{next_or_account, PublicCsrf, PublicForm, SessionForm};
use crate::http::web::page::{field_message, notice, render_status, see_other, Layout, PageError};
use crate::http::web::session::{
    self, add_cookie, challenge_cookie, clear_challenge_cookie, clear_session_cookie, session_cookie, PageSession,
    CHALLENGE_COOKIE,
};
use crate::twofactor::{challenge, webauthn, SecondFactor};

/// `GET /`: the account for a signed-in browser, else the sign-in page.
pub async fn home(State(state): State<AppState>, parts: Parts) -> Result<Response, PageError> {
    Ok(match session::from_cookie(&state, &parts).await? {
        Some(_) => see_other("/account"),
        None => see_other("/login"),
    })
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    pub next: Option<String>,
    pub done: Option<String>,
    pub method: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/signup.html")]
pub struct SignupPage {
    layout: Layout,
    csrf: String,
    signup_open: bool,
    email: String,
    email_error: Option<String>,
    password_error: Option<String>,
    form_error: Option<String>,
}

impl SignupPage {
    fn new(state: &AppState, csrf: &PublicCsrf) -> SignupPage {
        SignupPage {
            layout: Layout::public(state, "Create account"),
            csrf: csrf.0.clone(),
            signup_open: state.config.signup_open,
            email: String::new(),
            email_error: None,
            password_error: None,
            form_error: None,
        }
    }
}

/// Renders a signed-out page with its double-submit cookie.
pub fn public_page(
    state: &AppState,
    csrf: &PublicCsrf,
    status: StatusCode,
    page: &impl Template,
) -> Result<Response, PageError> {
    let mut response = render_status(status, page)?;
    add_cookie(&mut response, csrf.cookie(state));
    Ok(response)
}

pub async fn signup_page(State(state): State<AppState>, csrf: PublicCsrf) -> Result<Response, PageError> {
    public_page(&state, &csrf, StatusCode::OK, &SignupPage::new(&state, &csrf))
}

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn signup(
    State(state): State<AppState>,
    client: ClientInfo,
    csrf: PublicCsrf,
    PublicForm(form): PublicForm<Credentials>,
) -> Result<Response, PageError> {
    match accounts::signup(&state, &client, &form.email, &form.password)
        .await
        .map_err(ApiError::from)
    {
        Ok(_) => {}
        Err(error) if error.status.is_client_error() => {
            let mut page = SignupPage::new(&state, &csrf);
            page.email = form.email.trim().to_string();
            match error.code {
                "invalid_email" | "email_taken" => page.email_error = Some(error.message.clone()),
                "weak_password" => page.password_error = Some(error.message.clone()),
                _ => page.form_error = Some(field_message(&error)),
            }
            return public_page(&state, &csrf, error.status, &page);
        }
        Err(error) => return Err(error.into()),
    }
    // A new account signs straight in, through the same login as everyone else.
    let outcome = accounts::login(&state, &client, &form.email, &form.password)
        .await
        .map_err(ApiError::from)?;
    signed_in(&state, outcome, "/account?done=welcome")
}

#[derive(Template)]
#[template(path = "pages/login.html")]
pub struct LoginPage {
    layout: Layout,
    csrf: String,
    email: String,
    next: String,
    notice: Option<&'static str>,
    error: Option<String>,
    signup_open: bool,
}

pub async fn login_page(
    State(state): State<AppState>,
    csrf: PublicCsrf,
    parts: Parts,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    let next = next_or_account(query.next.as_deref());
    if session::from_cookie(&state, &parts).await?.is_some() {
        return Ok(see_other(&next));
    }
    let page = LoginPage {
        layout: Layout::public(&state, "Sign in"),
        csrf: csrf.0.clone(),
        email: String::new(),
        next,
        notice: notice(query.done.as_deref()),
        error: None,
        signup_open: state.config.signup_open,
    };
    public_page(&state, &csrf, StatusCode::OK, &page)
}

pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    csrf: PublicCsrf,
    PublicForm(form): PublicForm<Credentials>,
) -> Result<Response, PageError> {
    let next = next_or_account(form.next.as_deref());
    match accounts::login(&state, &client, &form.email, &form.password)
        .await
        .map_err(ApiError::from)
    {
        Ok(outcome) => signed_in(&state, outcome, &next),
        Err(error) if error.status.is_client_error() => {
            let page = LoginPage {
                layout: Layout::public(&state, "Sign in"),
                csrf: csrf.0.clone(),
                email: form.email.trim().to_string(),
                next,
                notice: None,
                error: Some(field_message(&error)),
                signup_open: state.config.signup_open,
            };
            public_page(&state, &csrf, error.status, &page)
        }
        Err(error) => Err(error.into()),
    }
}

/// After a correct password: a session cookie, or the challenge cookie and the second step.
fn signed_in(state: &AppState, outcome: LoginOutcome, next: &str) -> Result<Response, PageError> {
    Ok(match outcome {
        LoginOutcome::Authenticated(issued) => {
            let target = if issued.state.as_str() == "full" {
                next
            } else {
                "/account/2fa/setup"
            };
            let mut response = see_other(target);
            add_cookie(&mut response, session_cookie(&state.config, &issued.token));
            response
        }
        LoginOutcome::SecondFactorRequired(challenge) => {
            let lifetime = (challenge.expires_at - state.clock.unix()).max(1);
            let target = if next == "/account" {
                "/login/2fa".to_string()
            } else {
                format!("/login/2fa?next={}", crate::http::web::forms::encode_next(next))
            };
            let mut response = see_other(&target);
            add_cookie(
                &mut response,
                challenge_cookie(&state.config, &challenge.token, lifetime),
            );
            response
        }
    })
}

#[derive(Template)]
#[template(path = "pages/login_2fa.html")]
pub struct SecondStepPage {
    layout: Layout,
    csrf: String,
    next: String,
    /// `totp`, `backup_code` or `webauthn`.
    method: &'static str,
    /// Handed to the security-key script, which starts the ceremony with it.
    challenge_token: String,
    error: Option<String>,
    locked: bool,
}

fn method_of(text: Option<&str>) -> &'static str {
    match text {
        Some("backup_code") => "backup_code",
        Some("webauthn") => "webauthn",
        _ => "totp",
    }
}

pub async fn second_step_page(
    State(state): State<AppState>,
    csrf: PublicCsrf,
    parts: Parts,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    let Some(token) = cookie(&parts, CHALLENGE_COOKIE).filter(|token| !token.is_empty()) else {
        return Ok(see_other("/login"));
    };
    let method = method_of(query.method.as_deref());
    let page = SecondStepPage {
        layout: Layout::public(&state, "Two-step verification"),
        csrf: csrf.0.clone(),
        next: next_or_account(query.next.as_deref()),
        method,
        challenge_token: if method == "webauthn" { token } else { String::new() },
        error: None,
        locked: false,
    };
    public_page(&state, &csrf, StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct CodeForm {
    method: Option<String>,
    #[serde(default)]
    code: String,
    /// A security key's signed answer (JSON), from the WebAuthn script.
    credential: Option<String>,
    next: Option<String>,
}

pub async fn second_step(
    State(state): State<AppState>,
    client: ClientInfo,
    csrf: PublicCsrf,
    parts: Parts,
    PublicForm(form): PublicForm<CodeForm>,
) -> Result<Response, PageError> {
    let next = next_or_account(form.next.as_deref());
    let Some(token) = cookie(&parts, CHALLENGE_COOKIE).filter(|token| !token.is_empty()) else {
        return Ok(see_other("/login?done=sign_in_expired"));
    };
    let method = method_of(form.method.as_deref());
    let outcome = if method == "webauthn" {
        let credential = serde_json::from_str::<serde_json::Value>(form.credential.as_deref().unwrap_or_default())
            .unwrap_or(serde_json::Value::Null);
        webauthn::login::finish(&state, &client, &token, &credential).await
    } else {
        let factor =
            SecondFactor::parse(method, &form.code).ok_or_else(|| PageError::bad_request("Unknown method."))?;
        challenge::complete(&state, &client, &token, &factor).await
    };
    match outcome.map_err(ApiError::from) {
        Ok(completed) => {
            let mut response = see_other(&next);
            add_cookie(&mut response, clear_challenge_cookie(&state.config));
            add_cookie(&mut response, session_cookie(&state.config, &completed.session.token));
            Ok(response)
        }
        Err(error) if error.code == "challenge_expired" => {
            let mut response = see_other("/login?done=sign_in_expired");
            add_cookie(&mut response, clear_challenge_cookie(&state.config));
            Ok(response)
        }
        Err(error) if error.status.is_client_error() => {
            let page = SecondStepPage {
                layout: Layout::public(&state, "Two-step verification"),
                csrf: csrf.0.clone(),
                next,
                method,
                challenge_token: if method == "webauthn" {
                    token.clone()
                } else {
                    String::new()
                },
                locked: error.extra.contains_key("locked"),
                error: Some(field_message(&error)),
            };
            public_page(&state, &csrf, error.status, &page)
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Template)]
#[template(path = "pages/logout.html")]
pub struct LogoutPage {
    layout: Layout,
}

/// `GET /logout` asks first: following a link (or a prefetch) must not sign anyone out.
pub async fn logout_page(State(state): State<AppState>, parts: Parts) -> Result<Response, PageError> {
    let Some(session) = session::from_cookie(&state, &parts).await? else {
        return Ok(see_other("/login"));
    };
    render_status(
        StatusCode::OK,
        &LogoutPage {
            layout: Layout::signed_in(&state, &session, "Sign out"),
        },
    )
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn logout(
    State(state): State<AppState>,
    PageSession(session): PageSession,
    SessionForm(_): SessionForm<Empty>,
) -> Result<Response, PageError> {
    accounts::logout(&state, &session).await.map_err(ApiError::from)?;
    let mut response = see_other("/login?done=signed_out");
    add_cookie(&mut response, clear_session_cookie(&state.config));
    Ok(response)
}

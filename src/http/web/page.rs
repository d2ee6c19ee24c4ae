//! What every page shares: the layout (brand, navigation, assets), rendering, redirects, and
//! `PageError`, the page-side twin of `ApiError`. Service errors go through the one mapping in
//! `http::error` first, so a page and the API always agree on what went wrong.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use crate::accounts::sessions::CurrentSession;
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::web::assets;

/// The frame around every page.
pub struct Layout {
    pub title: String,
    pub product_name: String,
    pub asset_version: &'static str,
    pub nav: Option<Nav>,
}

/// The signed-in part of the header: who is signed in, and the sign-out form.
pub struct Nav {
    pub email: String,
    pub is_admin: bool,
    pub is_full: bool,
    pub csrf: String,
}

impl Layout {
    pub fn public(state: &AppState, title: &str) -> Layout {
        Layout {
            title: title.to_string(),
            product_name: state.config.product_name.clone(),
            asset_version: assets::version(),
            nav: None,
        }
    }

    pub fn signed_in(state: &AppState, session: &CurrentSession, title: &str) -> Layout {
        Layout {
            nav: Some(Nav {
                email: session.email.clone(),
                is_admin: session.is_admin() && session.is_full(),
                is_full: session.is_full(),
                csrf: state.keys.csrf_token(&session.token),
            }),
            ..Layout::public(state, title)
        }
    }
}

pub fn render(template: &impl Template) -> Result<Response, PageError> {
    render_status(StatusCode::OK, template)
}

pub fn render_status(status: StatusCode, template: &impl Template) -> Result<Response, PageError> {
    let html = template
        .render()
        .map_err(|error| PageError::from(anyhow::Error::from(error).context("rendering a page")))?;
    Ok((status, Html(html)).into_response())
}

/// `303 See Other`: the browser follows with a GET, so a reload never re-posts a form.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Why a page could not be shown: a redirect (to sign in, to confirm it's you) or an error page.
#[derive(Debug)]
pub enum PageError {
    Redirect(String),
    Show {
        status: StatusCode,
        title: &'static str,
        message: String,
    },
}

impl PageError {
    pub fn redirect(location: impl Into<String>) -> PageError {
        PageError::Redirect(location.into())
    }

    pub fn csrf() -> PageError {
        PageError::Show {
            status: StatusCode::FORBIDDEN,
            title: "This form has expired",
            message: "The form was missing its security token, or the token did not match. Go back, reload the page \
                      and try again."
                .into(),
        }
    }

    pub fn not_found() -> PageError {
        PageError::Show {
            status: StatusCode::NOT_FOUND,
            title: "Page not found",
            message: "There is nothing at this address. Check the link, or start again from your account.".into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> PageError {
        PageError::Show {
            status: StatusCode::FORBIDDEN,
            title: "Not allowed",
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::Show {
            status: StatusCode::BAD_REQUEST,
            title: "That did not work",
            message: message.into(),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> PageError {
        let title = match error.status {
            StatusCode::NOT_FOUND => "Page not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            status if status.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        PageError::Show {
            status: error.status,
            title,
            message: error.message,
        }
    }
}

impl From<anyhow::Error> for PageError {
    fn from(error: anyhow::Error) -> PageError {
        ApiError::internal(error).into()
    }
}

/// The error page to draw; `render_error_pages` turns it into HTML with the layout, which needs
/// the state that `IntoResponse` does not have.
#[derive(Clone)]
struct ErrorPage {
    title: &'static str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Redirect(location) => see_other(&location),
            PageError::Show { status, title, message } => {
                let mut response = status.into_response();
                response.extensions_mut().insert(ErrorPage { title, message });
                response
            }
        }
    }
}

#[derive(Template)]
#[template(path = "pages/error.html")]
struct ErrorTemplate {
    layout: Layout,
    message: String,
}

pub async fn render_error_pages(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let Some(page) = response.extensions().get::<ErrorPage>().cloned() else {
        return response;
    };
    let status = response.status();
    let template = ErrorTemplate {
        layout: Layout::public(&state, page.title),
        message: page.message,
    };
    let mut rendered = match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "rendering the error page");
            (status, page.title).into_response()
        }
    };
    // Keep cookies the handler cleared or set (a dead sign-in is cleared even on an error page).
    for value in response.headers().get_all(header::SET_COOKIE) {
        rendered.headers_mut().append(header::SET_COOKIE, value.clone());
    }
    rendered
}

/// A page for a path nothing answers: HTML for a browser, the API's JSON for everyone else.
pub async fn not_found(State(state): State<AppState>, request: Request) -> Response {
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if request.uri().path().starts_with("/api/") || !wants_html {
        return ApiError::not_found().into_response();
    }
    let template = ErrorTemplate {
        layout: Layout::public(&state, "Page not found"),
        message: "There is nothing at this address. Check the link, or start again from your account.".into(),
    };
    match template.render() {
        Ok(html) => (StatusCode::NOT_FOUND, Html(html)).into_response(),
        Err(_) => ApiError::not_found().into_response(),
    }
}

/// "Wait 4 seconds" / "Wait 15 minutes": throttling answers, in words.
pub fn wait_text(seconds: i64) -> String {
    match seconds {
        ..=1 => "Wait a second, then try again.".into(),
        2..=90 => format!("Wait {seconds} seconds, then try again."),
        _ => {
            let minutes = (seconds + 59) / 60;
            format!("Wait {minutes} minutes, then try again.")
        }
    }
}

/// The message to show beside a field for a refused attempt: the API's words, except that waits
/// are spelled out in minutes when they are long.
pub fn field_message(error: &ApiError) -> String {
    match (error.code, error.retry_after) {
        ("rate_limited", Some(seconds)) if !error.extra.contains_key("locked") => {
            format!("Too many attempts. {}", wait_text(seconds))
        }
        _ => error.message.clone(),
    }
}

/// Times as people read them (the audit log stores RFC 3339).
pub fn readable_time(rfc3339: &str) -> String {
    rfc3339.replacen('T', " ", 1).replace('Z', " UTC")
}

/// The confirmation shown after a redirect (`?done=…`). Only these fixed texts can appear, so a
/// crafted link cannot put words on the page.
pub fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "signed_out" => "You are signed out.",
        "sign_in_expired" => "That sign-in took too long or had too many wrong codes. Start again with your password.",
        "welcome" => "Your account is ready. Turn on two-step verification to protect it.",
        "password_changed" => "Your password was changed. Your other sessions were signed out.",
        "two_factor_disabled" => "Two-step verification is off. Your other sessions were signed out.",
        "authenticator_replaced" => "Your new authenticator app is set up. The old one no longer works.",
        "session_signed_out" => "That device was signed out.",
        "recovery_cancelled" => "The account recovery was cancelled. Nothing about your account changed.",
        "email_recovery_on" => "Recovery by email is on.",
        "email_recovery_off" => "Recovery by email is off. Keep your backup codes safe.",
        "password_reset" => "Your password was reset. Sign in with the new one.",
        "security_key_added" => "Your security key was added. You can use it at your next sign-in.",
        "security_key_removed" => "The security key was removed.",
        "two_factor_reset" => {
            "Two-step verification was reset. The user was signed out everywhere and emailed the reason."
        }
        "reset_requested" => "Reset requested. Another administrator must approve it within 24 hours.",
        "reset_approved" => "Approved: the reset took effect, and the user was emailed.",
        _ => return None,
    })
}

//! The browser side of sessions: the session and challenge cookies, and extractors that send a
//! visitor to the right place (sign in, finish enrolling, confirm it's you) instead of an error.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use axum::response::Response;

use crate::accounts::sessions::{self, CurrentSession};
use crate::app::AppState;
use crate::config::Config;
use crate::http::extract::{cookie, SESSION_COOKIE};
use crate::http::web::forms::encode_next;
use crate::http::web::page::PageError;

/// Holds the challenge token between the password step and the second step of a login.
pub const CHALLENGE_COOKIE: &str = "latchkey_challenge";

#[derive(Clone, Copy)]
pub enum SameSite {
    Lax,
    Strict,
}

/// `name=value; HttpOnly; SameSite=…; Path=…` (+ `Secure` unless the public URL is local http).
pub fn cookie_header(
    config: &Config,
    name: &str,
    value: &str,
    same_site: SameSite,
    path: &str,
    max_age: Option<i64>,
) -> Option<HeaderValue> {
    let mut text = format!(
        "{name}={value}; HttpOnly; SameSite={}; Path={path}",
        match same_site {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        }
    );
    if let Some(seconds) = max_age {
        text.push_str(&format!("; Max-Age={seconds}"));
    }
    if config.cookies_secure() {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).ok()
}

pub fn add_cookie(response: &mut Response, value: Option<HeaderValue>) {
    if let Some(value) = value {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

pub fn session_cookie(config: &Config, token: &str) -> Option<HeaderValue> {
    let lifetime = config.session_lifetime.as_secs() as i64;
    cookie_header(config, SESSION_COOKIE, token, SameSite::Lax, "/", Some(lifetime))
}

pub fn clear_session_cookie(config: &Config) -> Option<HeaderValue> {
    cookie_header(config, SESSION_COOKIE, "", SameSite::Lax, "/", Some(0))
}

pub fn challenge_cookie(config: &Config, token: &str, lifetime: i64) -> Option<HeaderValue> {
    cookie_header(
        config,
        CHALLENGE_COOKIE,
        token,
        SameSite::Strict,
        "/login",
        Some(lifetime),
    )
}

pub fn clear_challenge_cookie(config: &Config) -> Option<HeaderValue> {
    cookie_header(config, CHALLENGE_COOKIE, "", SameSite::Strict, "/login", Some(0))
}

/// The session of the browser's cookie, if it is still alive. Pages never read a Bearer header:
/// their CSRF protection is built for cookies.
pub async fn from_cookie(state: &AppState, parts: &Parts) -> Result<Option<CurrentSession>, PageError> {
    match cookie(parts, SESSION_COOKIE) {
        Some(token) => Ok(sessions::authenticate(state, &token).await?),
        None => Ok(None),
    }
}

/// Where to send someone who must sign in first: back here afterwards, for a page they asked for.
fn to_login(parts: &Parts) -> PageError {
    if parts.method == Method::GET {
        let here = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/account");
        PageError::redirect(format!("/login?next={}", encode_next(here)))
    } else {
        PageError::redirect("/login")
    }
}

/// A signed-in browser, whatever the state of its session (enrollment pages, sign out).
pub struct PageSession(pub CurrentSession);

impl<S> FromRequestParts<S> for PageSession
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        match from_cookie(&state, parts).await? {
            Some(session) => Ok(PageSession(session)),
            None => Err(to_login(parts)),
        }
    }
}

/// A session in state `full`. An unfinished one (policy requires 2FA, or a recovery) is sent to
/// the enrollment page: it may do nothing else.
pub struct FullPageSession(pub CurrentSession);

impl<S> FromRequestParts<S> for FullPageSession
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let PageSession(session) = PageSession::from_request_parts(parts, state).await?;
        if !session.is_full() {
            return Err(PageError::redirect("/account/2fa/setup"));
        }
        Ok(FullPageSession(session))
    }
}

/// An administrator's full session in sudo mode; without sudo, a trip through "confirm it's you".
pub struct AdminPageSession(pub CurrentSession);

impl<S> FromRequestParts<S> for AdminPageSession
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let FullPageSession(session) = FullPageSession::from_request_parts(parts, state).await?;
        if !session.is_admin() {
            return Err(PageError::forbidden("Only administrators may open this page."));
        }
        let app = AppState::from_ref(state);
        if !session.is_sudo(app.clock.unix()) {
            return Err(reauth_redirect(
                parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/admin"),
            ));
        }
        Ok(AdminPageSession(session))
    }
}

/// Sends the browser to confirm it's them, then back to `next`.
pub fn reauth_redirect(next: &str) -> PageError {
    PageError::redirect(format!("/account/reauth?next={}", encode_next(next)))
}

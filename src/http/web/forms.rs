//! Forms: CSRF protection and the `next=` return address.
//!
//! Signed-in forms carry `csrf_token(session token)`, a MAC nothing stores. Signed-out forms
//! (sign in, sign up, recovery) have no session to bind to, so they use a double-submit cookie:
//! a random value in an HttpOnly, SameSite=Strict cookie that the form must repeat. Either way a
//! POST whose token is missing or wrong is refused before anything else happens.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::app::AppState;
use crate::crypto::{constant_time_eq, random_token};
use crate::http::extract::{cookie, SESSION_COOKIE};
use crate::http::web::page::PageError;
use crate::http::web::session::{cookie_header, SameSite};

pub const CSRF_COOKIE: &str = "latchkey_csrf";
/// Forms are small; anything bigger is not one of ours.
const FORM_LIMIT: usize = 16 * 1024;

/// The double-submit token of a signed-out page: the browser's cookie value, or a new one.
/// The page sets the cookie again with its answer (`cookie()`), so the two always match.
pub struct PublicCsrf(pub String);

impl<S> FromRequestParts<S> for PublicCsrf
where
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let existing = cookie(parts, CSRF_COOKIE).filter(|value| is_token_shaped(value));
        Ok(PublicCsrf(existing.unwrap_or_else(random_token)))
    }
}

impl PublicCsrf {
    pub fn cookie(&self, state: &AppState) -> Option<HeaderValue> {
        cookie_header(&state.config, CSRF_COOKIE, &self.0, SameSite::Strict, "/", None)
    }
}

fn is_token_shaped(value: &str) -> bool {
    (20..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// Reads a urlencoded body, checks its `csrf` field against `expected`, then parses the fields.
async fn read_form<T: DeserializeOwned, S: Send + Sync>(
    request: Request,
    state: &S,
    expected: Option<String>,
) -> Result<T, PageError> {
    let body = Bytes::from_request(request, state)
        .await
        .map_err(|_| PageError::bad_request("The form could not be read."))?;
    if body.len() > FORM_LIMIT {
        return Err(PageError::bad_request("The form is too large."));
    }
    let sent = serde_urlencoded::from_bytes::<CsrfField>(&body)
        .ok()
        .and_then(|field| field.csrf)
        .unwrap_or_default();
    let matches =
        expected.is_some_and(|expected| !sent.is_empty() && constant_time_eq(sent.as_bytes(), expected.as_bytes()));
    if !matches {
        return Err(PageError::csrf());
    }
    serde_urlencoded::from_bytes(&body)
        .map_err(|_| PageError::bad_request("The form is missing a field. Reload the page and try again."))
}

/// A signed-out form that passed the double-submit check.
pub struct PublicForm<T>(pub T);

impl<S, T> FromRequest<S> for PublicForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let expected = cookie(&parts, CSRF_COOKIE).filter(|value| is_token_shaped(value));
        let form = read_form(Request::from_parts(parts, body), state, expected).await?;
        Ok(PublicForm(form))
    }
}

/// A signed-in form whose token is bound to the session cookie. Handlers also take a session
/// extractor, which runs first and redirects a browser that is not signed in.
pub struct SessionForm<T>(pub T);

impl<S, T> FromRequest<S> for SessionForm<T>
where
    AppState: FromRef<S>,
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let (parts, body) = request.into_parts();
        let expected = cookie(&parts, SESSION_COOKIE).map(|token| app.keys.csrf_token(&token));
        let form = read_form(Request::from_parts(parts, body), state, expected).await?;
        Ok(SessionForm(form))
    }
}

/// A same-site return address, or `None`. Only a path on this site is accepted: `//host` and
/// `/\host` are read by browsers as other sites, and a scheme (`https:`, `javascript:`) never
/// starts with `/`.
pub fn safe_next(next: &str) -> Option<&str> {
    let acceptable = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 512
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace())
        && !next.to_ascii_lowercase().contains("%2f%2f")
        && !next.to_ascii_lowercase().starts_with("/%5c");
    acceptable.then_some(next)
}

/// `next` for a link or a hidden field: a safe path, else the account page.
pub fn next_or_account(next: Option<&str>) -> String {
    next.and_then(safe_next).unwrap_or("/account").to_string()
}

/// Everything but the unreserved characters of RFC 3986, so a value fits in a query or a path segment.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub fn encode_next(path: &str) -> String {
    utf8_percent_encode(path, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_site_paths_are_return_addresses() {
        for good in ["/account", "/account/2fa/setup", "/admin/audit?after=10", "/a/b#c"] {
            assert_eq!(safe_next(good), Some(good), "{good}");
        }
        for bad in [
            "//evil.example",
            "https://evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
            "/%2F%2Fevil.example",
            "/\tevil",
            "/ /evil",
            "/%5Cevil.example",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }
}

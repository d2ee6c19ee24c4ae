//! Request extractors: JSON bodies that fail as `400 invalid_request` JSON (never axum's plain-text
//! 422), the client's address and device, and the session a request carries.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, COOKIE, USER_AGENT};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::accounts::sessions::{self, CurrentSession};
use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::http::error::ApiError;

pub const SESSION_COOKIE: &str = "latchkey_session";

/// A JSON body. Unknown fields are ignored; anything malformed is `400 invalid_request`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(ApiError::invalid_request(match rejection {
                JsonRejection::MissingJsonContentType(_) => {
                    "Send a JSON body with Content-Type: application/json.".to_string()
                }
                JsonRejection::JsonSyntaxError(_) => "The body is not valid JSON.".to_string(),
                JsonRejection::JsonDataError(error) => {
                    format!("The body does not have the expected fields: {}", error.body_text())
                }
                _ => "The body could not be read.".to_string(),
            })),
        }
    }
}

/// The client's address (from X-Forwarded-For only when the peer is a trusted proxy) and its
/// user agent.
impl<S> FromRequestParts<S> for ClientInfo
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let ip = peer.map(|peer| client_ip(peer, parts, &state.config.trusted_proxies));
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|agent| agent.chars().take(300).collect());
        Ok(ClientInfo {
            ip: ip.map(|ip| ip.to_string()),
            user_agent,
        })
    }
}

/// Walks X-Forwarded-For from the right, skipping trusted proxies: the first untrusted hop is the
/// client. Without trusted proxies the header is ignored (anyone can send it).
fn client_ip(peer: IpAddr, parts: &Parts, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    forwarded.into_iter().rev().find(|hop| !is_trusted(hop)).unwrap_or(peer)
}

/// The session token from `Authorization: Bearer` or the session cookie.
pub fn session_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok()) {
        if let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
            return Some(token.trim().to_string());
        }
    }
    cookie(parts, SESSION_COOKIE)
}

pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// Any live session, whatever its state (`GET /me`, logout, enrollment).
pub struct AnySession(pub CurrentSession);

impl<S> FromRequestParts<S> for AnySession
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = session_token(parts).ok_or_else(ApiError::unauthenticated)?;
        let session = sessions::authenticate(&state, &token)
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        Ok(AnySession(session))
    }
}

/// A session in state `full`; others may only enroll a factor.
pub struct FullSession(pub CurrentSession);

impl<S> FromRequestParts<S> for FullSession
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let AnySession(session) = AnySession::from_request_parts(parts, state).await?;
        if !session.is_full() {
            return Err(ApiError::mfa_enrollment_required());
        }
        Ok(FullSession(session))
    }
}

/// A full session of an administrator in sudo mode.
pub struct AdminSession(pub CurrentSession);

impl<S> FromRequestParts<S> for AdminSession
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let FullSession(session) = FullSession::from_request_parts(parts, state).await?;
        if !session.is_admin() {
            return Err(ApiError::forbidden("Only administrators may do this."));
        }
        let app = AppState::from_ref(state);
        if !session.is_sudo(app.clock.unix()) {
            return Err(ApiError::reauth_required());
        }
        Ok(AdminSession(session))
    }
}

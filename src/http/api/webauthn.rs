//! JSON handlers for passkeys and security keys (WebAuthn): registering, renaming and removing
//! keys, and the second login step with one. Options and credentials travel in the WebAuthn JSON
//! forms (binary fields as base64url), which static/webauthn.js converts for the browser.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::http::api::accounts::{ErrorBody, LoginAnswer};
use crate::http::error::ApiError;
use crate::http::extract::{AnySession, ApiJson, FullSession};
use crate::twofactor::enrollment::PasskeyView;
use crate::twofactor::webauthn::{self, login, Registered};

#[derive(Deserialize, ToSchema)]
pub struct KeyName {
    /// What the user calls the key ("YubiKey on my keyring"); at most 64 characters, blank
    /// means "Security key".
    pub name: String,
}

fn options_json(options: impl serde::Serialize) -> Result<Json<Value>, ApiError> {
    serde_json::to_value(options)
        .map(Json)
        .map_err(|error| ApiError::internal(error.into()))
}

#[utoipa::path(post, path = "/api/v1/me/2fa/webauthn/register/start", tag = "two-factor", request_body = KeyName,
    responses((status = 200, description = "`{publicKey: PublicKeyCredentialCreationOptions}` for navigator.credentials.create(), binary fields base64url; valid 5 minutes, bound to this session", body = Object),
              (status = 403, description = "reauth_required", body = ErrorBody), (status = 400, description = "invalid_name", body = ErrorBody),
              (status = 409, description = "too_many_security_keys, webauthn_unavailable", body = ErrorBody)))]
pub async fn register_start(
    State(state): State<AppState>,
    AnySession(session): AnySession,
    ApiJson(body): ApiJson<KeyName>,
) -> Result<Json<Value>, ApiError> {
    options_json(webauthn::start_registration(&state, &session, &body.name).await?)
}

#[utoipa::path(post, path = "/api/v1/me/2fa/webauthn/register/finish", tag = "two-factor",
    request_body(content = Object, description = "The PublicKeyCredential from navigator.credentials.create() in JSON form (`{id, rawId, type, response: {attestationObject, clientDataJSON}}`), or `{credential: that}`"),
    responses((status = 201, body = Registered), (status = 400, description = "invalid_credential", body = ErrorBody),
              (status = 409, description = "no_pending_setup (none started, or older than 5 minutes), already_registered", body = ErrorBody)))]
pub async fn register_finish(
    State(state): State<AppState>,
    client: ClientInfo,
    AnySession(session): AnySession,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let credential = body
        .get("credential")
        .filter(|inner| inner.is_object())
        .unwrap_or(&body);
    let registered = webauthn::finish_registration(&state, &client, &session, credential).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

#[utoipa::path(patch, path = "/api/v1/me/2fa/webauthn/{id}", tag = "two-factor", params(("id" = String, Path)), request_body = KeyName,
    responses((status = 200, body = PasskeyView), (status = 404, body = ErrorBody), (status = 400, description = "invalid_name", body = ErrorBody)))]
pub async fn rename(
    State(state): State<AppState>,
    client: ClientInfo,
    FullSession(session): FullSession,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<KeyName>,
) -> Result<Json<PasskeyView>, ApiError> {
    Ok(Json(
        webauthn::rename(&state, &client, &session, &id, &body.name).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/me/2fa/webauthn/{id}", tag = "two-factor", params(("id" = String, Path)),
    responses((status = 204, description = "Removed. When it was the last second factor, 2FA is now off: backup codes deleted, other sessions signed out"),
              (status = 403, description = "reauth_required, two_factor_required", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    client: ClientInfo,
    FullSession(session): FullSession,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    webauthn::remove(&state, &client, &session, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct ChallengeToken {
    pub challenge_token: String,
}

#[utoipa::path(post, path = "/api/v1/login/webauthn/start", tag = "accounts", request_body = ChallengeToken,
    responses((status = 200, description = "`{publicKey: PublicKeyCredentialRequestOptions}` for navigator.credentials.get(), binary fields base64url", body = Object),
              (status = 401, description = "challenge_expired", body = ErrorBody), (status = 409, description = "no_security_key", body = ErrorBody),
              (status = 429, description = "rate_limited", body = ErrorBody)))]
pub async fn login_start(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<ChallengeToken>,
) -> Result<Json<Value>, ApiError> {
    options_json(login::start(&state, &client, &body.challenge_token).await?)
}

#[derive(Deserialize, ToSchema)]
pub struct WebauthnLogin {
    pub challenge_token: String,
    /// The PublicKeyCredential from navigator.credentials.get() in JSON form
    /// (`{id, rawId, type, response: {authenticatorData, clientDataJSON, signature, userHandle}}`).
    #[schema(value_type = Object)]
    pub credential: Value,
}

#[utoipa::path(post, path = "/api/v1/login/webauthn/finish", tag = "accounts", request_body = WebauthnLogin,
    responses((status = 200, body = LoginAnswer), (status = 401, description = "invalid_credential, challenge_expired", body = ErrorBody),
              (status = 429, description = "rate_limited", body = ErrorBody)))]
pub async fn login_finish(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<WebauthnLogin>,
) -> Result<Json<LoginAnswer>, ApiError> {
    let completed = login::finish(&state, &client, &body.challenge_token, &body.credential).await?;
    Ok(Json(LoginAnswer::completed(completed)))
}

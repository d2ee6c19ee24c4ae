//! JSON handlers for accounts, login and sessions. Each parses, calls one service function, and
//! shapes the answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::accounts::{self, LoginOutcome, Me, Reauth, SessionView};
use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::clock::rfc3339;
use crate::http::error::ApiError;
use crate::http::extract::{AnySession, ApiJson, FullSession};
use crate::twofactor::{challenge, SecondFactor};

#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignedUp {
    pub user_id: String,
}

#[utoipa::path(post, path = "/api/v1/signup", tag = "accounts", request_body = Credentials,
    responses((status = 201, body = SignedUp), (status = 400, description = "invalid_email, weak_password, invalid_request", body = ErrorBody),
              (status = 409, description = "email_taken", body = ErrorBody), (status = 403, description = "signup_disabled", body = ErrorBody)))]
pub async fn signup(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    let user_id = accounts::signup(&state, &client, &body.email, &body.password).await?;
    Ok((StatusCode::CREATED, Json(SignedUp { user_id })))
}

/// `{"error": code, "message": text}`, sometimes with `retry_after` or `completes_at`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    pub retry_after: Option<i64>,
}

/// `status` is `authenticated` (with `session_token`, `session_state`) or `mfa_required` (with
/// `challenge_token`, `methods`, `expires_at`).
#[derive(Serialize, ToSchema)]
pub struct LoginAnswer {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_codes_remaining: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl LoginAnswer {
    fn authenticated(token: String, state: &str) -> LoginAnswer {
        LoginAnswer {
            status: "authenticated".into(),
            session_token: Some(token),
            session_state: Some(state.into()),
            challenge_token: None,
            methods: None,
            expires_at: None,
            backup_codes_remaining: None,
            warning: None,
        }
    }
}

impl LoginAnswer {
    /// The answer to a completed second step, whatever the factor.
    pub(crate) fn completed(completed: challenge::LoginCompleted) -> LoginAnswer {
        let mut answer = LoginAnswer::authenticated(completed.session.token, completed.session.state.as_str());
        answer.backup_codes_remaining = Some(completed.backup_codes_remaining);
        if completed.backup_codes_low {
            answer.warning = Some(format!(
                "Only {} backup codes left: create a new set now (POST /api/v1/me/2fa/backup-codes/regenerate).",
                completed.backup_codes_remaining
            ));
        }
        answer
    }
}

impl From<LoginOutcome> for LoginAnswer {
    fn from(outcome: LoginOutcome) -> LoginAnswer {
        match outcome {
            LoginOutcome::Authenticated(session) => LoginAnswer::authenticated(session.token, session.state.as_str()),
            LoginOutcome::SecondFactorRequired(challenge) => LoginAnswer {
                status: "mfa_required".into(),
                session_token: None,
                session_state: None,
                challenge_token: Some(challenge.token),
                methods: Some(challenge.methods.iter().map(|m| m.to_string()).collect()),
                expires_at: Some(rfc3339(challenge.expires_at)),
                backup_codes_remaining: None,
                warning: None,
            },
        }
    }
}

#[utoipa::path(post, path = "/api/v1/login", tag = "accounts", request_body = Credentials,
    responses((status = 200, body = LoginAnswer), (status = 401, description = "invalid_credentials", body = ErrorBody),
              (status = 429, description = "rate_limited", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<LoginAnswer>, ApiError> {
    let outcome = accounts::login(&state, &client, &body.email, &body.password).await?;
    Ok(Json(outcome.into()))
}

#[derive(Deserialize, ToSchema)]
pub struct SecondFactorLogin {
    pub challenge_token: String,
    /// `totp` or `backup_code`
    pub method: String,
    pub code: String,
}

pub(crate) fn parse_factor(method: &str, code: &str) -> Result<SecondFactor, ApiError> {
    SecondFactor::parse(method, code)
        .ok_or_else(|| ApiError::invalid_request("method must be \"totp\" or \"backup_code\"."))
}

#[utoipa::path(post, path = "/api/v1/login/mfa", tag = "accounts", request_body = SecondFactorLogin,
    responses((status = 200, body = LoginAnswer), (status = 401, description = "invalid_code, code_already_used, challenge_expired", body = ErrorBody),
              (status = 429, description = "rate_limited", body = ErrorBody)))]
pub async fn login_mfa(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<SecondFactorLogin>,
) -> Result<Json<LoginAnswer>, ApiError> {
    let factor = parse_factor(&body.method, &body.code)?;
    let completed = challenge::complete(&state, &client, &body.challenge_token, &factor).await?;
    Ok(Json(LoginAnswer::completed(completed)))
}

#[utoipa::path(post, path = "/api/v1/logout", tag = "accounts", responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, AnySession(session): AnySession) -> Result<StatusCode, ApiError> {
    accounts::logout(&state, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, AnySession(session): AnySession) -> Result<Json<Me>, ApiError> {
    Ok(Json(accounts::me(&state, &session).await?))
}

#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "accounts", responses((status = 200, body = Vec<SessionView>)))]
pub async fn sessions(
    State(state): State<AppState>,
    FullSession(session): FullSession,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    Ok(Json(accounts::list_sessions(&state, &session).await?))
}

#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "accounts", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_session(
    State(state): State<AppState>,
    client: ClientInfo,
    FullSession(session): FullSession,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    accounts::revoke_session(&state, &client, &session, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{password}` or `{method, code}`.
#[derive(Deserialize, ToSchema)]
pub struct ReauthRequest {
    pub password: Option<String>,
    pub method: Option<String>,
    pub code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SudoWindow {
    pub sudo_until: String,
}

#[utoipa::path(post, path = "/api/v1/me/reauth", tag = "accounts", request_body = ReauthRequest,
    responses((status = 200, body = SudoWindow), (status = 401, description = "invalid_credentials, invalid_code", body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn reauth(
    State(state): State<AppState>,
    client: ClientInfo,
    FullSession(session): FullSession,
    ApiJson(body): ApiJson<ReauthRequest>,
) -> Result<Json<SudoWindow>, ApiError> {
    let proof = match (body.password, body.method, body.code) {
        (Some(password), _, _) => Reauth::Password(password),
        (None, Some(method), Some(code)) => Reauth::SecondFactor(parse_factor(&method, &code)?),
        _ => {
            return Err(ApiError::invalid_request(
                "Send {\"password\"} or {\"method\", \"code\"}.",
            ))
        }
    };
    let sudo_until = accounts::reauthenticate(&state, &client, &session, proof).await?;
    Ok(Json(SudoWindow { sudo_until }))
}

#[derive(Deserialize, ToSchema)]
pub struct NewPassword {
    pub new_password: String,
}

#[utoipa::path(post, path = "/api/v1/me/password", tag = "accounts", request_body = NewPassword,
    responses((status = 204), (status = 400, description = "weak_password", body = ErrorBody), (status = 403, description = "reauth_required", body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    client: ClientInfo,
    FullSession(session): FullSession,
    ApiJson(body): ApiJson<NewPassword>,
) -> Result<StatusCode, ApiError> {
    accounts::change_password(&state, &client, &session, &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user's own recent security events, newest first (an addition to API.md).
#[utoipa::path(get, path = "/api/v1/me/activity", tag = "accounts", responses((status = 200, description = "{events: [...]}, newest first")))]
pub async fn activity(
    State(state): State<AppState>,
    FullSession(session): FullSession,
) -> Result<Json<Value>, ApiError> {
    let events = crate::audit::recent_for_user(&state.store, &session.user_id, 50).await?;
    Ok(Json(json!({ "events": events })))
}

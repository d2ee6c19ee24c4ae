//! JSON handlers for two-factor management.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::http::api::accounts::{parse_factor, ErrorBody};
use crate::http::error::ApiError;
use crate::http::extract::{AnySession, ApiJson, FullSession};
use crate::twofactor::enrollment::{self, TotpConfirmed, TotpSetup, TwoFactorStatus};

#[utoipa::path(get, path = "/api/v1/me/2fa", tag = "two-factor", responses((status = 200, body = TwoFactorStatus)))]
pub async fn status(
    State(state): State<AppState>,
    AnySession(session): AnySession,
) -> Result<Json<TwoFactorStatus>, ApiError> {
    Ok(Json(enrollment::status(&state, &session).await?))
}

#[utoipa::path(post, path = "/api/v1/me/2fa/totp/setup", tag = "two-factor",
    responses((status = 200, body = TotpSetup), (status = 403, description = "reauth_required", body = ErrorBody)))]
pub async fn totp_setup(
    State(state): State<AppState>,
    AnySession(session): AnySession,
) -> Result<Json<TotpSetup>, ApiError> {
    Ok(Json(enrollment::start_totp_setup(&state, &session).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct CodeOnly {
    pub code: String,
}

#[utoipa::path(post, path = "/api/v1/me/2fa/totp/confirm", tag = "two-factor", request_body = CodeOnly,
    responses((status = 200, body = TotpConfirmed), (status = 400, description = "invalid_code", body = ErrorBody), (status = 409, description = "no_pending_setup", body = ErrorBody)))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    client: ClientInfo,
    AnySession(session): AnySession,
    ApiJson(body): ApiJson<CodeOnly>,
) -> Result<Json<TotpConfirmed>, ApiError> {
    Ok(Json(
        enrollment::confirm_totp(&state, &client, &session, &body.code).await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct BackupCodes {
    pub backup_codes: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/me/2fa/backup-codes/regenerate", tag = "two-factor",
    responses((status = 200, body = BackupCodes), (status = 403, description = "reauth_required", body = ErrorBody), (status = 409, description = "two_factor_disabled", body = ErrorBody)))]
pub async fn regenerate_backup_codes(
    State(state): State<AppState>,
    client: ClientInfo,
    FullSession(session): FullSession,
) -> Result<Json<BackupCodes>, ApiError> {
    let backup_codes = enrollment::regenerate_backup_codes(&state, &client, &session).await?;
    Ok(Json(BackupCodes { backup_codes }))
}

#[derive(Deserialize, ToSchema)]
pub struct FactorProof {
    /// `totp` or `backup_code`
    pub method: String,
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct Disabled {
    pub enabled: bool,
}

#[utoipa::path(post, path = "/api/v1/me/2fa/disable", tag = "two-factor", request_body = FactorProof,
    responses((status = 200, body = Disabled), (status = 401, description = "invalid_code", body = ErrorBody),
              (status = 409, description = "two_factor_disabled", body = ErrorBody), (status = 403, description = "two_factor_required", body = ErrorBody)))]
pub async fn disable(
    State(state): State<AppState>,
    client: ClientInfo,
    FullSession(session): FullSession,
    ApiJson(body): ApiJson<FactorProof>,
) -> Result<Json<Disabled>, ApiError> {
    let factor = parse_factor(&body.method, &body.code)?;
    enrollment::disable(&state, &client, &session, &factor).await?;
    Ok(Json(Disabled { enabled: false }))
}

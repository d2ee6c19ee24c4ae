//! JSON handlers for recovery when the second factor is lost, and for password reset.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::clock::rfc3339;
use crate::http::api::accounts::{parse_factor, ErrorBody};
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, FullSession};
use crate::recovery::{self, password, RecoveryProof, RecoverySettings};

#[derive(Deserialize, ToSchema)]
pub struct EmailOnly {
    pub email: String,
}

/// `{status: "accepted" | "pending" | "completed" | "cancelled" | "reset"}`
#[derive(Serialize, ToSchema)]
pub struct Status {
    pub status: &'static str,
}

fn status(status: &'static str) -> Json<Status> {
    Json(Status { status })
}

#[utoipa::path(post, path = "/api/v1/recovery/request", tag = "recovery", request_body = EmailOnly,
    description = "Always 202 with the same body and timing, whether or not the account exists or has 2FA. Emails a link \
                   `{PUBLIC_URL}/recover/{token}` (valid 1 h) when the account has 2FA and email recovery on, an explanation \
                   otherwise; at most 5 emails an hour per address.",
    responses((status = 202, body = Status), (status = 400, description = "invalid_request", body = ErrorBody),
              (status = 429, description = "rate_limited", body = ErrorBody)))]
pub async fn request(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<EmailOnly>,
) -> Result<(StatusCode, Json<Status>), ApiError> {
    recovery::request_email_recovery(&state, &client, &body.email).await?;
    Ok((StatusCode::ACCEPTED, status("accepted")))
}

#[derive(Deserialize, ToSchema)]
pub struct ConfirmRecovery {
    /// The token from the emailed link.
    pub token: String,
    /// The password is lost too: wait longer, then complete with `new_password`.
    #[serde(default)]
    pub lost_password: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryPendingAnswer {
    pub status: &'static str,
    pub completes_at: String,
}

#[utoipa::path(post, path = "/api/v1/recovery/confirm", tag = "recovery", request_body = ConfirmRecovery,
    description = "Starts the waiting period (LATCHKEY_RECOVERY_DELAY, or LATCHKEY_RECOVERY_DELAY_LOST_PASSWORD) and emails \
                   a notice with a cancel link at once, and a reminder before it ends.",
    responses((status = 200, body = RecoveryPendingAnswer), (status = 400, description = "invalid_token", body = ErrorBody),
              (status = 409, description = "recovery_pending (another recovery is pending; with completes_at)", body = ErrorBody)))]
pub async fn confirm(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<ConfirmRecovery>,
) -> Result<Json<RecoveryPendingAnswer>, ApiError> {
    let pending = recovery::confirm(&state, &client, &body.token, body.lost_password.unwrap_or(false)).await?;
    Ok(Json(RecoveryPendingAnswer {
        status: "pending",
        completes_at: rfc3339(pending.completes_at),
    }))
}

/// `{token, password}`, or `{token, new_password}` after a `lost_password` confirm.
#[derive(Deserialize, ToSchema)]
pub struct CompleteRecovery {
    pub token: String,
    pub password: Option<String>,
    pub new_password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCompleted {
    pub status: &'static str,
    pub session_token: String,
    /// Always `recovered`: the session may only enroll a new second factor.
    pub session_state: &'static str,
}

#[utoipa::path(post, path = "/api/v1/recovery/complete", tag = "recovery", request_body = CompleteRecovery,
    description = "After the waiting period (until 7 days after it): deletes second factors and backup codes (and replaces \
                   the password when lost), revokes every session, emails the user, and answers a `recovered` session.",
    responses((status = 200, body = RecoveryCompleted),
              (status = 400, description = "invalid_token, weak_password, invalid_request", body = ErrorBody),
              (status = 401, description = "invalid_credentials", body = ErrorBody),
              (status = 409, description = "recovery_pending, with completes_at", body = ErrorBody),
              (status = 410, description = "recovery_cancelled", body = ErrorBody),
              (status = 429, description = "rate_limited", body = ErrorBody)))]
pub async fn complete(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<CompleteRecovery>,
) -> Result<Json<RecoveryCompleted>, ApiError> {
    let proof = match (body.password, body.new_password) {
        (Some(password), None) => RecoveryProof::CurrentPassword(password),
        (None, Some(new_password)) => RecoveryProof::NewPassword(new_password),
        _ => {
            return Err(ApiError::invalid_request(
                "Send {\"token\", \"password\"}, or {\"token\", \"new_password\"} when the password was lost too.",
            ))
        }
    };
    let session = recovery::complete(&state, &client, &body.token, proof).await?;
    Ok(Json(RecoveryCompleted {
        status: "completed",
        session_token: session.token,
        session_state: session.state.as_str(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct CancelRecovery {
    /// The token from the cancel link in the notice email.
    pub cancel_token: String,
}

#[utoipa::path(post, path = "/api/v1/recovery/cancel", tag = "recovery", request_body = CancelRecovery,
    responses((status = 200, body = Status), (status = 400, description = "invalid_token", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<CancelRecovery>,
) -> Result<Json<Status>, ApiError> {
    recovery::cancel_by_token(&state, &client, &body.cancel_token).await?;
    Ok(status("cancelled"))
}

#[utoipa::path(delete, path = "/api/v1/me/recovery", tag = "recovery",
    responses((status = 204, description = "The pending recovery was cancelled"), (status = 404, description = "not_found", body = ErrorBody)))]
pub async fn cancel_mine(
    State(state): State<AppState>,
    client: ClientInfo,
    FullSession(session): FullSession,
) -> Result<StatusCode, ApiError> {
    recovery::cancel_for_session(&state, &client, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct RecoverySettingsChange {
    /// false: no recovery by email (backup codes and the administrator only).
    pub email_recovery: bool,
}

#[utoipa::path(put, path = "/api/v1/me/2fa/recovery-settings", tag = "recovery", request_body = RecoverySettingsChange,
    description = "Turns recovery by email on or off (sudo). Off means backup codes and the administrator are the only ways \
                   back in; turning it off also cancels a pending recovery.",
    responses((status = 200, body = RecoverySettings), (status = 403, description = "reauth_required", body = ErrorBody)))]
pub async fn recovery_settings(
    State(state): State<AppState>,
    client: ClientInfo,
    FullSession(session): FullSession,
    ApiJson(body): ApiJson<RecoverySettingsChange>,
) -> Result<Json<RecoverySettings>, ApiError> {
    Ok(Json(
        recovery::set_email_recovery(&state, &client, &session, body.email_recovery).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/password/forgot", tag = "recovery", request_body = EmailOnly,
    description = "Always 202 with the same body and timing; emails `{PUBLIC_URL}/reset-password/{token}` (valid 1 h, single \
                   use) when the account exists, at most 5 an hour per address.",
    responses((status = 202, body = Status), (status = 429, description = "rate_limited", body = ErrorBody)))]
pub async fn forgot_password(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<EmailOnly>,
) -> Result<(StatusCode, Json<Status>), ApiError> {
    password::forgot(&state, &client, &body.email).await?;
    Ok((StatusCode::ACCEPTED, status("accepted")))
}

/// `{token, new_password}`, plus `{method, code}` when the account has 2FA.
#[derive(Deserialize, ToSchema)]
pub struct ResetPassword {
    pub token: String,
    pub new_password: String,
    /// `totp` or `backup_code`
    pub method: Option<String>,
    pub code: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/password/reset", tag = "recovery", request_body = ResetPassword,
    description = "Replaces the password, revokes every session and emails the user. The token is used up only by a \
                   successful reset.",
    responses((status = 200, body = Status), (status = 400, description = "invalid_token, weak_password, invalid_request", body = ErrorBody),
              (status = 401, description = "invalid_code, code_already_used", body = ErrorBody),
              (status = 409, description = "second_factor_required", body = ErrorBody),
              (status = 429, description = "rate_limited", body = ErrorBody)))]
pub async fn reset_password(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<ResetPassword>,
) -> Result<Json<Status>, ApiError> {
    let factor = match (&body.method, &body.code) {
        (Some(method), Some(code)) => Some(parse_factor(method, code)?),
        (None, None) => None,
        _ => return Err(ApiError::invalid_request("Send method and code together.")),
    };
    password::reset(&state, &client, &body.token, &body.new_password, factor.as_ref()).await?;
    Ok(status("reset"))
}

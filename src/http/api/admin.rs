//! JSON handlers for administrators.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::audit::{self, ClientInfo, EventView};
use crate::http::api::accounts::ErrorBody;
use crate::http::error::ApiError;
use crate::http::extract::AdminSession;
use crate::recovery::admin::{self, Actor, ResetOutcome, ResetRequestView, UserPage};

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Only events about this user (the subject, not the actor).
    pub user_id: Option<String>,
    /// Events with a sequence number above this.
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<EventView>,
    /// The `after` of the next page; null at the end.
    pub next: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, description = "forbidden, reauth_required")))]
pub async fn audit_log(
    State(state): State<AppState>,
    AdminSession(_admin): AdminSession,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(query) =
        query.map_err(|_| ApiError::invalid_request("user_id is text, after and limit are whole numbers."))?;
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let (events, next) = audit::page(
        &state.store,
        query.user_id.as_deref(),
        query.after.unwrap_or(0).max(0),
        limit,
    )
    .await?;
    Ok(Json(AuditPage { events, next }))
}

#[derive(Deserialize, IntoParams)]
pub struct UsersQuery {
    /// Part of the email address; all users when absent.
    pub email: Option<String>,
    /// Page number, from 1.
    pub page: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", params(UsersQuery),
    responses((status = 200, body = UserPage), (status = 403, description = "forbidden, reauth_required", body = ErrorBody)))]
pub async fn users(
    State(state): State<AppState>,
    AdminSession(_admin): AdminSession,
    query: Result<Query<UsersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UserPage>, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::invalid_request("email is text, page is a whole number."))?;
    let page = admin::find_users(&state, query.email.as_deref().unwrap_or(""), query.page.unwrap_or(1)).await?;
    Ok(Json(page))
}

#[derive(Deserialize, ToSchema)]
pub struct ResetReason {
    /// Why (required, at most 500 characters): recorded in the audit log and told to the user.
    pub reason: Option<String>,
}

/// `{status: "reset"}`, or `{status: "awaiting_approval", request_id}` when a second administrator must approve.
#[derive(Serialize, ToSchema)]
pub struct ResetAnswer {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/admin/users/{id}/reset-2fa", tag = "admin", request_body = ResetReason,
    params(("id" = String, Path, description = "The user's id")),
    description = "Deletes the user's second factors and backup codes, revokes their sessions and emails them; with \
                   LATCHKEY_ADMIN_RESET_APPROVALS=2 it creates a request that a different administrator approves.",
    responses((status = 200, body = ResetAnswer), (status = 202, description = "awaiting_approval", body = ResetAnswer),
              (status = 400, description = "reason_required, invalid_request", body = ErrorBody),
              (status = 403, description = "forbidden (not an admin, or your own account)", body = ErrorBody),
              (status = 404, description = "not_found", body = ErrorBody)))]
pub async fn reset_two_factor(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminSession(session): AdminSession,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // A missing body is a missing reason (400 reason_required), not a malformed request.
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<ResetReason>(&body)
            .map_err(|_| ApiError::invalid_request("Send {\"reason\": \"...\"}."))?
            .reason
    };
    let outcome = admin::reset_two_factor(&state, &client, Actor::Admin(&session), &user_id, reason.as_deref()).await?;
    Ok(match outcome {
        ResetOutcome::Reset => Json(ResetAnswer {
            status: "reset",
            request_id: None,
        })
        .into_response(),
        ResetOutcome::AwaitingApproval { request_id } => (
            StatusCode::ACCEPTED,
            Json(ResetAnswer {
                status: "awaiting_approval",
                request_id: Some(request_id),
            }),
        )
            .into_response(),
    })
}

#[utoipa::path(post, path = "/api/v1/admin/reset-requests/{id}/approve", tag = "admin",
    params(("id" = String, Path, description = "The request_id of the reset request")),
    responses((status = 200, body = ResetAnswer),
              (status = 403, description = "forbidden (the administrator who asked, or the subject)", body = ErrorBody),
              (status = 404, description = "not_found", body = ErrorBody),
              (status = 409, description = "already_approved", body = ErrorBody),
              (status = 410, description = "request_expired (after 24 h)", body = ErrorBody)))]
pub async fn approve_reset(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminSession(session): AdminSession,
    Path(request_id): Path<String>,
) -> Result<Json<ResetAnswer>, ApiError> {
    admin::approve(&state, &client, &session, &request_id).await?;
    Ok(Json(ResetAnswer {
        status: "reset",
        request_id: None,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ResetRequests {
    pub requests: Vec<ResetRequestView>,
}

/// Reset requests awaiting a second administrator (an addition to API.md, for the admin page).
#[utoipa::path(get, path = "/api/v1/admin/reset-requests", tag = "admin",
    responses((status = 200, body = ResetRequests), (status = 403, description = "forbidden, reauth_required", body = ErrorBody)))]
pub async fn reset_requests(
    State(state): State<AppState>,
    AdminSession(_admin): AdminSession,
) -> Result<Json<ResetRequests>, ApiError> {
    Ok(Json(ResetRequests {
        requests: admin::open_requests(&state).await?,
    }))
}

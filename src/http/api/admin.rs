//! JSON handlers for administrators.

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::audit::{self, EventView};
use crate::http::error::ApiError;
use crate::http::extract::AdminSession;

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

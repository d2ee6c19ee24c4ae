//! Operations: health, readiness, metrics, the OpenAPI document, and forward auth.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use utoipa::OpenApi;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::AnySession;

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is up")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "the database answers"), (status = 503)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.store.is_ready().await {
        Json(json!({"status": "ready"})).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "The database does not answer.",
        )
        .into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}

/// Forward auth for reverse proxies (nginx `auth_request`, Caddy `forward_auth`, Traefik
/// ForwardAuth): 200 with the user's id and email for a `full` session, else 401.
#[utoipa::path(get, path = "/api/v1/verify", tag = "operations",
    responses((status = 200, description = "full session; headers X-Latchkey-User-Id and X-Latchkey-Email"), (status = 401)))]
pub async fn verify(session: Result<AnySession, ApiError>) -> Result<Response, ApiError> {
    let AnySession(session) = session?;
    if !session.is_full() {
        return Err(ApiError::mfa_enrollment_required().with_status(StatusCode::UNAUTHORIZED));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-latchkey-user-id", &session.user_id),
        ("x-latchkey-email", &session.email),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    Ok((
        StatusCode::OK,
        headers,
        Json(json!({"user_id": session.user_id, "email": session.email})),
    )
        .into_response())
}

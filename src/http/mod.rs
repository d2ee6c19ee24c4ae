//! HTTP: the JSON API, the pages, and the middleware around them (request ids, structured
//! request logs, metrics, panics turned into JSON 500s, security headers, body size limit).

pub mod api;
pub mod error;
pub mod extract;
pub mod web;

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use error::ApiError;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(web::routes(state.clone()))
        .fallback(web::not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "This path does not take that method.")
        })
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(record_metrics))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong on our side.").into_response()
        }))
        .layer(RequestBodyLimitLayer::new(64 * 1024))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            // The path only (query strings could carry tokens), without the tokens of emailed links.
            tracing::info_span!("request", method = %request.method(), path = %loggable_path(request.uri().path()), request_id = %request_id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// The paths of emailed links (`/recover/{token}`, `/recover/cancel/{token}`,
/// `/reset-password/{token}`) hold secrets: logs see `[token]` in their place.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    for prefix in ["/recover/cancel/", "/recover/", "/reset-password/"] {
        if path.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty()) {
            return format!("{prefix}[token]").into();
        }
    }
    path.into()
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let elapsed = started.elapsed();
    metrics::counter!("latchkey_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status).increment(1);
    metrics::histogram!("latchkey_http_request_duration_seconds", "route" => route, "method" => method)
        .record(elapsed.as_secs_f64());
    if elapsed > Duration::from_secs(2) {
        tracing::warn!(elapsed_ms = elapsed.as_millis() as u64, "slow request");
    }
    response
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(headers, header::CACHE_CONTROL, "no-store");
    response
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn link_tokens_never_reach_the_log() {
        assert_eq!(loggable_path("/recover/abcDEF123"), "/recover/[token]");
        assert_eq!(loggable_path("/recover/cancel/abcDEF123"), "/recover/cancel/[token]");
        assert_eq!(loggable_path("/reset-password/abc"), "/reset-password/[token]");
        assert_eq!(loggable_path("/recover"), "/recover");
        assert_eq!(loggable_path("/api/v1/recovery/confirm"), "/api/v1/recovery/confirm");
    }
}

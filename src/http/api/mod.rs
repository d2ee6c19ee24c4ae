//! The JSON API under `/api/v1` (the contract in API.md), and its OpenAPI document.

pub mod accounts;
pub mod admin;
pub mod ops;
pub mod recovery;
pub mod two_factor;
pub mod webauthn;

use axum::routing::{delete, get, post, put};
use axum::Router;
use utoipa::OpenApi;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/signup", post(accounts::signup))
        .route("/api/v1/login", post(accounts::login))
        .route("/api/v1/login/mfa", post(accounts::login_mfa))
        .route("/api/v1/logout", post(accounts::logout))
        .route("/api/v1/me", get(accounts::me))
        .route("/api/v1/me/sessions", get(accounts::sessions))
        .route("/api/v1/me/sessions/{id}", delete(accounts::revoke_session))
        .route("/api/v1/me/reauth", post(accounts::reauth))
        .route("/api/v1/me/password", post(accounts::change_password))
        .route("/api/v1/me/activity", get(accounts::activity))
        .route("/api/v1/me/2fa", get(two_factor::status))
        .route("/api/v1/me/2fa/totp/setup", post(two_factor::totp_setup))
        .route("/api/v1/me/2fa/totp/confirm", post(two_factor::totp_confirm))
        .route(
            "/api/v1/me/2fa/backup-codes/regenerate",
            post(two_factor::regenerate_backup_codes),
        )
        .route("/api/v1/me/2fa/disable", post(two_factor::disable))
        .route("/api/v1/me/2fa/webauthn/register/start", post(webauthn::register_start))
        .route(
            "/api/v1/me/2fa/webauthn/register/finish",
            post(webauthn::register_finish),
        )
        .route(
            "/api/v1/me/2fa/webauthn/{id}",
            delete(webauthn::remove).patch(webauthn::rename),
        )
        .route("/api/v1/login/webauthn/start", post(webauthn::login_start))
        .route("/api/v1/login/webauthn/finish", post(webauthn::login_finish))
        .route("/api/v1/password/forgot", post(recovery::forgot_password))
        .route("/api/v1/password/reset", post(recovery::reset_password))
        .route("/api/v1/recovery/request", post(recovery::request))
        .route("/api/v1/recovery/confirm", post(recovery::confirm))
        .route("/api/v1/recovery/complete", post(recovery::complete))
        .route("/api/v1/recovery/cancel", post(recovery::cancel))
        .route("/api/v1/me/recovery", delete(recovery::cancel_mine))
        .route("/api/v1/me/2fa/recovery-settings", put(recovery::recovery_settings))
        .route("/api/v1/admin/audit", get(admin::audit_log))
        .route("/api/v1/admin/users", get(admin::users))
        .route("/api/v1/admin/users/{id}/reset-2fa", post(admin::reset_two_factor))
        .route("/api/v1/admin/reset-requests", get(admin::reset_requests))
        .route("/api/v1/admin/reset-requests/{id}/approve", post(admin::approve_reset))
        .route("/api/v1/verify", get(ops::verify))
        .route("/api/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "latchkey", description = "Self-hosted authentication with correct two-factor authentication and recovery. Errors are {\"error\": code, \"message\": text}."),
    paths(
        accounts::signup, accounts::login, accounts::login_mfa, accounts::logout, accounts::me, accounts::sessions,
        accounts::revoke_session, accounts::reauth, accounts::change_password, accounts::activity,
        two_factor::status, two_factor::totp_setup, two_factor::totp_confirm, two_factor::regenerate_backup_codes, two_factor::disable,
        webauthn::register_start, webauthn::register_finish, webauthn::rename, webauthn::remove, webauthn::login_start, webauthn::login_finish,
        recovery::forgot_password, recovery::reset_password, recovery::request, recovery::confirm, recovery::complete,
        recovery::cancel, recovery::cancel_mine, recovery::recovery_settings,
        admin::audit_log, admin::users, admin::reset_two_factor, admin::reset_requests, admin::approve_reset, ops::verify, ops::healthz, ops::readyz, ops::metrics,
    ),
    components(schemas(accounts::ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

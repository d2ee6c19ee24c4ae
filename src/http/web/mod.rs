//! The web pages (API.md "Pages"): server-rendered askama forms that post to their own path and
//! redirect after success (POST-redirect-GET), over the same service functions as the JSON API.
//! Every form carries a CSRF token; errors are shown next to the field they are about.

mod account;
mod admin;
mod admin_users;
mod assets;
mod auth;
mod forms;
mod page;
mod recovery;
mod security_keys;
mod session;
mod two_factor;

use axum::middleware;
use axum::routing::get;
use axum::Router;

use crate::app::AppState;

pub use forms::safe_next;
pub use page::not_found;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(auth::home))
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/login/2fa", get(auth::second_step_page).post(auth::second_step))
        .route("/logout", get(auth::logout_page).post(auth::logout))
        .route("/account", get(account::overview).post(account::overview_action))
        .route("/account/reauth", get(account::reauth_page).post(account::reauth))
        .route(
            "/account/password",
            get(account::password_page).post(account::change_password),
        )
        .route(
            "/account/2fa/setup",
            get(two_factor::setup_page).post(two_factor::confirm_setup),
        )
        .route(
            "/account/2fa/backup-codes",
            get(two_factor::backup_codes_page).post(two_factor::regenerate),
        )
        .route(
            "/account/2fa/disable",
            get(two_factor::disable_page).post(two_factor::disable),
        )
        .route(
            "/account/2fa/security-keys",
            get(security_keys::security_keys_page).post(security_keys::change_security_keys),
        )
        .route("/recover", get(recovery::recover_page).post(recovery::request_recovery))
        .route(
            "/recover/{token}",
            get(recovery::recover_link_page).post(recovery::recover_link),
        )
        .route(
            "/recover/cancel/{cancel_token}",
            get(recovery::cancel_page).post(recovery::cancel),
        )
        .route("/forgot-password", get(recovery::forgot_page).post(recovery::forgot))
        .route(
            "/reset-password/{token}",
            get(recovery::reset_page).post(recovery::reset),
        )
        .route("/admin", get(admin_users::users).post(admin_users::approve))
        .route("/admin/users/{id}", get(admin_users::user).post(admin_users::reset))
        .route("/admin/audit", get(admin::audit_log))
        .route("/static/{file}", get(assets::serve))
        .layer(middleware::from_fn_with_state(state, page::render_error_pages))
}

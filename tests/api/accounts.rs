//! Sign-up, login, sessions, re-authentication and password changes, as API.md specifies them.

use std::time::Duration;

use serde_json::json;

use crate::common::{spawn_app, spawn_app_with, Backend, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    signup_then_login_then_me_then_logout,
    signup_refuses_bad_input_with_documented_codes,
    signup_can_be_closed,
    login_does_not_reveal_whether_an_account_exists,
    malformed_requests_answer_invalid_request_json,
    password_guessing_is_throttled_per_account,
    sessions_are_listed_and_revoked,
    sensitive_changes_need_a_recent_authentication,
    changing_the_password_signs_out_other_sessions,
    idle_sessions_expire,
    admin_required_to_have_2fa_gets_an_enrollment_only_session,
);

async fn signup_then_login_then_me_then_logout(backend: Backend) {
    let app = spawn_app(backend).await;
    let user_id = app.signup("  Alice@Example.com ").await;
    let login = app.login("alice@example.com").await.expect(200);
    assert_eq!(login.body["status"], "authenticated");
    assert_eq!(login.body["session_state"], "full");
    let token = login.body["session_token"].as_str().unwrap();
    assert!(token.len() >= 43, "256-bit token");

    let me = app.get("/api/v1/me", Some(token)).await.expect(200);
    assert_eq!(me.body["id"], user_id.as_str());
    assert_eq!(me.body["email"], "alice@example.com");
    assert_eq!(me.body["role"], "user");
    assert_eq!(me.body["session_state"], "full");
    assert_eq!(me.body["two_factor"]["enabled"], false);
    assert_eq!(me.body["two_factor"]["email_recovery_enabled"], true);
    assert!(me.body["pending_recovery"].is_null());
    assert!(me.body["created_at"].as_str().unwrap().ends_with('Z'));

    app.post("/api/v1/logout", Some(token), json!({})).await.expect(204);
    app.get("/api/v1/me", Some(token))
        .await
        .expect_error(401, "unauthenticated");
    app.post("/api/v1/logout", Some(token), json!({}))
        .await
        .expect_error(401, "unauthenticated");
}

async fn signup_refuses_bad_input_with_documented_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let signup = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.post("/api/v1/signup", None, json!({"email": email, "password": password}))
                .await
        }
    };
    signup("not-an-email", PASSWORD)
        .await
        .expect_error(400, "invalid_email");
    signup("bob@example.com", "short")
        .await
        .expect_error(400, "weak_password");
    signup("bob@example.com", "password123")
        .await
        .expect_error(400, "weak_password");
    let too_long: &'static str = Box::leak("x".repeat(257).into_boxed_str());
    signup("bob@example.com", too_long)
        .await
        .expect_error(400, "weak_password");
    signup("bob@example.com", PASSWORD).await.expect(201);
    signup("BOB@example.com", PASSWORD)
        .await
        .expect_error(409, "email_taken");
}

async fn signup_can_be_closed(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_SIGNUP", "closed")]).await;
    app.post(
        "/api/v1/signup",
        None,
        json!({"email": "a@example.com", "password": PASSWORD}),
    )
    .await
    .expect_error(403, "signup_disabled");
}

async fn login_does_not_reveal_whether_an_account_exists(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("carol@example.com").await;
    let wrong = app
        .post(
            "/api/v1/login",
            None,
            json!({"email": "carol@example.com", "password": "wrong password!"}),
        )
        .await;
    let unknown = app
        .post(
            "/api/v1/login",
            None,
            json!({"email": "nobody@example.com", "password": "wrong password!"}),
        )
        .await;
    let wrong = wrong.expect_error(401, "invalid_credentials");
    let unknown = unknown.expect_error(401, "invalid_credentials");
    assert_eq!(wrong.body, unknown.body);
}

async fn malformed_requests_answer_invalid_request_json(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post_raw("/api/v1/login", "application/json", "{not json")
        .await
        .expect_error(400, "invalid_request");
    app.post_raw("/api/v1/login", "application/json", r#"{"email": 5, "password": "x"}"#)
        .await
        .expect_error(400, "invalid_request");
    app.post_raw("/api/v1/login", "application/json", r#"{"email": "a@b.co"}"#)
        .await
        .expect_error(400, "invalid_request");
    app.post_raw("/api/v1/login", "text/plain", "hello")
        .await
        .expect_error(400, "invalid_request");
    // Unknown extra fields are ignored.
    app.post_raw(
        "/api/v1/signup",
        "application/json",
        &format!(r#"{{"email":"x@example.com","password":"{PASSWORD}","extra":1}}"#),
    )
    .await
    .expect(201);
    app.get("/api/v1/no-such-route", None)
        .await
        .expect_error(404, "not_found");
    app.get("/api/v1/me", Some("garbage token"))
        .await
        .expect_error(401, "unauthenticated");
}

async fn password_guessing_is_throttled_per_account(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("dave@example.com").await;
    for _ in 0..5 {
        app.post(
            "/api/v1/login",
            None,
            json!({"email": "dave@example.com", "password": "not my password"}),
        )
        .await
        .expect_error(401, "invalid_credentials");
    }
    // Even the right password waits now: the throttle answers before any password is checked.
    let throttled = app.login("dave@example.com").await.expect_error(429, "rate_limited");
    let retry_after = throttled.body["retry_after"].as_i64().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(
        throttled.headers["retry-after"].to_str().unwrap(),
        retry_after.to_string()
    );
    // Unknown addresses are throttled the same way, so 429 reveals nothing.
    for _ in 0..5 {
        app.post(
            "/api/v1/login",
            None,
            json!({"email": "ghost@example.com", "password": "not my password"}),
        )
        .await;
    }
    app.post(
        "/api/v1/login",
        None,
        json!({"email": "ghost@example.com", "password": "x"}),
    )
    .await
    .expect_error(429, "rate_limited");
    // After the wait, the right password works and resets the count.
    app.clock.advance(Duration::from_secs(retry_after as u64));
    app.login("dave@example.com").await.expect(200);
    app.post(
        "/api/v1/login",
        None,
        json!({"email": "dave@example.com", "password": "not my password"}),
    )
    .await
    .expect_error(401, "invalid_credentials");
}

async fn sessions_are_listed_and_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.new_user("erin@example.com").await;
    let second = app.login("erin@example.com").await.expect(200);
    let second_token = second.body["session_token"].as_str().unwrap();
    let list = app.get("/api/v1/me/sessions", Some(&first.token)).await.expect(200);
    let sessions = list.body.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    for field in ["id", "created_at", "last_seen_at", "user_agent", "ip"] {
        assert!(sessions[0].get(field).is_some(), "{field}");
    }
    let other = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.delete(&format!("/api/v1/me/sessions/{other}"), Some(&first.token))
        .await
        .expect(204);
    app.get("/api/v1/me", Some(second_token))
        .await
        .expect_error(401, "unauthenticated");
    app.delete(&format!("/api/v1/me/sessions/{other}"), Some(&first.token))
        .await
        .expect_error(404, "not_found");
    // Someone else's session id is not found either.
    let mallory = app.new_user("mallory@example.com").await;
    let mine = app.get("/api/v1/me/sessions", Some(&first.token)).await.body[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.delete(&format!("/api/v1/me/sessions/{mine}"), Some(&mallory.token))
        .await
        .expect_error(404, "not_found");
    app.get("/api/v1/me", Some(&first.token)).await.expect(200);
}

async fn sensitive_changes_need_a_recent_authentication(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("frank@example.com").await;
    app.clock.advance(Duration::from_secs(11 * 60));
    app.post(
        "/api/v1/me/password",
        Some(&user.token),
        json!({"new_password": "another fine passphrase"}),
    )
    .await
    .expect_error(403, "reauth_required");
    app.post(
        "/api/v1/me/reauth",
        Some(&user.token),
        json!({"password": "wrong one!"}),
    )
    .await
    .expect_error(401, "invalid_credentials");
    app.post("/api/v1/me/reauth", Some(&user.token), json!({}))
        .await
        .expect_error(400, "invalid_request");
    let reauth = app
        .post("/api/v1/me/reauth", Some(&user.token), json!({"password": PASSWORD}))
        .await
        .expect(200);
    assert!(reauth.body["sudo_until"].as_str().unwrap().ends_with('Z'));
    app.post(
        "/api/v1/me/password",
        Some(&user.token),
        json!({"new_password": "another fine passphrase"}),
    )
    .await
    .expect(204);
}

async fn changing_the_password_signs_out_other_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("grace@example.com").await;
    let other = app.login("grace@example.com").await.body["session_token"]
        .as_str()
        .unwrap()
        .to_string();
    app.post(
        "/api/v1/me/password",
        Some(&user.token),
        json!({"new_password": "12345678"}),
    )
    .await
    .expect_error(400, "weak_password");
    app.post(
        "/api/v1/me/password",
        Some(&user.token),
        json!({"new_password": "a brand new passphrase"}),
    )
    .await
    .expect(204);
    app.get("/api/v1/me", Some(&other))
        .await
        .expect_error(401, "unauthenticated");
    app.get("/api/v1/me", Some(&user.token)).await.expect(200);
    app.login("grace@example.com")
        .await
        .expect_error(401, "invalid_credentials");
    app.post(
        "/api/v1/login",
        None,
        json!({"email": "grace@example.com", "password": "a brand new passphrase"}),
    )
    .await
    .expect(200);
    let email = app.email_to("grace@example.com", "password was changed").await;
    assert!(email.text.contains("Wasn't you?"));
}

async fn idle_sessions_expire(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_SESSION_IDLE_TIMEOUT", "1h")]).await;
    let user = app.new_user("heidi@example.com").await;
    app.clock.advance(Duration::from_secs(3601));
    app.get("/api/v1/me", Some(&user.token))
        .await
        .expect_error(401, "unauthenticated");
}

async fn admin_required_to_have_2fa_gets_an_enrollment_only_session(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_REQUIRE_2FA", "admins")]).await;
    let admin = app.new_admin("root@example.com").await;
    let me = app.get("/api/v1/me", Some(&admin.token)).await.expect(200);
    assert_eq!(me.body["session_state"], "mfa_enrollment_required");
    assert_eq!(me.body["role"], "admin");
    app.get("/api/v1/me/sessions", Some(&admin.token))
        .await
        .expect_error(403, "mfa_enrollment_required");
    app.get("/api/v1/admin/audit", Some(&admin.token))
        .await
        .expect_error(403, "mfa_enrollment_required");
    app.get("/api/v1/verify", Some(&admin.token)).await.expect(401);
    app.get("/api/v1/me/2fa", Some(&admin.token)).await.expect(200);
    let enrolled = app.enroll_totp(&admin.token).await;
    assert_eq!(enrolled.backup_codes.len(), 10);
    let me = app.get("/api/v1/me", Some(&admin.token)).await.expect(200);
    assert_eq!(me.body["session_state"], "full");
    app.get("/api/v1/me/sessions", Some(&admin.token)).await.expect(200);
    let verify = app.get("/api/v1/verify", Some(&admin.token)).await.expect(200);
    assert_eq!(verify.headers["x-latchkey-email"], "root@example.com");
    assert_eq!(verify.headers["x-latchkey-user-id"].to_str().unwrap(), admin.id);
    // Ordinary users are not required to have 2FA under `admins`.
    let user = app.new_user("plain@example.com").await;
    assert_eq!(
        app.get("/api/v1/me", Some(&user.token)).await.body["session_state"],
        "full"
    );
}

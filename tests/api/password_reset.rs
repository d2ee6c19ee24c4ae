//! Password reset by email: the request that reveals nothing, the one-hour single-use link, and a
//! second factor required on top of the mailbox when the account has 2FA.

use std::time::Duration;

use serde_json::json;

use crate::common::{spawn_app, Backend, Reply, TestApp, PASSWORD};
use crate::on_both_databases;
use crate::recovery::{audit_events, nth_email, settle, token_in, user_with_totp};

on_both_databases!(
    forgot_password_answers_the_same_for_every_address,
    forgot_password_is_limited_per_address,
    a_password_reset_without_2fa_needs_only_the_link,
    a_password_reset_with_2fa_needs_a_second_factor,
    reset_links_expire_and_work_once,
);

const LINK_SUBJECT: &str = "Reset your password";
const NEW_PASSWORD: &str = "a completely new password";

async fn forgot(app: &TestApp, email: &str) -> Reply {
    app.post("/api/v1/password/forgot", None, json!({"email": email})).await
}

async fn reset_token(app: &TestApp, email: &str, n: usize) -> String {
    forgot(app, email).await.expect(202);
    token_in(&nth_email(app, email, LINK_SUBJECT, n).await, "/reset-password/")
}

async fn reset(app: &TestApp, body: serde_json::Value) -> Reply {
    app.post("/api/v1/password/reset", None, body).await
}

async fn login_with(app: &TestApp, email: &str, password: &str) -> Reply {
    app.post("/api/v1/login", None, json!({"email": email, "password": password}))
        .await
}

async fn forgot_password_answers_the_same_for_every_address(backend: Backend) {
    let app = spawn_app(backend).await;
    app.new_user("pat@example.com").await;
    let known = forgot(&app, "pat@example.com").await;
    let unknown = forgot(&app, "nobody@example.com").await;
    let malformed = forgot(&app, "@@").await;
    for reply in [&known, &unknown, &malformed] {
        assert_eq!(reply.status.as_u16(), 202);
        assert_eq!(reply.body, json!({"status": "accepted"}));
    }
    app.post("/api/v1/password/forgot", None, json!({}))
        .await
        .expect_error(400, "invalid_request");
    settle(&app, 2).await;
    let email = app.email_to("pat@example.com", LINK_SUBJECT).await;
    assert!(email.text.contains("1 hour"));
    assert!(!email.text.contains("two-factor"), "no 2FA, no mention of it");
    assert!(app.smtp.emails_to("nobody@example.com").is_empty());
}

async fn forgot_password_is_limited_per_address(backend: Backend) {
    let app = spawn_app(backend).await;
    app.new_user("spam@example.com").await;
    for _ in 0..8 {
        forgot(&app, "spam@example.com").await.expect(202);
    }
    settle(&app, 8).await;
    assert_eq!(app.smtp.emails_to("spam@example.com").len(), 5);
}

async fn a_password_reset_without_2fa_needs_only_the_link(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("ray@example.com").await;
    let token = reset_token(&app, "ray@example.com", 0).await;

    // A weak password is refused and leaves the token usable.
    reset(&app, json!({"token": token, "new_password": "short"}))
        .await
        .expect_error(400, "weak_password");
    let done = reset(&app, json!({"token": token, "new_password": NEW_PASSWORD}))
        .await
        .expect(200);
    assert_eq!(done.body, json!({"status": "reset"}));

    app.get("/api/v1/me", Some(&user.token))
        .await
        .expect_error(401, "unauthenticated");
    login_with(&app, "ray@example.com", PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");
    let login = login_with(&app, "ray@example.com", NEW_PASSWORD).await.expect(200);
    assert_eq!(login.body["status"], "authenticated");
    let email = app.email_to("ray@example.com", "Your password was reset").await;
    assert!(email.text.contains("every session was signed out"));

    // Single use.
    reset(&app, json!({"token": token, "new_password": "yet another password"}))
        .await
        .expect_error(400, "invalid_token");
    let events = audit_events(&app, &user.id).await;
    let kinds: Vec<&str> = events.iter().map(|(kind, _, _)| kind.as_str()).collect();
    assert!(kinds.contains(&"password_reset_requested") && kinds.contains(&"password_reset"));
}

async fn a_password_reset_with_2fa_needs_a_second_factor(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, enrolled) = user_with_totp(&app, "tia@example.com").await;
    let token = reset_token(&app, "tia@example.com", 0).await;
    let link_email = nth_email(&app, "tia@example.com", LINK_SUBJECT, 0).await;
    assert!(link_email.text.contains("backup code"), "{}", link_email.text);

    // A mailbox alone never replaces a second factor.
    reset(&app, json!({"token": token, "new_password": NEW_PASSWORD}))
        .await
        .expect_error(409, "second_factor_required");
    let wrong = format!(
        "{:06}",
        (app.totp_code(&enrolled.secret, 0).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    reset(
        &app,
        json!({"token": token, "new_password": NEW_PASSWORD, "method": "totp", "code": wrong}),
    )
    .await
    .expect_error(401, "invalid_code");
    reset(
        &app,
        json!({"token": token, "new_password": NEW_PASSWORD, "method": "sms", "code": "123456"}),
    )
    .await
    .expect_error(400, "invalid_request");
    login_with(&app, "tia@example.com", NEW_PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");

    // Neither the 409 nor the 401 used the token up; a backup code is accepted.
    let backup_code = enrolled.backup_codes[0].to_lowercase().replace('-', " ");
    reset(
        &app,
        json!({"token": token, "new_password": NEW_PASSWORD, "method": "backup_code", "code": backup_code}),
    )
    .await
    .expect(200);
    app.get("/api/v1/me", Some(&user.token))
        .await
        .expect_error(401, "unauthenticated");
    // 2FA stays on: the new password leads to the second step.
    let login = login_with(&app, "tia@example.com", NEW_PASSWORD).await.expect(200);
    assert_eq!(login.body["status"], "mfa_required");
    app.email_to("tia@example.com", "A backup code was used").await;

    // A TOTP code works as well, on a fresh link.
    let second = reset_token(&app, "tia@example.com", 1).await;
    app.next_step();
    let code = app.totp_code(&enrolled.secret, 0);
    reset(
        &app,
        json!({"token": second, "new_password": "the third password here", "method": "totp", "code": code}),
    )
    .await
    .expect(200);
    login_with(&app, "tia@example.com", "the third password here")
        .await
        .expect(200);
    let events = audit_events(&app, &user.id).await;
    let resets: Vec<_> = events.iter().filter(|(kind, _, _)| kind == "password_reset").collect();
    assert_eq!(resets.len(), 2);
    assert_eq!(resets[0].2["second_factor"], "backup_code");
    assert_eq!(resets[1].2["second_factor"], "totp");
}

async fn reset_links_expire_and_work_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.new_user("old@example.com").await;
    reset(&app, json!({"token": "made-up", "new_password": NEW_PASSWORD}))
        .await
        .expect_error(400, "invalid_token");
    let first = reset_token(&app, "old@example.com", 0).await;
    let second = reset_token(&app, "old@example.com", 1).await;
    app.clock.advance(Duration::from_secs(3601));
    reset(&app, json!({"token": first, "new_password": NEW_PASSWORD}))
        .await
        .expect_error(400, "invalid_token");

    // Using one link retires every other outstanding one.
    let third = reset_token(&app, "old@example.com", 2).await;
    let fourth = reset_token(&app, "old@example.com", 3).await;
    reset(&app, json!({"token": third, "new_password": NEW_PASSWORD}))
        .await
        .expect(200);
    for token in [&second, &fourth, &third] {
        reset(&app, json!({"token": token, "new_password": "another new password"}))
            .await
            .expect_error(400, "invalid_token");
    }
}

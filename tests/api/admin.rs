//! Administrators: finding users, resetting a user's 2FA with a reason (audited and emailed),
//! optionally with a second administrator's approval, and the command-line reset.

use std::time::Duration;

use serde_json::json;

use crate::common::{spawn_app, spawn_app_with, Backend, TestApp, User, PASSWORD};
use crate::on_both_databases;
use crate::recovery::{audit_events, user_with_totp};

on_both_databases!(
    admins_find_users_page_by_page,
    an_admin_reset_removes_factors_and_tells_the_user,
    after_a_reset_policy_decides_the_next_login,
    a_reset_needs_a_reason_an_admin_and_someone_else,
    a_second_admin_must_approve_when_configured,
    approval_requests_expire_after_a_day,
    the_command_line_resets_a_locked_out_admin,
);

const RESET_SUBJECT: &str = "An administrator reset your two-factor authentication";

async fn reset_2fa(app: &TestApp, admin: &User, user_id: &str, body: serde_json::Value) -> crate::common::Reply {
    app.post(
        &format!("/api/v1/admin/users/{user_id}/reset-2fa"),
        Some(&admin.token),
        body,
    )
    .await
}

async fn admins_find_users_page_by_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.new_admin("root@example.com").await;
    let (alice, _) = user_with_totp(&app, "alice@example.org").await;
    let bob = app.new_user("bob@example.org").await;
    let found = app
        .get("/api/v1/admin/users?email=example.org", Some(&admin.token))
        .await
        .expect(200);
    let users = found.body["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["id"], alice.id.as_str());
    assert_eq!(users[0]["email"], "alice@example.org");
    assert_eq!(users[0]["role"], "user");
    assert_eq!(users[0]["two_factor_enabled"], true);
    assert!(users[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(users[1]["id"], bob.id.as_str());
    assert_eq!(users[1]["two_factor_enabled"], false);
    assert_eq!(found.body["next_page"], serde_json::Value::Null);

    for index in 0..55 {
        let email = latchkey::accounts::email::Email::parse(&format!("many{index:02}@example.net")).unwrap();
        latchkey::accounts::create_user(
            &app.state,
            &latchkey::audit::ClientInfo::cli(),
            &email,
            PASSWORD,
            latchkey::accounts::sessions::Role::User,
            Some("cli"),
        )
        .await
        .unwrap();
    }
    let first = app
        .get("/api/v1/admin/users?email=many", Some(&admin.token))
        .await
        .expect(200);
    assert_eq!(first.body["users"].as_array().unwrap().len(), 50);
    assert_eq!(first.body["next_page"], 2);
    let second = app
        .get("/api/v1/admin/users?email=many&page=2", Some(&admin.token))
        .await
        .expect(200);
    assert_eq!(second.body["users"].as_array().unwrap().len(), 5);
    assert_eq!(second.body["users"][4]["email"], "many54@example.net");
    assert_eq!(second.body["next_page"], serde_json::Value::Null);
    let everyone = app.get("/api/v1/admin/users", Some(&admin.token)).await.expect(200);
    assert_eq!(everyone.body["next_page"], 2);
    app.get("/api/v1/admin/users?page=two", Some(&admin.token))
        .await
        .expect_error(400, "invalid_request");
    let far = app
        .get("/api/v1/admin/users?page=9223372036854775807", Some(&admin.token))
        .await
        .expect(200);
    assert_eq!(far.body["users"], json!([]));

    app.get("/api/v1/admin/users", Some(&bob.token))
        .await
        .expect_error(403, "forbidden");
}

async fn an_admin_reset_removes_factors_and_tells_the_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.new_admin("root@example.com").await;
    let (user, enrolled) = user_with_totp(&app, "dana@example.com").await;
    let reply = reset_2fa(
        &app,
        &admin,
        &user.id,
        json!({"reason": "Lost phone; identity checked on a video call"}),
    )
    .await
    .expect(200);
    assert_eq!(reply.body["status"], "reset");

    app.get("/api/v1/me", Some(&user.token))
        .await
        .expect_error(401, "unauthenticated");
    // Policy `none` in tests: the next login is single-step and full.
    let login = app.login("dana@example.com").await.expect(200);
    assert_eq!(login.body["status"], "authenticated");
    assert_eq!(login.body["session_state"], "full");
    let token = login.body["session_token"].as_str().unwrap();
    let me = app.get("/api/v1/me", Some(token)).await.expect(200);
    assert_eq!(me.body["two_factor"]["enabled"], false);
    assert_eq!(me.body["two_factor"]["backup_codes_remaining"], 0);
    assert!(!enrolled.backup_codes.is_empty());

    let email = app.email_to("dana@example.com", RESET_SUBJECT).await;
    assert!(email.text.contains("root@example.com"), "who: {}", email.text);
    assert!(
        email.text.contains("Lost phone; identity checked on a video call"),
        "why"
    );
    assert!(email.text.contains("When:"), "when");
    assert!(email.text.contains("contact your administrator"), "what to do");

    let events = audit_events(&app, &user.id).await;
    let (_, actor, detail) = events.iter().find(|(kind, _, _)| kind == "2fa_reset").unwrap();
    assert_eq!(actor.as_deref(), Some(admin.id.as_str()));
    assert_eq!(detail["reason"], "Lost phone; identity checked on a video call");
}

async fn after_a_reset_policy_decides_the_next_login(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_REQUIRE_2FA", "all")]).await;
    // Under the policy the admin must enroll first; enrolling makes the session full.
    let admin = app.new_admin("root@example.com").await;
    app.enroll_totp(&admin.token).await;
    let signed_up = app.signup("eve@example.com").await;
    let first = app.login("eve@example.com").await.expect(200);
    let token = first.body["session_token"].as_str().unwrap();
    app.enroll_totp(token).await;

    reset_2fa(&app, &admin, &signed_up, json!({"reason": "locked out"}))
        .await
        .expect(200);
    let login = app.login("eve@example.com").await.expect(200);
    assert_eq!(login.body["status"], "authenticated");
    assert_eq!(login.body["session_state"], "mfa_enrollment_required");
}

async fn a_reset_needs_a_reason_an_admin_and_someone_else(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.new_admin("root@example.com").await;
    let (user, _) = user_with_totp(&app, "finn@example.com").await;
    let path = format!("/api/v1/admin/users/{}/reset-2fa", user.id);

    // No body at all, no reason, an empty or blank one.
    let bare = app
        .client
        .post(app.url(&path))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 400);
    assert_eq!(
        bare.json::<serde_json::Value>().await.unwrap()["error"],
        "reason_required"
    );
    for body in [
        json!({}),
        json!({"reason": null}),
        json!({"reason": ""}),
        json!({"reason": "  \n\t"}),
    ] {
        reset_2fa(&app, &admin, &user.id, body)
            .await
            .expect_error(400, "reason_required");
    }
    reset_2fa(&app, &admin, &user.id, json!({"reason": "x".repeat(501)}))
        .await
        .expect_error(400, "invalid_request");
    reset_2fa(&app, &admin, "no-such-user", json!({"reason": "why not"}))
        .await
        .expect_error(404, "not_found");
    reset_2fa(&app, &admin, &admin.id, json!({"reason": "my phone died"}))
        .await
        .expect_error(403, "forbidden");
    let other = app.new_user("gus@example.com").await;
    app.post(&path, Some(&other.token), json!({"reason": "I want to"}))
        .await
        .expect_error(403, "forbidden");

    // An admin outside the sudo window must confirm it's them first.
    app.clock.advance(Duration::from_secs(11 * 60));
    reset_2fa(&app, &admin, &user.id, json!({"reason": "locked out"}))
        .await
        .expect_error(403, "reauth_required");
    // Nothing was reset by any of the refusals.
    let me = app.get("/api/v1/me", Some(&user.token)).await.expect(200);
    assert_eq!(me.body["two_factor"]["enabled"], true);
    let events = audit_events(&app, &user.id).await;
    assert!(!events.iter().any(|(kind, _, _)| kind == "2fa_reset"));
    // 500 characters is still a reason.
    app.post("/api/v1/me/reauth", Some(&admin.token), json!({"password": PASSWORD}))
        .await
        .expect(200);
    reset_2fa(&app, &admin, &user.id, json!({"reason": "x".repeat(500)}))
        .await
        .expect(200);
}

async fn a_second_admin_must_approve_when_configured(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_ADMIN_RESET_APPROVALS", "2")]).await;
    let first = app.new_admin("ana@example.com").await;
    let second = app.new_admin("ben@example.com").await;
    let (user, _) = user_with_totp(&app, "cy@example.com").await;

    let asked = reset_2fa(&app, &first, &user.id, json!({"reason": "lost phone"}))
        .await
        .expect(202);
    assert_eq!(asked.body["status"], "awaiting_approval");
    let request_id = asked.body["request_id"].as_str().unwrap().to_string();
    let me = app.get("/api/v1/me", Some(&user.token)).await.expect(200);
    assert_eq!(
        me.body["two_factor"]["enabled"], true,
        "nothing happens before approval"
    );

    let listed = app
        .get("/api/v1/admin/reset-requests", Some(&second.token))
        .await
        .expect(200);
    let requests = listed.body["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["id"], request_id.as_str());
    assert_eq!(requests[0]["user_email"], "cy@example.com");
    assert_eq!(requests[0]["requested_by_email"], "ana@example.com");
    assert_eq!(requests[0]["reason"], "lost phone");

    let approve = format!("/api/v1/admin/reset-requests/{request_id}/approve");
    app.post(&approve, Some(&first.token), json!({}))
        .await
        .expect_error(403, "forbidden");
    app.post(&approve, Some(&user.token), json!({}))
        .await
        .expect_error(403, "forbidden");
    app.post(
        "/api/v1/admin/reset-requests/nope/approve",
        Some(&second.token),
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    let approved = app.post(&approve, Some(&second.token), json!({})).await.expect(200);
    assert_eq!(approved.body["status"], "reset");
    app.post(&approve, Some(&second.token), json!({}))
        .await
        .expect_error(409, "already_approved");

    app.get("/api/v1/me", Some(&user.token))
        .await
        .expect_error(401, "unauthenticated");
    let login = app.login("cy@example.com").await.expect(200);
    assert_eq!(login.body["status"], "authenticated");
    let email = app.email_to("cy@example.com", RESET_SUBJECT).await;
    assert!(email.text.contains("ana@example.com") && email.text.contains("ben@example.com"));
    let events = audit_events(&app, &user.id).await;
    let requested = events
        .iter()
        .find(|(kind, _, _)| kind == "2fa_reset_requested")
        .unwrap();
    assert_eq!(requested.1.as_deref(), Some(first.id.as_str()));
    assert_eq!(requested.2["reason"], "lost phone");
    let reset = events.iter().find(|(kind, _, _)| kind == "2fa_reset").unwrap();
    assert_eq!(reset.1.as_deref(), Some(second.id.as_str()));
    assert_eq!(reset.2["reason"], "lost phone");
    assert_eq!(reset.2["requested_by"], first.id.as_str());
    let listed = app
        .get("/api/v1/admin/reset-requests", Some(&second.token))
        .await
        .expect(200);
    assert_eq!(listed.body["requests"], json!([]));
}

async fn approval_requests_expire_after_a_day(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_ADMIN_RESET_APPROVALS", "2")]).await;
    let first = app.new_admin("ana@example.com").await;
    let second = app.new_admin("ben@example.com").await;
    let (user, _) = user_with_totp(&app, "dee@example.com").await;
    // An admin's own 2FA is not theirs to reset, even by asking a colleague.
    let own = reset_2fa(&app, &first, &second.id, json!({"reason": "ben asked"}))
        .await
        .expect(202);
    app.post(
        &format!(
            "/api/v1/admin/reset-requests/{}/approve",
            own.body["request_id"].as_str().unwrap()
        ),
        Some(&second.token),
        json!({}),
    )
    .await
    .expect_error(403, "forbidden");

    let asked = reset_2fa(&app, &first, &user.id, json!({"reason": "lost phone"}))
        .await
        .expect(202);
    app.clock.advance(Duration::from_secs(24 * 3600 + 1));
    app.post("/api/v1/me/reauth", Some(&second.token), json!({"password": PASSWORD}))
        .await
        .expect(200);
    app.post(
        &format!(
            "/api/v1/admin/reset-requests/{}/approve",
            asked.body["request_id"].as_str().unwrap()
        ),
        Some(&second.token),
        json!({}),
    )
    .await
    .expect_error(410, "request_expired");
    let me = app.get("/api/v1/me", Some(&user.token)).await.expect(200);
    assert_eq!(me.body["two_factor"]["enabled"], true);
}

/// The real binary on the app's database and data directory (so its master key), nothing else
/// from this process's environment.
fn latchkey(app: &TestApp) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LATCHKEY_DATABASE_URL", &app.database_url)
        .env("LATCHKEY_DATA_DIR", app.data_dir.path())
        .env("LATCHKEY_PASSWORD_HASH", "argon2id:m=1024,t=1,p=1")
        .env("RUST_LOG", "warn");
    command
}

async fn the_command_line_resets_a_locked_out_admin(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_ADMIN_RESET_APPROVALS", "2")]).await;
    let admin = app.new_admin("solo@example.com").await;
    app.enroll_totp(&admin.token).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args([
            "user",
            "reset-2fa",
            "--email",
            "Solo@Example.com",
            "--reason",
            "only admin lost phone",
        ])
        .env("LATCHKEY_DATABASE_URL", &app.database_url)
        .env("LATCHKEY_DATA_DIR", app.data_dir.path())
        .env("LATCHKEY_SMTP_URL", app.smtp.url())
        .env("LATCHKEY_PASSWORD_HASH", "argon2id:m=1024,t=1,p=1")
        .env("LATCHKEY_ADMIN_RESET_APPROVALS", "2")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // No approval from the command line: the reset is done, audited with the actor "cli".
    let login = app.login("solo@example.com").await.expect(200);
    assert_eq!(login.body["status"], "authenticated");
    let events = audit_events(&app, &admin.id).await;
    let (_, actor, detail) = events.iter().find(|(kind, _, _)| kind == "2fa_reset").unwrap();
    assert_eq!(actor.as_deref(), Some("cli"));
    assert_eq!(detail["reason"], "only admin lost phone");
    let email = app.email_to("solo@example.com", RESET_SUBJECT).await;
    assert!(email.text.contains("command line"));

    let missing = latchkey(&app)
        .args(["user", "reset-2fa", "--email", "ghost@example.com", "--reason", "x"])
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no account"));
}

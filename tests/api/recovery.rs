//! Email recovery of a lost second factor: the request that reveals nothing, the one-hour link,
//! the waiting period with its notice, reminder and cancel paths, completion with the password (or
//! a new one when it is lost too), and the `recovered` session that may only enroll a new factor.

use std::time::{Duration, Instant};

use latchkey::clock::Clock;
use serde_json::{json, Value};

use crate::common::{spawn_app, spawn_app_with, Backend, Enrolled, ReceivedEmail, TestApp, User, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    recovery_requests_answer_the_same_for_every_address,
    recovery_request_timing_does_not_reveal_accounts,
    recovery_requests_are_limited_per_address,
    email_recovery_completes_after_the_waiting_period_with_the_password,
    lost_password_recovery_waits_longer_and_replaces_the_password,
    recovery_links_expire_and_work_once,
    the_cancel_link_cancels_a_recovery,
    a_signed_in_session_cancels_a_recovery,
    a_second_factor_login_cancels_a_recovery,
    turning_email_recovery_off_refuses_and_cancels_recovery,
    only_one_recovery_is_pending_per_account,
    a_reminder_is_emailed_before_the_waiting_period_ends,
    a_restart_during_the_waiting_period_loses_nothing,
    a_recovered_session_may_only_enroll_a_new_factor,
    wrong_passwords_do_not_use_the_token_up_and_are_throttled,
);

pub const LINK_SUBJECT: &str = "Recover your account";
const STARTED_SUBJECT: &str = "Recovery of your account has started";
const CANCELLED_SUBJECT: &str = "Account recovery was cancelled";
const DAY: u64 = 24 * 3600;

pub async fn user_with_totp(app: &TestApp, email: &str) -> (User, Enrolled) {
    let user = app.new_user(email).await;
    let enrolled = app.enroll_totp(&user.token).await;
    (user, enrolled)
}

/// The `n`-th (from 0) email to `recipient` whose subject contains `subject_part`, waiting for it.
pub async fn nth_email(app: &TestApp, recipient: &str, subject_part: &str, n: usize) -> ReceivedEmail {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let matching: Vec<ReceivedEmail> = app
            .smtp
            .emails_to(recipient)
            .into_iter()
            .filter(|email| email.subject.contains(subject_part))
            .collect();
        if let Some(email) = matching.into_iter().nth(n) {
            return email;
        }
        assert!(
            Instant::now() < deadline,
            "no email #{n} to {recipient} about {subject_part:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last path segment of the first link containing `needle`.
pub fn token_in(email: &ReceivedEmail, needle: &str) -> String {
    let link = email
        .link_containing(needle)
        .unwrap_or_else(|| panic!("no link with {needle} in {:?}", email.text));
    assert!(link.starts_with("http://localhost:8080/"), "{link}");
    link.rsplit('/').next().unwrap().to_string()
}

/// Waits until the background work of `requests` recovery or reset requests is done (they are
/// counted in the same transaction that queues their email) and every queued email was sent.
pub async fn settle(app: &TestApp, requests: i64) {
    let mut db = app.database().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (counted,): (i64,) =
            sqlx::query_as("SELECT CAST(COALESCE(SUM(requests), 0) AS BIGINT) FROM request_counts")
                .fetch_one(&mut db)
                .await
                .unwrap();
        let (queued,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL")
                .fetch_one(&mut db)
                .await
                .unwrap();
        if counted >= requests && queued == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "requests not settled: {counted} counted, {queued} emails queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The kinds of the audit events about `user_id`, oldest first, with actor and detail.
pub async fn audit_events(app: &TestApp, user_id: &str) -> Vec<(String, Option<String>, Value)> {
    let mut db = app.database().await;
    let rows: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT kind, actor_id, detail FROM audit_events WHERE user_id = $1 ORDER BY seq")
            .bind(user_id)
            .fetch_all(&mut db)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(kind, actor, detail)| (kind, actor, serde_json::from_str(&detail).unwrap()))
        .collect()
}

fn kinds(events: &[(String, Option<String>, Value)]) -> Vec<&str> {
    events.iter().map(|(kind, _, _)| kind.as_str()).collect()
}

async fn request(app: &TestApp, email: &str) -> crate::common::Reply {
    app.post("/api/v1/recovery/request", None, json!({"email": email}))
        .await
}

/// Requests recovery and answers the token of the `n`-th link emailed to `email`.
async fn recovery_token(app: &TestApp, email: &str, n: usize) -> String {
    request(app, email).await.expect(202);
    token_in(&nth_email(app, email, LINK_SUBJECT, n).await, "/recover/")
}

async fn confirm(app: &TestApp, token: &str, lost_password: bool) -> crate::common::Reply {
    app.post(
        "/api/v1/recovery/confirm",
        None,
        json!({"token": token, "lost_password": lost_password}),
    )
    .await
}

async fn complete(app: &TestApp, token: &str, password: &str) -> crate::common::Reply {
    app.post(
        "/api/v1/recovery/complete",
        None,
        json!({"token": token, "password": password}),
    )
    .await
}

fn unix(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().expect("a timestamp"))
        .expect("RFC 3339")
        .timestamp()
}

async fn recovery_requests_answer_the_same_for_every_address(backend: Backend) {
    let app = spawn_app(backend).await;
    user_with_totp(&app, "tess@example.com").await;
    app.new_user("plain@example.com").await;

    let answers = [
        request(&app, "tess@example.com").await,
        request(&app, "plain@example.com").await,
        request(&app, "nobody@example.com").await,
        request(&app, "not an address").await,
    ];
    for answer in &answers {
        assert_eq!(answer.status.as_u16(), 202);
        assert_eq!(answer.body, json!({"status": "accepted"}));
    }
    request(&app, "x").await.expect(202);
    app.post("/api/v1/recovery/request", None, json!({"mail": "tess@example.com"}))
        .await
        .expect_error(400, "invalid_request");

    settle(&app, 3).await;
    let link = app.email_to("tess@example.com", LINK_SUBJECT).await;
    assert!(link.link_containing("/recover/").is_some());
    assert!(
        link.text.contains("1 hour") && link.text.contains("72 hours"),
        "{}",
        link.text
    );
    assert!(!link.html.is_empty());
    let explanation = app
        .email_to("plain@example.com", "About your account recovery request")
        .await;
    assert!(
        explanation.link_containing("/recover/").is_none(),
        "no recovery link without 2FA"
    );
    assert!(explanation.link_containing("/forgot-password").is_some());
    assert!(app.smtp.emails_to("nobody@example.com").is_empty());
    assert_eq!(app.smtp.emails_to("plain@example.com").len(), 1);
}

/// The measure: over 30 requests each, the median answer time for existing accounts (each
/// with 2FA, so each gets a link) and for unknown addresses differ by less than 25 ms.
async fn recovery_request_timing_does_not_reveal_accounts(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut existing = Vec::new();
    // Ten accounts, three requests each: all within the hourly limit, so every one sends a link.
    for index in 0..10 {
        let (user, _) = user_with_totp(&app, &format!("timing{index}@example.com")).await;
        existing.push(user.email);
    }
    request(&app, "warm-up@example.com").await.expect(202);
    let mut known_ms = Vec::new();
    let mut unknown_ms = Vec::new();
    for index in 0..30 {
        let known = existing[index % existing.len()].clone();
        let unknown = format!("nobody{index}@example.com");
        // Alternate the order so any drift in the machine's load falls on both sides.
        let order = if index % 2 == 0 {
            [(true, known), (false, unknown)]
        } else {
            [(false, unknown), (true, known)]
        };
        for (is_known, email) in order {
            let started = Instant::now();
            let reply = request(&app, &email).await;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(
                (reply.status.as_u16(), &reply.body),
                (202, &json!({"status": "accepted"}))
            );
            if is_known {
                known_ms.push(elapsed);
            } else {
                unknown_ms.push(elapsed);
            }
        }
    }
    let median = |times: &mut Vec<f64>| {
        times.sort_by(f64::total_cmp);
        (times[14] + times[15]) / 2.0
    };
    let (known, unknown) = (median(&mut known_ms), median(&mut unknown_ms));
    eprintln!("median answer: existing {known:.2} ms, unknown {unknown:.2} ms");
    assert!(
        (known - unknown).abs() < 25.0,
        "existing {known:.2} ms vs unknown {unknown:.2} ms"
    );
    // The work really happened for the existing accounts.
    settle(&app, 61).await;
    for email in &existing {
        nth_email(&app, email, LINK_SUBJECT, 2).await;
    }
}

async fn recovery_requests_are_limited_per_address(backend: Backend) {
    let app = spawn_app(backend).await;
    user_with_totp(&app, "flood@example.com").await;
    for _ in 0..7 {
        request(&app, "flood@example.com").await.expect(202);
    }
    settle(&app, 7).await;
    let links: Vec<ReceivedEmail> = app
        .smtp
        .emails_to("flood@example.com")
        .into_iter()
        .filter(|email| email.subject.contains(LINK_SUBJECT))
        .collect();
    assert_eq!(links.len(), 5, "at most 5 emails an hour per address");
    // An hour later the address may ask again.
    app.clock.advance(Duration::from_secs(3601));
    request(&app, "flood@example.com").await.expect(202);
    nth_email(&app, "flood@example.com", LINK_SUBJECT, 5).await;
}

async fn email_recovery_completes_after_the_waiting_period_with_the_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, _) = user_with_totp(&app, "rhea@example.com").await;
    let token = recovery_token(&app, "rhea@example.com", 0).await;

    let before = app.clock.unix();
    let pending = confirm(&app, &token, false).await.expect(200);
    assert_eq!(pending.body["status"], "pending");
    let completes_at = unix(&pending.body["completes_at"]);
    assert!((completes_at - before - 72 * 3600).abs() <= 2, "default delay 72 h");

    let notice = app.email_to("rhea@example.com", STARTED_SUBJECT).await;
    assert!(notice.link_containing("/recover/cancel/").is_some());
    assert!(notice.text.contains("IP address") && notice.text.contains("When"));
    let me = app.get("/api/v1/me", Some(&user.token)).await.expect(200);
    assert_eq!(unix(&me.body["pending_recovery"]["completes_at"]), completes_at);

    // Not before the end of the waiting period.
    let early = complete(&app, &token, PASSWORD)
        .await
        .expect_error(409, "recovery_pending");
    assert_eq!(unix(&early.body["completes_at"]), completes_at);
    app.clock.advance(Duration::from_secs(72 * 3600 + 1));
    // The body must match the kind of recovery.
    app.post(
        "/api/v1/recovery/complete",
        None,
        json!({"token": token, "new_password": "a brand new password"}),
    )
    .await
    .expect_error(400, "invalid_request");

    let done = complete(&app, &token, PASSWORD).await.expect(200);
    assert_eq!(done.body["status"], "completed");
    assert_eq!(done.body["session_state"], "recovered");
    assert!(done.body["session_token"].as_str().is_some_and(|t| t.len() >= 40));

    // Second factors gone, every earlier session revoked, the owner told.
    app.get("/api/v1/me", Some(&user.token))
        .await
        .expect_error(401, "unauthenticated");
    let login = app.login("rhea@example.com").await.expect(200);
    assert_eq!(login.body["status"], "authenticated", "2FA is off after recovery");
    let email = app.email_to("rhea@example.com", "Your account was recovered").await;
    assert!(
        email.text.contains("set up two-factor authentication again"),
        "{}",
        email.text
    );
    let mut db = app.database().await;
    for table in ["totp_credentials", "backup_codes"] {
        let (count,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1"))
            .bind(&user.id)
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert_eq!(count, 0, "{table} emptied");
    }

    // The token is used up.
    complete(&app, &token, PASSWORD)
        .await
        .expect_error(400, "invalid_token");
    let events = audit_events(&app, &user.id).await;
    let kinds = kinds(&events);
    for kind in ["recovery_requested", "recovery_confirmed", "recovery_completed"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let me = app
        .get("/api/v1/me", done.body["session_token"].as_str())
        .await
        .expect(200);
    assert_eq!(me.body["pending_recovery"], Value::Null);
}

async fn lost_password_recovery_waits_longer_and_replaces_the_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, _) = user_with_totp(&app, "lost@example.com").await;
    let token = recovery_token(&app, "lost@example.com", 0).await;
    let before = app.clock.unix();
    let pending = confirm(&app, &token, true).await.expect(200);
    let completes_at = unix(&pending.body["completes_at"]);
    assert!((completes_at - before - 7 * 24 * 3600).abs() <= 2, "default 7 days");
    let notice = app.email_to("lost@example.com", STARTED_SUBJECT).await;
    assert!(notice.text.contains("password will be replaced"), "{}", notice.text);

    app.clock.advance(Duration::from_secs(72 * 3600 + 1));
    app.post(
        "/api/v1/recovery/complete",
        None,
        json!({"token": token, "new_password": "a brand new password"}),
    )
    .await
    .expect_error(409, "recovery_pending");
    app.clock.advance(Duration::from_secs(4 * DAY));
    complete(&app, &token, PASSWORD)
        .await
        .expect_error(400, "invalid_request");
    app.post(
        "/api/v1/recovery/complete",
        None,
        json!({"token": token, "new_password": "short"}),
    )
    .await
    .expect_error(400, "weak_password");
    let done = app
        .post(
            "/api/v1/recovery/complete",
            None,
            json!({"token": token, "new_password": "a brand new password"}),
        )
        .await
        .expect(200);
    assert_eq!(done.body["session_state"], "recovered");

    app.login("lost@example.com")
        .await
        .expect_error(401, "invalid_credentials");
    let login = app
        .post(
            "/api/v1/login",
            None,
            json!({"email": "lost@example.com", "password": "a brand new password"}),
        )
        .await
        .expect(200);
    assert_eq!(login.body["status"], "authenticated");
    let events = audit_events(&app, &user.id).await;
    let completed = events.iter().find(|(kind, _, _)| kind == "recovery_completed").unwrap();
    assert_eq!(completed.2["password_replaced"], true);
    let email = app.email_to("lost@example.com", "Your account was recovered").await;
    assert!(email.text.contains("password was replaced"), "{}", email.text);
}

async fn recovery_links_expire_and_work_once(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_RECOVERY_DELAY", "1h")]).await;
    user_with_totp(&app, "kim@example.com").await;
    confirm(&app, "no-such-token", false)
        .await
        .expect_error(400, "invalid_token");

    // Confirmed more than an hour after the email: too late.
    let stale = recovery_token(&app, "kim@example.com", 0).await;
    app.clock.advance(Duration::from_secs(3601));
    confirm(&app, &stale, false).await.expect_error(400, "invalid_token");

    let token = recovery_token(&app, "kim@example.com", 1).await;
    confirm(&app, &token, false).await.expect(200);
    confirm(&app, &token, false).await.expect_error(400, "invalid_token");
    complete(&app, "no-such-token", PASSWORD)
        .await
        .expect_error(400, "invalid_token");

    // The token completes from completes_at until 7 days after it, no longer.
    app.clock.advance(Duration::from_secs(3600 + 7 * DAY + 1));
    complete(&app, &token, PASSWORD)
        .await
        .expect_error(400, "invalid_token");
}

async fn the_cancel_link_cancels_a_recovery(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, _) = user_with_totp(&app, "cal@example.com").await;
    let token = recovery_token(&app, "cal@example.com", 0).await;
    confirm(&app, &token, false).await.expect(200);
    let cancel_token = token_in(
        &app.email_to("cal@example.com", STARTED_SUBJECT).await,
        "/recover/cancel/",
    );
    app.post("/api/v1/recovery/cancel", None, json!({"cancel_token": "nope"}))
        .await
        .expect_error(400, "invalid_token");
    let cancelled = app
        .post("/api/v1/recovery/cancel", None, json!({"cancel_token": cancel_token}))
        .await
        .expect(200);
    assert_eq!(cancelled.body, json!({"status": "cancelled"}));
    // Opening the link again says the same, without a second email.
    app.post("/api/v1/recovery/cancel", None, json!({"cancel_token": cancel_token}))
        .await
        .expect(200);

    let email = app.email_to("cal@example.com", CANCELLED_SUBJECT).await;
    assert!(email.text.contains("cancel link"), "{}", email.text);
    settle(&app, 1).await;
    app.clock.advance(Duration::from_secs(73 * 3600));
    complete(&app, &token, PASSWORD)
        .await
        .expect_error(410, "recovery_cancelled");
    let me = app.get("/api/v1/me", Some(&user.token)).await.expect(200);
    assert_eq!(me.body["pending_recovery"], Value::Null);
    assert_eq!(me.body["two_factor"]["enabled"], true, "nothing changed");
    let events = audit_events(&app, &user.id).await;
    let cancels: Vec<_> = events
        .iter()
        .filter(|(kind, _, _)| kind == "recovery_cancelled")
        .collect();
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].2["by"], "cancel_link");
    assert_eq!(
        app.smtp
            .emails_to("cal@example.com")
            .iter()
            .filter(|email| email.subject.contains(CANCELLED_SUBJECT))
            .count(),
        1
    );
}

async fn a_signed_in_session_cancels_a_recovery(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, _) = user_with_totp(&app, "sid@example.com").await;
    app.delete("/api/v1/me/recovery", Some(&user.token))
        .await
        .expect_error(404, "not_found");
    let token = recovery_token(&app, "sid@example.com", 0).await;
    confirm(&app, &token, false).await.expect(200);
    app.delete("/api/v1/me/recovery", Some(&user.token)).await.expect(204);
    app.delete("/api/v1/me/recovery", Some(&user.token))
        .await
        .expect_error(404, "not_found");
    app.email_to("sid@example.com", CANCELLED_SUBJECT).await;
    app.clock.advance(Duration::from_secs(73 * 3600));
    complete(&app, &token, PASSWORD)
        .await
        .expect_error(410, "recovery_cancelled");
    let events = audit_events(&app, &user.id).await;
    let cancel = events.iter().find(|(kind, _, _)| kind == "recovery_cancelled").unwrap();
    assert_eq!(cancel.1.as_deref(), Some(user.id.as_str()));
    assert_eq!(cancel.2["by"], "session");
}

async fn a_second_factor_login_cancels_a_recovery(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, enrolled) = user_with_totp(&app, "lia@example.com").await;
    let token = recovery_token(&app, "lia@example.com", 0).await;
    confirm(&app, &token, false).await.expect(200);
    // The owner still has the authenticator: signing in with it cancels the recovery.
    let session = app.login_with_totp("lia@example.com", &enrolled.secret).await;
    let email = app.email_to("lia@example.com", CANCELLED_SUBJECT).await;
    assert!(
        email.text.contains("signed in with your second factor"),
        "{}",
        email.text
    );
    let me = app.get("/api/v1/me", Some(&session)).await.expect(200);
    assert_eq!(me.body["pending_recovery"], Value::Null);
    app.clock.advance(Duration::from_secs(73 * 3600));
    complete(&app, &token, PASSWORD)
        .await
        .expect_error(410, "recovery_cancelled");
}

async fn turning_email_recovery_off_refuses_and_cancels_recovery(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, _) = user_with_totp(&app, "opt@example.com").await;
    let token = recovery_token(&app, "opt@example.com", 0).await;
    confirm(&app, &token, false).await.expect(200);

    // Sudo is needed: ten minutes after login it is gone.
    app.clock.advance(Duration::from_secs(11 * 60));
    app.put(
        "/api/v1/me/2fa/recovery-settings",
        Some(&user.token),
        json!({"email_recovery": false}),
    )
    .await
    .expect_error(403, "reauth_required");
    app.post("/api/v1/me/reauth", Some(&user.token), json!({"password": PASSWORD}))
        .await
        .expect(200);
    let settings = app
        .put(
            "/api/v1/me/2fa/recovery-settings",
            Some(&user.token),
            json!({"email_recovery": false}),
        )
        .await
        .expect(200);
    assert_eq!(settings.body["email_recovery"], false);
    assert_eq!(settings.body["email_recovery_enabled"], false);
    assert!(settings.body["explanation"].as_str().unwrap().contains("backup codes"));
    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    assert_eq!(status.body["email_recovery_enabled"], false);

    // The pending recovery was cancelled with it.
    app.email_to("opt@example.com", CANCELLED_SUBJECT).await;
    app.clock.advance(Duration::from_secs(73 * 3600));
    complete(&app, &token, PASSWORD)
        .await
        .expect_error(410, "recovery_cancelled");

    // A new request answers the same, but the email only explains: no link.
    request(&app, "opt@example.com").await.expect(202);
    let email = app
        .email_to("opt@example.com", "Account recovery by email is turned off")
        .await;
    assert!(email.link_containing("/recover/").is_none());
    assert!(email.text.contains("backup codes") && email.text.contains("administrator"));
    app.email_to("opt@example.com", "Recovery by email was turned off")
        .await;
    let events = audit_events(&app, &user.id).await;
    assert!(kinds(&events).contains(&"recovery_settings_changed"));
}

async fn only_one_recovery_is_pending_per_account(backend: Backend) {
    let app = spawn_app(backend).await;
    user_with_totp(&app, "uno@example.com").await;
    let first = recovery_token(&app, "uno@example.com", 0).await;
    let second = recovery_token(&app, "uno@example.com", 1).await;
    let pending = confirm(&app, &first, false).await.expect(200);
    let refused = confirm(&app, &second, true).await.expect_error(409, "recovery_pending");
    assert_eq!(refused.body["completes_at"], pending.body["completes_at"]);
}

async fn a_reminder_is_emailed_before_the_waiting_period_ends(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, _) = user_with_totp(&app, "remy@example.com").await;
    let token = recovery_token(&app, "remy@example.com", 0).await;
    confirm(&app, &token, false).await.expect(200);

    // 72 h wait: the reminder is due 24 h before the end, not earlier.
    app.clock.advance(Duration::from_secs(47 * 3600));
    latchkey::recovery::run_due(&app.state).await.unwrap();
    assert_eq!(reminded_at(&app, &user.id).await, None, "not due yet");

    app.clock.advance(Duration::from_secs(3601));
    let reminder = app
        .email_to("remy@example.com", "Reminder: recovery of your account completes soon")
        .await;
    assert!(reminder.text.contains("If it was not you, cancel it now"));
    assert!(reminded_at(&app, &user.id).await.is_some());
    // The reminder's cancel link is the notice's, and it works.
    let notice = app.email_to("remy@example.com", STARTED_SUBJECT).await;
    assert_eq!(
        token_in(&reminder, "/recover/cancel/"),
        token_in(&notice, "/recover/cancel/")
    );
    app.post(
        "/api/v1/recovery/cancel",
        None,
        json!({"cancel_token": token_in(&reminder, "/recover/cancel/")}),
    )
    .await
    .expect(200);
    // Sent once, however many rounds run.
    latchkey::recovery::run_due(&app.state).await.unwrap();
    app.email_to("remy@example.com", CANCELLED_SUBJECT).await;
    // (The clock moved past the request's counting window: only the outbox is left to settle.)
    settle(&app, 0).await;
    let reminders = app
        .smtp
        .emails_to("remy@example.com")
        .into_iter()
        .filter(|email| email.subject.contains("Reminder"))
        .count();
    assert_eq!(reminders, 1);
}

async fn reminded_at(app: &TestApp, user_id: &str) -> Option<i64> {
    let mut db = app.database().await;
    let (reminded_at,): (Option<i64>,) =
        sqlx::query_as("SELECT reminded_at FROM recovery_requests WHERE user_id = $1 AND status = 'pending'")
            .bind(user_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
    reminded_at
}

async fn a_restart_during_the_waiting_period_loses_nothing(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_RECOVERY_DELAY", "10h")]).await;
    user_with_totp(&app, "phoenix@example.com").await;
    let token = recovery_token(&app, "phoenix@example.com", 0).await;
    confirm(&app, &token, false).await.expect(200);
    app.email_to("phoenix@example.com", STARTED_SUBJECT).await;

    let app = app.restart().await;
    // Half of a 10 h wait: the new server's worker sends the reminder from the database alone.
    app.clock.advance(Duration::from_secs(5 * 3600 + 1));
    app.email_to("phoenix@example.com", "Reminder").await;
    complete(&app, &token, PASSWORD)
        .await
        .expect_error(409, "recovery_pending");
    app.clock.advance(Duration::from_secs(5 * 3600));
    let done = complete(&app, &token, PASSWORD).await.expect(200);
    assert_eq!(done.body["session_state"], "recovered");
}

async fn a_recovered_session_may_only_enroll_a_new_factor(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_RECOVERY_DELAY", "0s")]).await;
    let (user, enrolled) = user_with_totp(&app, "nova@example.com").await;
    // Second-factor login was locked by a hundred wrong codes: recovery lifts the lock.
    let mut db = app.database().await;
    sqlx::query(
        "INSERT INTO throttles (subject, kind, failures, retry_at_ms, locked) VALUES ($1, 'second_factor', 100, 0, 1)",
    )
    .bind(&user.id)
    .execute(&mut db)
    .await
    .unwrap();
    let token = recovery_token(&app, "nova@example.com", 0).await;
    confirm(&app, &token, false).await.expect(200);
    // No waiting period configured: completable at once.
    let done = complete(&app, &token, PASSWORD).await.expect(200);
    let recovered = done.body["session_token"].as_str().unwrap().to_string();

    let me = app.get("/api/v1/me", Some(&recovered)).await.expect(200);
    assert_eq!(me.body["session_state"], "recovered");
    assert_eq!(me.body["two_factor"]["enabled"], false);
    app.get("/api/v1/me/2fa", Some(&recovered)).await.expect(200);
    for (path, body) in [
        ("/api/v1/me/sessions", None),
        ("/api/v1/me/activity", None),
        (
            "/api/v1/me/password",
            Some(json!({"new_password": "another good password"})),
        ),
        (
            "/api/v1/me/2fa/recovery-settings",
            Some(json!({"email_recovery": false})),
        ),
    ] {
        let reply = match body {
            None => app.get(path, Some(&recovered)).await,
            Some(body) if path.ends_with("settings") => app.put(path, Some(&recovered), body).await,
            Some(body) => app.post(path, Some(&recovered), body).await,
        };
        reply.expect_error(403, "mfa_enrollment_required");
    }
    app.delete("/api/v1/me/recovery", Some(&recovered))
        .await
        .expect_error(403, "mfa_enrollment_required");

    // The old authenticator is gone; a new one makes the session full, with new backup codes.
    let renewed = app.enroll_totp(&recovered).await;
    assert_ne!(renewed.secret, enrolled.secret);
    assert_eq!(renewed.backup_codes.len(), 10);
    let me = app.get("/api/v1/me", Some(&recovered)).await.expect(200);
    assert_eq!(me.body["session_state"], "full");
    app.get("/api/v1/me/sessions", Some(&recovered)).await.expect(200);
    // The lock was lifted: the new authenticator signs in.
    app.login_with_totp("nova@example.com", &renewed.secret).await;
}

async fn wrong_passwords_do_not_use_the_token_up_and_are_throttled(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_RECOVERY_DELAY", "0s")]).await;
    user_with_totp(&app, "typo@example.com").await;
    let token = recovery_token(&app, "typo@example.com", 0).await;
    confirm(&app, &token, false).await.expect(200);
    for _ in 0..5 {
        complete(&app, &token, "not the password")
            .await
            .expect_error(401, "invalid_credentials");
    }
    // Throttled like login: the next try must wait, even with the right password.
    let throttled = complete(&app, &token, PASSWORD).await.expect_error(429, "rate_limited");
    assert!(throttled.headers.get("retry-after").is_some());
    app.clock.advance(Duration::from_secs(2));
    complete(&app, &token, PASSWORD).await.expect(200);
}

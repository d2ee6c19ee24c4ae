//! TOTP enrollment, two-step login, replay and brute-force protection, backup codes, and
//! disabling 2FA — as an attacker and as a user would try them.

use std::time::Duration;

use latchkey::clock::Clock;
use latchkey::twofactor::totp;
use serde_json::json;

use crate::common::{spawn_app, spawn_app_with, Backend, TestApp};
use crate::on_both_databases;

on_both_databases!(
    a_wait_written_in_whole_seconds_by_the_previous_version_still_holds,
    enrollment_needs_a_correct_code_before_2fa_is_on,
    setup_needs_sudo_and_a_pending_secret_expires,
    login_takes_two_steps_with_adjacent_time_steps,
    a_totp_code_is_never_accepted_twice,
    parallel_logins_with_one_code_let_exactly_one_in,
    challenges_expire_and_die_after_five_wrong_codes,
    second_factor_guessing_is_throttled_then_locked,
    backup_codes_work_once_and_warn_when_low,
    parallel_uses_of_one_backup_code_let_exactly_one_in,
    regenerating_backup_codes_invalidates_the_old_ones,
    disabling_2fa_needs_a_current_factor_and_deletes_everything,
    policy_can_forbid_disabling_2fa,
    moving_to_a_new_phone_keeps_the_old_secret_until_confirmed,
    secrets_and_codes_are_never_stored_in_plaintext,
    reauth_accepts_a_second_factor,
);

async fn mfa(app: &TestApp, challenge: &str, method: &str, code: &str) -> crate::common::Reply {
    app.post(
        "/api/v1/login/mfa",
        None,
        json!({"challenge_token": challenge, "method": method, "code": code}),
    )
    .await
}

async fn enrollment_needs_a_correct_code_before_2fa_is_on(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("ivan@example.com").await;
    app.post(
        "/api/v1/me/2fa/totp/confirm",
        Some(&user.token),
        json!({"code": "123456"}),
    )
    .await
    .expect_error(409, "no_pending_setup");
    let setup = app
        .post("/api/v1/me/2fa/totp/setup", Some(&user.token), json!({}))
        .await
        .expect(200);
    let secret_text = setup.body["secret"].as_str().unwrap();
    let secret = totp::decode_secret_base32(secret_text).unwrap();
    assert_eq!(secret.len(), 20, "160-bit secret");
    let uri = setup.body["otpauth_uri"].as_str().unwrap();
    assert_eq!(
        uri,
        format!("otpauth://totp/latchkey:ivan%40example.com?secret={secret_text}&issuer=latchkey&algorithm=SHA1&digits=6&period=30")
    );
    assert!(setup.body["qr_svg"].as_str().unwrap().starts_with("<svg"));
    assert!(setup.body["expires_at"].as_str().is_some());

    // Nothing changes before a correct code.
    assert_eq!(
        app.get("/api/v1/me/2fa", Some(&user.token)).await.body["enabled"],
        false
    );
    assert_eq!(app.login("ivan@example.com").await.body["status"], "authenticated");
    let wrong = format!(
        "{:06}",
        (app.totp_code(&secret, 0).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    app.post("/api/v1/me/2fa/totp/confirm", Some(&user.token), json!({"code": wrong}))
        .await
        .expect_error(400, "invalid_code");

    let code = app.totp_code(&secret, 0);
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let confirmed = app
        .post(
            "/api/v1/me/2fa/totp/confirm",
            Some(&user.token),
            json!({"code": spaced}),
        )
        .await
        .expect(200);
    assert_eq!(confirmed.body["enabled"], true);
    let codes = confirmed.body["backup_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    for code in codes {
        let code = code.as_str().unwrap();
        assert_eq!(code.len(), 9);
        assert_eq!(&code[4..5], "-");
        assert!(code
            .chars()
            .filter(|c| *c != '-')
            .all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)));
    }
    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    assert_eq!(status.body["enabled"], true);
    assert_eq!(status.body["totp"], true);
    assert_eq!(status.body["backup_codes_remaining"], 10);
    assert_eq!(status.body["required"], false);
    let email = app
        .email_to("ivan@example.com", "Two-factor authentication is on")
        .await;
    assert!(email.html.contains("Two-factor authentication was turned on"));
    // The confirming code's step counts as used.
    let challenge = app.start_mfa_login("ivan@example.com").await;
    mfa(&app, &challenge, "totp", &code)
        .await
        .expect_error(401, "code_already_used");
}

async fn setup_needs_sudo_and_a_pending_secret_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("judy@example.com").await;
    app.clock.advance(Duration::from_secs(601));
    app.post("/api/v1/me/2fa/totp/setup", Some(&user.token), json!({}))
        .await
        .expect_error(403, "reauth_required");
    app.post(
        "/api/v1/me/reauth",
        Some(&user.token),
        json!({"password": crate::common::PASSWORD}),
    )
    .await
    .expect(200);
    let setup = app
        .post("/api/v1/me/2fa/totp/setup", Some(&user.token), json!({}))
        .await
        .expect(200);
    let secret = totp::decode_secret_base32(setup.body["secret"].as_str().unwrap()).unwrap();
    app.clock.advance(Duration::from_secs(15 * 60 + 1));
    let code = app.totp_code(&secret, 0);
    app.post("/api/v1/me/2fa/totp/confirm", Some(&user.token), json!({"code": code}))
        .await
        .expect_error(409, "no_pending_setup");
}

async fn login_takes_two_steps_with_adjacent_time_steps(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("ken@example.com").await;
    let enrolled = app.enroll_totp(&user.token).await;
    // Step past the enrollment code's step, so the previous step is still unused.
    app.next_step();
    let login = app.login("ken@example.com").await.expect(200);
    assert_eq!(login.body["status"], "mfa_required");
    assert_eq!(login.body["methods"], json!(["totp", "backup_code"]));
    assert!(login.body.get("session_token").is_none());
    let challenge = login.body["challenge_token"].as_str().unwrap();
    // Two steps away is refused; the previous step is accepted.
    mfa(&app, challenge, "totp", &app.totp_code(&enrolled.secret, -2))
        .await
        .expect_error(401, "invalid_code");
    mfa(&app, challenge, "totp", &app.totp_code(&enrolled.secret, 2))
        .await
        .expect_error(401, "invalid_code");
    let done = mfa(&app, challenge, "totp", &app.totp_code(&enrolled.secret, -1))
        .await
        .expect(200);
    assert_eq!(done.body["status"], "authenticated");
    assert_eq!(done.body["session_state"], "full");
    assert_eq!(done.body["backup_codes_remaining"], 10);
    let token = done.body["session_token"].as_str().unwrap();
    app.get("/api/v1/verify", Some(token)).await.expect(200);
    // The challenge is single use.
    app.next_step();
    mfa(&app, challenge, "totp", &app.totp_code(&enrolled.secret, 0))
        .await
        .expect_error(401, "challenge_expired");
    // The next step is accepted too.
    app.next_step();
    let challenge = app.start_mfa_login("ken@example.com").await;
    mfa(&app, &challenge, "totp", &app.totp_code(&enrolled.secret, 1))
        .await
        .expect(200);
    // An unknown method is a malformed request.
    let challenge = app.start_mfa_login("ken@example.com").await;
    mfa(&app, &challenge, "sms", "123456")
        .await
        .expect_error(400, "invalid_request");
}

async fn a_totp_code_is_never_accepted_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("leo@example.com").await;
    let enrolled = app.enroll_totp(&user.token).await;
    let code = app.totp_code(&enrolled.secret, 0);
    let first = app.start_mfa_login("leo@example.com").await;
    mfa(&app, &first, "totp", &code).await.expect(200);
    let second = app.start_mfa_login("leo@example.com").await;
    mfa(&app, &second, "totp", &code)
        .await
        .expect_error(401, "code_already_used");
    // An earlier step is a replay too, even though it is inside the window.
    mfa(&app, &second, "totp", &app.totp_code(&enrolled.secret, -1))
        .await
        .expect_error(401, "code_already_used");
}

async fn parallel_logins_with_one_code_let_exactly_one_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("mia@example.com").await;
    let enrolled = app.enroll_totp(&user.token).await;
    let mut challenges = Vec::new();
    for _ in 0..50 {
        challenges.push(app.start_mfa_login("mia@example.com").await);
    }
    let code = app.totp_code(&enrolled.secret, 0);
    let replies =
        futures::future::join_all(challenges.iter().map(|challenge| mfa(&app, challenge, "totp", &code))).await;
    let wins = replies.iter().filter(|reply| reply.status == 200).count();
    let replays = replies
        .iter()
        .filter(|reply| reply.error() == "code_already_used")
        .count();
    assert_eq!(
        wins,
        1,
        "exactly one login wins: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(replays, 49);
}

async fn challenges_expire_and_die_after_five_wrong_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("nick@example.com").await;
    let enrolled = app.enroll_totp(&user.token).await;
    let challenge = app.start_mfa_login("nick@example.com").await;
    for _ in 0..5 {
        mfa(&app, &challenge, "totp", "000000")
            .await
            .expect_error(401, "invalid_code");
    }
    mfa(&app, &challenge, "totp", &app.totp_code(&enrolled.secret, 0))
        .await
        .expect_error(401, "challenge_expired");
    // A fresh challenge waits out the throttle (5 failures), then expires after 5 minutes.
    app.clock.advance(Duration::from_secs(2));
    let challenge = app.start_mfa_login("nick@example.com").await;
    app.clock.advance(Duration::from_secs(301));
    mfa(&app, &challenge, "totp", &app.totp_code(&enrolled.secret, 0))
        .await
        .expect_error(401, "challenge_expired");
    mfa(&app, "no-such-challenge", "totp", "123456")
        .await
        .expect_error(401, "challenge_expired");
}

async fn second_factor_guessing_is_throttled_then_locked(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("olga@example.com").await;
    let enrolled = app.enroll_totp(&user.token).await;
    let mut challenge = app.start_mfa_login("olga@example.com").await;
    for attempt in 1..=5 {
        mfa(&app, &challenge, "totp", "000000")
            .await
            .expect_error(401, "invalid_code");
        if attempt == 5 {
            challenge = app.start_mfa_login("olga@example.com").await;
        }
    }
    // Throttled: answers 429 before any code is checked, even the right one.
    let throttled = mfa(&app, &challenge, "totp", &app.totp_code(&enrolled.secret, 0))
        .await
        .expect_error(429, "rate_limited");
    assert!(throttled.headers.contains_key("retry-after"));
    let email = app.email_to("olga@example.com", "guessing codes").await;
    assert!(email.text.contains("correct password"));
    app.clock.advance(Duration::from_secs(1));
    mfa(&app, &challenge, "totp", &app.totp_code(&enrolled.secret, 0))
        .await
        .expect(200);

    // 100 consecutive failures lock second-factor login for good.
    for _ in 0..100 {
        app.clock.advance(Duration::from_secs(901));
        let challenge = app.start_mfa_login("olga@example.com").await;
        mfa(&app, &challenge, "totp", "000000")
            .await
            .expect_error(401, "invalid_code");
    }
    app.clock.advance(Duration::from_secs(3600));
    app.next_step();
    let challenge = app.start_mfa_login("olga@example.com").await;
    let locked = mfa(&app, &challenge, "totp", &app.totp_code(&enrolled.secret, 0))
        .await
        .expect_error(429, "rate_limited");
    assert_eq!(locked.body["locked"], true);
    app.email_to("olga@example.com", "locked").await;
    let audit_kinds = audit_kinds(&app, &user.id).await;
    assert!(audit_kinds.contains(&"lockout".to_string()));
    assert!(audit_kinds.contains(&"mfa_failed".to_string()));
}

/// During a rolling upgrade, instances of the previous version write the throttle's wait only in
/// whole seconds (`retry_at`); this version honours it.
async fn a_wait_written_in_whole_seconds_by_the_previous_version_still_holds(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("pia@example.com").await;
    let enrolled = app.enroll_totp(&user.token).await;
    app.next_step();
    let mut db = app.database().await;
    sqlx::query(
        "INSERT INTO throttles (subject, kind, failures, retry_at, locked) VALUES ($1, 'second_factor', 5, $2, 0)",
    )
    .bind(&user.id)
    .bind(app.clock.unix() + 60)
    .execute(&mut db)
    .await
    .unwrap();
    let challenge = app.start_mfa_login("pia@example.com").await;
    let throttled = mfa(&app, &challenge, "totp", &app.totp_code(&enrolled.secret, 0))
        .await
        .expect_error(429, "rate_limited");
    let retry_after = throttled.body["retry_after"].as_i64().unwrap();
    assert!((59..=60).contains(&retry_after), "retry_after {retry_after}");
    app.clock.advance(Duration::from_secs(61));
    app.next_step();
    let challenge = app.start_mfa_login("pia@example.com").await;
    mfa(&app, &challenge, "totp", &app.totp_code(&enrolled.secret, 0))
        .await
        .expect(200);
}

pub async fn audit_kinds(app: &TestApp, user_id: &str) -> Vec<String> {
    let events = latchkey::audit::page(&app.state.store, Some(user_id), 0, 10_000)
        .await
        .unwrap()
        .0;
    events.into_iter().map(|event| event.kind).collect()
}

async fn backup_codes_work_once_and_warn_when_low(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("pat@example.com").await;
    let enrolled = app.enroll_totp(&user.token).await;
    // Forgiving input: lower case, no dash.
    let first = enrolled.backup_codes[0].to_lowercase().replace('-', "");
    let challenge = app.start_mfa_login("pat@example.com").await;
    let done = mfa(&app, &challenge, "backup_code", &first).await.expect(200);
    assert_eq!(done.body["backup_codes_remaining"], 9);
    assert!(done.body.get("warning").is_none());
    let email = app.email_to("pat@example.com", "A backup code was used").await;
    assert!(email.text.contains("9 backup codes left"), "{}", email.text);

    let challenge = app.start_mfa_login("pat@example.com").await;
    mfa(&app, &challenge, "backup_code", &enrolled.backup_codes[0])
        .await
        .expect_error(401, "code_already_used");
    mfa(&app, &challenge, "backup_code", "ZZZZ-ZZZZ")
        .await
        .expect_error(401, "invalid_code");

    for (index, code) in enrolled.backup_codes[1..7].iter().enumerate() {
        let challenge = app.start_mfa_login("pat@example.com").await;
        let reply = mfa(&app, &challenge, "backup_code", code).await.expect(200);
        assert_eq!(reply.body["backup_codes_remaining"], 8 - index as i64);
    }
    // Three left now: the answer and the email say to regenerate.
    let me = app.get("/api/v1/me", Some(&user.token)).await.expect(200);
    assert_eq!(me.body["two_factor"]["backup_codes_remaining"], 3);
    let last = app.login("pat@example.com").await;
    let challenge = last.body["challenge_token"].as_str().unwrap();
    let reply = mfa(&app, challenge, "backup_code", &enrolled.backup_codes[7])
        .await
        .expect(200);
    assert_eq!(reply.body["backup_codes_remaining"], 2);
    assert!(reply.body["warning"].as_str().unwrap().contains("backup codes"));
    let low = app.email_to("pat@example.com", "running low").await;
    assert!(low.text.contains("Create a new set now"));
    assert!(audit_kinds(&app, &user.id)
        .await
        .contains(&"backup_codes_low".to_string()));
}

async fn parallel_uses_of_one_backup_code_let_exactly_one_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("quinn@example.com").await;
    let enrolled = app.enroll_totp(&user.token).await;
    let mut challenges = Vec::new();
    for _ in 0..50 {
        challenges.push(app.start_mfa_login("quinn@example.com").await);
    }
    let code = &enrolled.backup_codes[3];
    let replies = futures::future::join_all(
        challenges
            .iter()
            .map(|challenge| mfa(&app, challenge, "backup_code", code)),
    )
    .await;
    assert_eq!(replies.iter().filter(|reply| reply.status == 200).count(), 1);
    assert_eq!(
        replies
            .iter()
            .filter(|reply| reply.error() == "code_already_used")
            .count(),
        49
    );
    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    assert_eq!(status.body["backup_codes_remaining"], 9);
}

async fn regenerating_backup_codes_invalidates_the_old_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("rita@example.com").await;
    app.post("/api/v1/me/2fa/backup-codes/regenerate", Some(&user.token), json!({}))
        .await
        .expect_error(409, "two_factor_disabled");
    let enrolled = app.enroll_totp(&user.token).await;
    app.clock.advance(Duration::from_secs(601));
    app.post("/api/v1/me/2fa/backup-codes/regenerate", Some(&user.token), json!({}))
        .await
        .expect_error(403, "reauth_required");
    app.post(
        "/api/v1/me/reauth",
        Some(&user.token),
        json!({"password": crate::common::PASSWORD}),
    )
    .await
    .expect(200);
    let fresh = app
        .post("/api/v1/me/2fa/backup-codes/regenerate", Some(&user.token), json!({}))
        .await
        .expect(200);
    let fresh: Vec<String> = fresh.body["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().into())
        .collect();
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|code| !enrolled.backup_codes.contains(code)));
    let challenge = app.start_mfa_login("rita@example.com").await;
    mfa(&app, &challenge, "backup_code", &enrolled.backup_codes[0])
        .await
        .expect_error(401, "invalid_code");
    mfa(&app, &challenge, "backup_code", &fresh[0]).await.expect(200);
    app.email_to("rita@example.com", "New backup codes").await;
}

async fn disabling_2fa_needs_a_current_factor_and_deletes_everything(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("sam@example.com").await;
    app.post(
        "/api/v1/me/2fa/disable",
        Some(&user.token),
        json!({"method": "totp", "code": "123456"}),
    )
    .await
    .expect_error(409, "two_factor_disabled");
    let enrolled = app.enroll_totp(&user.token).await;
    let other = app.login_with_totp("sam@example.com", &enrolled.secret).await;
    // A password alone is never enough.
    app.post(
        "/api/v1/me/2fa/disable",
        Some(&user.token),
        json!({"password": crate::common::PASSWORD}),
    )
    .await
    .expect_error(400, "invalid_request");
    app.post(
        "/api/v1/me/2fa/disable",
        Some(&user.token),
        json!({"method": "totp", "code": "000000"}),
    )
    .await
    .expect_error(401, "invalid_code");
    let code = app.totp_code(&enrolled.secret, 0);
    let reply = app
        .post(
            "/api/v1/me/2fa/disable",
            Some(&user.token),
            json!({"method": "totp", "code": code}),
        )
        .await
        .expect(200);
    assert_eq!(reply.body["enabled"], false);
    app.get("/api/v1/me", Some(&other))
        .await
        .expect_error(401, "unauthenticated");
    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    assert_eq!(status.body["enabled"], false);
    assert_eq!(status.body["backup_codes_remaining"], 0);
    let mut db = app.database().await;
    for table in ["totp_credentials", "totp_pending", "backup_codes"] {
        let (count,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1"))
            .bind(&user.id)
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert_eq!(count, 0, "{table} still holds rows");
    }
    // Login is one step again.
    assert_eq!(
        app.login("sam@example.com").await.expect(200).body["status"],
        "authenticated"
    );
    app.email_to("sam@example.com", "turned off").await;
    // Enabling again gives a new secret and new codes.
    let again = app.enroll_totp(&user.token).await;
    assert_ne!(again.secret, enrolled.secret);
    assert_eq!(again.backup_codes.len(), 10);
    assert!(again
        .backup_codes
        .iter()
        .all(|code| !enrolled.backup_codes.contains(code)));
}

async fn policy_can_forbid_disabling_2fa(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_REQUIRE_2FA", "all")]).await;
    app.signup("tess@example.com").await;
    let login = app.login("tess@example.com").await.expect(200);
    assert_eq!(login.body["session_state"], "mfa_enrollment_required");
    let token = login.body["session_token"].as_str().unwrap();
    let enrolled = app.enroll_totp(token).await;
    let status = app.get("/api/v1/me/2fa", Some(token)).await.expect(200);
    assert_eq!(status.body["required"], true);
    let code = app.totp_code(&enrolled.secret, 0);
    app.post(
        "/api/v1/me/2fa/disable",
        Some(token),
        json!({"method": "totp", "code": code}),
    )
    .await
    .expect_error(403, "two_factor_required");
}

async fn moving_to_a_new_phone_keeps_the_old_secret_until_confirmed(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("uma@example.com").await;
    let old = app.enroll_totp(&user.token).await;
    let setup = app
        .post("/api/v1/me/2fa/totp/setup", Some(&user.token), json!({}))
        .await
        .expect(200);
    let new_secret = totp::decode_secret_base32(setup.body["secret"].as_str().unwrap()).unwrap();
    // Until confirmed, the old phone still signs in.
    app.login_with_totp("uma@example.com", &old.secret).await;
    let confirm = app
        .post(
            "/api/v1/me/2fa/totp/confirm",
            Some(&user.token),
            json!({"code": app.totp_code(&new_secret, 0)}),
        )
        .await
        .expect(200);
    assert!(
        confirm.body["backup_codes"].is_null(),
        "2FA was already on: no new codes"
    );
    app.next_step();
    let challenge = app.start_mfa_login("uma@example.com").await;
    mfa(&app, &challenge, "totp", &app.totp_code(&old.secret, 0))
        .await
        .expect_error(401, "invalid_code");
    mfa(&app, &challenge, "totp", &app.totp_code(&new_secret, 0))
        .await
        .expect(200);
    // The old backup codes still work.
    let challenge = app.start_mfa_login("uma@example.com").await;
    mfa(&app, &challenge, "backup_code", &old.backup_codes[0])
        .await
        .expect(200);
}

async fn secrets_and_codes_are_never_stored_in_plaintext(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("vera@example.com").await;
    let setup = app
        .post("/api/v1/me/2fa/totp/setup", Some(&user.token), json!({}))
        .await
        .expect(200);
    let secret_text = setup.body["secret"].as_str().unwrap().to_string();
    let secret = totp::decode_secret_base32(&secret_text).unwrap();
    let confirmed = app
        .post(
            "/api/v1/me/2fa/totp/confirm",
            Some(&user.token),
            json!({"code": app.totp_code(&secret, 0)}),
        )
        .await
        .expect(200);
    let codes: Vec<String> = confirmed.body["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().into())
        .collect();
    let dump = crate::audit_and_email::dump_database(&app).await;
    let needles: Vec<Vec<u8>> = [
        secret.clone(),
        secret_text.into_bytes(),
        user.token.clone().into_bytes(),
    ]
    .into_iter()
    .chain(
        codes
            .iter()
            .flat_map(|code| [code.clone().into_bytes(), code.replace('-', "").into_bytes()]),
    )
    .collect();
    for needle in needles {
        assert!(
            !dump.windows(needle.len()).any(|window| window == needle.as_slice()),
            "a secret, token or code is stored in the clear"
        );
    }
    // A sealed secret copied to another user's row does not decrypt for them.
    let other = app.new_user("walt@example.com").await;
    app.enroll_totp(&other.token).await;
    let mut db = app.database().await;
    let (sealed,): (Vec<u8>,) = sqlx::query_as("SELECT secret FROM totp_credentials WHERE user_id = $1")
        .bind(&user.id)
        .fetch_one(&mut db)
        .await
        .unwrap();
    sqlx::query("UPDATE totp_credentials SET secret = $1 WHERE user_id = $2")
        .bind(&sealed)
        .bind(&other.id)
        .execute(&mut db)
        .await
        .unwrap();
    let challenge = app.start_mfa_login("walt@example.com").await;
    let reply = mfa(&app, &challenge, "totp", &app.totp_code(&secret, 0)).await;
    assert_ne!(reply.status, 200, "a secret moved between users must not work");
}

async fn reauth_accepts_a_second_factor(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("xena@example.com").await;
    let enrolled = app.enroll_totp(&user.token).await;
    app.clock.advance(Duration::from_secs(601));
    app.post(
        "/api/v1/me/reauth",
        Some(&user.token),
        json!({"method": "totp", "code": "000000"}),
    )
    .await
    .expect_error(401, "invalid_code");
    let code = app.totp_code(&enrolled.secret, 0);
    app.post(
        "/api/v1/me/reauth",
        Some(&user.token),
        json!({"method": "totp", "code": code}),
    )
    .await
    .expect(200);
    app.post("/api/v1/me/2fa/backup-codes/regenerate", Some(&user.token), json!({}))
        .await
        .expect(200);
}

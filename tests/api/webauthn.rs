//! Passkeys and security keys (WebAuthn) as a second factor, driven over HTTP with a software
//! authenticator: registration, login, and every way an assertion must be refused.

mod authenticator;

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{spawn_app, spawn_app_with, Backend, Reply, TestApp, User};
use crate::on_both_databases;
use authenticator::SoftAuthenticator;

on_both_databases!(
    registering_the_first_key_turns_2fa_on_with_backup_codes,
    a_key_completes_the_second_login_step,
    a_replayed_assertion_is_refused,
    a_counter_that_goes_backwards_is_refused_as_a_cloned_key,
    another_origin_or_relying_party_is_refused,
    an_expired_or_foreign_ceremony_is_refused,
    registration_needs_sudo_or_an_enrolling_session,
    removing_keys_follows_the_disable_rules,
    disabling_2fa_and_deleting_all_factors_remove_keys,
    refused_assertions_count_like_wrong_codes,
    the_openapi_document_describes_the_key_routes,
);

const ORIGIN: &str = "http://localhost:8080";

async fn register(app: &TestApp, token: &str, key: &mut SoftAuthenticator, name: &str) -> Reply {
    let options = app
        .post(
            "/api/v1/me/2fa/webauthn/register/start",
            Some(token),
            json!({"name": name}),
        )
        .await
        .expect(200);
    let credential = key.register(&options.body);
    app.post("/api/v1/me/2fa/webauthn/register/finish", Some(token), credential)
        .await
}

/// Password step, then the options for the key: answers the challenge token and the options.
async fn start_key_login(app: &TestApp, email: &str) -> (String, Value) {
    let challenge = app.start_mfa_login(email).await;
    let options = app
        .post(
            "/api/v1/login/webauthn/start",
            None,
            json!({"challenge_token": challenge}),
        )
        .await
        .expect(200);
    (challenge, options.body)
}

async fn finish_key_login(app: &TestApp, challenge: &str, credential: Value) -> Reply {
    app.post(
        "/api/v1/login/webauthn/finish",
        None,
        json!({"challenge_token": challenge, "credential": credential}),
    )
    .await
}

async fn login_with_key(app: &TestApp, email: &str, key: &mut SoftAuthenticator) -> Reply {
    let (challenge, options) = start_key_login(app, email).await;
    finish_key_login(app, &challenge, key.assert(&options)).await
}

/// The user's audit events, oldest first, as (kind, detail).
async fn audit_events(app: &TestApp, user_id: &str) -> Vec<(String, Value)> {
    let mut conn = app.database().await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, detail FROM audit_events WHERE user_id = $1 ORDER BY seq")
            .bind(user_id)
            .fetch_all(&mut conn)
            .await
            .expect("audit events");
    rows.into_iter()
        .map(|(kind, detail)| (kind, serde_json::from_str(&detail).unwrap_or(Value::Null)))
        .collect()
}

async fn count_rows(app: &TestApp, table: &str, user_id: &str) -> i64 {
    let mut conn = app.database().await;
    let (count,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1"))
        .bind(user_id)
        .fetch_one(&mut conn)
        .await
        .expect("count");
    count
}

async fn user_with_key(app: &TestApp, email: &str) -> (User, SoftAuthenticator, Vec<String>) {
    let user = app.new_user(email).await;
    let mut key = SoftAuthenticator::new(ORIGIN);
    let registered = register(app, &user.token, &mut key, "Blue key").await.expect(201);
    let codes = registered.body["backup_codes"]
        .as_array()
        .expect("backup codes")
        .iter()
        .map(|code| code.as_str().unwrap().to_string())
        .collect();
    (user, key, codes)
}

async fn registering_the_first_key_turns_2fa_on_with_backup_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("kim@example.com").await;
    let options = app
        .post(
            "/api/v1/me/2fa/webauthn/register/start",
            Some(&user.token),
            json!({"name": "  Blue key "}),
        )
        .await
        .expect(200);
    let public_key = &options.body["publicKey"];
    assert_eq!(
        public_key["rp"]["id"], "localhost",
        "the relying party is the public URL's host"
    );
    assert_eq!(public_key["user"]["name"], "kim@example.com");
    assert!(
        public_key["challenge"].as_str().is_some_and(|c| c.len() >= 43),
        "a 256-bit challenge"
    );
    assert_eq!(public_key["excludeCredentials"], json!([]));
    // Nothing changes before the key answers.
    assert_eq!(app.login("kim@example.com").await.body["status"], "authenticated");

    let mut key = SoftAuthenticator::new(ORIGIN);
    let registered = app
        .post(
            "/api/v1/me/2fa/webauthn/register/finish",
            Some(&user.token),
            key.register(&options.body),
        )
        .await
        .expect(201);
    assert_eq!(registered.body["name"], "Blue key");
    let codes = registered.body["backup_codes"].as_array().expect("backup codes");
    assert_eq!(codes.len(), 10);
    let key_id = registered.body["id"].as_str().unwrap().to_string();

    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    assert_eq!(status.body["enabled"], true);
    assert_eq!(status.body["totp"], false);
    assert_eq!(status.body["backup_codes_remaining"], 10);
    let keys = status.body["webauthn"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["id"], key_id.as_str());
    assert_eq!(keys[0]["name"], "Blue key");
    assert!(keys[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let me = app.get("/api/v1/me", Some(&user.token)).await.expect(200);
    assert_eq!(me.body["two_factor"]["methods"], json!(["backup_code", "webauthn"]));
    let login = app.login("kim@example.com").await.expect(200);
    assert_eq!(login.body["status"], "mfa_required");
    assert_eq!(login.body["methods"], json!(["backup_code", "webauthn"]));
    let email = app.email_to("kim@example.com", "Two-factor authentication is on").await;
    assert!(email.text.contains("Blue key"));

    // A second key: 2FA was already on, so no new codes; the first key is excluded.
    let options = app
        .post(
            "/api/v1/me/2fa/webauthn/register/start",
            Some(&user.token),
            json!({"name": ""}),
        )
        .await
        .expect(200);
    assert_eq!(
        options.body["publicKey"]["excludeCredentials"][0]["id"],
        key.credential_id_text()
    );
    let mut spare = SoftAuthenticator::new(ORIGIN);
    let second = app
        .post(
            "/api/v1/me/2fa/webauthn/register/finish",
            Some(&user.token),
            json!({"credential": spare.register(&options.body)}),
        )
        .await
        .expect(201);
    assert_eq!(second.body["backup_codes"], Value::Null);
    assert_eq!(second.body["name"], "Security key");
    app.email_to("kim@example.com", "A security key was added").await;
    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    assert_eq!(status.body["webauthn"].as_array().unwrap().len(), 2);
    assert_eq!(status.body["backup_codes_remaining"], 10, "the first codes still stand");

    // The same key twice is refused (it was excluded), and so is a key of another account.
    register(&app, &user.token, &mut key, "again")
        .await
        .expect_error(400, "invalid_credential");
    let other = app.new_user("kim.other@example.com").await;
    register(&app, &other.token, &mut key, "borrowed")
        .await
        .expect_error(409, "already_registered");
    app.post(
        "/api/v1/me/2fa/webauthn/register/finish",
        Some(&user.token),
        json!({"id": "x"}),
    )
    .await
    .expect_error(400, "invalid_credential");

    // Renaming.
    let renamed = app
        .client
        .patch(app.url(&format!("/api/v1/me/2fa/webauthn/{key_id}")))
        .bearer_auth(&user.token)
        .json(&json!({"name": "Keyring"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status().as_u16(), 200);
    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    let keys = status.body["webauthn"].as_array().unwrap();
    assert!(
        keys.iter()
            .any(|k| k["id"] == key_id.as_str() && k["name"] == "Keyring"),
        "{keys:?}"
    );
    app.post(
        "/api/v1/me/2fa/webauthn/register/start",
        Some(&user.token),
        json!({"name": "x".repeat(65)}),
    )
    .await
    .expect_error(400, "invalid_name");

    let kinds: Vec<String> = audit_events(&app, &user.id)
        .await
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    let added = kinds.iter().filter(|kind| *kind == "webauthn_added").count();
    assert_eq!(added, 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|kind| *kind == "backup_codes_generated").count(), 1);
}

async fn a_key_completes_the_second_login_step(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, mut key, _) = user_with_key(&app, "lee@example.com").await;
    let (challenge, options) = start_key_login(&app, "lee@example.com").await;
    let public_key = &options["publicKey"];
    assert_eq!(public_key["rpId"], "localhost");
    assert_eq!(public_key["allowCredentials"][0]["id"], key.credential_id_text());
    let assertion = key.assert(&options);
    let reply = finish_key_login(&app, &challenge, assertion.clone()).await.expect(200);
    assert_eq!(reply.body["status"], "authenticated");
    assert_eq!(reply.body["session_state"], "full");
    assert_eq!(reply.body["backup_codes_remaining"], 10);
    let token = reply.body["session_token"].as_str().unwrap();
    let me = app.get("/api/v1/me", Some(token)).await.expect(200);
    assert_eq!(me.body["id"], user.id.as_str());

    // The challenge completed one login; the key's counter and last use are recorded.
    finish_key_login(&app, &challenge, assertion)
        .await
        .expect_error(401, "challenge_expired");
    app.post(
        "/api/v1/login/webauthn/start",
        None,
        json!({"challenge_token": challenge}),
    )
    .await
    .expect_error(401, "challenge_expired");
    let mut conn = app.database().await;
    let (count,): (i64,) = sqlx::query_as("SELECT sign_count FROM webauthn_credentials WHERE user_id = $1")
        .bind(&user.id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let status = app.get("/api/v1/me/2fa", Some(token)).await.expect(200);
    assert!(status.body["webauthn"][0]["last_used_at"].as_str().is_some());
    let events = audit_events(&app, &user.id).await;
    assert!(events
        .iter()
        .any(|(kind, detail)| kind == "mfa_succeeded" && detail["method"] == "webauthn"));

    // Codes still work beside the key, and an account without keys gets no options.
    let other = app.new_user("nokey@example.com").await;
    app.enroll_totp(&other.token).await;
    let challenge = app.start_mfa_login("nokey@example.com").await;
    app.post(
        "/api/v1/login/webauthn/start",
        None,
        json!({"challenge_token": challenge}),
    )
    .await
    .expect_error(409, "no_security_key");
    app.post("/api/v1/login/webauthn/start", None, json!({"challenge_token": "nope"}))
        .await
        .expect_error(401, "challenge_expired");
    app.post(
        "/api/v1/login/webauthn/finish",
        None,
        json!({"challenge_token": "nope"}),
    )
    .await
    .expect_error(400, "invalid_request");
}

async fn a_replayed_assertion_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, mut key, _) = user_with_key(&app, "max@example.com").await;
    let (challenge, options) = start_key_login(&app, "max@example.com").await;
    let recorded = key.assert(&options);
    finish_key_login(&app, &challenge, recorded.clone()).await.expect(200);

    // Someone who captured the assertion replays it on a new login: it signed another challenge.
    let (challenge, _) = start_key_login(&app, "max@example.com").await;
    finish_key_login(&app, &challenge, recorded.clone())
        .await
        .expect_error(401, "invalid_credential");
    // Without asking for options first there is nothing it could answer.
    let challenge = app.start_mfa_login("max@example.com").await;
    finish_key_login(&app, &challenge, recorded)
        .await
        .expect_error(401, "invalid_credential");
    // The genuine key still signs in.
    login_with_key(&app, "max@example.com", &mut key).await.expect(200);
}

async fn a_counter_that_goes_backwards_is_refused_as_a_cloned_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, mut key, _) = user_with_key(&app, "ned@example.com").await;
    key.counter = 4;
    login_with_key(&app, "ned@example.com", &mut key).await.expect(200); // counter 5

    for stale in [3, 5, 0] {
        let (challenge, options) = start_key_login(&app, "ned@example.com").await;
        let copy = key.assert_with_counter(&options, stale);
        finish_key_login(&app, &challenge, copy)
            .await
            .expect_error(401, "invalid_credential");
    }
    let events = audit_events(&app, &user.id).await;
    let clones: Vec<&Value> = events
        .iter()
        .filter(|(kind, _)| kind == "webauthn_possible_clone")
        .map(|(_, detail)| detail)
        .collect();
    assert_eq!(clones.len(), 3, "{events:?}");
    assert_eq!(clones[0]["counter"], 3);
    assert_eq!(clones[0]["stored_counter"], 5);
    let email = app.email_to("ned@example.com", "copy of your security key").await;
    assert!(email.text.contains("Blue key"));
    // The stored counter did not move, and the real key (counter 6) still works.
    login_with_key(&app, "ned@example.com", &mut key).await.expect(200);
}

async fn another_origin_or_relying_party_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("ola@example.com").await;
    let mut phished = SoftAuthenticator::new("https://latchkey.example.net");
    register(&app, &user.token, &mut phished, "Phished")
        .await
        .expect_error(400, "invalid_credential");
    let mut wrong_rp = SoftAuthenticator::new(ORIGIN);
    wrong_rp.rp_id_override = Some("example.net".into());
    register(&app, &user.token, &mut wrong_rp, "Wrong party")
        .await
        .expect_error(400, "invalid_credential");
    assert_eq!(
        app.get("/api/v1/me/2fa", Some(&user.token)).await.body["enabled"],
        false
    );

    let mut key = SoftAuthenticator::new(ORIGIN);
    register(&app, &user.token, &mut key, "Real").await.expect(201);
    // A phishing page relays the login: the browser reports its own origin.
    let (challenge, options) = start_key_login(&app, "ola@example.com").await;
    key.origin = "https://latchkey.example.net".into();
    finish_key_login(&app, &challenge, key.assert(&options))
        .await
        .expect_error(401, "invalid_credential");
    key.origin = ORIGIN.into();
    key.rp_id_override = Some("example.net".into());
    finish_key_login(&app, &challenge, key.assert(&options))
        .await
        .expect_error(401, "invalid_credential");
    key.rp_id_override = None;
    finish_key_login(&app, &challenge, key.assert(&options))
        .await
        .expect(200);
}

async fn an_expired_or_foreign_ceremony_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("pat@example.com").await;
    let mut key = SoftAuthenticator::new(ORIGIN);
    app.post("/api/v1/me/2fa/webauthn/register/finish", Some(&user.token), json!({}))
        .await
        .expect_error(409, "no_pending_setup");
    let options = app
        .post(
            "/api/v1/me/2fa/webauthn/register/start",
            Some(&user.token),
            json!({"name": "Late"}),
        )
        .await
        .expect(200);
    let credential = key.register(&options.body);
    // Bound to the session that started it: another session of the same user cannot finish it.
    let other_session = app.login("pat@example.com").await.body["session_token"]
        .as_str()
        .unwrap()
        .to_string();
    app.post(
        "/api/v1/me/2fa/webauthn/register/finish",
        Some(&other_session),
        credential.clone(),
    )
    .await
    .expect_error(409, "no_pending_setup");
    app.clock.advance(Duration::from_secs(301));
    app.post("/api/v1/me/2fa/webauthn/register/finish", Some(&user.token), credential)
        .await
        .expect_error(409, "no_pending_setup");

    let token = app.login("pat@example.com").await.body["session_token"]
        .as_str()
        .unwrap()
        .to_string();
    register(&app, &token, &mut key, "On time").await.expect(201);
    let (challenge, options) = start_key_login(&app, "pat@example.com").await;
    app.clock.advance(Duration::from_secs(301));
    finish_key_login(&app, &challenge, key.assert(&options))
        .await
        .expect_error(401, "challenge_expired");
    // Options belong to one login challenge: they do not answer another.
    let (_, first_options) = start_key_login(&app, "pat@example.com").await;
    let (challenge, _) = start_key_login(&app, "pat@example.com").await;
    finish_key_login(&app, &challenge, key.assert(&first_options))
        .await
        .expect_error(401, "invalid_credential");
}

async fn registration_needs_sudo_or_an_enrolling_session(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_REQUIRE_2FA", "admins")]).await;
    let user = app.new_user("quinn@example.com").await;
    app.clock.advance(Duration::from_secs(601));
    app.post(
        "/api/v1/me/2fa/webauthn/register/start",
        Some(&user.token),
        json!({"name": "k"}),
    )
    .await
    .expect_error(403, "reauth_required");

    // An administrator who must enroll may pick a key instead of an authenticator app.
    let admin = app.new_admin("root@example.com").await;
    let me = app.get("/api/v1/me", Some(&admin.token)).await.expect(200);
    assert_eq!(me.body["session_state"], "mfa_enrollment_required");
    app.clock.advance(Duration::from_secs(601));
    let mut key = SoftAuthenticator::new(ORIGIN);
    let registered = register(&app, &admin.token, &mut key, "Admin key").await.expect(201);
    assert_eq!(registered.body["backup_codes"].as_array().unwrap().len(), 10);
    let me = app.get("/api/v1/me", Some(&admin.token)).await.expect(200);
    assert_eq!(me.body["session_state"], "full");
    app.get("/api/v1/me/sessions", Some(&admin.token)).await.expect(200);
    let reply = login_with_key(&app, "root@example.com", &mut key).await.expect(200);
    assert_eq!(reply.body["session_state"], "full");
}

async fn removing_keys_follows_the_disable_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, _, backup_codes) = user_with_key(&app, "rae@example.com").await;
    let mut spare = SoftAuthenticator::new(ORIGIN);
    let spare_id = register(&app, &user.token, &mut spare, "Spare").await.expect(201).body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    let first_id = status.body["webauthn"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "Blue key")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stranger = app.new_user("stranger@example.com").await;
    app.delete(&format!("/api/v1/me/2fa/webauthn/{first_id}"), Some(&stranger.token))
        .await
        .expect_error(404, "not_found");
    app.delete("/api/v1/me/2fa/webauthn/nope", Some(&user.token))
        .await
        .expect_error(404, "not_found");

    app.delete(&format!("/api/v1/me/2fa/webauthn/{first_id}"), Some(&user.token))
        .await
        .expect(204);
    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    assert_eq!(status.body["enabled"], true, "the spare key remains");
    assert_eq!(status.body["webauthn"].as_array().unwrap().len(), 1);
    app.email_to("rae@example.com", "A security key was removed").await;

    let other_session = login_with_key(&app, "rae@example.com", &mut spare)
        .await
        .expect(200)
        .body["session_token"]
        .as_str()
        .unwrap()
        .to_string();
    app.clock.advance(Duration::from_secs(601));
    app.delete(&format!("/api/v1/me/2fa/webauthn/{spare_id}"), Some(&user.token))
        .await
        .expect_error(403, "reauth_required");
    app.post(
        "/api/v1/me/reauth",
        Some(&user.token),
        json!({"password": crate::common::PASSWORD}),
    )
    .await
    .expect(200);
    // The last factor cannot go with a password-backed sudo window alone: turning 2FA off needs
    // a current second factor, through /disable.
    app.delete(&format!("/api/v1/me/2fa/webauthn/{spare_id}"), Some(&user.token))
        .await
        .expect_error(409, "last_second_factor");
    app.post(
        "/api/v1/me/2fa/disable",
        Some(&user.token),
        json!({"method": "backup_code", "code": backup_codes[0]}),
    )
    .await
    .expect(200);
    assert_eq!(count_rows(&app, "webauthn_credentials", &user.id).await, 0);
    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    assert_eq!(status.body["enabled"], false);
    assert_eq!(status.body["backup_codes_remaining"], 0);
    assert_eq!(count_rows(&app, "backup_codes", &user.id).await, 0);
    app.get("/api/v1/me", Some(&other_session)).await.expect(401);
    assert_eq!(app.login("rae@example.com").await.body["status"], "authenticated");
    app.email_to("rae@example.com", "Two-factor authentication was turned off")
        .await;
    let events = audit_events(&app, &user.id).await;
    assert_eq!(events.iter().filter(|(kind, _)| kind == "webauthn_removed").count(), 1);
    assert!(events.iter().any(|(kind, _)| kind == "2fa_disabled"));

    // With an authenticator app beside it, a key is not the last factor.
    let enrolled = app.enroll_totp(&user.token).await;
    let mut key = SoftAuthenticator::new(ORIGIN);
    let key_id = register(&app, &user.token, &mut key, "Third").await.expect(201).body["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.delete(&format!("/api/v1/me/2fa/webauthn/{key_id}"), Some(&user.token))
        .await
        .expect(204);
    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    assert_eq!(status.body["enabled"], true);
    assert_eq!(status.body["backup_codes_remaining"], enrolled.backup_codes.len());

    // Policy that requires 2FA forbids removing the last factor.
    let app = spawn_app_with(backend, &[("LATCHKEY_REQUIRE_2FA", "all")]).await;
    let user = app.new_user("sam@example.com").await;
    let mut key = SoftAuthenticator::new(ORIGIN);
    let key_id = register(&app, &user.token, &mut key, "Only").await.expect(201).body["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.delete(&format!("/api/v1/me/2fa/webauthn/{key_id}"), Some(&user.token))
        .await
        .expect_error(403, "two_factor_required");
    assert_eq!(count_rows(&app, "webauthn_credentials", &user.id).await, 1);
}

async fn disabling_2fa_and_deleting_all_factors_remove_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, mut key, codes) = user_with_key(&app, "tia@example.com").await;
    let (_, _) = start_key_login(&app, "tia@example.com").await; // an unfinished ceremony too
    app.post(
        "/api/v1/me/2fa/disable",
        Some(&user.token),
        json!({"method": "backup_code", "code": codes[0]}),
    )
    .await
    .expect(200);
    assert_eq!(count_rows(&app, "webauthn_credentials", &user.id).await, 0);
    assert_eq!(count_rows(&app, "webauthn_ceremonies", &user.id).await, 0);
    let status = app.get("/api/v1/me/2fa", Some(&user.token)).await.expect(200);
    assert_eq!(status.body["webauthn"], json!([]));
    assert_eq!(app.login("tia@example.com").await.body["status"], "authenticated");

    // Recovery and admin reset go through delete_all_factors.
    register(&app, &user.token, &mut key, "Again").await.expect(201);
    let mut conn = app.state.store.begin().await.unwrap();
    latchkey::twofactor::delete_all_factors(&mut conn, &user.id)
        .await
        .unwrap();
    conn.commit().await.unwrap();
    assert_eq!(count_rows(&app, "webauthn_credentials", &user.id).await, 0);
    assert_eq!(app.login("tia@example.com").await.body["status"], "authenticated");
}

async fn refused_assertions_count_like_wrong_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, mut key, _) = user_with_key(&app, "uma@example.com").await;
    let impostor = SoftAuthenticator::new(ORIGIN);
    let (challenge, options) = start_key_login(&app, "uma@example.com").await;
    for _ in 0..4 {
        finish_key_login(&app, &challenge, impostor.assert_with_counter(&options, 1))
            .await
            .expect_error(401, "invalid_credential");
        app.clock.advance(Duration::from_secs(1));
    }
    finish_key_login(&app, &challenge, json!("garbage"))
        .await
        .expect_error(401, "invalid_credential");
    // Five failures: the challenge is dead, even for the right key.
    finish_key_login(&app, &challenge, key.assert(&options))
        .await
        .expect_error(401, "challenge_expired");
    let failures = audit_events(&app, &user.id)
        .await
        .into_iter()
        .filter(|(kind, detail)| kind == "mfa_failed" && detail["method"] == "webauthn")
        .count();
    assert_eq!(failures, 5);
    // The account is throttled like after wrong codes: two more failures, each after waiting out
    // the delay, make it 4 seconds (the clock also moves with real time, so 1 second would race).
    app.clock.advance(Duration::from_secs(2));
    let (challenge, options) = start_key_login(&app, "uma@example.com").await;
    for wait in [0, 3] {
        app.clock.advance(Duration::from_secs(wait));
        finish_key_login(&app, &challenge, impostor.assert_with_counter(&options, 1))
            .await
            .expect_error(401, "invalid_credential");
    }
    let challenge = app.start_mfa_login("uma@example.com").await;
    let reply = app
        .post(
            "/api/v1/login/webauthn/start",
            None,
            json!({"challenge_token": challenge}),
        )
        .await
        .expect_error(429, "rate_limited");
    assert!(reply.headers.contains_key("retry-after"));
    app.clock.advance(Duration::from_secs(60));
    login_with_key(&app, "uma@example.com", &mut key).await.expect(200);
}

async fn the_openapi_document_describes_the_key_routes(backend: Backend) {
    let app = spawn_app(backend).await;
    let document = app.get("/api/openapi.json", None).await.expect(200);
    let paths = &document.body["paths"];
    for (path, method) in [
        ("/api/v1/me/2fa/webauthn/register/start", "post"),
        ("/api/v1/me/2fa/webauthn/register/finish", "post"),
        ("/api/v1/me/2fa/webauthn/{id}", "delete"),
        ("/api/v1/me/2fa/webauthn/{id}", "patch"),
        ("/api/v1/login/webauthn/start", "post"),
        ("/api/v1/login/webauthn/finish", "post"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    assert!(document.body["components"]["schemas"]["Registered"].is_object());
}

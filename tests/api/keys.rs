//! `latchkey keys rotate`, run as the real binary against the database of a real server: after it,
//! the server runs with only the new master key and every user still signs in as before.

use std::sync::Arc;

use latchkey::clock::ManualClock;
use serde_json::json;
use sqlx::Row;

use crate::common::process::{latchkey, run, stderr, stdout};
use crate::common::{spawn_app, spawn_app_on, Backend, PASSWORD};
use crate::on_both_databases;

on_both_databases!(rotating_the_master_key_lets_the_old_one_be_removed);

async fn key_ids(connection: &mut sqlx::AnyConnection, table: &str) -> Vec<String> {
    sqlx::query(&format!("SELECT key_id FROM {table}"))
        .fetch_all(connection)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect()
}

async fn rotating_the_master_key_lets_the_old_one_be_removed(backend: Backend) {
    let mut old = spawn_app(backend).await;
    let old_key = old.master_key();
    let old_key_id = old.state.keys.key_id.clone();

    // Enrolled TOTP, a pending setup, and an email still queued (the SMTP server refuses it).
    let enrolled_user = old.new_user("rotated@example.com").await;
    let enrolled = old.enroll_totp(&enrolled_user.token).await;
    old.email_to("rotated@example.com", "Two-factor authentication is on")
        .await;
    let pending_user = old.new_user("pending@example.com").await;
    let setup = old
        .post("/api/v1/me/2fa/totp/setup", Some(&pending_user.token), json!({}))
        .await
        .expect(200);
    let pending_secret =
        latchkey::twofactor::totp::decode_secret_base32(setup.body["secret"].as_str().unwrap()).unwrap();
    old.smtp.refuse_with(Some(451));
    let regenerated = old
        .post(
            "/api/v1/me/2fa/backup-codes/regenerate",
            Some(&enrolled_user.token),
            json!({}),
        )
        .await
        .expect(200);
    let backup_code = regenerated.body["backup_codes"][0].as_str().unwrap().to_string();
    old.stop().await;
    let mut database = old.database().await;
    let (queued,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND body IS NOT NULL")
        .fetch_one(&mut database)
        .await
        .unwrap();
    assert!(queued >= 1, "the refused email is still queued");

    let generated = run(latchkey(&[]).args(["keys", "generate"]), "");
    assert!(generated.status.success());
    let new_key = stdout(&generated).trim().to_string();
    assert_ne!(new_key, old_key);

    let data_dir = old.data_dir.path().display().to_string();
    let rotate_with = |previous: &str| {
        let settings = [
            ("LATCHKEY_DATABASE_URL", old.database_url.as_str()),
            ("LATCHKEY_DATA_DIR", data_dir.as_str()),
            ("LATCHKEY_MASTER_KEY", new_key.as_str()),
            ("LATCHKEY_PREVIOUS_MASTER_KEYS", previous),
        ];
        run(latchkey(&settings).args(["keys", "rotate"]), "")
    };
    let rotated = rotate_with(&old_key);
    assert!(rotated.status.success(), "{}{}", stdout(&rotated), stderr(&rotated));
    let report = stdout(&rotated);
    assert!(
        report.contains(&format!(
            "1 TOTP secrets, 1 pending TOTP setups, {queued} queued emails, MAC root re-sealed"
        )),
        "{report}"
    );
    assert!(report.contains("can now be removed"), "{report}");

    // Everything now names the new key; nothing is left under the old one.
    let new_key_id = key_ids(&mut database, "key_material").await;
    assert_eq!(new_key_id.len(), 1);
    assert_ne!(new_key_id[0], old_key_id);
    assert_eq!(key_ids(&mut database, "totp_credentials").await, new_key_id);
    assert_eq!(key_ids(&mut database, "totp_pending").await, new_key_id);

    // Running it again finds nothing to do.
    let again = rotate_with("");
    assert!(again.status.success(), "{}{}", stdout(&again), stderr(&again));
    assert!(stdout(&again).contains("0 TOTP secrets, 0 pending TOTP setups, 0 queued emails, MAC root already current"));

    // Only the old key: refused at start-up, naming the missing key, not at the first login.
    let settings = [
        ("LATCHKEY_DATABASE_URL", old.database_url.as_str()),
        ("LATCHKEY_MASTER_KEY", old_key.as_str()),
    ];
    let refused = run(latchkey(&settings).args(["audit", "verify"]), "");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(&new_key_id[0]) && stderr(&refused).contains("LATCHKEY_PREVIOUS_MASTER_KEYS"),
        "{}",
        stderr(&refused)
    );

    // The server with only the new key: TOTP login, the old session token, backup codes, the
    // pending setup and the queued email all still work.
    let clock: Arc<ManualClock> = old.clock.clone();
    let new = spawn_app_on(
        &old.database_url,
        tempfile::tempdir().unwrap(),
        clock,
        &[("LATCHKEY_MASTER_KEY", new_key.as_str())],
    )
    .await;
    assert!(new.state.keys.previous_key_ids().is_empty());
    new.email_to("rotated@example.com", "New backup codes were created")
        .await;
    new.get("/api/v1/me", Some(&enrolled_user.token)).await.expect(200);
    new.login_with_totp("rotated@example.com", &enrolled.secret).await;
    let challenge = new.start_mfa_login("rotated@example.com").await;
    new.post(
        "/api/v1/login/mfa",
        None,
        json!({"challenge_token": challenge, "method": "backup_code", "code": backup_code}),
    )
    .await
    .expect(200);
    let code = new.totp_code(&pending_secret, 0);
    new.post(
        "/api/v1/me/2fa/totp/confirm",
        Some(&pending_user.token),
        json!({"code": code}),
    )
    .await
    .expect(200);
    new.post(
        "/api/v1/login",
        None,
        json!({"email": "pending@example.com", "password": PASSWORD}),
    )
    .await
    .expect(200);

    let verified = run(
        latchkey(&[
            ("LATCHKEY_DATABASE_URL", old.database_url.as_str()),
            ("LATCHKEY_MASTER_KEY", new_key.as_str()),
        ])
        .args(["audit", "verify"]),
        "",
    );
    assert!(verified.status.success(), "{}", stdout(&verified));
}

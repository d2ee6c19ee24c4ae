//! The tamper-evident audit log and email delivery through a real SMTP server.

use std::time::Duration;

use latchkey::audit::{ClientInfo, Event};
use latchkey::clock::Clock;
use serde_json::json;

use crate::common::{spawn_app, spawn_app_with, Backend, SmtpSink, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    audit_chain_verifies_and_detects_tampering,
    concurrent_events_form_one_intact_chain,
    a_rolled_back_append_leaves_the_chain_whole,
    admins_page_through_the_audit_log,
    users_see_their_own_activity,
    emails_have_text_and_html_parts_and_public_links,
    an_email_queued_while_smtp_is_down_arrives_when_it_returns,
    audit_details_hold_no_secrets,
);

/// Every byte the database holds (SQLite files; PostgreSQL rows as text), for plaintext scans.
pub async fn dump_database(app: &TestApp) -> Vec<u8> {
    if app.database_url.starts_with("sqlite:") {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            if let Ok(file) = std::fs::read(app.data_dir.path().join(format!("latchkey.db{suffix}"))) {
                bytes.extend(file);
            }
        }
        return bytes;
    }
    let mut db = app.database().await;
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let mut bytes = Vec::new();
    for (table,) in tables {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&mut db)
            .await
            .unwrap();
        for (row,) in rows {
            // bytea shows as hex: decode every \x… run back to bytes as well.
            for part in row.split("\\\\x").chain(row.split("\\x")) {
                let hex: String = part.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
                if let Ok(decoded) = hex::decode(&hex[..hex.len() - hex.len() % 2]) {
                    bytes.extend(decoded);
                }
            }
            bytes.extend(row.into_bytes());
        }
    }
    bytes
}

async fn audit_chain_verifies_and_detects_tampering(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("amy@example.com").await;
    app.post(
        "/api/v1/login",
        None,
        json!({"email": "amy@example.com", "password": "wrong password"}),
    )
    .await;
    app.post(
        "/api/v1/me/password",
        Some(&user.token),
        json!({"new_password": "a different passphrase"}),
    )
    .await
    .expect(204);
    let verification = latchkey::audit::verify(&app.state.store).await.unwrap();
    assert_eq!(verification.first_broken, None);
    assert!(verification.events >= 4);

    let mut db = app.database().await;
    sqlx::query("UPDATE audit_events SET detail = '{\"role\":\"admin\"}' WHERE seq = 1")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(
        latchkey::audit::verify(&app.state.store).await.unwrap().first_broken,
        Some(1)
    );
    // Put it back exactly, then delete a row in the middle.
    sqlx::query("UPDATE audit_events SET detail = '{\"role\":\"user\"}' WHERE seq = 1")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(
        latchkey::audit::verify(&app.state.store).await.unwrap().first_broken,
        None
    );
    sqlx::query("DELETE FROM audit_events WHERE seq = 3")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(
        latchkey::audit::verify(&app.state.store).await.unwrap().first_broken,
        Some(3)
    );
}

async fn concurrent_events_form_one_intact_chain(backend: Backend) {
    let app = spawn_app(backend).await;
    let signups = (0..50).map(|index| {
        let app = &app;
        async move {
            app.post(
                "/api/v1/signup",
                None,
                json!({"email": format!("user{index}@example.com"), "password": PASSWORD}),
            )
            .await
            .expect(201)
        }
    });
    futures::future::join_all(signups).await;
    let verification = latchkey::audit::verify(&app.state.store).await.unwrap();
    assert_eq!(verification.first_broken, None);
    assert_eq!(verification.events, 50);
}

/// Appends that are rolled back, one with a sign-up made while it is open (which waits for it to
/// end), one followed by another instance taking the sequence number it had used: the chain stays
/// whole, and no later append builds on a rolled-back head.
async fn a_rolled_back_append_leaves_the_chain_whole(backend: Backend) {
    let first = spawn_app(backend).await;
    let second = first.spawn_second_instance(&[]).await;
    let user = first.new_user("chain@example.com").await;
    let events_before = latchkey::audit::verify(&first.state.store).await.unwrap().events;
    let append_and_roll_back = |app: &TestApp| {
        let store = app.state.store.clone();
        let now = app.clock.unix();
        let user_id = user.id.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let event = Event::by_user("test_rolled_back", &user_id);
            latchkey::audit::record(&mut tx, now, &ClientInfo::default(), event)
                .await
                .unwrap();
            tx
        }
    };

    // A sign-up queues behind an open append, which then rolls back.
    let open = append_and_roll_back(&first).await;
    let queued = tokio::spawn({
        let address = first.address.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{address}/api/v1/signup"))
                .json(&json!({"email": "queued@example.com", "password": PASSWORD}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    drop(open);
    assert_eq!(queued.await.unwrap(), 201);

    // Rolled back again; the other instance then takes that sequence number with its own event.
    drop(append_and_roll_back(&first).await);
    second.signup("other@example.com").await;
    first.signup("after@example.com").await;

    let verification = latchkey::audit::verify(&first.state.store).await.unwrap();
    assert_eq!(verification.first_broken, None);
    assert_eq!(
        verification.events,
        events_before + 3,
        "three sign-ups, nothing of the rolled-back appends"
    );
}

async fn admins_page_through_the_audit_log(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.new_admin("boss@example.com").await;
    let user = app.new_user("bea@example.com").await;
    app.get("/api/v1/admin/audit", Some(&user.token))
        .await
        .expect_error(403, "forbidden");
    app.get("/api/v1/admin/audit", None)
        .await
        .expect_error(401, "unauthenticated");
    let all = app
        .get("/api/v1/admin/audit?limit=2", Some(&admin.token))
        .await
        .expect(200);
    let events = all.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["seq"], 1);
    let hash = events[0]["hash"].as_str().unwrap();
    assert!(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let next = all.body["next"].as_i64().unwrap();
    let rest = app
        .get(&format!("/api/v1/admin/audit?after={next}"), Some(&admin.token))
        .await
        .expect(200);
    assert!(rest.body["events"][0]["seq"].as_i64().unwrap() > next);
    assert!(rest.body["next"].is_null());
    let about_bea = app
        .get(&format!("/api/v1/admin/audit?user_id={}", user.id), Some(&admin.token))
        .await
        .expect(200);
    let kinds: Vec<&str> = about_bea.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["signup", "login_succeeded"]);
    app.get("/api/v1/admin/audit?after=abc", Some(&admin.token))
        .await
        .expect_error(400, "invalid_request");
    // Admin endpoints need sudo.
    app.clock.advance(Duration::from_secs(601));
    app.get("/api/v1/admin/audit", Some(&admin.token))
        .await
        .expect_error(403, "reauth_required");
}

async fn users_see_their_own_activity(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("cleo@example.com").await;
    app.new_user("other@example.com").await;
    let activity = app.get("/api/v1/me/activity", Some(&user.token)).await.expect(200);
    let events = activity.body["events"].as_array().unwrap();
    assert!(events.iter().all(|event| event["user_id"] == user.id.as_str()));
    assert_eq!(events[0]["kind"], "login_succeeded", "newest first");
}

async fn emails_have_text_and_html_parts_and_public_links(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("LATCHKEY_PUBLIC_URL", "https://auth.example.com"),
            ("LATCHKEY_PRODUCT_NAME", "Acme Login"),
        ],
    )
    .await;
    let user = app.new_user("dora@example.com").await;
    app.post(
        "/api/v1/me/password",
        Some(&user.token),
        json!({"new_password": "a different passphrase"}),
    )
    .await
    .expect(204);
    let email = app.email_to("dora@example.com", "password was changed").await;
    assert_eq!(email.envelope_to, ["dora@example.com"]);
    assert!(email.subject.starts_with("[Acme Login]"));
    assert!(email.from.contains("no-reply@auth.example.com"));
    assert!(email.text.contains("Your password was changed"));
    assert!(email.html.contains("<h1"));
    assert!(email.text.contains("IP address: 127.0.0.1"));
    assert!(
        email
            .links()
            .iter()
            .all(|link| link.starts_with("https://auth.example.com/")),
        "{:?}",
        email.links()
    );
    assert!(email.link_containing("/account").is_some());
}

async fn an_email_queued_while_smtp_is_down_arrives_when_it_returns(backend: Backend) {
    let port = SmtpSink::unused_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let app = spawn_app_with(backend, &[("LATCHKEY_SMTP_URL", url.as_str())]).await;
    let user = app.new_user("eve@example.com").await;
    app.post(
        "/api/v1/me/password",
        Some(&user.token),
        json!({"new_password": "a different passphrase"}),
    )
    .await
    .expect(204);
    // Let the sender fail at least once.
    let mut db = app.database().await;
    for _ in 0..100 {
        let (attempts,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(attempts), 0) FROM outbox")
            .fetch_one(&mut db)
            .await
            .unwrap();
        if attempts > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sink = SmtpSink::start_on(port).await.unwrap();
    let email = sink
        .wait_for("the delayed email", |email| {
            email.subject.contains("password was changed")
        })
        .await;
    assert!(email.is_to("eve@example.com"));
    // Delivered exactly once, and its body wiped from the outbox.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.emails_to("eve@example.com").len(), 1);
    let (bodies,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE body IS NOT NULL")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(bodies, 0);
}

async fn audit_details_hold_no_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("fay@example.com").await;
    let enrolled = app.enroll_totp(&user.token).await;
    let challenge = app.start_mfa_login("fay@example.com").await;
    app.post(
        "/api/v1/login/mfa",
        None,
        json!({"challenge_token": challenge, "method": "backup_code", "code": enrolled.backup_codes[0]}),
    )
    .await
    .expect(200);
    let (events, _) = latchkey::audit::page(&app.state.store, None, 0, 1000).await.unwrap();
    let text = serde_json::to_string(&events).unwrap();
    for secret in [
        PASSWORD,
        &user.token,
        &challenge,
        &enrolled.backup_codes[0],
        &enrolled.backup_codes[0].replace('-', ""),
    ] {
        assert!(!text.contains(secret), "audit log holds a secret");
    }
}

//! Faults: the server killed with SIGKILL mid-load, the database going away, two instances on one
//! database, and an SMTP server that refuses mail or stops answering for a while. Nothing confirmed may be lost,
//! nothing single-use may work twice, and the audit chain must stay one line.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey::accounts::throttle::delay_after;
use latchkey::twofactor::totp;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::process::{latchkey, run, stdout, ServerProcess};
use crate::common::{
    fresh_database, postgres_url, spawn_app, spawn_app_with, Backend, ReceivedEmail, SmtpSink, TestApp, PASSWORD,
};
use crate::on_both_databases;

on_both_databases!(
    a_killed_server_loses_nothing_it_confirmed,
    two_instances_share_single_use_codes_throttling_and_one_audit_chain,
    mail_refused_for_a_while_is_delivered_exactly_once,
    mail_server_not_answering_for_a_while_is_delivered_exactly_once,
);

/// The Message-ID latchkey gives an email is `<outbox id@latchkey>`.
fn message_id(email: &ReceivedEmail) -> String {
    email
        .raw
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("message-id")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default()
}

/// Every Message-ID received, with how many times it was received.
fn received_counts(smtp: &SmtpSink) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for email in smtp.emails() {
        *counts.entry(message_id(&email)).or_insert(0) += 1;
    }
    counts
}

async fn undelivered_email_ids(database_url: &str) -> Vec<String> {
    undelivered_emails(database_url)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Every email not yet delivered (nor given up), with its failed delivery attempts so far.
async fn undelivered_emails(database_url: &str) -> Vec<(String, i64)> {
    let mut connection = <sqlx::AnyConnection as sqlx::Connection>::connect(database_url)
        .await
        .expect("connect");
    sqlx::query_as("SELECT id, attempts FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL")
        .fetch_all(&mut connection)
        .await
        .expect("outbox")
}

/// Polls until the outbox is empty. A worker killed while it held an email's claim leaves it
/// claimed for the lease (40 s), so the deadline allows for that.
async fn wait_until_outbox_is_empty(database_url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = undelivered_email_ids(database_url).await;
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "emails never delivered: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}

/// A client of a server process: answers the status and JSON body, or `None` when the request
/// did not complete (the server died under it: its outcome is unknown).
async fn call(client: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Option<(StatusCode, Value)> {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.ok()?;
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Some((status, body))
}

struct Enrollment {
    email: String,
    secret: Vec<u8>,
    backup_codes: Vec<String>,
}

#[derive(Default)]
struct LoadResults {
    /// Enrollments whose confirm answered 200.
    confirmed: Vec<Enrollment>,
    /// Backup codes used for a login, and whether the server answered 200 (`false`: unknown, the
    /// server was killed during the request).
    used_codes: Vec<(String, String, bool)>,
}

/// One user after another: sign up, sign in, set up and confirm TOTP, then sign in with a backup
/// code. Stops at the first request the server does not answer.
async fn enroll_and_log_in(address: String, worker: usize, results: Arc<Mutex<LoadResults>>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let url = |path: &str| format!("{address}{path}");
    for round in 0.. {
        let email = format!("load-{worker}-{round}@example.com");
        let credentials = json!({"email": email, "password": PASSWORD});
        let Some((StatusCode::CREATED, _)) = call(&client, url("/api/v1/signup"), None, credentials.clone()).await
        else {
            return;
        };
        let Some((StatusCode::OK, login)) = call(&client, url("/api/v1/login"), None, credentials.clone()).await else {
            return;
        };
        let token = login["session_token"].as_str().unwrap_or_default().to_string();
        let Some((StatusCode::OK, setup)) =
            call(&client, url("/api/v1/me/2fa/totp/setup"), Some(&token), json!({})).await
        else {
            return;
        };
        let secret = totp::decode_secret_base32(setup["secret"].as_str().unwrap_or_default()).unwrap();
        let code = totp::code_for_step(&secret, totp::step_at(now()));
        let Some((status, confirmed)) = call(
            &client,
            url("/api/v1/me/2fa/totp/confirm"),
            Some(&token),
            json!({"code": code}),
        )
        .await
        else {
            return;
        };
        assert_eq!(status, StatusCode::OK, "{confirmed}");
        let backup_codes: Vec<String> = serde_json::from_value(confirmed["backup_codes"].clone()).unwrap();
        let first_code = backup_codes[0].clone();
        results.lock().unwrap().confirmed.push(Enrollment {
            email: email.clone(),
            secret,
            backup_codes,
        });
        let Some((StatusCode::OK, challenge)) = call(&client, url("/api/v1/login"), None, credentials).await else {
            return;
        };
        let body =
            json!({"challenge_token": challenge["challenge_token"], "method": "backup_code", "code": first_code});
        let answered = call(&client, url("/api/v1/login/mfa"), None, body).await;
        if let Some((status, body)) = &answered {
            assert_eq!(*status, StatusCode::OK, "{body}");
        }
        results
            .lock()
            .unwrap()
            .used_codes
            .push((email, first_code, answered.is_some()));
        if answered.is_none() {
            return;
        }
    }
}

/// Polls `condition` every 20 ms for up to 60 s.
async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_killed_server_loses_nothing_it_confirmed(backend: Backend) {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database(backend, data_dir.path()).await;
    let smtp = SmtpSink::start().await;
    let master_key = latchkey::crypto::generate_master_key();
    let data_path = data_dir.path().display().to_string();
    let smtp_url = smtp.url();
    let settings = [
        ("LATCHKEY_DATABASE_URL", database_url.as_str()),
        ("LATCHKEY_DATA_DIR", data_path.as_str()),
        ("LATCHKEY_MASTER_KEY", master_key.as_str()),
        ("LATCHKEY_SMTP_URL", smtp_url.as_str()),
        ("LATCHKEY_PASSWORD_HASH", "argon2id:m=1024,t=1,p=1"),
        ("LATCHKEY_BACKGROUND_INTERVAL", "100ms"),
        ("LATCHKEY_REQUIRE_2FA", "none"),
    ];
    let server = tokio::task::block_in_place(|| ServerProcess::start(&settings, data_dir.path()));

    let results = Arc::new(Mutex::new(LoadResults::default()));
    let workers: Vec<_> = (0..4)
        .map(|worker| tokio::spawn(enroll_and_log_in(server.address.clone(), worker, results.clone())))
        .collect();
    let confirmed = || results.lock().unwrap().confirmed.len();
    wait_for("enrollments", || confirmed() >= 8).await;
    // From here on the SMTP server refuses: emails pile up in the outbox, as they would during
    // an outage, and must survive the crash.
    smtp.refuse_with(Some(451));
    let before = confirmed();
    wait_for("refused emails and more enrollments", || {
        smtp.refused_count() >= 2 && confirmed() >= before + 3
    })
    .await;
    server.kill();
    for worker in workers {
        worker.await.unwrap();
    }
    smtp.refuse_with(None);
    let received_before_restart = received_counts(&smtp);
    let queued_at_the_kill = undelivered_email_ids(&database_url).await;
    assert!(
        !queued_at_the_kill.is_empty(),
        "some emails were queued when the server died"
    );

    let restarted = std::time::Instant::now();
    let server = tokio::task::block_in_place(|| ServerProcess::start(&settings, data_dir.path()));
    let ready_after = restarted.elapsed();
    wait_until_outbox_is_empty(&database_url).await;
    eprintln!(
        "killed with {} confirmed enrollments and {} emails queued; restarted in {ready_after:?}, queue drained after {:?}",
        results.lock().unwrap().confirmed.len(),
        queued_at_the_kill.len(),
        restarted.elapsed()
    );
    let received = received_counts(&smtp);
    for id in &queued_at_the_kill {
        let message = format!("<{id}@latchkey>");
        assert!(!received_before_restart.contains_key(&message));
        assert_eq!(received.get(&message), Some(&1), "queued email {id} delivered once");
    }
    let duplicates: Vec<_> = received.iter().filter(|(_, count)| **count > 1).collect();
    assert!(duplicates.is_empty(), "emails delivered twice: {duplicates:?}");

    let verified = run(latchkey(&settings).args(["audit", "verify"]), "");
    assert!(verified.status.success(), "{}", stdout(&verified));

    // Every enrollment confirmed before the kill still works: TOTP and its unused backup codes.
    let client = reqwest::Client::new();
    let url = |path: &str| server.url(path);
    let challenge = |email: String| {
        let client = client.clone();
        let login_url = url("/api/v1/login");
        async move {
            let (status, body) = call(&client, login_url, None, json!({"email": email, "password": PASSWORD}))
                .await
                .unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body["status"], "mfa_required", "2FA survived: {body}");
            body["challenge_token"].as_str().unwrap().to_string()
        }
    };
    let second_step = |challenge: String, method: &str, code: String| {
        let body = json!({"challenge_token": challenge, "method": method, "code": code});
        call(&client, url("/api/v1/login/mfa"), None, body)
    };
    let enrollments = std::mem::take(&mut results.lock().unwrap().confirmed);
    for enrollment in &enrollments {
        // The confirming code's step is used; the next step's code is the first one left.
        let code = totp::code_for_step(&enrollment.secret, totp::step_at(now()) + 1);
        let (status, body) = second_step(challenge(enrollment.email.clone()).await, "totp", code)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{}: {body}", enrollment.email);
        let (status, body) = second_step(
            challenge(enrollment.email.clone()).await,
            "backup_code",
            enrollment.backup_codes[1].clone(),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK, "{}: {body}", enrollment.email);
    }
    // No backup code works twice: one accepted before the kill is used up; one whose answer was
    // lost in the kill was either used (then it is refused now) or not (then it works once).
    let used_codes = std::mem::take(&mut results.lock().unwrap().used_codes);
    assert!(!used_codes.is_empty());
    for (email, code, answered) in used_codes {
        let mut accepted = usize::from(answered);
        for _ in 0..2 {
            let (status, body) = second_step(challenge(email.clone()).await, "backup_code", code.clone())
                .await
                .unwrap();
            match status {
                StatusCode::OK => accepted += 1,
                _ => assert_eq!(body["error"], "code_already_used", "{email}: {body}"),
            }
        }
        if answered {
            assert_eq!(accepted, 1, "backup code of {email} accepted {accepted} times");
        } else {
            assert!(accepted <= 1, "backup code of {email} accepted {accepted} times");
        }
    }
    server.terminate();
}

async fn mfa(app: &TestApp, challenge: &str, method: &str, code: &str) -> crate::common::Reply {
    let body = json!({"challenge_token": challenge, "method": method, "code": code});
    app.post("/api/v1/login/mfa", None, body).await
}

async fn two_instances_share_single_use_codes_throttling_and_one_audit_chain(backend: Backend) {
    let first = spawn_app(backend).await;
    let second = first.spawn_second_instance(&[]).await;
    let email = "twins@example.com";
    let user = first.new_user(email).await;
    let enrolled = first.enroll_totp(&user.token).await;

    // A TOTP code accepted by one instance is a replay on the other.
    let code = first.totp_code(&enrolled.secret, 0);
    let on_second = second.start_mfa_login(email).await;
    mfa(&first, &first.start_mfa_login(email).await, "totp", &code)
        .await
        .expect(200);
    mfa(&second, &on_second, "totp", &code)
        .await
        .expect_error(401, "code_already_used");
    first.next_step();

    // The same for a backup code, and for one raced on both at once: exactly one login.
    let backup_code = &enrolled.backup_codes[0];
    let on_first = first.start_mfa_login(email).await;
    mfa(
        &second,
        &second.start_mfa_login(email).await,
        "backup_code",
        backup_code,
    )
    .await
    .expect(200);
    mfa(&first, &on_first, "backup_code", backup_code)
        .await
        .expect_error(401, "code_already_used");
    let raced = &enrolled.backup_codes[1];
    let mut challenges = Vec::new();
    for index in 0..10 {
        let app = if index % 2 == 0 { &first } else { &second };
        challenges.push((app, app.start_mfa_login(email).await));
    }
    let answers = futures::future::join_all(
        challenges
            .iter()
            .map(|(app, challenge)| mfa(app, challenge, "backup_code", raced)),
    )
    .await;
    let winners = answers.iter().filter(|reply| reply.status == StatusCode::OK).count();
    assert_eq!(winners, 1, "{:?}", answers.iter().map(|r| &r.body).collect::<Vec<_>>());

    // Throttling is per account in the database: wrong codes alternately on each instance add up
    // to the 5 consecutive failures after which both make the account wait (the clock is moved
    // past each wait, so that 7 failures are recorded and the last wait is 4 s).
    let valid: BTreeSet<String> = (-2..=2)
        .map(|offset| first.totp_code(&enrolled.secret, offset))
        .collect();
    let wrong = (0..1_000_000)
        .map(|number| format!("{number:06}"))
        .find(|code| !valid.contains(code))
        .unwrap();
    for failures_so_far in 0..7 {
        let app = if failures_so_far % 2 == 0 { &first } else { &second };
        let challenge = app.start_mfa_login(email).await;
        first
            .clock
            .advance(Duration::from_secs(delay_after(failures_so_far) as u64));
        mfa(app, &challenge, "totp", &wrong)
            .await
            .expect_error(401, "invalid_code");
    }
    for app in [&first, &second] {
        let reply = mfa(app, &app.start_mfa_login(email).await, "totp", &wrong)
            .await
            .expect_error(429, "rate_limited");
        assert!(reply.headers.contains_key("retry-after"));
    }

    // Concurrent events on both instances form one unbroken chain.
    let signups = (0..24).map(|index| {
        let app = if index % 2 == 0 { &first } else { &second };
        async move {
            let email = format!("chain-{index}@example.com");
            app.signup(&email).await;
            app.login(&email).await.expect(200);
        }
    });
    futures::future::join_all(signups).await;
    let verification = latchkey::audit::verify(&second.state.store).await.unwrap();
    assert_eq!(verification.first_broken, None);
    let mut database = first.database().await;
    let (count, highest): (i64, i64) = sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM audit_events")
        .fetch_one(&mut database)
        .await
        .unwrap();
    assert_eq!(verification.events, count);
    assert_eq!(count, highest, "sequence numbers have no gaps or forks");
    assert!(count >= 48, "every signup and login recorded: {count}");
}

async fn mail_refused_for_a_while_is_delivered_exactly_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.smtp.refuse_with(Some(451));
    let mut recipients = Vec::new();
    for index in 0..3 {
        let email = format!("refused-{index}@example.com");
        let user = app.new_user(&email).await;
        app.enroll_totp(&user.token).await;
        app.post("/api/v1/me/2fa/backup-codes/regenerate", Some(&user.token), json!({}))
            .await
            .expect(200);
        recipients.push(email);
    }
    let queued = undelivered_email_ids(&app.database_url).await;
    assert_eq!(queued.len(), 6, "two notices for each of three users");
    wait_for("every email refused at least once", || app.smtp.refused_count() >= 6).await;
    assert!(app.smtp.emails().is_empty(), "nothing got through while refusing");

    app.smtp.refuse_with(None);
    // Retries back off; move the clock past them rather than waiting.
    app.clock.advance(Duration::from_secs(3600));
    for email in &recipients {
        app.smtp.wait_for_count(email, 2).await;
    }
    assert_each_delivered_once(&app, &queued).await;
}

/// The SMTP server accepts connections but never answers: each send is given up after
/// `LATCHKEY_SMTP_TIMEOUT` and retried; once it answers again every email arrives once.
async fn mail_server_not_answering_for_a_while_is_delivered_exactly_once(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_SMTP_TIMEOUT", "1s")]).await;
    app.smtp.stall_new_connections(true);
    let email = "stalled@example.com";
    let user = app.new_user(email).await;
    app.enroll_totp(&user.token).await;
    app.post("/api/v1/me/2fa/backup-codes/regenerate", Some(&user.token), json!({}))
        .await
        .expect(200);
    let queued = undelivered_email_ids(&app.database_url).await;
    assert_eq!(queued.len(), 2, "two notices queued");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempts: Vec<i64> = undelivered_emails(&app.database_url)
            .await
            .into_iter()
            .map(|(_, attempts)| attempts)
            .collect();
        if attempts.len() == 2 && attempts.iter().all(|&attempts| attempts >= 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sends never timed out: attempts {attempts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app.smtp.stalled_count() >= 2, "each attempt met a silent server");
    assert!(app.smtp.emails().is_empty(), "nothing got through while silent");

    app.smtp.stall_new_connections(false);
    app.clock.advance(Duration::from_secs(3600));
    app.smtp.wait_for_count(email, 2).await;
    assert_each_delivered_once(&app, &queued).await;
}

/// Once the outbox is empty, the sink has received exactly the `queued` emails, each once.
async fn assert_each_delivered_once(app: &TestApp, queued: &[String]) {
    wait_until_outbox_is_empty(&app.database_url).await;
    let received = received_counts(&app.smtp);
    assert_eq!(received.len(), queued.len());
    for id in queued {
        assert_eq!(
            received.get(&format!("<{id}@latchkey>")),
            Some(&1),
            "{id} delivered once"
        );
    }
}

/// PostgreSQL refuses connections to latchkey's database: every request that needs it answers
/// 503 `service_unavailable` (JSON, with Retry-After), /readyz fails, /healthz still answers, and
/// when connections are allowed again the server recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_answers_503_and_recovers_by_itself() {
    let Some(admin_url) = postgres_url() else {
        eprintln!("LATCHKEY_TEST_POSTGRES_URL is not set: database outage test not run");
        return;
    };
    let app = spawn_app(Backend::Postgres).await;
    let user = app.new_user("outage@example.com").await;
    let database_name = url::Url::parse(&app.database_url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_string();
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
        .await
        .unwrap();
    sqlx::query(&format!("ALTER DATABASE {database_name} ALLOW_CONNECTIONS false"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&database_name)
    .execute(&mut admin)
    .await
    .unwrap();

    app.get("/readyz", None).await.expect(503);
    app.get("/healthz", None).await.expect(200);
    let credentials = json!({"email": "outage@example.com", "password": PASSWORD});
    let replies = [
        app.post("/api/v1/login", None, credentials.clone()).await,
        app.get("/api/v1/me", Some(&user.token)).await,
        app.post(
            "/api/v1/signup",
            None,
            json!({"email": "new@example.com", "password": PASSWORD}),
        )
        .await,
    ];
    for reply in replies {
        let reply = reply.expect_error(503, "service_unavailable");
        assert!(reply.headers.contains_key("retry-after"));
    }

    sqlx::query(&format!("ALTER DATABASE {database_name} ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.get("/readyz", None).await.status != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.get("/api/v1/me", Some(&user.token)).await.expect(200);
    app.post("/api/v1/login", None, credentials).await.expect(200);
}

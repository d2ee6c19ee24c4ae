//! Attacks latchkey must stop, one test per attack, named after it. Others live beside the feature
//! they attack: the backup-code race in `two_factor::parallel_uses_of_one_backup_code_let_exactly_one_in`
//! (50 parallel uses, one login), the TOTP race in `two_factor::parallel_logins_with_one_code_let_exactly_one_in`,
//! the same across two instances in `faults::two_instances_share_single_use_codes_throttling_and_one_audit_chain`,
//! and malformed input of every kind in `fuzz`. Open redirects in `next=` belong to the pages.

use std::time::{Duration, Instant};

use latchkey::accounts::throttle::{delay_after, FREE_FAILURES, LOCK_AFTER_FAILURES};
use latchkey::twofactor::totp;
use serde_json::json;

use crate::common::process::{latchkey, run, stdout, ServerProcess};
use crate::common::{spawn_app, spawn_app_with, Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(totp_replay, session_fixation);

/// Production Argon2 parameters: timing only means something with the real cost.
const PRODUCTION_HASH: (&str, &str) = ("LATCHKEY_PASSWORD_HASH", "argon2id:m=19456,t=2,p=1");
const TRIES: usize = 30;
const TOLERANCE: Duration = Duration::from_millis(25);

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times `TRIES` requests of two kinds, interleaved (and taking turns at going first) so that both
/// see the same background load from the tests running beside this one.
async fn compare_timings<A, B>(
    mut first: impl FnMut(usize) -> A,
    mut second: impl FnMut(usize) -> B,
) -> (Duration, Duration)
where
    A: std::future::Future<Output = ()>,
    B: std::future::Future<Output = ()>,
{
    let (mut first_samples, mut second_samples) = (Vec::new(), Vec::new());
    for index in 0..TRIES {
        let timed_first = async {
            let started = Instant::now();
            first(index).await;
            started.elapsed()
        };
        let timed_second = async {
            let started = Instant::now();
            second(index).await;
            started.elapsed()
        };
        if index % 2 == 0 {
            first_samples.push(timed_first.await);
            second_samples.push(timed_second.await);
        } else {
            second_samples.push(timed_second.await);
            first_samples.push(timed_first.await);
        }
    }
    (median(first_samples), median(second_samples))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_enumeration_by_login() {
    let app = spawn_app_with(Backend::Sqlite, &[PRODUCTION_HASH]).await;
    // One account per try: a sixth wrong password for one account would be throttled (429).
    for index in 0..TRIES {
        app.signup(&format!("known-{index}@example.com")).await;
    }
    let wrong_password = |email: String| json!({"email": email, "password": "not the password at all"});
    let unknown = app
        .post("/api/v1/login", None, wrong_password("nobody@example.com".into()))
        .await
        .expect_error(401, "invalid_credentials");
    let known = app
        .post("/api/v1/login", None, wrong_password("known-0@example.com".into()))
        .await
        .expect_error(401, "invalid_credentials");
    assert_eq!(
        unknown.body, known.body,
        "same body for unknown email and wrong password"
    );

    let (known_median, unknown_median) = compare_timings(
        |index| {
            let body = wrong_password(format!("known-{}@example.com", (index + 1) % TRIES));
            let app = &app;
            async move {
                app.post("/api/v1/login", None, body).await.expect(401);
            }
        },
        |index| {
            let body = wrong_password(format!("unknown-{index}@example.com"));
            let app = &app;
            async move {
                app.post("/api/v1/login", None, body).await.expect(401);
            }
        },
    )
    .await;
    eprintln!("login median: unknown email {unknown_median:?}, wrong password {known_median:?}");
    assert!(
        unknown_median.abs_diff(known_median) <= TOLERANCE,
        "login timing reveals accounts: unknown {unknown_median:?} vs known {known_median:?}"
    );
}

/// Sign-up answers 409 `email_taken` by contract (API.md), so its status tells whether an address
/// has an account; what must not happen is a cheap way to ask: a taken address still costs a
/// full password hash, so probing addresses is as slow as signing up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_enumeration_by_signup_timing() {
    let app = spawn_app_with(Backend::Sqlite, &[PRODUCTION_HASH]).await;
    app.signup("taken@example.com").await;
    let (taken_median, new_median) = compare_timings(
        |_| {
            let app = &app;
            async move {
                let body = json!({"email": "taken@example.com", "password": PASSWORD});
                app.post("/api/v1/signup", None, body)
                    .await
                    .expect_error(409, "email_taken");
            }
        },
        |index| {
            let app = &app;
            async move {
                let body = json!({"email": format!("new-{index}@example.com"), "password": PASSWORD});
                app.post("/api/v1/signup", None, body).await.expect(201);
            }
        },
    )
    .await;
    eprintln!("signup median: taken {taken_median:?}, new {new_median:?}");
    assert!(
        taken_median.abs_diff(new_median) <= TOLERANCE,
        "signup timing differs: taken {taken_median:?} vs new {new_median:?}"
    );

    // With sign-up closed, every address gets the same answer.
    let closed = spawn_app_with(Backend::Sqlite, &[("LATCHKEY_SIGNUP", "closed")]).await;
    let mut answers = Vec::new();
    for email in ["taken@example.com", "nobody@example.com"] {
        let body = json!({"email": email, "password": PASSWORD});
        answers.push(closed.post("/api/v1/signup", None, body).await.expect(403).body);
    }
    assert_eq!(answers[0], answers[1]);
}

async fn mfa(app: &TestApp, challenge: &str, method: &str, code: &str) -> crate::common::Reply {
    let body = json!({"challenge_token": challenge, "method": method, "code": code});
    app.post("/api/v1/login/mfa", None, body).await
}

/// An attacker who watched a code being typed (shoulder surfing, a phishing proxy, a keylogger)
/// replays it within its 90-second window: refused, and so is any earlier step's code.
async fn totp_replay(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.new_user("replayed@example.com").await;
    let enrolled = app.enroll_totp(&user.token).await;
    let current = app.totp_code(&enrolled.secret, 0);
    let previous = app.totp_code(&enrolled.secret, -1);
    mfa(&app, &app.start_mfa_login(&user.email).await, "totp", &current)
        .await
        .expect(200);
    for stolen in [&current, &previous] {
        mfa(&app, &app.start_mfa_login(&user.email).await, "totp", stolen)
            .await
            .expect_error(401, "code_already_used");
    }
    // Spelled differently, it is still the same code.
    let spaced = format!("{} {}", &current[..3], &current[3..]);
    mfa(&app, &app.start_mfa_login(&user.email).await, "totp", &spaced)
        .await
        .expect_error(401, "code_already_used");
}

/// An attacker plants a session token of their choosing (a cookie set through a sibling domain, a
/// link with a token) hoping the victim signs in "into" it. latchkey never accepts a token it did
/// not issue, and every login issues a new one.
async fn session_fixation(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("fixed@example.com").await;
    let planted = latchkey::crypto::random_token();
    let cookie = format!("latchkey_session={planted}");
    let me_with_cookie = || {
        app.client
            .get(app.url("/api/v1/me"))
            .header("cookie", cookie.clone())
            .send()
    };

    app.get("/api/v1/me", Some(&planted))
        .await
        .expect_error(401, "unauthenticated");
    assert_eq!(me_with_cookie().await.unwrap().status(), 401);

    // The victim signs in while the planted cookie is set.
    let response = app
        .client
        .post(app.url("/api/v1/login"))
        .header("cookie", cookie.clone())
        .json(&json!({"email": "fixed@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    for set_cookie in response.headers().get_all("set-cookie") {
        assert!(!set_cookie.to_str().unwrap_or_default().contains(&planted));
    }
    let issued: serde_json::Value = response.json().await.unwrap();
    let issued = issued["session_token"].as_str().unwrap().to_string();
    assert_ne!(issued, planted);
    app.get("/api/v1/me", Some(&issued)).await.expect(200);
    app.get("/api/v1/me", Some(&planted))
        .await
        .expect_error(401, "unauthenticated");
    assert_eq!(me_with_cookie().await.unwrap().status(), 401);

    // Every login issues a fresh token; with 2FA, the challenge token is not a session.
    let again = app.login("fixed@example.com").await.expect(200);
    assert_ne!(again.body["session_token"].as_str().unwrap(), issued);
    let enrolled = app.enroll_totp(&issued).await;
    let challenge = app.start_mfa_login("fixed@example.com").await;
    app.get("/api/v1/me", Some(&challenge))
        .await
        .expect_error(401, "unauthenticated");
    let code = app.totp_code(&enrolled.secret, 0);
    let session = mfa(&app, &challenge, "totp", &code).await.expect(200);
    let session = session.body["session_token"].as_str().unwrap();
    assert!(session != challenge && session != issued && session != planted);
}

/// Guessing TOTP codes online. Each guess matches one of 3 valid codes (previous, current, next
/// step), so covering the 10^6 codes takes 333,334 guesses. Per account, after 5 free failures
/// each guess waits 1 s, 2 s, … up to 15 minutes, and 100 consecutive failures lock second-factor
/// login for good. The attacker's best case: the real user signs in once a day, which resets the
/// counter (but never the lock), so the attacker gets at most one day's worth of guesses per day.
#[test]
fn brute_force_of_totp_codes() {
    const GUESSES_NEEDED: i64 = 1_000_000 / 3 + 1;
    const YEAR: i64 = 365 * 24 * 3600;
    const DAY: i64 = 24 * 3600;

    // Without the lock: the delays alone, for 10^6 guesses.
    let seconds_without_lock: i64 = (0..1_000_000).map(delay_after).sum();
    assert!(seconds_without_lock > YEAR, "{seconds_without_lock} s");

    // With the lock: guesses before it, in one unbroken run.
    let guesses_per_run = LOCK_AFTER_FAILURES - 1;
    assert!(guesses_per_run < GUESSES_NEEDED, "the lock stops every run long before");

    // Guesses possible in one day, stopping before the lock.
    let mut waited = 0;
    let mut guesses_per_day = 0;
    while guesses_per_day < guesses_per_run && waited + delay_after(guesses_per_day) <= DAY {
        waited += delay_after(guesses_per_day);
        guesses_per_day += 1;
    }
    assert!(guesses_per_day >= FREE_FAILURES);
    let days = (GUESSES_NEEDED + guesses_per_day - 1) / guesses_per_day;
    eprintln!(
        "TOTP brute force: {guesses_per_day} guesses/day with a daily reset → {days} days ({:.1} years) for 10^6 codes; \
         {:.0} years without any reset and no lock",
        days as f64 / 365.0,
        seconds_without_lock as f64 / YEAR as f64
    );
    assert!(days * DAY > YEAR);
}

/// Runs the real binary with `RUST_LOG=debug` through sign-up, login, TOTP enrollment, two-step
/// login, a backup code, re-authentication and logout, and looks for every secret in its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_leakage_in_logs() {
    let data_dir = tempfile::tempdir().unwrap();
    let master_key = latchkey::crypto::generate_master_key();
    let data_path = data_dir.path().display().to_string();
    let database_url = format!("sqlite://{data_path}/latchkey.db");
    let settings = [
        ("LATCHKEY_DATABASE_URL", database_url.as_str()),
        ("LATCHKEY_DATA_DIR", data_path.as_str()),
        ("LATCHKEY_MASTER_KEY", master_key.as_str()),
        ("LATCHKEY_PASSWORD_HASH", "argon2id:m=1024,t=1,p=1"),
        ("LATCHKEY_REQUIRE_2FA", "none"),
        ("RUST_LOG", "debug"),
    ];
    let server = tokio::task::block_in_place(|| ServerProcess::start(&settings, data_dir.path()));
    let client = reqwest::Client::new();
    let post = |path: &str, token: Option<&str>, body: serde_json::Value| {
        let mut request = client.post(server.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let now = || chrono::Utc::now().timestamp();
    let mut secrets: Vec<String> = vec![PASSWORD.into(), master_key.clone()];
    let credentials = json!({"email": "logged@example.com", "password": PASSWORD});

    assert_eq!(post("/api/v1/signup", None, credentials.clone()).await.0, 201);
    let (_, login) = post("/api/v1/login", None, credentials.clone()).await;
    let token = login["session_token"].as_str().unwrap().to_string();
    let (_, setup) = post("/api/v1/me/2fa/totp/setup", Some(&token), json!({})).await;
    let secret_text = setup["secret"].as_str().unwrap().to_string();
    let secret = totp::decode_secret_base32(&secret_text).unwrap();
    let confirm_code = totp::code_for_step(&secret, totp::step_at(now()));
    let (status, confirmed) = post(
        "/api/v1/me/2fa/totp/confirm",
        Some(&token),
        json!({"code": confirm_code}),
    )
    .await;
    assert_eq!(status, 200, "{confirmed}");
    let backup_codes: Vec<String> = serde_json::from_value(confirmed["backup_codes"].clone()).unwrap();
    // A wrong code too: failures are logged, and must not carry the guess either.
    let (_, challenge) = post("/api/v1/login", None, credentials.clone()).await;
    let challenge_token = challenge["challenge_token"].as_str().unwrap().to_string();
    let wrong_code = format!("{:06}", (confirm_code.parse::<u32>().unwrap() + 500_000) % 1_000_000);
    let body = json!({"challenge_token": challenge_token, "method": "totp", "code": wrong_code});
    assert_eq!(post("/api/v1/login/mfa", None, body).await.0, 401);
    let login_code = totp::code_for_step(&secret, totp::step_at(now()) + 1);
    let body = json!({"challenge_token": challenge_token, "method": "totp", "code": login_code});
    let (status, second) = post("/api/v1/login/mfa", None, body).await;
    assert_eq!(status, 200, "{second}");
    let second_token = second["session_token"].as_str().unwrap().to_string();
    let (_, challenge) = post("/api/v1/login", None, credentials.clone()).await;
    let backup_challenge = challenge["challenge_token"].as_str().unwrap().to_string();
    let body = json!({"challenge_token": backup_challenge, "method": "backup_code", "code": backup_codes[0]});
    let (status, third) = post("/api/v1/login/mfa", None, body).await;
    assert_eq!(status, 200, "{third}");
    let third_token = third["session_token"].as_str().unwrap().to_string();
    assert_eq!(
        post("/api/v1/me/reauth", Some(&third_token), json!({"password": PASSWORD}))
            .await
            .0,
        200
    );
    let (status, _) = post(
        "/api/v1/me/password",
        Some(&third_token),
        json!({"new_password": "another long passphrase"}),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(post("/api/v1/logout", Some(&third_token), json!({})).await.0, 204);
    // Bearer tokens that are not sessions are logged neither.
    assert_eq!(
        client
            .get(server.url("/api/v1/me"))
            .bearer_auth(&backup_challenge)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let exported = run(latchkey(&settings).args(["audit", "export"]), "");
    let log = server.terminate() + &String::from_utf8_lossy(&exported.stderr);
    assert!(log.contains("DEBUG"), "debug logging was on");
    assert!(log.contains("/api/v1/login/mfa"), "requests were logged");

    secrets.extend([token, second_token, third_token, challenge_token, backup_challenge]);
    secrets.extend([
        secret_text.clone(),
        totp::grouped_key(&secret_text),
        "another long passphrase".into(),
    ]);
    for code in &backup_codes {
        secrets.push(code.clone());
        secrets.push(code.replace('-', ""));
    }
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret reached the log: {secret:?}");
        assert!(
            !stdout(&exported).contains(secret.as_str()),
            "a secret reached the audit export"
        );
    }
    // Six-digit codes: only whole numbers count (a timestamp's microseconds are not a code).
    for code in [&confirm_code, &wrong_code, &login_code] {
        let leaked = log.match_indices(code.as_str()).any(|(at, _)| {
            let before = log[..at].chars().next_back();
            let after = log[at + code.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
                && !after.is_some_and(|c| c.is_ascii_alphanumeric())
        });
        assert!(!leaked, "a TOTP code reached the log");
    }
}

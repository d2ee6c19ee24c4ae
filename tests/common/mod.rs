//! Test harness: starts the real server in-process on port 0, against a fresh database (SQLite
//! always; PostgreSQL when `LATCHKEY_TEST_POSTGRES_URL` is set), with a real SMTP sink and a
//! clock the test moves. The client keeps cookies and does not follow redirects.
#![allow(dead_code)]

pub mod process;
pub mod smtp_sink;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use latchkey::clock::{Clock, ManualClock};
use latchkey::twofactor::totp;
use latchkey::{AppState, Application, Config};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub use smtp_sink::{ReceivedEmail, SmtpSink};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod name { sqlite, postgres }` tests that run `name(Backend)` on each database.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::postgres_url().is_none() {
                    eprintln!("LATCHKEY_TEST_POSTGRES_URL is not set: PostgreSQL variant not run");
                    return;
                }
                super::$name($crate::common::Backend::Postgres).await;
            }
        }
    )*};
}

pub fn postgres_url() -> Option<String> {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    pub smtp: SmtpSink,
    pub state: AppState,
    pub database_url: String,
    pub data_dir: tempfile::TempDir,
    overrides: Vec<(String, String)>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A fresh, empty database for one test.
pub async fn fresh_database(backend: Backend, data_dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/latchkey.db", data_dir.display()),
        Backend::Postgres => {
            let admin_url = postgres_url().expect("LATCHKEY_TEST_POSTGRES_URL");
            let name = format!("latchkey_test_{}", uuid::Uuid::new_v4().simple());
            sqlx::any::install_default_drivers();
            let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .expect("create test database");
            let mut url = url::Url::parse(&admin_url).expect("postgres url");
            url.set_path(&format!("/{name}"));
            url.to_string()
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Starts the app with configuration overrides (`LATCHKEY_*` names).
pub async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database_url = fresh_database(backend, data_dir.path()).await;
    let clock = Arc::new(ManualClock::new());
    to_start_of_next_step(&clock);
    start_app(database_url, data_dir, clock, overrides).await
}

/// Moves the clock to just after the start of the next TOTP step. Real time keeps flowing, so a
/// code a test computes could otherwise belong to another step by the time the server checks it;
/// from here a test has some 28 seconds before the next boundary.
fn to_start_of_next_step(clock: &ManualClock) {
    let now_ms = clock.unix_millis();
    let step_ms = totp::STEP_SECONDS * 1000;
    let target_ms = (now_ms / step_ms + 1) * step_ms + 1000;
    let seconds = (target_ms - now_ms + 999) / 1000;
    clock.advance(Duration::from_secs(seconds as u64));
}

impl TestApp {
    /// Another instance on this app's database, with the same master key and clock but its own
    /// data directory and SMTP sink: two latchkey processes behind one load balancer share nothing
    /// else. Overrides apply to the new instance only.
    pub async fn spawn_second_instance(&self, overrides: &[(&str, &str)]) -> TestApp {
        let master_key = self.master_key();
        let mut settings = vec![("LATCHKEY_MASTER_KEY", master_key.as_str())];
        settings.extend_from_slice(overrides);
        let data_dir = tempfile::tempdir().expect("temp dir");
        start_app(self.database_url.clone(), data_dir, self.clock.clone(), &settings).await
    }

    /// Stops the server gracefully (its worker too) and waits until its database pool is closed;
    /// the data directory and database stay for a restart.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
        }
    }

    /// The master key this app runs with (base64), as `LATCHKEY_MASTER_KEY` takes it.
    pub fn master_key(&self) -> String {
        use base64::Engine;
        if let Some(key) = &self.state.config.master_key {
            return base64::engine::general_purpose::STANDARD.encode(key.0);
        }
        std::fs::read_to_string(self.data_dir.path().join("master.key"))
            .map(|text| text.trim().to_string())
            .expect("the app's generated master.key")
    }
}

/// Starts an app on an existing database (a restart, or another instance) with the given data
/// directory, clock and configuration overrides.
pub async fn spawn_app_on(
    database_url: &str,
    data_dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    overrides: &[(&str, &str)],
) -> TestApp {
    start_app(database_url.to_string(), data_dir, clock, overrides).await
}

async fn start_app(
    database_url: String,
    data_dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    overrides: &[(&str, &str)],
) -> TestApp {
    let smtp = SmtpSink::start().await;
    let overrides = overrides
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    start(data_dir, database_url, smtp, overrides, clock).await
}

/// Starts a server on an existing database and data directory (so the same master key).
async fn start(
    data_dir: tempfile::TempDir,
    database_url: String,
    smtp: SmtpSink,
    overrides: Vec<(String, String)>,
    clock: Arc<ManualClock>,
) -> TestApp {
    let mut values = BTreeMap::new();
    let mut set = |name: &str, value: String| {
        values.insert(name.to_string(), value);
    };
    set("LATCHKEY_BIND", "127.0.0.1:0".into());
    set("LATCHKEY_DATA_DIR", data_dir.path().display().to_string());
    set("LATCHKEY_DATABASE_URL", database_url.clone());
    set("LATCHKEY_SMTP_URL", smtp.url());
    set("LATCHKEY_PUBLIC_URL", "http://localhost:8080".into());
    set("LATCHKEY_BACKGROUND_INTERVAL", "100ms".into());
    set("LATCHKEY_REQUIRE_2FA", "none".into());
    // Argon2 at test strength; the production parameters are checked in their own test.
    set("LATCHKEY_PASSWORD_HASH", "argon2id:m=1024,t=1,p=1".into());
    for (name, value) in &overrides {
        set(name, value.to_string());
    }
    let config = Config::from_values(&values).expect("test configuration");
    let application = Application::build_with_clock(config, clock.clone())
        .await
        .expect("build app");
    let port = application.port();
    let state = application.state();
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        clock,
        client,
        smtp,
        state,
        database_url,
        data_dir,
        overrides,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self
    }

    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Reply {
        assert_eq!(
            (self.status.as_u16(), self.error()),
            (status, code),
            "body: {}",
            self.body
        );
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without message: {}",
            self.body
        );
        self
    }
}

/// A user signed in through the API.
pub struct User {
    pub email: String,
    pub id: String,
    pub token: String,
}

/// TOTP enrolled for a user.
pub struct Enrolled {
    pub secret: Vec<u8>,
    pub backup_codes: Vec<String>,
}

impl TestApp {
    /// Stops this server (waiting for it and its worker to finish) and starts a new one on the
    /// same database, data directory, configuration, SMTP sink and clock: a restart.
    pub async fn restart(mut self) -> TestApp {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
        }
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("temp dir"));
        let smtp = std::mem::replace(&mut self.smtp, SmtpSink::start().await);
        let overrides = std::mem::take(&mut self.overrides);
        start(data_dir, self.database_url.clone(), smtp, overrides, self.clock.clone()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply { status, headers, body }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: &str) -> Reply {
        self.send(
            self.client
                .post(self.url(path))
                .header("content-type", content_type)
                .body(body.to_string()),
        )
        .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.delete(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let mut request = self.client.put(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn signup(&self, email: &str) -> String {
        let reply = self
            .post("/api/v1/signup", None, json!({"email": email, "password": PASSWORD}))
            .await
            .expect(201);
        reply.body["user_id"].as_str().expect("user_id").to_string()
    }

    pub async fn login(&self, email: &str) -> Reply {
        self.post("/api/v1/login", None, json!({"email": email, "password": PASSWORD}))
            .await
    }

    /// Signs up and logs in (single step: no 2FA yet).
    pub async fn new_user(&self, email: &str) -> User {
        let id = self.signup(email).await;
        let reply = self.login(email).await.expect(200);
        assert_eq!(reply.body["status"], "authenticated");
        User {
            email: email.to_string(),
            id,
            token: reply.body["session_token"].as_str().unwrap().to_string(),
        }
    }

    /// Creates an administrator directly through the service layer (as the CLI does).
    pub async fn new_admin(&self, email: &str) -> User {
        let parsed = latchkey::accounts::email::Email::parse(email).unwrap();
        let id = latchkey::accounts::create_user(
            &self.state,
            &latchkey::audit::ClientInfo::cli(),
            &parsed,
            PASSWORD,
            latchkey::accounts::sessions::Role::Admin,
            Some("cli"),
        )
        .await
        .expect("create admin");
        let reply = self.login(email).await.expect(200);
        User {
            email: email.to_string(),
            id,
            token: reply.body["session_token"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// The current TOTP code for a secret at the app's clock, `offset` steps away.
    pub fn totp_code(&self, secret: &[u8], offset: i64) -> String {
        totp::code_for_step(secret, totp::step_at(self.clock.unix()) + offset)
    }

    /// Moves the app's clock to the start of the next TOTP step, so a fresh code is not a replay.
    pub fn next_step(&self) {
        to_start_of_next_step(&self.clock);
    }

    /// Sets up and confirms TOTP for a signed-in user.
    pub async fn enroll_totp(&self, token: &str) -> Enrolled {
        let setup = self
            .post("/api/v1/me/2fa/totp/setup", Some(token), json!({}))
            .await
            .expect(200);
        let secret = totp::decode_secret_base32(setup.body["secret"].as_str().unwrap()).expect("base32 secret");
        let code = self.totp_code(&secret, 0);
        let confirmed = self
            .post("/api/v1/me/2fa/totp/confirm", Some(token), json!({"code": code}))
            .await
            .expect(200);
        let backup_codes = confirmed.body["backup_codes"]
            .as_array()
            .map(|codes| codes.iter().map(|c| c.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        self.next_step();
        Enrolled { secret, backup_codes }
    }

    /// Password step of a login that must answer `mfa_required`; answers the challenge token.
    pub async fn start_mfa_login(&self, email: &str) -> String {
        let reply = self.login(email).await.expect(200);
        assert_eq!(reply.body["status"], "mfa_required", "{}", reply.body);
        reply.body["challenge_token"].as_str().unwrap().to_string()
    }

    pub async fn login_with_totp(&self, email: &str, secret: &[u8]) -> String {
        let challenge = self.start_mfa_login(email).await;
        let code = self.totp_code(secret, 0);
        let reply = self
            .post(
                "/api/v1/login/mfa",
                None,
                json!({"challenge_token": challenge, "method": "totp", "code": code}),
            )
            .await
            .expect(200);
        self.next_step();
        reply.body["session_token"].as_str().unwrap().to_string()
    }

    /// A raw connection to the app's database, for tests that inspect or tamper with rows.
    pub async fn database(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        <sqlx::AnyConnection as sqlx::Connection>::connect(&self.database_url)
            .await
            .expect("connect to test database")
    }

    /// Emails to `recipient` whose subject contains `subject_part`, waiting for the first.
    pub async fn email_to(&self, recipient: &str, subject_part: &str) -> ReceivedEmail {
        let what = format!("email to {recipient} about {subject_part:?}");
        self.smtp
            .wait_for(&what, |email| {
                email.is_to(recipient) && email.subject.contains(subject_part)
            })
            .await
    }
}

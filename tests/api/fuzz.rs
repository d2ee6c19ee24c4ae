//! Property tests (proptest) of everything that parses untrusted input: TOTP codes, backup codes,
//! email addresses, bearer tokens and cookies, and JSON bodies. Parsers never panic and what they
//! accept round-trips; no request body and no header makes any route answer 5xx. The HTTP cases
//! drive the router in-process (`tower::ServiceExt::oneshot`), a few hundred requests a second.
//! `PROPTEST_CASES` raises the number of cases for a longer run.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use latchkey::accounts::email::Email;
use latchkey::accounts::sessions::{self, SessionState};
use latchkey::audit::ClientInfo;
use latchkey::twofactor::{backup_codes, totp::TotpCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use tower::ServiceExt;
use utoipa::OpenApi;

use crate::common::{spawn_app, Backend, TestApp};

fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn totp_code_parse_never_panics_and_round_trips(input in any::<String>()) {
        if let Ok(code) = TotpCode::parse(&input) {
            prop_assert_eq!(code.as_str().len(), 6);
            prop_assert!(code.as_str().bytes().all(|byte| byte.is_ascii_digit()));
            prop_assert_eq!(TotpCode::parse(code.as_str()).unwrap().as_str().to_string(), code.as_str());
        }
    }

    #[test]
    fn six_digits_with_any_separators_parse(digits in "[0-9]{6}", separators in proptest::collection::vec("[ \t-]{0,2}", 7)) {
        let typed: String = separators
            .iter()
            .zip(digits.chars().map(String::from).chain(std::iter::once(String::new())))
            .map(|(separator, digit)| format!("{separator}{digit}"))
            .collect();
        prop_assert_eq!(TotpCode::parse(&typed).unwrap().as_str().to_string(), digits.as_str());
    }

    #[test]
    fn backup_code_parse_never_panics_and_round_trips(input in any::<String>()) {
        if let Ok(code) = backup_codes::parse(&input) {
            let canonical = code.canonical().to_string();
            prop_assert_eq!(canonical.len(), 8);
            prop_assert_eq!(backup_codes::parse(&canonical).unwrap().canonical().to_string(), canonical.as_str());
            prop_assert_eq!(backup_codes::parse(&code.formatted()).unwrap().canonical().to_string(), canonical.as_str());
            prop_assert_eq!(backup_codes::parse(&code.formatted().to_lowercase()).unwrap().canonical().to_string(), canonical.as_str());
        }
    }

    #[test]
    fn issued_backup_codes_parse_however_they_are_typed(seed in any::<[u8; 32]>(), spaced in any::<bool>()) {
        use rand::SeedableRng;
        let code = backup_codes::generate(&mut rand::rngs::StdRng::from_seed(seed));
        let shown = code.formatted();
        let typed = if spaced { shown.to_lowercase().replace('-', " ") } else { shown.replace('-', "") };
        prop_assert_eq!(backup_codes::parse(&typed).unwrap().canonical().to_string(), code.canonical());
    }

    #[test]
    fn email_parse_never_panics_and_is_idempotent(input in any::<String>()) {
        if let Ok(email) = Email::parse(&input) {
            let text = email.as_str();
            prop_assert!(text.len() <= 254);
            prop_assert_eq!(text, text.trim());
            prop_assert_eq!(Email::parse(text), Ok(email.clone()));
        }
    }

    #[test]
    fn ordinary_addresses_are_accepted_and_normalised(
        local in "[A-Za-z0-9_+-]{1,20}(\\.[A-Za-z0-9_+-]{1,10})?",
        domain in "[A-Za-z0-9]{1,15}(\\.[A-Za-z0-9]{1,10})?\\.[A-Za-z]{2,6}",
        padding in "[ \t]{0,3}",
    ) {
        let typed = format!("{padding}{local}@{domain}{padding}");
        let email = Email::parse(&typed).unwrap();
        prop_assert_eq!(email.as_str(), format!("{local}@{domain}").to_lowercase());
    }
}

/// An app with an administrator who has TOTP on, so fuzzed requests can reach the deepest
/// handlers (sudo, 2FA, admin) instead of stopping at 401.
struct Target {
    /// Always `Some` until dropped.
    app: Option<TestApp>,
    admin_id: String,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Target {
    fn drop(&mut self) {
        // The app's parts (the SMTP connection pool among them) shut down by spawning tasks, so
        // they must be dropped inside the runtime.
        let _inside = self.runtime.enter();
        self.app.take();
    }
}

impl Target {
    fn start() -> Target {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (app, admin_id) = runtime.block_on(async {
            let app = spawn_app(Backend::Sqlite).await;
            let admin = app.new_admin("fuzz-admin@example.com").await;
            app.enroll_totp(&admin.token).await;
            (app, admin.id)
        });
        Target {
            app: Some(app),
            admin_id,
            runtime,
        }
    }

    fn state(&self) -> &latchkey::AppState {
        &self
            .app
            .as_ref()
            .expect("the app runs until the target is dropped")
            .state
    }

    /// A fresh full session in sudo mode, so one fuzzed logout or password change does not
    /// leave the next cases unauthenticated.
    fn session(&self) -> String {
        self.runtime.block_on(async {
            let state = self.state();
            let mut tx = state.store.begin().await.unwrap();
            let now = latchkey::clock::Clock::unix(state.clock.as_ref());
            let issued = sessions::issue(
                &mut tx,
                state,
                &self.admin_id,
                SessionState::Full,
                &ClientInfo::cli(),
                now,
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            issued.token
        })
    }

    /// Sends one request through the router; answers the status.
    fn send(&self, request: Request<Body>, peer: [u8; 4]) -> u16 {
        let mut request = request;
        // A different client address per case, so the per-IP limiter does not turn every later
        // case into a 429 before it reaches the handler.
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 40000))));
        let router = latchkey::http::router(self.state().clone());
        self.runtime
            .block_on(router.oneshot(request))
            .map(|response| response.status().as_u16())
            .unwrap_or(599)
    }
}

/// JSON values of every shape, biased towards the field names and values the API reads.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|number| json!(number)),
        any::<String>().prop_map(Value::from),
        "[0-9 -]{0,10}".prop_map(Value::from),
        "[A-Za-z0-9]{4}-[A-Za-z0-9]{4}".prop_map(Value::from),
        "[a-z]{1,8}@[a-z]{1,8}\\.[a-z]{2,3}".prop_map(Value::from),
        prop_oneof![Just("totp"), Just("backup_code"), Just("webauthn"), Just("")].prop_map(Value::from),
        "[A-Za-z0-9_-]{0,64}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(field_name(), inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop_oneof![
            Just("email"), Just("password"), Just("new_password"), Just("code"), Just("method"),
            Just("challenge_token"), Just("token"), Just("cancel_token"), Just("name"), Just("reason"),
            Just("email_recovery"), Just("lost_password"), Just("credential"), Just("id"), Just("type"),
            Just("response"), Just("rawId"), Just("clientDataJSON"),
        ]
        .prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// A body as sent: JSON (usually an object), or anything at all.
fn body() -> impl Strategy<Value = Vec<u8>> {
    // Mostly strings under the names the handlers read, so cases get past the shape check.
    let likely_value = || {
        proptest::option::weighted(
            0.7,
            prop_oneof![
                any::<String>(),
                "[0-9 -]{5,8}",
                "[A-Z0-9]{4}-[A-Z0-9]{4}",
                Just(crate::common::PASSWORD.to_string()),
                Just("fuzz-admin@example.com".to_string()),
                prop_oneof![Just("totp"), Just("backup_code")].prop_map(String::from),
            ],
        )
    };
    let names = [
        "email",
        "password",
        "new_password",
        "code",
        "method",
        "challenge_token",
        "token",
        "name",
        "reason",
    ];
    let likely_object = proptest::collection::vec(likely_value(), names.len()).prop_map(move |values| {
        let object: serde_json::Map<String, Value> = names
            .iter()
            .zip(values)
            .filter_map(|(name, value)| Some((name.to_string(), Value::from(value?))))
            .collect();
        serde_json::to_vec(&object).unwrap()
    });
    prop_oneof![
        6 => likely_object,
        4 => proptest::collection::btree_map(field_name(), json_value(), 0..6)
            .prop_map(|map| serde_json::to_vec(&Value::Object(map.into_iter().collect())).unwrap()),
        2 => json_value().prop_map(|value| serde_json::to_vec(&value).unwrap()),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

/// Every POST route of the OpenAPI document, with `{parameters}` left for the case to fill.
fn post_routes() -> Vec<String> {
    latchkey::http::api::ApiDoc::openapi()
        .paths
        .paths
        .into_iter()
        .filter(|(_, item)| item.post.is_some())
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn arbitrary_json_to_every_post_route_never_yields_a_server_error() {
    let target = Target::start();
    let routes = post_routes();
    assert!(
        routes.len() >= 10,
        "the OpenAPI document lists the POST routes: {routes:?}"
    );
    let strategy = (0..routes.len(), body(), 0..3u8, "[A-Za-z0-9_-]{0,40}", any::<[u8; 4]>());
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<(String, u16), usize>::new());
    let mut runner = TestRunner::new(cases(400));
    let result = runner.run(&strategy, |(route, body, authentication, parameter, peer)| {
        let path = routes[route]
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    parameter.as_str()
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let mut request = Request::post(&path).header("content-type", "application/json");
        match authentication {
            0 => {}
            1 => request = request.header("authorization", format!("Bearer {}", target.session())),
            _ => request = request.header("authorization", format!("Bearer {parameter}")),
        }
        let status = target.send(request.body(Body::from(body.clone())).unwrap(), peer);
        *statuses
            .lock()
            .unwrap()
            .entry((routes[route].clone(), status))
            .or_default() += 1;
        prop_assert!(
            status < 500,
            "POST {} answered {} to {:?}",
            path,
            status,
            String::from_utf8_lossy(&body)
        );
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // What the cases reached, per route and status (run with --nocapture to see it).
    eprintln!("{:?}", statuses.lock().unwrap());
}

#[test]
fn arbitrary_tokens_and_cookies_are_refused_without_a_server_error() {
    let target = Target::start();
    let strategy = (
        proptest::collection::vec(any::<u8>(), 0..120),
        0..4u8,
        prop_oneof![Just("/api/v1/me"), Just("/api/v1/verify"), Just("/api/v1/me/sessions")],
        any::<[u8; 4]>(),
    );
    let mut runner = TestRunner::new(cases(400));
    let result = runner.run(&strategy, |(bytes, shape, path, peer)| {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (name, value) = match shape {
            0 => ("authorization", format!("Bearer {text}")),
            1 => ("authorization", text.clone()),
            2 => ("cookie", format!("latchkey_session={text}")),
            _ => ("cookie", text.clone()),
        };
        // Header values the HTTP layer itself would reject never reach latchkey.
        let Ok(request) = Request::get(path).header(name, value).body(Body::empty()) else {
            return Ok(());
        };
        let status = target.send(request, peer);
        prop_assert_eq!(status, 401, "{} with {}: {:?}", path, name, text);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

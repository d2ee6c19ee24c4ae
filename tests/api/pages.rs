//! The web pages without a browser: they render with the labels people (and browser tests) look
//! for, refuse forms without a valid CSRF token, set cookies as API.md says, and never redirect
//! to another site.

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;

use crate::common::{spawn_app, spawn_app_with, Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    signed_out_pages_render_with_labels_and_buttons,
    signed_in_pages_render_with_labels_and_buttons,
    forms_without_a_valid_csrf_token_are_refused,
    cookies_have_the_documented_attributes,
    return_addresses_never_leave_the_site,
    second_step_and_enrollment_work_through_forms,
    unfinished_sessions_are_sent_to_enrollment,
    unknown_paths_answer_html_for_browsers_and_json_for_the_api,
    admin_pages_need_an_administrator_and_a_reason,
);

/// A browser without JavaScript: form posts, cookies by hand, no redirects followed.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookies: Vec<(String, String)>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }

    /// The first hidden `csrf` field's value.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a csrf field") + marker.len();
        self.body[start..].split('"').next().unwrap().to_string()
    }

    fn data_text(&self, id: &str) -> String {
        let marker = format!("id=\"{id}\" class=\"setup-key\" data-text=\"");
        let start = self.body.find(&marker).expect("the setup key") + marker.len();
        self.body[start..].split('"').next().unwrap().to_string()
    }

    #[track_caller]
    fn expect(self, status: u16) -> Page {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        self
    }

    #[track_caller]
    fn contains(&self, needle: &str) -> &Page {
        assert!(self.body.contains(needle), "{needle:?} not in page:\n{}", self.body);
        self
    }
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let response = request
            .header(COOKIE, self.cookie_header())
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !text.contains("Max-Age=0") {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
        let body = response.text().await.unwrap();
        Page { status, headers, body }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(self.app.url(path));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let request = self.client.post(self.app.url(path)).form(fields);
        self.send(request).await
    }

    fn has_cookie(&self, name: &str) -> bool {
        self.cookies.iter().any(|(k, _)| k == name)
    }

    /// Signs in through the sign-in form (password step only).
    async fn sign_in(&mut self, email: &str) -> Page {
        let csrf = self.get("/login").await.expect(200).csrf();
        self.post("/login", &[("csrf", &csrf), ("email", email), ("password", PASSWORD)])
            .await
            .expect(303)
    }
}

async fn signed_out_pages_render_with_labels_and_buttons(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut browser = Browser::new(&app);
    let login = browser.get("/login").await.expect(200);
    assert!(login.headers[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    login
        .contains("<label for=\"email\">Email</label>")
        .contains("<label for=\"password\">Password</label>")
        .contains(">Sign in</button>")
        .contains("href=\"/forgot-password\"");
    browser
        .get("/signup")
        .await
        .expect(200)
        .contains("<label for=\"email\">Email</label>")
        .contains("<label for=\"password\">Password</label>")
        .contains(">Create account</button>");
    for path in ["/recover", "/forgot-password"] {
        browser
            .get(path)
            .await
            .expect(200)
            .contains("<label for=\"email\">Email</label>")
            .contains("name=\"csrf\"");
    }
    // Links that never existed (or expired) explain themselves instead of showing a form.
    browser
        .get("/recover/not-a-token")
        .await
        .expect(400)
        .contains("This link has expired");
    browser
        .get("/reset-password/not-a-token")
        .await
        .expect(400)
        .contains("This link has expired");
    browser
        .get("/recover/cancel/not-a-token")
        .await
        .expect(200)
        .contains("Cancel recovery");
    // Without a pending sign-in, the second step sends the browser back to the first.
    assert_eq!(browser.get("/login/2fa").await.expect(303).location(), "/login");
    assert_eq!(browser.get("/").await.expect(303).location(), "/login");
    let account = browser.get("/account").await.expect(303);
    assert_eq!(account.location(), "/login?next=%2Faccount");
}

async fn signed_in_pages_render_with_labels_and_buttons(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("page@example.com").await;
    let mut browser = Browser::new(&app);
    assert_eq!(browser.sign_in("page@example.com").await.location(), "/account");
    assert_eq!(browser.get("/").await.expect(303).location(), "/account");
    browser
        .get("/account")
        .await
        .expect(200)
        .contains("Two-step verification")
        .contains("Turn on two-step verification")
        .contains("Sign out this device")
        .contains("Recent security activity")
        .contains("Signed in");
    browser
        .get("/account/password")
        .await
        .expect(200)
        .contains("<label for=\"new_password\">New password</label>")
        .contains("autocomplete=\"new-password\"")
        .contains(">Change password</button>");
    browser
        .get("/account/reauth?next=/account/password")
        .await
        .expect(200)
        .contains("<label for=\"password\">Password</label>")
        .contains(">Continue</button>")
        .contains("name=\"next\" value=\"/account/password\"");
    let setup = browser.get("/account/2fa/setup").await.expect(200);
    setup
        .contains("<svg")
        .contains("<label for=\"code\">Authenticator code</label>")
        .contains("inputmode=\"numeric\"")
        .contains("autocomplete=\"one-time-code\"")
        .contains("Can't scan the code?");
    // The page that shows a secret is never cached.
    assert_eq!(setup.headers["cache-control"], "no-store");
    assert!(!setup.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("unsafe-inline"));
    let style = browser.get("/static/style.css").await.expect(200);
    assert!(style.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=31536000"));
    browser.get("/static/nope.js").await.expect(404);
}

async fn forms_without_a_valid_csrf_token_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("csrf@example.com").await;
    let mut browser = Browser::new(&app);
    let csrf = browser.get("/login").await.expect(200).csrf();
    let credentials = [("email", "csrf@example.com"), ("password", PASSWORD)];
    browser
        .post("/login", &credentials)
        .await
        .expect(403)
        .contains("This form has expired");
    browser
        .post(
            "/login",
            &[("csrf", "forged-forged-forged-forged"), credentials[0], credentials[1]],
        )
        .await
        .expect(403);
    assert!(
        !browser.has_cookie("latchkey_session"),
        "a refused form signs nobody in"
    );
    // The double-submit token only works with its cookie.
    let mut stranger = Browser::new(&app);
    stranger
        .post("/login", &[("csrf", csrf.as_str()), credentials[0], credentials[1]])
        .await
        .expect(403);
    browser
        .post("/login", &[("csrf", csrf.as_str()), credentials[0], credentials[1]])
        .await
        .expect(303);
    assert!(browser.has_cookie("latchkey_session"));

    // Signed in: the token is bound to the session.
    let session_csrf = browser.get("/account/password").await.expect(200).csrf();
    browser
        .post(
            "/account/password",
            &[("csrf", csrf.as_str()), ("new_password", "another good passphrase")],
        )
        .await
        .expect(403);
    browser
        .post("/account/password", &[("new_password", "another good passphrase")])
        .await
        .expect(403);
    app.login("csrf@example.com").await.expect(200);
    browser.post("/logout", &[("csrf", "wrong")]).await.expect(403);
    browser.get("/account").await.expect(200);
    browser
        .post(
            "/account/password",
            &[
                ("csrf", session_csrf.as_str()),
                ("new_password", "another good passphrase"),
            ],
        )
        .await
        .expect(303);
    app.login("csrf@example.com")
        .await
        .expect_error(401, "invalid_credentials");
}

async fn cookies_have_the_documented_attributes(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("cookie@example.com").await;
    let mut browser = Browser::new(&app);
    let login = browser.get("/login").await.expect(200);
    let csrf_cookie = login.set_cookie("latchkey_csrf").expect("double-submit cookie");
    assert!(
        csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"),
        "{csrf_cookie}"
    );
    let signed_in = browser.sign_in("cookie@example.com").await;
    let session = signed_in.set_cookie("latchkey_session").expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }
    assert!(!session.contains("Secure"), "http://localhost is not https: {session}");
    let csrf = browser.get("/account").await.expect(200).csrf();
    let logout = browser.post("/logout", &[("csrf", &csrf)]).await.expect(303);
    assert_eq!(logout.location(), "/login?done=signed_out");
    let cleared = logout.set_cookie("latchkey_session").expect("cleared cookie");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(
        browser.get("/account").await.expect(303).location(),
        "/login?next=%2Faccount"
    );

    // With 2FA the password step leaves only a short-lived, strict challenge cookie.
    let user = app.new_user("second@example.com").await;
    app.enroll_totp(&user.token).await;
    let mut browser = Browser::new(&app);
    let step = browser.sign_in("second@example.com").await;
    assert_eq!(step.location(), "/login/2fa");
    assert!(step.set_cookie("latchkey_session").is_none());
    let challenge = step.set_cookie("latchkey_challenge").expect("challenge cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age="] {
        assert!(challenge.contains(attribute), "{challenge} lacks {attribute}");
    }

    let https = spawn_app_with(backend, &[("LATCHKEY_PUBLIC_URL", "https://auth.example.com")]).await;
    https.signup("secure@example.com").await;
    let mut browser = Browser::new(&https);
    let session = browser
        .sign_in("secure@example.com")
        .await
        .set_cookie("latchkey_session")
        .unwrap();
    assert!(session.contains("Secure"), "{session}");
}

async fn return_addresses_never_leave_the_site(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("next@example.com").await;
    let mut browser = Browser::new(&app);
    let csrf = browser.get("/login?next=//evil.example").await.expect(200).csrf();
    let login = browser
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", "next@example.com"),
                ("password", PASSWORD),
                ("next", "//evil.example"),
            ],
        )
        .await
        .expect(303);
    assert_eq!(login.location(), "/account");
    let csrf = browser.get("/account").await.expect(200).csrf();
    for evil in [
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/%2F%2Fevil.example",
        "evil.example",
    ] {
        let page = browser
            .get(&format!("/account/reauth?next={}", urlencode(evil)))
            .await
            .expect(200);
        assert!(
            page.body.contains("name=\"next\" value=\"/account\""),
            "{evil} not replaced on the page"
        );
        let reauth = browser
            .post(
                "/account/reauth",
                &[("csrf", &csrf), ("password", PASSWORD), ("next", evil)],
            )
            .await
            .expect(303);
        assert_eq!(reauth.location(), "/account", "next={evil}");
    }
    let reauth = browser
        .post(
            "/account/reauth",
            &[("csrf", &csrf), ("password", PASSWORD), ("next", "/account/2fa/setup")],
        )
        .await
        .expect(303);
    assert_eq!(reauth.location(), "/account/2fa/setup");
    // A wrong password stays on the page with the error next to the field.
    browser
        .post(
            "/account/reauth",
            &[("csrf", &csrf), ("password", "wrong password"), ("next", "/account")],
        )
        .await
        .expect(401)
        .contains("aria-describedby=\"reauth-error\"")
        .contains("That password is not right.");
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn second_step_and_enrollment_work_through_forms(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("forms@example.com").await;
    let mut browser = Browser::new(&app);
    browser.sign_in("forms@example.com").await;
    let setup = browser.get("/account/2fa/setup").await.expect(200);
    let key = setup.data_text("setup-key");
    let secret = latchkey::twofactor::totp::decode_secret_base32(&key).unwrap();
    // A wrong code keeps the same key on the page, with the error tied to the field.
    let wrong = browser
        .post("/account/2fa/setup", &[("csrf", &setup.csrf()), ("code", "000000")])
        .await
        .expect(400);
    wrong
        .contains("aria-describedby=\"code-hint code-error\"")
        .contains("not right");
    assert_eq!(wrong.data_text("setup-key"), key);
    let code = app.totp_code(&secret, 0);
    let codes = browser
        .post("/account/2fa/setup", &[("csrf", &setup.csrf()), ("code", &code)])
        .await
        .expect(200);
    codes
        .contains("Save your backup codes")
        .contains("I have saved these codes");
    assert_eq!(codes.body.matches("<li><code>").count(), 10);
    app.next_step();

    let mut browser = Browser::new(&app);
    assert_eq!(browser.sign_in("forms@example.com").await.location(), "/login/2fa");
    let step = browser.get("/login/2fa").await.expect(200);
    step.contains("<label for=\"code\">Authenticator code</label>")
        .contains(">Verify</button>")
        .contains("href=\"/recover\">Lost your authenticator?</a>")
        .contains("Use a backup code instead");
    let csrf = step.csrf();
    browser
        .post("/login/2fa", &[("csrf", &csrf), ("method", "totp"), ("code", "000000")])
        .await
        .expect(401)
        .contains("id=\"code-error\"")
        .contains("That code is not right.");
    browser
        .post("/login/2fa", &[("csrf", &csrf), ("method", "totp"), ("code", &code)])
        .await
        .expect(401)
        .contains("already used");
    let done = browser
        .post(
            "/login/2fa",
            &[
                ("csrf", &csrf),
                ("method", "totp"),
                ("code", &app.totp_code(&secret, 0)),
            ],
        )
        .await
        .expect(303);
    assert_eq!(done.location(), "/account");
    assert!(browser.has_cookie("latchkey_session") && !browser.has_cookie("latchkey_challenge"));
    browser.get("/account").await.expect(200).contains("10 left");
}

async fn unfinished_sessions_are_sent_to_enrollment(backend: Backend) {
    let app = spawn_app_with(backend, &[("LATCHKEY_REQUIRE_2FA", "all")]).await;
    app.signup("forced@example.com").await;
    let mut browser = Browser::new(&app);
    assert_eq!(
        browser.sign_in("forced@example.com").await.location(),
        "/account/2fa/setup"
    );
    for path in ["/account", "/account/password", "/account/2fa/disable"] {
        assert_eq!(
            browser.get(path).await.expect(303).location(),
            "/account/2fa/setup",
            "{path}"
        );
    }
    let setup = browser.get("/account/2fa/setup").await.expect(200);
    setup.contains("must use two-step verification");
    let secret = latchkey::twofactor::totp::decode_secret_base32(&setup.data_text("setup-key")).unwrap();
    browser
        .post(
            "/account/2fa/setup",
            &[("csrf", &setup.csrf()), ("code", &app.totp_code(&secret, 0))],
        )
        .await
        .expect(200);
    browser
        .get("/account")
        .await
        .expect(200)
        .contains("Two-step verification");
}

async fn unknown_paths_answer_html_for_browsers_and_json_for_the_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let html = app
        .client
        .get(app.url("/no/such/page"))
        .header(ACCEPT, "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), 404);
    assert!(html.text().await.unwrap().contains("Page not found"));
    let api = app
        .client
        .get(app.url("/api/v1/no-such-thing"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    app.get("/no/such/page", None).await.expect_error(404, "not_found");
}

async fn admin_pages_need_an_administrator_and_a_reason(backend: Backend) {
    let app = spawn_app(backend).await;
    let target = app.new_user("target@example.com").await;
    app.enroll_totp(&target.token).await;
    app.signup("member@example.com").await;
    app.new_admin("boss@example.com").await;

    let mut member = Browser::new(&app);
    member.sign_in("member@example.com").await;
    member.get("/admin").await.expect(403).contains("Only administrators");
    member.get(&format!("/admin/users/{}", target.id)).await.expect(403);

    let mut admin = Browser::new(&app);
    admin.sign_in("boss@example.com").await;
    admin
        .get("/admin?email=target")
        .await
        .expect(200)
        .contains(&format!("href=\"/admin/users/{}\"", target.id));
    let page = admin.get(&format!("/admin/users/{}", target.id)).await.expect(200);
    page.contains("<label for=\"reason\">Reason</label>")
        .contains(">Reset two-factor authentication</button>");
    let path = format!("/admin/users/{}", target.id);
    admin
        .post(&path, &[("csrf", &page.csrf()), ("reason", "   ")])
        .await
        .expect(400)
        .contains("aria-describedby=\"reason-hint reason-error\"");
    admin
        .post(&path, &[("reason", "Lost phone, identity checked")])
        .await
        .expect(403);
    let done = admin
        .post(
            &path,
            &[("csrf", &page.csrf()), ("reason", "Lost phone, identity checked")],
        )
        .await
        .expect(303);
    assert_eq!(done.location(), format!("{path}?done=two_factor_reset"));
    app.email_to("target@example.com", "reset your two-factor").await;
    let login = app.login("target@example.com").await.expect(200);
    assert_eq!(
        login.body["status"], "authenticated",
        "single-step sign-in after the reset"
    );
    admin.get("/admin/users/no-such-user").await.expect(404);
}

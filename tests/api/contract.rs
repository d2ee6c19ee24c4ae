//! The OpenAPI document describes the API that exists.

use crate::common::{spawn_app, Backend};

#[tokio::test]
async fn openapi_lists_every_route_of_the_contract() {
    let app = spawn_app(Backend::Sqlite).await;
    let document = app.get("/api/openapi.json", None).await.expect(200);
    assert!(document.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document.body["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/signup", "post"),
        ("/api/v1/login", "post"),
        ("/api/v1/login/mfa", "post"),
        ("/api/v1/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me/sessions", "get"),
        ("/api/v1/me/sessions/{id}", "delete"),
        ("/api/v1/me/reauth", "post"),
        ("/api/v1/me/password", "post"),
        ("/api/v1/me/2fa", "get"),
        ("/api/v1/me/2fa/totp/setup", "post"),
        ("/api/v1/me/2fa/totp/confirm", "post"),
        ("/api/v1/me/2fa/backup-codes/regenerate", "post"),
        ("/api/v1/me/2fa/disable", "post"),
        ("/api/v1/admin/audit", "get"),
        ("/api/v1/verify", "get"),
        ("/api/v1/password/forgot", "post"),
        ("/api/v1/password/reset", "post"),
        ("/api/v1/recovery/request", "post"),
        ("/api/v1/recovery/confirm", "post"),
        ("/api/v1/recovery/complete", "post"),
        ("/api/v1/recovery/cancel", "post"),
        ("/api/v1/me/recovery", "delete"),
        ("/api/v1/me/2fa/recovery-settings", "put"),
        ("/api/v1/admin/users", "get"),
        ("/api/v1/admin/users/{id}/reset-2fa", "post"),
        ("/api/v1/admin/reset-requests", "get"),
        ("/api/v1/admin/reset-requests/{id}/approve", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|item| item.get(method)).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }
    // Every documented path answers something other than the 404 fallback.
    for path in paths.keys() {
        let concrete = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
        if concrete.contains('{') {
            continue;
        }
        let methods: Vec<&String> = paths[path].as_object().unwrap().keys().collect();
        let reply = if methods.iter().any(|m| *m == "get") {
            app.get(&concrete, None).await
        } else {
            app.post(&concrete, None, serde_json::json!({})).await
        };
        assert!(
            !(reply.status == 404 && reply.error() == "not_found" && !concrete.contains("0000")),
            "{path} is documented but not routed"
        );
    }
}

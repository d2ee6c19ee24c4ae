//! The stylesheet and the scripts, compiled into the binary. Their URLs carry a version
//! derived from their content, so they can be cached for a year and still change with a release.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::http::web::page::PageError;

const STYLE: &str = include_str!("../../../static/style.css");
const SCRIPT: &str = include_str!("../../../static/app.js");
/// The WebAuthn ceremonies, loaded only by the pages that use a security key.
const WEBAUTHN: &str = include_str!("../../../static/webauthn.js");

/// A short hash of both files, appended to their URLs as `?v=`.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = Sha256::new();
        hasher.update(STYLE.as_bytes());
        hasher.update(SCRIPT.as_bytes());
        hasher.update(WEBAUTHN.as_bytes());
        hex::encode(&hasher.finalize()[..6])
    })
}

pub async fn serve(Path(file): Path<String>) -> Result<Response, PageError> {
    let (body, content_type) = match file.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "webauthn.js" => (WEBAUTHN, "text/javascript; charset=utf-8"),
        _ => return Err(PageError::not_found()),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Set here, so the no-store default of every other response does not apply.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}

//! The one place where service errors become HTTP statuses and `{"error", "message"}` bodies.
//! Unexpected errors are logged (with the request id from the span) and answered generically:
//! a database error's text never reaches a client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::accounts::AccountError;
use crate::clock::rfc3339;
use crate::recovery::admin::AdminError;
use crate::recovery::password::PasswordResetError;
use crate::recovery::RecoveryError;
use crate::twofactor::challenge::ChallengeError;
use crate::twofactor::enrollment::EnrollmentError;
use crate::twofactor::webauthn::PasskeyError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<i64>,
    /// Extra fields beside `error` and `message` (e.g. `completes_at`).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            extra: Map::new(),
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "Nothing here.")
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Sign in first.")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn reauth_required() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "reauth_required",
            "Confirm it's you (POST /api/v1/me/reauth), then try again.",
        )
    }

    pub fn mfa_enrollment_required() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "mfa_enrollment_required",
            "Set up a second factor first; this session may only enroll one.",
        )
    }

    pub fn rate_limited(retry_after: i64, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// An error nobody planned for: logged in full, answered without detail. A database that
    /// cannot be reached answers 503 so clients and load balancers can retry elsewhere.
    pub fn internal(error: anyhow::Error) -> ApiError {
        if crate::store::is_unavailable(&error) {
            tracing::error!(error = format!("{error:#}"), "database unavailable");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "The service is briefly unavailable. Try again.",
            )
            .retry(5);
        }
        tracing::error!(error = format!("{error:#}"), "unexpected error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side. Try again.",
        )
    }

    fn retry(mut self, seconds: i64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), json!(self.code));
        body.insert("message".into(), json!(self.message));
        if let Some(seconds) = self.retry_after {
            body.insert("retry_after".into(), json!(seconds));
        }
        body.extend(self.extra);
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        ApiError::internal(error)
    }
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        let message = error.to_string();
        match error {
            AccountError::SignupDisabled => ApiError::new(StatusCode::FORBIDDEN, "signup_disabled", message),
            AccountError::InvalidEmail => ApiError::new(StatusCode::BAD_REQUEST, "invalid_email", message),
            AccountError::WeakPassword(_) => ApiError::new(StatusCode::BAD_REQUEST, "weak_password", message),
            AccountError::EmailTaken => ApiError::new(StatusCode::CONFLICT, "email_taken", message),
            AccountError::InvalidCredentials => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message),
            AccountError::InvalidCode => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_code", message),
            AccountError::CodeAlreadyUsed => ApiError::new(StatusCode::UNAUTHORIZED, "code_already_used", message),
            AccountError::RateLimited { retry_after } => ApiError::rate_limited(retry_after, message),
            AccountError::Locked => {
                ApiError::rate_limited(crate::accounts::throttle::MAX_DELAY_SECONDS, message).with("locked", true)
            }
            AccountError::ReauthRequired => ApiError::reauth_required(),
            AccountError::SessionNotFound => ApiError::not_found(),
            AccountError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl From<ChallengeError> for ApiError {
    fn from(error: ChallengeError) -> Self {
        let message = error.to_string();
        match error {
            ChallengeError::Expired => ApiError::new(StatusCode::UNAUTHORIZED, "challenge_expired", message),
            ChallengeError::InvalidCode => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_code", message),
            ChallengeError::InvalidCredential => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credential", message),
            ChallengeError::NoSecurityKey => ApiError::new(StatusCode::CONFLICT, "no_security_key", message),
            ChallengeError::CodeAlreadyUsed => ApiError::new(StatusCode::UNAUTHORIZED, "code_already_used", message),
            ChallengeError::RateLimited { retry_after } => ApiError::rate_limited(retry_after, message),
            ChallengeError::Locked => {
                ApiError::rate_limited(crate::accounts::throttle::MAX_DELAY_SECONDS, message).with("locked", true)
            }
            ChallengeError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl From<EnrollmentError> for ApiError {
    fn from(error: EnrollmentError) -> Self {
        let message = error.to_string();
        match error {
            EnrollmentError::ReauthRequired => ApiError::reauth_required(),
            EnrollmentError::NoPendingSetup => ApiError::new(StatusCode::CONFLICT, "no_pending_setup", message),
            // 400 here, not 401: the session is already authenticated (API.md).
            EnrollmentError::InvalidCode => ApiError::new(StatusCode::BAD_REQUEST, "invalid_code", message),
            EnrollmentError::SecondFactorInvalid => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_code", message),
            EnrollmentError::CodeAlreadyUsed => ApiError::new(StatusCode::UNAUTHORIZED, "code_already_used", message),
            EnrollmentError::TwoFactorDisabled => ApiError::new(StatusCode::CONFLICT, "two_factor_disabled", message),
            EnrollmentError::TwoFactorRequired => ApiError::new(StatusCode::FORBIDDEN, "two_factor_required", message),
            EnrollmentError::RateLimited { retry_after } => ApiError::rate_limited(retry_after, message),
            EnrollmentError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl From<PasskeyError> for ApiError {
    fn from(error: PasskeyError) -> Self {
        let message = error.to_string();
        match error {
            PasskeyError::ReauthRequired => ApiError::reauth_required(),
            PasskeyError::InvalidName => ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", message),
            PasskeyError::TooManyKeys => ApiError::new(StatusCode::CONFLICT, "too_many_security_keys", message),
            PasskeyError::NoPendingRegistration => ApiError::new(StatusCode::CONFLICT, "no_pending_setup", message),
            PasskeyError::InvalidCredential => ApiError::new(StatusCode::BAD_REQUEST, "invalid_credential", message),
            PasskeyError::AlreadyRegistered => ApiError::new(StatusCode::CONFLICT, "already_registered", message),
            PasskeyError::NotFound => ApiError::not_found(),
            PasskeyError::TwoFactorRequired => ApiError::new(StatusCode::FORBIDDEN, "two_factor_required", message),
            PasskeyError::LastSecondFactor => ApiError::new(StatusCode::CONFLICT, "last_second_factor", message),
            PasskeyError::Unavailable => ApiError::new(StatusCode::CONFLICT, "webauthn_unavailable", message),
            PasskeyError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl From<RecoveryError> for ApiError {
    fn from(error: RecoveryError) -> Self {
        let message = error.to_string();
        match error {
            RecoveryError::InvalidToken => ApiError::new(StatusCode::BAD_REQUEST, "invalid_token", message),
            RecoveryError::RecoveryPending { completes_at } => {
                ApiError::new(StatusCode::CONFLICT, "recovery_pending", message)
                    .with("completes_at", rfc3339(completes_at))
            }
            RecoveryError::RecoveryCancelled => ApiError::new(StatusCode::GONE, "recovery_cancelled", message),
            RecoveryError::InvalidCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message)
            }
            RecoveryError::WeakPassword(_) => ApiError::new(StatusCode::BAD_REQUEST, "weak_password", message),
            RecoveryError::InvalidRequest(_) => ApiError::invalid_request(message),
            RecoveryError::RateLimited { retry_after } => ApiError::rate_limited(retry_after, message),
            RecoveryError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            RecoveryError::ReauthRequired => ApiError::reauth_required(),
            RecoveryError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl From<PasswordResetError> for ApiError {
    fn from(error: PasswordResetError) -> Self {
        let message = error.to_string();
        match error {
            PasswordResetError::InvalidToken => ApiError::new(StatusCode::BAD_REQUEST, "invalid_token", message),
            PasswordResetError::WeakPassword(_) => ApiError::new(StatusCode::BAD_REQUEST, "weak_password", message),
            PasswordResetError::SecondFactorRequired => {
                ApiError::new(StatusCode::CONFLICT, "second_factor_required", message)
            }
            PasswordResetError::InvalidCode => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_code", message),
            PasswordResetError::CodeAlreadyUsed => {
                ApiError::new(StatusCode::UNAUTHORIZED, "code_already_used", message)
            }
            PasswordResetError::RateLimited { retry_after } => ApiError::rate_limited(retry_after, message),
            PasswordResetError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        let message = error.to_string();
        match error {
            AdminError::ReasonRequired => ApiError::new(StatusCode::BAD_REQUEST, "reason_required", message),
            AdminError::ReasonTooLong => ApiError::invalid_request(message),
            AdminError::UserNotFound | AdminError::RequestNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            AdminError::Forbidden(_) => ApiError::forbidden(message),
            AdminError::RequestExpired => ApiError::new(StatusCode::GONE, "request_expired", message),
            AdminError::AlreadyApproved => ApiError::new(StatusCode::CONFLICT, "already_approved", message),
            AdminError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl ApiError {
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }
}

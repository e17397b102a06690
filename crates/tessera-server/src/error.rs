//! The HTTP layer's one error type, the one mapping from use-case errors to it,
//! and its one rendering as a response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_app::{AppError, ErrorKind};
use tessera_core::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
    /// Adds an RFC 6750 `WWW-Authenticate` challenge (protected resources).
    pub bearer_challenge: bool,
    pub retry_after: Option<u64>,
}

pub const REFRESH_TOKEN_REUSED: &str = "refresh_token_reused";

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            bearer_challenge: false,
            retry_after: None,
        }
    }
    pub fn bad_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    /// A protected resource refused the access token.
    pub fn invalid_token(d: impl Into<String>) -> Self {
        Self {
            bearer_challenge: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", d)
        }
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_grant", d)
    }
    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "the login or password is incorrect",
        )
    }
    pub fn forbidden(d: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", d)
    }
    pub fn not_found(d: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", d)
    }
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    }
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        )
    }
    /// A superseded refresh token was presented; its session has been revoked.
    pub fn refresh_token_reused() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            REFRESH_TOKEN_REUSED,
            "this refresh token was already used; the session has been revoked",
        )
    }
    pub fn overloaded() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the server is busy; retry shortly",
            )
        }
    }
}

/// The one mapping from the use cases' errors to HTTP statuses and codes.
impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let (status, code) = match e.kind {
            ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request"),
            ErrorKind::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            ErrorKind::InvalidGrant => (StatusCode::UNAUTHORIZED, "invalid_grant"),
            ErrorKind::RefreshTokenReused => (StatusCode::UNAUTHORIZED, REFRESH_TOKEN_REUSED),
            ErrorKind::InvalidToken => return ApiError::invalid_token(e.description),
            ErrorKind::InvalidClient => (StatusCode::UNAUTHORIZED, "invalid_client"),
            ErrorKind::UnauthorizedClient => (StatusCode::BAD_REQUEST, "unauthorized_client"),
            ErrorKind::InvalidScope => (StatusCode::BAD_REQUEST, "invalid_scope"),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorKind::SignupClosed => (StatusCode::FORBIDDEN, "signup_closed"),
            ErrorKind::EmailNotVerified => (StatusCode::FORBIDDEN, "email_not_verified"),
            ErrorKind::InvalidLink => (StatusCode::BAD_REQUEST, "invalid_link"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ErrorKind::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ErrorKind::Internal => {
                // The description may name an internal cause: log it, show nothing.
                tracing::error!(error = %e.description, "internal error");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "an internal error occurred",
                );
            }
        };
        ApiError {
            retry_after: e.retry_after,
            ..ApiError::new(status, code, e.description)
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        AppError::from(e).into()
    }
}

fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "error_description": self.description });
        let mut res = (self.status, axum::Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.bearer_challenge {
            let v = format!(
                r#"Bearer error="invalid_token", error_description="{}""#,
                quote(&self.description)
            );
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

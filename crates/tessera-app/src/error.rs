//! The use-case layer's one error type. It names what went wrong in the product's
//! terms; the HTTP layer turns each kind into a status and a code in one place.

use tessera_core::StoreError;

/// What kind of failure a use case reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is malformed or breaks an input rule.
    InvalidRequest,
    /// Wrong login or password (the same for unknown and disabled accounts).
    InvalidCredentials,
    /// A refresh token that cannot be used: forged, expired, revoked, another client's.
    InvalidGrant,
    /// A superseded refresh token was presented; its session is now revoked.
    RefreshTokenReused,
    /// An access token that proves nothing (bad signature, expired, ended session).
    InvalidToken,
    /// An OAuth client failed to authenticate.
    InvalidClient,
    /// An OAuth client may not use this grant.
    UnauthorizedClient,
    /// A scope is unknown, not allowed for the client, or wider than granted.
    InvalidScope,
    /// The caller is known but may not do this.
    Forbidden,
    /// Registration is closed, or needs an invitation (contract §10.5).
    SignupClosed,
    /// The password is right, but the address must be confirmed first (§10.2).
    EmailNotVerified,
    /// A mailed link's token is unknown, used, expired or superseded (§10).
    InvalidLink,
    NotFound,
    /// A unique field (email, username, client id) is taken.
    Conflict,
    /// A throttle limit is spent; `retry_after` says for how long.
    RateLimited,
    /// The server cannot take this now (hash pool full, database unreachable).
    Overloaded,
    /// A fault of the server itself; details are logged, never shown.
    Internal,
}

#[derive(Debug, Clone)]
pub struct AppError {
    pub kind: ErrorKind,
    /// Text for the caller; never echoes a secret.
    pub description: String,
    /// Seconds to wait before retrying (rate limits, overload).
    pub retry_after: Option<u64>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(kind: ErrorKind, description: impl Into<String>) -> Self {
        Self {
            kind,
            description: description.into(),
            retry_after: None,
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, d)
    }
    pub fn invalid_credentials() -> Self {
        Self::new(
            ErrorKind::InvalidCredentials,
            "the login or password is incorrect",
        )
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidGrant, d)
    }
    pub fn refresh_token_reused() -> Self {
        Self::new(
            ErrorKind::RefreshTokenReused,
            "this refresh token was already used; the session has been revoked",
        )
    }
    pub fn invalid_token(d: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidToken, d)
    }
    pub fn forbidden(d: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, d)
    }
    pub fn invalid_link(d: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidLink, d)
    }
    pub fn not_found(d: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, d)
    }
    pub fn rate_limited(wait: u64) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(
                ErrorKind::RateLimited,
                "too many attempts; retry after the number of seconds in Retry-After",
            )
        }
    }
    pub fn overloaded() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(ErrorKind::Overloaded, "the server is busy; retry shortly")
        }
    }
    pub fn internal() -> Self {
        Self::new(ErrorKind::Internal, "an internal error occurred")
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::error::Error for AppError {}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(field) => {
                Self::new(ErrorKind::Conflict, format!("{field} is already taken"))
            }
            StoreError::NotFound => Self::not_found("no such resource"),
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                Self {
                    retry_after: Some(2),
                    ..Self::new(
                        ErrorKind::Overloaded,
                        "the database is unavailable; retry shortly",
                    )
                }
            }
            StoreError::Other(detail) => {
                tracing::error!(%detail, "database error");
                Self::internal()
            }
        }
    }
}

/// An input rule broken by a field.
impl From<tessera_core::validate::InvalidField> for AppError {
    fn from(e: tessera_core::validate::InvalidField) -> Self {
        Self::invalid_request(e.to_string())
    }
}

//! The OAuth 2 edge (RFC 6749, 7009, 7662): form bodies, reading client
//! credentials, and the one place where `ApiError`s take the shape RFC 6749 §5.2
//! dictates. Checking the credentials is `App::authenticate_client`.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use tessera_app::{AppError, ErrorKind};
use tessera_core::{Client, StoreError};

/// Longest client id or secret read before giving up (no hashing of huge input).
const MAX_CREDENTIAL_LEN: usize = 256;

/// An error at the OAuth edge: an [`ApiError`] whose code and status follow RFC 6749
/// §5.2, plus the `WWW-Authenticate: Basic` challenge a client that tried HTTP Basic
/// authentication must receive with a 401.
#[derive(Debug)]
pub struct OAuthError {
    pub error: ApiError,
    pub basic_challenge: bool,
}

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            error: ApiError::new(status, code, description),
            basic_challenge: false,
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }
    /// 401; challenges with Basic when the client tried Basic (RFC 6749 §5.2).
    pub fn invalid_client(basic: bool, d: impl Into<String>) -> Self {
        Self {
            basic_challenge: basic,
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
        }
    }
}

/// The JSON API answers a bad grant with 401 (`invalid_grant`, `invalid_credentials`,
/// `refresh_token_reused`); RFC 6749 §5.2 wants 400 `invalid_grant` for all of them.
/// Everything else (413, 429, 503, ...) keeps its status and code.
impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        match e.code {
            "invalid_grant"
            | "invalid_credentials"
            | "refresh_token_reused"
            | "email_not_verified" => Self::invalid_grant(e.description),
            _ => Self {
                error: e,
                basic_challenge: false,
            },
        }
    }
}

impl From<AppError> for OAuthError {
    fn from(e: AppError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut res = self.error.into_response();
        let h = res.headers_mut();
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.basic_challenge {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="tessera", charset="UTF-8""#),
            );
        }
        res
    }
}

/// An `application/x-www-form-urlencoded` body. Unknown parameters are ignored and a
/// repeated one is refused (RFC 6749 §3.1, §3.2); no error echoes a value.
pub struct Form<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Form<T> {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, OAuthError> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(OAuthError::invalid_request(
                "send the body as application/x-www-form-urlencoded",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    OAuthError::from(ApiError::payload_too_large())
                } else {
                    OAuthError::invalid_request("the request body could not be read")
                }
            })?;
        serde_urlencoded::from_bytes::<T>(&bytes)
            .map(Form)
            .map_err(|e| {
                if e.to_string().starts_with("duplicate field") {
                    OAuthError::invalid_request("a parameter appears more than once")
                } else {
                    OAuthError::invalid_request("the form body is malformed")
                }
            })
    }
}

/// A form parameter; an empty value counts as absent (RFC 6749 §3.1).
pub fn param(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// The client credentials a request presents.
#[derive(Debug, Default, PartialEq, Eq)]
struct Credentials {
    id: Option<String>,
    secret: Option<String>,
    /// The client used the `Authorization` header (so a 401 challenges Basic).
    basic: bool,
}

/// `application/x-www-form-urlencoded` decoding of one Basic credential (RFC 6749 §2.3.1).
fn form_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Reads `client_secret_basic` or `client_secret_post` / `none` credentials.
/// Using both the header and `client_secret` in the body is refused.
fn credentials(
    headers: &HeaderMap,
    body_id: Option<&str>,
    body_secret: Option<&str>,
) -> Result<Credentials, OAuthError> {
    let Some(h) = headers.get(header::AUTHORIZATION) else {
        return Ok(Credentials {
            id: body_id.map(str::to_string),
            secret: body_secret.map(str::to_string),
            basic: false,
        });
    };
    let bad = || OAuthError::invalid_client(true, "the Basic credentials cannot be read");
    let v = h.to_str().map_err(|_| bad())?;
    let (scheme, b64) = v.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            true,
            "authenticate the client with HTTP Basic or form parameters",
        ));
    }
    if b64.len() > 4 * MAX_CREDENTIAL_LEN {
        return Err(bad());
    }
    let decoded = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let (id, secret) = (
        form_decode(id).ok_or_else(bad)?,
        form_decode(secret).ok_or_else(bad)?,
    );
    if body_secret.is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method, not both Basic and client_secret",
        ));
    }
    if body_id.is_some_and(|b| b != id) {
        return Err(OAuthError::invalid_request(
            "client_id differs from the client in the Authorization header",
        ));
    }
    Ok(Credentials {
        id: Some(id).filter(|i| !i.is_empty()),
        secret: Some(secret),
        basic: true,
    })
}

impl AppState {
    /// Authenticates the calling OAuth client from `client_secret_basic`,
    /// `client_secret_post` or `none` credentials. Every failure is the same 401
    /// `invalid_client`, with a Basic challenge when Basic was tried.
    pub async fn authenticate_client_http(
        &self,
        headers: &HeaderMap,
        body_id: Option<&str>,
        body_secret: Option<&str>,
    ) -> Result<Client, OAuthError> {
        let creds = credentials(headers, body_id, body_secret)?;
        self.app
            .authenticate_client(creds.id.as_deref(), creds.secret.as_deref())
            .await
            .map_err(|e| match e.kind {
                ErrorKind::InvalidClient => OAuthError::invalid_client(creds.basic, e.description),
                _ => ApiError::from(e).into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn reads_basic_and_form_credentials() {
        let h = basic(&format!("Basic {}", STANDARD.encode("my%20app:s%2Bcr+t")));
        let c = credentials(&h, None, None).unwrap();
        assert_eq!(c.id.as_deref(), Some("my app"));
        assert_eq!(c.secret.as_deref(), Some("s+cr t"));
        assert!(c.basic);
        let c = credentials(&HeaderMap::new(), Some("app"), Some("pw")).unwrap();
        assert_eq!(
            (c.id.as_deref(), c.secret.as_deref(), c.basic),
            (Some("app"), Some("pw"), false)
        );
    }

    #[test]
    fn refuses_mixed_or_broken_credentials() {
        let h = basic(&format!("Basic {}", STANDARD.encode("app:pw")));
        let e = credentials(&h, None, Some("pw")).unwrap_err();
        assert_eq!(e.error.code, "invalid_request");
        let e = credentials(&h, Some("other"), None).unwrap_err();
        assert_eq!(e.error.code, "invalid_request");
        assert!(credentials(&h, Some("app"), None).is_ok());
        for v in [
            "Basic",
            "Basic !!!",
            "Bearer abc",
            &format!("Basic {}", STANDARD.encode("no-colon")),
        ] {
            let e = credentials(&basic(v), None, None).unwrap_err();
            assert_eq!(e.error.status, StatusCode::UNAUTHORIZED, "{v}");
            assert!(e.basic_challenge);
        }
    }

    #[test]
    fn grant_errors_become_400_invalid_grant() {
        for e in [
            ApiError::invalid_grant("x"),
            ApiError::invalid_credentials(),
            ApiError::new(StatusCode::UNAUTHORIZED, "refresh_token_reused", "x"),
        ] {
            let o = OAuthError::from(e);
            assert_eq!(
                (o.error.status, o.error.code),
                (StatusCode::BAD_REQUEST, "invalid_grant")
            );
        }
        let o = OAuthError::from(ApiError::overloaded());
        assert_eq!(o.error.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}

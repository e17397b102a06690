//! Request extractors: JSON bodies with JSON errors, client facts, and the access
//! token check used by every protected route.

use crate::AppState;
use crate::cookies;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;
use tessera_app::{Authenticated, Caller};
use tessera_core::{Session, User};
use tessera_jose::AccessClaims;

/// A JSON body whose every rejection is a JSON 4xx that never echoes a value.
pub struct ApiJson<T>(pub T);

fn redact_values(text: &str) -> String {
    // serde quotes the offending value after "invalid type:"/"invalid value:"; it may
    // be a password, so keep only the field path and the expectation.
    for marker in [
        "invalid type: ",
        "invalid value: ",
        "invalid length ",
        "unknown variant ",
    ] {
        if let Some(start) = text.find(marker) {
            let end = text[start..]
                .find(", expected")
                .map(|i| start + i)
                .unwrap_or(text.len());
            return format!(
                "{}{}{}",
                &text[..start],
                marker.trim_end_matches([':', ' ']),
                &text[end..]
            );
        }
    }
    text.to_string()
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

pub fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::unsupported_media_type(),
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("the body is not valid JSON"),
        JsonRejection::JsonDataError(e) => {
            let text = e.body_text();
            let text = text
                .trim_start_matches("Failed to deserialize the JSON body into the target type: ");
            ApiError::bad_request(redact_values(text))
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
        _ => ApiError::bad_request("the request body could not be read"),
    }
}

/// An optional JSON body: an empty body is `None` (e.g. a refresh by cookie).
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::payload_too_large()
                } else {
                    ApiError::bad_request("the request body could not be read")
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        match serde_json::from_slice::<T>(&bytes) {
            Ok(v) => Ok(OptionalJson(Some(v))),
            Err(e) if e.is_data() => Err(ApiError::bad_request(redact_values(&e.to_string()))),
            Err(_) => Err(ApiError::bad_request("the body is not valid JSON")),
        }
    }
}

/// Who is calling, as far as the socket and headers say: the use cases' [`Caller`].
#[derive(Debug, Clone, Default)]
pub struct ClientInfo(pub Caller);

impl std::ops::Deref for ClientInfo {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo
where
    Arc<AppState>: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = Arc::<AppState>::from_ref(state);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let trusted = &state.http.trusted_proxies;
        let ip = crate::protect::client_ip(peer, &parts.headers, trusted).map(|ip| ip.to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        Ok(ClientInfo(Caller {
            ip,
            user_agent,
            operator: false,
        }))
    }
}

/// A caller proven by a valid access token whose session is still live.
#[derive(Debug, Clone)]
pub struct AccessAuth {
    pub claims: AccessClaims,
    pub session: Session,
    pub user: User,
    pub via_cookie: bool,
}

/// The access token of a request: `Authorization: Bearer`, else the access cookie.
/// Never the query string.
pub fn access_token<'a>(
    headers: &'a HeaderMap,
    state: &AppState,
) -> Result<Option<(&'a str, bool)>, ApiError> {
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        let v = h
            .to_str()
            .map_err(|_| ApiError::invalid_token("the Authorization header is not readable"))?;
        let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::invalid_token(
                "use `Authorization: Bearer <access token>`",
            ));
        }
        return Ok(Some((token.trim(), false)));
    }
    Ok(cookies::read(headers, &state.cookies.access).map(|t| (t, true)))
}

pub fn check_csrf(method: &Method, headers: &HeaderMap, state: &AppState) -> Result<(), ApiError> {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || cookies::same_origin(headers, &state.http.trusted_origins) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "cross-site request refused",
        ))
    }
}

impl AppState {
    /// Verifies an access token and that its session is live (`App::authenticate`).
    pub async fn authenticate_access(
        &self,
        token: &str,
        via_cookie: bool,
    ) -> Result<AccessAuth, ApiError> {
        let Authenticated {
            claims,
            session,
            user,
        } = self.app.authenticate(token).await?;
        Ok(AccessAuth {
            claims,
            session,
            user,
            via_cookie,
        })
    }
}

impl FromRequestParts<Arc<AppState>> for AccessAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let (token, via_cookie) = access_token(&parts.headers, state)?
            .ok_or_else(|| ApiError::invalid_token("an access token is required"))?;
        if via_cookie {
            check_csrf(&parts.method, &parts.headers, state)?;
        }
        state.authenticate_access(token, via_cookie).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_redacted() {
        let t = super::redact_values(
            "password: invalid type: integer `12345678`, expected a string at line 1",
        );
        assert_eq!(t, "password: invalid type, expected a string at line 1");
        let t = super::redact_values(
            "delivery: unknown variant `hunter22`, expected one of `both`, `body` at line 1",
        );
        assert_eq!(
            t,
            "delivery: unknown variant, expected one of `both`, `body` at line 1"
        );
    }
}

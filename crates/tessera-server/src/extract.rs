//! Request extractors: JSON bodies with JSON errors, client facts, and the access
//! token check used by every protected route.

use crate::AppState;
use crate::cookies;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;
use tessera_app::{Authenticated, Caller};
use tessera_core::{Session, User};
use tessera_jose::AccessClaims;

/// A JSON object body (`application/json`). Every rejection is a JSON 4xx: 415 for
/// another content type, 413 over the body limit, 400 for anything that is not a
/// JSON object with the fields `T` takes. No message echoes a value or names a type.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::unsupported_media_type());
        }
        let bytes = read_body(req, state).await?;
        json_object(&bytes).map(ApiJson)
    }
}

/// An optional JSON object body: an empty body is `None` (e.g. a refresh by cookie).
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = is_json(req.headers());
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        json_object(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

/// The media type is `application/json` (parameters such as `charset` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The whole body, within the body limit.
pub async fn read_body<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large()
            } else {
                ApiError::bad_request("the request body could not be read")
            }
        })
}

const NOT_AN_OBJECT: &str = "the body must be a JSON object";
const NOT_JSON: &str = "the body is not valid JSON";

/// Parses a JSON object into `T`. Only an object is accepted: serde would also
/// read a struct from an array of its field values, which no client means.
pub fn json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let json_space = |b: &&u8| matches!(**b, b' ' | b'\t' | b'\n' | b'\r');
    if bytes.iter().find(|b| !json_space(b)) != Some(&b'{') {
        let valid = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        let empty = bytes.iter().all(|b| json_space(&b));
        return Err(ApiError::bad_request(if valid || empty {
            NOT_AN_OBJECT
        } else {
            NOT_JSON
        }));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        // serde_json reports some type mismatches (a number where an enum's string
        // belongs) as syntax errors: the body decides which it is.
        if e.inner().is_data() || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            ApiError::bad_request(describe_data_error(e.path(), e.inner()))
        } else {
            ApiError::bad_request(NOT_JSON)
        }
    })?;
    de.end().map_err(|_| ApiError::bad_request(NOT_JSON))?;
    Ok(value)
}

/// A message for a body that is JSON but not what the endpoint takes, built from
/// serde's standard phrasing: the field path and the rule, never the value sent,
/// a field name the client made up, or the name of a Rust type.
fn describe_data_error(path: &serde_path_to_error::Path, err: &serde_json::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    let backticked = |s: &str| s.split('`').nth(1).map(str::to_string);
    let expected = text.split_once(", expected ").map(|(_, e)| e);
    let rule = if let Some(rest) = text.strip_prefix("missing field ") {
        match backticked(rest) {
            Some(f) => format!("{f} is required"),
            None => "a required field is missing".into(),
        }
    } else if let Some(rest) = text.strip_prefix("duplicate field ") {
        match backticked(rest) {
            Some(f) => format!("{f} appears more than once"),
            None => "a field appears more than once".into(),
        }
    } else if text.starts_with("unknown field ") {
        match expected.filter(|e| plain_words(e)) {
            Some(e) => format!("the body has a field this endpoint does not take (it takes {e})"),
            None => "the body has a field this endpoint does not take".into(),
        }
    } else {
        match expected.filter(|e| plain_words(e)) {
            Some(e) => format!("must be {e}"),
            None => "is not a valid value".into(),
        }
    };
    // The path ends with the offending key; for an unknown field that key is the
    // client's own text, so it names only the object holding it.
    let mut segments: Vec<String> = path.iter().map(|s| s.to_string()).collect();
    if text.starts_with("unknown field ") {
        segments.pop();
    }
    let at = segments.join(".");
    if at.is_empty() || !plain_words(&at) {
        rule
    } else {
        format!("{at}: {rule}")
    }
}

/// Text made only of lower-case words, field names and serde's list punctuation
/// (`a string`, `one of `local`, `others``): never a Rust type name, which has
/// capitals (`struct PatchBody`) or paths (`a::B`).
fn plain_words(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with("struct ")
        && !s.starts_with("enum ")
        && !s.contains("::")
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b" _.,`-".contains(&b))
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
    /// Verifies an access token for the account API: its session is live and
    /// not a third-party application's (`App::authenticate_account`).
    pub async fn authenticate_access(
        &self,
        token: &str,
        via_cookie: bool,
    ) -> Result<AccessAuth, ApiError> {
        self.access(token, via_cookie, true).await
    }

    async fn access(
        &self,
        token: &str,
        via_cookie: bool,
        account: bool,
    ) -> Result<AccessAuth, ApiError> {
        let Authenticated {
            claims,
            session,
            user,
        } = if account {
            self.app.authenticate_account(token).await?
        } else {
            self.app.authenticate(token).await?
        };
        Ok(AccessAuth {
            claims,
            session,
            user,
            via_cookie,
        })
    }
}

/// The access token of a request (header, else cookie, CSRF-checked), verified.
async fn access_of(parts: &Parts, state: &AppState, account: bool) -> Result<AccessAuth, ApiError> {
    let (token, via_cookie) = access_token(&parts.headers, state)?
        .ok_or_else(|| ApiError::invalid_token("an access token is required"))?;
    if via_cookie {
        check_csrf(&parts.method, &parts.headers, state)?;
    }
    state.access(token, via_cookie, account).await
}

impl FromRequestParts<Arc<AppState>> for AccessAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        access_of(parts, state, true).await
    }
}

/// An access token of any application, third-party ones included: for
/// `/oauth/userinfo`, which answers by the token's scopes.
pub struct AnyAccess(pub AccessAuth);

impl FromRequestParts<Arc<AppState>> for AnyAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        access_of(parts, state, false).await.map(AnyAccess)
    }
}

#[cfg(test)]
mod tests {
    use super::json_object;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Slow,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct SampleBody {
        name: String,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        flag: bool,
    }

    fn message(body: &str) -> String {
        let e = json_object::<SampleBody>(body.as_bytes()).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(e.code, "invalid_request");
        for leak in ["struct ", "enum ", "Sample", "Mode", "::", "line "] {
            assert!(!e.description.contains(leak), "{body}: {}", e.description);
        }
        e.description
    }

    #[test]
    fn only_an_object_is_accepted() {
        assert!(json_object::<SampleBody>(br#" {"name": "x", "mode": "fast"} "#).is_ok());
        for body in [
            r#"["x", null, false]"#,
            "null",
            "12",
            r#""x""#,
            "true",
            "[]",
            "",
        ] {
            assert_eq!(message(body), "the body must be a JSON object", "{body}");
        }
        for body in ["{", "[", "nul", r#"{"name": "x"} trailing"#, "\u{c}{}"] {
            assert_eq!(message(body), "the body is not valid JSON", "{body}");
        }
    }

    #[test]
    fn data_errors_name_the_field_and_the_rule_never_the_value() {
        assert_eq!(message("{}"), "name is required");
        assert_eq!(message(r#"{"name": 12345678}"#), "name: must be a string");
        assert_eq!(
            message(r#"{"name": "x", "mode": "hunter22"}"#),
            "mode: must be `fast` or `slow`"
        );
        assert_eq!(
            message(r#"{"name": "x", "mode": 3}"#),
            "mode: is not a valid value"
        );
        assert_eq!(
            message(r#"{"name": "x", "flag": "yes"}"#),
            "flag: must be a boolean"
        );
        assert_eq!(
            message(r#"{"name": "x", "name": "y"}"#),
            "name appears more than once"
        );
        let m = message(r#"{"name": "x", "secret-in-a-key": 1}"#);
        assert_eq!(
            m,
            "the body has a field this endpoint does not take (it takes one of `name`, `mode`, `flag`)"
        );
        for body in [
            r#"{"name": ["hunter22"]}"#,
            r#"{"name": {"a": "hunter22"}}"#,
            r#"{"name": "x", "mode": ["hunter22"]}"#,
        ] {
            assert!(!message(body).contains("hunter22"), "{body}");
        }
    }
}

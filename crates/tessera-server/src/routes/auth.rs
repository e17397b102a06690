//! Register, login, refresh and logout: the token lifecycle.

use super::openapi::{ErrorBody, UserResponse};
use crate::AppState;
use crate::cookies;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ClientInfo, OptionalJson, access_token, check_csrf};
use crate::tokens::{Delivery, UserView};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use tessera_app::LogoutBy;

/// A new account. Unknown fields are refused.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "username": "ada",
    "password": "correct horse battery", "fullname": "Ada Lovelace"}))]
pub struct RegisterBody {
    /// Unique regardless of case; surrounding whitespace is removed. At most 254
    /// bytes, with at most 64 before the last `@`.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 3 to 32 of `a-z 0-9 _ . -`; upper-case letters are lower-cased and
    /// surrounding whitespace is removed before the check.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[A-Za-z0-9_.-]{3,32}[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    username: String,
    /// 8 to 128 characters, and not common or easy to guess (contract §5.1).
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    /// At most 128 characters and no control characters once surrounding whitespace
    /// is removed; absent or null: none.
    #[serde(default)]
    #[schema(
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000-\u001f\u007f-\u009f]{0,128}[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    fullname: Option<String>,
    /// The token of an invitation (`tessera user invite`): with it, registration
    /// works under `signup = invite`, only for the invited address, and once.
    #[serde(default)]
    invitation: Option<String>,
}

/// Create an account.
#[utoipa::path(
    post,
    path = "/v1/auth/register",
    operation_id = "register",
    tag = "auth",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "The new user; with email verification `required`, the account it becomes once the mailed link is followed (nothing signs in before)", body = UserResponse),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields, or a field breaks its rule; `invalid_link`: the invitation is unknown, used, expired or for another address", body = ErrorBody),
        (status = 403, description = "`signup_closed`: sign-up is closed or needs an invitation on this server", body = ErrorBody),
        (status = 409, description = "`conflict`: the username is taken, or the email (with email verification `required`, a taken email is answered 201 like a free one)", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the registration limit of this address is spent", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    ApiJson(body): ApiJson<RegisterBody>,
) -> ApiResult<Response> {
    let fullname = body.fullname.as_deref().unwrap_or("");
    let user = match body.invitation.as_deref() {
        Some(invitation) => {
            state
                .sign_up_invited(
                    invitation,
                    &body.email,
                    &body.username,
                    body.password,
                    fullname,
                    &client,
                )
                .await?
        }
        None => {
            state
                .sign_up(
                    &body.email,
                    &body.username,
                    body.password,
                    fullname,
                    &client,
                )
                .await?
        }
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "user": UserView::from(&user) })),
    )
        .into_response())
}

/// A login. One of `login`, `email` or `username` is required (checked in that
/// order); each may hold an email address or a username. Unknown fields are refused.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"login": "ada", "password": "correct horse battery", "delivery": "body"}))]
pub struct LoginBody {
    /// An email address (contains `@`) or a username; at most 320 bytes.
    #[serde(default)]
    #[schema(max_length = 320)]
    login: Option<String>,
    /// Accepted in place of `login`.
    #[serde(default)]
    #[schema(max_length = 320)]
    email: Option<String>,
    /// Accepted in place of `login`.
    #[serde(default)]
    #[schema(max_length = 320)]
    username: Option<String>,
    /// At most 128 characters (a longer one is refused before any hashing).
    #[schema(max_length = 128)]
    password: String,
    #[serde(default)]
    delivery: Delivery,
}

/// Log in with an email or a username and a password; opens a session.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    operation_id = "login",
    tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Token response; tokens in the body and/or cookies per `delivery`", body = crate::tokens::TokenBody,
            headers(("Set-Cookie" = String, description = "The access and refresh cookies, unless `delivery` is `body`")),
            links(
                ("refresh" = (operation_id = "refresh", description = "Rotate the refresh token",
                    request_body = json!({"refresh_token": "$response.body#/refresh_token", "delivery": "body"}))),
                ("logout" = (operation_id = "logout", description = "End the session by its refresh token",
                    request_body = json!({"refresh_token": "$response.body#/refresh_token"}))),
            )),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields, no login is given, or the login or password is too long", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: the login or password is incorrect (or the account is disabled)", body = ErrorBody),
        (status = 403, description = "`email_not_verified`: the password is right, but this server requires a confirmed email address first", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: a login limit is spent", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Response> {
    let login = body
        .login
        .or(body.email)
        .or(body.username)
        .ok_or_else(|| ApiError::bad_request("login is required (an email or a username)"))?;
    let issued = state
        .login_and_issue(&login, body.password, &client, &state.settings.client_id)
        .await?;
    Ok(state.token_response(issued, body.delivery))
}

/// A refresh. Unknown fields are refused.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// The current refresh token; when absent, the refresh cookie is used.
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    delivery: Option<Delivery>,
}

/// The refresh token from the body, else from the refresh cookie (CSRF-checked).
fn refresh_token_from(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    body: Option<String>,
) -> ApiResult<Option<String>> {
    if let Some(t) = body {
        return Ok(Some(t));
    }
    match cookies::read(headers, &state.cookies.refresh) {
        Some(t) => {
            check_csrf(method, headers, state)?;
            Ok(Some(t.to_string()))
        }
        None => Ok(None),
    }
}

/// Rotate a refresh token (from the body or the refresh cookie) into a new pair.
#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    operation_id = "refresh",
    tag = "auth",
    request_body(content = Option<RefreshBody>, description = "Empty when the refresh cookie is sent"),
    security((), ("refresh_cookie" = [])),
    responses(
        (status = 200, description = "Token response (a refresh by cookie returns the new refresh token only as a cookie)", body = crate::tokens::TokenBody,
            headers(("Set-Cookie" = String, description = "The access and refresh cookies, unless `delivery` is `body`")),
            links(
                ("refresh" = (operation_id = "refresh", description = "Rotate the new refresh token",
                    request_body = json!({"refresh_token": "$response.body#/refresh_token", "delivery": "body"}))),
            )),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields, or no refresh token was sent", body = ErrorBody),
        (status = 401, description = "`invalid_grant`: the token cannot be used; `refresh_token_reused`: a superseded token, the session is now revoked", body = ErrorBody),
        (status = 403, description = "`csrf`: a refresh cookie sent from another site", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a non-empty body that is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the refresh limit of this address is spent", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    client: ClientInfo,
    OptionalJson(body): OptionalJson<RefreshBody>,
) -> ApiResult<Response> {
    let body = body.unwrap_or_default();
    let from_body = body.refresh_token.is_some();
    let token =
        refresh_token_from(&state, &method, &headers, body.refresh_token)?.ok_or_else(|| {
            ApiError::bad_request("refresh_token is required (in the body or the refresh cookie)")
        })?;
    let issued = state
        .refresh(&token, &client, &state.settings.client_id)
        .await?;
    let delivery = body.delivery.unwrap_or_default();
    Ok(if from_body {
        state.token_response(issued, delivery)
    } else {
        state.cookie_refresh_response(issued, delivery)
    })
}

/// Which sessions end: this one, the user's others, or all of them.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogoutScope {
    #[default]
    Local,
    Others,
    Global,
}

impl From<LogoutScope> for tessera_app::LogoutScope {
    fn from(s: LogoutScope) -> Self {
        match s {
            LogoutScope::Local => Self::Local,
            LogoutScope::Others => Self::Others,
            LogoutScope::Global => Self::Global,
        }
    }
}

/// A logout. Unknown fields are refused.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"scope": "local"}))]
pub struct LogoutBody {
    /// Default `local`.
    #[serde(default)]
    scope: LogoutScope,
    /// Names the session when no access token is sent (else the refresh cookie does).
    #[serde(default)]
    refresh_token: Option<String>,
}

/// End this session (`local`), the user's other sessions, or all of them.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    operation_id = "logout",
    request_body(content = Option<LogoutBody>, description = "Optional; by access token, or by refresh token in the body or cookie"),
    security(("bearer" = []), ("access_cookie" = []), ("refresh_cookie" = []), ()),
    responses(
        (status = 204, description = "Logged out; cookies cleared (except with scope `others`)",
            headers(("Set-Cookie" = String, description = "Clears the access and refresh cookies"))),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields", body = ErrorBody),
        (status = 401, description = "`invalid_token`: no token was sent, or the access token is not valid; `invalid_grant`: the refresh token cannot be used; `refresh_token_reused`: a superseded refresh token, the session is now revoked", body = ErrorBody),
        (status = 403, description = "`csrf`: a cookie sent from another site", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a non-empty body that is not `application/json`", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn logout(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    client: ClientInfo,
    OptionalJson(body): OptionalJson<LogoutBody>,
) -> ApiResult<Response> {
    let body = body.unwrap_or_default();
    // Who is logging out: the access token's session, else the refresh token's.
    let auth = match access_token(&headers, &state)? {
        Some((token, via_cookie)) => {
            if via_cookie {
                check_csrf(&method, &headers, &state)?;
            }
            Some(state.authenticate_access(token, via_cookie).await?)
        }
        None => None,
    };
    let refresh;
    let by = match &auth {
        Some(a) => LogoutBy::Session(&a.session),
        None => {
            refresh = refresh_token_from(&state, &method, &headers, body.refresh_token)?
                .ok_or_else(|| {
                    ApiError::invalid_token(
                        "an access token or a refresh token is required to log out",
                    )
                })?;
            LogoutBy::RefreshToken(&refresh)
        }
    };
    state.logout(by, body.scope.into(), &client).await?;
    let mut headers = HeaderMap::new();
    if body.scope != LogoutScope::Others {
        state.cookies.clear(&mut headers);
    }
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

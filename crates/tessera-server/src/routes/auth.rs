//! Register, login, refresh and logout: the token lifecycle.

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

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterBody {
    email: String,
    username: String,
    password: String,
    #[serde(default)]
    fullname: Option<String>,
}

/// Create an account.
#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "auth",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "The new user", body = super::openapi::UserResponse),
        (status = 400, description = "A field is invalid", body = super::openapi::ErrorBody),
        (status = 409, description = "The email or username is taken", body = super::openapi::ErrorBody),
        (status = 429, description = "Too many attempts", body = super::openapi::ErrorBody),
    )
)]
pub async fn register(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    ApiJson(body): ApiJson<RegisterBody>,
) -> ApiResult<Response> {
    let fullname = body.fullname.as_deref().unwrap_or("");
    let user = state
        .sign_up(
            &body.email,
            &body.username,
            body.password,
            fullname,
            &client,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "user": UserView::from(&user) })),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginBody {
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    username: Option<String>,
    password: String,
    #[serde(default)]
    delivery: Delivery,
}

/// Log in with an email or a username and a password; opens a session.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Token response; tokens in the body and/or cookies per `delivery`", body = crate::tokens::TokenBody),
        (status = 400, description = "`invalid_request`", body = super::openapi::ErrorBody),
        (status = 401, description = "`invalid_credentials`", body = super::openapi::ErrorBody),
        (status = 429, description = "Too many attempts (`Retry-After`)", body = super::openapi::ErrorBody),
        (status = 503, description = "Overloaded (`Retry-After`)", body = super::openapi::ErrorBody),
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

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct RefreshBody {
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
    tag = "auth",
    request_body(content = Option<RefreshBody>, description = "Empty when the refresh cookie is sent"),
    responses(
        (status = 200, description = "Token response", body = crate::tokens::TokenBody),
        (status = 400, description = "`invalid_request`", body = super::openapi::ErrorBody),
        (status = 401, description = "`invalid_grant`, `refresh_token_reused` (the session is revoked)", body = super::openapi::ErrorBody),
        (status = 403, description = "`csrf` (cookie from another site)", body = super::openapi::ErrorBody),
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

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct LogoutBody {
    #[serde(default)]
    scope: LogoutScope,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// End this session (`local`), the user's other sessions, or all of them.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    request_body(content = Option<LogoutBody>, description = "Optional; by access token, or by refresh token in the body or cookie"),
    security((), ("bearer" = [])),
    responses(
        (status = 204, description = "Logged out; cookies cleared"),
        (status = 401, description = "`invalid_token`, `invalid_grant`", body = super::openapi::ErrorBody),
        (status = 403, description = "`csrf`", body = super::openapi::ErrorBody),
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

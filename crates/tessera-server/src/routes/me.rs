//! The signed-in user's own account: profile, password, sessions.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{AccessAuth, ApiJson, ClientInfo};
use crate::tokens::UserView;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tessera_app::ProfileChange;
use tessera_app::rfc3339;
use uuid::Uuid;

/// The signed-in user.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = super::openapi::UserResponse),
        (status = 401, description = "`invalid_token`", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_me(auth: AccessAuth) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "user": UserView::from(&auth.user) }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PatchBody {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    fullname: Option<String>,
}

/// Change the signed-in user's email, username or full name.
#[utoipa::path(
    patch,
    path = "/v1/me",
    tag = "me",
    request_body = PatchBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated user", body = super::openapi::UserResponse),
        (status = 400, description = "A field is invalid", body = super::openapi::ErrorBody),
        (status = 401, description = "`invalid_token`", body = super::openapi::ErrorBody),
        (status = 409, description = "The email or username is taken", body = super::openapi::ErrorBody),
        (status = 429, description = "`rate_limited`: email/username changes share the registration limit", body = super::openapi::ErrorBody),
    )
)]
pub async fn patch_me(
    State(state): State<Arc<AppState>>,
    auth: AccessAuth,
    client: ClientInfo,
    ApiJson(body): ApiJson<PatchBody>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let change = ProfileChange {
        email: body.email.as_deref(),
        username: body.username.as_deref(),
        fullname: body.fullname.as_deref(),
    };
    let user = state.update_profile(auth.user.id, change, &client).await?;
    Ok(axum::Json(
        serde_json::json!({ "user": UserView::from(&user) }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// Change the password; every other session of the user is revoked.
#[utoipa::path(
    post,
    path = "/v1/me/password",
    tag = "me",
    request_body = PasswordBody,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "The new password is invalid", body = super::openapi::ErrorBody),
        (status = 401, description = "`invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`forbidden`: the current password is incorrect (not a token problem, so no refresh helps)", body = super::openapi::ErrorBody),
        (status = 429, description = "`rate_limited`", body = super::openapi::ErrorBody),
    )
)]
pub async fn change_password(
    State(state): State<Arc<AppState>>,
    auth: AccessAuth,
    client: ClientInfo,
    ApiJson(body): ApiJson<PasswordBody>,
) -> ApiResult<Response> {
    state
        .app
        .change_password(
            &auth.user,
            auth.session.id,
            body.current_password,
            body.new_password,
            &client,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    id: String,
    created_at: String,
    last_used_at: String,
    expires_at: String,
    user_agent: Option<String>,
    ip: Option<String>,
    current: bool,
}

/// The signed-in user's live sessions, newest first.
#[utoipa::path(
    get,
    path = "/v1/me/sessions",
    tag = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Sessions", body = Vec<SessionView>),
        (status = 401, description = "`invalid_token`", body = super::openapi::ErrorBody),
    )
)]
pub async fn list_sessions(
    State(state): State<Arc<AppState>>,
    auth: AccessAuth,
) -> ApiResult<axum::Json<Vec<SessionView>>> {
    let sessions = state.list_sessions(auth.user.id).await?;
    Ok(axum::Json(
        sessions
            .into_iter()
            .map(|s| SessionView {
                id: s.id.to_string(),
                created_at: rfc3339(s.created_at),
                last_used_at: rfc3339(s.last_used_at),
                expires_at: rfc3339(s.idle_expires_at.min(s.absolute_expires_at)),
                user_agent: s.user_agent,
                ip: s.ip,
                current: s.id == auth.session.id,
            })
            .collect(),
    ))
}

/// Revoke one of the signed-in user's sessions.
#[utoipa::path(
    delete,
    path = "/v1/me/sessions/{id}",
    tag = "me",
    params(("id" = String, Path, description = "Session id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`invalid_token`", body = super::openapi::ErrorBody),
        (status = 404, description = "No such live session of this user", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete_session(
    State(state): State<Arc<AppState>>,
    auth: AccessAuth,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let sid = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("no such session"))?;
    state.revoke_own_session(auth.user.id, sid, &client).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

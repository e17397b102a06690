//! The signed-in user's own account: profile, password, sessions.

use super::openapi::{ErrorBody, UserResponse};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{AccessAuth, ApiJson, ClientInfo};
use crate::tokens::UserView;
use axum::extract::rejection::PathRejection;
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
    operation_id = "get_me",
    tag = "me",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The user", body = UserResponse),
        (status = 401, description = "`invalid_token`: no access token, or one that is not valid or whose session has ended", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn get_me(auth: AccessAuth) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "user": UserView::from(&auth.user) }))
}

/// The fields to change; absent or null fields stay as they are. Unknown fields
/// are refused.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"fullname": "Ada King"}))]
pub struct PatchBody {
    /// Not changed here: any value is answered 400; the address changes through
    /// `POST /v1/me/email`, which confirms it by a mailed link.
    #[serde(default)]
    email: Option<String>,
    /// As at registration: 3 to 32 of `a-z 0-9 _ . -`, lower-cased, trimmed.
    #[serde(default)]
    #[schema(
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[A-Za-z0-9_.-]{3,32}[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    username: Option<String>,
    /// At most 128 characters and no control characters once trimmed; `""` clears it.
    #[serde(default)]
    #[schema(
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000-\u001f\u007f-\u009f]{0,128}[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    fullname: Option<String>,
}

/// Change the signed-in user's username or full name.
#[utoipa::path(
    patch,
    path = "/v1/me",
    operation_id = "update_me",
    tag = "me",
    request_body = PatchBody,
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The updated user", body = UserResponse),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields, a field breaks its rule, or `email` is given (see `POST /v1/me/email`)", body = ErrorBody),
        (status = 401, description = "`invalid_token`", body = ErrorBody),
        (status = 403, description = "`csrf`: an access cookie sent from another site", body = ErrorBody),
        (status = 409, description = "`conflict`: the username is taken", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: username changes share the registration limit", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
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

/// The current password, to confirm an account deletion. Unknown fields are refused.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "correct horse battery"}))]
pub struct DeleteBody {
    /// A wrong one (or one over 128 characters) is answered 403.
    current_password: String,
}

/// Delete the signed-in user's account: every session ends, the user is removed,
/// and a notice is mailed to the address.
#[utoipa::path(
    delete,
    path = "/v1/me",
    operation_id = "delete_me",
    tag = "me",
    request_body = DeleteBody,
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "Deleted; cookies cleared",
            headers(("Set-Cookie" = String, description = "Clears the access and refresh cookies"))),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields", body = ErrorBody),
        (status = 401, description = "`invalid_token`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the current password is incorrect; `csrf`: an access cookie sent from another site", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: password checks share the login limits", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`overloaded`: the hash pool is full", body = ErrorBody),
    )
)]
pub async fn delete_me(
    State(state): State<Arc<AppState>>,
    auth: AccessAuth,
    client: ClientInfo,
    ApiJson(body): ApiJson<DeleteBody>,
) -> ApiResult<Response> {
    state
        .app
        .delete_account(&auth.user, auth.session.id, body.current_password, &client)
        .await?;
    let mut headers = axum::http::HeaderMap::new();
    state.cookies.clear(&mut headers);
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// A password change. Unknown fields are refused.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "correct horse battery",
    "new_password": "correct horse battery staple"}))]
pub struct PasswordBody {
    /// A wrong one (or one over 128 characters) is answered 403.
    current_password: String,
    /// 8 to 128 characters, and not common or easy to guess (contract §5.1).
    #[schema(min_length = 8, max_length = 128)]
    new_password: String,
}

/// Change the password; every other session of the user is revoked.
#[utoipa::path(
    post,
    path = "/v1/me/password",
    operation_id = "change_password",
    tag = "me",
    request_body = PasswordBody,
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields, or the new password breaks its rule", body = ErrorBody),
        (status = 401, description = "`invalid_token`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the current password is incorrect (not a token problem, so no refresh helps); `csrf`: an access cookie sent from another site", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: password checks share the login limits", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
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

/// One live session of the user.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    #[schema(format = "uuid")]
    id: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_used_at: String,
    /// The earlier of the idle and the absolute expiry.
    #[schema(format = DateTime)]
    expires_at: String,
    user_agent: Option<String>,
    ip: Option<String>,
    /// The session of the access token making this request.
    current: bool,
}

/// The signed-in user's live sessions, newest first.
#[utoipa::path(
    get,
    path = "/v1/me/sessions",
    operation_id = "list_sessions",
    tag = "me",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "Sessions", body = Vec<SessionView>),
        (status = 401, description = "`invalid_token`", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
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
    operation_id = "revoke_session",
    tag = "me",
    params(("id" = String, Path, format = "uuid", description = "Session id (a hyphenated UUID; anything else is not found)")),
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`invalid_token`", body = ErrorBody),
        (status = 403, description = "`csrf`: an access cookie sent from another site", body = ErrorBody),
        (status = 404, description = "`not_found`: no such live session of this user", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn delete_session(
    State(state): State<Arc<AppState>>,
    auth: AccessAuth,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    // Only the hyphenated form the API hands out names a session.
    let sid = id
        .ok()
        .filter(|Path(id)| id.len() == 36)
        .and_then(|Path(id)| Uuid::parse_str(&id).ok())
        .ok_or_else(|| ApiError::not_found("no such session"))?;
    state.revoke_own_session(auth.user.id, sid, &client).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

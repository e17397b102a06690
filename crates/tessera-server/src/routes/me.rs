//! The signed-in user's own account: profile, password, sessions.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{AccessAuth, ApiJson, ClientInfo};
use crate::tokens::{UserView, rfc3339};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tessera_core::model::{RevokeReason, UserPatch};
use tessera_core::validate;
use uuid::Uuid;

fn field(e: validate::InvalidField) -> ApiError {
    ApiError::bad_request(e.to_string())
}

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
    // A taken email or username answers 409, as registration does; changing them
    // therefore spends the registration budget, so it is no cheaper way to probe.
    if body.email.is_some() || body.username.is_some() {
        state
            .throttle_ip("register", state.settings.throttle.register_ip, &client)
            .await?;
    }
    let patch = UserPatch {
        email: body
            .email
            .as_deref()
            .map(validate::email)
            .transpose()
            .map_err(field)?,
        username: body
            .username
            .as_deref()
            .map(validate::username)
            .transpose()
            .map_err(field)?,
        fullname: body
            .fullname
            .as_deref()
            .map(validate::fullname)
            .transpose()
            .map_err(field)?,
    };
    let user = state.store.update_user(auth.user.id, patch).await?;
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
    validate::password(&body.new_password)
        .map_err(|e| ApiError::bad_request(format!("new_{e}")))?;
    if body
        .current_password
        .chars()
        .nth(validate::PASSWORD_MAX_CHARS)
        .is_some()
    {
        return Err(ApiError::forbidden("the current password is incorrect"));
    }
    let record = state
        .store
        .get_user(auth.user.id)
        .await?
        .ok_or_else(|| ApiError::invalid_token("no such user"))?;
    // A stolen access token must not turn this into an unthrottled password oracle:
    // checks count against the same limits as logins to the account.
    state.throttle_login(&auth.user.username, &client).await?;
    if !state
        .hasher
        .verify(body.current_password, Some(record.password_hash))
        .await?
    {
        state
            .audit(
                "password_change_failed",
                Some(auth.user.id),
                Some(auth.session.id),
                &client,
                None,
            )
            .await;
        return Err(ApiError::forbidden("the current password is incorrect"));
    }
    state.login_succeeded(&auth.user.username, &client).await;
    let hash = state.hasher.hash(body.new_password).await?;
    // The new hash and the revocation of every other session belong together: run
    // them in their own task so a request timeout or a dropped connection cannot
    // stop between the two.
    let (st, user, session) = (state.clone(), auth.user.id, auth.session.id);
    let writes = tokio::spawn(async move {
        st.store.set_password_hash(user, &hash).await?;
        let now = st.now();
        let revoked = st
            .store
            .revoke_user_sessions(
                user,
                Some(session),
                now,
                RevokeReason::PasswordChanged,
                st.feed_until(now),
            )
            .await?;
        let detail = Some(format!("revoked {} other sessions", revoked.len()));
        st.audit(
            "password_changed",
            Some(user),
            Some(session),
            &client,
            detail,
        )
        .await;
        Ok::<(), ApiError>(())
    });
    writes.await.map_err(|_| ApiError::overloaded())??;
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
    let sessions = state
        .store
        .list_user_sessions(auth.user.id, state.now())
        .await?;
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
    let missing = || ApiError::not_found("no such session");
    let sid = Uuid::parse_str(&id).map_err(|_| missing())?;
    let (session, _) = state.store.get_session(sid).await?.ok_or_else(missing)?;
    if session.user_id != auth.user.id || !session.is_active(state.now()) {
        return Err(missing());
    }
    state.revoke(sid, RevokeReason::UserRequest).await?;
    state
        .audit(
            "session_revoked",
            Some(auth.user.id),
            Some(sid),
            &client,
            None,
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! Register, login, refresh and logout: the token lifecycle.

use crate::AppState;
use crate::cookies;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ClientInfo, OptionalJson, access_token, check_csrf};
use crate::tokens::{Delivery, Issued, UserView};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use tessera_core::model::{AuditEvent, NewSession, NewUser, RevokeReason};
use tessera_core::validate::{self, LoginKey};
use tessera_core::{RefreshDecision, RejectReason, Session, User, decide};
use uuid::Uuid;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterBody {
    email: String,
    username: String,
    password: String,
    #[serde(default)]
    fullname: Option<String>,
}

fn field(e: validate::InvalidField) -> ApiError {
    ApiError::bad_request(e.to_string())
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
    let email = validate::email(&body.email).map_err(field)?;
    let username = validate::username(&body.username).map_err(field)?;
    let fullname = validate::fullname(body.fullname.as_deref().unwrap_or("")).map_err(field)?;
    validate::password(&body.password).map_err(field)?;
    if state.hasher.saturated() {
        return Err(ApiError::overloaded());
    }
    let limit = state.settings.throttle.register_ip;
    state.throttle_ip("register", limit, &client).await?;
    let password_hash = state.hasher.hash(body.password).await?;
    let now = state.now();
    let user = state
        .store
        .create_user(NewUser {
            id: Uuid::now_v7(),
            email,
            username,
            fullname,
            password_hash,
            created_at: now,
        })
        .await?;
    state
        .audit("register", Some(user.id), None, &client, None)
        .await;
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
    if login.len() > 320 {
        return Err(ApiError::bad_request("login is too long"));
    }
    if body
        .password
        .chars()
        .nth(validate::PASSWORD_MAX_CHARS)
        .is_some()
    {
        return Err(ApiError::bad_request(
            "password: must be at most 128 characters",
        ));
    }
    let (user, session) = state
        .password_login(&login, body.password, &client, &state.settings.client_id)
        .await?;
    let issued = state.issue(&session, &user, 0, session.created_at)?;
    Ok(state.token_response(issued, body.delivery))
}

impl AppState {
    /// Checks a login and password and opens a new session for OAuth client
    /// `client_id`. Unknown users, wrong passwords and disabled users all cost one
    /// hash and answer the same.
    pub async fn password_login(
        &self,
        login: &str,
        password: String,
        client: &ClientInfo,
        client_id: &str,
    ) -> ApiResult<(User, Session)> {
        // A flood beyond the hash pool is refused before any database work; then
        // the attempt is counted: a throttled one costs no lookup and no hash.
        if self.hasher.saturated() {
            return Err(ApiError::overloaded());
        }
        self.throttle_login(login, client).await?;
        let key = validate::login_key(login);
        let record = match &key {
            LoginKey::Email(e) if e.is_empty() => None,
            _ => self.store.find_user_for_login(&key).await?,
        };
        let hash = record.as_ref().map(|r| r.password_hash.clone());
        let verified = self.hasher.verify(password.clone(), hash).await?;
        let record = match record {
            Some(r) if verified && !r.user.disabled => r,
            other => {
                // The reason is for the operator's audit trail only; the caller
                // gets the same answer in every case.
                let reason = match &other {
                    None => "unknown account",
                    Some(r) if r.user.disabled => "account disabled",
                    Some(_) => "wrong password",
                };
                let uid = other.map(|r| r.user.id);
                self.audit("login_failed", uid, None, client, Some(reason.into()))
                    .await;
                return Err(ApiError::invalid_credentials());
            }
        };
        self.login_succeeded(login, client).await;
        let mut verified_hash = record.password_hash.clone();
        // Parameters changed since this hash was made: upgrade it while we hold the password.
        if self.hasher.needs_rehash(&record.password_hash)
            && let Ok(new_hash) = self.hasher.hash(password.clone()).await
            && let Ok(true) = self
                .store
                .upgrade_password_hash(record.user.id, &record.password_hash, &new_hash)
                .await
        {
            verified_hash = new_hash;
        }
        let now = self.now();
        let s = &self.settings;
        let session = self
            .store
            .create_session(NewSession {
                id: Uuid::now_v7(),
                user_id: record.user.id,
                client_id: client_id.to_string(),
                created_at: now,
                idle_expires_at: now + s.refresh_idle.min(s.session_max),
                absolute_expires_at: now + s.session_max,
                user_agent: client.user_agent.clone(),
                ip: client.ip.clone(),
            })
            .await?;
        // A password change that raced this login revokes every session it can see;
        // one created after that must not survive on the old password.
        let current = self
            .store
            .get_user(record.user.id)
            .await?
            .map(|r| r.password_hash);
        if current.as_deref() != Some(verified_hash.as_str()) {
            let still_valid = match current {
                Some(h) => self.hasher.verify(password, Some(h)).await.unwrap_or(false),
                None => false,
            };
            if !still_valid {
                self.revoke(session.id, RevokeReason::PasswordChanged)
                    .await?;
                return Err(ApiError::invalid_credentials());
            }
        }
        self.audit(
            "login_ok",
            Some(record.user.id),
            Some(session.id),
            client,
            None,
        )
        .await;
        Ok((record.user, session))
    }

    /// Applies the rotation rules (SPEC §4.3) to a presented refresh token.
    /// A lost compare-and-set means another request rotated first: decide again on
    /// the fresh state, which turns this request into a grace replay.
    /// A token is only accepted from the OAuth client its session belongs to.
    pub async fn refresh(
        &self,
        presented: &str,
        client: &ClientInfo,
        client_id: &str,
    ) -> ApiResult<Issued> {
        let outcome = self.refresh_once(presented, client, client_id).await;
        // Reuse is counted by its audit event.
        if !matches!(&outcome, Err(e) if e.code == crate::error::REFRESH_TOKEN_REUSED) {
            self.metrics.on_refresh(outcome.is_ok());
        }
        outcome
    }

    async fn refresh_once(
        &self,
        presented: &str,
        client: &ClientInfo,
        client_id: &str,
    ) -> ApiResult<Issued> {
        let token = self
            .refresh_codec
            .decode(presented)
            .map_err(|_| ApiError::invalid_grant("the refresh token is invalid"))?;
        // After the MAC check: a forged token costs no database work at all.
        self.throttle_refresh(self.settings.throttle.refresh_ip, client)
            .await?;
        for _ in 0..4 {
            let now = self.now();
            let (session, user) = self
                .store
                .get_session(token.session_id)
                .await?
                .ok_or_else(|| ApiError::invalid_grant("the refresh token is invalid"))?;
            if session.client_id != client_id {
                return Err(ApiError::invalid_grant(
                    "the refresh token was issued to another client",
                ));
            }
            match decide(
                &session,
                user.disabled,
                token.counter,
                now,
                self.settings.refresh_policy(),
            ) {
                RefreshDecision::Rotate {
                    from,
                    idle_expires_at,
                } => {
                    if self
                        .store
                        .rotate_session(session.id, from, now, idle_expires_at)
                        .await?
                    {
                        let rotated = Session {
                            counter: from + 1,
                            rotated_at: now,
                            last_used_at: now,
                            idle_expires_at,
                            ..session
                        };
                        return self.issue(&rotated, &user, from + 1, now);
                    }
                }
                RefreshDecision::ReplayWithinGrace { current } => {
                    return self.issue(&session, &user, current, now);
                }
                RefreshDecision::ReuseDetected => {
                    return Err(self.reuse_detected(&session, &user, client).await);
                }
                RefreshDecision::Rejected(reason) => {
                    return Err(ApiError::invalid_grant(match reason {
                        RejectReason::Revoked => "the session has been revoked",
                        RejectReason::Expired => "the session has expired",
                        RejectReason::UserDisabled => "the account is disabled",
                        RejectReason::UnknownToken => "the refresh token is invalid",
                    }));
                }
            }
        }
        Err(ApiError::overloaded())
    }

    /// Rule 3 of SPEC §4.3: a superseded token was presented. Revokes the session,
    /// records the event, and returns the error to answer with.
    async fn reuse_detected(
        &self,
        session: &Session,
        user: &User,
        client: &ClientInfo,
    ) -> ApiError {
        if let Err(e) = self.revoke(session.id, RevokeReason::RefreshReuse).await {
            return e;
        }
        self.audit(
            "refresh_reuse",
            Some(user.id),
            Some(session.id),
            client,
            None,
        )
        .await;
        tracing::warn!(session = %session.id, "refresh token reuse detected; session revoked");
        ApiError::refresh_token_reused()
    }

    /// How long a revoked session stays in the revocation feed: until the last
    /// access token issued for it has expired everywhere.
    pub fn feed_until(&self, now: i64) -> i64 {
        now + self.settings.access_ttl + self.settings.leeway
    }

    pub async fn revoke(&self, sid: Uuid, reason: RevokeReason) -> ApiResult<bool> {
        let now = self.now();
        Ok(self
            .store
            .revoke_session(sid, now, reason, self.feed_until(now))
            .await?)
    }

    /// Records an audit event; a failure to record is logged, never fatal.
    pub async fn audit(
        &self,
        kind: &str,
        user_id: Option<Uuid>,
        session_id: Option<Uuid>,
        client: &ClientInfo,
        detail: Option<String>,
    ) {
        self.metrics.on_event(kind);
        let event = AuditEvent {
            at: self.now(),
            kind: kind.to_string(),
            user_id,
            session_id,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            detail,
        };
        if let Err(e) = self.store.record_audit(event).await {
            tracing::warn!(error = %e, kind, "could not record audit event");
        }
    }
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
    let now = state.now();
    // Who is logging out: the access token's session, else the refresh token's.
    let session: Option<Session> = match access_token(&headers, &state)? {
        Some((token, via_cookie)) => {
            if via_cookie {
                check_csrf(&method, &headers, &state)?;
            }
            Some(state.authenticate(token, via_cookie).await?.session)
        }
        None => {
            let token = refresh_token_from(&state, &method, &headers, body.refresh_token)?
                .ok_or_else(|| {
                    ApiError::invalid_token(
                        "an access token or a refresh token is required to log out",
                    )
                })?;
            let t = state
                .refresh_codec
                .decode(&token)
                .map_err(|_| ApiError::invalid_grant("the refresh token is invalid"))?;
            let (session, user) = state
                .store
                .get_session(t.session_id)
                .await?
                .ok_or_else(|| ApiError::invalid_grant("the refresh token is invalid"))?;
            match decide(
                &session,
                user.disabled,
                t.counter,
                now,
                state.settings.refresh_policy(),
            ) {
                RefreshDecision::Rotate { .. } | RefreshDecision::ReplayWithinGrace { .. } => {
                    Some(session)
                }
                RefreshDecision::ReuseDetected => {
                    return Err(state.reuse_detected(&session, &user, &client).await);
                }
                // Already over: logging out again is harmless and succeeds.
                RefreshDecision::Rejected(_) if body.scope == LogoutScope::Local => None,
                RefreshDecision::Rejected(_) => {
                    return Err(ApiError::invalid_grant("the session has ended"));
                }
            }
        }
    };
    if let Some(session) = &session {
        let until = state.feed_until(now);
        match body.scope {
            LogoutScope::Local => {
                state
                    .store
                    .revoke_session(session.id, now, RevokeReason::Logout, until)
                    .await?;
            }
            LogoutScope::Others => {
                state
                    .store
                    .revoke_user_sessions(
                        session.user_id,
                        Some(session.id),
                        now,
                        RevokeReason::LogoutOthers,
                        until,
                    )
                    .await?;
            }
            LogoutScope::Global => {
                state
                    .store
                    .revoke_user_sessions(
                        session.user_id,
                        None,
                        now,
                        RevokeReason::LogoutGlobal,
                        until,
                    )
                    .await?;
            }
        }
        let scope = match body.scope {
            LogoutScope::Local => "local",
            LogoutScope::Others => "others",
            LogoutScope::Global => "global",
        };
        state
            .audit(
                "logout",
                Some(session.user_id),
                Some(session.id),
                &client,
                Some(format!("scope={scope}")),
            )
            .await;
    }
    let mut headers = HeaderMap::new();
    if body.scope != LogoutScope::Others {
        state.cookies.clear(&mut headers);
    }
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

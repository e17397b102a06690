//! Issuing a token pair for a session and shaping the token response (SPEC §5.1).

use crate::AppState;
use crate::error::ApiError;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tessera_core::{RefreshToken, Session, User};
use tessera_jose::{AccessClaims, Audience};
use uuid::Uuid;

/// Where tokens go: the body, cookies, or both (the seed tutorials' default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    #[default]
    Both,
    Body,
    Cookie,
}

/// A Unix time as RFC 3339 (UTC). Times outside 1970..=9999 (only ever seen in
/// hostile tokens) are shown as the raw number.
pub fn rfc3339(unix: i64) -> String {
    const LAST_SECOND_OF_9999: i64 = 253_402_300_799;
    if !(0..=LAST_SECOND_OF_9999).contains(&unix) {
        return format!("{unix} (out of range)");
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub username: String,
    pub fullname: String,
    pub created_at: String,
    pub disabled: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.clone(),
            username: u.username.clone(),
            fullname: u.fullname.clone(),
            created_at: rfc3339(u.created_at),
            disabled: u.disabled,
        }
    }
}

/// The token response of the JSON API (SPEC §5.1).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TokenBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<&'a str>,
    token_type: &'static str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    refresh_token_expires_in: i64,
    session_id: String,
    user: UserView,
}

/// A freshly issued pair.
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub refresh_expires_in: i64,
    pub session_id: Uuid,
    pub user: UserView,
}

impl AppState {
    /// Signs an access token for `session` and encodes its refresh token number `counter`.
    pub fn issue(
        &self,
        session: &Session,
        user: &User,
        counter: u64,
        now: i64,
    ) -> Result<Issued, ApiError> {
        let s = &self.settings;
        let p = s.profile_claims;
        // Never outlive the session: the revocation feed covers an access lifetime.
        let exp = (now + s.access_ttl).min(session.absolute_expires_at.max(now + 1));
        let claims = AccessClaims {
            iss: s.issuer.clone(),
            sub: user.id.to_string(),
            aud: Audience::One(s.audience.clone()),
            exp,
            iat: now,
            nbf: None,
            jti: Uuid::now_v7().to_string(),
            sid: session.id.to_string(),
            client_id: session.client_id.clone(),
            email: p.email.then(|| user.email.clone()),
            username: p.username.then(|| user.username.clone()),
            fullname: p.fullname.then(|| user.fullname.clone()),
        };
        let access_token = self.key_set().signing_key().sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "signing failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "an internal error occurred",
            )
        })?;
        let refresh_token = self.refresh_codec.encode(RefreshToken {
            session_id: session.id,
            counter,
        });
        Ok(Issued {
            access_token,
            refresh_token,
            expires_in: exp - now,
            refresh_expires_in: (session.idle_expires_at.min(session.absolute_expires_at) - now)
                .max(0),
            session_id: session.id,
            user: UserView::from(user),
        })
    }

    /// The 200 token response with the tokens where `delivery` says.
    pub fn token_response(&self, issued: Issued, delivery: Delivery) -> Response {
        let in_body = delivery != Delivery::Cookie;
        self.shaped_token_response(issued, in_body, in_body, delivery != Delivery::Body)
    }

    /// The answer to a refresh made with the refresh cookie: the new refresh token
    /// goes back only as a cookie — a script on the page must never read it from a
    /// body — while the access token is in the body too unless `delivery` is
    /// `cookie` (as the seed tutorials' front ends expect).
    pub fn cookie_refresh_response(&self, issued: Issued, delivery: Delivery) -> Response {
        self.shaped_token_response(issued, delivery != Delivery::Cookie, false, true)
    }

    fn shaped_token_response(
        &self,
        issued: Issued,
        access_in_body: bool,
        refresh_in_body: bool,
        cookies: bool,
    ) -> Response {
        let body = TokenBody {
            access_token: access_in_body.then_some(issued.access_token.as_str()),
            token_type: "Bearer",
            expires_in: issued.expires_in,
            refresh_token: refresh_in_body.then_some(issued.refresh_token.as_str()),
            refresh_token_expires_in: issued.refresh_expires_in,
            session_id: issued.session_id.to_string(),
            user: issued.user,
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if cookies {
            self.cookies
                .set_access(&mut headers, &issued.access_token, issued.expires_in);
            self.cookies.set_refresh(
                &mut headers,
                &issued.refresh_token,
                issued.refresh_expires_in,
            );
        }
        (StatusCode::OK, headers, axum::Json(body)).into_response()
    }
}

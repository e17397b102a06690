//! Shaping the token response: the JSON body and the cookies.

use crate::AppState;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tessera_app::{Issued, rfc3339};
use tessera_core::User;

/// Where tokens go: the body, cookies, or both (the seed tutorials' default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    #[default]
    Both,
    Body,
    Cookie,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub username: String,
    pub fullname: String,
    pub created_at: String,
    pub disabled: bool,
    /// True only after the address was confirmed through a mailed link.
    pub email_verified: bool,
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
            email_verified: u.email_verified,
        }
    }
}

/// The token response of the JSON API (contract §5.1).
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

impl AppState {
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
            user: UserView::from(&issued.user),
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if cookies {
            self.cookies.set_issued(&mut headers, &issued);
        }
        (StatusCode::OK, headers, axum::Json(body)).into_response()
    }
}

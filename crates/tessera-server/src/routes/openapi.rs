//! The OpenAPI 3 document of the whole HTTP API (`GET /openapi.json`), generated
//! from the handlers' `#[utoipa::path]` attributes as the route table registers them.

use crate::tokens::UserView;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera",
        description = "Access and refresh tokens done right: a JSON API, an OAuth 2 / OpenID Connect surface and operations endpoints."
    ),
    tags(
        (name = "auth", description = "Register, log in, refresh, log out"),
        (name = "me", description = "The signed-in user's account and sessions"),
        (name = "oauth", description = "OAuth 2 and OpenID Connect"),
        (name = "meta", description = "Keys, the revocation feed, health, this document"),
    )
)]
pub struct ApiDoc;

/// Every error answer: a machine code and a human description.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// E.g. `invalid_request`, `invalid_token`, `invalid_grant`, `rate_limited`.
    error: String,
    error_description: String,
}

/// `{"user": ...}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UserResponse {
    user: UserView,
}

/// One page of the revocation feed.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RevocationFeed {
    /// Pass as `since` to get the next page.
    cursor: String,
    revoked: Vec<RevokedSession>,
}

/// A revoked session and until when its access tokens may still be presented.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RevokedSession {
    sid: String,
    until: i64,
}

/// The document: every route of [`super::api`] plus the security schemes.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = super::api().into_openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An access token (`Authorization: Bearer`), or the access cookie",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "client_basic",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "OAuth client credentials (`client_secret_basic`); `client_secret_post` and public clients send `client_id` in the form instead",
                ))
                .build(),
        ),
    );
    doc
}

/// This document (OpenAPI 3).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document", body = serde_json::Value))
)]
pub async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC
        .get_or_init(|| document().to_json().unwrap_or_else(|_| "{}".into()))
        .clone();
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

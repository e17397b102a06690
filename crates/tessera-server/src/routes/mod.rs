//! The route table: every path Tessera answers, in one place. Each handler carries
//! its `#[utoipa::path]`; registering it here with `routes!` also puts it in
//! `/openapi.json`, so adding a documented path is one line.

mod auth;
mod lifecycle;
mod me;
mod meta;
mod oauth;
pub(crate) mod openapi;

use crate::AppState;
use crate::error::ApiError;
use crate::pages;
use axum::Router;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Every route with its OpenAPI description: `routes!(handler, ...)` takes the path
/// and methods from the handlers' `#[utoipa::path]` attributes.
pub(crate) fn api() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(me::get_me, me::patch_me, me::delete_me))
        .routes(routes!(me::change_password))
        .routes(routes!(lifecycle::confirm_email))
        .routes(routes!(lifecycle::request_verification))
        .routes(routes!(lifecycle::change_email))
        .routes(routes!(lifecycle::forgot_password))
        .routes(routes!(lifecycle::resend_verification))
        .routes(routes!(lifecycle::reset_password))
        .routes(routes!(me::list_sessions))
        .routes(routes!(me::delete_session))
        .routes(routes!(meta::revocations))
        .routes(routes!(meta::jwks))
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::metrics))
        .routes(routes!(oauth::token))
        .routes(routes!(oauth::revoke))
        .routes(routes!(oauth::introspect))
        .routes(routes!(oauth::userinfo, oauth::userinfo_post))
        .routes(routes!(
            pages::oauth::authorize,
            pages::oauth::authorize_consent
        ))
        .routes(routes!(
            pages::oauth::end_session,
            pages::oauth::end_session_post
        ))
        .routes(routes!(oauth::openid_configuration))
        .routes(routes!(oauth::oauth_authorization_server))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(
            pages::account::verify_email_page,
            pages::account::verify_email_submit
        ))
        .routes(routes!(
            pages::account::forgot_password_page,
            pages::account::forgot_password_submit
        ))
        .routes(routes!(
            pages::account::resend_verification_page,
            pages::account::resend_verification_submit
        ))
        .routes(routes!(
            pages::account::reset_password_page,
            pages::account::reset_password_submit
        ))
        .routes(routes!(
            pages::account::register_page,
            pages::account::register_submit
        ))
        // The hosted sign-in, sign-up and account pages.
        .routes(routes!(pages::signin::home))
        .routes(routes!(
            pages::signin::signin_page,
            pages::signin::signin_submit
        ))
        .routes(routes!(
            pages::signin::signup_page,
            pages::signin::signup_submit
        ))
        .routes(routes!(pages::signin::resume))
        .routes(routes!(pages::me::account_page))
        .routes(routes!(pages::me::profile_submit))
        .routes(routes!(pages::me::email_submit))
        .routes(routes!(pages::me::password_submit))
        .routes(routes!(pages::me::device_signout_submit))
        .routes(routes!(pages::me::app_revoke_submit))
        .routes(routes!(pages::me::signout_submit))
        .routes(routes!(pages::me::delete_submit))
}

pub fn router() -> Router<Arc<AppState>> {
    let (router, _) = api().split_for_parts();
    router
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
}

#[cfg(test)]
mod tests {
    /// Routes registered with `routes!` are documented by construction; a plain
    /// axum `route` call would serve a path `/openapi.json` does not list.
    #[test]
    fn every_route_is_registered_with_its_documentation() {
        let plain = concat!(".route", "(");
        for (file, src) in [
            ("routes/mod.rs", include_str!("mod.rs")),
            ("lib.rs", include_str!("../lib.rs")),
        ] {
            assert!(
                !src.contains(plain),
                "{file} adds a route without routes!(): annotate its handler with \
                 #[utoipa::path] and register it in routes::api()"
            );
        }
    }

    /// Operation ids are part of the API (client generators name methods after
    /// them): each is set explicitly, and changing one is a visible decision.
    #[test]
    fn every_operation_has_its_stable_id() {
        let doc = super::openapi::document();
        let mut found = std::collections::BTreeMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                found.insert(format!("{method} {path}"), id);
            }
        }
        let expected = [
            ("post /v1/auth/register", "register"),
            ("post /v1/auth/login", "login"),
            ("post /v1/auth/refresh", "refresh"),
            ("post /v1/auth/logout", "logout"),
            ("get /v1/me", "get_me"),
            ("patch /v1/me", "update_me"),
            ("delete /v1/me", "delete_me"),
            ("post /v1/me/email", "change_email"),
            ("post /v1/me/password", "change_password"),
            ("post /v1/auth/email/confirm", "confirm_email"),
            ("post /v1/me/email/verify", "request_email_verification"),
            ("post /v1/auth/password/forgot", "forgot_password"),
            ("post /v1/auth/email/resend", "resend_email_verification"),
            ("post /v1/auth/password/reset", "reset_password"),
            ("get /v1/me/sessions", "list_sessions"),
            ("delete /v1/me/sessions/{id}", "revoke_session"),
            ("get /v1/revocations", "revocations"),
            ("get /.well-known/jwks.json", "jwks"),
            ("get /healthz", "healthz"),
            ("get /readyz", "readyz"),
            ("get /metrics", "metrics"),
            ("post /oauth/token", "oauth_token"),
            ("post /oauth/revoke", "oauth_revoke"),
            ("post /oauth/introspect", "oauth_introspect"),
            ("get /oauth/userinfo", "userinfo"),
            ("post /oauth/userinfo", "userinfo_post"),
            (
                "get /.well-known/openid-configuration",
                "openid_configuration",
            ),
            (
                "get /.well-known/oauth-authorization-server",
                "oauth_authorization_server",
            ),
            ("get /openapi.json", "openapi"),
            ("get /account/verify-email", "page_verify_email"),
            ("post /account/verify-email", "page_verify_email_submit"),
            ("get /account/forgot-password", "page_forgot_password"),
            (
                "post /account/forgot-password",
                "page_forgot_password_submit",
            ),
            (
                "get /account/resend-verification",
                "page_resend_verification",
            ),
            (
                "post /account/resend-verification",
                "page_resend_verification_submit",
            ),
            ("get /account/reset-password", "page_reset_password"),
            ("post /account/reset-password", "page_reset_password_submit"),
            ("get /account/register", "page_register"),
            ("post /account/register", "page_register_submit"),
            ("get /oauth/authorize", "authorize"),
            ("post /oauth/authorize", "authorize_consent"),
            ("get /oauth/logout", "end_session"),
            ("post /oauth/logout", "end_session_post"),
            ("get /", "page_home"),
            ("get /signin", "page_signin"),
            ("post /signin", "page_signin_submit"),
            ("get /signup", "page_signup"),
            ("post /signup", "page_signup_submit"),
            ("get /v1/auth/resume", "page_resume"),
            ("get /account", "page_account"),
            ("post /account/profile", "page_account_profile"),
            ("post /account/email", "page_account_email"),
            ("post /account/password", "page_account_password"),
            (
                "post /account/devices/signout",
                "page_account_device_signout",
            ),
            ("post /account/signout", "page_account_signout"),
            ("post /account/apps/revoke", "page_account_app_revoke"),
            ("post /account/delete", "page_account_delete"),
        ];
        let expected: std::collections::BTreeMap<String, String> = expected
            .iter()
            .map(|(op, id)| (op.to_string(), id.to_string()))
            .collect();
        assert_eq!(found, expected);
    }
}

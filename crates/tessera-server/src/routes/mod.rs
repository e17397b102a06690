//! The route table: every path Tessera answers, in one place. Each handler carries
//! its `#[utoipa::path]`; registering it here with `routes!` also puts it in
//! `/openapi.json`, so adding a documented path is one line.

mod auth;
mod me;
mod meta;
mod oauth;
pub(crate) mod openapi;

use crate::AppState;
use crate::error::ApiError;
use crate::metrics;
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
        .routes(routes!(me::get_me, me::patch_me))
        .routes(routes!(me::change_password))
        .routes(routes!(me::list_sessions))
        .routes(routes!(me::delete_session))
        .routes(routes!(meta::revocations))
        .routes(routes!(meta::jwks))
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(metrics::render))
        .routes(routes!(oauth::token))
        .routes(routes!(oauth::revoke))
        .routes(routes!(oauth::introspect))
        .routes(routes!(oauth::userinfo, oauth::userinfo_post))
        .routes(routes!(oauth::openid_configuration))
        .routes(routes!(oauth::oauth_authorization_server))
        .routes(routes!(openapi::openapi_json))
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

    #[test]
    fn operation_ids_are_unique() {
        let doc = super::openapi::document();
        let mut ids = std::collections::HashSet::new();
        for (path, item) in &doc.paths.paths {
            let ops = serde_json::to_value(item).unwrap();
            for (method, op) in ops.as_object().unwrap() {
                if let Some(id) = op.get("operationId").and_then(|v| v.as_str()) {
                    assert!(
                        ids.insert(id.to_string()),
                        "{method} {path}: duplicate {id}"
                    );
                }
            }
        }
        assert!(ids.len() >= 22, "{}", ids.len());
    }
}

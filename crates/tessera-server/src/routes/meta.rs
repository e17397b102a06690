//! Keys, the revocation feed, and health.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// The public signing keys (JWK Set, RFC 7517); never an HMAC secret.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "meta",
    responses((status = 200, description = "JWK Set", body = serde_json::Value))
)]
pub async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let body = state.key_set().jwks_json().to_string();
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={}", state.settings.jwks_max_age))
            .expect("digits only"),
    );
    res
}

/// Liveness.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses((status = 200, description = "Alive", body = serde_json::Value))
)]
pub async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Readiness: the database is reachable.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready", body = serde_json::Value),
        (status = 503, description = "The database is not reachable", body = super::openapi::ErrorBody),
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => axum::Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the database is not reachable",
            );
            err.retry_after = Some(2);
            err.into_response()
        }
    }
}

const FEED_PAGE: u32 = 1000;

/// Sessions revoked after `since`, for resource servers (SPEC §4.4).
#[utoipa::path(
    get,
    path = "/v1/revocations",
    tag = "meta",
    params(("since" = Option<String>, Query, description = "The cursor of the previous page; omit to start")),
    responses(
        (status = 200, description = "One page of the feed", body = super::openapi::RevocationFeed),
        (status = 400, description = "`since` is not a cursor", body = super::openapi::ErrorBody),
    )
)]
pub async fn revocations(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let since = match q.get("since").map(String::as_str) {
        None | Some("") => 0,
        Some(s) => s.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
            ApiError::bad_request("since must be a cursor returned by this endpoint")
        })?,
    };
    let rows = state
        .store
        .revocations_since(since, state.now(), FEED_PAGE)
        .await?;
    let cursor = rows.last().map(|r| r.cursor).unwrap_or(since);
    let revoked: Vec<_> = rows
        .iter()
        .map(|r| json!({ "sid": r.session_id.to_string(), "until": r.until }))
        .collect();
    Ok(axum::Json(
        json!({ "cursor": cursor.to_string(), "revoked": revoked }),
    ))
}

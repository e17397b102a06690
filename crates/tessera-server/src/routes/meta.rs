//! Keys, the revocation feed, and health.

use super::openapi::{ErrorBody, RevocationFeed};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::extract::rejection::QueryRejection;
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
    operation_id = "jwks",
    tag = "meta",
    responses((status = 200, description = "JWK Set", body = JwkSet,
        headers(("Cache-Control" = String, description = "`public, max-age=<jwks_max_age>`"))))
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
    operation_id = "healthz",
    tag = "meta",
    responses((status = 200, description = "Alive", body = Status))
)]
pub async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Readiness: the database is reachable.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "`overloaded`: the database is not reachable", body = ErrorBody),
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

/// Sessions revoked after `since`, for resource servers (contract §4.4).
#[utoipa::path(
    get,
    path = "/v1/revocations",
    operation_id = "revocations",
    tag = "meta",
    params(("since" = Option<String>, Query, pattern = "^[0-9]*$",
        description = "The `cursor` of the previous page (decimal digits); omit it, or leave it empty, to start")),
    responses(
        (status = 200, description = "One page of the feed", body = RevocationFeed),
        (status = 400, description = "`invalid_request`: `since` is not a cursor", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn revocations(
    State(state): State<Arc<AppState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::bad_request("the query string is malformed"));
    };
    let since = match q.get("since").map(String::as_str) {
        None | Some("") => 0,
        Some(s) if s.bytes().all(|b| b.is_ascii_digit()) => {
            // Beyond the largest cursor there is nothing newer to list.
            s.parse::<i64>().unwrap_or(i64::MAX)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "since must be a cursor returned by this endpoint",
            ));
        }
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

/// `{"status": ...}`
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Status {
    /// `ok` (alive) or `ready`.
    #[schema(pattern = "^(ok|ready)$")]
    status: String,
}

/// A JWK Set (RFC 7517 §5): the public keys that verify access tokens.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct JwkSet {
    /// Public JWKs with `kty`, `kid`, `alg` and `use`; never a private or symmetric key.
    #[schema(value_type = Vec<Object>)]
    keys: Vec<serde_json::Value>,
}

/// Prometheus metrics (OpenMetrics text): requests and latencies per route, logins,
/// refreshes, reuse detections, rate-limit hits, active sessions.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "meta",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"),
        (status = 500, description = "`server_error`: the metrics could not be encoded", body = ErrorBody),
    )
)]
pub async fn metrics(state: State<Arc<AppState>>) -> Response {
    crate::metrics::render(state).await
}

//! The HTTP side of the metrics: a route layer that times every request, and the
//! `/metrics` endpoint, on the main listener or one of its own (`metrics_listen`).
//! The registry itself is `tessera_app::metrics`.

use crate::{AppState, MetricsExposure};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// Records every request: count by method/route/status and latency by route. The
/// route is the matched template (`/v1/me/sessions/{id}`), so labels stay bounded.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    if let Some(r) = &route {
        // The request's span (layers::RequestSpan) names its route from here on.
        tracing::Span::current().record("route", tracing::field::display(r));
    }
    // Label values must come from a fixed set: a client can send any method.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let res = next.run(req).await;
    // A 405 still carries the matched path; unknown methods must not add series.
    let route = match route {
        Some(r) if res.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED => r,
        _ => "unmatched".into(),
    };
    state.metrics.on_request(
        method,
        route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

/// Prometheus metrics (OpenMetrics text): requests and latencies per route, logins,
/// refreshes, reuse detections, rate-limit hits, active sessions.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"))
)]
pub async fn render(State(state): State<Arc<AppState>>) -> Response {
    let active = state.store.count_active_sessions(state.now()).await.ok();
    let Ok(body) = state.metrics.render(active) else {
        return crate::error::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "metrics could not be encoded",
        )
        .into_response();
    };
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}

/// On the main listener `/metrics` exists only when no other place is configured
/// for it: with `metrics_listen` set to an address or `off` it answers 404 here.
pub async fn only_where_configured(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let is_metrics = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| p.as_str() == "/metrics");
    if is_metrics && state.http.metrics != MetricsExposure::Main {
        return crate::error::ApiError::not_found("no such endpoint").into_response();
    }
    next.run(req).await
}

/// `/metrics` alone, for a listener of its own.
pub fn router() -> axum::Router<Arc<AppState>> {
    let (router, _) = utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(render))
        .split_for_parts();
    router
}

//! Prometheus metrics (SPEC §5.3): requests and latencies per route, logins,
//! refreshes, reuse detections, rate-limit hits, active sessions.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    logins: Family<ResultLabels, Counter>,
    refreshes: Family<ResultLabels, Counter>,
    reuse: Counter,
    rate_limited: Counter,
    active_sessions: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tessera");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let logins = Family::<ResultLabels, Counter>::default();
        let refreshes = Family::<ResultLabels, Counter>::default();
        let reuse = Counter::default();
        let rate_limited = Counter::default();
        let active_sessions = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register("logins", "Password logins by result", logins.clone());
        registry.register(
            "refreshes",
            "Refresh-token uses by result",
            refreshes.clone(),
        );
        registry.register(
            "refresh_reuse_detections",
            "Superseded refresh tokens presented (sessions revoked)",
            reuse.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by throttling",
            rate_limited.clone(),
        );
        registry.register(
            "active_sessions",
            "Live sessions (read from the database at scrape time)",
            active_sessions.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            logins,
            refreshes,
            reuse,
            rate_limited,
            active_sessions,
        }
    }
}

impl Metrics {
    /// Counts the outcome an audit event or a refresh stands for.
    pub fn on_event(&self, kind: &str) {
        match kind {
            "login_ok" => self
                .logins
                .get_or_create(&ResultLabels { result: "ok" })
                .inc(),
            "login_failed" => self
                .logins
                .get_or_create(&ResultLabels { result: "failed" })
                .inc(),
            "refresh_reuse" => {
                self.reuse.inc();
                self.refreshes
                    .get_or_create(&ResultLabels { result: "reused" })
                    .inc()
            }
            "throttled" | "rate_limited" => self.rate_limited.inc(),
            _ => 0,
        };
    }

    pub fn on_refresh(&self, ok: bool) {
        self.refreshes
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    pub fn on_rate_limited(&self) {
        self.rate_limited.inc();
    }
}

/// Records every request: count by method/route/status and latency by route. The
/// route is the matched template (`/v1/me/sessions/{id}`), so labels stay bounded.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
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
    }
    .to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    // A 405 still carries the matched path; unknown methods must not add series.
    let route = match route {
        Some(r) if res.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED => r,
        _ => "unmatched".into(),
    };
    let m = &state.metrics;
    m.latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: res.status().as_u16(),
        })
        .inc();
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
    if let Ok(n) = state.store.count_active_sessions(state.now()).await {
        state
            .metrics
            .active_sessions
            .set(n.min(i64::MAX as u64) as i64);
    }
    let mut body = String::new();
    if encode(&mut body, &state.metrics.registry).is_err() {
        return crate::error::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "metrics could not be encoded",
        )
        .into_response();
    }
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}

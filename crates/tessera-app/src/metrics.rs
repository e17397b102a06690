//! Prometheus metrics: requests and latencies per route (recorded by the HTTP
//! layer), logins, refreshes, reuse detections, rate-limit hits, active sessions
//! (recorded where the use cases decide the outcome).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

impl Metrics {
    /// Counts one HTTP request: `route` is the matched template, so labels stay bounded.
    pub fn on_request(&self, method: &'static str, route: String, status: u16, secs: f64) {
        self.latency
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(secs);
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route,
                status,
            })
            .inc();
    }

    /// The OpenMetrics text, with the live-session count as of `active_sessions`.
    pub fn render(&self, active_sessions: Option<u64>) -> Result<String, std::fmt::Error> {
        if let Some(n) = active_sessions {
            self.active_sessions.set(n.min(i64::MAX as u64) as i64);
        }
        let mut body = String::new();
        encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

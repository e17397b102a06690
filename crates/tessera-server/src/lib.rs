//! The HTTP edge of Tessera (axum): routes, extractors, cookies, CSRF, and the one
//! mapping from errors to HTTP responses. Handlers extract, call one use case of
//! `tessera-app`, and shape the response; no rule lives here.

mod cookies;
mod error;
mod extract;
pub mod layers;
pub mod metrics;
mod oauth;
mod pages;
pub mod protect;
mod routes;
mod tokens;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tessera_app::App;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use cookies::{CookieNames, parse_origin};
pub use error::{ApiError, ApiResult};
pub use protect::IpNet;
pub use url::Origin;

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsExposure {
    /// On the main listener, next to the API.
    Main,
    /// Only on a listener of its own (the main listener answers 404).
    Separate(SocketAddr),
    /// Nowhere.
    Off,
}

/// What only the HTTP edge needs to know, already validated.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub cookie_secure: bool,
    /// Origins allowed to make cookie-authenticated writes: the issuer's own and the
    /// configured ones. The configured ones also get CORS.
    pub trusted_origins: Vec<Origin>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` is believed; empty: the socket address is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// How long a request body may stall before the request is answered 408.
    pub body_read_timeout: Duration,
    pub metrics: MetricsExposure,
}

/// The application plus what the HTTP edge adds to it. Handlers reach the use
/// cases through `Deref` (`state.refresh(...)` is `App::refresh`).
pub struct AppState {
    pub app: Arc<App>,
    pub http: HttpSettings,
    pub cookies: CookieNames,
}

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

impl AppState {
    pub fn new(app: Arc<App>, http: HttpSettings) -> Arc<Self> {
        let cookies = CookieNames::new(
            app.settings.issuer.starts_with("https://"),
            http.cookie_secure,
        );
        Arc::new(Self { app, http, cookies })
    }

    /// The trusted origins other than the issuer's own: those that get CORS.
    pub fn cors_origins(&self) -> Vec<Origin> {
        let own = url::Url::parse(&self.settings.issuer)
            .ok()
            .map(|u| u.origin());
        self.http
            .trusted_origins
            .iter()
            .filter(|o| Some(*o) != own.as_ref())
            .cloned()
            .collect()
    }
}

/// The whole HTTP application. From the outside in: request id (a client's, if
/// short and plain, else a new one; echoed on the response), the request's span and
/// access-log line, CORS for trusted origins, the request deadline (503), header and
/// announced-body limits (431, 413), the body-read timeout (408), the body limit,
/// `no-store` on the API, then the routes (timed by `metrics::track`).
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.http.body_limit;
    let timeout = state.http.request_timeout;
    let body_timeout = state.http.body_read_timeout;
    let cors = Arc::new(layers::Cors::new(state.cors_origins(), state.app.clone()));
    let span = layers::RequestSpan {
        trusted_proxies: state.http.trusted_proxies.clone().into(),
    };
    let trace = TraceLayer::new_for_http()
        .make_span_with(span)
        .on_request(())
        .on_response(layers::AccessLine)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(());
    routes::router()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::only_where_configured,
        ))
        .with_state(state)
        .layer(axum::middleware::from_fn(layers::no_store))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            protect::body_read_timeout(body_timeout, req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            protect::limit_request(limit, req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            deadline(timeout, req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            layers::cors(cors.clone(), req, next)
        }))
        .layer(trace)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::map_request(layers::sanitize_request_id))
}

/// The router of a separate metrics listener (`metrics_listen`): `/metrics` only.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    let timeout = state.http.request_timeout;
    metrics::router()
        .with_state(state)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn(move |req, next| {
            deadline(timeout, req, next)
        }))
}

/// A request that takes longer than `limit` is answered 503 `overloaded` (with
/// `Retry-After`, as every error: a JSON body).
async fn deadline(
    limit: Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            let mut e = ApiError::overloaded();
            e.description = "the request took too long; retry shortly".into();
            e.into_response()
        }
    }
}

/// Connections served at once; beyond this new ones are closed at once, so a flood
/// of idle or slow connections cannot use up the process's file descriptors.
pub const MAX_CONNECTIONS: usize = 8192;

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish (for at most 10 s). A client has `header_read_timeout` to send
/// a request's headers (slow-header attacks), and connections are capped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = router.clone().map_request(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

//! The HTTP edge of Tessera (axum): routes, extractors, cookies, CSRF, and the one
//! mapping from errors to HTTP responses. Rules live in `tessera-core`; this crate
//! applies them to requests.

mod cookies;
mod error;
mod extract;
pub mod hashing;
pub mod housekeeping;
mod keys;
pub mod metrics;
mod oauth;
pub mod protect;
mod routes;
mod tokens;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tessera_core::{Clock, RefreshPolicy, RefreshTokenCodec, Store};
use tessera_jose::{Algorithm, KeySet, VerifyOptions};

pub use cookies::CookieNames;
pub use error::{ApiError, ApiResult};
pub use hashing::HashSettings;
pub use keys::{KeySource, load_key_set, rotate_keys};
pub use oauth::{GRANT_PASSWORD, GRANT_REFRESH_TOKEN, ensure_default_client};
pub use protect::{IpNet, Limit, ThrottleSettings};
pub use tokens::rfc3339;

/// Which profile claims go into access tokens (`TESSERA_ACCESS_TOKEN_CLAIMS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileClaims {
    pub email: bool,
    pub username: bool,
    pub fullname: bool,
}

impl Default for ProfileClaims {
    fn default() -> Self {
        Self {
            email: true,
            username: true,
            fullname: true,
        }
    }
}

/// Everything the HTTP layer needs to know, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub audience: String,
    /// Seconds.
    pub access_ttl: i64,
    pub refresh_idle: i64,
    pub session_max: i64,
    pub refresh_grace: i64,
    pub leeway: i64,
    pub profile_claims: ProfileClaims,
    pub signing_alg: Algorithm,
    pub cookie_secure: bool,
    /// Origins (besides our own) allowed to make cookie-authenticated writes.
    pub trusted_origins: Vec<String>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    /// The default first-party OAuth client (JSON API sessions belong to it).
    pub client_id: String,
    /// Whether `/oauth/token` accepts `grant_type=password` (first-party clients only).
    pub password_grant: bool,
    /// How long clients may cache the JWKS; a new key signs only after this.
    pub jwks_max_age: i64,
    /// Login, registration and refresh limits, and the trusted proxies.
    pub throttle: ThrottleSettings,
}

impl Settings {
    pub fn refresh_policy(&self) -> RefreshPolicy {
        RefreshPolicy {
            idle_lifetime: self.refresh_idle,
            grace: self.refresh_grace,
        }
    }
    pub fn verify_options(&self) -> VerifyOptions {
        VerifyOptions {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            leeway: self.leeway,
        }
    }
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub keys: RwLock<Arc<KeySet>>,
    pub refresh_codec: RefreshTokenCodec,
    pub hasher: hashing::PasswordHasher,
    pub cookies: CookieNames,
    pub key_source: KeySource,
    pub metrics: metrics::Metrics,
    pub throttle: protect::Throttle,
    verify_options: VerifyOptions,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        keys: KeySet,
        key_source: KeySource,
        refresh_secret: &[u8],
        hash: HashSettings,
    ) -> Result<Arc<Self>, String> {
        let cookies = CookieNames::new(
            settings.issuer.starts_with("https://"),
            settings.cookie_secure,
        );
        Ok(Arc::new(Self {
            store,
            clock,
            verify_options: settings.verify_options(),
            settings,
            keys: RwLock::new(Arc::new(keys)),
            refresh_codec: RefreshTokenCodec::new(refresh_secret),
            hasher: hashing::PasswordHasher::new(hash)?,
            cookies,
            key_source,
            metrics: metrics::Metrics::default(),
            throttle: protect::Throttle::new(refresh_secret),
        }))
    }

    pub fn key_set(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the keys from the store: picks up keys rotated by other instances
    /// or the CLI, switches to a key whose activation time has come, and drops keys
    /// whose last token has expired.
    pub async fn reload_keys(&self) -> Result<(), String> {
        let set = load_key_set(self.store.as_ref(), &self.key_source, self.now()).await?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(())
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.settings.body_limit;
    let timeout = state.settings.request_timeout;
    routes::router()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            protect::limit_request(limit, req, next)
        }))
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

//! What wraps every request on its way in and out: the request id, the access log,
//! CORS for the trusted origins (and, on the OAuth endpoints, for the origins
//! clients registered), and `Cache-Control: no-store` on the API.

use crate::cookies;
use crate::protect::{IpNet, client_ip};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{MakeSpan, OnResponse};
use url::Origin;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client; longer ones are replaced.
pub const MAX_REQUEST_ID: usize = 128;

/// Whether a client's `X-Request-Id` is kept: short, and only characters that
/// cannot break a log line (letters, digits and `-_.:+/=`).
pub fn acceptable_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b))
}

/// Drops an `X-Request-Id` that is repeated, too long or unsafe, so that the next
/// layer generates one instead.
pub async fn sanitize_request_id(mut req: Request) -> Request {
    let mut ids = req.headers().get_all(X_REQUEST_ID).iter();
    let keep = match (ids.next(), ids.next()) {
        (Some(id), None) => acceptable_request_id(id.as_bytes()),
        (None, _) => true,
        _ => false,
    };
    if !keep {
        req.headers_mut().remove(X_REQUEST_ID);
    }
    req
}

/// The span every request runs in: its method, request id and client address, and
/// the matched route once routing has found it (recorded by `metrics::track`).
/// Everything logged while the request runs carries these fields. Never the path,
/// query or headers: they may hold tokens.
#[derive(Clone)]
pub struct RequestSpan {
    pub trusted_proxies: Arc<[IpNet]>,
}

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &axum::http::Request<B>) -> tracing::Span {
        let id = req
            .headers()
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let client = client_ip(peer, req.headers(), &self.trusted_proxies)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            method = %req.method(),
            route = tracing::field::Empty,
            request_id = %id,
            client = %client,
        )
    }
}

/// The one access-log line per request, when its response starts: status and
/// latency, inside the request's span.
#[derive(Clone, Copy)]
pub struct AccessLine;

impl<B> OnResponse<B> for AccessLine {
    fn on_response(self, res: &axum::http::Response<B>, latency: Duration, _: &tracing::Span) {
        tracing::info!(
            target: "tessera_server::access",
            status = res.status().as_u16(),
            latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3,
            "request"
        );
    }
}

/// CORS for the configured trusted origins (the issuer's own origin needs none).
/// Requests from any other origin pass through without a single CORS header, so
/// browsers keep their same-origin rule for them.
pub struct Cors {
    origins: Vec<Origin>,
    layer: CorsLayer,
    /// The origins registered by clients (`--allowed-origin`): single-page apps
    /// that hold their tokens themselves. They get CORS without credentials,
    /// only on the OAuth endpoints a browser app calls.
    clients: ClientOrigins,
    public_layer: CorsLayer,
}

/// The clients' registered origins, read from the store at most every
/// [`CLIENT_ORIGINS_TTL`] (so a `tessera client update` is seen within it).
struct ClientOrigins {
    app: Arc<tessera_app::App>,
    cached: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<Origin>>)>>,
}

/// How long the clients' origins are cached.
pub const CLIENT_ORIGINS_TTL: Duration = Duration::from_secs(10);

/// The endpoints a single-page app calls itself.
fn app_endpoint(path: &str) -> bool {
    matches!(
        path,
        "/oauth/token"
            | "/oauth/revoke"
            | "/oauth/userinfo"
            | "/.well-known/openid-configuration"
            | "/.well-known/oauth-authorization-server"
            | "/.well-known/jwks.json"
    )
}

impl ClientOrigins {
    async fn get(&self) -> Arc<Vec<Origin>> {
        let mut cached = self.cached.lock().await;
        if let Some((at, origins)) = cached.as_ref()
            && at.elapsed() < CLIENT_ORIGINS_TTL
        {
            return origins.clone();
        }
        let origins: Vec<Origin> = match self.app.store.list_clients().await {
            Ok(clients) => clients
                .iter()
                .flat_map(|c| &c.allowed_origins)
                .filter_map(|o| cookies::parse_origin(o).ok())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the clients' origins");
                return cached.as_ref().map(|(_, o)| o.clone()).unwrap_or_default();
            }
        };
        let origins = Arc::new(origins);
        *cached = Some((std::time::Instant::now(), origins.clone()));
        origins
    }
}

/// How long a browser may cache a preflight answer.
pub const CORS_MAX_AGE: Duration = Duration::from_secs(600);

impl Cors {
    pub fn new(origins: Vec<Origin>, app: Arc<tessera_app::App>) -> Self {
        let values = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(&o.ascii_serialization()).ok());
        let layer = CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, X_REQUEST_ID])
            .expose_headers([X_REQUEST_ID, header::WWW_AUTHENTICATE, header::RETRY_AFTER])
            .max_age(CORS_MAX_AGE);
        let public_layer = CorsLayer::new()
            .allow_origin(AllowOrigin::mirror_request())
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .expose_headers([header::WWW_AUTHENTICATE, header::RETRY_AFTER])
            .max_age(CORS_MAX_AGE);
        Self {
            origins,
            layer,
            clients: ClientOrigins {
                app,
                cached: tokio::sync::Mutex::new(None),
            },
            public_layer,
        }
    }
}

pub async fn cors(cors: Arc<Cors>, req: Request, next: Next) -> Response {
    if cookies::allowed_origin(req.headers(), &cors.origins).is_some() {
        return match cors.layer.layer(next).oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
    }
    let for_apps = app_endpoint(req.uri().path()) && req.headers().contains_key(header::ORIGIN);
    if for_apps && cookies::allowed_origin(req.headers(), &cors.clients.get().await).is_some() {
        return match cors.public_layer.layer(next).oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
    }
    let mut res = next.run(req).await;
    if !cors.origins.is_empty() || for_apps {
        // The answer differs by origin: shared caches must keep them apart.
        res.headers_mut()
            .append(header::VARY, HeaderValue::from_static("origin"));
    }
    res
}

/// Every answer of the JSON API and the OAuth endpoints may carry personal data or
/// tokens: unless the handler chose a `Cache-Control`, it is `no-store`.
pub async fn no_store(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let private = path.starts_with("/v1/") || path.starts_with("/oauth/");
    let mut res = next.run(req).await;
    if private && !res.headers().contains_key(header::CACHE_CONTROL) {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_short_and_plain() {
        for ok in [
            "abc",
            "0192f0c4-7b5e-7c3a-9d2e-1f4a5b6c7d8e",
            "trace:1/2+3=4_5.6",
        ] {
            assert!(acceptable_request_id(ok.as_bytes()), "{ok}");
        }
        let long = "a".repeat(MAX_REQUEST_ID + 1);
        for bad in ["", "a b", "a\"b", "a\nb", "ü", "{}", long.as_str()] {
            assert!(!acceptable_request_id(bad.as_bytes()), "{bad:?}");
        }
        assert!(acceptable_request_id(&long.as_bytes()[1..]));
    }
}

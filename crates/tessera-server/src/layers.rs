//! What wraps every request on its way in and out: `Cache-Control: no-store` on
//! the API.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

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

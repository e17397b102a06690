//! The tower/axum layer: `Authorization: Bearer` in, [`Claims`] out, 401 otherwise.

use crate::{Rejection, Verifier};
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tessera_jose::{AccessClaims, MAX_TOKEN_BYTES};

/// The verified claims, in the request's extensions (`Extension<Claims>` in axum).
#[derive(Debug, Clone)]
pub struct Claims(pub AccessClaims);

#[derive(Clone)]
pub struct VerifyLayer {
    verifier: Verifier,
}

impl VerifyLayer {
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl<S> tower::Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;
    fn layer(&self, inner: S) -> VerifyService<S> {
        VerifyService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

#[derive(Clone)]
pub struct VerifyService<S> {
    inner: S,
    verifier: Verifier,
}

/// RFC 6750 error response; the description says when to refresh.
fn refuse(r: &Rejection) -> Response<Body> {
    let (status, code) = match r {
        Rejection::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        _ => (StatusCode::UNAUTHORIZED, "invalid_token"),
    };
    let description = r.to_string();
    let body = serde_json::json!({ "error": code, "error_description": description }).to_string();
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        let challenge = match r {
            Rejection::Missing => "Bearer".to_string(),
            _ => format!(r#"Bearer error="invalid_token", error_description="{description}""#),
        };
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
    } else {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    res
}

fn bearer(req: &Request<Body>) -> Result<String, Rejection> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(Rejection::Missing)?;
    let value = value
        .to_str()
        .map_err(|_| Rejection::Invalid("the Authorization header is not readable"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(Rejection::Invalid("use `Authorization: Bearer <token>`"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Rejection::Invalid("use `Authorization: Bearer <token>`"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::Invalid("the access token is too large"));
    }
    Ok(token.to_string())
}

impl<S> tower::Service<Request<Body>> for VerifyService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let token = match bearer(&req) {
                Ok(t) => t,
                Err(r) => return Ok(refuse(&r)),
            };
            match verifier.verify(&token).await {
                Ok(claims) => {
                    req.extensions_mut().insert(Claims(claims));
                    inner.call(req).await
                }
                Err(r) => Ok(refuse(&r)),
            }
        })
    }
}

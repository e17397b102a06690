//! The resource-server crate against a real Tessera: another service verifies
//! access tokens locally and stops accepting a revoked session within seconds.

use crate::support::*;
use axum::Extension;
use axum::routing::get;
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tessera_verify::{Claims, Verifier, VerifierConfig};

/// A tiny service protected by the layer; returns its address.
async fn resource_server(verifier: &Verifier) -> String {
    let app = axum::Router::new()
        .route(
            "/hello",
            get(
                |Extension(Claims(c)): Extension<Claims>| async move { format!("hello {}", c.sub) },
            ),
        )
        .layer(verifier.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn config(s: &TestServer) -> VerifierConfig {
    let mut cfg = VerifierConfig::new(&s.cfg.issuer(), "tessera");
    cfg.jwks_url = s.url("/.well-known/jwks.json");
    cfg.revocations_url = s.url("/v1/revocations");
    cfg.revocation_poll = Duration::from_millis(100);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_service_verifies_tokens_and_sees_revocations_within_seconds() {
    let s = TestServer::start().await;
    let t = s.user("remote").await;
    let verifier = Verifier::connect(config(&s)).await.unwrap();
    let _feed = verifier.spawn_background();
    let api = resource_server(&verifier).await;
    let get = |token: Option<&str>| {
        let mut req = s.http.get(format!("{api}/hello"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let r = get(Some(&t.access)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let uid = t.raw["user"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.text().await.unwrap(), format!("hello {uid}"));
    // Missing and bad tokens: 401 with an RFC 6750 challenge; a refresh token is not one.
    for token in [None, Some("garbage"), Some(t.refresh.as_str())] {
        let r = get(token).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    // Logging out on Tessera stops the token here within seconds.
    let r = s
        .http
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(Some(&t.access)).await.unwrap();
        if r.status() == StatusCode::UNAUTHORIZED {
            let body = r.text().await.unwrap();
            assert!(body.contains("session"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "revocation did not reach the resource server"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_on_first_sight() {
    let s = TestServer::start().await;
    let mut cfg = config(&s);
    cfg.jwks_min_interval = Duration::ZERO;
    let verifier = Verifier::connect(cfg).await.unwrap();
    let api = resource_server(&verifier).await;
    let st = s.state();
    tessera_app::rotate_keys(st.store.as_ref(), &st.key_source, s.clock_now() - 400, 0)
        .await
        .unwrap();
    st.reload_keys().await.unwrap();
    let t = s.user("rotated").await;
    // The verifier's JWKS is older than the key; the unknown kid triggers a fetch.
    let r = s
        .http
        .get(format!("{api}/hello"))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_is_a_start_up_error_and_a_stale_feed_fails_closed() {
    let mut cfg = VerifierConfig::new("http://127.0.0.1:9", "tessera");
    cfg.jwks_url = "http://127.0.0.1:9/.well-known/jwks.json".into();
    assert!(Verifier::connect(cfg).await.is_err());

    let s = TestServer::start().await;
    let t = s.user("stale").await;
    let mut cfg = config(&s);
    cfg.stale_after = Duration::from_millis(300);
    let verifier = Verifier::connect(cfg).await.unwrap();
    assert!(verifier.verify(&t.access).await.is_ok());
    // No background task is reading the feed: after stale_after, nothing passes.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        verifier.verify(&t.access).await,
        Err(tessera_verify::Rejection::Unavailable)
    );
    verifier.sync_revocations().await.unwrap();
    assert!(verifier.verify(&t.access).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_naming_random_kids_cannot_make_it_hammer_the_issuer() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let s = TestServer::start().await;
    // A JWKS endpoint that counts its readers.
    let jwks = s.state().key_set().jwks_json().to_string();
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let app = axum::Router::new().route(
        "/jwks",
        get(move || {
            // The first read works; then the issuer is failing.
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            let body = jwks.clone();
            async move {
                if first {
                    Ok(body)
                } else {
                    Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut cfg = config(&s);
    cfg.jwks_url = format!("http://{addr}/jwks");
    cfg.jwks_min_interval = Duration::from_millis(200);
    let verifier = Verifier::connect(cfg).await.unwrap();
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    use base64::Engine;
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let mut checks = Vec::new();
    for i in 0..50 {
        let v = verifier.clone();
        let token = format!(
            "{}.{}.c2ln",
            b64(&format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"x{i}"}}"#)),
            b64("{}")
        );
        checks.push(tokio::spawn(async move { v.verify(&token).await }));
    }
    for c in checks {
        assert!(c.await.unwrap().is_err());
    }
    // One read for the whole burst, although it failed (a failure must not reopen
    // the gate for every later request).
    assert_eq!(reads.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_living_longer_than_the_issuer_gives_is_refused() {
    use base64::Engine;
    let s = TestServer::start().await;
    let t = s.user("decade").await;
    let verifier = Verifier::connect(config(&s)).await.unwrap();
    assert!(verifier.verify(&t.access).await.is_ok());
    let payload = t.access.split('.').nth(1).unwrap();
    let mut claims: tessera_jose::AccessClaims = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims.exp = claims.iat + 10 * 365 * 86_400;
    // Signed by Tessera's real key: only the lifetime gives it away.
    let forever = s.state().key_set().signing_key().sign(&claims).unwrap();
    assert_eq!(
        verifier.verify(&forever).await,
        Err(tessera_verify::Rejection::Invalid(
            "the access token's lifetime is longer than its issuer gives"
        ))
    );

    // An issuer with longer-lived tokens: the resource server sets the same lifetime.
    let s = TestServer::start_with(|c| c.access_token_expiry = "1h".parse().unwrap()).await;
    let t = s.user("hourly").await;
    let strict = Verifier::connect(config(&s)).await.unwrap();
    assert!(strict.verify(&t.access).await.is_err(), "default is 15 min");
    let mut cfg = config(&s);
    cfg.max_lifetime = Duration::from_secs(3600);
    let matching = Verifier::connect(cfg).await.unwrap();
    assert!(matching.verify(&t.access).await.is_ok());
}

/// A token the verifier has already accepted (and so remembers) stops being
/// accepted once its key has left the issuer's JWKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_token_dies_with_its_key() {
    let s = TestServer::start().await;
    let t = s.user("keyed").await;
    let verifier = Verifier::connect(config(&s)).await.unwrap();
    verifier.verify(&t.access).await.expect("first check");
    verifier.verify(&t.access).await.expect("remembered");
    let st = s.state();
    let old: Vec<String> = st
        .store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    tessera_app::rotate_keys(st.store.as_ref(), &st.key_source, s.clock_now() - 400, 0)
        .await
        .unwrap();
    for kid in &old {
        assert!(st.store.delete_key(kid).await.unwrap());
    }
    st.reload_keys().await.unwrap();
    verifier.refresh_keys().await.unwrap();
    let refused = verifier.verify(&t.access).await;
    assert!(
        matches!(refused, Err(tessera_verify::Rejection::Invalid(_))),
        "{refused:?}"
    );
}

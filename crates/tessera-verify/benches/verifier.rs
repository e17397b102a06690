//! What `Verifier::verify` costs a resource server per request, next to the bare
//! `tessera_jose` check it wraps and the Ed25519 signature check alone.
//!
//! The verifier is built the way a service builds it: `Verifier::connect` reads a
//! JWKS and a revocation feed over HTTP, here from a small issuer on loopback that
//! serves a freshly generated Ed25519 key and a feed of revoked sessions. After
//! that nothing touches the network: every measured call is local work.
//!
//! `cargo bench -p tessera-verify --bench verifier` (`benches/run.sh` runs it and
//! copies the medians into BENCHMARKS.md).

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use tessera_jose::{
    AccessClaims, Algorithm, Audience, KeySet, LoadedKey, PublicKeys, VerifyOptions, generate_key,
};
use tessera_verify::{Rejection, Verifier, VerifierConfig};

const ISSUER: &str = "https://auth.bench.example";
const AUDIENCE: &str = "tessera";
/// Distinct tokens cycled through by the "distinct" cases: more than the
/// verifier's cache of verified tokens holds (16,384), so every call there is a
/// miss and pays the whole check (plus the cache's own upkeep); the "repeated"
/// cases measure the hit.
const DISTINCT: usize = 20_000;
/// Revoked sessions in the feed, so the revocation lookup runs on a populated map.
const REVOKED: usize = 1000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Claims shaped like Tessera's own access tokens (profile claims included).
fn claims(i: usize, sid: String, now: i64) -> AccessClaims {
    AccessClaims {
        iss: ISSUER.into(),
        sub: format!("0193a1b2-c3d4-7e5f-8a9b-{i:012x}"),
        aud: Audience::One(AUDIENCE.into()),
        exp: now + 900,
        iat: now,
        nbf: None,
        jti: format!("0193a1b2-c3d4-7e5f-9a9b-{i:012x}"),
        sid,
        client_id: "tessera".into(),
        email: Some(format!("user{i}@example.com")),
        username: Some(format!("user{i}")),
        fullname: Some("Bench User".into()),
        legacy_id: None,
        email_verified: None,
        scope: None,
    }
}

fn sid(i: usize) -> String {
    format!("0193a1b2-c3d4-7e5f-aa9b-{i:012x}")
}

/// An issuer on loopback serving `jwks` and a one-page revocation feed.
async fn serve_issuer(jwks: String, feed: String) -> String {
    use axum::routing::get;
    let done = r#"{"cursor":"end","revoked":[]}"#;
    let app = axum::Router::new()
        .route("/.well-known/jwks.json", get(move || async move { jwks }))
        .route(
            "/v1/revocations",
            get(
                move |q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                    if q.get("since").map(String::as_str) == Some("end") {
                        done.to_string()
                    } else {
                        feed
                    }
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn verify_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let t0 = now();
    let key = LoadedKey::from_stored(&generate_key(Algorithm::EdDSA, t0, t0).expect("key"))
        .expect("load key");
    let keys = KeySet::new(vec![key], Algorithm::EdDSA, t0).expect("key set");
    let tokens: Vec<String> = (0..DISTINCT)
        .map(|i| {
            keys.signing_key()
                .sign(&claims(i, sid(i), t0))
                .expect("sign")
        })
        .collect();
    let revoked: Vec<String> = (0..REVOKED).map(|i| sid(DISTINCT + i)).collect();
    let revoked_token = keys
        .signing_key()
        .sign(&claims(0, revoked[0].clone(), t0))
        .expect("sign");
    let feed = serde_json::json!({
        "cursor": "1",
        "revoked": revoked.iter().map(|s| serde_json::json!({"sid": s, "until": t0 + 3600})).collect::<Vec<_>>(),
    })
    .to_string();

    let base = rt.block_on(serve_issuer(keys.jwks_json().to_string(), feed));
    let mut cfg = VerifierConfig::new(ISSUER, AUDIENCE);
    cfg.jwks_url = format!("{base}/.well-known/jwks.json");
    cfg.revocations_url = format!("{base}/v1/revocations");
    // The feed is read once at connect; a measurement outlasts the default 30 s after
    // which a verifier without a fresh feed refuses everything (503).
    cfg.stale_after = Duration::from_secs(24 * 3600);
    let verifier = rt.block_on(Verifier::connect(cfg)).expect("connect");

    let public = PublicKeys::from_jwks(keys.jwks_json().as_bytes()).expect("jwks");
    let opts = VerifyOptions {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway: 30,
        max_lifetime: 900,
    };
    // Measure the success path of a verifier that really checks: every token
    // verifies, a revoked session and a tampered signature are refused.
    rt.block_on(async {
        for t in &tokens {
            verifier.verify(t).await.expect("a valid token verifies");
        }
        assert_eq!(
            verifier.verify(&revoked_token).await,
            Err(Rejection::Revoked)
        );
        let mut tampered = tokens[0].clone();
        tampered.pop();
        tampered.push(if tokens[0].ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            verifier.verify(&tampered).await,
            Err(Rejection::Invalid(_))
        ));
    });

    // The Ed25519 check alone: the JWS signing input and its signature.
    let public_x = {
        let jwks: serde_json::Value = serde_json::from_str(keys.jwks_json()).expect("json");
        URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["x"].as_str().expect("x"))
            .expect("base64url")
    };
    let (signing_input, signature) = {
        let (input, sig) = tokens[0].rsplit_once('.').expect("three parts");
        (
            input.as_bytes().to_vec(),
            URL_SAFE_NO_PAD.decode(sig).expect("base64url"),
        )
    };
    let ed25519 = UnparsedPublicKey::new(&ED25519, public_x);
    ed25519
        .verify(&signing_input, &signature)
        .expect("signature verifies");

    let mut g = c.benchmark_group("verify_eddsa");
    g.bench_function("ed25519_signature_only", |b| {
        b.iter(|| ed25519.verify(black_box(&signing_input), black_box(&signature)))
    });
    // Each comparison's two sides run one after the other.
    // Criterion calls each closure once per sample: the position in `tokens` lives
    // outside it, so every sample goes on to tokens not seen for a while.
    let mut i = 0;
    g.bench_function("tessera_jose_distinct_tokens", |b| {
        b.iter(|| {
            i = (i + 1) % DISTINCT;
            public.verify(black_box(&tokens[i]), &opts, now())
        })
    });
    let mut i = 0;
    g.bench_function("verifier_distinct_tokens", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % DISTINCT;
            verifier.verify(black_box(&tokens[i]))
        })
    });
    g.bench_function("tessera_jose_repeated_token", |b| {
        b.iter(|| public.verify(black_box(&tokens[0]), &opts, now()))
    });
    g.bench_function("verifier_repeated_token", |b| {
        b.to_async(&rt)
            .iter(|| verifier.verify(black_box(&tokens[0])))
    });
    g.finish();
}

criterion_group!(benches, verify_benches);
criterion_main!(benches);

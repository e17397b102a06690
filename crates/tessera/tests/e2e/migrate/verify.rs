//! `tessera token verify` against a running issuer: over HTTP (discovery or a
//! JWKS URL), with a PEM public key, or with an HS256 secret, saying exactly why
//! a token fails.

use super::{server_with_own_issuer, stderr, stdout};
use crate::support::*;
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

/// The PEM public key of an Ed25519 JWK, as `openssl pkey -pubout` writes it.
fn ed25519_pem(jwk: &Value) -> String {
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(&x);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(der)
    )
}

/// `token verify` with `args`; (exit code, stdout, stderr).
fn verify(
    s: &TestServer,
    token: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut all = vec!["token", "verify", token];
    all.extend_from_slice(args);
    let out = {
        let mut c = tessera();
        c.arg("--data-dir").arg(s.dir.path()).args(&all);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

fn forge(header: &str, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_verify_checks_any_issuer_and_says_why() {
    let s = server_with_own_issuer(|_| {}).await;
    let issuer = s.cfg.issuer();
    let jwks_url = s.url("/.well-known/jwks.json");
    let t = s.user("vera").await;
    let jwks: Value = s
        .http
        .get(&jwks_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"][0].clone();
    let kid = jwk["kid"].as_str().unwrap().to_string();
    let pem = s.dir.path().join("issuer.pem");
    std::fs::write(&pem, ed25519_pem(&jwk)).unwrap();
    let pem = pem.to_str().unwrap().to_string();
    // A key this issuer never had.
    let other = tessera_jose::generate_key(tessera_jose::Algorithm::EdDSA, 0, 0).unwrap();
    let other_set = tessera_jose::KeySet::new(
        vec![tessera_jose::LoadedKey::from_stored(&other).unwrap()],
        tessera_jose::Algorithm::EdDSA,
        0,
    )
    .unwrap();
    let other_jwks: Value = serde_json::from_str(other_set.jwks_json()).unwrap();
    let other_pem = s.dir.path().join("other.pem");
    std::fs::write(&other_pem, ed25519_pem(&other_jwks["keys"][0])).unwrap();
    let other_pem = other_pem.to_str().unwrap().to_string();

    // Valid in every mode; discovery also reads the revocation feed.
    let modes: Vec<Vec<&str>> = vec![
        vec!["--issuer", &issuer],
        vec!["--jwks", &jwks_url, "--issuer", &issuer],
        vec!["--key", &pem, "--issuer", &issuer],
    ];
    for args in &modes {
        let (code, out, err) = verify(&s, &t.access, args, &[]);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.starts_with("valid: "), "{out}");
        assert!(out.contains("username: \"vera\""), "{out}");
    }
    let (_, out, _) = verify(&s, &t.access, &modes[0], &[]);
    assert!(out.contains("session not revoked"), "{out}");

    // Each failure names its cause.
    let mut tampered = t.access.clone();
    let i = tampered.len() - 10;
    let flipped = if &tampered[i..i + 1] == "A" { "B" } else { "A" };
    tampered.replace_range(i..i + 1, flipped);
    let claims = super::claims_of(&t.access);
    let header = format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#);
    let alg_none = forge(&header, &claims, |_| Vec::new());
    // HS256 with the issuer's public key as the secret (the classic confusion).
    let header = format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#);
    let public_as_secret = std::fs::read(&pem).unwrap();
    let confused = forge(&header, &claims, |input| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &public_as_secret), input)
            .as_ref()
            .to_vec()
    });
    let by_other = other_set
        .signing_key()
        .sign(&serde_json::from_value::<tessera_jose::AccessClaims>(claims.clone()).unwrap())
        .unwrap();
    let cases: Vec<(&str, Vec<&str>, String)> = vec![
        (&tampered, vec!["--issuer", &issuer], "bad signature".into()),
        (&tampered, vec!["--key", &pem], "bad signature".into()),
        (
            &t.access,
            vec!["--jwks", &jwks_url, "--issuer", "https://auth.example.com"],
            format!("wrong issuer: expected https://auth.example.com, got {issuer}"),
        ),
        (
            &t.access,
            vec!["--issuer", &issuer, "--audience", "billing"],
            "wrong audience: expected billing, got tessera".into(),
        ),
        (
            &alg_none,
            vec!["--issuer", &issuer],
            format!("alg none not allowed: key {kid} is EdDSA"),
        ),
        (
            &confused,
            vec!["--key", &pem],
            format!("alg HS256 not allowed: key {kid} is EdDSA"),
        ),
        (
            &by_other,
            vec!["--issuer", &issuer],
            format!("unknown kid {}: the JWKS at {jwks_url} has ", other.kid),
        ),
        (
            &t.access,
            vec!["--key", &other_pem],
            format!("unknown kid {kid}"),
        ),
        (
            &t.access,
            vec!["--secret-env", "NOT_SET_ANYWHERE"],
            "NOT_SET_ANYWHERE is not set".into(),
        ),
        (
            "garbage",
            vec!["--issuer", &issuer],
            "not a signed JWT".into(),
        ),
    ];
    for (token, args, reason) in cases {
        let (code, out, err) = verify(&s, token, &args, &[]);
        assert_eq!(code, 1, "{args:?}: {out}");
        assert!(
            err.contains(&reason),
            "{args:?}: expected `{reason}` in:\n{err}"
        );
        assert!(out.is_empty(), "{out}");
    }
    // The discovery document must name the issuer asked for.
    let (code, _, err) = verify(&s, &t.access, &["--issuer", &format!("{issuer}/")], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("names issuer"), "{err}");
    // Nothing listens there.
    let (code, _, err) = verify(&s, &t.access, &["--issuer", "http://127.0.0.1:1"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read http://127.0.0.1:1/.well-known/openid-configuration"),
        "{err}"
    );
    // Two key sources at once is a usage error.
    let (code, _, _) = verify(&s, &t.access, &["--key", &pem, "--jwks", &jwks_url], &[]);
    assert_eq!(code, 2);

    // An expired token says when it expired.
    s.clock.advance(-3_600);
    let old = s.login("vera").await;
    s.clock.advance(3_600);
    let (code, _, err) = verify(&s, &old.access, &["--issuer", &issuer], &[]);
    assert_eq!(code, 1);
    let exp = super::claims_of(&old.access)["exp"].as_i64().unwrap();
    assert!(
        err.contains(&format!("expired at {}", tessera_app::rfc3339(exp))) && err.contains("ago"),
        "{err}"
    );

    // Sign-out everywhere reaches the revocation feed; discovery mode sees it.
    let r = s
        .http
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&t.access)
        .json(&serde_json::json!({"scope": "global"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    let (code, _, err) = verify(&s, &t.access, &["--issuer", &issuer], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("its session was revoked"), "{err}");
    // The key alone cannot know (and says so).
    let (code, out, _) = verify(&s, &t.access, &["--key", &pem, "--issuer", &issuer], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("session not checked"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_verify_takes_an_hs256_secret_from_the_environment() {
    const SECRET: &str = "the-old-node-apps-access-token-secret-0123";
    let s = server_with_own_issuer(|c| c.access_token_secret = Some(SECRET.into())).await;
    let issuer = s.cfg.issuer();
    let t = s.user("hugo").await;
    let (code, out, err) = verify(
        &s,
        &t.access,
        &["--secret-env", "OLD_SECRET", "--issuer", &issuer],
        &[("OLD_SECRET", SECRET)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("valid: signature (the HS256 secret in OLD_SECRET)"),
        "{out}"
    );
    assert!(!out.contains(SECRET) && !err.contains(SECRET));
    let wrong = "another-secret-of-at-least-thirty-two-bytes";
    let (code, out, err) = verify(
        &s,
        &t.access,
        &["--secret-env", "OLD_SECRET", "--issuer", &issuer],
        &[("OLD_SECRET", wrong)],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("unknown kid") && err.contains("the HS256 secret in OLD_SECRET"),
        "{err}"
    );
    assert!(!err.contains(wrong));
    // An HS256 issuer publishes no key: the JWKS modes say what to do instead.
    let (code, _, err) = verify(&s, &t.access, &["--issuer", &issuer], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("use --secret-env"), "{err}");
}

//! The verification guides, run: `examples/express` (Node, `jose`),
//! `examples/fastapi` (Python, PyJWT) and `tessera-verify`'s `resource_server`
//! example each run against a live Tessera and must accept a valid token, refuse
//! tampered, expired, wrong-issuer, wrong-audience, `alg: none` and
//! HS256-with-the-public-key tokens, stop accepting a session within one poll of
//! a sign-out everywhere, and follow a key rotation without a restart.
//!
//! The Node and Python packages are installed by `.ci/run` from the examples'
//! pinned files; without them these two say loudly that they skipped, unless
//! `TESSERA_REQUIRE_INTEROP=1` makes that a failure.

use super::{claims_of, cli, server_with_own_issuer, stderr, stdout};
use crate::support::*;
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tessera_core::Clock;

/// How often the examples read the revocation feed in these tests.
const POLL_MS: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Example {
    Express,
    FastApi,
    Rust,
}

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Whether the example's packages are installed; if not, skips loudly or (when
/// required) fails.
fn installed(ex: Example) -> bool {
    let (what, ready) = match ex {
        Example::Express => (
            "Node.js with examples/express/node_modules (npm ci in examples/express)",
            Command::new("node")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
                && examples_dir()
                    .join("express/node_modules/jose/package.json")
                    .exists()
                && ["express", "jsonwebtoken"].iter().all(|p| {
                    examples_dir()
                        .join(format!("express/node_modules/{p}/package.json"))
                        .exists()
                }),
        ),
        Example::FastApi => (
            "examples/fastapi/.venv with examples/fastapi/requirements.txt",
            Command::new(examples_dir().join("fastapi/.venv/bin/python"))
                .args(["-c", "import fastapi, uvicorn, jwt, cryptography"])
                .output()
                .is_ok_and(|o| o.status.success()),
        ),
        Example::Rust => return true,
    };
    if ready {
        return true;
    }
    if std::env::var("TESSERA_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("TESSERA_REQUIRE_INTEROP=1 but not installed: {what}");
    }
    use std::io::Write;
    let bar = "!".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!! EXAMPLE TEST SKIPPED, not installed: {what}\n!! install as .ci/run does\n{bar}\n"
    );
    false
}

/// The resource_server example, built like the rest of the workspace (a no-op
/// under `cargo test --workspace`, which builds examples).
fn rust_example() -> PathBuf {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_tessera"))
        .parent()
        .unwrap()
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "tessera-verify",
            "--example",
            "resource_server",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if bin_dir.ends_with("release") {
        build.arg("--release");
    }
    let out = build.output().expect("run cargo");
    assert!(out.status.success(), "{}", stderr(&out));
    bin_dir.join("examples/resource_server")
}

/// A running example, stopped when dropped.
struct Running {
    child: std::process::Child,
    log: PathBuf,
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(ex: Example, s: &TestServer, env: &[(&str, &str)]) -> Running {
    let issuer = s.cfg.issuer();
    let port = free_port();
    let log = s.dir.path().join(format!("{ex:?}.log"));
    let mut cmd = match ex {
        Example::Express => {
            let mut c = Command::new("node");
            c.arg("server.js")
                .current_dir(examples_dir().join("express"));
            c
        }
        Example::FastApi => {
            let mut c = Command::new(examples_dir().join("fastapi/.venv/bin/python"));
            c.arg("app.py").current_dir(examples_dir().join("fastapi"));
            c
        }
        Example::Rust => {
            let bin = tokio::task::spawn_blocking(rust_example).await.unwrap();
            let mut c = Command::new(bin);
            c.args([
                "--issuer",
                &issuer,
                "--audience",
                "tessera",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--poll-ms",
                &POLL_MS.to_string(),
                "--leeway",
                "1",
            ]);
            c
        }
    };
    cmd.env("TESSERA_ISSUER", &issuer)
        .env("TESSERA_AUDIENCE", "tessera")
        .env("PORT", port.to_string())
        .env("REVOCATION_POLL_MS", POLL_MS.to_string())
        .env("CLOCK_TOLERANCE_S", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
    let mut running = Running {
        child: cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ex:?}: {e}")),
        log: log.with_extension("err"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = s.http.get(format!("{}/hello", running.base)).send().await {
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{ex:?} without a token"
            );
            return running;
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!("{ex:?} exited with {status}:\n{}", running.log());
        }
        assert!(
            Instant::now() < deadline,
            "{ex:?} did not start:\n{}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Moves the test server's clock to the real time (the examples use real time).
fn catch_up(s: &TestServer) {
    let behind = tessera_core::SystemClock.now() - s.clock.now();
    if behind > 0 {
        s.clock.advance(behind);
    }
}

/// `tessera token sign USER` on the server's database, with extra environment
/// (another issuer or audience signs with the same keys).
fn sign(s: &TestServer, user: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = tessera();
    c.arg("--data-dir")
        .arg(s.dir.path())
        .args(["token", "sign", user])
        .args(extra)
        .env("TESSERA_ISSUER", s.cfg.issuer());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn forge(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The PEM public key of the issuer's Ed25519 key.
fn public_pem(jwk: &Value) -> String {
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

async fn hello(s: &TestServer, ex: &Running, token: &str, cookie: bool) -> (StatusCode, Value) {
    let mut req = s.http.get(format!("{}/hello", ex.base));
    req = if cookie {
        req.header("cookie", format!("tessera_at={token}"))
    } else {
        req.bearer_auth(token)
    };
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn uid(t: &Tokens) -> String {
    t.raw["user"]["id"].as_str().unwrap().to_string()
}

async fn exercise(ex: Example) {
    if !installed(ex) {
        return;
    }
    let s = server_with_own_issuer(|c| {
        c.jwks_max_age = tessera_core::Span::from_secs(3);
        c.key_reload_interval = tessera_core::Span::from_secs(1);
    })
    .await;
    let t = s.user("ada").await;
    let running = start(ex, &s, &[]).await;
    let log = || running.log();

    // A valid token is accepted, from the Authorization header and (for the
    // services that read it) from Tessera's access cookie.
    let (status, body) = hello(&s, &running, &t.access, false).await;
    assert_eq!(status, StatusCode::OK, "{ex:?}: {body} {}", log());
    assert_eq!(body["sub"], uid(&t));
    if ex != Example::Rust {
        let (status, body) = hello(&s, &running, &t.access, true).await;
        assert_eq!(status, StatusCode::OK, "{ex:?} cookie: {body}");
        assert_eq!(body["sub"], uid(&t));
    }

    // Refused: tampered, wrong issuer, wrong audience, alg none, HS256 signed
    // with the public key, garbage. Tokens of the same keys with the right issuer
    // and audience pass, so each refusal is for the reason named.
    let mut tampered = t.access.clone();
    let i = tampered.len() - 10;
    let flipped = if &tampered[i..i + 1] == "A" { "B" } else { "A" };
    tampered.replace_range(i..i + 1, flipped);
    let good = sign(&s, "ada", &[], &[]);
    assert_eq!(
        hello(&s, &running, &good, false).await.0,
        StatusCode::OK,
        "{ex:?}"
    );
    let wrong_iss = sign(
        &s,
        "ada",
        &[],
        &[("TESSERA_ISSUER", "https://elsewhere.example")],
    );
    assert_eq!(claims_of(&wrong_iss)["iss"], "https://elsewhere.example");
    let wrong_aud = sign(&s, "ada", &[], &[("TESSERA_AUDIENCE", "billing")]);
    assert_eq!(claims_of(&wrong_aud)["aud"], "billing");
    let jwks: Value = s
        .http
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    let kid = jwk["kid"].as_str().unwrap();
    let claims = claims_of(&t.access);
    let none = forge(
        &json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
        &claims,
        |_| Vec::new(),
    );
    let pem = public_pem(jwk);
    let confused = forge(
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
        &claims,
        |input| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, pem.as_bytes()), input)
                .as_ref()
                .to_vec()
        },
    );
    let raw_key = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let confused_raw = forge(
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
        &claims,
        |input| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &raw_key), input)
                .as_ref()
                .to_vec()
        },
    );
    for (what, token) in [
        ("tampered", tampered.as_str()),
        ("wrong issuer", &wrong_iss),
        ("wrong audience", &wrong_aud),
        ("alg none", &none),
        ("HS256 with the PEM public key", &confused),
        ("HS256 with the raw public key", &confused_raw),
        ("garbage", "not.a.token"),
    ] {
        let (status, body) = hello(&s, &running, token, false).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{ex:?} accepted {what}: {body}"
        );
    }

    // Expired: a token that lives one second, past the example's one-second leeway.
    let short = sign(&s, "ada", &["--expires-in", "1s"], &[]);
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let (status, body) = hello(&s, &running, &short, false).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "{ex:?} accepted an expired token: {body}"
    );

    // Sign-out everywhere reaches the example within its poll interval.
    catch_up(&s);
    let other = s.login("ada").await;
    assert_eq!(
        hello(&s, &running, &other.access, false).await.0,
        StatusCode::OK
    );
    let r = s
        .http
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&t.access)
        .json(&json!({"scope": "global"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let signed_out = Instant::now();
    loop {
        let a = hello(&s, &running, &t.access, false).await.0;
        let b = hello(&s, &running, &other.access, false).await.0;
        if a == StatusCode::UNAUTHORIZED && b == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            signed_out.elapsed() < Duration::from_millis(POLL_MS + 1_500),
            "{ex:?} still accepts a signed-out session after {:?}",
            signed_out.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A key rotation is followed without a restart: the new key is published at
    // once and signs after jwks_max_age; the example fetches it when a token names it.
    catch_up(&s);
    let before = s.login("ada").await;
    let old_kid = kid.to_string();
    let out = tessera()
        .arg("--data-dir")
        .arg(s.dir.path())
        .args(["keys", "rotate"])
        .env("TESSERA_JWKS_MAX_AGE", "3s")
        .env("TESSERA_ISSUER", s.cfg.issuer())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    let rotated = loop {
        catch_up(&s);
        let fresh = s.login("ada").await;
        let header = fresh.access.split('.').next().unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        if header["kid"] != old_kid.as_str() {
            break fresh;
        }
        assert!(
            Instant::now() < deadline,
            "the server never signed with the new key"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = hello(&s, &running, &rotated.access, false).await;
        if status == StatusCode::OK {
            assert_eq!(body["sub"], uid(&rotated));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ex:?} never accepted the rotated key: {body}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Tokens of the retired key stay good until they expire.
    assert_eq!(
        hello(&s, &running, &before.access, false).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_example_verifies_like_tessera() {
    exercise(Example::Express).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastapi_example_verifies_like_tessera() {
    exercise(Example::FastApi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_example_verifies_like_tessera() {
    exercise(Example::Rust).await;
}

/// During the move Tessera signs HS256 with the old app's ACCESS_TOKEN_SECRET:
/// the old services' `jwt.verify(token, ACCESS_TOKEN_SECRET)` (the `jsonwebtoken`
/// package) accepts its tokens, and `legacy_id` is the MongoDB `_id` they used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_services_keep_verifying_with_the_old_secret() {
    if !installed(Example::Express) {
        return;
    }
    const OLD_SECRET: &str = "the-old-apps-access-token-secret-at-least-32";
    let s = server_with_own_issuer(|c| {
        c.access_token_secret = Some(OLD_SECRET.into());
        c.access_token_claims = Some("email,username,fullname,legacy_id".into());
    })
    .await;
    let oid = "65a1f0c2e4b0a1b2c3d4e5f1";
    let file = s.dir.path().join("users.json");
    let user = json!({
        "_id": {"$oid": oid}, "username": "hitesh", "email": "Hitesh@Example.com",
        "fullName": "Hitesh C", "password": bcrypt::hash("hitesh password", 4).unwrap(),
        "createdAt": {"$date": "2024-01-13T10:20:30.123Z"}, "__v": 0
    });
    std::fs::write(&file, user.to_string()).unwrap();
    let out = cli(&s, &["user", "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let t = s.login_with("hitesh", "hitesh password").await;
    let run = |secret: &str| {
        Command::new("node")
            .arg("legacy-verify.js")
            .arg(&t.access)
            .current_dir(examples_dir().join("express"))
            .env("ACCESS_TOKEN_SECRET", secret)
            .output()
            .unwrap()
    };
    let out = run(OLD_SECRET);
    assert!(out.status.success(), "{}", stderr(&out));
    let decoded: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        decoded,
        json!({"_id": oid, "email": "Hitesh@Example.com", "username": "hitesh", "fullName": "Hitesh C"})
    );
    let out = run("some-other-secret-of-at-least-32-bytes!!");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid signature"),
        "{}",
        stderr(&out)
    );

    // A service already moved to the Express guide accepts them while it is given
    // the secret, and only then.
    let moving = start(Example::Express, &s, &[("ACCESS_TOKEN_SECRET", OLD_SECRET)]).await;
    let (status, body) = hello(&s, &moving, &t.access, false).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", moving.log());
    assert_eq!(body["sub"], uid(&t));
    let moved = start(Example::Express, &s, &[]).await;
    assert_eq!(
        hello(&s, &moved, &t.access, false).await.0,
        StatusCode::UNAUTHORIZED
    );
    let forged = forge(
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": "hs256-x"}),
        &claims_of(&t.access),
        |input| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"not-the-secret"), input)
                .as_ref()
                .to_vec()
        },
    );
    assert_eq!(
        hello(&s, &moving, &forged, false).await.0,
        StatusCode::UNAUTHORIZED
    );
}

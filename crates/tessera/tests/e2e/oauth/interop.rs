//! Other languages' widely used libraries against a running Tessera (scripts in
//! `tests/interop/`): PyJWT's `PyJWKClient` and Node's `jose` verify access tokens of
//! every algorithm, requests-oauthlib drives the OAuth endpoints, and
//! openapi-spec-validator checks `/openapi.json`.
//!
//! Without the Python or Node packages these tests say loudly that they skipped and
//! pass, unless `TESSERA_REQUIRE_INTEROP=1` (as in `.ci/run`) makes that a failure.

use crate::support::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

/// The Python of `tests/interop/.venv` (where `.ci/run` installs the packages),
/// else `python3` from `PATH`.
pub(crate) fn python() -> String {
    let venv = interop_dir().join(".venv/bin/python");
    if venv.exists() {
        venv.display().to_string()
    } else {
        "python3".into()
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

/// Whether `what` is installed; if not, skips loudly or (required) fails.
fn available(what: &str, ready: bool) -> bool {
    if ready {
        return true;
    }
    let how = "install them as .ci/run does: `python3 -m venv tests/interop/.venv`, \
               `tests/interop/.venv/bin/pip install -r tests/interop/requirements.txt` \
               and `npm ci` in tests/interop";
    if std::env::var("TESSERA_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("TESSERA_REQUIRE_INTEROP=1 but not installed: {what}; {how}");
    }
    // Straight to stderr: the test harness captures `eprintln!`.
    use std::io::Write;
    let bar = "!".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!! INTEROPERABILITY TEST SKIPPED, not installed: {what}\n!! {how}\n{bar}\n"
    );
    false
}

pub(crate) fn python_ready() -> bool {
    available(
        "the Python interop packages (PyJWT, cryptography, requests-oauthlib, openapi-spec-validator)",
        succeeds(Command::new(python()).args([
            "-c",
            "import jwt, cryptography, requests_oauthlib, openapi_spec_validator",
        ])),
    )
}

pub(crate) fn node_ready() -> bool {
    available(
        "Node.js with the jose package (tests/interop/node_modules)",
        succeeds(Command::new("node").arg("--version"))
            && interop_dir()
                .join("node_modules/jose/package.json")
                .exists(),
    )
}

/// Runs a script from `tests/interop` off the async runtime (the servers it talks
/// to run on this runtime) and fails the test with its output if it fails.
pub(crate) async fn run(program: String, args: Vec<String>) {
    let name = program.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&program)
            .args(&args)
            .current_dir(interop_dir())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} failed:\n{text}");
    print!("{text}");
}

const HS256_SECRET: &str = "interop-hs256-secret-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_and_jose_verify_tokens_of_every_algorithm() {
    let (with_python, with_node) = (python_ready(), node_ready());
    if !with_python && !with_node {
        return;
    }
    let mut servers = Vec::new();
    let mut cases = Vec::new();
    for alg in ["EdDSA", "ES256", "RS256", "HS256"] {
        let s = TestServer::start_with(|c| {
            c.signing_alg = alg.into();
            if alg == "HS256" {
                c.access_token_secret = Some(HS256_SECRET.into());
            }
        })
        .await;
        let t = s.user("interop").await;
        let settings = &s.state().settings;
        cases.push(json!({
            "alg": alg,
            "jwks_uri": s.url("/.well-known/jwks.json"),
            "issuer": settings.issuer,
            "audience": settings.audience,
            "token": t.access,
            "sub": t.raw["user"]["id"],
            "secret": (alg == "HS256").then_some(HS256_SECRET),
        }));
        servers.push(s);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, json!(cases).to_string()).unwrap();
    let path = path.display().to_string();
    if with_python {
        run(python(), vec!["verify_pyjwt.py".into(), path.clone()]).await;
    }
    if with_node {
        run("node".into(), vec!["verify_jose.mjs".into(), path]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_client_library_uses_the_token_endpoint() {
    if !python_ready() {
        return;
    }
    // The issuer must be the real address: the client finds the endpoints by discovery.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = TestServer::start_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.issuer = Some(format!("http://127.0.0.1:{port}"));
    })
    .await;
    s.register("libuser").await;
    let secret = super::add_client(&s, "backend", true, &["refresh_token", "password"], true)
        .await
        .unwrap();
    run(
        python(),
        vec![
            "oauth_client.py".into(),
            s.base.clone(),
            "libuser".into(),
            PASSWORD.into(),
            "backend".into(),
            secret,
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_passes_a_validator() {
    if !python_ready() {
        return;
    }
    let s = TestServer::start().await;
    run(
        python(),
        vec!["validate_openapi.py".into(), s.url("/openapi.json")],
    )
    .await;
}

//! The operator CLI against a running server's database.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::json;
use std::io::Write;
use std::process::{Output, Stdio};

fn cli(s: &TestServer, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = tessera()
        .arg("--data-dir")
        .arg(s.dir.path())
        .args(args)
        .env("TESSERA_ARGON2_MEMORY_KIB", "1024")
        .env("TESSERA_ARGON2_ITERATIONS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_sessions_from_the_command_line() {
    let s = TestServer::start().await;
    let add = cli(
        &s,
        &[
            "user",
            "add",
            "Carla",
            "--email",
            "carla@example.com",
            "--password-stdin",
        ],
        Some("cli password 1\n"),
    );
    assert!(ok(&add).contains("carla"));
    let t = Tokens::from(
        s.post(
            "/v1/auth/login",
            json!({"login": "carla", "password": "cli password 1", "delivery": "body"}),
        )
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap(),
    );
    assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
    assert!(ok(&cli(&s, &["user", "list"], None)).contains("carla@example.com"));
    assert!(ok(&cli(&s, &["user", "show", "carla@example.com"], None)).contains(&t.session_id));
    assert!(ok(&cli(&s, &["session", "list", "carla"], None)).contains(&t.session_id));

    // A duplicate, a bad password and an unknown user are clear failures with exit code 1.
    let dup = cli(
        &s,
        &[
            "user",
            "add",
            "carla",
            "--email",
            "x@example.com",
            "--password-stdin",
        ],
        Some("cli password 2\n"),
    );
    assert_eq!(dup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("username"));
    let short = cli(
        &s,
        &[
            "user",
            "add",
            "dora",
            "--email",
            "d@example.com",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert_eq!(short.status.code(), Some(1));
    assert_eq!(
        cli(&s, &["user", "show", "nobody"], None).status.code(),
        Some(1)
    );
    assert_eq!(
        cli(&s, &["user", "frobnicate"], None).status.code(),
        Some(2)
    );

    // Disabling ends every session at once.
    ok(&cli(&s, &["user", "disable", "carla"], None));
    assert_eq!(s.me_status(&t.access).await, StatusCode::UNAUTHORIZED);
    expect_error(
        s.refresh(&t.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    ok(&cli(&s, &["user", "enable", "carla"], None));
    let again = s.login_with("carla", "cli password 1").await;
    assert_eq!(s.me_status(&again.access).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_password_revoke_and_delete() {
    let s = TestServer::start().await;
    let t = s.user("emil").await;
    ok(&cli(
        &s,
        &["user", "set-password", "emil", "--password-stdin"],
        Some("brand new password\n"),
    ));
    assert_eq!(s.me_status(&t.access).await, StatusCode::UNAUTHORIZED);
    let r = s
        .post(
            "/v1/auth/login",
            json!({"login": "emil", "password": "brand new password"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let t = s.login_with("emil", "brand new password").await;
    ok(&cli(&s, &["session", "revoke", &t.session_id], None));
    assert_eq!(s.me_status(&t.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        cli(&s, &["session", "revoke", &t.session_id], None)
            .status
            .code(),
        Some(1),
        "already revoked"
    );
    let t = s.login_with("emil", "brand new password").await;
    ok(&cli(&s, &["session", "revoke", "--user", "emil"], None));
    assert_eq!(s.me_status(&t.access).await, StatusCode::UNAUTHORIZED);
    ok(&cli(&s, &["user", "delete", "emil"], None));
    let r = s
        .post(
            "/v1/auth/login",
            json!({"login": "emil", "password": "brand new password"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_accepts_bcrypt_and_upgrades_it_at_login() {
    let s = TestServer::start().await;
    // A bcrypt hash of "imported secret" (cost 4), as another system would export it.
    let bcrypt = "$2b$04$onw.NYs45V6FsYc5jpqUJ.G4MqsuSIYnAerfrY2Z/3kfTiiY4LI46";
    let file = s.dir.path().join("users.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n\nnot json\n{}\n",
            json!({"email": "fay@example.com", "username": "fay", "fullname": "Fay", "password_hash": bcrypt}),
            json!({"email": "gus@example.com", "username": "gus", "password_hash": "plaintext!"}),
            json!({"email": "fay@example.com", "username": "fay2", "password_hash": bcrypt}),
        ),
    )
    .unwrap();
    let out = cli(&s, &["user", "import", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "some lines were bad");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("imported 1 users"), "{stdout}");
    for line in ["line 2", "line 4", "line 5"] {
        assert!(stderr.contains(line), "{stderr}");
    }
    assert!(!stderr.contains("plaintext!"), "hashes are never echoed");
    let r = s
        .post(
            "/v1/auth/login",
            json!({"login": "fay", "password": "imported secret"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let key = tessera_core::validate::login_key("fay");
    let rec = s
        .state()
        .store
        .find_user_for_login(&key)
        .await
        .unwrap()
        .unwrap();
    assert!(
        rec.password_hash.starts_with("$argon2id$"),
        "upgraded at login"
    );
    let r = s
        .post(
            "/v1/auth/login",
            json!({"login": "fay", "password": "imported secret"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "and still accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_sign_verify_decode() {
    let s = TestServer::start().await;
    s.register("hana").await;
    let out = cli(&s, &["token", "sign", "hana", "--expires-in", "5m"], None);
    let token = ok(&out).trim().to_string();
    assert_eq!(
        s.me_status(&token).await,
        StatusCode::OK,
        "the signed token is a real access token"
    );
    let verified = ok(&cli(&s, &["token", "verify", &token], None));
    assert!(verified.starts_with("valid"), "{verified}");
    assert!(
        verified.contains("exp:") && verified.contains("(in "),
        "{verified}"
    );
    let decoded = ok(&cli(&s, &["token", "decode", "-"], Some(&token)));
    assert!(
        decoded.contains("\"typ\":\"at+jwt\"") && decoded.contains("username: \"hana\""),
        "{decoded}"
    );
    // Tampered, garbage and revoked tokens fail with a reason and exit code 1.
    // Flip one character of the signature: still base64url, no longer valid.
    let mut tampered = token.clone();
    let i = tampered.len() - 10;
    let flipped = if &tampered[i..i + 1] == "A" { "B" } else { "A" };
    tampered.replace_range(i..i + 1, flipped);
    for (bad, reason) in [
        (tampered.as_str(), "signature"),
        ("garbage", "not a signed JWT"),
    ] {
        let out = cli(&s, &["token", "verify", bad], None);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(reason),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ok(&cli(&s, &["session", "revoke", "--user", "hana"], None));
    let out = cli(&s, &["token", "verify", &token], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
    assert_eq!(
        cli(&s, &["token", "decode", "a.b"], None).status.code(),
        Some(1)
    );
    // Absurd times are shown, not a crash.
    use base64::Engine;
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    for exp in ["99999999999999", "-5", "9223372036854775807"] {
        let hostile = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"none"}"#),
            b64(&format!(r#"{{"exp":{exp}}}"#))
        );
        let out = ok(&cli(&s, &["token", "decode", &hostile], None));
        assert!(out.contains("out of range"), "{out}");
    }
}

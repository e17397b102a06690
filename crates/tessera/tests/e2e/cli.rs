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
    s.register("hal").await;
    // A bcrypt hash of "imported secret" (cost 4), as another system would export it.
    let bcrypt = "$2b$04$onw.NYs45V6FsYc5jpqUJ.G4MqsuSIYnAerfrY2Z/3kfTiiY4LI46";
    let file = s.dir.path().join("users.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n\nnot json\n{}\n",
            json!({"email": "fay@example.com", "username": "fay", "fullname": "Fay", "password_hash": bcrypt}),
            json!({"email": "gus@example.com", "username": "gus", "password_hash": "plaintext!"}),
            // The address of a user who registered directly.
            json!({"email": "hal@example.com", "username": "fay2", "password_hash": bcrypt}),
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

/// The revocation feed's entries for `sids`, as (sid, until).
async fn feed_entries(s: &TestServer, sids: &[String]) -> Vec<(String, i64)> {
    let feed: serde_json::Value = s
        .http
        .get(s.url("/v1/revocations?since=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out: Vec<(String, i64)> = feed["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["sid"].as_str().unwrap().to_string(),
                r["until"].as_i64().unwrap(),
            )
        })
        .filter(|(sid, _)| sids.contains(sid))
        .collect();
    out.sort();
    out
}

/// The newest audit event of `kind` about `user`.
async fn last_event(s: &TestServer, user: &str, kind: &str) -> tessera_core::model::AuditEvent {
    let uid = uuid::Uuid::parse_str(user).unwrap();
    s.state()
        .store
        .list_audit(Some(uid), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} event for {user}"))
}

fn user_id(t: &Tokens) -> String {
    t.raw["user"]["id"].as_str().unwrap().to_string()
}

/// Whichever door a session ending comes through, the operator's commands or the
/// API, it has the same effects: every ended session is in the revocation feed
/// for one access lifetime plus leeway, and one audit event names the user and
/// counts the sessions that ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_end_sessions_like_the_api() {
    let s = TestServer::start().await;
    let window = s.cfg.access_token_expiry.as_i64() + s.cfg.leeway.as_i64();
    let check_feed = |entries: Vec<(String, i64)>, expect: &[String], around: i64| {
        let mut expect = expect.to_vec();
        expect.sort();
        let sids: Vec<String> = entries.iter().map(|(sid, _)| sid.clone()).collect();
        assert_eq!(sids, expect, "exactly the ended sessions are in the feed");
        for (_, until) in entries {
            assert!(
                (until - (around + window)).abs() <= 5,
                "a feed entry lasts one access lifetime plus leeway: {until} vs {}",
                around + window
            );
        }
    };

    // A password change through the API (ann keeps the session that asked) ...
    let ann = s.user("ann").await;
    let ann_other = s.login("ann").await;
    let r = s
        .http
        .post(s.url("/v1/me/password"))
        .bearer_auth(&ann.access)
        .json(&json!({"current_password": PASSWORD, "new_password": "a new password 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let at = s.clock_now();
    check_feed(
        feed_entries(&s, &[ann.session_id.clone(), ann_other.session_id.clone()]).await,
        std::slice::from_ref(&ann_other.session_id),
        at,
    );
    let api_event = last_event(&s, &user_id(&ann), "password_changed").await;
    assert_eq!(api_event.detail.as_deref(), Some("1 sessions revoked"));

    // ... and the operator's `user set-password` (no session asked: all end).
    let bob = s.user("bob").await;
    let bob_other = s.login("bob").await;
    ok(&cli(
        &s,
        &["user", "set-password", "bob", "--password-stdin"],
        Some("operator set password\n"),
    ));
    let at = tessera_core::Clock::now(&tessera_core::SystemClock);
    let both = [bob.session_id.clone(), bob_other.session_id.clone()];
    check_feed(feed_entries(&s, &both).await, &both, at);
    let op_event = last_event(&s, &user_id(&bob), "password_changed").await;
    assert_eq!(
        op_event.detail.as_deref(),
        Some("by operator; 2 sessions revoked")
    );
    assert_eq!(op_event.user_agent.as_deref(), Some("tessera cli"));
    for t in [&bob, &bob_other] {
        assert_eq!(s.me_status(&t.access).await, StatusCode::UNAUTHORIZED);
    }

    // An operator's revoke of every session of a user, and `user disable`.
    let cleo = s.user("cleo").await;
    let cleo_other = s.login("cleo").await;
    ok(&cli(&s, &["session", "revoke", "--user", "cleo"], None));
    let at = tessera_core::Clock::now(&tessera_core::SystemClock);
    let both = [cleo.session_id.clone(), cleo_other.session_id.clone()];
    check_feed(feed_entries(&s, &both).await, &both, at);
    let revoke_event = last_event(&s, &user_id(&cleo), "session_revoked").await;
    assert_eq!(
        revoke_event.detail.as_deref(),
        Some("by operator; 2 sessions revoked")
    );

    let dan = s.user("dan").await;
    let dan_other = s.login("dan").await;
    ok(&cli(&s, &["user", "disable", "dan"], None));
    let at = tessera_core::Clock::now(&tessera_core::SystemClock);
    let both = [dan.session_id.clone(), dan_other.session_id.clone()];
    check_feed(feed_entries(&s, &both).await, &both, at);
    let disable_event = last_event(&s, &user_id(&dan), "user_disabled").await;
    assert_eq!(
        disable_event.detail.as_deref(),
        Some("by operator; 2 sessions revoked")
    );
    for t in [&dan, &dan_other] {
        assert_eq!(s.me_status(&t.access).await, StatusCode::UNAUTHORIZED);
    }
}

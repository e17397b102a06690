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
        // A command that refuses before reading its input may exit first.
        let written = child.stdin.take().unwrap().write_all(input.as_bytes());
        if let Err(e) = written {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
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

/// The binary run in `dir` with no configuration but the arguments.
fn run_in(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = tessera()
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        // A command that refuses before reading its input may exit first.
        let written = child.stdin.take().unwrap().write_all(input.as_bytes());
        if let Err(e) = written {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

const NO_DATABASE: &str =
    "no database at ./tessera-data/tessera.db; run `tessera serve` or `tessera migrate` first";

/// A syntactically valid token (its signature is of course not checked).
fn some_jwt() -> String {
    use base64::Engine;
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k"}"#),
        b64(r#"{"sub":"x","sid":"0192d7a0-0000-7000-8000-000000000000","exp":4000000000}"#)
    )
}

/// Commands that read, and commands about records that must exist, never create
/// a data folder, database, secret or key: on an empty folder they say there is
/// no database and leave the folder empty.
#[test]
fn commands_on_an_empty_folder_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = some_jwt();
    let needs_database: &[&[&str]] = &[
        &["user", "list"],
        &["user", "list", "--json"],
        &["user", "show", "ada"],
        &["user", "show", "ada", "--json"],
        &["session", "list", "ada"],
        &["session", "list", "ada", "--json"],
        &["keys", "list"],
        &["keys", "list", "--json"],
        &["client", "list"],
        &["client", "list", "--json"],
        &["audit"],
        &["audit", "--json", "--since", "2h"],
        &["token", "verify", &jwt],
        // These change records that must already exist.
        &["user", "disable", "ada"],
        &["user", "enable", "ada"],
        &["user", "delete", "ada"],
        &["user", "set-password", "ada", "--password-stdin"],
        &["session", "revoke", "--user", "ada"],
        &["session", "revoke", "0192d7a0-0000-7000-8000-000000000000"],
        &["token", "sign", "ada"],
        &["keys", "rotate"],
        &["client", "remove", "billing"],
    ];
    for args in needs_database {
        let out = run_in(dir.path(), args, Some("a long enough password\n"));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(NO_DATABASE),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(entries(dir.path()), Vec::<String>::new(), "{args:?}");
    }
    // Neither needs a database at all.
    let out = run_in(dir.path(), &["token", "decode", &jwt], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_in(dir.path(), &["config", "show"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(entries(dir.path()), Vec::<String>::new());
    // A data folder named explicitly is not created either.
    let elsewhere = dir.path().join("not-yet");
    let out = run_in(
        dir.path(),
        &["--data-dir", elsewhere.to_str().unwrap(), "user", "list"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no database at"), "{}", stderr(&out));
    assert!(!elsewhere.exists());
}

/// On a database that has a schema but was never served, reading commands create
/// no signing key and no refresh-token secret.
#[test]
fn reading_a_fresh_database_creates_no_key_or_secret() {
    let dir = tempfile::tempdir().unwrap();
    ok(&run_in(dir.path(), &["migrate"], None));
    let data = dir.path().join("tessera-data");
    let before = entries(&data);
    assert!(before.contains(&"tessera.db".to_string()), "{before:?}");
    assert!(!before.contains(&"refresh_token.secret".to_string()));

    let out = run_in(dir.path(), &["keys", "list"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no signing keys yet"),
        "{}",
        stderr(&out)
    );
    let out = run_in(dir.path(), &["token", "verify", &some_jwt()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no signing key yet"),
        "{}",
        stderr(&out)
    );
    for args in [
        &["user", "list"][..],
        &["client", "list"],
        &["audit"],
        &["user", "show", "ada"],
    ] {
        run_in(dir.path(), args, None);
    }
    let keys = ok(&run_in(dir.path(), &["keys", "list", "--json"], None));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&keys).unwrap(),
        json!([])
    );
    let clients = ok(&run_in(dir.path(), &["client", "list", "--json"], None));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&clients).unwrap(),
        json!([])
    );
    let after: Vec<String> = entries(&data)
        .into_iter()
        .filter(|f| !f.ends_with("-wal") && !f.ends_with("-shm"))
        .collect();
    assert_eq!(after, ["tessera.db"], "no secret was generated");
    let users = run_in(dir.path(), &["user", "list"], None);
    assert_eq!(stderr(&users).trim(), "no users");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_commands_print_json() {
    let s = TestServer::start().await;
    let ada = s.user("ada").await;
    s.register("bob").await;
    let json_of = |args: &[&str]| -> serde_json::Value {
        let out = ok(&cli(&s, args, None));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };

    let list = json_of(&["user", "list", "--json"]);
    assert_eq!(list["total"], 2);
    assert_eq!(list["offset"], 0);
    assert_eq!(list["next_offset"], serde_json::Value::Null);
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ada", "bob"]);
    assert_eq!(list["users"][0]["email"], "ada@example.com");
    assert_eq!(list["users"][0]["disabled"], false);
    assert!(
        list["users"][0]["created_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let show = json_of(&["user", "show", "ada", "--json"]);
    assert_eq!(show["user"]["id"], ada.raw["user"]["id"]);
    assert_eq!(show["sessions"][0]["id"], ada.session_id.as_str());
    assert_eq!(show["sessions"][0]["client_id"], "tessera");

    let sessions = json_of(&["session", "list", "ada", "--json"]);
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    assert_eq!(sessions[0]["id"], ada.session_id.as_str());
    assert_eq!(json_of(&["session", "list", "bob", "--json"]), json!([]));

    let keys = json_of(&["keys", "list", "--json"]);
    assert_eq!(keys[0]["state"], "signing");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["at_rest"], "sealed");

    let clients = json_of(&["client", "list", "--json"]);
    assert_eq!(clients[0]["id"], "tessera");
    assert_eq!(clients[0]["type"], "public");

    let audit = json_of(&["audit", "--json"]);
    let kinds: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["register", "login_ok", "register"], "oldest first");
    assert_eq!(audit[1]["username"], "ada");
    assert_eq!(audit[1]["session_id"], ada.session_id.as_str());

    // Without --json, empty lists say so on stderr.
    let out = cli(&s, &["session", "list", "bob"], None);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("no live sessions of bob"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_list_pages_with_a_total() {
    let s = TestServer::start().await;
    let out = cli(&s, &["user", "list"], None);
    assert!(out.status.success());
    assert_eq!(stderr(&out).trim(), "no users");
    for name in ["user1", "user2", "user3", "user4", "user5"] {
        s.register(name).await;
    }
    let page = |args: &[&str]| {
        let mut all = vec!["user", "list"];
        all.extend_from_slice(args);
        let out = cli(&s, &all, None);
        let rows: Vec<String> = ok(&out).lines().map(str::to_string).collect();
        (rows, stderr(&out).trim().to_string())
    };
    let (rows, note) = page(&["--limit", "2"]);
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0].contains("user1") && rows[1].contains("user2"),
        "{rows:?}"
    );
    assert_eq!(note, "showing 1-2 of 5; use --offset 2 for more");
    let (rows, note) = page(&["--limit", "2", "--offset", "2"]);
    assert!(rows[0].contains("user3"), "{rows:?}");
    assert_eq!(note, "showing 3-4 of 5; use --offset 4 for more");
    let (rows, note) = page(&["--limit", "2", "--offset", "4"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(note, "showing 5-5 of 5");
    let (rows, note) = page(&["--offset", "10"]);
    assert!(rows.is_empty());
    assert_eq!(note, "no users at offset 10; there are 5 (offsets 0 to 4)");
    let (rows, note) = page(&[]);
    assert_eq!(rows.len(), 5);
    assert_eq!(note, "5 users");
    let json: serde_json::Value = serde_json::from_str(&ok(&cli(
        &s,
        &["user", "list", "--json", "--limit", "2"],
        None,
    )))
    .unwrap();
    assert_eq!(json["total"], 5);
    assert_eq!(json["next_offset"], 2);
    assert_eq!(json["users"].as_array().unwrap().len(), 2);
}

/// A command called wrongly exits 2 (clap's convention) before touching anything.
#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["session", "revoke"], "<SESSION|--user <USER>>"),
        (&["session", "revoke", "not-a-session"], "invalid value"),
        (
            &[
                "session",
                "revoke",
                "0192d7a0-0000-7000-8000-000000000000",
                "--user",
                "a",
            ],
            "cannot be used with",
        ),
        (&["client", "add", "bad id"], "a client id is 1 to 64"),
        (
            &["client", "add", "app", "--grant", "password"],
            "--first-party",
        ),
        (
            &["client", "add", "app", "--grant", "implicit"],
            "invalid value",
        ),
        (&["user", "list", "--limit", "0"], "invalid value"),
        (&["user", "list", "--offset", "-1"], "unexpected argument"),
        (&["audit", "--tail", "0"], "invalid value"),
        (
            &["audit", "--since", "yesterday"],
            "neither an RFC 3339 time",
        ),
        (
            &["token", "sign", "ada", "--expires-in", "5x"],
            "not a time span",
        ),
        (
            &["user", "add", "ada", "--email", "ada@example.com"],
            "--password-stdin",
        ),
        (&["user", "set-password", "ada"], "--password-stdin"),
        (
            &[
                "user",
                "add",
                "al",
                "--email",
                "al@example.com",
                "--password-stdin",
            ],
            "invalid value 'al' for '<USERNAME>'",
        ),
        (
            &[
                "user",
                "add",
                "ada",
                "--email",
                "ada.example.com",
                "--password-stdin",
            ],
            "invalid value 'ada.example.com' for '--email <EMAIL>'",
        ),
        (
            &["token", "sign", "ada", "--expires-in", "1h"],
            "may not exceed the access-token lifetime (15m)",
        ),
        (&["user", "frobnicate"], "unrecognized subcommand"),
        (&["config"], "Usage"),
    ];
    for (args, says) in cases {
        let out = run_in(dir.path(), args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert_eq!(entries(dir.path()), Vec::<String>::new(), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_shows_the_newest_events() {
    let s = TestServer::start().await;
    s.register("ivy").await;
    for _ in 0..4 {
        let r = s
            .post(
                "/v1/auth/login",
                json!({"login": "ivy", "password": "not the password"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    s.login("ivy").await;
    let out = cli(&s, &["audit", "--tail", "2"], None);
    let lines: Vec<String> = ok(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("login_failed"), "{lines:?}");
    assert!(
        lines[1].contains("login_ok"),
        "the newest is last: {lines:?}"
    );
    assert!(
        stderr(&out).contains("older ones exist"),
        "{}",
        stderr(&out)
    );
    // The default shows the newest 50: here, all six, oldest first.
    let all = ok(&cli(&s, &["audit"], None));
    let kinds: Vec<&str> = all
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "register",
            "login_failed",
            "login_failed",
            "login_failed",
            "login_failed",
            "login_ok"
        ]
    );
    let since = ok(&cli(&s, &["audit", "--since", "1h", "--user", "ivy"], None));
    assert_eq!(since.lines().count(), 6);
    // --limit still works, as another name for --tail.
    assert_eq!(
        ok(&cli(&s, &["audit", "--limit", "1"], None))
            .lines()
            .count(),
        1
    );
}

/// Every event kind the code records is explained in `tessera audit --help`.
#[test]
fn audit_help_lists_every_recorded_event_kind() {
    let help = ok(&tessera().args(["audit", "--help"]).output().unwrap());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut recorded = std::collections::BTreeSet::new();
    for krate in ["tessera-app", "tessera-server", "tessera"] {
        let src = root.join(krate).join("src");
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    recorded.extend(event_kinds_in(&std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
    }
    assert!(
        recorded.len() >= 10,
        "the scan finds the kinds: {recorded:?}"
    );
    for kind in &recorded {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(kind.as_str())),
            "`tessera audit --help` does not explain `{kind}`:\n{help}"
        );
    }
}

/// String literals naming an audit event: the first literal inside a call of
/// `.audit(` or `end_user_sessions(`, and `event: "..."` fields.
fn event_kinds_in(source: &str) -> Vec<String> {
    let mut kinds = Vec::new();
    let first_literal = |s: &str| -> Option<String> {
        let mut depth = 0;
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => return None,
                ')' => depth -= 1,
                '"' => {
                    let rest = &s[i + 1..];
                    return rest.find('"').map(|end| rest[..end].to_string());
                }
                _ => {}
            }
        }
        None
    };
    for call in [".audit(", "end_user_sessions("] {
        for (at, _) in source.match_indices(call) {
            if let Some(k) = first_literal(&source[at + call.len()..]) {
                kinds.push(k);
            }
        }
    }
    for (at, _) in source.match_indices("event: \"") {
        let rest = &source[at + "event: \"".len()..];
        if let Some(end) = rest.find('"') {
            kinds.push(rest[..end].to_string());
        }
    }
    kinds
        .into_iter()
        .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_worded_in_singular_and_plural() {
    let s = TestServer::start().await;
    s.user("joy").await;
    let out = ok(&cli(&s, &["session", "revoke", "--user", "joy"], None));
    assert_eq!(out.trim(), "1 session of joy revoked");
    let out = ok(&cli(&s, &["session", "revoke", "--user", "joy"], None));
    assert_eq!(out.trim(), "0 sessions of joy revoked");
    s.login("joy").await;
    s.login("joy").await;
    let out = ok(&cli(&s, &["user", "disable", "joy"], None));
    assert_eq!(out.trim(), "disabled joy; 2 sessions revoked");
    ok(&cli(&s, &["user", "enable", "joy"], None));
    s.login("joy").await;
    let out = ok(&cli(
        &s,
        &["user", "set-password", "joy", "--password-stdin"],
        Some("another fine password\n"),
    ));
    assert_eq!(out.trim(), "password set for joy; 1 session revoked");
}

/// Output into a pipe whose reader has gone (`tessera user list | head -1` once
/// `head` is done) ends the command quietly, as any Unix tool does: no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_ends_quietly() {
    let s = TestServer::start().await;
    s.user("piped").await;
    for args in [
        &["user", "list"][..],
        &["user", "list", "--json"],
        &["keys", "list"],
        &["config", "show"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = tessera()
            .arg("--data-dir")
            .arg(s.dir.path())
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
    }
}

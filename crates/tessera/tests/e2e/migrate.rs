//! Moving a tutorial-style Node backend (Express, `jsonwebtoken`, bcrypt, users in
//! MongoDB) to Tessera: its users exported by `mongoexport`, its services checking
//! tokens, its data backed up and restored.

mod backup;
mod examples;
mod verify;

use crate::support::*;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Output;

/// A server whose issuer is its real address, so that discovery and clients
/// configured with the issuer URL reach it.
pub async fn server_with_own_issuer(
    tweak: impl FnOnce(&mut tessera::config::Config),
) -> TestServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    TestServer::start_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.issuer = Some(format!("http://127.0.0.1:{port}"));
        tweak(c);
    })
    .await
}

/// The `tessera` binary on the test server's database.
pub fn cli(s: &TestServer, args: &[&str]) -> Output {
    let mut c = tessera();
    c.arg("--data-dir").arg(s.dir.path());
    if let Some(url) = &s.cfg.database_url {
        c.arg("--database-url")
            .arg(url)
            .env("REFRESH_TOKEN_SECRET", SHARED_REFRESH_SECRET);
    }
    c.args(args)
        .env("TESSERA_ARGON2_MEMORY_KIB", "1024")
        .env("TESSERA_ARGON2_ITERATIONS", "1")
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The claims of a JWT, read without checking anything.
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A user document as `mongoexport` writes it (relaxed extended JSON, the
/// default) for the users collection of the common Express tutorial.
fn mongo_user(oid: &str, username: &str, email: &str, hash: &str, created: &str) -> Value {
    json!({
        "_id": {"$oid": oid},
        "username": username,
        "email": email,
        "fullName": format!("{username} from Mongo"),
        "avatar": format!("http://res.cloudinary.com/demo/image/upload/v1705141230/{username}.png"),
        "coverImage": "",
        "watchHistory": [{"$oid": "65a1f0c2e4b0a1b2c3d4e600"}],
        "password": hash,
        "refreshToken": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJfaWQiOiI2NWExIn0.c2ln",
        "createdAt": {"$date": created},
        "updatedAt": {"$date": "2024-03-01T08:00:00.000Z"},
        "__v": 0
    })
}

const OID_HITESH: &str = "65a1f0c2e4b0a1b2c3d4e5f1";
const OID_ANU: &str = "65a1f0c2e4b0a1b2c3d4e5f2";
const OID_RAVI: &str = "65a1f0c2e4b0a1b2c3d4e5f3";

/// The export of a small tutorial app: three good users (one with a cost-10
/// `$2a$` hash as bcryptjs makes, one with its email in mixed case), and records
/// an import must refuse, each for its own reason.
fn export_lines() -> String {
    let h10 = bcrypt::hash_with_result("hitesh password", 10)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoA);
    let h4 = |pw: &str| bcrypt::hash(pw, 4).unwrap();
    let records = [
        mongo_user(
            OID_HITESH,
            "hitesh",
            "hitesh@example.com",
            &h10,
            "2024-01-13T10:20:30.123Z",
        ),
        mongo_user(
            OID_ANU,
            "anu",
            "Anu.Sharma@Example.COM",
            &h4("anu password"),
            "2024-02-02T12:00:00.000Z",
        ),
        // Canonical mode (`--jsonFormat=canonical`): numbers and dates typed.
        json!({
            "_id": {"$oid": OID_RAVI}, "username": "ravi", "email": "ravi@example.com",
            "fullname": "Ravi K", "password": h4("ravi password"),
            "createdAt": {"$date": {"$numberLong": "1706745600000"}},
            "__v": {"$numberInt": "0"}
        }),
        // 4: no email.
        json!({"_id": {"$oid": "65a1f0c2e4b0a1b2c3d4e5f4"}, "username": "noemail", "password": h4("x password")}),
        // 5: a password that is not a hash (a bug in the old app).
        mongo_user(
            "65a1f0c2e4b0a1b2c3d4e5f5",
            "plain",
            "plain@example.com",
            "plaintext-secret-1",
            "2024-01-01T00:00:00Z",
        ),
        // 6 and 7: two accounts whose emails differ only by case.
        mongo_user(
            "65a1f0c2e4b0a1b2c3d4e5f6",
            "mira",
            "Mira@example.com",
            &h4("mira password"),
            "2024-01-01T00:00:00Z",
        ),
        mongo_user(
            "65a1f0c2e4b0a1b2c3d4e5f7",
            "mira2",
            "mira@example.com",
            &h4("mira password"),
            "2024-01-01T00:00:00Z",
        ),
        // 8: a creation date that is not one.
        mongo_user(
            "65a1f0c2e4b0a1b2c3d4e5f8",
            "when",
            "when@example.com",
            &h4("when password"),
            "last tuesday",
        ),
    ];
    let mut out: Vec<String> = records.iter().map(Value::to_string).collect();
    // 9: a line cut short.
    out.push(r#"{"_id": {"$oid": "65a1f0c2e4b0a1b2c3d4e5f9"}, "username": "cut"#.into());
    out.join("\n") + "\n"
}

async fn login_as(s: &TestServer, login: &str, password: &str) -> Value {
    let r = s
        .post(
            "/v1/auth/login",
            json!({"login": login, "password": password, "delivery": "body"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{login}");
    r.json().await.unwrap()
}

async fn stored_hash(s: &TestServer, login: &str) -> String {
    s.state()
        .store
        .find_user_for_login(&tessera_core::validate::login_key(login))
        .await
        .unwrap()
        .unwrap()
        .password_hash
}

async fn user_count(s: &TestServer) -> usize {
    s.state().store.list_users(1_000, 0).await.unwrap().len()
}

async fn mongoexport_users_move_over(s: TestServer) {
    let file = s.dir.path().join("users.json");
    std::fs::write(&file, export_lines()).unwrap();
    let path = file.to_str().unwrap();
    let refused = [
        "line 4:", "line 5:", "line 6:", "line 7:", "line 8:", "line 9:",
    ];

    // A dry run checks everything, reports, and writes nothing.
    let dry = cli(&s, &["user", "import", "--dry-run", path]);
    assert_eq!(dry.status.code(), Some(1), "{}", stderr(&dry));
    assert!(
        stdout(&dry).starts_with("dry run: would import 3 users; 0 already present"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(user_count(&s).await, 0, "a dry run writes nothing");

    let first = cli(&s, &["user", "import", path]);
    assert_eq!(first.status.code(), Some(1), "some records are bad");
    let (out, err) = (stdout(&first), stderr(&first));
    assert!(
        out.starts_with("imported 3 users; 0 already present (skipped); 6 of 9 records refused"),
        "{out}"
    );
    assert!(
        out.contains("avatar (6)") && out.contains("refreshToken (6)") && out.contains("__v (7)"),
        "{out}"
    );
    for line in refused {
        assert!(err.contains(line), "{line} missing from:\n{err}");
    }
    assert!(!err.contains("line 1:") && !err.contains("line 2:") && !err.contains("line 3:"));
    assert!(err.contains("email is missing"), "{err}");
    assert!(err.contains("differs only by case"), "{err}");
    assert!(err.contains("createdAt"), "{err}");
    assert!(
        !err.contains("plaintext-secret-1") && !err.contains("$2b$") && !err.contains("$2a$"),
        "no password or hash is ever echoed:\n{err}"
    );
    assert_eq!(user_count(&s).await, 3);

    // A second run imports nothing new and reports the same bad records.
    let second = cli(&s, &["user", "import", path]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stdout(&second).starts_with("imported 0 users; 3 already present (skipped); 6 of 9"),
        "{}",
        stdout(&second)
    );
    let reported = stderr(&second)
        .lines()
        .filter(|l| l.trim_start().starts_with("line "))
        .count();
    assert_eq!(reported, refused.len(), "{}", stderr(&second));
    assert_eq!(user_count(&s).await, 3);

    // Users log in with their old passwords; the bcrypt hash becomes Argon2id.
    assert!(stored_hash(&s, "hitesh").await.starts_with("$2a$10$"));
    let login = login_as(&s, "hitesh", "hitesh password").await;
    assert!(stored_hash(&s, "hitesh").await.starts_with("$argon2id$"));
    login_as(&s, "hitesh", "hitesh password").await;
    assert_eq!(login["user"]["created_at"], "2024-01-13T10:20:30Z");
    assert_eq!(login["user"]["fullname"], "hitesh from Mongo");
    // The email keeps its case for display and matches in any case at login.
    let anu = login_as(&s, "anu.sharma@example.com", "anu password").await;
    assert_eq!(anu["user"]["email"], "Anu.Sharma@Example.COM");
    login_as(&s, "ANU.SHARMA@EXAMPLE.COM", "anu password").await;
    let ravi = login_as(&s, "ravi", "ravi password").await;
    assert_eq!(ravi["user"]["created_at"], "2024-02-01T00:00:00Z");
    assert_eq!(ravi["user"]["fullname"], "Ravi K");
    // No legacy id in access tokens unless configured.
    assert!(claims_of(login["access_token"].as_str().unwrap())["legacy_id"].is_null());

    // `user show` gives the legacy id.
    let show = cli(&s, &["user", "show", "hitesh"]);
    assert!(
        stdout(&show).contains(&format!("legacy id {OID_HITESH}")),
        "{}",
        stdout(&show)
    );

    // The same export as one JSON array (`mongoexport --jsonArray`): the users
    // already there are skipped, a new one is added, a bad item is named by index.
    let array = format!(
        "[{},\n{},\n{}]",
        mongo_user(
            OID_HITESH,
            "hitesh",
            "hitesh@example.com",
            "$2b$04$onw.NYs45V6FsYc5jpqUJ.G4MqsuSIYnAerfrY2Z/3kfTiiY4LI46",
            "2024-01-13T10:20:30.123Z"
        ),
        mongo_user(
            "65a1f0c2e4b0a1b2c3d4e5fa",
            "zoya",
            "zoya@example.com",
            &bcrypt::hash("zoya password", 4).unwrap(),
            "2024-04-04T04:04:04.000Z"
        ),
        json!({"_id": {"$oid": "65a1f0c2e4b0a1b2c3d4e5fb"}, "email": "x@example.com", "password": "nope"})
    );
    let file = s.dir.path().join("users-array.json");
    std::fs::write(&file, array).unwrap();
    let out = cli(&s, &["user", "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("imported 1 users; 1 already present (skipped); 1 of 3"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("array index 2: username is missing"),
        "{}",
        stderr(&out)
    );
    login_as(&s, "zoya", "zoya password").await;
    // A clean file exits 0.
    let clean = s.dir.path().join("clean.json");
    std::fs::write(
        &clean,
        format!(
            "[{}]",
            mongo_user(
                "65a1f0c2e4b0a1b2c3d4e5fc",
                "omar",
                "omar@example.com",
                &bcrypt::hash("omar password", 4).unwrap(),
                "2024-05-05T05:05:05Z"
            )
        ),
    )
    .unwrap();
    let out = cli(&s, &["user", "import", clean.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Services keyed by the Mongo id read it from the access token when asked to.
    let s = s
        .restart_with(|c| c.access_token_claims = Some("email,username,fullname,legacy_id".into()))
        .await;
    let login = login_as(&s, "hitesh", "hitesh password").await;
    let access = login["access_token"].as_str().unwrap();
    assert_eq!(claims_of(access)["legacy_id"], OID_HITESH);
    let me = s.get_auth("/v1/me", access).await;
    assert_eq!(me.status(), StatusCode::OK);
    // A user without one gets no such claim.
    s.register("fresh").await;
    let fresh = s.login("fresh").await;
    assert!(claims_of(&fresh.access)["legacy_id"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongoexport_users_move_over_on_sqlite() {
    mongoexport_users_move_over(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongoexport_users_move_over_on_postgres() {
    if let Some(s) = TestServer::start_pg().await {
        mongoexport_users_move_over(s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_import_files_fail_cleanly() {
    let s = TestServer::start().await;
    let missing = cli(&s, &["user", "import", "/nonexistent/users.json"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("cannot read"),
        "{}",
        stderr(&missing)
    );
    let broken = s.dir.path().join("broken.json");
    std::fs::write(&broken, "[{\"email\": \"a@b.co\"},").unwrap();
    let out = cli(&s, &["user", "import", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a JSON array"),
        "{}",
        stderr(&out)
    );
    assert_eq!(user_count(&s).await, 0);
    let usage = cli(&s, &["user", "import"]);
    assert_eq!(usage.status.code(), Some(2));
}

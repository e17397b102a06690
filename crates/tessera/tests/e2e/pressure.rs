//! SQLite under pressure (issue #13, point 5): a full database (its size capped
//! with `database_max_size`, SQLite's `max_page_count`, the way a full disk
//! behaves) and a database an operator's `sqlite3` shell holds locked.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn db_path(s: &TestServer) -> std::path::PathBuf {
    s.cfg.data_dir.join("tessera.db")
}

async fn page_count(db: &std::path::Path) -> (i64, i64) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (n,): (i64,) = sqlx::query_as("PRAGMA page_count")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let (size,): (i64,) = sqlx::query_as("PRAGMA page_size")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
    (n, size)
}

/// Grows the database from outside (a connection with no cap) until it is
/// within `room` bytes of `limit`.
async fn grow_until(db: &std::path::Path, limit: i64, room: i64) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let filler = "x".repeat(2000);
    loop {
        let (pages, size) = page_count(db).await;
        if pages * size >= limit - room {
            break;
        }
        for _ in 0..50 {
            sqlx::query("INSERT INTO audit_events (at, kind, detail) VALUES (0, 'filler', ?)")
                .bind(&filler)
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
    let _ = c.close().await;
}

async fn is_overloaded(r: reqwest::Response) -> bool {
    let retry = r.headers().contains_key("retry-after");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status} {body}"
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert!(retry, "503 without Retry-After: {body}");
        assert_eq!(body["error"], "overloaded", "{body}");
        return true;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_refuses_writes_keeps_reads_and_recovers() {
    const LIMIT: i64 = 2 << 20;
    let s = TestServer::start_with(|c| c.database_max_size = Some("2MiB".into())).await;
    let mut before: Vec<Tokens> = Vec::new();
    for i in 0..8 {
        before.push(s.user(&format!("early{i}")).await);
    }
    grow_until(&db_path(&s), LIMIT, 64 << 10).await;
    // Sign-ups until the database is full: each one adds rows.
    let mut created = Vec::new();
    let mut refused_at = None;
    for i in 0..2000 {
        let name = format!("filler{i}");
        let r = s
            .post(
                "/v1/auth/register",
                serde_json::json!({"email": format!("{name}@example.com"), "username": name, "password": PASSWORD}),
            )
            .await;
        if is_overloaded(r).await {
            refused_at = Some(i);
            break;
        }
        created.push(name);
    }
    let refused_at = refused_at.expect("the capped database filled up");
    // Full: logins (each a new session row) are refused with 503 too once the
    // session table's pages have no room left; each is refused at once.
    let mut logins = 0;
    loop {
        let started = Instant::now();
        let r = s
            .post(
                "/v1/auth/login",
                serde_json::json!({"login": "early0", "password": PASSWORD, "delivery": "body"}),
            )
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "answered at once"
        );
        if is_overloaded(r).await {
            break;
        }
        logins += 1;
        assert!(logins < 2000, "logins never ran out of room");
    }
    for t in &before {
        assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
    }
    let mut refreshed = 0;
    for t in before.iter_mut() {
        let r = s.refresh(&t.refresh).await;
        if r.status() == StatusCode::OK {
            *t = Tokens::from(r.json::<Value>().await.unwrap());
            refreshed += 1;
        } else {
            assert!(is_overloaded(r).await);
        }
    }
    eprintln!(
        "disk full (database_max_size 2MiB): the database filled after {refused_at} more \
         sign-ups and {logins} more logins; then both answered 503 overloaded with Retry-After; \
         /v1/me 200 for all {} sessions; {refreshed} of them refreshed in place",
        before.len()
    );
    // Space returns (the cap raised, as after freeing a disk): everything
    // committed is there and writes work again.
    let s = s.restart_with(|c| c.database_max_size = None).await;
    for t in &before {
        assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
        s.refresh_ok(&t.refresh).await;
    }
    for name in created.iter().rev().take(3) {
        s.login(name).await;
    }
    s.user("after_space_returned").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_an_operator_gives_503_not_a_hang() {
    if Command::new("sqlite3").arg("--version").output().is_err() {
        crate::pgcluster::unavailable(
            "the sqlite3 shell is not installed (apt-get install sqlite3)",
        );
        return;
    }
    let s = TestServer::start().await;
    let t = s.user("locked").await;
    let other = s.user("locked2").await;
    // An operator opens the database and starts a write transaction.
    let mut shell = Command::new("sqlite3")
        .arg(db_path(&s))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut input = shell.stdin.take().unwrap();
    input
        .write_all(
            b"BEGIN IMMEDIATE;\nINSERT INTO audit_events (at, kind) VALUES (0, 'operator');\n",
        )
        .unwrap();
    input.flush().unwrap();
    // The lock is held once another writer cannot get it.
    let db = db_path(&s);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = rusqlite_busy(&db);
        if probe {
            break;
        }
        assert!(Instant::now() < deadline, "the shell never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut waits = Vec::new();
    for (what, r) in [
        ("register", {
            let started = Instant::now();
            let r = s
                .post(
                    "/v1/auth/register",
                    serde_json::json!({"email": "new@example.com", "username": "newcomer", "password": PASSWORD}),
                )
                .await;
            waits.push(started.elapsed());
            r
        }),
        ("refresh", {
            let started = Instant::now();
            let r = s.refresh(&t.refresh).await;
            waits.push(started.elapsed());
            r
        }),
    ] {
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        assert!(is_overloaded(r).await, "{what}");
    }
    for w in &waits {
        assert!(*w < Duration::from_secs(3), "answered after {w:?}");
    }
    // Reads do not wait for the writer's lock (WAL).
    let started = Instant::now();
    assert_eq!(s.me_status(&other.access).await, StatusCode::OK);
    let read = started.elapsed();
    input.write_all(b"COMMIT;\n.quit\n").unwrap();
    drop(input);
    shell.wait().unwrap();
    eprintln!(
        "locked database (sqlite3 shell in BEGIN IMMEDIATE): writes answered 503 \
         overloaded with Retry-After after {waits:.2?}; a read answered 200 in {read:.2?}"
    );
    // The lock released, the same token rotates (the refused attempt wrote nothing).
    s.refresh_ok(&t.refresh).await;
    s.user("newcomer").await;
}

/// Whether a write lock on `db` is held by someone else right now.
fn rusqlite_busy(db: &std::path::Path) -> bool {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(".timeout 0")
        .arg("BEGIN IMMEDIATE; ROLLBACK;")
        .output()
        .unwrap();
    !out.status.success() || String::from_utf8_lossy(&out.stderr).contains("locked")
}

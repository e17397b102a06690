//! Bad input of every kind gets a clear 4xx, never a 5xx, and loses nothing.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_clear_4xx() {
    let s = TestServer::start().await;
    let t = s.user("paul").await;
    let raw = |path: &str, ct: Option<&str>, body: Vec<u8>| {
        let mut req = s.http.post(s.url(path)).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let json_ct = Some("application/json");
    type Case = (
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        StatusCode,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "/v1/auth/login",
            json_ct,
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/auth/login",
            json_ct,
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/auth/login",
            json_ct,
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/auth/login",
            json_ct,
            b"{\"login\":\"paul\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/auth/login",
            json_ct,
            b"{\"login\":5,\"password\":\"x\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/auth/login",
            json_ct,
            b"{\"login\":\"\xff\xfe\",\"password\":\"x\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/auth/login",
            json_ct,
            b"{\"login\":\"paul\",\"password\":\"x\",\"delivery\":\"pigeon\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/auth/login",
            Some("text/plain"),
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/v1/auth/login",
            None,
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/v1/auth/register",
            json_ct,
            vec![b'a'; 17 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "/v1/auth/refresh",
            json_ct,
            b"{\"refresh_token\":42}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/auth/refresh",
            json_ct,
            b"{\"refresh_token\":\"garbage\"}".to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
        ),
        (
            "/v1/auth/refresh",
            json_ct,
            b"{}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/auth/refresh",
            Some("text/plain"),
            b"x".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/v1/auth/refresh",
            json_ct,
            vec![b' '; 40 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "/v1/nothing-here",
            json_ct,
            b"{}".to_vec(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (path, ct, body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).to_string();
        let r = raw(path, ct, body).await.unwrap();
        assert_eq!(r.status(), status, "{path} {ct:?} {shown}");
        expect_error(r, status, code).await;
    }
    // A wrong-typed password is never echoed back.
    let r = raw(
        "/v1/auth/login",
        json_ct,
        b"{\"login\":\"paul\",\"password\":98765432123}".to_vec(),
    )
    .await
    .unwrap();
    let text = r.text().await.unwrap();
    assert!(!text.contains("98765432123"), "{text}");
    // Nothing was lost: the user and session still work.
    s.login("paul").await;
    let t1 = s.refresh_ok(&t.refresh).await;
    assert_eq!(s.me_status(&t1.access).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_tokens_are_401_with_a_challenge() {
    let s = TestServer::start().await;
    let t = s.user("quinn").await;
    let mut forged_rt = t.refresh.clone();
    let last = forged_rt.pop().unwrap();
    forged_rt.push(if last == 'A' { 'B' } else { 'A' });
    let long = "a".repeat(20_000);
    for token in [
        "x",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        &t.refresh,
        long.as_str(),
        &format!("{}x", t.access),
    ] {
        let r = s.get_auth("/v1/me", token).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{token:.40}");
        assert!(r.headers().contains_key("www-authenticate"));
        expect_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    for auth in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "bearer"] {
        let r = s
            .http
            .get(s.url("/v1/me"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        expect_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    // An access token is not a refresh token, and a forged refresh token is refused.
    for rt in [t.access.as_str(), forged_rt.as_str(), "", "tsr_"] {
        expect_error(
            s.refresh(rt).await,
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
        )
        .await;
    }
    let r = s
        .http
        .get(s.url("/v1/me"))
        .header("authorization", format!("Bearer {}", "a".repeat(64 * 1024)))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_and_paths() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/v1/auth/login")).send().await.unwrap();
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let r = s.http.put(s.url("/v1/me")).send().await.unwrap();
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let r = s.http.get(s.url("/../../etc/passwd")).send().await.unwrap();
    assert!(r.status().is_client_error());
    let r = s
        .post(
            "/v1/auth/login",
            json!({"login": "x".repeat(1000), "password": PASSWORD}),
        )
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_with(|c| c.header_read_timeout = "1".parse().unwrap()).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(8), slow.read(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a slow-header connection open"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    // Everyone else is served as usual.
    assert_eq!(
        s.http.get(s.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
}

/// Writes `head` (and nothing more) on a fresh connection; returns the status of
/// the answer, how long it took, and whether the server then closed the connection.
async fn answer_to(addr: &str, head: &[u8], wait: u64) -> (u16, std::time::Duration, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(head).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(wait),
        sock.read_to_end(&mut answer),
    )
    .await
    .is_ok();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, started.elapsed(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_over_the_limit_is_refused_before_it_is_sent() {
    // The request deadline is long: an answer within seconds proves the server did
    // not wait for the body.
    let s = TestServer::start_with(|c| c.request_timeout = "60".parse().unwrap()).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    for (path, ct) in [
        ("/v1/auth/register", "application/json"),
        ("/v1/auth/login", "application/json"),
        ("/oauth/token", "application/x-www-form-urlencoded"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {ct}\r\ncontent-length: 99999999\r\n\r\n{{"
        );
        let (status, took, closed) = answer_to(&addr, head.as_bytes(), 10).await;
        assert_eq!(status, 413, "{path}");
        assert!(took < std::time::Duration::from_secs(3), "{path}: {took:?}");
        assert!(closed, "{path}: the connection stayed open");
    }
    // One byte over the limit is enough; the limit itself is fine.
    let limit = s.cfg.body_limit;
    let r = s
        .http
        .post(s.url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; limit + 1])
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let mut body = br#"{"login":"nobody","password":"not the password"}"#.to_vec();
    body.resize(limit, b' ');
    let r = s
        .http
        .post(s.url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_gets_408() {
    let s = TestServer::start_with(|c| {
        c.body_read_timeout = "1".parse().unwrap();
        c.request_timeout = "60".parse().unwrap();
    })
    .await;
    let t = s.user("stalled").await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let cookie = format!("tessera_rt={}", t.refresh);
    // Half a body, then nothing: JSON, OAuth form and optional-body endpoints alike.
    for (path, ct, extra) in [
        ("/v1/auth/login", "application/json", ""),
        ("/v1/auth/register", "application/json", ""),
        ("/oauth/token", "application/x-www-form-urlencoded", ""),
        ("/v1/auth/refresh", "application/json", cookie.as_str()),
    ] {
        let cookie_line = if extra.is_empty() {
            String::new()
        } else {
            format!("cookie: {extra}\r\n")
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {ct}\r\n{cookie_line}content-length: 200\r\n\r\n{{\"login\":"
        );
        let (status, took, closed) = answer_to(&addr, head.as_bytes(), 20).await;
        assert_eq!(status, 408, "{path}");
        assert!(
            took >= std::time::Duration::from_millis(900)
                && took < std::time::Duration::from_secs(10),
            "{path}: {took:?}"
        );
        assert!(closed, "{path}: the connection stayed open");
    }
    // A chunked body that stops mid-way too.
    let head = "POST /v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"log\r\n";
    let (status, _, _) = answer_to(&addr, head.as_bytes(), 20).await;
    assert_eq!(status, 408);
    // Nothing was lost: the session refreshes as usual.
    s.refresh_ok(&t.refresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_still_meets_the_request_deadline() {
    use sqlx::Connection;
    let s = TestServer::start_with(|c| c.request_timeout = "1".parse().unwrap()).await;
    // Another process holds the SQLite write lock: a registration waits for it
    // (up to the store's busy timeout, longer than the deadline).
    let db = s.cfg.data_dir.join("tessera.db");
    let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = s
        .post(
            "/v1/auth/register",
            json!({"email": "slow@example.com", "username": "slow", "password": PASSWORD}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(r.headers()["retry-after"], "1");
    let body = expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "overloaded").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("took too long"),
        "{body}"
    );
    assert!(took < std::time::Duration::from_secs(4), "{took:?}");
    sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
}

//! Operations: Prometheus metrics, where they are served, request ids and the
//! access log.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_operators_watch() {
    let s = TestServer::start().await;
    let t0 = s.user("watched").await;
    let _ = s
        .post(
            "/v1/auth/login",
            serde_json::json!({"login": "watched", "password": "wrong password"}),
        )
        .await;
    let t1 = s.refresh_ok(&t0.refresh).await;
    s.clock.advance(11);
    assert_eq!(
        s.refresh(&t0.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let _ = s.me_status(&t1.access).await;
    s.user("second").await;
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics-text")
    );
    let m = r.text().await.unwrap();
    assert_eq!(
        value(&m, "tessera_logins_total{result=\"ok\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "tessera_logins_total{result=\"failed\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "tessera_refreshes_total{result=\"ok\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "tessera_refresh_reuse_detections_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "tessera_active_sessions"),
        Some(1.0),
        "the reused session was revoked: {m}"
    );
    assert!(
        m.contains(
            "tessera_http_requests_total{method=\"POST\",route=\"/v1/auth/refresh\",status=\"200\"}"
        ),
        "{m}"
    );
    assert!(
        m.contains("tessera_http_request_duration_seconds_bucket{le="),
        "{m}"
    );
    assert!(!m.contains(&t1.access) && !m.contains(&t1.refresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_do_not_grow_the_metrics() {
    let s = TestServer::start().await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("XMETHOD{i}").as_bytes()).unwrap();
        let r = s
            .http
            .request(method, s.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
    }
    let m = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!m.contains("XMETHOD"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_a_listener_of_their_own_or_off() {
    let s = TestServer::start_with(|c| c.metrics_listen = Some("127.0.0.1:0".into())).await;
    let at = s
        .running
        .as_ref()
        .unwrap()
        .metrics_addr
        .expect("a metrics listener");
    assert_ne!(at, s.running.as_ref().unwrap().addr);
    s.user("scraped").await;
    // The main listener does not answer /metrics any more.
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    // The metrics listener does, and nothing else.
    let r = s
        .http
        .get(format!("http://{at}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let m = r.text().await.unwrap();
    assert_eq!(
        value(&m, "tessera_logins_total{result=\"ok\"}"),
        Some(1.0),
        "{m}"
    );
    for path in ["/v1/me", "/healthz", "/openapi.json", "/"] {
        let r = s
            .http
            .get(format!("http://{at}{path}"))
            .send()
            .await
            .unwrap();
        expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    }
    let banner = &s.running.as_ref().unwrap().banner;
    assert!(
        banner.contains(&format!("metrics:   http://{at}/metrics")),
        "{banner}"
    );
    // Stopping the server stops the metrics listener too.
    let mut s = s;
    s.running.take().unwrap().stop().await.unwrap();
    assert!(tokio::net::TcpStream::connect(at).await.is_err());

    let off = TestServer::start_with(|c| c.metrics_listen = Some("off".into())).await;
    assert!(off.running.as_ref().unwrap().metrics_addr.is_none());
    let r = off.http.get(off.url("/metrics")).send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;

    for bad in ["nowhere", "127.0.0.1", "9090", "on"] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        cfg.metrics_listen = Some(bad.into());
        let e = cfg.validate().unwrap_err();
        assert!(e.contains("metrics_listen"), "{bad}: {e}");
    }
}

/// Starts the binary with `env` and flags `args` after `serve --listen 127.0.0.1:0`;
/// returns the child, its base URL and the file its log goes to.
fn serve_binary(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (std::process::Child, String, std::path::PathBuf) {
    use std::io::BufRead;
    let log = dir.join("server.log");
    let mut cmd = tessera();
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("TESSERA_ARGON2_MEMORY_KIB", "1024")
        .env("TESSERA_ARGON2_ITERATIONS", "1")
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    out.read_line(&mut banner).unwrap();
    let base = banner.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://"), "{banner}");
    // Keep reading the banner so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut rest = String::new();
        while out.read_line(&mut rest).is_ok_and(|n| n > 0) {}
    });
    (child, base, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_and_json_access_lines() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let metrics_at = format!("127.0.0.1:{metrics_port}");
    let (mut child, base, log_path) = serve_binary(
        dir.path(),
        &[("TESSERA_METRICS_LISTEN", metrics_at.as_str())],
        &["--log-format", "json"],
    );
    let http = reqwest::Client::new();
    // A plain id is kept and echoed; a bad one is replaced by a fresh one.
    let r = http
        .post(format!("{base}/v1/auth/register"))
        .header("x-request-id", "client-id-42")
        .json(&json!({"email": "ivy@example.com", "username": "ivy", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["x-request-id"], "client-id-42");
    let long = "x".repeat(200);
    let mut generated = Vec::new();
    for bad in ["has space", "quote\"d", long.as_str(), ""] {
        let r = http
            .get(format!("{base}/healthz"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        generated.push(id);
    }
    let r = http
        .get(format!("{base}/healthz"))
        .header("x-request-id", "one")
        .header("x-request-id", "two")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    // Without one, every request gets its own.
    let r = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"login": "ivy", "password": "wrong password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let login_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    generated.push(login_id.clone());
    let unique: std::collections::HashSet<_> = generated.iter().collect();
    assert_eq!(unique.len(), generated.len());
    // Errors from the edge itself carry one too.
    let r = http
        .post(format!("{base}/v1/auth/login"))
        .header("content-type", "application/json")
        .header("x-request-id", "too-big-1")
        .body(vec![b' '; 20_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers()["x-request-id"], "too-big-1");
    // The metrics listener named by the environment serves; the main one does not.
    let r = http
        .get(format!("http://{metrics_at}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "tessera_server::access")
        .collect();
    // Exactly one line per request on the main listener (scrapes are not logged).
    assert_eq!(access.len(), 9, "{log}");
    let find = |id: &str| -> &Value {
        let found: Vec<_> = access
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect();
        assert_eq!(found.len(), 1, "{id}: {log}");
        found[0]
    };
    let reg = find("client-id-42");
    assert_eq!(reg["level"], "INFO");
    assert_eq!(reg["status"], 201);
    assert_eq!(reg["span"]["method"], "POST");
    assert_eq!(reg["span"]["route"], "/v1/auth/register");
    assert_eq!(reg["span"]["client"], "127.0.0.1");
    assert!(
        reg["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{reg}"
    );
    assert!(reg["timestamp"].is_string());
    let login = find(&login_id);
    assert_eq!(login["status"], 401);
    assert_eq!(login["span"]["route"], "/v1/auth/login");
    assert_eq!(find("too-big-1")["status"], 413);
    let unmatched = access
        .iter()
        .find(|l| l["status"] == 404)
        .expect("the refused scrape");
    assert!(unmatched["span"].get("route").is_none(), "{unmatched}");
    // Nothing a client sent in a body or a path is in the log.
    assert!(
        !log.contains("wrong password") && !log.contains(PASSWORD),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_and_metrics_listen_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    // The flag takes text or json only: a usage error.
    let out = tessera()
        .args(["serve", "--log-format", "xml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // The environment and the file name the setting when wrong.
    for (k, v, setting) in [
        ("TESSERA_LOG_FORMAT", "yaml", "log_format"),
        ("TESSERA_METRICS_LISTEN", "everywhere", "metrics_listen"),
        (
            "TESSERA_TRUSTED_ORIGINS",
            "localhost:3000",
            "trusted_origins",
        ),
        ("TESSERA_BODY_READ_TIMEOUT", "0", "body_read_timeout"),
    ] {
        let out = tessera()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env(k, v)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{k}={v}: {err}");
        assert!(err.contains(setting), "{k}={v}: {err}");
    }
    // And `config show` lists them.
    let out = tessera()
        .args(["config", "show"])
        .env("TESSERA_LOG_FORMAT", "json")
        .env("TESSERA_METRICS_LISTEN", "off")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("log_format = \"json\""), "{shown}");
    assert!(shown.contains("metrics_listen = \"off\""), "{shown}");
}

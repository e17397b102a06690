//! Operations: Prometheus metrics.

use crate::support::*;
use reqwest::StatusCode;

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

//! Clock skew (issue #13, point 4): three instances on one PostgreSQL database,
//! one with the true time, one an hour ahead, one an hour behind — far more than
//! the refresh grace window and the access token's life. They still judge a
//! replay, reuse and expiry the same way, because on PostgreSQL each follows the
//! database's clock.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tessera_core::{Clock, SystemClock};

/// The system clock moved by a fixed number of seconds.
struct Skewed(i64);

impl Clock for Skewed {
    fn now(&self) -> i64 {
        SystemClock.now() + self.0
    }
}

const SKEW: i64 = 3600;

async fn post(http: &reqwest::Client, base: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let r = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn refresh(http: &reqwest::Client, base: &str, token: &str) -> (StatusCode, Value) {
    post(
        http,
        base,
        "/v1/auth/refresh",
        json!({"refresh_token": token, "delivery": "body"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_skewed_clocks_judge_replays_and_expiry_alike() {
    let Some((url, _schema)) = pg_schema().await else {
        return;
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut running = Vec::new();
    for (dir, skew) in dirs.iter().zip([0, SKEW, -SKEW]) {
        let mut c = test_config(dir.path());
        c.database_url = Some(url.clone());
        c.refresh_token_secret = Some(SHARED_REFRESH_SECRET.into());
        c.master_key = Some("the master key every skewed instance shares".into());
        c.issuer = Some("http://tessera.test".into());
        c.refresh_grace = "2s".parse().unwrap();
        let clock = Arc::new(Skewed(skew)) as Arc<dyn Clock>;
        running.push(tessera::start(&c, clock).await.unwrap());
    }
    let [on_time, ahead, behind] = [0, 1, 2].map(|i| format!("http://{}", running[i].addr));
    let http = reqwest::Client::new();
    let (status, _) = post(
        &http,
        &on_time,
        "/v1/auth/register",
        json!({"email": "skew@example.com", "username": "skew", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let login = || {
        post(
            &http,
            &on_time,
            "/v1/auth/login",
            json!({"login": "skew", "password": PASSWORD, "delivery": "body"}),
        )
    };

    // Rotated on time; the lost-response replay reaches the instance an hour
    // ahead at once: inside the grace window by the database's clock, so the
    // same successor (an hour ahead, it would be theft and end the session).
    let (_, t0) = login().await;
    let t0 = t0["refresh_token"].as_str().unwrap().to_string();
    let (status, t1) = refresh(&http, &on_time, &t0).await;
    assert_eq!(status, StatusCode::OK);
    let (status, replay) = refresh(&http, &ahead, &t0).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(replay["refresh_token"], t1["refresh_token"]);

    // The access token issued on time is alive on both skewed instances (an hour
    // ahead it would have expired; an hour behind it would not be valid yet).
    let access = t1["access_token"].as_str().unwrap();
    for base in [&ahead, &behind] {
        let r = http
            .get(format!("{base}/v1/me"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{base}");
    }

    // Rotated ahead, then on the instance behind: the stored times are the
    // database's, so the instance on time sees a fresh rotation.
    let (status, t2) = refresh(&http, &ahead, t1["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{t2}");
    let (status, t3) = refresh(&http, &behind, t2["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{t3}");
    let (status, again) = refresh(&http, &on_time, t2["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "a replay inside grace: {again}");
    assert_eq!(again["refresh_token"], t3["refresh_token"]);

    // A replay after the grace window, presented to the instance an hour behind:
    // reuse by the database's clock (an hour behind, it would look fresh).
    let (_, u0) = login().await;
    let u0 = u0["refresh_token"].as_str().unwrap().to_string();
    let (status, u1) = refresh(&http, &on_time, &u0).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (status, body) = refresh(&http, &behind, &u0).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "refresh_token_reused");
    let (status, _) = refresh(&http, &ahead, u1["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the session ended everywhere"
    );

    // What each instance wrote carries the database's time.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&direct_url(&url))
        .await
        .unwrap();
    let (spread,): (i64,) = sqlx::query_as(
        "SELECT MAX(ABS(rotated_at - FLOOR(EXTRACT(EPOCH FROM clock_timestamp()))::BIGINT)) FROM sessions",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        spread < 60,
        "a rotation stored {spread} s away from the database's time"
    );
    eprintln!(
        "clock skew: instances at -{SKEW} s, 0, +{SKEW} s with a 2 s grace window agreed on \
         every replay, reuse and expiry; stored times within {spread} s of the database's"
    );
    for r in running {
        r.stop().await.unwrap();
    }
}

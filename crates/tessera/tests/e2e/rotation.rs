//! The rotation rules of contract §4.3, each against a real server.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

/// Every rotation rule runs against SQLite and, when configured, PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::TestServer::start().await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(s) = crate::support::TestServer::start_pg().await {
                        super::$name(s).await;
                    }
                }
            )+
        }
    };
}

on_both_backends!(
    rotation_returns_new_tokens_and_extends_idle_expiry,
    fifty_parallel_refreshes_converge_on_one_successor,
    lost_response_replay_within_grace_gets_the_same_successor,
    replay_after_grace_is_theft_and_kills_the_successor,
    older_token_is_reuse_even_inside_grace,
    rules_hold_across_a_restart,
    idle_expiry_ends_an_unused_session,
    absolute_expiry_caps_an_active_session,
    expired_access_token_says_so,
    disabled_user_cannot_refresh,
);

async fn stored_counter(s: &TestServer, sid: &str) -> u64 {
    let (session, _) = s
        .state()
        .store
        .get_session(Uuid::parse_str(sid).unwrap())
        .await
        .unwrap()
        .unwrap();
    session.counter
}

async fn rotation_returns_new_tokens_and_extends_idle_expiry(s: TestServer) {
    let t0 = s.user("rot").await;
    s.clock.advance(3600);
    let t1 = s.refresh_ok(&t0.refresh).await;
    assert_ne!(t1.refresh, t0.refresh);
    assert_ne!(t1.access, t0.access);
    assert_eq!(t1.session_id, t0.session_id);
    assert_eq!(t1.raw["refresh_token_expires_in"], 864_000);
    assert_eq!(t1.raw["token_type"], "Bearer");
    assert_eq!(stored_counter(&s, &t0.session_id).await, 1);
    assert_eq!(s.me_status(&t1.access).await, StatusCode::OK);
}

async fn fifty_parallel_refreshes_converge_on_one_successor(s: TestServer) {
    let t0 = s.user("tabs").await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let http = s.http.clone();
        let url = s.url("/v1/auth/refresh");
        let body = serde_json::json!({"refresh_token": t0.refresh, "delivery": "body"});
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut successors = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        successors.insert(body["refresh_token"].as_str().unwrap().to_string());
        assert_eq!(
            s.me_status(body["access_token"].as_str().unwrap()).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        successors.len(),
        1,
        "every tab must hold the same refresh token"
    );
    assert_eq!(
        stored_counter(&s, &t0.session_id).await,
        1,
        "exactly one rotation is stored"
    );
    let successor = successors.into_iter().next().unwrap();
    // The session stays valid: the shared successor rotates normally.
    let t2 = s.refresh_ok(&successor).await;
    assert_eq!(stored_counter(&s, &t0.session_id).await, 2);
    assert_eq!(s.me_status(&t2.access).await, StatusCode::OK);
}

async fn lost_response_replay_within_grace_gets_the_same_successor(s: TestServer) {
    let t0 = s.user("lost").await;
    let t1 = s.refresh_ok(&t0.refresh).await;
    s.clock.advance(9);
    let again = s.refresh_ok(&t0.refresh).await;
    assert_eq!(again.refresh, t1.refresh, "byte-identical successor");
    assert_eq!(
        stored_counter(&s, &t0.session_id).await,
        1,
        "grace replays write nothing"
    );
    s.refresh_ok(&t1.refresh).await;
}

async fn replay_after_grace_is_theft_and_kills_the_successor(s: TestServer) {
    let t0 = s.user("thief").await;
    let t1 = s.refresh_ok(&t0.refresh).await;
    s.clock.advance(11);
    expect_error(
        s.refresh(&t0.refresh).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    // The newest token and its access token die with the session, at once.
    expect_error(
        s.refresh(&t1.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    assert_eq!(s.me_status(&t1.access).await, StatusCode::UNAUTHORIZED);
    // The revocation feed lists the session.
    let feed: Value = s
        .http
        .get(s.url("/v1/revocations?since=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        feed["revoked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["sid"] == t0.session_id.as_str())
    );
    // An audit event was recorded.
    let events = s.state().store.list_audit(None, 0, 100).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "refresh_reuse"));
}

/// t0's successor t1 has been used (to get t2), so t0 no longer converges.
async fn older_token_is_reuse_even_inside_grace(s: TestServer) {
    let t0 = s.user("older").await;
    let t1 = s.refresh_ok(&t0.refresh).await;
    let t2 = s.refresh_ok(&t1.refresh).await;
    expect_error(
        s.refresh(&t0.refresh).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    expect_error(
        s.refresh(&t2.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
}

async fn rules_hold_across_a_restart(s: TestServer) {
    let t0 = s.user("restart").await;
    let t1 = s.refresh_ok(&t0.refresh).await;
    let s = s.restart().await;
    // Keys, secrets and sessions survived: old access token and grace replay still work.
    assert_eq!(s.me_status(&t1.access).await, StatusCode::OK);
    assert_eq!(s.refresh_ok(&t0.refresh).await.refresh, t1.refresh);
    // Well past the 10 s grace window: before this restart, PostgreSQL instances
    // followed the database's clock, whose offset from the injected one is
    // measured in whole seconds and may be a second ahead.
    s.clock.advance(15);
    // The time the injected clock moved on must survive the restart: judged by
    // the database's clock (PostgreSQL), no time would have passed.
    let s = s.restart_with(|c| c.database_clock = false).await;
    expect_error(
        s.refresh(&t0.refresh).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    expect_error(
        s.refresh(&t1.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
}

async fn idle_expiry_ends_an_unused_session(s: TestServer) {
    let t0 = s.user("idle").await;
    s.clock.advance(10 * 86_400 - 1);
    let t1 = s.refresh_ok(&t0.refresh).await; // extends the idle expiry
    s.clock.advance(10 * 86_400 - 1);
    let t2 = s.refresh_ok(&t1.refresh).await;
    s.clock.advance(10 * 86_400);
    expect_error(
        s.refresh(&t2.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
}

async fn absolute_expiry_caps_an_active_session(s: TestServer) {
    let mut t = s.user("absolute").await;
    // Refresh every 5 days: the idle expiry never bites, the 30-day cap does.
    for _ in 0..5 {
        s.clock.advance(5 * 86_400);
        t = s.refresh_ok(&t.refresh).await;
    }
    assert_eq!(
        t.raw["refresh_token_expires_in"],
        5 * 86_400,
        "capped by the absolute expiry"
    );
    s.clock.advance(5 * 86_400);
    expect_error(
        s.refresh(&t.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
}

async fn expired_access_token_says_so(s: TestServer) {
    let t = s.user("expired").await;
    s.clock.advance(15 * 60 + 31);
    let r = s.get_auth("/v1/me", &t.access).await;
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(challenge.contains("expired"), "{challenge}");
    expect_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // And the refresh token gets a new one.
    let t1 = s.refresh_ok(&t.refresh).await;
    assert_eq!(s.me_status(&t1.access).await, StatusCode::OK);
}

async fn disabled_user_cannot_refresh(s: TestServer) {
    let t = s.user("disabled").await;
    let uid = Uuid::parse_str(t.raw["user"]["id"].as_str().unwrap()).unwrap();
    s.state().store.set_user_disabled(uid, true).await.unwrap();
    expect_error(
        s.refresh(&t.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    assert_eq!(s.me_status(&t.access).await, StatusCode::UNAUTHORIZED);
}

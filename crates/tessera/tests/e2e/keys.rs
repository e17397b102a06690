//! Signing keys over time: rotation without logging anyone out, sealing at rest.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;

async fn jwks_kids(s: &TestServer) -> Vec<String> {
    let jwks: Value = s
        .http
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let h = token.split('.').next().unwrap();
    let h: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap();
    h["kid"].as_str().unwrap().to_string()
}

async fn rotate(s: &TestServer) -> String {
    let st = s.state();
    let key = tessera_app::rotate_keys(st.store.as_ref(), &st.key_source, s.clock_now(), 300)
        .await
        .unwrap();
    st.reload_keys().await.unwrap();
    key.kid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_publishes_first_signs_later_and_logs_nobody_out() {
    let s = TestServer::start().await;
    let before = s.user("rotor").await;
    let old_kid = kid_of(&before.access);
    let new_kid = rotate(&s).await;
    // Published at once, not signing yet.
    assert_eq!(jwks_kids(&s).await.len(), 2);
    assert!(jwks_kids(&s).await.contains(&new_kid));
    let during = s.refresh_ok(&before.refresh).await;
    assert_eq!(kid_of(&during.access), old_kid);
    // After the JWKS cache lifetime the new key signs; old tokens keep working.
    s.clock.advance(301);
    s.state().reload_keys().await.unwrap();
    let after = s.refresh_ok(&during.refresh).await;
    assert_eq!(kid_of(&after.access), new_kid);
    for t in [&before, &during, &after] {
        assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
    }
    assert!(
        jwks_kids(&s).await.contains(&old_kid),
        "kept while its tokens live"
    );
    // Once the last token the old key signed has expired, it is dropped.
    s.clock.advance(900 + 30);
    s.state().reload_keys().await.unwrap();
    assert_eq!(jwks_kids(&s).await, vec![new_kid.clone()]);
    assert_eq!(
        s.me_status(&during.access).await,
        StatusCode::UNAUTHORIZED,
        "expired by then anyway"
    );
    let last = s.refresh_ok(&after.refresh).await;
    assert_eq!(s.me_status(&last.access).await, StatusCode::OK);
    let list = s.state().store.list_keys().await.unwrap();
    assert_eq!(list.len(), 1, "the expired key was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_before_during_and_after_a_rotation_under_load_all_verify() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let mut sessions = Vec::new();
    for i in 0..8 {
        sessions.push(s.user(&format!("load{i}")).await);
    }
    let mut workers = Vec::new();
    for t in sessions {
        let s = s.clone();
        workers.push(tokio::spawn(async move {
            let mut issued = Vec::new();
            let mut current = t;
            for _ in 0..15 {
                current = s.refresh_ok(&current.refresh).await;
                issued.push(current.access.clone());
                tokio::task::yield_now().await;
            }
            issued
        }));
    }
    let new_kid = rotate(&s).await;
    s.clock.advance(301);
    s.state().reload_keys().await.unwrap();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let fresh = s.login("load0").await;
    all.push(fresh.access.clone());
    assert_eq!(kid_of(&fresh.access), new_kid);
    for token in &all {
        assert_eq!(
            s.me_status(token).await,
            StatusCode::OK,
            "a token signed around the rotation was refused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_sealed_with_the_master_key() {
    let master = "a master key that is long enough for sealing!";
    let s = TestServer::start_with(|c| c.master_key = Some(master.into())).await;
    let t = s.user("sealed").await;
    let stored = s.state().store.list_keys().await.unwrap();
    assert!(tessera_jose::seal::is_sealed(&stored[0].private_der));
    // Restart with the same master key: everything works.
    let s = s.restart().await;
    assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
    // Without it, or with another one, start-up stops and says why.
    let dir = s.dir.clone();
    let mut cfg = s.cfg.clone();
    drop(s);
    cfg.master_key = None;
    let err = tessera::start(&cfg, std::sync::Arc::new(tessera_core::SystemClock))
        .await
        .err()
        .unwrap();
    assert!(err.contains("TESSERA_MASTER_KEY"), "{err}");
    cfg.master_key = Some("a different master key, also long enough".into());
    let err = tessera::start(&cfg, std::sync::Arc::new(tessera_core::SystemClock))
        .await
        .err()
        .unwrap();
    assert!(err.contains("TESSERA_MASTER_KEY"), "{err}");
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_asymmetric_algorithm_signs_and_verifies() {
    for alg in ["ES256", "RS256", "EdDSA"] {
        let s = TestServer::start_with(|c| c.signing_alg = alg.into()).await;
        let t = s.user("algo").await;
        use base64::Engine;
        let h = t.access.split('.').next().unwrap();
        let h: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(h["alg"], alg);
        assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
        let jwks: Value = s
            .http
            .get(s.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(jwks["keys"][0]["alg"], alg);
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(jwks["keys"][0].get(private).is_none());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_made_before_a_master_key_are_flagged_until_rotated() {
    let s = TestServer::start().await;
    let mut s = s
        .restart_with(|c| {
            c.master_key = Some("a master key that is long enough for sealing!".into())
        })
        .await;
    let banner = s.running.as_ref().unwrap().banner.clone();
    assert!(banner.contains("not sealed yet"), "{banner}");
    rotate(&s).await;
    s.clock.advance(301 + 900 + 30);
    s.state().reload_keys().await.unwrap();
    s = s.restart().await;
    let banner = s.running.as_ref().unwrap().banner.clone();
    assert!(!banner.contains("not sealed"), "{banner}");
}

//! Signing keys over time: rotation without logging anyone out, sealing at rest,
//! keys stored by another instance, and tokens no key of ours would have made.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use tessera_core::model::StoredKey;
use tessera_jose::seal::{MasterKey, is_sealed};
use tessera_jose::{AccessClaims, Algorithm, LoadedKey, generate_key};

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
    // The access tokens' keys (the RS256 key of ID tokens is published too).
    let alg = s.state().settings.signing_alg.as_str();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["alg"] == alg)
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
    let keys = tessera_app::rotate_keys(st.store.as_ref(), &st.key_source, s.clock_now(), 300)
        .await
        .unwrap();
    st.reload_keys().await.unwrap();
    keys[0].kid.clone()
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
    let of = |alg: &str| list.iter().filter(|k| k.alg == alg).count();
    assert_eq!(
        (of("EdDSA"), of("RS256")),
        (1, 1),
        "the expired keys were deleted"
    );
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

/// The claims of a token, read without checking anything.
fn claims_of(token: &str) -> AccessClaims {
    use base64::Engine;
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

/// Each row of `signing_keys`, read straight from the SQLite file: (kid, private part).
/// The stored keys of `alg`: kid and private part.
async fn stored_rows(s: &TestServer, alg: &str) -> Vec<(String, Vec<u8>)> {
    use sqlx::Connection;
    let db = s.dir.path().join("tessera.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kid, private_der FROM signing_keys WHERE alg = ? ORDER BY kid")
            .bind(alg)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    rows
}

/// Deletes the stored keys of `alg` (what a database from before they existed lacks).
async fn delete_rows(s: &TestServer, alg: &str) {
    use sqlx::Connection;
    let db = s.dir.path().join("tessera.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("DELETE FROM signing_keys WHERE alg = ?")
        .bind(alg)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

async fn write_private_part(s: &TestServer, kid: &str, private: &[u8]) {
    use sqlx::Connection;
    let db = s.dir.path().join("tessera.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE signing_keys SET private_der = ? WHERE kid = ?")
        .bind(private)
        .bind(kid)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// The key-encryption key a zero-config start generated into the data folder.
fn folder_master_key(s: &TestServer) -> MasterKey {
    let text = std::fs::read_to_string(s.dir.path().join("master_key.secret")).unwrap();
    MasterKey::new(text.trim().as_bytes()).unwrap()
}

/// Asserts that a stored private part is sealed and useless without the
/// key-encryption key: it is no PKCS#8 key, and does not contain the plain one.
fn assert_sealed(kid: &str, alg: &str, blob: &[u8], master: &MasterKey) {
    assert!(is_sealed(blob), "key {kid} is stored in plain form");
    let raw = StoredKey {
        kid: kid.into(),
        alg: alg.into(),
        private_der: blob.to_vec(),
        created_at: 0,
        activates_at: 0,
        retired_at: None,
    };
    assert!(
        LoadedKey::from_stored(&raw).is_err(),
        "the stored bytes alone load as a key"
    );
    let plain = tessera_jose::seal::open(kid, blob, Some(master)).unwrap();
    assert!(
        LoadedKey::from_stored(&StoredKey {
            private_der: plain.clone(),
            ..raw
        })
        .is_ok()
    );
    assert!(
        !blob.windows(plain.len()).any(|w| w == plain.as_slice()),
        "the plain key is inside the stored bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_seals_every_key_with_a_key_kept_in_the_data_folder() {
    let s = TestServer::start().await;
    let t = s.user("sealme").await;
    let file = s.dir.path().join("master_key.secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
    }
    let banner = s.running.as_ref().unwrap().banner.clone();
    assert!(
        banner.contains(&file.display().to_string()),
        "the banner says where the key-encryption key is: {banner}"
    );
    // A rotated key is sealed too.
    rotate(&s).await;
    let master = folder_master_key(&s);
    for alg in ["EdDSA", "RS256"] {
        let rows = stored_rows(&s, alg).await;
        assert_eq!(rows.len(), 2, "{alg}");
        for (kid, blob) in &rows {
            assert_sealed(kid, alg, blob, &master);
        }
    }
    // `tessera keys list` says so too, and shows every key sealed.
    let out = tessera()
        .arg("--data-dir")
        .arg(s.dir.path())
        .args(["keys", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{listed}");
    assert!(listed.contains(&file.display().to_string()), "{listed}");
    let at_rest: Vec<&str> = listed
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(3))
        .take(4)
        .collect();
    assert_eq!(at_rest, ["sealed"; 4], "{listed}");
    // The same contents given as TESSERA_MASTER_KEY open the same keys.
    let text = std::fs::read_to_string(&file).unwrap();
    let s = s
        .restart_with(|c| c.master_key = Some(text.trim().to_string()))
        .await;
    assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
    let banner = s.running.as_ref().unwrap().banner.clone();
    assert!(banner.contains("TESSERA_MASTER_KEY"), "{banner}");
    let out = tessera()
        .arg("--data-dir")
        .arg(s.dir.path())
        .args(["keys", "list"])
        .env("TESSERA_MASTER_KEY", text.trim())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{listed}");
    assert!(
        listed.contains("key-encryption key from TESSERA_MASTER_KEY"),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_key_from_an_older_database_is_sealed_in_place_at_start() {
    let s = TestServer::start().await;
    let before = s.user("legacy").await;
    // Make the database and folder what an older version left: the key in plain
    // PKCS#8, and no key-encryption key in the folder.
    let master = folder_master_key(&s);
    // PKCS#8, no RS256 key for ID tokens, and no key-encryption key in the folder.
    let (kid, blob) = stored_rows(&s, "EdDSA").await.remove(0);
    let plain = tessera_jose::seal::open(&kid, &blob, Some(&master)).unwrap();
    write_private_part(&s, &kid, &plain).await;
    delete_rows(&s, "RS256").await;
    std::fs::remove_file(s.dir.path().join("master_key.secret")).unwrap();
    assert!(!is_sealed(&stored_rows(&s, "EdDSA").await[0].1));

    let s = s.restart().await;
    let master = folder_master_key(&s);
    let rows = stored_rows(&s, "EdDSA").await;
    assert_eq!(rows.len(), 1, "the same key, not a new one");
    assert_eq!(rows[0].0, kid);
    assert_sealed(&kid, "EdDSA", &rows[0].1, &master);
    let (id_kid, id_blob) = stored_rows(&s, "RS256").await.remove(0);
    assert_sealed(&id_kid, "RS256", &id_blob, &master);
    // Tokens signed before still verify, and the same key keeps signing.
    assert_eq!(s.me_status(&before.access).await, StatusCode::OK);
    let after = s.refresh_ok(&before.refresh).await;
    assert_eq!(kid_of(&after.access), kid);
    // Starting again changes nothing.
    let s = s.restart().await;
    assert_eq!(stored_rows(&s, "EdDSA").await, rows);
    assert_eq!(s.me_status(&after.access).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_set_later_reseals_the_keys_sealed_by_the_folder() {
    let s = TestServer::start().await;
    let t = s.user("later").await;
    let master = "a master key that is long enough for sealing!";
    let s = s.restart_with(|c| c.master_key = Some(master.into())).await;
    assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
    let configured = MasterKey::new(master.as_bytes()).unwrap();
    for alg in ["EdDSA", "RS256"] {
        for (kid, blob) in stored_rows(&s, alg).await {
            assert_sealed(&kid, alg, &blob, &configured);
        }
    }
    // The folder's key is no longer needed.
    std::fs::remove_file(s.dir.path().join("master_key.secret")).unwrap();
    let s = s.restart().await;
    assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
    assert!(!s.dir.path().join("master_key.secret").exists());
}

/// Stores a new EdDSA key the way another instance would (sealed with this
/// server's key-encryption key) and returns it ready to sign.
async fn key_from_another_instance(s: &TestServer) -> LoadedKey {
    let st = s.state();
    let now = s.clock_now();
    let plain = generate_key(Algorithm::EdDSA, now, now).unwrap();
    let master = st.key_source.master.as_ref().unwrap();
    let sealed = StoredKey {
        private_der: master.seal(&plain.kid, &plain.private_der).unwrap(),
        ..plain.clone()
    };
    st.store.insert_key(sealed).await.unwrap();
    LoadedKey::from_stored(&plain).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_naming_a_key_stored_by_another_instance_is_accepted_at_once() {
    // The periodic reload is far away: only the unknown kid can make it work.
    let s =
        Arc::new(TestServer::start_with(|c| c.key_reload_interval = "1h".parse().unwrap()).await);
    let t = s.user("newkey").await;
    let claims = claims_of(&t.access);
    let other = key_from_another_instance(&s).await;
    let token = other.sign(&claims).unwrap();
    assert_eq!(s.state().unknown_kid_reloads(), 0);
    assert_eq!(s.me_status(&token).await, StatusCode::OK, "first request");
    assert_eq!(s.state().unknown_kid_reloads(), 1);
    // Both keys signed at once (as after an old bootstrap race): one is retired
    // now, both stay published while their tokens live.
    let keys = s.state().store.list_keys().await.unwrap();
    let live = |alg: &str| {
        keys.iter()
            .filter(|k| k.alg == alg && k.retired_at.is_none())
            .count()
    };
    assert_eq!((live("EdDSA"), live("RS256")), (1, 1));
    assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
    assert_eq!(s.me_status(&token).await, StatusCode::OK);

    // Tokens naming kids nobody stored: refused, and however many arrive, at
    // most one read per second.
    let started = std::time::Instant::now();
    let before = s.state().unknown_kid_reloads();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let stranger = LoadedKey::from_stored(
            &generate_key(Algorithm::EdDSA, s.clock_now(), s.clock_now()).unwrap(),
        )
        .unwrap();
        let forged = stranger.sign(&claims).unwrap();
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.me_status(&forged).await }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let reads = s.state().unknown_kid_reloads() - before;
    assert!(
        reads <= 1 + started.elapsed().as_secs(),
        "{reads} reloads in {:?}",
        started.elapsed()
    );

    // Many requests naming one new key at once share a single read.
    tokio::time::sleep(tessera_app::UNKNOWN_KID_RELOAD_INTERVAL).await;
    let third = key_from_another_instance(&s).await;
    let token = third.sign(&claims).unwrap();
    let before = s.state().unknown_kid_reloads();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (s, token) = (s.clone(), token.clone());
        tasks.push(tokio::spawn(async move { s.me_status(&token).await }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(s.state().unknown_kid_reloads() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_living_longer_than_the_server_issues_is_refused() {
    let s = TestServer::start().await;
    let t = s.user("forever").await;
    let mut claims = claims_of(&t.access);
    claims.exp = claims.iat + 10 * 365 * 86_400;
    // Signed by the server's own key, as one leaked with a database copy would.
    let token = s.state().key_set().signing_key().sign(&claims).unwrap();
    let body = expect_error(
        s.get_auth("/v1/me", &token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("lifetime"),
        "{body}"
    );
    // Up to the configured lifetime plus leeway is fine.
    claims.exp = claims.iat + 15 * 60 + 30;
    let token = s.state().key_set().signing_key().sign(&claims).unwrap();
    assert_eq!(s.me_status(&token).await, StatusCode::OK);
}

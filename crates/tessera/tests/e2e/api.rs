//! The JSON API of contract §5.1: users, sessions, logout, cookies and CSRF.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_by_email_or_username_and_me() {
    let s = TestServer::start().await;
    let reg = s.register("Alice").await;
    assert_eq!(
        reg["user"]["username"], "alice",
        "usernames are lower-cased"
    );
    assert_eq!(reg["user"]["fullname"], "Test User");
    assert!(reg["user"].get("password_hash").is_none());
    let by_name = s.login("ALICE").await;
    let by_mail = s.login("alice@EXAMPLE.com").await;
    assert_ne!(
        by_name.session_id, by_mail.session_id,
        "each login is its own session"
    );
    let r = s.get_auth("/v1/me", &by_mail.access).await;
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["user"]["email"], "Alice@example.com");
    assert_eq!(me["user"]["id"], reg["user"]["id"]);
    // Token response shape and headers.
    let r = s
        .post(
            "/v1/auth/login",
            json!({"login": "alice", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    for k in [
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
        "session_id",
        "user",
    ] {
        assert!(body.get(k).is_some(), "token response lacks {k}");
    }
    assert_eq!(body["expires_in"], 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_claims_follow_rfc_9068() {
    let s = TestServer::start().await;
    let t = s.user("claims").await;
    let parts: Vec<&str> = t.access.split('.').collect();
    use base64::Engine;
    let dec = |p: &str| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    let (h, c) = (dec(parts[0]), dec(parts[1]));
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "EdDSA");
    let jwks: Value = s
        .http
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], h["kid"]);
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private part published"
    );
    for k in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "sid",
        "client_id",
        "email",
        "username",
        "fullname",
    ] {
        assert!(c.get(k).is_some(), "claim {k} missing");
    }
    assert_eq!(c["sid"], t.session_id.as_str());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_with_seed_secret_and_custom_claims() {
    let s = TestServer::start_with(|c| {
        c.access_token_secret = Some("a-very-long-seed-secret-of-32-bytes!!".into());
        c.access_token_claims = Some("".into());
        c.access_token_expiry = "2m".parse().unwrap();
    })
    .await;
    let t = s.user("hsuser").await;
    assert_eq!(t.raw["expires_in"], 120);
    use base64::Engine;
    let p: Vec<&str> = t.access.split('.').collect();
    let h: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p[0])
            .unwrap(),
    )
    .unwrap();
    let c: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(h["alg"], "HS256");
    assert!(c.get("email").is_none());
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
    // Only the RS256 key of ID tokens is published, never the HMAC secret.
    let published = jwks["keys"].as_array().unwrap();
    assert!(
        published
            .iter()
            .all(|k| k["kty"] == "RSA" && k["alg"] == "RS256"),
        "an HMAC secret is never published: {published:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_conflicts_and_validation() {
    let s = TestServer::start().await;
    s.register("bob").await;
    let dup_mail = json!({"email": "BOB@example.com", "username": "bobby", "password": PASSWORD});
    expect_error(
        s.post("/v1/auth/register", dup_mail).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let dup_name = json!({"email": "b2@example.com", "username": "Bob", "password": PASSWORD});
    expect_error(
        s.post("/v1/auth/register", dup_name).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    for (email, username, password) in [
        ("not-an-email", "carol", PASSWORD),
        ("c@example.com", "c", PASSWORD),
        ("c@example.com", "has space", PASSWORD),
        ("c@example.com", "carol", "short"),
    ] {
        let body = json!({"email": email, "username": username, "password": password});
        expect_error(
            s.post("/v1/auth/register", body).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }
    let long = "x".repeat(129);
    let body = json!({"email": "c@example.com", "username": "carol", "password": long});
    let err = expect_error(
        s.post("/v1/auth/register", body).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert!(err["error_description"].as_str().unwrap().contains("128"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failures_look_alike() {
    let s = TestServer::start().await;
    let t = s.user("dave").await;
    let uid = uuid::Uuid::parse_str(t.raw["user"]["id"].as_str().unwrap()).unwrap();
    let wrong = s
        .post(
            "/v1/auth/login",
            json!({"login": "dave", "password": "wrong password"}),
        )
        .await;
    let unknown = s
        .post(
            "/v1/auth/login",
            json!({"login": "nobody", "password": PASSWORD}),
        )
        .await;
    s.state().store.set_user_disabled(uid, true).await.unwrap();
    let disabled = s
        .post(
            "/v1/auth/login",
            json!({"login": "dave", "password": PASSWORD}),
        )
        .await;
    let mut bodies = Vec::new();
    for r in [wrong, unknown, disabled] {
        bodies.push(expect_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_me_and_conflicts() {
    let s = TestServer::start().await;
    s.register("erin").await;
    let t = s.user("frank").await;
    let r = s
        .http
        .patch(s.url("/v1/me"))
        .bearer_auth(&t.access)
        .json(&json!({"fullname": "Frank F.", "username": "Frankie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["user"]["fullname"], "Frank F.");
    assert_eq!(me["user"]["username"], "frankie");
    s.login("frankie").await;
    let body = json!({"email": "ERIN@example.com"});
    let r = s
        .json_auth(reqwest::Method::POST, "/v1/me/email", &t.access, body)
        .await;
    expect_error(r, StatusCode::CONFLICT, "conflict").await;
    // The address is not changed by PATCH: that needs a link to the new address.
    let body = json!({"email": "frank@elsewhere.org"});
    let r = s
        .json_auth(reqwest::Method::PATCH, "/v1/me", &t.access, body)
        .await;
    let body = expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("POST /v1/me/email")
    );
    let r = s
        .http
        .patch(s.url("/v1/me"))
        .bearer_auth(&t.access)
        .json(&json!({"username": "!!"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_revokes_every_other_session() {
    let s = TestServer::start().await;
    let a = s.user("gina").await;
    let b = s.login("gina").await;
    let c = s.login("gina").await;
    let change = |current: &str, new: &str| {
        s.http
            .post(s.url("/v1/me/password"))
            .bearer_auth(&a.access)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };
    expect_error(
        change("wrong password", "new password 123").await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_error(
        change(PASSWORD, "short").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(
        change(PASSWORD, "new password 123").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    // This session lives on; the others die at once, access and refresh alike.
    assert_eq!(s.me_status(&a.access).await, StatusCode::OK);
    s.refresh_ok(&a.refresh).await;
    for other in [&b, &c] {
        assert_eq!(s.me_status(&other.access).await, StatusCode::UNAUTHORIZED);
        expect_error(
            s.refresh(&other.refresh).await,
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
        )
        .await;
    }
    let old = s
        .post(
            "/v1/auth/login",
            json!({"login": "gina", "password": PASSWORD}),
        )
        .await;
    expect_error(old, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let r = s
        .post(
            "/v1/auth/login",
            json!({"login": "gina", "password": "new password 123"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_and_delete() {
    let s = TestServer::start().await;
    let a = s.user("hank").await;
    let b = s.login("hank").await;
    let other = s.user("ivy").await;
    let list: Vec<Value> = s
        .get_auth("/v1/me/sessions", &a.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
    for sess in &list {
        for k in [
            "id",
            "created_at",
            "last_used_at",
            "expires_at",
            "user_agent",
            "ip",
            "current",
        ] {
            assert!(sess.get(k).is_some(), "session lacks {k}");
        }
        assert_eq!(sess["current"], sess["id"] == a.session_id.as_str());
    }
    // Another user's session is not found, and neither is garbage.
    for id in [other.session_id.as_str(), "not-a-uuid"] {
        let r = s
            .http
            .delete(s.url(&format!("/v1/me/sessions/{id}")))
            .bearer_auth(&a.access)
            .send()
            .await
            .unwrap();
        expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert_eq!(s.me_status(&other.access).await, StatusCode::OK);
    let r = s
        .http
        .delete(s.url(&format!("/v1/me/sessions/{}", b.session_id)))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.me_status(&b.access).await, StatusCode::UNAUTHORIZED);
    expect_error(
        s.refresh(&b.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    let list: Vec<Value> = s
        .get_auth("/v1/me/sessions", &a.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_scopes() {
    let s = TestServer::start().await;
    let a = s.user("jack").await;
    let b = s.login("jack").await;
    let c = s.login("jack").await;
    let bystander = s.user("kate").await;
    let logout = |access: &str, scope: &str| {
        s.http
            .post(s.url("/v1/auth/logout"))
            .bearer_auth(access)
            .json(&json!({"scope": scope}))
            .send()
    };
    // others: everything but the caller.
    assert_eq!(
        logout(&a.access, "others").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.me_status(&a.access).await, StatusCode::OK);
    assert_eq!(s.me_status(&b.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me_status(&c.access).await, StatusCode::UNAUTHORIZED);
    // local: just the caller.
    let d = s.login("jack").await;
    let r = logout(&a.access, "local").await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().contains("Max-Age=0"))
    );
    assert_eq!(s.me_status(&a.access).await, StatusCode::UNAUTHORIZED);
    expect_error(
        s.refresh(&a.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    assert_eq!(s.me_status(&d.access).await, StatusCode::OK);
    // global: every session of the user, by refresh token this time.
    let e = s.login("jack").await;
    let r = s
        .post(
            "/v1/auth/logout",
            json!({"refresh_token": e.refresh, "scope": "global"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.me_status(&d.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me_status(&e.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me_status(&bystander.access).await, StatusCode::OK);
    // Bad scope and no credentials.
    let r = s
        .http
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&bystander.access)
        .json(&json!({"scope": "everything"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = s.http.post(s.url("/v1/auth/logout")).send().await.unwrap();
    expect_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_feed_pages_with_a_cursor() {
    let s = TestServer::start().await;
    let a = s.user("liam").await;
    let b = s.login("liam").await;
    let feed = |since: String| {
        let url = s.url(&format!("/v1/revocations?since={since}"));
        let http = s.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let start = feed("0".into()).await;
    assert_eq!(start["revoked"], json!([]));
    let r = s
        .http
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let f1 = feed(start["cursor"].as_str().unwrap().into()).await;
    assert_eq!(f1["revoked"].as_array().unwrap().len(), 1);
    assert_eq!(f1["revoked"][0]["sid"], a.session_id.as_str());
    let until = f1["revoked"][0]["until"].as_i64().unwrap();
    assert!(
        until >= s.clock_now() + 900,
        "listed until the last access token expired"
    );
    s.http
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&b.access)
        .send()
        .await
        .unwrap();
    let f2 = feed(f1["cursor"].as_str().unwrap().into()).await;
    assert_eq!(f2["revoked"].as_array().unwrap().len(), 1);
    assert_eq!(f2["revoked"][0]["sid"], b.session_id.as_str());
    // After every access token of theirs expired, entries leave the feed.
    s.clock.advance(900 + 31);
    assert_eq!(feed("0".into()).await["revoked"], json!([]));
    let r = s
        .http
        .get(s.url("/v1/revocations?since=abc"))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

fn cookie_pair(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find_map(|c| {
            let (pair, attrs) = c.split_once(';').unwrap_or((&c, ""));
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| (v.to_string(), attrs.to_string()))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_modes_and_cookie_attributes() {
    let s = TestServer::start().await;
    s.register("mia").await;
    let both = s
        .post(
            "/v1/auth/login",
            json!({"login": "mia", "password": PASSWORD}),
        )
        .await;
    let (at, at_attrs) = cookie_pair(&both, "tessera_at").unwrap();
    let (rt, rt_attrs) = cookie_pair(&both, "tessera_rt").unwrap();
    for a in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=900",
    ] {
        assert!(at_attrs.contains(a), "access cookie lacks {a}: {at_attrs}");
    }
    for a in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/v1/auth",
        "Max-Age=864000",
    ] {
        assert!(rt_attrs.contains(a), "refresh cookie lacks {a}: {rt_attrs}");
    }
    let body: Value = both.json().await.unwrap();
    assert_eq!(body["access_token"], at.as_str());
    assert_eq!(body["refresh_token"], rt.as_str());

    let body_only = s
        .post(
            "/v1/auth/login",
            json!({"login": "mia", "password": PASSWORD, "delivery": "body"}),
        )
        .await;
    assert!(body_only.headers().get("set-cookie").is_none());

    let cookie_only = s
        .post(
            "/v1/auth/login",
            json!({"login": "mia", "password": PASSWORD, "delivery": "cookie"}),
        )
        .await;
    let (at, _) = cookie_pair(&cookie_only, "tessera_at").unwrap();
    let (rt, _) = cookie_pair(&cookie_only, "tessera_rt").unwrap();
    let body: Value = cookie_only.json().await.unwrap();
    assert!(
        body.get("access_token").is_none() && body.get("refresh_token").is_none(),
        "{body}"
    );
    assert!(!body.to_string().contains(&rt));

    // The cookies authenticate: me by access cookie, refresh by refresh cookie.
    let r = s
        .http
        .get(s.url("/v1/me"))
        .header("cookie", format!("tessera_at={at}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .post(s.url("/v1/auth/refresh"))
        .header("cookie", format!("tessera_rt={rt}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (rt2, _) = cookie_pair(&r, "tessera_rt").unwrap();
    assert_ne!(rt2, rt);
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(
        body["access_token"].is_string(),
        "as the seed front ends expect: {body}"
    );
    // Even when asked, a cookie-sourced refresh never puts the refresh token where a
    // script reads it.
    let r = s
        .http
        .post(s.url("/v1/auth/refresh"))
        .header("cookie", format!("tessera_rt={rt2}"))
        .json(&json!({"delivery": "both"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (rt3, _) = cookie_pair(&r, "tessera_rt").unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(!body.to_string().contains(&rt3), "{body}");
    let rt2 = rt3;
    // delivery=cookie keeps the access token out of the body as well.
    let r = s
        .http
        .post(s.url("/v1/auth/refresh"))
        .header("cookie", format!("tessera_rt={rt2}"))
        .json(&json!({"delivery": "cookie"}))
        .send()
        .await
        .unwrap();
    let (rt4, _) = cookie_pair(&r, "tessera_rt").unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(
        body.get("access_token").is_none() && body.get("refresh_token").is_none(),
        "{body}"
    );
    let rt2 = rt4;
    // Access tokens are never read from the query string.
    let r = s
        .http
        .get(s.url(&format!("/v1/me?access_token={at}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Logout by cookie clears both cookies.
    let r = s
        .http
        .post(s.url("/v1/auth/logout"))
        .header("cookie", format!("tessera_rt={rt2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(cookie_pair(&r, "tessera_at").unwrap().0, "");
    assert_eq!(cookie_pair(&r, "tessera_rt").unwrap().0, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_issuer_uses_prefixed_cookies() {
    let s = TestServer::start_with(|c| c.issuer = Some("https://id.example.com".into())).await;
    s.register("nora").await;
    let r = s
        .post(
            "/v1/auth/login",
            json!({"login": "nora", "password": PASSWORD}),
        )
        .await;
    assert!(
        cookie_pair(&r, "__Host-tessera_at")
            .unwrap()
            .1
            .contains("Path=/;")
    );
    assert!(cookie_pair(&r, "__Secure-tessera_rt").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_writes_need_same_origin_and_bearer_writes_do_not() {
    let s = TestServer::start().await;
    let t = s.user("oscar").await;
    let host = s.cfg.issuer().trim_start_matches("http://").to_string();
    let hostile = [
        vec![("origin", "https://evil.example".to_string())],
        vec![("origin", "null".to_string())],
        vec![("sec-fetch-site", "cross-site".to_string())],
        vec![
            ("origin", "https://evil.example".to_string()),
            ("sec-fetch-site", "cross-site".to_string()),
        ],
    ];
    for headers in &hostile {
        let mut req = s
            .http
            .post(s.url("/v1/auth/refresh"))
            .header("cookie", format!("tessera_rt={}", t.refresh));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        expect_error(req.send().await.unwrap(), StatusCode::FORBIDDEN, "csrf").await;
        let mut req = s
            .http
            .post(s.url("/v1/auth/logout"))
            .header("cookie", format!("tessera_at={}", t.access));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        expect_error(req.send().await.unwrap(), StatusCode::FORBIDDEN, "csrf").await;
        let mut req = s
            .http
            .patch(s.url("/v1/me"))
            .header("cookie", format!("tessera_at={}", t.access))
            .json(&json!({"fullname": "pwned"}));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        expect_error(req.send().await.unwrap(), StatusCode::FORBIDDEN, "csrf").await;
    }
    // A simple cross-site form post carries no JSON content type and no token: refused.
    let r = s
        .http
        .post(s.url("/v1/auth/refresh"))
        .header("cookie", format!("tessera_rt={}", t.refresh))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    // GET is not a way to refresh.
    let r = s
        .http
        .get(s.url("/v1/auth/refresh"))
        .header("cookie", format!("tessera_rt={}", t.refresh))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    // The session survived every attempt; the same origin is allowed.
    let r = s
        .http
        .post(s.url("/v1/auth/refresh"))
        .header("cookie", format!("tessera_rt={}", t.refresh))
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A bearer-authenticated write from another origin needs no CSRF check.
    let r = s
        .http
        .patch(s.url("/v1/me"))
        .bearer_auth(&t.access)
        .header("origin", "https://spa.example")
        .json(&json!({"fullname": "Oscar"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let s = TestServer::start().await;
    assert_eq!(
        s.http.get(s.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        s.http.get(s.url("/readyz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let r = s
        .http
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
}

/// Logins with the old password racing a password change never leave a live session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_wins_against_racing_logins() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let owner = s.user("racer").await;
    let mut logins = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        logins.push(tokio::spawn(async move {
            s.post(
                "/v1/auth/login",
                json!({"login": "racer", "password": PASSWORD, "delivery": "body"}),
            )
            .await
            .status()
        }));
    }
    let r = s
        .http
        .post(s.url("/v1/me/password"))
        .bearer_auth(&owner.access)
        .json(&json!({"current_password": PASSWORD, "new_password": "changed password 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for l in logins {
        let status = l.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
            "{status}"
        );
    }
    let live: Vec<Value> = s
        .get_auth("/v1/me/sessions", &owner.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        live.len(),
        1,
        "only the session that changed the password survives: {live:?}"
    );
}

/// Probing for taken emails through an address change costs the registration budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_changes_share_the_registration_limit() {
    let s = TestServer::start_with(|c| c.register_limit_ip = "3/10m".parse().unwrap()).await;
    s.register("quin").await;
    let t = s.user("rhea").await;
    let patch = |body: Value| {
        s.http
            .patch(s.url("/v1/me"))
            .bearer_auth(&t.access)
            .json(&body)
            .send()
    };
    let change_email = |email: &str| {
        let body = json!({ "email": email });
        s.json_auth(reqwest::Method::POST, "/v1/me/email", &t.access, body)
    };
    let r = change_email("quin@example.com").await;
    expect_error(r, StatusCode::CONFLICT, "conflict").await;
    let r = change_email("nobody@example.com").await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // A full-name change is not a probe and is not counted.
    let r = patch(json!({"fullname": "Rhea R."})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

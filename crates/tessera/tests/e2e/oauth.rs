//! The OAuth 2 / OpenID Connect surface (contract §5.2), `/openapi.json`, the client
//! registry CLI, and (in `interop`) other languages' libraries against the server.

pub(crate) mod interop;

use crate::support::*;
use reqwest::header::{AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tessera_core::Client;

/// Registers an OAuth client straight in the store; returns its secret if confidential.
pub async fn add_client(
    s: &TestServer,
    id: &str,
    confidential: bool,
    grants: &[&str],
    first_party: bool,
) -> Option<String> {
    let secret = confidential.then(|| format!("{id}-secret-0123456789abcdef"));
    let secret_hash = secret
        .as_deref()
        .map(tessera_app::hashing::client_secret_hash);
    s.state()
        .store
        .create_client(Client {
            secret_hash,
            ..Client::new(
                id,
                id,
                grants.iter().map(|g| g.to_string()).collect(),
                first_party,
                s.clock_now(),
            )
        })
        .await
        .unwrap();
    secret
}

async fn form(s: &TestServer, path: &str, params: &[(&str, &str)]) -> Response {
    s.http.post(s.url(path)).form(params).send().await.unwrap()
}

async fn form_basic(
    s: &TestServer,
    path: &str,
    id: &str,
    secret: &str,
    params: &[(&str, &str)],
) -> Response {
    s.http
        .post(s.url(path))
        .basic_auth(id, Some(secret))
        .form(params)
        .send()
        .await
        .unwrap()
}

/// Asserts an RFC 6749 §5.2 error (status, code, description, no-store headers);
/// returns the headers for further checks.
async fn oauth_error(r: Response, status: StatusCode, code: &str) -> HeaderMap {
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    let headers = r.headers().clone();
    let body = expect_error(r, status, code).await;
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    headers
}

/// A token response exactly per RFC 6749 §5.1.
async fn token_ok(r: Response) -> (String, String) {
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    assert!(r.headers().get("set-cookie").is_none());
    let body: Value = r.json().await.unwrap();
    let mut keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "refresh_token", "token_type"],
        "{body}"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    (
        body["access_token"].as_str().unwrap().to_string(),
        body["refresh_token"].as_str().unwrap().to_string(),
    )
}

fn claims(access: &str) -> Value {
    use base64::Engine;
    let payload = access.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn password_grant(s: &TestServer, user: &str, client_id: &str) -> (String, String) {
    token_ok(
        form(
            s,
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("username", user),
                ("password", PASSWORD),
                ("client_id", client_id),
            ],
        )
        .await,
    )
    .await
}

async fn refresh_grant(s: &TestServer, token: &str, client_id: &str) -> Response {
    form(
        s,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", client_id),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_grant_gives_rfc_6749_tokens_to_the_default_client() {
    let s = TestServer::start().await;
    s.register("olga").await;
    let (access, refresh) = password_grant(&s, "olga", "tessera").await;
    assert_eq!(s.me_status(&access).await, StatusCode::OK);
    assert_eq!(claims(&access)["client_id"], "tessera");
    // The JSON API refreshes sessions of the default client.
    s.refresh_ok(&refresh).await;
    // By email too.
    password_grant(&s, "olga@example.com", "tessera").await;
    let r = form(
        &s,
        "/oauth/token",
        &[
            ("grant_type", "password"),
            ("username", "olga"),
            ("password", "wrong password!"),
            ("client_id", "tessera"),
        ],
    )
    .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = form(
        &s,
        "/oauth/token",
        &[
            ("grant_type", "password"),
            ("username", "nobody"),
            ("password", PASSWORD),
            ("client_id", "tessera"),
        ],
    )
    .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = form(
        &s,
        "/oauth/token",
        &[
            ("grant_type", "password"),
            ("username", "olga"),
            ("client_id", "tessera"),
        ],
    )
    .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let long = "x".repeat(129);
    let r = form(
        &s,
        "/oauth/token",
        &[
            ("grant_type", "password"),
            ("username", "olga"),
            ("password", &long),
            ("client_id", "tessera"),
        ],
    )
    .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_grant_follows_the_rotation_rules() {
    let s = TestServer::start().await;
    let t = s.user("rita").await;
    let (access1, r1) = token_ok(refresh_grant(&s, &t.refresh, "tessera").await).await;
    assert_ne!(r1, t.refresh);
    assert_eq!(s.me_status(&access1).await, StatusCode::OK);
    // A replay of the previous token within the grace window converges.
    let (_, again) = token_ok(refresh_grant(&s, &t.refresh, "tessera").await).await;
    assert_eq!(again, r1, "grace replay returns the same successor");
    let (access2, r2) = token_ok(refresh_grant(&s, &r1, "tessera").await).await;
    s.clock.advance(11);
    // Reuse of a superseded token is theft: 400 invalid_grant, the session ends.
    let r = refresh_grant(&s, &r1, "tessera").await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = refresh_grant(&s, &r2, "tessera").await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(s.me_status(&access2).await, StatusCode::UNAUTHORIZED);
    // The JSON API agrees.
    let r = s.refresh(&r2).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    // Garbage and missing tokens.
    for bad in ["", "garbage", &format!("{}x", &r2[..r2.len() - 1])] {
        let r = refresh_grant(&s, bad, "tessera").await;
        let code = if bad.is_empty() {
            "invalid_request"
        } else {
            "invalid_grant"
        };
        oauth_error(r, StatusCode::BAD_REQUEST, code).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_authentication_failures_are_invalid_client() {
    let s = TestServer::start().await;
    let secret = add_client(&s, "backend", true, &["refresh_token"], false)
        .await
        .unwrap();
    let grant = [("grant_type", "refresh_token")];
    // Unknown client, no client, confidential client without its secret, public
    // client with a secret, wrong secret in the form: 401 without a challenge.
    for params in [
        vec![("client_id", "nope")],
        vec![],
        vec![("client_id", "backend")],
        vec![("client_id", "tessera"), ("client_secret", "something")],
        vec![("client_id", "backend"), ("client_secret", "wrong")],
        vec![("client_id", "nope"), ("client_secret", "wrong")],
    ] {
        let mut p = grant.to_vec();
        p.extend(params);
        let r = form(&s, "/oauth/token", &p).await;
        let h = oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
        assert!(h.get(WWW_AUTHENTICATE).is_none(), "{p:?}");
    }
    // Tried Basic and failed: 401 with a Basic challenge.
    for header in [
        format!("Basic {}", b64("backend:wrong")),
        format!("Basic {}", b64("ghost:wrong")),
        "Basic !!!".to_string(),
        format!("Basic {}", b64("no-colon")),
        "Bearer something".to_string(),
    ] {
        let r = s
            .http
            .post(s.url("/oauth/token"))
            .header(AUTHORIZATION, &header)
            .form(&grant)
            .send()
            .await
            .unwrap();
        let h = oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
        let challenge = h[WWW_AUTHENTICATE].to_str().unwrap().to_string();
        assert!(challenge.starts_with("Basic "), "{header}: {challenge}");
    }
    // Two methods at once.
    let r = form_basic(
        &s,
        "/oauth/token",
        "backend",
        &secret,
        &[("grant_type", "refresh_token"), ("client_secret", &secret)],
    )
    .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // The right secret, by Basic and by form: authenticated, then the missing
    // refresh token is the problem.
    let r = form_basic(&s, "/oauth/token", "backend", &secret, &grant).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = form(
        &s,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "backend"),
            ("client_secret", &secret),
        ],
    )
    .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // A public client may use Basic with an empty password (as many libraries do).
    let r = form_basic(&s, "/oauth/token", "tessera", "", &grant).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_only_work_for_their_own_client() {
    let s = TestServer::start().await;
    s.register("bob").await;
    let secret = add_client(&s, "backend", true, &["refresh_token", "password"], true)
        .await
        .unwrap();
    let r = form_basic(
        &s,
        "/oauth/token",
        "backend",
        &secret,
        &[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", PASSWORD),
        ],
    )
    .await;
    let (access, refresh) = token_ok(r).await;
    assert_eq!(claims(&access)["client_id"], "backend");
    // Another client (and the JSON API, which is the default client) cannot use it,
    // and trying does not end the session.
    let r = refresh_grant(&s, &refresh, "tessera").await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = s.refresh(&refresh).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    let r = form_basic(
        &s,
        "/oauth/token",
        "backend",
        &secret,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    let (_, next) = token_ok(r).await;
    assert_ne!(next, refresh);
    // And the default client's tokens are not the backend's.
    let t = s.login("bob").await;
    let r = form_basic(
        &s,
        "/oauth/token",
        "backend",
        &secret,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh),
        ],
    )
    .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    s.refresh_ok(&t.refresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_and_request_rules() {
    let s = TestServer::start().await;
    s.register("gina").await;
    add_client(
        &s,
        "third-party",
        false,
        &["refresh_token", "password"],
        false,
    )
    .await;
    add_client(&s, "login-only", false, &["password"], true).await;
    let pw = |client: &'static str| {
        vec![
            ("grant_type", "password"),
            ("username", "gina"),
            ("password", PASSWORD),
            ("client_id", client),
        ]
    };
    let r = form(&s, "/oauth/token", &pw("third-party")).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    let (_, refresh) = token_ok(form(&s, "/oauth/token", &pw("login-only")).await).await;
    let r = refresh_grant(&s, &refresh, "login-only").await;
    oauth_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    // The code grant exists, but not for a client registered without it.
    let r = form(
        &s,
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "tessera"),
        ],
    )
    .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    for grant in [
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "PASSWORD",
    ] {
        let r = form(
            &s,
            "/oauth/token",
            &[("grant_type", grant), ("client_id", "tessera")],
        )
        .await;
        oauth_error(r, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
    }
    let r = form(&s, "/oauth/token", &[("client_id", "tessera")]).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // A repeated parameter, a JSON body, no body.
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=password&grant_type=refresh_token&client_id=tessera")
        .send()
        .await
        .unwrap();
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = s
        .post(
            "/oauth/token",
            json!({"grant_type": "password", "client_id": "tessera"}),
        )
        .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = s.http.post(s.url("/oauth/token")).send().await.unwrap();
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Scopes Tessera knows are granted to the session; others are refused.
    let mut p = pw("tessera");
    p.push(("scope", "openid admin"));
    let r = form(&s, "/oauth/token", &p).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_scope").await;
    let mut p = pw("tessera");
    p.push(("scope", "openid email"));
    let r = form(&s, "/oauth/token", &p).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "openid email");
    // Unknown parameters are ignored; odd bytes are no 5xx.
    let mut p = pw("tessera");
    p.push(("foo", "bar"));
    token_ok(form(&s, "/oauth/token", &p).await).await;
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'%', b'=', b'&', b'&', b'%', b'z'])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Oversized bodies.
    let big = "a".repeat(20 * 1024);
    let r = form(
        &s,
        "/oauth/token",
        &[("grant_type", "password"), ("x", &big)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Wrong methods.
    let r = s.http.get(s.url("/oauth/token")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_grant_can_be_switched_off() {
    let s = TestServer::start_with(|c| c.password_grant = false).await;
    let t = s.user("pat").await;
    let r = form(
        &s,
        "/oauth/token",
        &[
            ("grant_type", "password"),
            ("username", "pat"),
            ("password", PASSWORD),
            ("client_id", "tessera"),
        ],
    )
    .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
    token_ok(refresh_grant(&s, &t.refresh, "tessera").await).await;
    let meta: Value = s
        .http
        .get(s.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_ends_sessions_and_never_reveals_tokens() {
    let s = TestServer::start().await;
    let by_refresh = s.user("rick").await;
    let by_access = s.login("rick").await;
    let ok = |r: Response| async move {
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.text().await.unwrap()
    };
    // A refresh token (with the wrong hint, which is only a hint) ends its session.
    let r = form(
        &s,
        "/oauth/revoke",
        &[
            ("token", by_refresh.refresh.as_str()),
            ("token_type_hint", "access_token"),
            ("client_id", "tessera"),
        ],
    )
    .await;
    assert_eq!(ok(r).await, "");
    assert_eq!(
        s.me_status(&by_refresh.access).await,
        StatusCode::UNAUTHORIZED
    );
    let r = refresh_grant(&s, &by_refresh.refresh, "tessera").await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // An access token ends its session too.
    let r = form(
        &s,
        "/oauth/revoke",
        &[
            ("token", by_access.access.as_str()),
            ("client_id", "tessera"),
        ],
    )
    .await;
    ok(r).await;
    assert_eq!(
        s.me_status(&by_access.access).await,
        StatusCode::UNAUTHORIZED
    );
    let r = s.refresh(&by_access.refresh).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    // Already revoked, unknown or garbage tokens: 200 all the same.
    for token in [
        by_refresh.refresh.as_str(),
        by_access.access.as_str(),
        "garbage",
        "a.b.c",
    ] {
        let r = form(
            &s,
            "/oauth/revoke",
            &[("token", token), ("client_id", "tessera")],
        )
        .await;
        ok(r).await;
    }
    let r = form(&s, "/oauth/revoke", &[("client_id", "tessera")]).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = form(
        &s,
        "/oauth/revoke",
        &[("token", "x"), ("client_id", "nope")],
    )
    .await;
    oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // Another client's token is refused, and stays valid.
    let live = s.login("rick").await;
    let secret = add_client(&s, "other", true, &["refresh_token"], false)
        .await
        .unwrap();
    let r = form_basic(
        &s,
        "/oauth/revoke",
        "other",
        &secret,
        &[("token", live.refresh.as_str())],
    )
    .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    s.refresh_ok(&live.refresh).await;
}

async fn introspect(s: &TestServer, secret: &str, token: &str) -> Value {
    let r = form_basic(s, "/oauth/introspect", "rs", secret, &[("token", token)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_answers_for_access_and_refresh_tokens() {
    let s = TestServer::start().await;
    let secret = add_client(&s, "rs", true, &["refresh_token"], false)
        .await
        .unwrap();
    let t = s.user("ivan").await;
    let uid = t.raw["user"]["id"].as_str().unwrap().to_string();
    let a = introspect(&s, &secret, &t.access).await;
    let c = claims(&t.access);
    assert_eq!(a["active"], true);
    assert_eq!(a["token_type"], "Bearer");
    assert_eq!(a["sub"], uid);
    assert_eq!(a["client_id"], "tessera");
    assert_eq!(a["username"], "ivan");
    assert_eq!(a["sid"], t.session_id);
    for k in ["exp", "iat", "iss", "aud", "jti"] {
        assert_eq!(a[k], c[k], "{k}");
    }
    let r = introspect(&s, &secret, &t.refresh).await;
    assert_eq!(r["active"], true);
    assert_eq!(r["token_type"], "refresh_token");
    assert_eq!(r["sid"], t.session_id);
    assert_eq!(r["sub"], uid);
    assert_eq!(r["client_id"], "tessera");
    assert!(r["exp"].as_i64().unwrap() > s.clock_now());
    // After a rotation the old token is inactive; asking revokes nothing.
    let next = s.refresh_ok(&t.refresh).await;
    assert_eq!(
        introspect(&s, &secret, &t.refresh).await,
        json!({"active": false})
    );
    s.clock.advance(60);
    assert_eq!(
        introspect(&s, &secret, &t.refresh).await,
        json!({"active": false})
    );
    assert_eq!(introspect(&s, &secret, &next.refresh).await["active"], true);
    let next = s.refresh_ok(&next.refresh).await;
    // Garbage is inactive, never an error.
    for junk in ["garbage", "a.b.c", &"x".repeat(10_000), "tsr_!!"] {
        assert_eq!(
            introspect(&s, &secret, junk).await,
            json!({"active": false})
        );
    }
    // Expired access token.
    s.clock.advance(900 + 31);
    assert_eq!(
        introspect(&s, &secret, &next.access).await,
        json!({"active": false})
    );
    let fresh = s.refresh_ok(&next.refresh).await;
    assert_eq!(introspect(&s, &secret, &fresh.access).await["active"], true);
    // Logged out: both inactive.
    let r = s
        .http
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&fresh.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        introspect(&s, &secret, &fresh.access).await,
        json!({"active": false})
    );
    assert_eq!(
        introspect(&s, &secret, &fresh.refresh).await,
        json!({"active": false})
    );
    // Only confidential clients may introspect.
    let r = form(
        &s,
        "/oauth/introspect",
        &[("token", fresh.access.as_str()), ("client_id", "tessera")],
    )
    .await;
    oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let r = form(&s, "/oauth/introspect", &[("token", fresh.access.as_str())]).await;
    oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let r = form_basic(&s, "/oauth/introspect", "rs", "wrong", &[("token", "x")]).await;
    let h = oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(h.contains_key(WWW_AUTHENTICATE));
    let r = form_basic(&s, "/oauth/introspect", "rs", &secret, &[]).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_returns_standard_claims() {
    let s = TestServer::start().await;
    let t = s.user("una").await;
    let uid = t.raw["user"]["id"].as_str().unwrap().to_string();
    let expected = json!({
        "sub": uid,
        "email": "una@example.com",
        "email_verified": false,
        "preferred_username": "una",
        "name": "Test User",
    });
    let r = s.get_auth("/oauth/userinfo", &t.access).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), expected);
    let r = s
        .http
        .post(s.url("/oauth/userinfo"))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), expected);
    // No full name: no `name`.
    let r = s
        .post(
            "/v1/auth/register",
            json!({"email": "nn@example.com", "username": "noname", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let n = s.login("noname").await;
    let info: Value = s
        .get_auth("/oauth/userinfo", &n.access)
        .await
        .json()
        .await
        .unwrap();
    assert!(info.get("name").is_none(), "{info}");
    // Failures: 401 with an RFC 6750 challenge.
    for r in [
        s.http.get(s.url("/oauth/userinfo")).send().await.unwrap(),
        s.get_auth("/oauth/userinfo", "garbage").await,
        s.get_auth("/oauth/userinfo", &t.refresh).await,
    ] {
        let challenge = r.headers()[WWW_AUTHENTICATE].to_str().unwrap().to_string();
        assert!(
            challenge.starts_with(r#"Bearer error="invalid_token""#),
            "{challenge}"
        );
        expect_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_exactly_what_tessera_supports() {
    let s = TestServer::start_with(|c| c.issuer = Some("https://id.example.com".into())).await;
    let oidc = s.get_json("/.well-known/openid-configuration").await;
    let rfc8414 = s.get_json("/.well-known/oauth-authorization-server").await;
    assert_eq!(oidc, rfc8414);
    let expected = json!({
        "issuer": "https://id.example.com",
        "authorization_endpoint": "https://id.example.com/oauth/authorize",
        "token_endpoint": "https://id.example.com/oauth/token",
        "end_session_endpoint": "https://id.example.com/oauth/logout",
        "revocation_endpoint": "https://id.example.com/oauth/revoke",
        "introspection_endpoint": "https://id.example.com/oauth/introspect",
        "userinfo_endpoint": "https://id.example.com/oauth/userinfo",
        "jwks_uri": "https://id.example.com/.well-known/jwks.json",
        "grant_types_supported": ["authorization_code", "refresh_token", "password"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "request_uri_parameter_supported": false,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
            "amr", "jti", "sid", "client_id", "scope", "email", "email_verified",
            "preferred_username", "name"],
    });
    assert_eq!(oidc, expected);
    // Every endpoint it names exists here.
    for k in [
        "authorization_endpoint",
        "end_session_endpoint",
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
    ] {
        let path = oidc[k]
            .as_str()
            .unwrap()
            .replace("https://id.example.com", "");
        let r = s.http.post(s.url(&path)).send().await.unwrap();
        assert_ne!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // ID tokens are RS256 whatever the access tokens use.
    let es = TestServer::start_with(|c| c.signing_alg = "ES256".into()).await;
    let meta = es.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        meta["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(meta["issuer"], es.state().settings.issuer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_route() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/auth/register", &["post"][..]),
        ("/v1/auth/login", &["post"]),
        ("/v1/auth/refresh", &["post"]),
        ("/v1/auth/logout", &["post"]),
        ("/v1/me", &["get", "patch"]),
        ("/v1/me/password", &["post"]),
        ("/v1/me/sessions", &["get"]),
        ("/v1/me/sessions/{id}", &["delete"]),
        ("/v1/revocations", &["get"]),
        ("/oauth/token", &["post"]),
        ("/oauth/revoke", &["post"]),
        ("/oauth/introspect", &["post"]),
        ("/oauth/userinfo", &["get", "post"]),
        ("/.well-known/jwks.json", &["get"]),
        ("/.well-known/openid-configuration", &["get"]),
        ("/.well-known/oauth-authorization-server", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/openapi.json", &["get"]),
        ("/metrics", &["get"]),
    ] {
        for m in methods {
            assert!(
                paths[path].get(*m).is_some(),
                "{m} {path} is not documented"
            );
        }
    }
    // Every documented operation is really served (no 404 / 405 from the router).
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = s.http.request(m, s.url(&concrete)).send().await.unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED
                    && !(status == StatusCode::NOT_FOUND
                        && body["error_description"] == "no such endpoint"),
                "{method} {path} is documented but not served ({status})"
            );
            assert!(status.as_u16() < 500, "{method} {path}: {status}");
            operations += 1;
        }
    }
    assert!(operations >= 21, "{operations}");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["client_basic"]["scheme"], "basic");
}

/// The real binary, without the environment of the test run.
fn tessera_cli(dir: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TESSERA_") || k.ends_with("_TOKEN_SECRET") || k.ends_with("_TOKEN_EXPIRY")
        {
            c.env_remove(k);
        }
    }
    c.arg("--data-dir").arg(dir).current_dir(dir);
    c
}

fn cli_ok(dir: &std::path::Path, args: &[&str]) -> String {
    let out = tessera_cli(dir).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{args:?}: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn cli_code(dir: &std::path::Path, args: &[&str]) -> Option<i32> {
    tessera_cli(dir).args(args).output().unwrap().status.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_clients() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let out = cli_ok(
        dir,
        &[
            "client",
            "add",
            "svc",
            "--name",
            "Billing service",
            "--confidential",
            "--grant",
            "refresh_token",
            "--grant",
            "password",
            "--first-party",
        ],
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap_or_else(|| panic!("no secret printed: {out}"))
        .to_string();
    assert!(secret.len() >= 43);
    cli_ok(dir, &["client", "add", "spa"]);
    let list = cli_ok(dir, &["client", "list"]);
    assert!(
        list.contains("svc") && list.contains("confidential") && list.contains("Billing service"),
        "{list}"
    );
    assert!(list.contains("spa") && list.contains("public"), "{list}");
    assert!(!list.contains(&secret), "the secret is never shown again");
    assert_eq!(
        cli_code(dir, &["client", "add", "svc"]),
        Some(1),
        "duplicate"
    );
    // Usage errors.
    assert_eq!(cli_code(dir, &["client", "add", "bad id"]), Some(2));
    assert_eq!(
        cli_code(dir, &["client", "add", "x", "--grant", "password"]),
        Some(2)
    );
    assert_eq!(
        cli_code(dir, &["client", "add", "x", "--grant", "implicit"]),
        Some(2)
    );
    assert_eq!(cli_code(dir, &["client", "remove", "ghost"]), Some(1));
    // The browser flow's registration: URIs, origins, scopes; checked, shown, changed.
    cli_ok(
        dir,
        &[
            "client",
            "add",
            "web",
            "--name",
            "Partner web",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--redirect-uri",
            "https://partner.example/cb",
            "--redirect-uri",
            "http://127.0.0.1/cb",
            "--post-logout-redirect-uri",
            "https://partner.example/",
            "--allowed-origin",
            "https://partner.example",
            "--backchannel-logout-uri",
            "https://partner.example/bcl",
            "--scope",
            "openid",
            "--scope",
            "email",
        ],
    );
    let shown: Value =
        serde_json::from_str(&cli_ok(dir, &["client", "show", "web", "--json"])).unwrap();
    assert_eq!(shown["first_party"], false);
    assert_eq!(
        shown["redirect_uris"],
        json!(["https://partner.example/cb", "http://127.0.0.1/cb"])
    );
    assert_eq!(
        shown["post_logout_redirect_uris"],
        json!(["https://partner.example/"])
    );
    assert_eq!(shown["allowed_origins"], json!(["https://partner.example"]));
    assert_eq!(
        shown["backchannel_logout_uri"],
        "https://partner.example/bcl"
    );
    assert_eq!(shown["scopes"], json!(["openid", "email"]));
    let text = cli_ok(dir, &["client", "show", "web"]);
    assert!(text.contains("https://partner.example/bcl"), "{text}");
    cli_ok(
        dir,
        &[
            "client",
            "update",
            "web",
            "--first-party",
            "true",
            "--redirect-uri",
            "https://partner.example/new",
            "--backchannel-logout-uri",
            "",
        ],
    );
    let shown: Value =
        serde_json::from_str(&cli_ok(dir, &["client", "show", "web", "--json"])).unwrap();
    assert_eq!(shown["first_party"], true);
    assert_eq!(
        shown["redirect_uris"],
        json!(["https://partner.example/new"])
    );
    assert_eq!(shown["backchannel_logout_uri"], Value::Null);
    assert_eq!(shown["scopes"], json!(["openid", "email"]), "kept");
    for bad in [
        &["client", "add", "x", "--grant", "authorization_code"][..],
        &[
            "client",
            "add",
            "x",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "http://partner.example/cb",
        ],
        &[
            "client",
            "add",
            "x",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "https://p.example/cb#f",
        ],
        &[
            "client",
            "add",
            "x",
            "--redirect-uri",
            "javascript:alert(1)",
        ],
        &[
            "client",
            "add",
            "x",
            "--allowed-origin",
            "https://p.example/",
        ],
        &["client", "add", "x", "--scope", "admin"],
        &[
            "client",
            "add",
            "x",
            "--backchannel-logout-uri",
            "com.example.app:/x",
        ],
    ] {
        assert_eq!(cli_code(dir, bad), Some(2), "{bad:?}");
    }
    assert_eq!(
        cli_code(
            dir,
            &["client", "update", "web", "--redirect-uri", "ftp://x"]
        ),
        Some(1)
    );
    assert_eq!(
        cli_code(dir, &["client", "update", "ghost", "--name", "x"]),
        Some(1)
    );
    assert_eq!(
        cli_code(dir, &["client", "update", "spa", "--new-secret"]),
        Some(1)
    );
    assert_eq!(cli_code(dir, &["client", "show", "ghost"]), Some(1));

    let s = TestServer::start_with(|c| c.data_dir = dir.to_path_buf()).await;
    s.register("cleo").await;
    let r = form_basic(
        &s,
        "/oauth/token",
        "svc",
        &secret,
        &[
            ("grant_type", "password"),
            ("username", "cleo"),
            ("password", PASSWORD),
        ],
    )
    .await;
    let (_, refresh) = token_ok(r).await;
    assert!(
        cli_ok(dir, &["client", "list"]).contains("tessera"),
        "the default client exists"
    );
    cli_ok(dir, &["client", "remove", "svc"]);
    let r = form_basic(
        &s,
        "/oauth/token",
        "svc",
        &secret,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_client_is_created_once_and_kept() {
    let s = TestServer::start().await;
    let store = &s.state().store;
    let c = store.get_client("tessera").await.unwrap().unwrap();
    assert!(c.first_party && c.secret_hash.is_none());
    assert_eq!(c.grant_types, ["refresh_token", "password"]);
    // Idempotent, also when racing.
    let (a, b) = tokio::join!(
        tessera_app::ensure_default_client(store.as_ref(), "tessera", 1),
        tessera_app::ensure_default_client(store.as_ref(), "tessera", 2),
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(store.list_clients().await.unwrap().len(), 1);
}

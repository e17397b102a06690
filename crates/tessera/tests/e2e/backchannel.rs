//! OpenID Connect back-channel logout, received by a relying party's endpoint on a
//! loopback port: every way a session ends (RP-initiated logout, sign out
//! everywhere, refresh-token reuse, a password change, an operator's revoke,
//! consent withdrawal) posts exactly one logout token per ended session of the
//! client, verified by Node's `jose` against the published keys; and a token the
//! receiver could not take at first is retried after a restart and arrives once.
//!
//! The sessions are opened the way a browser opens them, over plain HTTP: the
//! sign-in form, the authorization endpoint, the consent form, the token endpoint.
//! Without Node and `jose` (`npm ci` in `tests/interop`) the tests say loudly that
//! they skipped, unless `TESSERA_REQUIRE_INTEROP=1` makes that a failure.

use crate::support::*;
use aws_lc_rs::digest;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tessera_core::Client;

const CLIENT: &str = "ledger";
const REDIRECT: &str = "http://127.0.0.1/callback";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The relying party's back-channel logout endpoint: keeps every token posted
/// while it answers 200, and answers 503 while `failing`.
#[derive(Clone, Default)]
struct Receiver {
    tokens: Arc<Mutex<Vec<String>>>,
    attempts: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    /// Anything posted that was not a form with exactly one `logout_token`.
    malformed: Arc<Mutex<Vec<String>>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AxumStatus {
    r.attempts.fetch_add(1, Ordering::SeqCst);
    if r.failing.load(Ordering::SeqCst) {
        return AxumStatus::SERVICE_UNAVAILABLE;
    }
    let form = headers
        .get("content-type")
        .is_some_and(|v| v == "application/x-www-form-urlencoded");
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    match pairs.as_slice() {
        [(k, token)] if form && k == "logout_token" => {
            r.tokens.lock().unwrap().push(token.clone());
            AxumStatus::OK
        }
        _ => {
            r.malformed
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            AxumStatus::BAD_REQUEST
        }
    }
}

impl Receiver {
    /// Listens on a loopback port; returns the back-channel logout URI.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/backchannel-logout", axum::routing::post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://127.0.0.1:{port}/backchannel-logout")
    }

    fn count(&self) -> usize {
        self.tokens.lock().unwrap().len()
    }

    /// Waits for `n` more tokens after the first `before`, then a while longer
    /// to catch any extra one; returns the new tokens.
    async fn expect(&self, before: usize, n: usize, what: &str) -> Vec<String> {
        for _ in 0..100 {
            if self.count() >= before + n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The delivery loop looks at least once a second: give it two looks.
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        let got = self.tokens.lock().unwrap()[before..].to_vec();
        assert_eq!(
            got.len(),
            n,
            "{what}: {n} logout tokens expected, got {got:?}"
        );
        assert!(self.malformed.lock().unwrap().is_empty(), "{what}");
        got
    }
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A browser without JavaScript: keeps the cookies the server sets, follows no
/// redirects by itself.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

/// What a code exchange gave.
struct Opened {
    sid: String,
    refresh: String,
    id_token: String,
}

impl Browser {
    async fn sign_in(base: &str, login: &str) -> Browser {
        let mut b = Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookies: HashMap::new(),
        };
        let r = b
            .http
            .post(format!("{base}/signin"))
            .form(&[("login", login), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        b.keep(&r);
        assert!(b.cookies.contains_key("tessera_at"), "{:?}", b.cookies);
        b
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all(SET_COOKIE) {
            let (pair, _) = v.to_str().unwrap().split_once(';').unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.into(), value.into());
            }
        }
    }

    fn cookie(&self) -> String {
        self.cookies
            .iter()
            .filter(|(name, _)| name.as_str() == "tessera_at")
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path_and_query: &str) -> reqwest::Response {
        let r = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .header(COOKIE, self.cookie())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        r
    }

    async fn post_form(&mut self, path: &str, form: &[(String, String)]) -> reqwest::Response {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        r
    }

    /// The code flow for the client, consenting when asked; returns the session.
    async fn authorize(&mut self) -> Opened {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).unwrap();
        let verifier = URL_SAFE_NO_PAD.encode(bytes);
        let challenge =
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
        let params: Vec<(String, String)> = [
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("scope", "openid offline_access"),
            ("state", "s-1"),
            ("nonce", "n-1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let mut r = self.get(&format!("/oauth/authorize?{query}")).await;
        if r.status() == StatusCode::OK {
            let page = r.text().await.unwrap();
            assert!(page.contains("Allow access?"), "{page}");
            let mut form = params.clone();
            form.push(("decision".into(), "allow".into()));
            r = self.post_form("/oauth/authorize", &form).await;
        }
        assert!(r.status().is_redirection(), "{}", r.status());
        let to = url::Url::parse(r.headers()[LOCATION].to_str().unwrap()).unwrap();
        let q: HashMap<String, String> = to.query_pairs().into_owned().collect();
        let code = q.get("code").unwrap_or_else(|| panic!("{to}"));
        let r = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
                ("client_id", CLIENT),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let t: Value = r.json().await.unwrap();
        let id_token = t["id_token"].as_str().unwrap().to_string();
        Opened {
            sid: payload(&id_token)["sid"].as_str().unwrap().to_string(),
            refresh: t["refresh_token"].as_str().unwrap().to_string(),
            id_token,
        }
    }
}

/// Verifies `tokens` with jose (`tests/interop/verify_logout.mjs`) and checks every
/// claim a logout token must have; returns the sids, sorted.
async fn verified(s: &TestServer, tokens: &[String], user: &str) -> Vec<String> {
    let issuer = s.cfg.issuer.clone().unwrap();
    let cases = json!({
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "issuer": issuer,
        "cases": tokens.iter().map(|t| json!({"token": t, "audience": CLIENT})).collect::<Vec<_>>(),
    });
    let file = s
        .dir
        .path()
        .join(format!("logout-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, cases.to_string()).unwrap();
    let seen =
        crate::browser::run_node(vec!["verify_logout.mjs".into(), file.display().to_string()])
            .await;
    let mut sids = Vec::new();
    for v in seen.as_array().unwrap() {
        assert!(v.get("error").is_none(), "{v}");
        assert_eq!(v["tamperedRefused"], true, "{v}");
        assert_eq!(v["header"]["alg"], "RS256", "{v}");
        assert_eq!(v["header"]["typ"], "logout+jwt", "{v}");
        assert!(v["header"]["kid"].as_str().is_some(), "{v}");
        let p = &v["payload"];
        assert_eq!(p["iss"], issuer.as_str(), "{v}");
        assert_eq!(p["aud"], CLIENT, "{v}");
        assert_eq!(p["sub"], user, "{v}");
        assert!(p.get("nonce").is_none(), "{v}");
        assert_eq!(p["events"], json!({ EVENT: {} }), "{v}");
        let (iat, exp) = (p["iat"].as_i64().unwrap(), p["exp"].as_i64().unwrap());
        assert!((s.clock_now() - iat).abs() <= 5, "{v}");
        assert!(exp > iat && exp - iat <= 300, "{v}");
        assert!(p["jti"].as_str().is_some_and(|j| j.len() >= 16), "{v}");
        sids.push(p["sid"].as_str().unwrap().to_string());
    }
    let mut jtis: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["payload"]["jti"].as_str().unwrap())
        .collect();
    jtis.sort();
    jtis.dedup();
    assert_eq!(
        jtis.len(),
        tokens.len(),
        "every logout token has its own jti"
    );
    sids.sort();
    sids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn start(receiver: &Receiver) -> TestServer {
    let uri = receiver.start().await;
    let port = free_port();
    let s = TestServer::start_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.issuer = Some(format!("http://127.0.0.1:{port}"));
    })
    .await;
    s.state()
        .store
        .create_client(Client {
            redirect_uris: vec![REDIRECT.into()],
            backchannel_logout_uri: Some(uri),
            ..Client::new(
                CLIENT,
                "Ledger",
                vec!["authorization_code".into(), "refresh_token".into()],
                false,
                s.clock_now(),
            )
        })
        .await
        .unwrap();
    s
}

/// A user with a browser signed in and two sessions of the client opened through it.
async fn user_with_two_sessions(s: &TestServer, name: &str) -> (String, Browser, Opened, Opened) {
    let reg = s.register(name).await;
    let id = reg["user"]["id"].as_str().unwrap().to_string();
    let mut browser = Browser::sign_in(&s.base, name).await;
    let a = browser.authorize().await;
    let b = browser.authorize().await;
    assert_ne!(a.sid, b.sid);
    (id, browser, a, b)
}

async fn refresh(s: &TestServer, token: &str) -> reqwest::Response {
    s.http
        .post(s.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", CLIENT),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_a_session_ends_posts_one_logout_token_per_session() {
    if !crate::oauth::interop::node_ready() {
        return;
    }
    let receiver = Receiver::default();
    let s = start(&receiver).await;

    // RP-initiated logout: the session the hint names ends, and the browser's
    // own with every application session opened from it (single logout): both
    // of the app's sessions here.
    let (uid, mut browser, a, b) = user_with_two_sessions(&s, "rplogout").await;
    let n = receiver.count();
    assert_eq!(n, 0, "opening sessions posts nothing");
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("id_token_hint", &a.id_token)
        .finish();
    let r = browser.get(&format!("/oauth/logout?{q}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = receiver.expect(n, 2, "RP-initiated logout").await;
    let mut sids = verified(&s, &got, &uid).await;
    sids.sort();
    let mut want = vec![a.sid.clone(), b.sid.clone()];
    want.sort();
    assert_eq!(sids, want);
    assert_eq!(
        refresh(&s, &b.refresh).await.status(),
        StatusCode::BAD_REQUEST
    );

    // Sign out everywhere, from a session of the JSON API.
    let (uid, _, a, b) = user_with_two_sessions(&s, "everywhere").await;
    let api = s.login("everywhere").await;
    let n = receiver.count();
    let r = s
        .http
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&api.access)
        .json(&json!({"scope": "global"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let got = receiver.expect(n, 2, "sign out everywhere").await;
    assert_eq!(verified(&s, &got, &uid).await, sorted(vec![a.sid, b.sid]));

    // Refresh-token reuse: the old token presented after the grace window.
    let (uid, _, a, b) = user_with_two_sessions(&s, "reuse").await;
    let n = receiver.count();
    assert_eq!(refresh(&s, &a.refresh).await.status(), StatusCode::OK);
    s.clock.advance(s.cfg.refresh_grace.as_i64() + 1);
    let r = refresh(&s, &a.refresh).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let got = receiver.expect(n, 1, "refresh-token reuse").await;
    assert_eq!(verified(&s, &got, &uid).await, vec![a.sid]);
    assert_eq!(refresh(&s, &b.refresh).await.status(), StatusCode::OK);

    // A password change ends every other session.
    let (uid, _, a, b) = user_with_two_sessions(&s, "changer").await;
    let api = s.login("changer").await;
    let n = receiver.count();
    let r = s
        .http
        .post(s.url("/v1/me/password"))
        .bearer_auth(&api.access)
        .json(&json!({"current_password": PASSWORD, "new_password": "a different long passphrase"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let got = receiver.expect(n, 2, "password change").await;
    assert_eq!(verified(&s, &got, &uid).await, sorted(vec![a.sid, b.sid]));

    // An operator revokes the user's sessions (what `tessera user revoke` calls).
    let (uid, _, a, b) = user_with_two_sessions(&s, "revoked").await;
    let n = receiver.count();
    let user = uid.parse().unwrap();
    let ended = s
        .state()
        .revoke_user_sessions(user, &tessera_app::Caller::operator())
        .await
        .unwrap();
    for sid in [&a.sid, &b.sid] {
        assert!(ended.iter().any(|e| e.to_string() == *sid), "{ended:?}");
    }
    let got = receiver.expect(n, 2, "operator revoke").await;
    assert_eq!(verified(&s, &got, &uid).await, sorted(vec![a.sid, b.sid]));

    // The user withdraws the app's access on the account page.
    let (uid, mut browser, a, b) = user_with_two_sessions(&s, "withdrawn").await;
    let n = receiver.count();
    let r = browser
        .post_form(
            "/account/apps/revoke",
            &[("client".to_string(), CLIENT.to_string())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let got = receiver.expect(n, 2, "consent withdrawal").await;
    assert_eq!(verified(&s, &got, &uid).await, sorted(vec![a.sid, b.sid]));
    for t in [&a.refresh, &b.refresh] {
        assert_eq!(refresh(&s, t).await.status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(receiver.count(), 11, "2 + 2 + 1 + 2 + 2 + 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_token_the_receiver_refused_is_retried_after_a_restart_and_arrives_once() {
    if !crate::oauth::interop::node_ready() {
        return;
    }
    let receiver = Receiver::default();
    let s = start(&receiver).await;
    let reg = s.register("durable").await;
    let uid = reg["user"]["id"].as_str().unwrap().to_string();
    let mut browser = Browser::sign_in(&s.base, "durable").await;
    let a = browser.authorize().await;

    // The receiver is down: the first attempt fails and a retry is scheduled.
    receiver.failing.store(true, Ordering::SeqCst);
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("id_token_hint", &a.id_token)
        .finish();
    assert_eq!(
        browser.get(&format!("/oauth/logout?{q}")).await.status(),
        StatusCode::OK
    );
    for _ in 0..100 {
        if receiver.attempts.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), 1);
    assert_eq!(receiver.count(), 0);

    // Tessera restarts; the receiver is back, but the retry is not due yet.
    let s = s.restart().await;
    receiver.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(
        receiver.attempts.load(Ordering::SeqCst),
        1,
        "retried too early"
    );

    // Past the retry delay (30 s after the first attempt): delivered, once.
    s.clock.advance(31);
    let got = receiver.expect(0, 1, "the retried token").await;
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), 2);
    assert_eq!(verified(&s, &got, &uid).await, vec![a.sid]);
    s.clock.advance(3_600);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(receiver.count(), 1, "delivered more than once");
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), 2);
}

//! The authorization-code flow over plain HTTP (RFC 6749 §4.1, RFC 7636, RFC 9700):
//! what the authorization endpoint refuses and how, codes bound to their client,
//! redirect URI and PKCE challenge, single use, expiry, consent, `prompt` and
//! `max_age`, ID tokens and userinfo by scope, and the discovery document. The
//! browser-driven flow with a real relying-party library is in `oidc_browser.rs`.

use crate::oauth::add_client;
use crate::support::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::{COOKIE, LOCATION, ORIGIN};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use tessera_core::Client;

const VERIFIER: &str = "a-verifier-of-enough-length-0123456789-abcdefghijkl";
const WEB_CB: &str = "https://app.example/callback";

fn challenge(verifier: &str) -> String {
    use aws_lc_rs::digest;
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// Registers a client for the code flow.
async fn code_client(
    s: &TestServer,
    id: &str,
    first_party: bool,
    redirect: &[&str],
    scopes: &[&str],
) -> Option<String> {
    let secret = add_client(
        s,
        id,
        false,
        &["authorization_code", "refresh_token"],
        first_party,
    )
    .await;
    let store = &s.state().store;
    let mut c = store.get_client(id).await.unwrap().unwrap();
    c.redirect_uris = redirect.iter().map(|r| r.to_string()).collect();
    c.scopes = scopes.iter().map(|r| r.to_string()).collect();
    c.post_logout_redirect_uris = vec!["https://app.example/bye".into()];
    assert!(store.update_client(c).await.unwrap());
    secret
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A browser signed in as `name`: the access cookie's header value.
async fn signed_in(s: &TestServer, name: &str) -> String {
    let t = s.user(name).await;
    format!("{}={}", s.state().cookies.access, t.access)
}

struct Authz<'a> {
    client_id: &'a str,
    redirect_uri: &'a str,
    extra: Vec<(&'a str, String)>,
}

impl<'a> Authz<'a> {
    fn new(client_id: &'a str, redirect_uri: &'a str) -> Self {
        Authz {
            client_id,
            redirect_uri,
            extra: vec![
                ("response_type", "code".into()),
                ("scope", "openid profile email".into()),
                ("state", "st-123".into()),
                ("nonce", "n-456".into()),
                ("code_challenge", challenge(VERIFIER)),
                ("code_challenge_method", "S256".into()),
            ],
        }
    }
    fn set(mut self, k: &'a str, v: &str) -> Self {
        self.extra.retain(|(n, _)| *n != k);
        self.extra.push((k, v.to_string()));
        self
    }
    fn without(mut self, k: &str) -> Self {
        self.extra.retain(|(n, _)| *n != k);
        self
    }
    fn query(&self) -> String {
        let mut q: Vec<(&str, &str)> = vec![
            ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri),
        ];
        q.extend(self.extra.iter().map(|(k, v)| (*k, v.as_str())));
        serde_urlencoded::to_string(&q).unwrap()
    }
    async fn get(&self, s: &TestServer, cookie: Option<&str>) -> Response {
        let mut r = no_redirects().get(s.url(&format!("/oauth/authorize?{}", self.query())));
        if let Some(c) = cookie {
            r = r.header(COOKIE, c);
        }
        r.send().await.unwrap()
    }
}

fn location(r: &Response) -> url::Url {
    let l = r
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location on {}", r.status()))
        .to_str()
        .unwrap();
    url::Url::parse(l)
        .or_else(|_| url::Url::parse(&format!("http://tessera.invalid{l}")))
        .unwrap()
}

fn param(u: &url::Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The endpoint answered with its own error page and sent the browser nowhere.
async fn error_page(r: Response) -> String {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(LOCATION).is_none(), "must not redirect");
    let body = r.text().await.unwrap();
    assert!(body.contains("<!doctype html>"), "{body}");
    body
}

/// The endpoint sent the browser back to `redirect` with `error`, `state` and `iss`.
fn error_back(r: &Response, redirect: &str, error: &str, s: &TestServer) {
    assert_eq!(r.status(), StatusCode::FOUND, "{:?}", r.headers());
    let to = location(r);
    assert!(to.as_str().starts_with(redirect), "{to}");
    assert_eq!(param(&to, "error").as_deref(), Some(error), "{to}");
    assert_eq!(param(&to, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&to, "iss"), Some(s.state().settings.issuer.clone()));
    assert!(param(&to, "code").is_none());
}

/// Runs the endpoint for a signed-in browser and returns the code.
async fn code_for(s: &TestServer, a: &Authz<'_>, cookie: &str) -> String {
    let r = a.get(s, Some(cookie)).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{}", r.text().await.unwrap());
    let to = location(&r);
    assert!(to.as_str().starts_with(a.redirect_uri), "{to}");
    assert_eq!(param(&to, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&to, "iss"), Some(s.state().settings.issuer.clone()));
    param(&to, "code").expect("a code")
}

async fn exchange(
    s: &TestServer,
    client_id: &str,
    code: &str,
    redirect: &str,
    verifier: Option<&str>,
) -> Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", code),
        ("redirect_uri", redirect),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    s.http
        .post(s.url("/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// A code for the client `web` at `WEB_CB`, exchanged: the token response.
async fn web_tokens(s: &TestServer, a: &Authz<'_>, cookie: &str) -> Value {
    let code = code_for(s, a, cookie).await;
    let r = exchange(s, "web", &code, WEB_CB, Some(VERIFIER)).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn claims(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let mut part = || {
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap())
            .unwrap()
    };
    (part(), part())
}

#[tokio::test]
async fn discovery_lists_the_code_flow_and_openid_connect() {
    let s = TestServer::start().await;
    let d = s.get_json("/.well-known/openid-configuration").await;
    let issuer = s.state().settings.issuer.clone();
    assert_eq!(
        d["authorization_endpoint"],
        format!("{issuer}/oauth/authorize")
    );
    assert_eq!(d["end_session_endpoint"], format!("{issuer}/oauth/logout"));
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert_eq!(d["backchannel_logout_supported"], true);
    for scope in ["openid", "profile", "email", "offline_access"] {
        assert!(
            d["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&scope.into())
        );
    }
    // The JWKS publishes the RS256 key next to the access tokens' key.
    let jwks = s.get_json("/.well-known/jwks.json").await;
    let algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    assert!(
        algs.contains(&"RS256") && algs.contains(&"EdDSA"),
        "{algs:?}"
    );
}

#[tokio::test]
async fn untrusted_clients_and_redirect_uris_get_an_error_page_never_a_redirect() {
    let s = TestServer::start().await;
    code_client(&s, "web", true, &[WEB_CB], &[]).await;
    let cookie = signed_in(&s, "ada").await;
    error_page(Authz::new("nobody", WEB_CB).get(&s, Some(&cookie)).await).await;
    error_page(Authz::new("", WEB_CB).get(&s, Some(&cookie)).await).await;
    for evil in [
        "https://evil.example/callback",
        "https://app.example/callback/",
        "https://app.example/callback?x=1",
        "https://app.example/callback#frag",
        "https://app.example/callback/../evil",
        "https://app.example.evil.example/callback",
        "https://app.example:8443/callback",
        "http://app.example/callback",
        "//evil.example/callback",
        "javascript:alert(1)",
        "",
    ] {
        let body = error_page(Authz::new("web", evil).get(&s, Some(&cookie)).await).await;
        assert!(!body.contains("evil.example"), "{evil} echoed: {body}");
    }
    // A repeated parameter is refused the same way.
    let q = format!("{}&client_id=web", Authz::new("web", WEB_CB).query());
    let r = no_redirects()
        .get(s.url(&format!("/oauth/authorize?{q}")))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    error_page(r).await;
    // A client without the code grant goes back with unauthorized_client.
    add_client(&s, "backend", true, &["refresh_token"], true).await;
    let store = &s.state().store;
    let mut c: Client = store.get_client("backend").await.unwrap().unwrap();
    c.redirect_uris = vec![WEB_CB.into()];
    store.update_client(c).await.unwrap();
    let r = Authz::new("backend", WEB_CB).get(&s, Some(&cookie)).await;
    error_back(&r, WEB_CB, "unauthorized_client", &s);
}

#[tokio::test]
async fn faulty_requests_go_back_to_the_client_with_the_error() {
    let s = TestServer::start().await;
    code_client(&s, "web", false, &[WEB_CB], &["openid", "profile", "email"]).await;
    let cookie = signed_in(&s, "ada").await;
    let a = || Authz::new("web", WEB_CB);
    let cases = [
        (
            a().set("response_type", "token"),
            "unsupported_response_type",
        ),
        (a().without("response_type"), "invalid_request"),
        (a().set("scope", "openid admin"), "invalid_scope"),
        (a().set("scope", "openid offline_access"), "invalid_scope"),
        (a().without("code_challenge"), "invalid_request"),
        (a().set("code_challenge_method", "plain"), "invalid_request"),
        (a().without("code_challenge_method"), "invalid_request"),
        (a().set("code_challenge", "too-short"), "invalid_request"),
        (a().set("prompt", "none login"), "invalid_request"),
        (a().set("max_age", "-1"), "invalid_request"),
        (a().set("request", "eyJ..."), "request_not_supported"),
        (a().set("response_mode", "fragment"), "invalid_request"),
    ];
    for (req, error) in cases {
        let r = req.get(&s, Some(&cookie)).await;
        error_back(&r, WEB_CB, error, &s);
    }
}

#[tokio::test]
async fn a_code_is_bound_to_its_client_redirect_uri_and_verifier_and_used_once() {
    code_rules(TestServer::start().await).await;
}

#[tokio::test]
async fn a_code_is_bound_and_used_once_on_postgres() {
    if let Some(s) = TestServer::start_pg().await {
        code_rules(s).await;
    }
}

async fn code_rules(s: TestServer) {
    code_client(&s, "web", true, &[WEB_CB, "https://app.example/other"], &[]).await;
    code_client(&s, "other", true, &[WEB_CB], &[]).await;
    let cookie = signed_in(&s, "ada").await;
    let a = Authz::new("web", WEB_CB);

    // Each fault burns the code: a code is taken by its first presentation.
    let faults: [(&str, &str, Option<&str>); 5] = [
        ("web", WEB_CB, None),
        (
            "web",
            WEB_CB,
            Some("the-wrong-verifier-0123456789-0123456789-abcdefgh"),
        ),
        ("web", "https://app.example/other", Some(VERIFIER)),
        ("other", WEB_CB, Some(VERIFIER)),
        ("web", WEB_CB, Some("short")),
    ];
    for (client, redirect, verifier) in faults {
        let code = code_for(&s, &a, &cookie).await;
        let r = exchange(&s, client, &code, redirect, verifier).await;
        expect_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }

    // Expired: a code lives 60 seconds.
    let code = code_for(&s, &a, &cookie).await;
    s.clock.advance(61);
    let r = exchange(&s, "web", &code, WEB_CB, Some(VERIFIER)).await;
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // A good exchange, then the same code again: refused, and what the first
    // exchange issued is revoked.
    let code = code_for(&s, &a, &cookie).await;
    let r = exchange(&s, "web", &code, WEB_CB, Some(VERIFIER)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    let access = t["access_token"].as_str().unwrap().to_string();
    let refresh = t["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(s.me_status(&access).await, StatusCode::OK);
    let r = exchange(&s, "web", &code, WEB_CB, Some(VERIFIER)).await;
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(s.me_status(&access).await, StatusCode::UNAUTHORIZED);
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "web"),
            ("refresh_token", &refresh),
        ])
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // A code unknown to the server, and a mailed-link token presented as a code.
    let r = exchange(&s, "web", "made-up", WEB_CB, Some(VERIFIER)).await;
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn id_tokens_and_userinfo_follow_the_scopes() {
    let s = TestServer::start().await;
    code_client(&s, "web", true, &[WEB_CB], &[]).await;
    let cookie = signed_in(&s, "ada").await;
    let signed_in_at = s.clock_now();
    s.clock.advance(5);
    let t = web_tokens(&s, &Authz::new("web", WEB_CB), &cookie).await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "openid profile email");
    let (header, c) = claims(t["id_token"].as_str().unwrap());
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(c["iss"], s.state().settings.issuer.as_str());
    assert_eq!(c["aud"], "web");
    assert_eq!(c["nonce"], "n-456");
    assert_eq!(c["auth_time"], signed_in_at);
    assert_eq!(c["amr"], serde_json::json!(["pwd"]));
    assert_eq!(c["preferred_username"], "ada");
    assert_eq!(c["email_verified"], false);
    // at_hash is the left half of the access token's SHA-256.
    let access = t["access_token"].as_str().unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
    assert_eq!(c["at_hash"], URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]));
    // The ID token is not an access token.
    let id = t["id_token"].as_str().unwrap();
    assert_eq!(s.me_status(id).await, StatusCode::UNAUTHORIZED);
    let (_, ac) = claims(access);
    assert_eq!(ac["sid"], c["sid"]);
    assert_eq!(ac["scope"], "openid profile email");

    // userinfo by scope: only openid and email.
    let a = Authz::new("web", WEB_CB).set("scope", "openid email");
    let t = web_tokens(&s, &a, &cookie).await;
    let info: Value = s
        .get_auth("/oauth/userinfo", t["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert!(info["sub"].is_string());
    assert_eq!(info["email"], "ada@example.com");
    assert!(info.get("preferred_username").is_none(), "{info}");
    let (_, c) = claims(t["id_token"].as_str().unwrap());
    assert!(c.get("preferred_username").is_none() && c["email"].is_string());

    // Refreshing within the scope granted works; asking for more does not.
    let refresh = |scope: &'static str, token: String| {
        let s = &s;
        async move {
            s.http
                .post(s.url("/oauth/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", "web"),
                    ("refresh_token", &token),
                    ("scope", scope),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let r = refresh("openid profile", rt.clone()).await;
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_scope").await;
    let r = refresh("email", rt).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn third_party_clients_ask_consent_once_and_need_offline_access_for_refresh() {
    let s = TestServer::start().await;
    code_client(&s, "partner", false, &[WEB_CB], &[]).await;
    let cookie = signed_in(&s, "ada").await;
    let a = Authz::new("partner", WEB_CB);
    // prompt=none cannot show the consent page.
    let r = Authz::new("partner", WEB_CB)
        .set("prompt", "none")
        .get(&s, Some(&cookie))
        .await;
    error_back(&r, WEB_CB, "consent_required", &s);
    // The consent page names the client and what it asks for.
    let r = a.get(&s, Some(&cookie)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("Allow access?") && page.contains("See your email address"));
    let consent = |decision: &'static str| {
        let mut form: Vec<(String, String)> = serde_urlencoded::from_str(&a.query()).unwrap();
        form.push(("decision".into(), decision.into()));
        no_redirects()
            .post(s.url("/oauth/authorize"))
            .header(COOKIE, &cookie)
            .header(ORIGIN, s.state().settings.issuer.as_str())
            .form(&form)
            .send()
    };
    // From another site: refused.
    let mut form: Vec<(String, String)> = serde_urlencoded::from_str(&a.query()).unwrap();
    form.push(("decision".into(), "allow".into()));
    let r = no_redirects()
        .post(s.url("/oauth/authorize"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = consent("deny").await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        param(&location(&r), "error").as_deref(),
        Some("access_denied")
    );
    let r = consent("allow").await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let code = param(&location(&r), "code").unwrap();
    let t: Value = exchange(&s, "partner", &code, WEB_CB, Some(VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    assert!(t["access_token"].is_string());
    assert!(t.get("refresh_token").is_none(), "no offline_access: {t}");
    // Remembered: the next authorization skips the page.
    code_for(&s, &a, &cookie).await;
    // More scope asks again.
    let wider = Authz::new("partner", WEB_CB).set("scope", "openid offline_access");
    assert_eq!(wider.get(&s, Some(&cookie)).await.status(), StatusCode::OK);
    // The account lists the consent; withdrawing it ends the client's sessions.
    let (_, ac) = claims(t["access_token"].as_str().unwrap());
    let user: uuid::Uuid = ac["sub"].as_str().unwrap().parse().unwrap();
    let grants = s.state().list_grants(user).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].0.scope, "openid profile email");
    let access = t["access_token"].as_str().unwrap();
    let userinfo = |access: &str| {
        let (s, access) = (&s, access.to_string());
        async move { s.get_auth("/oauth/userinfo", &access).await.status() }
    };
    assert_eq!(userinfo(access).await, StatusCode::OK);
    s.state()
        .revoke_grant(user, "partner", &tessera_app::Caller::operator())
        .await
        .unwrap();
    assert_eq!(userinfo(access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.get(&s, Some(&cookie)).await.status(),
        StatusCode::OK,
        "asks again"
    );
}

#[tokio::test]
async fn prompt_and_max_age_send_the_browser_to_sign_in() {
    let s = TestServer::start().await;
    code_client(&s, "web", true, &[WEB_CB, "http://127.0.0.1/cb"], &[]).await;
    let cookie = signed_in(&s, "ada").await;
    // Signed out: prompt=none tries the refresh cookie once through
    // /v1/auth/resume, which comes back marked; without a session the client
    // gets login_required, and no page asks anything.
    let silent = Authz::new("web", WEB_CB).set("prompt", "none");
    // In a frame nothing can show: the answer comes at once.
    let r = no_redirects()
        .get(s.url(&format!("/oauth/authorize?{}", silent.query())))
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    error_back(&r, WEB_CB, "login_required", &s);
    let r = silent.get(&s, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let refresh = r.headers()["refresh"].to_str().unwrap().to_string();
    let resume = refresh.strip_prefix("0;url=").unwrap().to_string();
    let r = no_redirects().get(s.url(&resume)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(
        back.starts_with("/oauth/authorize?") && back.contains("tessera_resumed=1"),
        "{back}"
    );
    let r = no_redirects().get(s.url(&back)).send().await.unwrap();
    error_back(&r, WEB_CB, "login_required", &s);
    let r = Authz::new("web", WEB_CB).get(&s, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let refresh = r.headers()["refresh"].to_str().unwrap().to_string();
    assert!(
        refresh.starts_with("0;url=/v1/auth/resume?return_to=%2Foauth%2Fauthorize%3F"),
        "{refresh}"
    );
    // Signed in, but prompt=login or a max_age that has passed: sign in again,
    // then come back without them.
    s.clock.advance(30);
    for a in [
        Authz::new("web", WEB_CB).set("prompt", "login"),
        Authz::new("web", WEB_CB).set("max_age", "10"),
    ] {
        let r = a.get(&s, Some(&cookie)).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = location(&r);
        assert_eq!(to.path(), "/signin");
        let back = param(&to, "return_to").unwrap();
        assert!(back.starts_with("/oauth/authorize?"), "{back}");
        assert!(back.contains("tessera_login_after="), "{back}");
        // The same browser coming back without signing in: sign in again, so
        // the address cannot be reused to skip the sign-in.
        let again = no_redirects()
            .get(s.url(&back))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&again).path(), "/signin");
        // A sign-in made since: the code.
        s.clock.advance(1);
        let fresh = format!(
            "{}={}",
            s.state().cookies.access,
            s.login("ada").await.access
        );
        let r = no_redirects()
            .get(s.url(&back))
            .header(COOKIE, &fresh)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        assert!(param(&location(&r), "code").is_some());
    }
    // A max_age not yet passed needs nothing.
    code_for(
        &s,
        &Authz::new("web", WEB_CB).set("max_age", "3600"),
        &cookie,
    )
    .await;
    // A native app's loopback redirect URI may use any port.
    let native = Authz::new("web", "http://127.0.0.1:61234/cb");
    code_for(&s, &native, &cookie).await;
}

#[tokio::test]
async fn authlib_validates_the_discovery_documents_and_an_id_token() {
    if !crate::oauth::interop::python_ready() {
        return;
    }
    let issuer = "https://id.example.com";
    let s = TestServer::start_with(|c| c.issuer = Some(issuer.into())).await;
    code_client(&s, "web", true, &[WEB_CB], &[]).await;
    let cookie = signed_in(&s, "ada").await;
    let t = web_tokens(&s, &Authz::new("web", WEB_CB), &cookie).await;
    crate::oauth::interop::run(
        crate::oauth::interop::python(),
        [
            "validate_oidc.py",
            &s.base,
            issuer,
            t["id_token"].as_str().unwrap(),
            "web",
            "n-456",
            t["access_token"].as_str().unwrap(),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
    )
    .await;
}

#[tokio::test]
async fn a_registered_single_page_app_origin_gets_cors_on_the_oauth_endpoints_only() {
    let s = TestServer::start().await;
    code_client(&s, "spa", true, &["https://spa.example/cb"], &[]).await;
    let store = &s.state().store;
    let mut c = store.get_client("spa").await.unwrap().unwrap();
    c.allowed_origins = vec!["https://spa.example".into()];
    store.update_client(c).await.unwrap();
    let preflight = |path: &'static str, origin: &'static str| {
        s.http
            .request(reqwest::Method::OPTIONS, s.url(path))
            .header(ORIGIN, origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = preflight("/oauth/token", "https://spa.example")
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://spa.example"
    );
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none(),
        "an app's origin never gets cookies"
    );
    for (path, origin) in [
        ("/oauth/token", "https://evil.example"),
        ("/v1/me", "https://spa.example"),
        ("/v1/auth/refresh", "https://spa.example"),
    ] {
        let r = preflight(path, origin).await.unwrap();
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{path} from {origin}"
        );
    }
    let r = s
        .http
        .get(s.url("/.well-known/jwks.json"))
        .header(ORIGIN, "https://spa.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://spa.example"
    );
}

#[tokio::test]
async fn rp_initiated_logout_redirects_only_to_registered_addresses() {
    let s = TestServer::start().await;
    code_client(&s, "web", true, &[WEB_CB], &[]).await;
    let cookie = signed_in(&s, "ada").await;
    let t = web_tokens(&s, &Authz::new("web", WEB_CB), &cookie).await;
    let hint = t["id_token"].as_str().unwrap().to_string();
    let logout = |q: Vec<(&'static str, String)>| {
        let url = s.url(&format!(
            "/oauth/logout?{}",
            serde_urlencoded::to_string(&q).unwrap()
        ));
        no_redirects().get(url).header(COOKIE, &cookie).send()
    };
    // Without a hint the user is asked first.
    let r = logout(vec![("state", "s".into())]).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Sign out?"));
    // A hint of another user: asked first too (anyone can send a browser to
    // this address with a hint of their own).
    let other_cookie = signed_in(&s, "bob").await;
    let r = no_redirects()
        .get(s.url(&format!(
            "/oauth/logout?{}",
            serde_urlencoded::to_string([("id_token_hint", hint.as_str())]).unwrap()
        )))
        .header(COOKIE, &other_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Sign out?"));
    let bob_access = other_cookie.split_once('=').unwrap().1;
    assert_eq!(
        s.me_status(bob_access).await,
        StatusCode::OK,
        "bob is still in"
    );
    // Not registered, a forged hint, or a redirect without a client: an error
    // page, never a redirect; nothing ends.
    for q in [
        vec![
            ("id_token_hint", hint.clone()),
            (
                "post_logout_redirect_uri",
                "https://evil.example/".to_string(),
            ),
        ],
        vec![
            ("id_token_hint", format!("{hint}x")),
            (
                "post_logout_redirect_uri",
                "https://app.example/bye".to_string(),
            ),
        ],
        vec![(
            "post_logout_redirect_uri",
            "https://app.example/bye".to_string(),
        )],
    ] {
        error_page(logout(q).await.unwrap()).await;
    }
    assert_eq!(
        s.me_status(t["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
    // A relying party posting from its own site without a hint: the user is
    // asked, and the answer may go on to the app.
    let r = no_redirects()
        .post(s.url("/oauth/logout"))
        .header(ORIGIN, "https://app.example")
        .form(&[("client_id", "web"), ("state", "bye-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        !csp.contains("form-action"),
        "the answer may go on to the app: {csp}"
    );
    // The registered address, with state: the session of the hint has ended.
    let r = logout(vec![
        ("id_token_hint", hint.clone()),
        ("post_logout_redirect_uri", "https://app.example/bye".into()),
        ("state", "bye-2".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[LOCATION].to_str().unwrap(),
        "https://app.example/bye?state=bye-2"
    );
    let cleared = r
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .any(|c| c.to_str().unwrap().contains("Max-Age=0"));
    assert!(cleared, "the browser's cookies are cleared");
    assert_eq!(
        s.me_status(t["access_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_third_party_token_reads_userinfo_and_nothing_of_the_account() {
    let s = TestServer::start().await;
    code_client(&s, "partner", false, &[WEB_CB], &[]).await;
    code_client(&s, "web", true, &[WEB_CB], &[]).await;
    let cookie = signed_in(&s, "ada").await;
    // Consent once, then a code for the third party.
    let a = Authz::new("partner", WEB_CB).set("scope", "openid");
    let mut form: Vec<(String, String)> = serde_urlencoded::from_str(&a.query()).unwrap();
    form.push(("decision".into(), "allow".into()));
    let r = no_redirects()
        .post(s.url("/oauth/authorize"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, s.state().settings.issuer.as_str())
        .form(&form)
        .send()
        .await
        .unwrap();
    let code = param(&location(&r), "code").unwrap();
    let t: Value = exchange(&s, "partner", &code, WEB_CB, Some(VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    let access = t["access_token"].as_str().unwrap();
    // Its access token carries no profile claims the scopes do not allow.
    let (_, ac) = claims(access);
    assert_eq!(ac["scope"], "openid");
    for claim in ["email", "email_verified", "username", "fullname"] {
        assert!(ac.get(claim).is_none(), "{claim} in {ac}");
    }
    let info = s.get_auth("/oauth/userinfo", access).await;
    assert_eq!(info.status(), StatusCode::OK);
    let info: Value = info.json().await.unwrap();
    assert!(info.get("email").is_none(), "no email scope: {info}");
    // The account API refuses it, whatever it asks.
    assert_eq!(s.me_status(access).await, StatusCode::FORBIDDEN);
    for (method, path, body) in [
        (
            "POST",
            "/v1/me/email",
            serde_json::json!({"email": "mallory@example.com"}),
        ),
        (
            "PATCH",
            "/v1/me",
            serde_json::json!({"username": "mallory"}),
        ),
        (
            "POST",
            "/v1/auth/logout",
            serde_json::json!({"scope": "global"}),
        ),
    ] {
        let r = s
            .http
            .request(method.parse().unwrap(), s.url(path))
            .bearer_auth(access)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    let r = s.get_auth("/v1/me/sessions", access).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A first-party application's token is the user's own.
    let first = web_tokens(&s, &Authz::new("web", WEB_CB), &cookie).await;
    assert_eq!(
        s.me_status(first["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn signing_the_browser_out_ends_the_application_sessions_opened_from_it() {
    single_logout(TestServer::start().await).await;
}

#[tokio::test]
async fn single_logout_on_postgres() {
    if let Some(s) = TestServer::start_pg().await {
        single_logout(s).await;
    }
}

async fn single_logout(s: TestServer) {
    code_client(&s, "web", true, &[WEB_CB], &[]).await;
    let browser = s.user("ada").await;
    let cookie = format!("{}={}", s.state().cookies.access, browser.access);
    let app = web_tokens(&s, &Authz::new("web", WEB_CB), &cookie).await;
    let app_access = app["access_token"].as_str().unwrap().to_string();
    // A code issued before the browser signed out gives nothing after.
    let pending = code_for(&s, &Authz::new("web", WEB_CB), &cookie).await;
    // Another browser of the same user is not touched.
    let other = s.login("ada").await;
    let other_cookie = format!("{}={}", s.state().cookies.access, other.access);
    let other_app = web_tokens(&s, &Authz::new("web", WEB_CB), &other_cookie).await;
    assert_eq!(s.me_status(&app_access).await, StatusCode::OK);
    let r = s
        .http
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&browser.access)
        .json(&serde_json::json!({"scope": "local"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.me_status(&app_access).await, StatusCode::UNAUTHORIZED);
    let r = exchange(&s, "web", &pending, WEB_CB, Some(VERIFIER)).await;
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(
        s.me_status(other_app["access_token"].as_str().unwrap())
            .await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_confidential_client_binds_its_code_with_pkce_or_a_nonce() {
    let s = TestServer::start().await;
    let secret = add_client(
        &s,
        "backend",
        true,
        &["authorization_code", "refresh_token"],
        true,
    )
    .await
    .unwrap();
    let store = &s.state().store;
    let mut c = store.get_client("backend").await.unwrap().unwrap();
    c.redirect_uris = vec![WEB_CB.into()];
    store.update_client(c).await.unwrap();
    let cookie = signed_in(&s, "ada").await;
    let bare = || {
        Authz::new("backend", WEB_CB)
            .without("code_challenge")
            .without("code_challenge_method")
    };
    // Neither PKCE nor a nonce: nothing binds the code to this browser.
    let r = bare().without("nonce").get(&s, Some(&cookie)).await;
    error_back(&r, WEB_CB, "invalid_request", &s);
    let r = bare().set("scope", "email").get(&s, Some(&cookie)).await;
    error_back(&r, WEB_CB, "invalid_request", &s);
    // OpenID Connect with a nonce: a code, exchanged with the secret alone.
    let code = code_for(&s, &bare(), &cookie).await;
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .basic_auth("backend", Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", WEB_CB),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    assert_eq!(claims(t["id_token"].as_str().unwrap()).1["nonce"], "n-456");
    // Without the secret the same exchange is refused.
    let code = code_for(&s, &bare(), &cookie).await;
    let r = exchange(&s, "backend", &code, WEB_CB, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

//! A real OpenID Connect relying party (Node's `openid-client`, in
//! `tests/interop/oidc_rp.mjs`) signs a person in through Tessera in headless
//! Chromium: discovery, the code flow with PKCE S256, state and nonce, the sign-in
//! and consent pages (denied once, then allowed), the code exchange with the ID
//! token checked against the published keys, userinfo, a refresh, a second
//! authorization that needs neither page, and RP-initiated logout back to the
//! app. Screenshots of the sign-in, consent and post-logout pages go to
//! `target/screenshots/oidc-*.png`.

use crate::browser::{browser_ready, run_node};
use crate::support::*;
use serde_json::Value;
use std::path::PathBuf;
use tessera_core::Client;
use uuid::Uuid;

const CLIENT: &str = "notes-app";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relying_party_signs_a_person_in_and_out_with_the_code_flow_in_a_browser() {
    if !browser_ready() {
        return;
    }
    let port = free_port();
    let issuer = format!("http://localhost:{port}");
    let s = TestServer::start_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.issuer = Some(issuer.clone());
    })
    .await;
    let rp_port = free_port();
    let app = format!("http://127.0.0.1:{rp_port}");
    s.state()
        .store
        .create_client(Client {
            redirect_uris: vec![format!("{app}/callback")],
            post_logout_redirect_uris: vec![format!("{app}/signed-out")],
            ..Client::new(
                CLIENT,
                "Notes",
                vec!["authorization_code".into(), "refresh_token".into()],
                false,
                s.clock_now(),
            )
        })
        .await
        .unwrap();
    let reg = s.register("ada").await;
    let user_id = reg["user"]["id"].as_str().unwrap().to_string();

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let seen = run_node(vec![
        "oidc_rp.mjs".into(),
        issuer.clone(),
        CLIENT.into(),
        rp_port.to_string(),
        "ada".into(),
        PASSWORD.into(),
        shots.display().to_string(),
    ])
    .await;
    let shown = serde_json::to_string_pretty(&seen).unwrap();
    let path = |url: &Value| -> String {
        url::Url::parse(url.as_str().unwrap_or_else(|| panic!("{url}: {shown}")))
            .unwrap()
            .path()
            .to_string()
    };
    let paths =
        |urls: &Value| -> Vec<String> { urls.as_array().unwrap().iter().map(path).collect() };

    assert_eq!(seen["discovery"]["issuer"], issuer.as_str(), "{shown}");

    // Signed out: the authorization endpoint sends the browser to the sign-in page.
    let signin = &seen["signin"];
    assert_eq!(signin["heading"], "Sign in", "{shown}");
    let went = paths(&signin["visited"]);
    assert_eq!(went.first().map(String::as_str), Some("/login"), "{shown}");
    assert!(went.iter().any(|p| p == "/oauth/authorize"), "{shown}");
    assert_eq!(went.last().map(String::as_str), Some("/signin"), "{shown}");

    // Signed in: the consent page names the app, the account and every scope.
    let consent = &seen["consent"];
    assert_eq!(path(&consent["url"]), "/oauth/authorize", "{shown}");
    assert_eq!(consent["heading"], "Allow access?", "{shown}");
    let text = consent["text"].as_str().unwrap();
    for line in [
        "Notes wants to access your account ada",
        "Know who you are",
        "See your name and username",
        "See your email address",
        "Stay connected to your account",
    ] {
        assert!(text.contains(line), "{line}: {shown}");
    }
    let buttons: Vec<&str> = consent["buttons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["value"].as_str().unwrap())
        .collect();
    assert_eq!(buttons, ["allow", "deny"], "{shown}");

    // Denied: back at the app with access_denied, the request's state and the
    // issuer, and no code; asked again, the consent page comes back at once.
    let denied = &seen["denied"];
    assert_eq!(denied["status"], 200, "{shown}");
    assert_eq!(
        paths(&denied["chain"]),
        ["/oauth/authorize", "/callback"],
        "{shown}"
    );
    assert_eq!(
        denied["refusals"],
        serde_json::json!([{"error": "access_denied", "stateMatches": true, "iss": issuer, "code": null}]),
        "{shown}"
    );
    let again = &seen["consentAgain"];
    assert_eq!(again["heading"], "Allow access?", "{shown}");
    assert_eq!(
        paths(&again["visited"]),
        ["/login", "/oauth/authorize"],
        "{shown}"
    );

    // Allowed: straight back to the app's callback with a code, state and iss.
    let back = &seen["callback"];
    assert_eq!(back["status"], 200, "{shown}");
    assert_eq!(back["heading"], "Welcome back", "{shown}");
    let hops = paths(&back["chain"]);
    assert_eq!(hops, ["/oauth/authorize", "/callback"], "{shown}");
    let sign_ins = seen["signIns"].as_array().unwrap();
    assert_eq!(sign_ins.len(), 2, "{shown}");
    let first = &sign_ins[0];
    assert_eq!(first["query"]["iss"], issuer.as_str(), "{shown}");
    assert!(first["query"]["code"].as_str().is_some(), "{shown}");
    assert!(first["query"]["state"].as_str().is_some(), "{shown}");

    // The token response: an ID token, a refresh token (offline_access), the scopes.
    let tr = &first["tokenResponse"];
    assert_eq!(tr["token_type"], "bearer", "{shown}");
    assert_eq!(tr["expires_in"], 900, "{shown}");
    assert_eq!(
        tr["scope"], "openid profile email offline_access",
        "{shown}"
    );
    assert_eq!(tr["hasRefreshToken"], true, "{shown}");
    for key in ["access_token", "id_token", "refresh_token"] {
        assert!(
            tr["keys"].as_array().unwrap().iter().any(|k| k == key),
            "{key}: {shown}"
        );
    }

    // The ID token, verified by openid-client and by jose against the JWKS.
    assert_eq!(first["idTokenHeader"]["alg"], "RS256", "{shown}");
    assert_eq!(first["idTokenHeader"]["typ"], "JWT", "{shown}");
    assert!(first["idTokenHeader"]["kid"].as_str().is_some(), "{shown}");
    assert_eq!(first["atHashMatches"], true, "{shown}");
    assert_eq!(first["nonceMatches"], true, "{shown}");
    let claims = &first["claims"];
    assert_eq!(claims["iss"], issuer.as_str(), "{shown}");
    assert_eq!(claims["aud"], CLIENT, "{shown}");
    assert_eq!(claims["sub"], user_id.as_str(), "{shown}");
    assert_eq!(claims["email"], "ada@example.com", "{shown}");
    assert_eq!(claims["email_verified"], false, "{shown}");
    assert_eq!(claims["preferred_username"], "ada", "{shown}");
    assert_eq!(claims["name"], "Test User", "{shown}");
    let auth_time = claims["auth_time"].as_i64().unwrap();
    assert!(auth_time <= claims["iat"].as_i64().unwrap(), "{shown}");
    assert!((s.clock_now() - auth_time).abs() < 60, "{shown}");
    let sid = Uuid::parse_str(claims["sid"].as_str().unwrap()).unwrap();
    let (session, _) = s.state().store.get_session(sid).await.unwrap().unwrap();
    assert_eq!(session.client_id, CLIENT);
    assert_eq!(session.user_id.to_string(), user_id);

    // Userinfo by scope: everything these scopes allow, nothing else.
    let info = &first["userinfo"];
    let mut keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "email",
            "email_verified",
            "name",
            "preferred_username",
            "sub"
        ],
        "{shown}"
    );
    assert_eq!(info["sub"], user_id.as_str(), "{shown}");
    assert_eq!(info["email_verified"], false, "{shown}");

    // The refresh: new tokens, the same scopes, userinfo still answers.
    let refresh = &seen["refresh"];
    assert_eq!(refresh["newRefreshToken"], true, "{shown}");
    assert_eq!(refresh["newAccessToken"], true, "{shown}");
    assert_eq!(
        refresh["scope"], "openid profile email offline_access",
        "{shown}"
    );
    assert_eq!(refresh["userinfo"]["sub"], user_id.as_str(), "{shown}");

    // The second authorization: neither the sign-in page nor the consent page.
    let second_nav = &seen["second"];
    assert_eq!(second_nav["status"], 200, "{shown}");
    assert_eq!(
        paths(&second_nav["visited"]),
        ["/login", "/oauth/authorize", "/callback"],
        "{shown}"
    );
    let second = &sign_ins[1];
    let claims2 = &second["claims"];
    assert_eq!(claims2["sub"], user_id.as_str(), "{shown}");
    assert_eq!(claims2["auth_time"], auth_time, "{shown}");
    assert_ne!(claims2["sid"], claims["sid"], "{shown}");
    assert_ne!(claims2["nonce"], claims["nonce"], "{shown}");
    assert_eq!(second["nonceMatches"], true, "{shown}");
    assert_eq!(second["atHashMatches"], true, "{shown}");

    // The account page lists the app with what it may see, and a way to remove it.
    let apps = seen["accountApps"]["text"].as_str().unwrap_or_default();
    assert!(
        apps.contains("Connected apps")
            && apps.contains("Notes")
            && apps.contains("openid profile email offline_access")
            && apps.contains("Remove access"),
        "{shown}"
    );
    // The app's sessions show the browser that signed in, and the app.
    assert!(apps.contains("Notes · Headless Chrome"), "{shown}");
    assert!(!apps.contains("openid-client"), "{shown}");

    // RP-initiated logout: back at the app's post-logout page with the same state;
    // the logged-out session's refresh token is refused; the browser is signed out.
    let logout = &seen["logout"];
    assert_eq!(logout["status"], 200, "{shown}");
    assert_eq!(path(&logout["url"]), "/signed-out", "{shown}");
    let hops = paths(&logout["visited"]);
    assert_eq!(hops, ["/logout", "/oauth/logout", "/signed-out"], "{shown}");
    assert_eq!(logout["received"].as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(
        logout["received"][0]["state"], logout["sentState"],
        "{shown}"
    );
    assert!(logout["sentState"].as_str().is_some(), "{shown}");
    assert_eq!(logout["refreshAfter"], "invalid_grant", "{shown}");
    let sid2 = Uuid::parse_str(claims2["sid"].as_str().unwrap()).unwrap();
    let (ended, _) = s.state().store.get_session(sid2).await.unwrap().unwrap();
    assert!(ended.revoked_at.is_some(), "{shown}");
    assert_eq!(seen["afterLogout"]["path"], "/signin", "{shown}");

    for png in ["oidc-signin.png", "oidc-consent.png", "oidc-signed-out.png"] {
        let size = std::fs::metadata(shots.join(png)).unwrap().len();
        assert!(size > 1000, "{png}: {size} bytes");
    }
    println!("{shown}");
}

//! A real browser against CORS and the cookies: headless Chromium (Debian's
//! `chromium`), driven by `playwright-core` (`tests/interop/browser_cors.mjs`), opens
//! `tests/interop/spa.html` from a trusted origin and from another one, both on
//! `localhost` like a development set-up (app on one port, Tessera on another).
//! Screenshots of both pages go to `target/screenshots/`.
//!
//! Without Chromium or the npm packages the test says loudly that it skipped and
//! passes, unless `TESSERA_REQUIRE_INTEROP=1` (as in `.ci/run`) makes that a failure.

use crate::support::*;
use axum::response::Html;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium, Node and playwright-core, or a loud skip (a failure when required).
pub(crate) fn browser_ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let playwright = interop_dir()
        .join("node_modules/playwright-core/package.json")
        .exists();
    if node && playwright && Path::new(CHROMIUM).exists() {
        return true;
    }
    let how = "install them as .ci/run does: `apt-get install -y chromium` and `npm ci` in \
               tests/interop";
    let what =
        "Chromium (/usr/bin/chromium), Node.js and playwright-core (tests/interop/node_modules)";
    if std::env::var("TESSERA_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("TESSERA_REQUIRE_INTEROP=1 but not installed: {what}; {how}");
    }
    use std::io::Write;
    let bar = "!".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!! BROWSER TEST SKIPPED, not installed: {what}\n!! {how}\n{bar}\n"
    );
    false
}

/// Serves the test page on a port of its own; returns the page's URL on `localhost`.
async fn serve_page() -> String {
    let page = std::fs::read_to_string(interop_dir().join("spa.html")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(move || {
        let page = page.clone();
        async move { Html(page) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://localhost:{port}/")
}

fn call<'a>(calls: &'a Value, name: &str) -> &'a Value {
    calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no call {name}: {calls}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_a_trusted_origin_signs_in_and_other_origins_are_blocked() {
    if !browser_ready() {
        return;
    }
    let trusted_page = serve_page().await;
    let other_page = serve_page().await;
    let app_origin = trusted_page.trim_end_matches('/').to_string();
    // Tessera on its own port of localhost, its issuer the address the page calls.
    let port = free_port();
    let api = format!("http://localhost:{port}");
    let s = TestServer::start_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.issuer = Some(api.clone());
        c.trusted_origins = Some(app_origin.clone());
    })
    .await;
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let args = vec![
        "browser_cors.mjs".to_string(),
        api.clone(),
        trusted_page.clone(),
        other_page.clone(),
        shots.display().to_string(),
    ];
    let seen = run_node(args).await;
    let shown = serde_json::to_string_pretty(&seen).unwrap();

    // The trusted app: every call answered and readable, cookies doing the work.
    let trusted = &seen["trusted"];
    assert_eq!(call(trusted, "register")["status"], 201, "{shown}");
    let login = call(trusted, "login (cookies)");
    assert_eq!(login["status"], 200, "{shown}");
    assert!(login["body"].get("access_token").is_none(), "{shown}");
    assert!(login["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    let me = call(trusted, "me (cookie)");
    assert_eq!(me["status"], 200, "{shown}");
    assert_eq!(me["body"]["user"]["username"], "ada");
    let patched = call(trusted, "patch me (cookie)");
    assert_eq!(patched["status"], 200, "{shown}");
    assert_eq!(patched["body"]["user"]["fullname"], "Ada from the SPA");
    assert_eq!(call(trusted, "refresh (cookie)")["status"], 200, "{shown}");
    let bearer = call(trusted, "me (bearer, own request id)");
    assert_eq!(bearer["status"], 200, "{shown}");
    assert_eq!(bearer["requestId"], "spa-call-1", "{shown}");
    // The cookies as the browser keeps them.
    let cookies = seen["cookies"].as_array().unwrap();
    let by_name = |n: &str| cookies.iter().find(|c| c["name"] == n).cloned();
    let at = by_name("tessera_at").expect("the access cookie");
    assert_eq!(at["httpOnly"], true);
    assert_eq!(at["sameSite"], "Lax");
    assert_eq!(at["path"], "/");
    let rt = by_name("tessera_rt").expect("the refresh cookie");
    assert_eq!(rt["httpOnly"], true);
    assert_eq!(rt["sameSite"], "Strict");
    assert_eq!(rt["path"], "/v1/auth");

    // The other origin, same browser and cookies: the browser lets it read nothing,
    // preflighted writes are never sent, and simple writes are refused by the
    // server's CSRF check.
    for c in seen["other"].as_array().unwrap() {
        assert!(
            c["error"].as_str().is_some_and(|e| e.contains("TypeError")),
            "{} was not blocked: {shown}",
            c["name"]
        );
    }
    let cors_refusals = seen["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m.as_str().unwrap().contains("blocked by CORS policy"))
        .count();
    assert!(cors_refusals >= 4, "{shown}");
    assert_eq!(seen["refreshCookieUnchanged"], true, "{shown}");
    assert_eq!(seen["afterwards"]["status"], 200, "{shown}");
    // On the server: the blocked registration never arrived, and the session the
    // other page tried to refresh and log out is the one the app still uses.
    let r = s
        .post(
            "/v1/auth/login",
            serde_json::json!({"login": "mallory", "password": PASSWORD}),
        )
        .await;
    expect_error(r, reqwest::StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let token = call(trusted, "login (body)")["body"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let sessions: Value = s
        .get_auth("/v1/me/sessions", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 2, "{sessions}");
    for png in ["cors-trusted-origin.png", "cors-other-origin.png"] {
        let size = std::fs::metadata(shots.join(png)).unwrap().len();
        assert!(size > 1000, "{png}: {size} bytes");
    }
    println!("{shown}");
}

/// A server mailing to `smtp` whose issuer (in the mailed links) is its own
/// address as a browser reaches it; returns it and that issuer.
async fn mailing_server(
    smtp: &crate::mailbox::SmtpServer,
    verification: tessera_app::EmailVerification,
) -> (TestServer, String) {
    let port = free_port();
    let issuer = format!("http://localhost:{port}");
    let s = TestServer::start_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.issuer = Some(issuer.clone());
        c.smtp_url = Some(smtp.url());
        c.email_verification = verification;
    })
    .await;
    (s, issuer)
}

/// With verification `required`, sign-up on the page creates nothing that signs
/// in until the mailed link is followed in the browser; then signing in lands on
/// the account page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_up_confirms_the_address_from_the_mail_and_signs_in() {
    if !browser_ready() || !crate::mailbox::smtp_ready() {
        return;
    }
    let smtp = crate::mailbox::SmtpServer::start();
    let (s, issuer) = mailing_server(&smtp, tessera_app::EmailVerification::Required).await;
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let shots_arg = shots.display().to_string();
    let password = "amber kites above the quay";
    let seen = browse_pages(vec![
        "signup".into(),
        issuer.clone(),
        "rhea@example.com".into(),
        "rhea".into(),
        password.into(),
        shots_arg.clone(),
    ])
    .await;
    let shown = serde_json::to_string_pretty(&seen).unwrap();
    assert_eq!(seen["form"]["status"], 200, "{shown}");
    assert_eq!(seen["sent"]["status"], 201, "{shown}");
    assert_eq!(seen["sent"]["heading"], "Check your mail", "{shown}");
    assert_eq!(seen["signedIn"]["status"], 403, "{shown}");
    assert_eq!(seen["signedIn"]["path"], "/signin", "{shown}");
    assert!(
        seen["signedIn"]["notice"]
            .as_str()
            .unwrap()
            .starts_with("Confirm your email address first"),
        "{shown}"
    );
    assert_eq!(seen["resendForm"]["status"], 200, "{shown}");
    assert_eq!(seen["resendForm"]["focused"], "email", "{shown}");
    assert_eq!(seen["resent"]["status"], 200, "{shown}");
    assert_eq!(seen["resent"]["heading"], "Check your mail", "{shown}");
    // The newer link replaced the first one.
    let first = smtp.wait_for("rhea@example.com", 1).await;
    let link = smtp
        .wait_for("rhea@example.com", 2)
        .await
        .link("/account/verify-email");
    let old = first.token("/account/verify-email");
    let r = s
        .post("/v1/auth/email/confirm", serde_json::json!({"token": old}))
        .await;
    expect_error(r, reqwest::StatusCode::BAD_REQUEST, "invalid_link").await;
    let seen = browse_pages(vec!["confirm".into(), link, shots_arg.clone()]).await;
    let shown = serde_json::to_string_pretty(&seen).unwrap();
    assert_eq!(seen["done"]["status"], 200, "{shown}");
    assert!(
        seen["done"]["notice"]
            .as_str()
            .unwrap()
            .contains("rhea@example.com is confirmed"),
        "{shown}"
    );
    let seen = browse_pages(vec![
        "signin".into(),
        issuer,
        "rhea".into(),
        password.into(),
        shots_arg,
    ])
    .await;
    let shown = serde_json::to_string_pretty(&seen).unwrap();
    assert_eq!(seen["signedIn"]["status"], 200, "{shown}");
    assert_eq!(seen["signedIn"]["path"], "/account", "{shown}");
    assert!(
        seen["signedIn"]["text"]
            .as_str()
            .unwrap()
            .contains("rhea@example.com"),
        "{shown}"
    );
    for png in [
        "page-signup.png",
        "page-signup-sent.png",
        "page-signin-unconfirmed.png",
        "page-resend-verification.png",
        "page-resend-verification-sent.png",
        "page-signin-confirmed.png",
    ] {
        let size = std::fs::metadata(shots.join(png)).unwrap().len();
        assert!(size > 1000, "{png}: {size} bytes");
    }
    // The JSON API agrees: the account exists now, its address confirmed.
    let t = s.login_with("rhea", password).await;
    let me: serde_json::Value = s.get_auth("/v1/me", &t.access).await.json().await.unwrap();
    assert_eq!(me["user"]["email_verified"], true);
}

/// Runs `tests/interop/browser_pages.mjs` with `args`; returns what it saw.
async fn browse_pages(mut args: Vec<String>) -> Value {
    args.insert(0, "browser_pages.mjs".into());
    run_node(args).await
}

/// Runs a script of `tests/interop` (the first of `args`) with Node; returns the
/// JSON it printed.
pub(crate) async fn run_node(args: Vec<String>) -> Value {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(&args)
            .current_dir(interop_dir())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser script failed:\n{stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The mailed-link pages in a real browser, by keyboard alone: ask for a reset
/// link, follow it from the mail (over real SMTP), have a weak password refused,
/// set a strong one, sign in with it; and confirm an address from its link.
/// Screenshots of every page go to `target/screenshots/page-*.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_resets_a_password_and_confirms_an_address_from_the_mailed_links() {
    if !browser_ready() || !crate::mailbox::smtp_ready() {
        return;
    }
    let smtp = crate::mailbox::SmtpServer::start();
    let (s, issuer) = mailing_server(&smtp, tessera_app::EmailVerification::Optional).await;
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let shots_arg = shots.display().to_string();
    s.user("bea").await;

    // Confirm the address from the sign-up mail.
    let verify = smtp.wait_for("bea@example.com", 1).await;
    let link = verify.link("/account/verify-email");
    assert!(link.starts_with(&issuer), "{link}");
    let seen = browse_pages(vec!["confirm".into(), link, shots_arg.clone()]).await;
    let shown = serde_json::to_string_pretty(&seen).unwrap();
    assert_eq!(seen["form"]["status"], 200, "{shown}");
    assert_eq!(seen["form"]["scripts"], 0, "{shown}");
    assert_eq!(seen["buttonFocused"], "BUTTON", "{shown}");
    assert_eq!(seen["done"]["status"], 200, "{shown}");
    assert!(
        seen["done"]["notice"]
            .as_str()
            .unwrap()
            .contains("bea@example.com is confirmed"),
        "{shown}"
    );

    // Ask for a reset link on the page.
    let seen = browse_pages(vec![
        "forgot".into(),
        format!("{issuer}/account/forgot-password"),
        "bea@example.com".into(),
        shots_arg.clone(),
    ])
    .await;
    let shown = serde_json::to_string_pretty(&seen).unwrap();
    assert_eq!(seen["form"]["status"], 200, "{shown}");
    assert_eq!(seen["form"]["focused"], "email", "{shown}");
    assert_eq!(seen["sent"]["status"], 200, "{shown}");
    assert_eq!(seen["sent"]["heading"], "Check your mail", "{shown}");

    // Follow the mailed link; a weak password is refused on the page, a strong one set.
    let reset = smtp.wait_for("bea@example.com", 2).await;
    assert_eq!(reset.subject, "Reset your password");
    let strong = "violet lanterns over the harbour";
    let seen = browse_pages(vec![
        "reset".into(),
        reset.link("/account/reset-password"),
        "password123".into(),
        strong.into(),
        shots_arg,
    ])
    .await;
    let shown = serde_json::to_string_pretty(&seen).unwrap();
    assert_eq!(seen["form"]["status"], 200, "{shown}");
    assert_eq!(seen["form"]["focused"], "new_password", "{shown}");
    assert_eq!(seen["refused"]["status"], 400, "{shown}");
    assert!(
        seen["refused"]["notice"]
            .as_str()
            .unwrap()
            .starts_with("Too common or too easy to guess"),
        "{shown}"
    );
    assert_eq!(seen["done"]["status"], 200, "{shown}");
    assert_eq!(seen["done"]["heading"], "Password changed", "{shown}");
    s.login_with("bea", strong).await;
    for png in [
        "page-verify-email.png",
        "page-verify-email-done.png",
        "page-forgot-password.png",
        "page-forgot-password-sent.png",
        "page-reset-password.png",
        "page-reset-password-refused.png",
        "page-reset-password-done.png",
    ] {
        let size = std::fs::metadata(shots.join(png)).unwrap().len();
        assert!(size > 1000, "{png}: {size} bytes");
    }
}

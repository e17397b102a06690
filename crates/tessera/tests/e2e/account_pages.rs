//! The hosted sign-up, sign-in and account pages in a real browser (headless
//! Chromium driven by `tests/interop/browser_account.mjs`): two devices of one
//! user, two tabs of one device, access tokens of a few seconds so the session
//! outlives several of them, and the refusals a person meets on the way.
//! Screenshots of every page go to `target/screenshots/account-*.png`.

use crate::browser::{browser_ready, run_node};
use crate::support::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Seconds an access token lives in this test.
const ACCESS_SECONDS: i64 = 6;

fn text<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

/// The last path a navigation reached.
/// The counter a refresh token (`tsr_` + base64url of version, session id,
/// big-endian counter, tag) carries.
fn refresh_counter(token: &Value) -> u64 {
    use base64::Engine;
    let b64 = token.as_str().unwrap().strip_prefix("tsr_").unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .unwrap();
    u64::from_be_bytes(raw[17..25].try_into().unwrap())
}

fn landed(chain: &Value) -> &str {
    text(chain.as_array().unwrap().last().unwrap(), "the last path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_up_stays_signed_in_and_manages_devices_in_a_browser() {
    if !browser_ready() {
        return;
    }
    let port = free_port();
    let issuer = format!("http://localhost:{port}");
    let s = TestServer::start_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.issuer = Some(issuer.clone());
        c.access_token_expiry = format!("{ACCESS_SECONDS}s").parse().unwrap();
        c.leeway = "0s".parse().unwrap();
    })
    .await;
    // The server's clock follows the real one, which the browser's cookies follow.
    let clock = s.clock.clone();
    let follower = tokio::spawn(async move {
        let start = Instant::now();
        let mut moved = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let elapsed = start.elapsed().as_secs() as i64;
            if elapsed > moved {
                clock.advance(elapsed - moved);
                moved = elapsed;
            }
        }
    });
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let seen = run_node(vec![
        "browser_account.mjs".into(),
        issuer.clone(),
        ACCESS_SECONDS.to_string(),
        shots.display().to_string(),
    ])
    .await;
    follower.abort();
    let shown = serde_json::to_string_pretty(&seen).unwrap();
    let step = |name: &str| -> &Value {
        seen.get(name)
            .unwrap_or_else(|| panic!("no step {name}: {shown}"))
    };

    // A signed-out visitor at / ends on the sign-in page.
    assert_eq!(step("home")["path"], "/signin", "{shown}");
    assert_eq!(step("home")["heading"], "Sign in", "{shown}");
    assert_eq!(step("home")["chain"][0], "/", "{shown}");

    // Sign-up: every field labelled, the first focused; a weak password is
    // refused saying why, the other values kept, the password not.
    let form = step("signupForm");
    assert_eq!(form["status"], 200, "{shown}");
    assert_eq!(form["focused"], "email", "{shown}");
    assert_eq!(form["unlabelled"], serde_json::json!([]), "{shown}");
    assert_eq!(form["scripts"], 0, "{shown}");
    let weak = step("signupWeak");
    assert_eq!(weak["status"], 400, "{shown}");
    assert!(
        text(&weak["notice"], "notice").starts_with("Password is too common or too easy to guess"),
        "{shown}"
    );
    assert_eq!(weak["invalid"], serde_json::json!(["password"]), "{shown}");
    assert_eq!(weak["focused"], "password", "{shown}");
    assert_eq!(weak["values"]["email"], "ada@example.com", "{shown}");
    assert_eq!(weak["values"]["username"], "ada", "{shown}");
    assert_eq!(weak["values"]["fullname"], "Ada Lovelace", "{shown}");
    assert_eq!(weak["values"]["password"], "", "{shown}");
    let up = step("signedUp");
    assert_eq!(up["path"], "/account", "{shown}");
    assert_eq!(up["heading"], "Your account", "{shown}");
    assert_eq!(up["scripts"], 1, "{shown}");
    assert_eq!(up["unlabelled"], serde_json::json!([]), "{shown}");

    // The cookies as the browser keeps them; page scripts see none.
    let cookies = step("cookies").as_array().unwrap();
    let cookie = |n: &str| {
        cookies
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("no cookie {n}: {shown}"))
    };
    let at = cookie("tessera_at");
    assert_eq!(
        (&at["httpOnly"], &at["sameSite"], &at["path"], &at["secure"]),
        (
            &Value::Bool(true),
            &"Lax".into(),
            &"/".into(),
            &Value::Bool(true)
        ),
        "{shown}"
    );
    let rt = cookie("tessera_rt");
    assert_eq!(
        (&rt["httpOnly"], &rt["sameSite"], &rt["path"], &rt["secure"]),
        (
            &Value::Bool(true),
            &"Strict".into(),
            &"/v1/auth".into(),
            &Value::Bool(true)
        ),
        "{shown}"
    );
    assert_eq!(step("cookiesVisibleToScript"), "", "{shown}");

    // A taken username, from the other device.
    let taken = step("signupTaken");
    assert_eq!(taken["status"], 409, "{shown}");
    assert_eq!(
        taken["notice"], "This username is taken; choose another.",
        "{shown}"
    );
    assert_eq!(taken["invalid"], serde_json::json!(["username"]), "{shown}");
    assert_eq!(taken["values"]["email"], "other@example.com", "{shown}");

    // Sign-in by keyboard: a wrong password keeps the login and focuses the password.
    assert_eq!(step("signinForm")["focused"], "login", "{shown}");
    let wrong = step("signinWrong");
    assert_eq!(wrong["status"], 401, "{shown}");
    assert_eq!(
        wrong["notice"], "The username, email address or password is incorrect.",
        "{shown}"
    );
    assert_eq!(wrong["values"]["login"], "ada", "{shown}");
    assert_eq!(wrong["values"]["password"], "", "{shown}");
    assert_eq!(wrong["focused"], "password", "{shown}");
    assert_eq!(step("phoneSignedIn")["path"], "/account", "{shown}");

    // Both devices listed, named from their user agents, this one marked.
    let devices = step("laptopReloaded")["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{shown}");
    let this: Vec<&str> = devices
        .iter()
        .map(|d| text(d, "device"))
        .filter(|d| d.contains("This device"))
        .collect();
    assert_eq!(this.len(), 1, "{shown}");
    assert!(this[0].starts_with("Chrome 126 on Linux"), "{shown}");
    assert!(
        devices
            .iter()
            .any(|d| text(d, "device").starts_with("Safari 17 on iOS")),
        "{shown}"
    );
    assert!(
        devices
            .iter()
            .all(|d| text(d, "device").contains("127.0.0.1")),
        "{shown}"
    );

    // Past several access tokens' lives: the open page refreshed by itself (never
    // seeing a token), and a device with no page open is resumed by the server.
    assert_eq!(step("afterExpiryOpenPage")["path"], "/account", "{shown}");
    let refreshes = step("laptopRefreshes").as_array().unwrap();
    assert!(refreshes.len() >= 2, "{shown}");
    for r in refreshes {
        assert_eq!(r["status"], 200, "{shown}");
        assert_eq!(r["bodyHasToken"], false, "{shown}");
    }
    let resumed = step("afterExpiryPhone");
    assert_eq!(resumed["path"], "/account", "{shown}");
    assert_eq!(
        resumed["chain"],
        serde_json::json!([
            "/account",
            "/v1/auth/resume?return_to=%2Faccount",
            "/account"
        ]),
        "{shown}"
    );

    // Two tabs refreshing at once with the same token both get its one successor
    // and stay signed in.
    let two = step("twoTabs");
    assert_eq!(two["held"], 2, "{shown}");
    let pair = two["refreshes"].as_array().unwrap();
    assert_eq!(pair.len(), 2, "{shown}");
    for r in pair {
        assert_eq!(r["status"], 200, "{shown}");
        assert!(r["setRefresh"].is_string(), "{shown}");
    }
    assert_eq!(pair[0]["sentRefresh"], pair[1]["sentRefresh"], "{shown}");
    // Each got a successor of the token both sent: the one rotation's, or, when
    // the browser let the held second request go with the cookie the first had
    // just set (a busy machine), the next one; never a reuse refusal.
    let sent = refresh_counter(&pair[0]["sentRefresh"]);
    let got: Vec<u64> = pair
        .iter()
        .map(|r| refresh_counter(&r["setRefresh"]))
        .collect();
    assert_eq!(got.iter().min(), Some(&(sent + 1)), "{shown}");
    assert!(got.iter().all(|&c| c <= sent + 2), "{shown}");
    if got[0] == got[1] {
        assert_eq!(pair[0]["setRefresh"], pair[1]["setRefresh"], "{shown}");
    }
    assert_eq!(step("twoTabsTab1")["path"], "/account", "{shown}");
    assert_eq!(step("twoTabsTab2")["path"], "/account", "{shown}");

    // Account forms: a wrong current password refused, a profile saved.
    let refused = step("passwordRefused");
    assert_eq!(refused["status"], 403, "{shown}");
    assert_eq!(
        refused["notice"], "The current password is incorrect.",
        "{shown}"
    );
    let saved = step("profileSaved");
    assert_eq!(saved["path"], "/account?done=profile", "{shown}");
    assert_eq!(saved["notice"], "Your profile is saved.", "{shown}");
    assert_eq!(saved["values"]["profile-fullname"], "Ada King", "{shown}");

    // One device signs the other out.
    let out = step("deviceSignedOut");
    assert_eq!(out["path"], "/account?done=device", "{shown}");
    assert_eq!(out["devices"].as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(step("phoneAfterSignOut")["path"], "/signin", "{shown}");

    // return_to: followed to the authorization endpoint, ignored for another site.
    let authorize = "/oauth/authorize?client_id=demo&state=xyz";
    let form = step("returnToForm");
    assert_eq!(form["returnTo"], authorize, "{shown}");
    assert_eq!(form["values"]["login"], "ada", "{shown}");
    assert_eq!(form["focused"], "password", "{shown}");
    assert_eq!(landed(step("returnToFollowed")), authorize, "{shown}");
    assert_eq!(step("returnToEvilForm")["returnTo"], Value::Null, "{shown}");
    assert_eq!(landed(step("returnToEvil")), "/account", "{shown}");

    // A form on another site posting here is refused, and changes nothing.
    let off = step("offSite");
    assert_eq!(off["status"], 403, "{shown}");
    assert_eq!(off["heading"], "Request refused", "{shown}");
    assert_eq!(step("afterOffSite")["path"], "/account", "{shown}");

    // Signing out everywhere clears this browser's cookies and ends the phone's session.
    assert_eq!(step("signedOutEverywhere")["path"], "/signin", "{shown}");
    assert_eq!(
        step("cookiesAfterSignOut"),
        &serde_json::json!([]),
        "{shown}"
    );
    assert_eq!(step("phoneAfterEverywhere")["path"], "/signin", "{shown}");

    // Deleting the account needs the current password.
    assert_eq!(step("deleteRefused")["status"], 403, "{shown}");
    let deleted = step("deleted");
    assert_eq!(deleted["status"], 200, "{shown}");
    assert_eq!(deleted["heading"], "Account deleted", "{shown}");
    assert_eq!(
        step("cookiesAfterDelete"),
        &serde_json::json!([]),
        "{shown}"
    );
    let r = s
        .post(
            "/v1/auth/login",
            serde_json::json!({"login": "ada", "password": "violet lanterns over the harbour"}),
        )
        .await;
    expect_error(r, reqwest::StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    for png in [
        "account-signin.png",
        "account-signup.png",
        "account-signup-weak-password.png",
        "account-signup-taken.png",
        "account-signin-wrong-password.png",
        "account-page.png",
        "account-page-two-devices.png",
        "account-password-refused.png",
        "account-device-signed-out.png",
        "account-offsite-refused.png",
        "account-signed-out.png",
        "account-deleted.png",
    ] {
        let size = std::fs::metadata(shots.join(png)).unwrap().len();
        assert!(size > 1000, "{png}: {size} bytes");
    }
}

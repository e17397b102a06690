//! The account lifecycle (contract §10) end to end: the password policy, the
//! sign-up policy, and mail delivered over real SMTP to `aiosmtpd` (mailbox.rs):
//! email verification, password reset, SMTP outages and restarts with mail queued.

use crate::mailbox::{SmtpServer, read_maildir, smtp_ready};
use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera_app::{EmailVerification, SignupPolicy};

async fn register_with(s: &TestServer, name: &str, password: &str) -> reqwest::Response {
    s.post(
        "/v1/auth/register",
        json!({"email": format!("{name}@example.com"), "username": name, "password": password}),
    )
    .await
}

fn claims(access: &str) -> Value {
    use base64::Engine;
    let payload = access.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A login with [`PASSWORD`] is refused as wrong credentials.
async fn refused_login(s: &TestServer, login: &str) {
    let body = json!({"login": login, "password": PASSWORD});
    let r = s.post("/v1/auth/login", body).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

/// The token of the `n`th mail to `to`, a confirmation link.
async fn verify_token(smtp: &SmtpServer, to: &str, n: usize) -> String {
    smtp.wait_for(to, n).await.token("/account/verify-email")
}

/// Confirms with `token`, which must work; returns the `{user}` answer.
async fn confirmed(s: &TestServer, token: &str) -> Value {
    let r = s
        .post("/v1/auth/email/confirm", json!({ "token": token }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Registers `name` and follows the mailed link (the `n`th mail to the address).
async fn register_confirmed(s: &TestServer, smtp: &SmtpServer, name: &str, n: usize) {
    s.register(name).await;
    confirmed(
        s,
        &verify_token(smtp, &format!("{name}@example.com"), n).await,
    )
    .await;
}

/// A confirmation with `token` is refused as an invalid link.
async fn refused_confirmation(s: &TestServer, token: &str) {
    let r = s
        .post("/v1/auth/email/confirm", json!({ "token": token }))
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_link").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn common_and_guessable_passwords_are_refused_with_the_reason() {
    let s = TestServer::start().await;
    for weak in ["password123", "qwertyuiop", "11111111", "ada12345"] {
        let body = expect_error(
            register_with(&s, "ada", weak).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        let d = body["error_description"].as_str().unwrap();
        assert!(d.contains("too common or too easy to guess"), "{weak}: {d}");
        assert!(
            !d.contains(weak),
            "the description never echoes the password"
        );
    }
    expect_error(
        register_with(&s, "ada", "short").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(
        register_with(&s, "ada", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    // A change to a weak password is refused too, and the old one keeps working.
    let t = s.login("ada").await;
    let r = s
        .http
        .post(s.url("/v1/me/password"))
        .bearer_auth(&t.access)
        .json(&json!({"current_password": PASSWORD, "new_password": "iloveyou1"}))
        .send()
        .await
        .unwrap();
    let body = expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("new_password:")
    );
    s.login("ada").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_or_invite_only_sign_up_refuses_registration_but_operators_still_add_users() {
    for policy in [SignupPolicy::Closed, SignupPolicy::Invite] {
        let s = TestServer::start_with(|c| c.signup = policy).await;
        expect_error(
            register_with(&s, "bob", PASSWORD).await,
            StatusCode::FORBIDDEN,
            "signup_closed",
        )
        .await;
        let caller = tessera_app::Caller::operator();
        s.state()
            .app
            .sign_up("bob@example.com", "bob", PASSWORD.into(), "", &caller)
            .await
            .expect("operators create users whatever the policy");
        s.login("bob").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_mails_are_written_to_the_outbox() {
    let s = TestServer::start().await;
    assert!(
        s.running.as_ref().unwrap().banner.contains("outbox"),
        "the banner says where mail goes"
    );
    s.register("olga").await;
    let outbox = s.cfg.data_dir.join("outbox");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mail = loop {
        if let Some(m) = read_maildir(&outbox).pop() {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no .eml in {}",
            outbox.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(mail.to.contains("olga@example.com"));
    assert!(mail.body.contains("text/plain") && mail.body.contains("text/html"));
    // The link uses the configured issuer.
    let issuer = s.state().app.settings.issuer.clone();
    assert!(
        mail.body
            .contains(&format!("{issuer}/account/verify-email?token="))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_verification_blocks_login_until_the_mailed_link_is_followed() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = TestServer::start_with(|c| {
        c.smtp_url = Some(smtp.url());
        c.email_verification = EmailVerification::Required;
    })
    .await;
    assert!(s.running.as_ref().unwrap().banner.contains(&smtp.url()));
    s.register("vera").await;
    let login = json!({"login": "vera", "password": PASSWORD, "delivery": "body"});
    expect_error(
        s.post("/v1/auth/login", login.clone()).await,
        StatusCode::FORBIDDEN,
        "email_not_verified",
    )
    .await;
    // A wrong password still says only that the credentials are wrong.
    expect_error(
        s.post(
            "/v1/auth/login",
            json!({"login": "vera", "password": "not the password"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let mail = smtp.wait_for("vera@example.com", 1).await;
    assert_eq!(mail.subject, "Confirm your email address");
    let token = mail.token("/account/verify-email");
    let r = s
        .post("/v1/auth/email/confirm", json!({"token": token}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["user"]["email_verified"],
        true
    );
    // Single use.
    refused_confirmation(&s, &token).await;
    let t = Tokens::from(
        s.post("/v1/auth/login", login)
            .await
            .json::<Value>()
            .await
            .unwrap(),
    );
    assert_eq!(claims(&t.access)["email_verified"], true);
    let me: Value = s.get_auth("/v1/me", &t.access).await.json().await.unwrap();
    assert_eq!(me["user"]["email_verified"], true);
    let info: Value = s
        .get_auth("/oauth/userinfo", &t.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["email_verified"], true);
    // Asking again once verified is refused.
    let r = s
        .http
        .post(s.url("/v1/me/email/verify"))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_verification_link_replaces_the_old() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = TestServer::start_with(|c| c.smtp_url = Some(smtp.url())).await;
    let t = s.user("nico").await;
    assert_eq!(claims(&t.access)["email_verified"], false);
    let first = smtp
        .wait_for("nico@example.com", 1)
        .await
        .token("/account/verify-email");
    let r = s
        .http
        .post(s.url("/v1/me/email/verify"))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let second = smtp
        .wait_for("nico@example.com", 2)
        .await
        .token("/account/verify-email");
    refused_confirmation(&s, &first).await;
    let r = s
        .post("/v1/auth/email/confirm", json!({"token": second}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_works_once_ends_every_session_and_says_nothing_about_unknown_addresses() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = TestServer::start_with(|c| {
        c.smtp_url = Some(smtp.url());
        c.email_verification = EmailVerification::Off;
    })
    .await;
    s.register("rosa").await;
    let (a, b) = (s.login("rosa").await, s.login("rosa").await);

    // Unknown and known addresses get the same answer; only the known one gets mail.
    let unknown = s
        .post(
            "/v1/auth/password/forgot",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    let known = s
        .post(
            "/v1/auth/password/forgot",
            json!({"email": "ROSA@example.com"}),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::ACCEPTED);
    assert_eq!(known.status(), StatusCode::ACCEPTED);
    assert_eq!(unknown.text().await.unwrap(), known.text().await.unwrap());
    let mail = smtp.wait_for("rosa@example.com", 1).await;
    assert_eq!(mail.subject, "Reset your password");
    assert_eq!(smtp.count_to("nobody@example.com"), 0);
    let token = mail.token("/account/reset-password");

    // A refused password leaves the link working.
    let weak = s
        .post(
            "/v1/auth/password/reset",
            json!({"token": token, "new_password": "password1"}),
        )
        .await;
    expect_error(weak, StatusCode::BAD_REQUEST, "invalid_request").await;
    let new_password = "a brand new tessera secret";
    let r = s
        .post(
            "/v1/auth/password/reset",
            json!({"token": token, "new_password": new_password}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Every session ended; the new password works, the old one does not.
    for t in [&a, &b] {
        expect_error(
            s.refresh(&t.refresh).await,
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
        )
        .await;
        assert_eq!(s.me_status(&t.access).await, StatusCode::UNAUTHORIZED);
    }
    s.login_with("rosa", new_password).await;
    refused_login(&s, "rosa").await;
    // Single use, and a notice follows.
    expect_error(
        s.post(
            "/v1/auth/password/reset",
            json!({"token": token, "new_password": "yet another tessera secret"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_link",
    )
    .await;
    let notice = smtp.wait_for("rosa@example.com", 2).await;
    assert_eq!(notice.subject, "Your password was changed");

    // A link expires after 30 minutes, and a newer link replaces an older one.
    s.post(
        "/v1/auth/password/forgot",
        json!({"email": "rosa@example.com"}),
    )
    .await;
    let older = smtp
        .wait_for("rosa@example.com", 3)
        .await
        .token("/account/reset-password");
    s.post(
        "/v1/auth/password/forgot",
        json!({"email": "rosa@example.com"}),
    )
    .await;
    let newer = smtp
        .wait_for("rosa@example.com", 4)
        .await
        .token("/account/reset-password");
    let reset = |token: String| {
        s.post(
            "/v1/auth/password/reset",
            json!({"token": token, "new_password": "the third tessera secret"}),
        )
    };
    expect_error(reset(older).await, StatusCode::BAD_REQUEST, "invalid_link").await;
    s.clock.advance(31 * 60);
    let body = expect_error(reset(newer).await, StatusCode::BAD_REQUEST, "invalid_link").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_mails_a_notice_and_voids_earlier_reset_links() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = TestServer::start_with(|c| {
        c.smtp_url = Some(smtp.url());
        c.email_verification = EmailVerification::Off;
    })
    .await;
    let t = s.user("paul").await;
    s.post(
        "/v1/auth/password/forgot",
        json!({"email": "paul@example.com"}),
    )
    .await;
    let token = smtp
        .wait_for("paul@example.com", 1)
        .await
        .token("/account/reset-password");
    let r = s
        .http
        .post(s.url("/v1/me/password"))
        .bearer_auth(&t.access)
        .json(&json!({"current_password": PASSWORD, "new_password": "paul's new tessera secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        smtp.wait_for("paul@example.com", 2).await.subject,
        "Your password was changed"
    );
    expect_error(
        s.post(
            "/v1/auth/password/reset",
            json!({"token": token, "new_password": "an attacker's tessera secret"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_link",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_queued_while_smtp_is_down_arrives_when_it_is_back_even_across_a_restart() {
    if !smtp_ready() {
        return;
    }
    let port = free_port();
    let s = TestServer::start_with(|c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.email_verification = EmailVerification::Off;
    })
    .await;
    s.register("dora").await;
    s.register("emil").await;
    s.post(
        "/v1/auth/password/forgot",
        json!({"email": "dora@example.com"}),
    )
    .await;
    // The first attempt fails (nothing listens); the mail stays queued.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        s.state().app.store.count_mail().await.unwrap(),
        1,
        "a failed delivery keeps the mail"
    );

    // A restart while SMTP is still down, and a second mail queued after it.
    let s = s.restart().await;
    s.post(
        "/v1/auth/password/forgot",
        json!({"email": "emil@example.com"}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(s.state().app.store.count_mail().await.unwrap(), 2);

    // SMTP comes back; once the retry is due both arrive.
    let smtp = SmtpServer::start_on(port);
    s.clock.advance(120);
    let dora = smtp.wait_for("dora@example.com", 1).await;
    let emil = smtp.wait_for("emil@example.com", 1).await;
    assert_eq!(dora.subject, "Reset your password");
    assert_eq!(emil.subject, "Reset your password");
    // A mail leaves the queue just after the SMTP server took it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.state().app.store.count_mail().await.unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "delivered mail stays queued"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The newest mail to `to` in the outbox (no SMTP configured), waiting for it.
async fn outbox_mail(s: &TestServer, to: &str, n: usize) -> crate::mailbox::Mail {
    let outbox = s.cfg.data_dir.join("outbox");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mine: Vec<_> = read_maildir(&outbox)
            .into_iter()
            .filter(|m| m.to.contains(to))
            .collect();
        if mine.len() >= n {
            return mine[n - 1].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no mail #{n} to {to}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_confirm_an_address_and_reset_a_password_without_javascript() {
    let s = TestServer::start().await;
    let issuer = s.state().app.settings.issuer.clone();
    let t = s.user("pia").await;
    let post_form = |path: &str, form: &[(&str, &str)], origin: &str| {
        s.http
            .post(s.url(path))
            .header("origin", origin)
            .form(form)
            .send()
    };
    // Confirm: the link opens a page with a button; the button confirms.
    let token = outbox_mail(&s, "pia@example.com", 1)
        .await
        .token("/account/verify-email");
    let page = s
        .http
        .get(s.url(&format!("/account/verify-email?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\" action=\"/account/verify-email\">"));
    assert!(!html.contains("<script"), "no JavaScript");
    let done = post_form("/account/verify-email", &[("token", &token)], &issuer)
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("pia@example.com is confirmed")
    );
    let me: Value = s.get_auth("/v1/me", &t.access).await.json().await.unwrap();
    assert_eq!(me["user"]["email_verified"], true);

    // Forgot, then reset through the pages; a form from another site is refused.
    let r = post_form(
        "/account/forgot-password",
        &[("email", "pia@example.com")],
        "https://evil.example",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post_form(
        "/account/forgot-password",
        &[("email", "pia@example.com")],
        &issuer,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Check your mail"));
    let token = outbox_mail(&s, "pia@example.com", 2)
        .await
        .token("/account/reset-password");
    let page = s
        .http
        .get(s.url(&format!("/account/reset-password?token={token}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<label for=\"new_password\">New password</label>"));
    // A weak password: the reason, and the form again with the same link.
    let weak = post_form(
        "/account/reset-password",
        &[("token", &token), ("new_password", "password123")],
        &issuer,
    )
    .await
    .unwrap();
    assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
    let html = weak.text().await.unwrap();
    assert!(html.contains("Too common or too easy to guess"), "{html}");
    assert!(html.contains(&token));
    let ok = post_form(
        "/account/reset-password",
        &[
            ("token", &token),
            ("new_password", "pia's page-made secret"),
        ],
        &issuer,
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(s.me_status(&t.access).await, StatusCode::UNAUTHORIZED);
    s.login_with("pia", "pia's page-made secret").await;
    // Used: the page says so.
    let again = post_form(
        "/account/reset-password",
        &[
            ("token", &token),
            ("new_password", "pia's other page secret"),
        ],
        &issuer,
    )
    .await
    .unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.text().await.unwrap().contains("already used"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_account_needs_the_password_ends_every_session_and_mails_a_notice() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = TestServer::start_with(|c| c.smtp_url = Some(smtp.url())).await;
    let t = s.user("dana").await;
    let other = s.login("dana").await;
    let delete = |body: Value| s.json_auth(Method::DELETE, "/v1/me", &t.access, body);
    let r = delete(json!({"current_password": "not the password"})).await;
    expect_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = delete(json!({})).await;
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(s.me_status(&t.access).await, StatusCode::OK);

    let r = delete(json!({"current_password": PASSWORD})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Every session ended at once: access tokens and refresh tokens stop working.
    assert_eq!(s.me_status(&t.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me_status(&other.access).await, StatusCode::UNAUTHORIZED);
    expect_error(
        s.refresh(&other.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    refused_login(&s, "dana").await;
    let notice = smtp.wait_for("dana@example.com", 2).await;
    assert_eq!(notice.subject, "Your account was deleted");
    // The user is gone, so the name and the address are free again.
    assert_eq!(
        register_with(&s, "dana", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    // The audit trail keeps the event, under the user's id only.
    let events = s.state().app.store.list_audit(None, 0, 1000).await.unwrap();
    let deleted = events
        .iter()
        .find(|e| e.kind == "account_deleted")
        .expect("an account_deleted event");
    let text = format!("{deleted:?}");
    assert!(!text.contains("dana"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_address_needs_the_password_and_takes_effect_only_from_its_link() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = TestServer::start_with(|c| c.smtp_url = Some(smtp.url())).await;
    s.register("taken").await;
    let t = s.user("nina").await;
    let change = |body: Value| s.json_auth(Method::POST, "/v1/me/email", &t.access, body);
    // A sign-in within the last 5 minutes stands in for the password.
    let r = change(json!({"email": "nina@first.example"})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let first = smtp
        .wait_for("nina@first.example", 1)
        .await
        .token("/account/verify-email");
    s.clock.advance(301);
    let r = change(json!({"email": "nina@new.example"})).await;
    let body = expect_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("current_password")
    );
    let r = change(json!({"email": "nina@new.example", "current_password": "wrong one"})).await;
    expect_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = change(json!({"email": "TAKEN@example.com", "current_password": PASSWORD})).await;
    expect_error(r, StatusCode::CONFLICT, "conflict").await;
    let r = change(json!({"email": "nina@new.example", "current_password": PASSWORD})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mail = smtp.wait_for("nina@new.example", 1).await;
    assert_eq!(mail.subject, "Confirm your new email address");
    // Nothing changes until the link is followed.
    let me: Value = s.get_auth("/v1/me", &t.access).await.json().await.unwrap();
    assert_eq!(me["user"]["email"], "nina@example.com");
    // The newer link replaced the first one.
    refused_confirmation(&s, &first).await;
    let token = mail.token("/account/verify-email");
    let r = s
        .post("/v1/auth/email/confirm", json!({"token": token}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let user = r.json::<Value>().await.unwrap()["user"].clone();
    assert_eq!(user["email"], "nina@new.example");
    assert_eq!(user["email_verified"], true);
    // The old address is told; the new one signs in, the old one no longer.
    let notice = smtp.wait_for("nina@example.com", 2).await;
    assert_eq!(notice.subject, "Your email address was changed");
    assert!(notice.body.contains("nina@new.example"));
    s.login("nina@new.example").await;
    refused_login(&s, "nina@example.com").await;
    refused_confirmation(&s, &token).await;
}

/// An address change started by whoever knew the password dies when the owner
/// changes the password: its link no longer takes the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_voids_a_pending_address_change() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = TestServer::start_with(|c| c.smtp_url = Some(smtp.url())).await;
    let t = s.user("olga").await;
    let r = s
        .json_auth(
            Method::POST,
            "/v1/me/email",
            &t.access,
            json!({"email": "intruder@evil.example", "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let link = smtp
        .wait_for("intruder@evil.example", 1)
        .await
        .token("/account/verify-email");
    let r = s
        .json_auth(
            Method::POST,
            "/v1/me/password",
            &t.access,
            json!({"current_password": PASSWORD, "new_password": "a fresh passphrase 42"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    refused_confirmation(&s, &link).await;
    let me: Value = s
        .get_auth(
            "/v1/me",
            &s.login_with("olga", "a fresh passphrase 42").await.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email"], "olga@example.com");
}

/// A server with verification `required` mailing to `smtp`, and `owen`, whose
/// address is confirmed (his password is [`PASSWORD`]).
async fn required_with_owen(smtp: &SmtpServer) -> TestServer {
    required_with_owen_and(smtp, |_| {}).await
}

async fn required_with_owen_and(
    smtp: &SmtpServer,
    tweak: impl FnOnce(&mut tessera::config::Config),
) -> TestServer {
    let s = TestServer::start_with(|c| {
        c.smtp_url = Some(smtp.url());
        c.email_verification = EmailVerification::Required;
        tweak(c);
    })
    .await;
    register_confirmed(&s, smtp, "owen", 1).await;
    s
}

async fn login_as(s: &TestServer, login: &str, password: &str) -> reqwest::Response {
    s.post(
        "/v1/auth/login",
        json!({"login": login, "password": password, "delivery": "body"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_required_verification_a_taken_address_registers_and_answers_like_a_new_one() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = required_with_owen(&smtp).await;
    let register = |email: &'static str, username: &'static str, password: &'static str| {
        s.post(
            "/v1/auth/register",
            json!({"email": email, "username": username, "password": password}),
        )
    };
    // Mallory does not know whether owen@example.com has an account.
    let fresh = register("fresh@example.com", "fresh", "fresh horse battery").await;
    let taken = register("OWEN@example.com", "mallory", "mallory's own secret").await;
    assert_eq!(fresh.status(), StatusCode::CREATED);
    assert_eq!(taken.status(), StatusCode::CREATED);
    let fresh: Value = fresh.json().await.unwrap();
    let taken: Value = taken.json().await.unwrap();
    let shape = |v: &Value| {
        v["user"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), std::mem::discriminant(v)))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&fresh), shape(&taken));
    assert_eq!(taken["user"]["username"], "mallory");
    assert_eq!(taken["user"]["email_verified"], false);
    // Every follow-up answers alike: the chosen password "works" but waits for a
    // confirmation, by name and by address; a wrong one is wrong; the name is
    // taken for another address; the same registration may be sent again.
    for (email, name, password) in [
        ("fresh@example.com", "fresh", "fresh horse battery"),
        ("owen@example.com", "mallory", "mallory's own secret"),
    ] {
        for login in [name, email] {
            expect_error(
                login_as(&s, login, password).await,
                StatusCode::FORBIDDEN,
                "email_not_verified",
            )
            .await;
            expect_error(
                login_as(&s, login, "not the password at all").await,
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
            )
            .await;
        }
        expect_error(
            register("someone@example.com", name, PASSWORD).await,
            StatusCode::CONFLICT,
            "conflict",
        )
        .await;
        let again = s
            .post(
                "/v1/auth/register",
                json!({"email": email, "username": name, "password": password}),
            )
            .await;
        assert_eq!(again.status(), StatusCode::CREATED, "{name}");
    }
    // The owner of the taken address is told, twice (once per registration),
    // and is sent no link; the owner's account and password are untouched.
    let told = smtp.wait_for("owen@example.com", 3).await;
    assert_eq!(told.subject, "Someone tried to register with your address");
    assert!(told.body.contains("/account/forgot-password"));
    assert!(!told.body.contains("/account/verify-email"));
    assert_eq!(smtp.count_to("owen@example.com"), 3);
    assert_eq!(
        login_as(&s, "owen", PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        login_as(&s, "owen@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
    refused_login(&s, "mallory").await;
    // A pending registration's name is taken for a rename too.
    for name in ["mallory", "fresh"] {
        let r = s
            .http
            .patch(s.url("/v1/me"))
            .bearer_auth(&s.login("owen").await.access)
            .json(&json!({ "username": name }))
            .send()
            .await
            .unwrap();
        expect_error(r, StatusCode::CONFLICT, "conflict").await;
    }
    // The new address gets a link per registration; only the newest works, and
    // it creates the account the second registration answered with.
    let first = verify_token(&smtp, "fresh@example.com", 1).await;
    let newest = verify_token(&smtp, "fresh@example.com", 2).await;
    refused_confirmation(&s, &first).await;
    let user = confirmed(&s, &newest).await;
    assert_eq!(user["user"]["username"], "fresh");
    assert_eq!(user["user"]["email_verified"], true);
    refused_confirmation(&s, &newest).await;
    let t = Tokens::from(
        login_as(&s, "fresh", "fresh horse battery")
            .await
            .json::<Value>()
            .await
            .unwrap(),
    );
    assert_eq!(claims(&t.access)["sub"], user["user"]["id"]);
    assert_eq!(claims(&t.access)["email_verified"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_required_verification_an_email_change_to_a_taken_address_answers_like_a_free_one() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = required_with_owen(&smtp).await;
    register_confirmed(&s, &smtp, "nina", 1).await;
    // Owen moves towards nina's (taken) address, nina towards a free one; each
    // first asks for an address of their own, whose link the second request
    // must supersede alike.
    for (name, own, target) in [
        ("owen", "owen.new@example.com", "nina@example.com"),
        ("nina", "nina.new@example.com", "free@example.com"),
    ] {
        let t = s.login(name).await;
        for email in [own, target] {
            let r = s
                .http
                .post(s.url("/v1/me/email"))
                .bearer_auth(&t.access)
                .json(&json!({"email": email, "current_password": PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED, "{name} -> {email}");
        }
        refused_confirmation(&s, &verify_token(&smtp, own, 1).await).await;
    }
    // The free address gets its link; the taken one nothing.
    smtp.wait_for("free@example.com", 1).await;
    assert_eq!(smtp.count_to("nina@example.com"), 1);
    let me: Value = s
        .get_auth("/v1/me", &s.login("owen").await.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email"], "owen@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_confirmation_link_is_sent_without_signing_in_and_says_nothing_about_the_address() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = required_with_owen(&smtp).await;
    s.register("pia").await;
    let first = verify_token(&smtp, "pia@example.com", 1).await;
    // Mallory's registration of owen's address has no link to renew.
    let r = s
        .post(
            "/v1/auth/register",
            json!({"email": "owen@example.com", "username": "mallory", "password": "mallory's own secret"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    smtp.wait_for("owen@example.com", 2).await;
    // The same answer for a confirmed account (with a taken address's pending
    // registration), an unknown address and a pending registration. The first
    // two go first: a mail either caused would be queued before pia's.
    let mut answers = Vec::new();
    for email in ["OWEN@example.com", "nobody@example.com", "pia@example.com"] {
        let r = s
            .post("/v1/auth/email/resend", json!({ "email": email }))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{email}");
        answers.push(r.text().await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    expect_error(
        s.post("/v1/auth/email/resend", json!({"email": "not an address"}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    // Only the pending registration gets a link; it replaces the first.
    let second = verify_token(&smtp, "pia@example.com", 2).await;
    refused_confirmation(&s, &first).await;
    confirmed(&s, &second).await;
    s.login("pia").await;
    // By now any mail the other two would have caused is delivered: none was.
    assert_eq!(smtp.count_to("owen@example.com"), 2);
    assert_eq!(smtp.count_to("nobody@example.com"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_confirmation_link_reaches_an_unconfirmed_account_unless_verification_is_off() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = TestServer::start_with(|c| c.smtp_url = Some(smtp.url())).await;
    s.user("uma").await;
    let first = verify_token(&smtp, "uma@example.com", 1).await;
    let r = s
        .post("/v1/auth/email/resend", json!({"email": "uma@example.com"}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let second = verify_token(&smtp, "uma@example.com", 2).await;
    refused_confirmation(&s, &first).await;
    confirmed(&s, &second).await;
    // Confirmed now: asking again sends nothing.
    let r = s
        .post("/v1/auth/email/resend", json!({"email": "uma@example.com"}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let off = TestServer::start_with(|c| c.email_verification = EmailVerification::Off).await;
    expect_error(
        off.post("/v1/auth/email/resend", json!({"email": "uma@example.com"}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(smtp.count_to("uma@example.com"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_matching_a_pending_registration_still_counts_against_the_account() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = required_with_owen_and(&smtp, |c| {
        c.login_limit_account_ip = "5/5m".parse().unwrap();
    })
    .await;
    // Mallory registers owen's address with a password of her own, then guesses
    // owen's password, logging in with her own now and then.
    let r = s
        .post(
            "/v1/auth/register",
            json!({"email": "owen@example.com", "username": "mallory", "password": "mallory's own secret"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for guess in ["guess one!", "guess two!", "guess three!", "guess four!"] {
        expect_error(
            login_as(&s, "owen@example.com", guess).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    expect_error(
        login_as(&s, "owen@example.com", "mallory's own secret").await,
        StatusCode::FORBIDDEN,
        "email_not_verified",
    )
    .await;
    // Her own password reset nothing: the limit of the account from this
    // address (5 in 5 minutes) is spent.
    expect_error(
        login_as(&s, "owen@example.com", "guess five!").await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_registers_its_own_address_once() {
    if !smtp_ready() {
        return;
    }
    let smtp = SmtpServer::start();
    let s = TestServer::start_with(|c| {
        c.smtp_url = Some(smtp.url());
        c.signup = SignupPolicy::Invite;
    })
    .await;
    let invite = |email: &str| {
        tessera()
            .arg("--data-dir")
            .arg(s.dir.path())
            .args(["user", "invite", email])
            .env("TESSERA_SIGNUP", "invite")
            .env("TESSERA_SMTP_URL", smtp.url())
            .output()
            .unwrap()
    };
    let out = invite("ivy@example.com");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("invited ivy@example.com (mailed)"),
        "{stdout}"
    );
    let mail = smtp.wait_for("ivy@example.com", 1).await;
    assert_eq!(mail.subject, "You are invited to create an account");
    let at = mail.body.find("/account/register?invitation=").unwrap();
    let start = at + "/account/register?invitation=".len();
    let token = mail.body[start..start + 64].to_string();

    let register = |email: &str, name: &str, invitation: &str| {
        s.post(
            "/v1/auth/register",
            json!({"email": email, "username": name, "password": PASSWORD, "invitation": invitation}),
        )
    };
    // Without an invitation, sign-up stays closed; with one, only for its address.
    expect_error(
        register_with(&s, "ivy", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "signup_closed",
    )
    .await;
    let body = expect_error(
        register("eve@example.com", "eve", &token).await,
        StatusCode::BAD_REQUEST,
        "invalid_link",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("another email address")
    );
    let r = register("IVY@example.com", "ivy", &token).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let user = r.json::<Value>().await.unwrap()["user"].clone();
    assert_eq!(
        user["email_verified"], true,
        "the invitation came to this mailbox"
    );
    s.login("ivy").await;
    // Used once.
    expect_error(
        register("ivy@example.com", "ivy2", &token).await,
        StatusCode::BAD_REQUEST,
        "invalid_link",
    )
    .await;
    // An address with an account gets no invitation; bad input is a clear error.
    let out = invite("ivy@example.com");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already taken"));
    let out = invite("not an address");
    assert_eq!(out.status.code(), Some(2));

    // The page the link opens registers too, and only once.
    let out = invite("page@example.com");
    assert!(out.status.success());
    let mail = smtp.wait_for("page@example.com", 1).await;
    let at = mail.body.find("/account/register?invitation=").unwrap();
    let start = at + "/account/register?invitation=".len();
    let token = mail.body[start..start + 64].to_string();
    let form = s
        .http
        .get(s.url(&format!("/account/register?invitation={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    assert!(
        form.text()
            .await
            .unwrap()
            .contains("<label for=\"username\">")
    );
    let issuer = s.state().app.settings.issuer.clone();
    let submit = |username: &str| {
        s.http
            .post(s.url("/account/register"))
            .header("origin", issuer.as_str())
            .form(&[
                ("invitation", token.as_str()),
                ("email", "page@example.com"),
                ("username", username),
                ("password", PASSWORD),
            ])
            .send()
    };
    let r = submit("ivy").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CONFLICT,
        "a taken name shows the form again"
    );
    assert!(r.text().await.unwrap().contains("name=\"invitation\""));
    let r = submit("paige").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    s.login("paige").await;
    let r = submit("paige2").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Under `closed`, an invitation no longer opens sign-up.
    let s = s.restart_with(|c| c.signup = SignupPolicy::Closed).await;
    let body = json!({"email": "x@example.com", "username": "xavier", "password": PASSWORD, "invitation": token});
    expect_error(
        s.post("/v1/auth/register", body).await,
        StatusCode::FORBIDDEN,
        "signup_closed",
    )
    .await;
}

//! Protection (contract §6): throttling, no user enumeration through login, overload,
//! the audit trail and its pruning.
//!
//! Timing tests compare distributions measured side by side on the same server,
//! never absolute times, and take [`TIMING`] so that two of them never overlap.

use crate::support::*;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tessera::config::Config;
use tessera_core::Clock;

/// Held by tests that measure time, so that they do not disturb each other.
pub static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Argon2id at the OWASP parameters the server uses by default (19 MiB, 2 passes).
fn real_argon2(c: &mut Config) {
    c.argon2_memory_kib = 19 * 1024;
    c.argon2_iterations = 2;
    c.argon2_parallelism = 1;
}

/// Loopback is the proxy, so tests choose the client address with X-Forwarded-For.
fn behind_proxy(c: &mut Config) {
    c.trusted_proxies = vec!["127.0.0.1".into()];
    c.login_limit_ip = "100/5m".parse().unwrap();
    c.login_limit_account_ip = "3/5m".parse().unwrap();
    c.login_limit_account = "6/5m".parse().unwrap();
}

async fn login_from(http: &Client, base: &str, ip: &str, login: &str, password: &str) -> Response {
    http.post(format!("{base}/v1/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"login": login, "password": password, "delivery": "body"}))
        .send()
        .await
        .unwrap()
}

async fn expect_status(r: Response, status: StatusCode) -> Value {
    let got = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    body
}

/// A 429 `rate_limited` whose `Retry-After` is at most `window` seconds.
async fn expect_throttled(r: Response, window: u64) {
    let wait: u64 = r
        .headers()
        .get("retry-after")
        .expect("a 429 says when to retry")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=window).contains(&wait), "Retry-After {wait}");
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

async fn events(s: &TestServer) -> Vec<tessera_core::model::AuditEvent> {
    s.state().store.list_audit(None, 0, 10_000).await.unwrap()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_guessing_one_account_is_slowed_the_same_for_unknown_accounts() {
    let s = TestServer::start_with(behind_proxy).await;
    let bob = s.register("bob").await;
    let bob_id = bob["user"]["id"].as_str().unwrap().to_string();
    for login in ["bob", "nobody-here"] {
        for _ in 0..3 {
            let r = login_from(&s.http, &s.base, "203.0.113.5", login, "wrong password").await;
            expect_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        }
        // Spent: refused before any password check, the right password included.
        for _ in 0..3 {
            let r = login_from(&s.http, &s.base, "203.0.113.5", login, PASSWORD).await;
            expect_throttled(r, 300).await;
        }
    }
    // Refused attempts ran no hash and opened nothing: 6 failures, one throttled
    // event per account (the first refusal of the window), naming bob when it is him.
    let ev = events(&s).await;
    assert_eq!(ev.iter().filter(|e| e.kind == "login_failed").count(), 6);
    let throttled: Vec<_> = ev.iter().filter(|e| e.kind == "throttled").collect();
    assert_eq!(throttled.len(), 2, "{throttled:?}");
    assert_eq!(throttled[0].user_id.map(|u| u.to_string()), Some(bob_id));
    assert_eq!(throttled[1].user_id, None);
    assert_eq!(throttled[0].ip.as_deref(), Some("203.0.113.5"));
    // Another address is not affected.
    let r = login_from(&s.http, &s.base, "198.51.100.9", "bob", PASSWORD).await;
    expect_status(r, StatusCode::OK).await;
    // The window ends: the owner gets in, and a success clears the strict count.
    s.clock.advance(301);
    let r = login_from(&s.http, &s.base, "203.0.113.5", "bob", PASSWORD).await;
    expect_status(r, StatusCode::OK).await;
    for _ in 0..2 {
        let r = login_from(&s.http, &s.base, "203.0.113.5", "bob", "wrong again").await;
        expect_status(r, StatusCode::UNAUTHORIZED).await;
    }
    let r = login_from(&s.http, &s.base, "203.0.113.5", "bob", PASSWORD).await;
    expect_status(r, StatusCode::OK).await;
}

/// Guesses spread over many addresses and (on PostgreSQL) over two instances.
async fn distributed_guessing(bases: &[String], http: &Client, clock: &tessera_core::ManualClock) {
    let at = |i: usize| &bases[i % bases.len()];
    let r = http
        .post(format!("{}/v1/auth/register", at(0)))
        .json(&json!({"email": "carol@example.com", "username": "carol", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_status(r, StatusCode::CREATED).await;
    // The owner logs in at home: that counts once against the account.
    let r = login_from(http, at(0), "198.51.100.7", "carol", PASSWORD).await;
    expect_status(r, StatusCode::OK).await;
    let mut refused_at = None;
    for i in 0..20 {
        let ip = format!("203.0.113.{}", 10 + i);
        let r = login_from(http, at(i + 1), &ip, "carol", &format!("guess number {i}")).await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            expect_throttled(r, 300).await;
            refused_at = Some(i);
            break;
        }
        expect_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_eq!(
        refused_at,
        Some(5),
        "6 attempts per account, the owner's included"
    );
    // The flood cannot lock the owner out where they logged in before.
    let r = login_from(http, at(1), "198.51.100.7", "carol", PASSWORD).await;
    expect_status(r, StatusCode::OK).await;
    // From a new address the owner is slowed, not banned.
    let r = login_from(http, at(0), "192.0.2.44", "carol", PASSWORD).await;
    expect_throttled(r, 300).await;
    clock.advance(301);
    let r = login_from(http, at(1), "192.0.2.44", "carol", PASSWORD).await;
    expect_status(r, StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_guessing_is_slowed_but_cannot_lock_the_owner_out() {
    let s = TestServer::start_with(behind_proxy).await;
    distributed_guessing(std::slice::from_ref(&s.base), &s.http, &s.clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_shared_by_instances_on_one_postgres() {
    let Some(a) = TestServer::start_pg_with(behind_proxy).await else {
        return;
    };
    let b = tessera::start(&a.cfg, Arc::new(a.clock.clone()) as Arc<dyn Clock>)
        .await
        .unwrap();
    let bases = [a.base.clone(), format!("http://{}", b.addr)];
    distributed_guessing(&bases, &a.http, &a.clock).await;
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_is_the_socket_unless_a_proxy_is_trusted() {
    // No trusted proxy: X-Forwarded-For is the client's own claim and is ignored.
    let s = TestServer::start_with(|c| c.login_limit_ip = "4/1m".parse().unwrap()).await;
    s.register("dan").await;
    for i in 0..4 {
        let r = login_from(
            &s.http,
            &s.base,
            &format!("203.0.113.{i}"),
            "dan",
            "wrong!!!",
        )
        .await;
        expect_status(r, StatusCode::UNAUTHORIZED).await;
    }
    let r = login_from(&s.http, &s.base, "203.0.113.200", "dan", PASSWORD).await;
    expect_throttled(r, 60).await;
    s.clock.advance(61);
    let r = login_from(&s.http, &s.base, "203.0.113.99", "dan", PASSWORD).await;
    let t = Tokens::from(expect_status(r, StatusCode::OK).await);
    let list: Value = s
        .get_auth("/v1/me/sessions", &t.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list[0]["ip"], "127.0.0.1",
        "the socket address, not the claim"
    );

    // Behind a trusted proxy: read right to left; what the client prepends is ignored.
    let p = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()];
        c.login_limit_ip = "2/1m".parse().unwrap();
    })
    .await;
    p.register("erin").await;
    for forged in ["1.1.1.1", "2.2.2.2, 10.0.0.1"] {
        let xff = format!("{forged}, 203.0.113.50, 10.0.0.7");
        let r = login_from(&p.http, &p.base, &xff, "erin", "wrong!!!").await;
        expect_status(r, StatusCode::UNAUTHORIZED).await;
    }
    let r = login_from(&p.http, &p.base, "3.3.3.3, 203.0.113.50", "erin", PASSWORD).await;
    expect_throttled(r, 60).await;
    // Another client behind the same proxy is someone else.
    let r = login_from(&p.http, &p.base, "203.0.113.51", "erin", PASSWORD).await;
    let t = Tokens::from(expect_status(r, StatusCode::OK).await);
    let list: Value = p
        .get_auth("/v1/me/sessions", &t.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["ip"], "203.0.113.51");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_refresh_are_limited_per_address() {
    let s = TestServer::start_with(|c| {
        c.register_limit_ip = "2/10m".parse().unwrap();
        c.refresh_limit_ip = "3/1m".parse().unwrap();
    })
    .await;
    s.register("fay").await;
    s.register("gus").await;
    let third = json!({"email": "hal@example.com", "username": "hal", "password": PASSWORD});
    expect_throttled(s.post("/v1/auth/register", third.clone()).await, 600).await;
    let t = s.login("fay").await;
    // Forged refresh tokens are refused before any database work, uncounted.
    let mut forged = t.refresh.clone();
    forged.replace_range(10..11, if &forged[10..11] == "A" { "B" } else { "A" });
    for _ in 0..10 {
        expect_error(
            s.refresh(&forged).await,
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
        )
        .await;
    }
    let t1 = s.refresh_ok(&t.refresh).await;
    let t2 = s.refresh_ok(&t1.refresh).await;
    let t3 = s.refresh_ok(&t2.refresh).await;
    expect_throttled(s.refresh(&t3.refresh).await, 60).await;
    s.clock.advance(61);
    s.refresh_ok(&t3.refresh).await;
    s.clock.advance(600);
    s.register("hal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_access_token_cannot_guess_the_password_unthrottled() {
    let s = TestServer::start_with(|c| c.login_limit_account_ip = "3/5m".parse().unwrap()).await;
    let t = s.user("mona").await;
    let change = |current: &str| {
        s.http
            .post(s.url("/v1/me/password"))
            .bearer_auth(&t.access)
            .json(&json!({"current_password": current, "new_password": "a whole new one"}))
            .send()
    };
    for i in 0..3 {
        let r = change(&format!("guess number {i}")).await.unwrap();
        expect_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    }
    expect_throttled(change(PASSWORD).await.unwrap(), 300).await;
    // The same counter guards the login from this address.
    let login = json!({"login": "mona", "password": PASSWORD});
    expect_throttled(s.post("/v1/auth/login", login).await, 300).await;
    s.clock.advance(301);
    let r = change(PASSWORD).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// Runs one login per class in turn, `rounds` times, and returns the latencies (ms).
async fn time_logins(s: &TestServer, classes: &[Value], rounds: usize) -> Vec<Vec<f64>> {
    let mut times = vec![Vec::with_capacity(rounds); classes.len()];
    let mut bodies = vec![None; classes.len()];
    for round in 0..rounds {
        for k in 0..classes.len() {
            // Rotate the order each round so no class always goes first.
            let i = (k + round) % classes.len();
            let started = Instant::now();
            let r = s.post("/v1/auth/login", classes[i].clone()).await;
            let status = r.status();
            let body = r.text().await.unwrap();
            times[i].push(started.elapsed().as_secs_f64() * 1000.0);
            let seen = bodies[i].get_or_insert_with(|| (status, body.clone()));
            assert_eq!(*seen, (status, body), "class {i} answered differently");
        }
    }
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_wrong_password_and_disabled_user_take_the_same_time() {
    let _t = TIMING.lock().await;
    let s = TestServer::start_with(|c| {
        real_argon2(c);
        c.hash_workers = 1;
    })
    .await;
    s.register("ivan").await;
    let off = s.register("olga").await;
    let uid = uuid::Uuid::parse_str(off["user"]["id"].as_str().unwrap()).unwrap();
    s.state().store.set_user_disabled(uid, true).await.unwrap();
    let classes = [
        json!({"login": "nobody-at-all", "password": PASSWORD}),
        json!({"login": "ivan", "password": "not the password"}),
        json!({"login": "olga", "password": PASSWORD}),
        // Control: refused before hashing. Shows what a skipped hash would look like.
        json!({"login": "ivan", "password": "x".repeat(200)}),
    ];
    let times = time_logins(&s, &classes, 64).await;
    let m: Vec<f64> = times.iter().map(|t| median(&mut t.clone())).collect();
    eprintln!(
        "login medians (ms): unknown {:.2}, wrong password {:.2}, disabled {:.2}, no hash {:.2}",
        m[0], m[1], m[2], m[3]
    );
    // The answers are identical in status and body (per class above, across here).
    let mut bodies = Vec::new();
    for c in &classes[..3] {
        bodies.push(
            s.post("/v1/auth/login", c.clone())
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    // Hashing dominates, so a skipped hash would stand out by far.
    let lo = m[..3].iter().cloned().fold(f64::MAX, f64::min);
    assert!(m[3] < lo * 0.5, "the measurement cannot see a hash: {m:?}");
    // The three classes cannot be told apart. Plain medians are fragile here: on a
    // busy 2-core machine login times are bimodal (the other core free or not), and
    // a median jumps between the modes. Requests of one round ran back to back, so
    // their differences cancel the changing load: the median paired difference
    // between two classes stays within 25% of a login (a skipped hash is ~100%).
    let mut all: Vec<f64> = times[..3].concat();
    let login = median(&mut all);
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        let mut d: Vec<f64> = times[a].iter().zip(&times[b]).map(|(x, y)| y - x).collect();
        let d = median(&mut d);
        let q = |c: usize| {
            let mut v = times[c].clone();
            v.sort_by(|x, y| x.partial_cmp(y).unwrap());
            v[v.len() / 4]
        };
        eprintln!(
            "paired median difference, classes {a} and {b}: {d:.2} ms of {login:.2} ms; lower quartiles {:.2} {:.2}",
            q(a),
            q(b)
        );
        assert!(
            d.abs() <= 0.25 * login,
            "login time reveals the class: classes {a} and {b} differ by {d:.2} ms ({m:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_refused_without_queueing_and_does_not_slow_refresh_or_me() {
    let _t = TIMING.lock().await;
    let s = TestServer::start_with(|c| {
        real_argon2(c);
        c.hash_workers = 1;
        c.hash_queue = 4;
    })
    .await;
    let mut t = s.user("flood").await;
    let flooding = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut flooders = Vec::new();
    for n in 0..12 {
        let (http, url) = (s.http.clone(), s.url("/v1/auth/login"));
        let (flooding, stop, refused) = (flooding.clone(), stop.clone(), refused.clone());
        flooders.push(tokio::spawn(async move {
            // (latency ms, status) of every flood request
            let mut seen: Vec<(f64, u16)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if !flooding.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let started = Instant::now();
                let body = json!({"login": format!("flood-{n}"), "password": "guess guess"});
                let r = http.post(&url).json(&body).send().await.unwrap();
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                let status = r.status();
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    assert!(r.headers().contains_key("retry-after"));
                    let b: Value = r.json().await.unwrap();
                    assert_eq!(b["error"], "overloaded");
                    refused.fetch_add(1, Ordering::Relaxed);
                    // Clients that back off a little: the flood stays beyond the pool
                    // (12 clients for 1 worker and 4 queue places) without the test's
                    // own HTTP traffic eating the 2 cores the server runs on.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                } else {
                    assert_eq!(status, StatusCode::UNAUTHORIZED);
                }
                seen.push((ms, status.as_u16()));
            }
            seen
        }));
    }
    // Probes alternate /v1/me and a refresh; phases alternate quiet and flooded so
    // that both distributions see the same background noise.
    let (mut quiet, mut flooded) = (Vec::new(), Vec::new());
    let mut most_running = 0;
    for phase in 0..10 {
        let flood = phase % 2 == 1;
        flooding.store(flood, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(if flood { 200 } else { 50 })).await;
        for i in 0..16 {
            let started = Instant::now();
            if i % 2 == 0 {
                assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
            } else {
                t = s.refresh_ok(&t.refresh).await;
            }
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if flood {
                most_running = most_running.max(s.state().hasher.running());
                flooded.push(ms);
            } else {
                quiet.push(ms);
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for f in flooders {
        seen.extend(f.await.unwrap());
    }
    let mut rejected: Vec<f64> = seen.iter().filter(|x| x.1 == 503).map(|x| x.0).collect();
    let mut hashed: Vec<f64> = seen.iter().filter(|x| x.1 == 401).map(|x| x.0).collect();
    let (q, f) = (median(&mut quiet), median(&mut flooded));
    let (rej, hash) = (median(&mut rejected), median(&mut hashed));
    eprintln!(
        "flood: {} refused, {} hashed; medians (ms): refused {rej:.2}, hashed {hash:.2}, \
         refresh/me quiet {q:.2}, flooded {f:.2}",
        rejected.len(),
        hashed.len()
    );
    // (Each refusal takes the pause, so a dozen flooders get a few dozen.)
    assert!(
        refused.load(Ordering::Relaxed) > 20,
        "the flood went beyond the pool"
    );
    assert!(most_running <= 1, "never more hashes than workers");
    // Refused without queueing: a refusal waits only the fixed pause that keeps
    // the flood from taking the hashes' CPU, never for the queue of hashes
    // (4 queued behind one worker would be several hashes long).
    let pause = tessera_app::hashing::SATURATED_PAUSE.as_secs_f64() * 1000.0;
    assert!(
        rej >= pause && rej < pause + hash,
        "503 {rej:.2} ms vs the {pause} ms pause and a hashed login {hash:.2} ms"
    );
    // Refresh and /v1/me never wait for the hash pool: even flooded they take a
    // fraction of one hash. What remains is sharing 2 cores with a busy hash
    // worker (and whatever else runs on the machine): a small factor at most.
    assert!(
        f < hash * 0.25,
        "refresh/me {f:.2} ms vs a hashed login {hash:.2} ms"
    );
    assert!(
        f < q * 6.0,
        "refresh/me flooded {f:.2} ms vs quiet {q:.2} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_records_each_event_and_the_cli_prints_it() {
    let s = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.login_limit_account_ip = "2/5m".parse().unwrap();
    })
    .await;
    let from = "203.0.113.77";
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-for", from.parse().unwrap());
    headers.insert("user-agent", "AuditTest/1.0".parse().unwrap());
    let http = Client::builder().default_headers(headers).build().unwrap();
    let post = |path: &str, body: Value| http.post(s.url(path)).json(&body).send();
    let started = s.clock_now();

    let reg = post(
        "/v1/auth/register",
        json!({"email": "gina@example.com", "username": "gina", "password": PASSWORD}),
    );
    let gina = expect_status(reg.await.unwrap(), StatusCode::CREATED).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let login = json!({"login": "gina", "password": PASSWORD, "delivery": "body"});
    let a = Tokens::from(
        expect_status(
            post("/v1/auth/login", login.clone()).await.unwrap(),
            StatusCode::OK,
        )
        .await,
    );
    let bad = post(
        "/v1/auth/login",
        json!({"login": "nobody", "password": "whatever1"}),
    );
    expect_status(bad.await.unwrap(), StatusCode::UNAUTHORIZED).await;
    // A refresh token used again after the grace window: theft.
    let r = post("/v1/auth/refresh", json!({"refresh_token": a.refresh}));
    expect_status(r.await.unwrap(), StatusCode::OK).await;
    s.clock.advance(11);
    let r = post("/v1/auth/refresh", json!({"refresh_token": a.refresh}));
    expect_error(
        r.await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    let b = Tokens::from(
        expect_status(
            post("/v1/auth/login", login.clone()).await.unwrap(),
            StatusCode::OK,
        )
        .await,
    );
    let c = Tokens::from(
        expect_status(
            post("/v1/auth/login", login.clone()).await.unwrap(),
            StatusCode::OK,
        )
        .await,
    );
    let r = http
        .delete(s.url(&format!("/v1/me/sessions/{}", c.session_id)))
        .bearer_auth(&b.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .post(s.url("/v1/me/password"))
        .bearer_auth(&b.access)
        .json(&json!({"current_password": PASSWORD, "new_password": "a new password 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&b.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for _ in 0..2 {
        let r = post(
            "/v1/auth/login",
            json!({"login": "gina", "password": "wrong password"}),
        );
        expect_status(r.await.unwrap(), StatusCode::UNAUTHORIZED).await;
    }
    let r = post(
        "/v1/auth/login",
        json!({"login": "gina", "password": "a new password 1"}),
    );
    expect_throttled(r.await.unwrap(), 300).await;

    let ev = events(&s).await;
    let ended = s.clock_now();
    for (kind, with_session) in [
        ("register", false),
        ("login_ok", true),
        ("login_failed", false),
        ("refresh_reuse", true),
        ("session_revoked", true),
        ("password_changed", true),
        ("logout", true),
        ("throttled", false),
    ] {
        let e = ev
            .iter()
            .find(|e| e.kind == kind && e.user_id.map(|u| u.to_string()).as_deref() == Some(&gina))
            .unwrap_or_else(|| panic!("no {kind} event for gina: {ev:?}"));
        assert!((started..=ended).contains(&e.at), "{kind} at {}", e.at);
        assert_eq!(e.ip.as_deref(), Some(from), "{kind}");
        assert_eq!(e.user_agent.as_deref(), Some("AuditTest/1.0"), "{kind}");
        assert_eq!(e.session_id.is_some(), with_session, "{kind}");
    }
    let reuse = ev.iter().find(|e| e.kind == "refresh_reuse").unwrap();
    assert_eq!(reuse.session_id.unwrap().to_string(), a.session_id);
    let unknown = ev
        .iter()
        .find(|e| e.kind == "login_failed" && e.user_id.is_none())
        .unwrap();
    assert_eq!(unknown.detail.as_deref(), Some("unknown account"));

    // The operator reads it with the CLI.
    let dir = s.dir.path();
    let out = tessera()
        .args(["audit", "--user", "gina@example.com", "--since", "1h"])
        .arg("--data-dir")
        .arg(dir)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "register",
        "login_ok",
        "login_failed",
        "refresh_reuse",
        "session_revoked",
        "password_changed",
        "logout",
        "throttled",
        "gina (",
        "ip=203.0.113.77",
        "AuditTest/1.0",
    ] {
        assert!(text.contains(needle), "audit output lacks {needle}: {text}");
    }
    assert!(
        !text.contains("unknown account"),
        "another user's event: {text}"
    );
    let by_id = tessera()
        .args(["audit", "--user", &gina, "--since", "2020-01-01T00:00:00Z"])
        .arg("--data-dir")
        .arg(dir)
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&by_id.stdout), text);
    let out = tessera()
        .args(["audit", "--user", "nobody"])
        .arg("--data-dir")
        .arg(dir)
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));
    let out = tessera()
        .args(["audit", "--since", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_audit_events_are_pruned_after_the_retention() {
    let s = TestServer::start_with(|c| c.audit_retention = "1d".parse().unwrap()).await;
    s.register("ken").await;
    let wrong = json!({"login": "ken", "password": "wrong password"});
    expect_status(
        s.post("/v1/auth/login", wrong.clone()).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let old = events(&s).await;
    assert!(old.iter().any(|e| e.kind == "register"), "{old:?}");
    s.clock.advance(86_400 + 1);
    expect_status(
        s.post("/v1/auth/login", wrong).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Start-up prunes; the periodic job does the same while running.
    let s = s.restart().await;
    let now = s.clock_now();
    let ev = events(&s).await;
    assert!(ev.iter().all(|e| e.at > now - 86_400), "{ev:?}");
    assert_eq!(
        ev.iter().filter(|e| e.kind == "login_failed").count(),
        1,
        "{ev:?}"
    );
}

#[test]
fn protection_settings_are_checked_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    for (k, v, named) in [
        ("TESSERA_TRUSTED_PROXIES", "10.0.0.0/33", "trusted_proxies"),
        (
            "TESSERA_TRUSTED_PROXIES",
            "proxy.example",
            "trusted_proxies",
        ),
        ("TESSERA_LOGIN_LIMIT_IP", "lots", "login_limit_ip"),
        ("TESSERA_LOGIN_LIMIT_ACCOUNT", "0/5m", "login_limit_account"),
        (
            "TESSERA_REFRESH_LIMIT_IP",
            "5 per minute",
            "refresh_limit_ip",
        ),
        ("TESSERA_AUDIT_RETENTION", "0", "audit_retention"),
    ] {
        let out = tessera()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env(k, v)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{k}={v}: {err}");
        assert!(err.contains(named), "{k}={v} should name {named}: {err}");
    }
    let out = tessera()
        .args(["config", "show"])
        .env("TESSERA_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")
        .env("TESSERA_LOGIN_LIMIT_ACCOUNT_IP", "off")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        r#"trusted_proxies = ["10.0.0.0/8", "192.0.2.1"]"#,
        r#"login_limit_ip = "100/5m""#,
        r#"login_limit_account_ip = "off""#,
        r#"audit_retention = "90d""#,
    ] {
        assert!(text.contains(line), "config show lacks {line}: {text}");
    }
}

//! The soak test (issue #13, point 6): a mixed load on two instances over a
//! PostgreSQL server of the test's own, with faults injected while it runs — one
//! instance SIGKILLed and restarted, then the database restarted — and at the
//! end the invariants checked from the database and the clients' own records.
//!
//! `TESSERA_SOAK_SECS` sets the length (default 24 s in the test suite);
//! `benches/soak.sh` runs it for longer.

use crate::crash::{Server, serve_env};
use crate::pgcluster::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_core::RefreshTokenCodec;

const WORKERS: usize = 12;
const PASSWORDS: [&str; 2] = [crate::support::PASSWORD, "another correct horse battery"];

/// A session as its client knows it.
#[derive(Clone, Debug)]
struct Held {
    sid: uuid::Uuid,
    tokens: Vec<String>,
    access: String,
}

/// Everything the clients did that the end checks need.
#[derive(Default)]
struct Records {
    /// Sessions the client still holds (or let go of without ending them).
    live: Vec<Held>,
    /// Ended by a replay answered `refresh_token_reused`.
    reused: Vec<uuid::Uuid>,
    /// Ended by a logout answered 204.
    logged_out: Vec<uuid::Uuid>,
    /// Let go of after an answer that did not say what happened (a fault).
    unknown: Vec<uuid::Uuid>,
    wrong: Vec<String>,
    counts: HashMap<String, u64>,
}

struct Shared {
    bases: Mutex<Vec<String>>,
    /// While a fault is injected (and a few seconds after): 503s and dropped
    /// connections are expected there.
    in_fault: AtomicBool,
    fault_answers: AtomicU64,
    records: Mutex<Records>,
    stop: AtomicBool,
    codec: RefreshTokenCodec,
}

impl Shared {
    fn count(&self, what: &str) {
        *self
            .records
            .lock()
            .unwrap()
            .counts
            .entry(what.to_string())
            .or_default() += 1;
    }

    /// `None` for an answer a fault explains (503 overloaded, or no answer during
    /// a fault window); anything else unexpected is recorded as wrong.
    fn judge(
        &self,
        what: &str,
        r: Result<(StatusCode, bool, Value), String>,
    ) -> Option<(StatusCode, Value)> {
        let fault = self.in_fault.load(Ordering::SeqCst);
        match r {
            Ok((StatusCode::SERVICE_UNAVAILABLE, retry, body))
                if retry && body["error"] == "overloaded" =>
            {
                self.count("503 overloaded");
                if fault {
                    self.fault_answers.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            Ok((status, _, body)) if status.is_server_error() => {
                self.records
                    .lock()
                    .unwrap()
                    .wrong
                    .push(format!("{what}: {status} {body}"));
                None
            }
            Ok((status, _, body)) => Some((status, body)),
            Err(_) if fault => {
                self.count("no answer during a fault");
                self.fault_answers.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                self.records
                    .lock()
                    .unwrap()
                    .wrong
                    .push(format!("{what}: no answer outside a fault: {e}"));
                None
            }
        }
    }
}

async fn send(req: reqwest::RequestBuilder) -> Result<(StatusCode, bool, Value), String> {
    let r = req
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let retry = r.headers().contains_key("retry-after");
    Ok((status, retry, r.json().await.unwrap_or(Value::Null)))
}

/// A small deterministic generator: each worker's choices repeat run to run.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn worker(w: usize, shared: Arc<Shared>) {
    let http = reqwest::Client::new();
    let name = format!("soak{w}");
    let mut password = 0usize;
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1));
    let base = |dice: &mut Dice| {
        let b = shared.bases.lock().unwrap();
        b[dice.roll(b.len() as u64) as usize].clone()
    };
    let mut held: Option<Held> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(mut s) = held.take() else {
            // Log in; after a password change that may not have gone through,
            // the other password is the right one.
            let r = send(http.post(format!("{}/v1/auth/login", base(&mut dice))).json(
                &json!({"login": name, "password": PASSWORDS[password], "delivery": "body"}),
            ))
            .await;
            match shared.judge("login", r) {
                Some((StatusCode::OK, body)) => {
                    let token = body["refresh_token"].as_str().unwrap().to_string();
                    let sid = shared.codec.decode(&token).unwrap().session_id;
                    shared.count("login");
                    held = Some(Held {
                        sid,
                        tokens: vec![token],
                        access: body["access_token"].as_str().unwrap().to_string(),
                    });
                }
                Some((StatusCode::UNAUTHORIZED, _)) => password = 1 - password,
                Some((status, body)) => shared
                    .records
                    .lock()
                    .unwrap()
                    .wrong
                    .push(format!("login: {status} {body}")),
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
            continue;
        };
        let current = s.tokens.last().unwrap().clone();
        match dice.roll(100) {
            // One refresh, or three at once of the same token on both instances.
            r @ 0..=54 => {
                let n = if r < 10 { 3 } else { 1 };
                let mut at_once = tokio::task::JoinSet::new();
                for _ in 0..n {
                    let req = http
                        .post(format!("{}/v1/auth/refresh", base(&mut dice)))
                        .json(&json!({"refresh_token": current, "delivery": "body"}));
                    at_once.spawn(send(req));
                }
                let mut successors = std::collections::HashSet::new();
                let mut access = None;
                for r in at_once.join_all().await {
                    match shared.judge("refresh", r) {
                        Some((StatusCode::OK, body)) => {
                            successors.insert(body["refresh_token"].as_str().unwrap().to_string());
                            access = body["access_token"].as_str().map(str::to_string);
                        }
                        Some((status, body)) => shared.records.lock().unwrap().wrong.push(format!(
                            "refresh of the current token of {}: {status} {body}",
                            s.sid
                        )),
                        None => {}
                    }
                }
                if successors.len() > 1 {
                    shared
                        .records
                        .lock()
                        .unwrap()
                        .wrong
                        .push(format!("{} concurrent refreshes diverged", s.sid));
                }
                if let Some(next) = successors.into_iter().next() {
                    shared.count(if n == 3 { "refresh x3" } else { "refresh" });
                    s.tokens.push(next);
                    s.access = access.unwrap();
                }
                held = Some(s);
            }
            55..=74 => {
                let r = send(
                    http.get(format!("{}/v1/me", base(&mut dice)))
                        .bearer_auth(&s.access),
                )
                .await;
                match shared.judge("/v1/me", r) {
                    Some((StatusCode::OK, _)) | None => shared.count("/v1/me"),
                    Some((status, body)) => shared
                        .records
                        .lock()
                        .unwrap()
                        .wrong
                        .push(format!("/v1/me of live {}: {status} {body}", s.sid)),
                }
                held = Some(s);
            }
            // A replay of a token superseded twice over: theft, always.
            75..=82 if s.tokens.len() >= 3 => {
                let old = s.tokens[s.tokens.len() - 3].clone();
                let r = send(
                    http.post(format!("{}/v1/auth/refresh", base(&mut dice)))
                        .json(&json!({"refresh_token": old, "delivery": "body"})),
                )
                .await;
                match shared.judge("replay", r) {
                    Some((StatusCode::UNAUTHORIZED, body))
                        if body["error"] == "refresh_token_reused" =>
                    {
                        shared.count("replay caught");
                        shared.records.lock().unwrap().reused.push(s.sid);
                    }
                    Some((status, body)) => shared.records.lock().unwrap().wrong.push(format!(
                        "replay of a superseded token of {}: {status} {body}",
                        s.sid
                    )),
                    None => shared.records.lock().unwrap().unknown.push(s.sid),
                }
            }
            83..=89 => {
                let r = send(
                    http.post(format!("{}/v1/auth/logout", base(&mut dice)))
                        .bearer_auth(&s.access),
                )
                .await;
                match shared.judge("logout", r) {
                    Some((StatusCode::NO_CONTENT, _)) => {
                        shared.count("logout");
                        shared.records.lock().unwrap().logged_out.push(s.sid);
                    }
                    Some((status, body)) => shared
                        .records
                        .lock()
                        .unwrap()
                        .wrong
                        .push(format!("logout of {}: {status} {body}", s.sid)),
                    None => shared.records.lock().unwrap().unknown.push(s.sid),
                }
            }
            90..=93 => {
                let r = send(
                    http.post(format!("{}/v1/me/password", base(&mut dice)))
                        .bearer_auth(&s.access)
                        .json(&json!({"current_password": PASSWORDS[password],
                                      "new_password": PASSWORDS[1 - password]})),
                )
                .await;
                match shared.judge("password change", r) {
                    Some((StatusCode::NO_CONTENT, _)) => {
                        shared.count("password change");
                        password = 1 - password;
                    }
                    // An earlier change answered 503 but went through.
                    Some((StatusCode::FORBIDDEN, _)) => password = 1 - password,
                    Some((status, body)) => shared
                        .records
                        .lock()
                        .unwrap()
                        .wrong
                        .push(format!("password change: {status} {body}")),
                    None => {}
                }
                held = Some(s);
            }
            // Leave the session as it is and open another: it must still work at
            // the end.
            _ => shared.records.lock().unwrap().live.push(s),
        }
    }
    if let Some(s) = held {
        shared.records.lock().unwrap().live.push(s);
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn connections(url: &str) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = 'postgres' \
         AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    let _ = c.close().await;
    n
}

/// Waits until `base` answers `/healthz` (a restarted instance).
async fn until_up(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} never became ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_an_instance_killed_and_the_database_restarted() {
    let Some(bin) = pg_bin() else {
        unavailable("PostgreSQL's server programs (initdb, pg_ctl) are not installed");
        return;
    };
    let secs: u64 = std::env::var("TESSERA_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
        .max(9);
    let db = Cluster::primary(&bin, false);
    let url = db.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TESSERA_DATABASE_ACQUIRE_TIMEOUT", "2s"),
        ("TESSERA_DATABASE_POOL_SIZE", "8"),
        // Short, so the connections the load opened are seen to close again.
        ("TESSERA_DATABASE_IDLE_TIMEOUT", "2s"),
        ("TESSERA_LOGIN_LIMIT_IP", "off"),
        ("TESSERA_LOGIN_LIMIT_ACCOUNT", "off"),
        ("TESSERA_LOGIN_LIMIT_ACCOUNT_IP", "off"),
    ];
    let a = serve_env(&dir.path().join("a"), Some(&url), &env);
    let mut b: Server = serve_env(&dir.path().join("b"), Some(&url), &env);
    let http = reqwest::Client::new();
    for w in 0..WORKERS {
        let name = format!("soak{w}");
        let r = http
            .post(format!("{}/v1/auth/register", a.base))
            .json(&json!({"email": format!("{name}@example.com"), "username": name, "password": PASSWORDS[0]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_idle, conns_idle) = (rss_kib(a.pid()), connections(&url).await);
    let shared = Arc::new(Shared {
        bases: Mutex::new(vec![a.base.clone(), b.base.clone()]),
        in_fault: AtomicBool::new(false),
        fault_answers: AtomicU64::new(0),
        records: Mutex::new(Records::default()),
        stop: AtomicBool::new(false),
        codec: RefreshTokenCodec::new(crate::support::SHARED_REFRESH_SECRET.as_bytes()),
    });
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(w, shared.clone())))
        .collect();
    let started = Instant::now();

    // Fault 1: instance b SIGKILLed, restarted a second later (on a new port).
    tokio::time::sleep(Duration::from_secs(secs / 3)).await;
    shared.in_fault.store(true, Ordering::SeqCst);
    let kill_at = Instant::now();
    drop(b);
    tokio::time::sleep(Duration::from_secs(1)).await;
    b = serve_env(&dir.path().join("b"), Some(&url), &env);
    until_up(&b.base).await;
    let instance_back = kill_at.elapsed();
    shared.bases.lock().unwrap()[1] = b.base.clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    shared.in_fault.store(false, Ordering::SeqCst);
    let refused_1 = shared.fault_answers.swap(0, Ordering::SeqCst);

    // Fault 2: the database stopped at once (no checkpoint) and started again.
    tokio::time::sleep(Duration::from_secs(secs / 3).saturating_sub(Duration::from_secs(3))).await;
    shared.in_fault.store(true, Ordering::SeqCst);
    let restart_at = Instant::now();
    db.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.restart();
    let db_down = restart_at.elapsed();
    let probe = http.clone();
    let recovered = loop {
        let ok = probe
            .get(format!("{}/readyz", a.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break restart_at.elapsed();
        }
        assert!(
            restart_at.elapsed() < Duration::from_secs(20),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    shared.in_fault.store(false, Ordering::SeqCst);
    let refused_2 = shared.fault_answers.swap(0, Ordering::SeqCst);

    let rest = Duration::from_secs(secs).saturating_sub(started.elapsed());
    tokio::time::sleep(rest.max(Duration::from_secs(2))).await;
    shared.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    // Idle again: memory and connections back near where they were (the pools
    // close idle connections after 2 s; the reaper runs every second or so).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (rss_after, conns_after) = (rss_kib(a.pid()), connections(&url).await);

    let records = std::mem::take(&mut *shared.records.lock().unwrap());
    assert!(records.wrong.is_empty(), "{:#?}", records.wrong);

    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    // Every replay answered as theft, and every logout, ended its session.
    for sid in records.reused.iter().chain(&records.logged_out) {
        let (revoked,): (Option<i64>,) =
            sqlx::query_as("SELECT revoked_at FROM sessions WHERE id = $1")
                .bind(sid)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(
            revoked.is_some(),
            "session {sid} was answered as ended but is not"
        );
    }
    // Every session a client still holds has one current counter: the one of
    // its last token (or one more, when the answer to the last rotation was lost
    // in a fault), and that token still rotates to exactly the next one.
    let mut checked = 0;
    for s in &records.live {
        let last = shared
            .codec
            .decode(s.tokens.last().unwrap())
            .unwrap()
            .counter;
        let (stored, revoked): (i64, Option<i64>) =
            sqlx::query_as("SELECT counter, revoked_at FROM sessions WHERE id = $1")
                .bind(s.sid)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if revoked.is_some() {
            // Only a password change (ending the user's other sessions) ends a
            // session its client still holds.
            let (reason,): (Option<String>,) =
                sqlx::query_as("SELECT revoke_reason FROM sessions WHERE id = $1")
                    .bind(s.sid)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            assert!(
                reason.as_deref().is_some_and(|r| r.contains("password")),
                "held session {} ended: {reason:?}",
                s.sid
            );
            continue;
        }
        assert!(
            stored as u64 == last || stored as u64 == last + 1,
            "session {}: client holds {last}, database {stored}",
            s.sid
        );
        let r = http
            .post(format!("{}/v1/auth/refresh", a.base))
            .json(&json!({"refresh_token": s.tokens.last().unwrap(), "delivery": "body"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "session {}", s.sid);
        let body: Value = r.json().await.unwrap();
        let next = shared
            .codec
            .decode(body["refresh_token"].as_str().unwrap())
            .unwrap();
        assert_eq!(next.counter, last + 1, "session {}", s.sid);
        checked += 1;
    }
    let _ = conn.close().await;
    eprintln!(
        "soak ({secs} s, {WORKERS} clients, 2 instances): {:?}; \
         fault 1 (instance SIGKILLed): back after {:.2} s, {refused_1} requests answered 503 \
         overloaded or not answered (the killed instance) meanwhile; fault 2 (database stopped \
         immediately, restarted after {:.2} s): serving again {:.2} s after the stop, \
         {refused_2} requests answered 503 overloaded; no other 5xx, no wrong answer; \
         {} replays and {} logouts ended their sessions; {checked} held sessions each \
         had one current counter; {} sessions let go of after an unclear answer; \
         RSS of the surviving instance {rss_idle} KiB idle before, {rss_after} KiB idle \
         after; database connections {conns_idle} idle before, {conns_after} after",
        records.counts,
        instance_back.as_secs_f64(),
        db_down.as_secs_f64(),
        recovered.as_secs_f64(),
        records.reused.len(),
        records.logged_out.len(),
        records.unknown.len(),
    );
    assert!(
        checked > 0 && !records.reused.is_empty(),
        "the load did too little"
    );
    assert!(
        rss_after < rss_idle * 2 + 32 * 1024,
        "memory did not settle: {rss_idle} KiB -> {rss_after} KiB"
    );
    assert!(
        conns_after <= conns_idle.max(2) + 2,
        "connections did not return to their idle level: {conns_idle} -> {conns_after}"
    );
    drop((a, b, db));
}

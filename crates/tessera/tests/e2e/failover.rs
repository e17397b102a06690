//! PostgreSQL failover and connection poolers (issue #13, points 2 and 3).
//!
//! * A primary with a synchronous streaming standby, both started here; two
//!   Tessera processes reach them through a multi-host connection string (one the
//!   URL form, one libpq's keyword form) with `target_session_attrs=read-write`.
//!   Under a refresh storm the primary is SIGKILLed, then the standby promoted.
//! * PgBouncer in transaction pooling mode, with fewer server connections than
//!   Tessera has clients, between two instances and PostgreSQL.

use crate::crash::{Chain, check_after_restart, open_chains, pg_counter, serve_env};
use crate::pgcluster::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the clients of a load saw.
#[derive(Default)]
pub(crate) struct Tally {
    pub ok: AtomicU64,
    /// 503 `overloaded` with `Retry-After`: the answer a fault may give.
    pub refused: AtomicU64,
    /// Anything else: another 5xx, a 401 for a token that is current, no answer.
    pub wrong: Mutex<Vec<String>>,
    /// When the fault began, and per instance the first success after it.
    pub fault_at: Mutex<Option<Instant>>,
    pub back_at: Mutex<Vec<Option<Instant>>>,
    pub last_refusal: Mutex<Option<Instant>>,
}

impl Tally {
    pub fn new(instances: usize) -> Arc<Self> {
        Arc::new(Self {
            back_at: Mutex::new(vec![None; instances]),
            ..Self::default()
        })
    }

    /// Counts one answer to a request sent at `sent`; a success to a request sent
    /// after the fault began marks its instance as recovered.
    fn saw(
        &self,
        instance: usize,
        sent: Instant,
        what: &str,
        status: StatusCode,
        retry_after: bool,
        body: &Value,
    ) {
        if status.is_success() {
            self.ok.fetch_add(1, Ordering::Relaxed);
            if self.fault_at.lock().unwrap().is_some_and(|f| sent > f) {
                let mut back = self.back_at.lock().unwrap();
                back[instance].get_or_insert_with(Instant::now);
            }
        } else if status == StatusCode::SERVICE_UNAVAILABLE
            && retry_after
            && body["error"] == "overloaded"
        {
            self.refused.fetch_add(1, Ordering::Relaxed);
            *self.last_refusal.lock().unwrap() = Some(Instant::now());
        } else {
            self.wrong
                .lock()
                .unwrap()
                .push(format!("{what} on instance {instance}: {status} {body}"));
        }
    }

    pub fn fault(&self) {
        *self.fault_at.lock().unwrap() = Some(Instant::now());
    }

    /// Seconds from the fault to each instance's first success after it.
    pub fn recovery(&self) -> Vec<Option<f64>> {
        let at = self.fault_at.lock().unwrap().expect("a fault was injected");
        self.back_at
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.map(|b| b.duration_since(at).as_secs_f64()))
            .collect()
    }
}

async fn call(req: reqwest::RequestBuilder) -> Result<(StatusCode, bool, Value), reqwest::Error> {
    let r = req.timeout(Duration::from_secs(20)).send().await?;
    let status = r.status();
    let retry_after = r.headers().contains_key("retry-after");
    Ok((status, retry_after, r.json().await.unwrap_or(Value::Null)))
}

/// Each chain refreshes in a loop on instance `i % n` and reads `/v1/me` with
/// every access token it gets, until `stop`. A refusal keeps the token held.
type Driven = (
    Arc<AtomicBool>,
    Arc<Tally>,
    Vec<tokio::task::JoinHandle<()>>,
);

/// Starts [`drive_until`] with a stop flag and a tally of its own.
fn drive(bases: Vec<String>, chains: Vec<Arc<Mutex<Chain>>>) -> Driven {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Tally::new(bases.len());
    let tasks = drive_until(bases, chains, stop.clone(), tally.clone());
    (stop, tally, tasks)
}

fn drive_until(
    bases: Vec<String>,
    chains: Vec<Arc<Mutex<Chain>>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::new();
    chains
        .into_iter()
        .enumerate()
        .map(|(i, chain)| {
            let (http, bases, stop, tally) =
                (http.clone(), bases.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let n = i % bases.len();
                let base = &bases[n];
                while !stop.load(Ordering::SeqCst) {
                    let token = chain.lock().unwrap().tokens.last().unwrap().clone();
                    let sent = Instant::now();
                    let r = call(
                        http.post(format!("{base}/v1/auth/refresh"))
                            .json(&json!({"refresh_token": token, "delivery": "body"})),
                    )
                    .await;
                    let (status, retry_after, body) = match r {
                        Ok(r) => r,
                        Err(e) => {
                            tally
                                .wrong
                                .lock()
                                .unwrap()
                                .push(format!("refresh: no answer: {e}"));
                            return;
                        }
                    };
                    tally.saw(n, sent, "refresh", status, retry_after, &body);
                    if status != StatusCode::OK {
                        if status != StatusCode::SERVICE_UNAVAILABLE {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                        continue;
                    }
                    let next = body["refresh_token"].as_str().unwrap().to_string();
                    chain.lock().unwrap().tokens.push(next);
                    let access = body["access_token"].as_str().unwrap().to_string();
                    let sent = Instant::now();
                    if let Ok((status, retry_after, body)) =
                        call(http.get(format!("{base}/v1/me")).bearer_auth(access)).await
                    {
                        tally.saw(n, sent, "/v1/me", status, retry_after, &body);
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_under_load_fails_over_to_the_promoted_standby() {
    let Some(bin) = pg_bin() else {
        unavailable("PostgreSQL's server programs (initdb, pg_ctl) are not installed");
        return;
    };
    let primary = Cluster::primary(&bin, true);
    let standby = Cluster::standby_of(&primary);
    wait_until(
        &primary.url("postgres"),
        "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync')",
        Duration::from_secs(30),
    )
    .await;
    let (p, s) = (primary.port, standby.port);
    let url = format!(
        "postgres://postgres@127.0.0.1:{p},127.0.0.1:{s}/postgres?target_session_attrs=read-write"
    );
    let keywords = format!(
        "host=127.0.0.1,127.0.0.1 port={p},{s} user=postgres dbname=postgres \
         target_session_attrs=read-write connect_timeout=2"
    );
    let dir = tempfile::tempdir().unwrap();
    let env = [("TESSERA_DATABASE_ACQUIRE_TIMEOUT", "2s")];
    let a = serve_env(&dir.path().join("a"), Some(&url), &env);
    let b = serve_env(&dir.path().join("b"), Some(&keywords), &env);
    let chains = open_chains(&a.base).await;
    let (stop, tally, tasks) = drive(vec![a.base.clone(), b.base.clone()], chains.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = tally.ok.load(Ordering::SeqCst);
    primary.kill();
    tally.fault();
    let killed = Instant::now();
    // Time for every instance to notice; no primary exists meanwhile.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    standby.promote();
    let promoted = killed.elapsed();
    let deadline = Instant::now() + Duration::from_secs(15);
    while tally.back_at.lock().unwrap().iter().any(Option::is_none) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered = tally.ok.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let wrong = tally.wrong.lock().unwrap().clone();
    assert!(
        wrong.is_empty(),
        "answers other than 200 and 503 overloaded: {wrong:?}"
    );
    let recovery = tally.recovery();
    let refused = tally.refused.load(Ordering::SeqCst);
    let after = tally.ok.load(Ordering::SeqCst) - recovered;
    eprintln!(
        "failover: {before} successes before the kill; standby promoted {:.2} s after it; \
         first success of a request sent after the kill, per instance: {recovery:.2?} s \
         after the kill; {refused} requests answered 503 overloaded with Retry-After, \
         no other failure; {after} successes in the 1.5 s after both recovered",
        promoted.as_secs_f64(),
    );
    assert!(
        after > 16,
        "the load goes on after the failover ({after} successes)"
    );
    for (i, r) in recovery.iter().enumerate() {
        let r = r.unwrap_or_else(|| panic!("instance {i} never wrote again after the failover"));
        assert!(
            r > promoted.as_secs_f64() - 0.5,
            "instance {i} succeeded {r:.2} s after the kill, before a primary existed"
        );
        assert!(
            r < promoted.as_secs_f64() + 5.0,
            "instance {i} found the new primary only {r:.2} s after the kill"
        );
    }
    let new_primary = standby.url("postgres");
    check_after_restart(&b.base, &chains, async |sid| {
        pg_counter(&new_primary, sid).await
    })
    .await;
    drop((a, b));
}

/// Through PgBouncer in transaction mode with two server connections for
/// sixteen clients on two instances: rotations stay compare-and-set, concurrent
/// presentations converge, reuse is caught, nothing fails for lack of a prepared
/// statement or session state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_pgbouncer_in_transaction_mode() {
    let Some(url) = crate::support::pg_url() else {
        return;
    };
    let Some(bouncer_bin) = pgbouncer_bin() else {
        unavailable("pgbouncer is not installed (apt-get install pgbouncer)");
        return;
    };
    let server: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let db = format!("tessera_bouncer_{}", uuid::Uuid::now_v7().simple());
    let admin = Admin(url.clone(), db.clone());
    admin.sql(&format!("CREATE DATABASE {db}")).await;
    let bouncer = Bouncer::start(&bouncer_bin, server.get_port(), 2);
    let via = format!("postgres://postgres@127.0.0.1:{}/{db}", bouncer.port);
    let dir = tempfile::tempdir().unwrap();
    let env = [("TESSERA_DATABASE_POOLER", "transaction")];
    let a = serve_env(&dir.path().join("a"), Some(&via), &env);
    let b = serve_env(&dir.path().join("b"), Some(&via), &env);
    let chains = open_chains(&a.base).await;
    // Twenty presentations of one token at once, half on each instance.
    let http = reqwest::Client::new();
    let token = chains[0].lock().unwrap().tokens[0].clone();
    let mut at_once = tokio::task::JoinSet::new();
    for i in 0..20 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        at_once.spawn(async move { crate::crash::refresh(&http, &base, &token).await });
    }
    let answers = at_once.join_all().await;
    let successors: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| {
            let (status, body) = a.as_ref().expect("an answer");
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["refresh_token"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(successors.len(), 1, "concurrent presentations converge");
    chains[0]
        .lock()
        .unwrap()
        .tokens
        .extend(successors.into_iter());
    let (stop, tally, tasks) = drive(vec![a.base.clone(), b.base.clone()], chains.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let wrong = tally.wrong.lock().unwrap().clone();
    assert!(wrong.is_empty(), "{wrong:?}");
    assert_eq!(tally.refused.load(Ordering::SeqCst), 0, "no fault, no 503");
    eprintln!(
        "pgbouncer (transaction mode, 2 server connections): {} answers, none refused",
        tally.ok.load(Ordering::SeqCst)
    );
    let direct = {
        let mut u = url.clone();
        let at = u.rfind('/').unwrap();
        u.replace_range(at + 1.., &db);
        u
    };
    check_after_restart(&a.base, &chains, async |sid| pg_counter(&direct, sid).await).await;
    drop((a, b, bouncer));
}

/// A database of its own, dropped (connections and all) when the test ends.
struct Admin(String, String);

impl Admin {
    async fn sql(&self, sql: &str) {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.0).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut c)
            .await
            .unwrap();
        let _ = c.close().await;
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let (url, db) = (self.0.clone(), self.1.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

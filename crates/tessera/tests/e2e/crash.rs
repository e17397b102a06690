//! Crash safety: servers killed with SIGKILL in the middle of a refresh storm lose
//! no acknowledged rotation, apply none twice, and keep detecting reuse — on SQLite
//! (the one instance killed and restarted) and on PostgreSQL (one of two killed
//! while the other keeps serving, then restarted).

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tessera_core::RefreshTokenCodec;

const CHAINS: usize = 16;

/// A `tessera serve` process on `data`; killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, database_url: Option<&str>) -> Server {
    serve_env(data, database_url, &[])
}

/// [`serve`] with more settings in its environment.
pub(crate) fn serve_env(data: &Path, database_url: Option<&str>, env: &[(&str, &str)]) -> Server {
    let mut cmd = tessera();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("REFRESH_TOKEN_SECRET", SHARED_REFRESH_SECRET)
        .env("TESSERA_ISSUER", "http://tessera.test")
        // Instances with folders of their own share the key-encryption key.
        .env(
            "TESSERA_MASTER_KEY",
            "crash-test-master-key-0123456789abcdef",
        )
        .env("TESSERA_ARGON2_MEMORY_KIB", "1024")
        .env("TESSERA_ARGON2_ITERATIONS", "1")
        // A restart on a loaded machine must fit in the grace window.
        .env("TESSERA_REFRESH_GRACE", "60s")
        .env("TESSERA_REFRESH_LIMIT_IP", "off")
        .env("TESSERA_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(url) = database_url {
        cmd.env("TESSERA_DATABASE_URL", url);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "banner: {line}");
    Server { child, base }
}

/// What one client of the storm saw: every refresh token it received, in order.
#[derive(Default)]
pub(crate) struct Chain {
    pub(crate) tokens: Vec<String>,
    refusals: Vec<String>,
}

pub(crate) async fn refresh(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> Option<(StatusCode, Value)> {
    let r = http
        .post(format!("{base}/v1/auth/refresh"))
        .json(&json!({"refresh_token": token, "delivery": "body"}))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = r.status();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// Refreshes every chain in a loop against the servers in `bases` (chain `i` uses
/// `bases[i % len]`, or any live one) until `stop`; connection failures (a killed
/// server) are retried with the token the client holds.
fn storm(
    http: &reqwest::Client,
    bases: Arc<Mutex<Vec<String>>>,
    chains: Vec<Arc<Mutex<Chain>>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    chains
        .into_iter()
        .enumerate()
        .map(|(i, chain)| {
            let (http, bases, stop) = (http.clone(), bases.clone(), stop.clone());
            tokio::spawn(async move {
                let mut attempt = i;
                while !stop.load(Ordering::SeqCst) {
                    let base = {
                        let b = bases.lock().unwrap();
                        b[attempt % b.len()].clone()
                    };
                    let token = chain.lock().unwrap().tokens.last().unwrap().clone();
                    match refresh(&http, &base, &token).await {
                        Some((StatusCode::OK, body)) => {
                            let next = body["refresh_token"].as_str().unwrap().to_string();
                            chain.lock().unwrap().tokens.push(next);
                        }
                        // Shutting down or the database is busy: retry.
                        Some((StatusCode::SERVICE_UNAVAILABLE, _)) => {
                            tokio::time::sleep(Duration::from_millis(10)).await
                        }
                        Some((status, body)) => {
                            chain
                                .lock()
                                .unwrap()
                                .refusals
                                .push(format!("{status} {body}"));
                            return;
                        }
                        None => {
                            // The server died: try the next one (or the same, later).
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Opens `CHAINS` sessions and returns their first refresh tokens.
pub(crate) async fn open_chains(base: &str) -> Vec<Arc<Mutex<Chain>>> {
    let http = reqwest::Client::new();
    let mut chains = Vec::new();
    for i in 0..CHAINS {
        let name = format!("crash{i}");
        let r = http
            .post(format!("{base}/v1/auth/register"))
            .json(&json!({"email": format!("{name}@example.com"), "username": name, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let t: Value = http
            .post(format!("{base}/v1/auth/login"))
            .json(&json!({"login": name, "password": PASSWORD, "delivery": "body"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let first = t["refresh_token"].as_str().unwrap().to_string();
        chains.push(Arc::new(Mutex::new(Chain {
            tokens: vec![first],
            refusals: Vec::new(),
        })));
    }
    chains
}

/// Every received token follows its predecessor by exactly one rotation; the
/// database holds the last received counter, or one more (a rotation committed
/// whose answer the crash swallowed); the last token is honoured after the
/// restart (as current, or as a grace replay of that swallowed rotation); and a
/// token superseded before the crash is still reuse.
pub(crate) async fn check_after_restart(
    base: &str,
    chains: &[Arc<Mutex<Chain>>],
    counter_in_db: impl AsyncFn(uuid::Uuid) -> u64,
) {
    let codec = RefreshTokenCodec::new(SHARED_REFRESH_SECRET.as_bytes());
    let http = reqwest::Client::new();
    let mut rotations = 0;
    for (i, chain) in chains.iter().enumerate() {
        let chain = chain.lock().unwrap().tokens.clone();
        let counters: Vec<u64> = chain
            .iter()
            .map(|t| codec.decode(t).unwrap().counter)
            .collect();
        rotations += counters.len() - 1;
        for w in counters.windows(2) {
            assert_eq!(w[1], w[0] + 1, "chain {i}: a rotation was applied twice");
        }
        let last = *counters.last().unwrap();
        let sid = codec.decode(chain.last().unwrap()).unwrap().session_id;
        let stored = counter_in_db(sid).await;
        assert!(
            stored == last || stored == last + 1,
            "chain {i}: the client holds counter {last}, the database {stored}"
        );
        let (status, body) = refresh(&http, base, chain.last().unwrap())
            .await
            .expect("the restarted server answers");
        assert_eq!(
            status,
            StatusCode::OK,
            "chain {i}: last token refused: {body}"
        );
        let next = codec
            .decode(body["refresh_token"].as_str().unwrap())
            .unwrap();
        assert_eq!(next.counter, last + 1, "chain {i}");
    }
    assert!(rotations > 0, "the storm rotated nothing before the crash");
    // A token superseded before the crash is reuse: its session ends.
    let chain = chains
        .iter()
        .map(|c| c.lock().unwrap().tokens.clone())
        .find(|t| t.len() >= 3)
        .expect("a chain with two rotations");
    let old = &chain[chain.len() - 3];
    let (status, body) = refresh(&http, base, old).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "refresh_token_reused");
}

/// The counter PostgreSQL at `url` holds for session `sid`.
pub(crate) async fn pg_counter(url: &str, sid: uuid::Uuid) -> u64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT counter FROM sessions WHERE id = $1")
        .bind(sid)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    n as u64
}

fn refusals(chains: &[Arc<Mutex<Chain>>]) -> Vec<String> {
    chains
        .iter()
        .flat_map(|c| c.lock().unwrap().refusals.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_mid_storm_loses_and_repeats_no_rotation() {
    for kill_after_ms in [150u64, 450, 900] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let server = serve(&data, None);
        let chains = open_chains(&server.base).await;
        let bases = Arc::new(Mutex::new(vec![server.base.clone()]));
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::new();
        let tasks = storm(&http, bases.clone(), chains.clone(), stop.clone());
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        drop(server); // SIGKILL, then reaped
        let server = serve(&data, None);
        *bases.lock().unwrap() = vec![server.base.clone()];
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        assert!(refusals(&chains).is_empty(), "{:?}", refusals(&chains));
        let db = format!("sqlite://{}", data.join("tessera.db").display());
        check_after_restart(&server.base, &chains, async |sid| {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
            let (n,): (i64,) = sqlx::query_as("SELECT counter FROM sessions WHERE id = ?")
                .bind(sid.to_string())
                .fetch_one(&mut conn)
                .await
                .unwrap();
            n as u64
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instance_killed_mid_storm_loses_and_repeats_no_rotation() {
    for kill_after_ms in [150u64, 600] {
        let Some((url, _schema)) = pg_schema().await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (da, db) = (dir.path().join("a"), dir.path().join("b"));
        let a = serve(&da, Some(&url));
        let b = serve(&db, Some(&url));
        let chains = open_chains(&a.base).await;
        let bases = Arc::new(Mutex::new(vec![a.base.clone(), b.base.clone()]));
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::new();
        let tasks = storm(&http, bases.clone(), chains.clone(), stop.clone());
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        drop(a); // SIGKILL; its clients move to b with the token they hold
        tokio::time::sleep(Duration::from_millis(300)).await;
        let a = serve(&da, Some(&url));
        *bases.lock().unwrap() = vec![a.base.clone(), b.base.clone()];
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        assert!(refusals(&chains).is_empty(), "{:?}", refusals(&chains));
        check_after_restart(&a.base, &chains, async |sid| pg_counter(&url, sid).await).await;
        drop(b);
    }
}

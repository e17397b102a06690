//! Many instances on one PostgreSQL database (contract §8), and losing the database.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A `tessera serve` process; killed when dropped.
struct Instance {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ISSUER: &str = "http://tessera.test";
/// Instances sharing one database share the key that seals the signing keys.
const SHARED_MASTER_KEY: &str = "the master key every instance shares, 32+ bytes";

fn shared_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TESSERA_DATABASE_URL", url.to_string()),
        ("REFRESH_TOKEN_SECRET", SHARED_REFRESH_SECRET.to_string()),
        ("TESSERA_MASTER_KEY", SHARED_MASTER_KEY.to_string()),
        ("TESSERA_ISSUER", ISSUER.to_string()),
        ("TESSERA_ARGON2_MEMORY_KIB", "1024".to_string()),
        ("TESSERA_ARGON2_ITERATIONS", "1".to_string()),
        ("TESSERA_KEY_RELOAD_INTERVAL", "1".to_string()),
        ("TESSERA_LOG", "warn".to_string()),
    ]
}

fn spawn_instance(url: &str) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tessera()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .envs(shared_env(url))
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // Keep reading so the server never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "banner: {line}");
    Instance {
        child,
        base,
        _dir: dir,
    }
}

async fn counter_in_db(url: &str, sid: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&direct_url(url)).await.unwrap();
    let row: (i64,) = sqlx::query_as("SELECT counter FROM sessions WHERE id = $1::uuid")
        .bind(sid)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    row.0
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    let r = http.post(url).json(&body).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn jwks_kids(http: &reqwest::Client, base: &str) -> Vec<String> {
    let j: Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut kids: Vec<String> = j["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().into())
        .collect();
    kids.sort();
    kids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_share_every_rule() {
    let Some((url, _schema)) = pg_schema().await else {
        return;
    };
    let a = spawn_instance(&url);
    let b = spawn_instance(&url);
    let http = reqwest::Client::new();
    let reg = json!({"email": "multi@example.com", "username": "multi", "password": PASSWORD});
    assert_eq!(
        post(&http, format!("{}/v1/auth/register", a.base), reg)
            .await
            .0,
        StatusCode::CREATED
    );
    let login = json!({"login": "multi", "password": PASSWORD, "delivery": "body"});
    let (status, t0) = post(&http, format!("{}/v1/auth/login", b.base), login.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let sid = t0["session_id"].as_str().unwrap().to_string();

    // Same keys on both; a token from one is accepted by the other.
    assert_eq!(
        jwks_kids(&http, &a.base).await,
        jwks_kids(&http, &b.base).await
    );
    let at = t0["access_token"].as_str().unwrap();
    for base in [&a.base, &b.base] {
        let r = http
            .get(format!("{base}/v1/me"))
            .bearer_auth(at)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    // 50 parallel refreshes of one token, spread over both instances, converge.
    let rt0 = t0["refresh_token"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let (http, rt0) = (http.clone(), rt0.clone());
        tasks.push(tokio::spawn(async move {
            post(
                &http,
                format!("{base}/v1/auth/refresh"),
                json!({"refresh_token": rt0, "delivery": "body"}),
            )
            .await
        }));
    }
    let mut successors = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        successors.insert(body["refresh_token"].as_str().unwrap().to_string());
    }
    assert_eq!(
        successors.len(),
        1,
        "one identical successor across instances"
    );
    assert_eq!(
        counter_in_db(&url, &sid).await,
        1,
        "exactly one rotation stored"
    );
    let rt1 = successors.into_iter().next().unwrap();

    // Rotate on A, then present the oldest token on B: reuse, session revoked on both.
    let (status, t2) = post(
        &http,
        format!("{}/v1/auth/refresh", a.base),
        json!({"refresh_token": rt1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = post(
        &http,
        format!("{}/v1/auth/refresh", b.base),
        json!({"refresh_token": rt0}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("refresh_token_reused"))
    );
    let at2 = t2["access_token"].as_str().unwrap();
    for base in [&a.base, &b.base] {
        let r = http
            .get(format!("{base}/v1/me"))
            .bearer_auth(at2)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "revoked everywhere at once"
        );
        let (status, _) = post(
            &http,
            format!("{base}/v1/auth/refresh"),
            json!({"refresh_token": t2["refresh_token"]}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    // A session logged out on B is refused by A at once.
    let (_, t3) = post(&http, format!("{}/v1/auth/login", a.base), login).await;
    let at3 = t3["access_token"].as_str().unwrap();
    let r = http
        .post(format!("{}/v1/auth/logout", b.base))
        .bearer_auth(at3)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .get(format!("{}/v1/me", a.base))
        .bearer_auth(at3)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A key rotated through the shared database is published by both instances
    // (each algorithm's new key next to the one it replaces).
    let before = jwks_kids(&http, &a.base).await;
    assert_eq!(before, jwks_kids(&http, &b.base).await);
    let out = tessera()
        .args(["keys", "rotate"])
        .envs(shared_env(&url))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ka, kb) = (
            jwks_kids(&http, &a.base).await,
            jwks_kids(&http, &b.base).await,
        );
        if ka.len() == 2 * before.len() && before.iter().all(|k| ka.contains(k)) && ka == kb {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instances did not pick up the rotated key: {ka:?} {kb:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A TCP relay to PostgreSQL that a test can cut and restore.
struct Relay {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Default::default();
        let (c, l) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                l.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay { addr, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_database_gives_503_and_recovers_by_itself() {
    let Some(url) = pg_url() else { return };
    // Through a pooler, the relay sits between Tessera and the pooler.
    let parsed: sqlx::postgres::PgConnectOptions = pooler_url().unwrap_or(url).parse().unwrap();
    let upstream = format!("{}:{}", parsed.get_host(), parsed.get_port());
    let relay = Relay::start(upstream.clone()).await;
    let s = TestServer::start_pg_with(|c| {
        let direct = c.database_url.take().unwrap();
        let via_relay = direct.replacen(&upstream, &relay.addr.to_string(), 1);
        assert_ne!(
            via_relay, direct,
            "TESSERA_TEST_POSTGRES_URL must name host:port explicitly"
        );
        c.database_url = Some(via_relay);
        c.database_acquire_timeout = "1".parse().unwrap();
    })
    .await
    .unwrap();
    let t = s.user("outage").await;
    relay.cut();
    let started = Instant::now();
    let r = s.get_auth("/v1/me", &t.access).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails fast, does not hang"
    );
    assert_eq!(
        s.refresh(&t.refresh).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        s.http.get(s.url("/readyz")).send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // What needs no database keeps working.
    assert_eq!(
        s.http.get(s.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        s.http
            .get(s.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.http.get(s.url("/readyz")).send().await.unwrap().status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
    let t1 = s.refresh_ok(&t.refresh).await;
    assert_eq!(s.me_status(&t1.access).await, StatusCode::OK);
}

/// Starts three servers for `cfgs` at the same moment (each `tessera::start` on a
/// task of its own) and checks that they behave as one: exactly one signing key in
/// the database, one JWKS, and every instance accepts every other's tokens on the
/// very first request.
async fn three_at_once_agree(cfgs: [tessera::config::Config; 3], round: usize) {
    let starts: Vec<_> = cfgs
        .into_iter()
        .map(|cfg| {
            tokio::spawn(async move {
                let clock = Arc::new(tessera_core::SystemClock) as Arc<dyn tessera_core::Clock>;
                tessera::start(&cfg, clock).await
            })
        })
        .collect();
    let mut servers = Vec::new();
    for s in starts {
        servers.push(
            s.await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}")),
        );
    }
    let bases: Vec<String> = servers
        .iter()
        .map(|s| format!("http://{}", s.addr))
        .collect();
    // One first key per algorithm: the access tokens' and the ID tokens' RS256.
    let keys = servers[0].state.store.list_keys().await.unwrap();
    assert_eq!(
        keys.len(),
        2,
        "round {round}: one first key of each algorithm, not {}",
        keys.len()
    );
    let http = reqwest::Client::new();
    let jwks: Vec<Vec<String>> = {
        let mut all = Vec::new();
        for b in &bases {
            all.push(jwks_kids(&http, b).await);
        }
        all
    };
    assert!(
        jwks.iter().all(|k| k == &jwks[0] && k.len() == 2),
        "round {round}: {jwks:?}"
    );
    let name = format!("race{round}");
    let reg =
        json!({"email": format!("{name}@example.com"), "username": name, "password": PASSWORD});
    let (status, body) = post(&http, format!("{}/v1/auth/register", bases[0]), reg).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let login = json!({"login": name, "password": PASSWORD, "delivery": "body"});
    let mut tokens = Vec::new();
    for (i, b) in bases.iter().enumerate() {
        let (status, t) = post(&http, format!("{b}/v1/auth/login"), login.clone()).await;
        assert_eq!(status, StatusCode::OK, "{t}");
        tokens.push(t["access_token"].as_str().unwrap().to_string());
        // The refresh-token secret is shared too: the next instance rotates it.
        let next = &bases[(i + 1) % bases.len()];
        let body = json!({"refresh_token": t["refresh_token"], "delivery": "body"});
        let (status, r) = post(&http, format!("{next}/v1/auth/refresh"), body).await;
        assert_eq!(status, StatusCode::OK, "round {round}: {r}");
    }
    for (i, token) in tokens.iter().enumerate() {
        for (j, b) in bases.iter().enumerate() {
            let r = http
                .get(format!("{b}/v1/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::OK,
                "round {round}: instance {j} refused a token of instance {i}: {}",
                r.text().await.unwrap()
            );
        }
    }
    for s in servers {
        s.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_starting_together_on_postgres_share_one_first_key() {
    if pg_url().is_none() {
        return;
    }
    for round in 0..10 {
        let (url, _schema) = pg_schema().await.unwrap();
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let cfgs = [0, 1, 2].map(|i| {
            let mut c = test_config(dirs[i].path());
            c.database_url = Some(url.clone());
            c.refresh_token_secret = Some(SHARED_REFRESH_SECRET.into());
            c.master_key = Some(SHARED_MASTER_KEY.into());
            c.issuer = Some(ISSUER.into());
            // Long enough that only the start itself can make the instances agree.
            c.key_reload_interval = "1h".parse().unwrap();
            c
        });
        three_at_once_agree(cfgs, round).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_starting_together_on_one_sqlite_folder_share_one_first_key() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let cfgs = [0, 1, 2].map(|_| {
            let mut c = test_config(dir.path());
            c.issuer = Some(ISSUER.into());
            c.key_reload_interval = "1h".parse().unwrap();
            c
        });
        three_at_once_agree(cfgs, round).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shared_master_key_a_second_instance_refuses_to_start() {
    let Some(a) = TestServer::start_pg().await else {
        return;
    };
    let t = a.user("lonely").await;
    let file = a.dir.path().join("master_key.secret");
    assert!(
        file.exists(),
        "one instance alone seals with its folder's key"
    );
    let other = tempfile::tempdir().unwrap();
    let mut cfg = a.cfg.clone();
    cfg.data_dir = other.path().to_path_buf();
    let clock = || Arc::new(tessera_core::SystemClock) as Arc<dyn tessera_core::Clock>;
    let err = tessera::start(&cfg, clock()).await.err().unwrap();
    assert!(
        err.contains("set TESSERA_MASTER_KEY on every instance"),
        "{err}"
    );
    assert!(
        !other.path().join("master_key.secret").exists(),
        "no second key-encryption key was made"
    );
    // With the first instance's key as TESSERA_MASTER_KEY, it starts and agrees.
    cfg.master_key = Some(std::fs::read_to_string(&file).unwrap().trim().to_string());
    let b = tessera::start(&cfg, clock()).await.unwrap();
    let r = a
        .http
        .get(format!("http://{}/v1/me", b.addr))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    b.stop().await.unwrap();

    // Three instances with folders of their own starting together on an empty
    // database: one starts, the others say what is missing.
    let (url, _schema) = pg_schema().await.unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let starts: Vec<_> = dirs
        .iter()
        .map(|d| {
            let mut c = test_config(d.path());
            c.database_url = Some(url.clone());
            c.refresh_token_secret = Some(SHARED_REFRESH_SECRET.into());
            tokio::spawn(async move { tessera::start(&c, clock()).await })
        })
        .collect();
    let mut started = Vec::new();
    for s in starts {
        match s.await.unwrap() {
            Ok(running) => started.push(running),
            Err(e) => assert!(e.contains("TESSERA_MASTER_KEY"), "{e}"),
        }
    }
    assert_eq!(started.len(), 1);
}

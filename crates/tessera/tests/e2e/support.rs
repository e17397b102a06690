//! Starting servers and talking to them.

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use tessera::Running;
use tessera::config::Config;
use tessera_core::{Clock, ManualClock};

pub const PASSWORD: &str = "correct horse battery";

/// A port free right now: for a server whose issuer must name its real address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration for tests: a fresh data folder, a free port, cheap Argon2.
pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        argon2_memory_kib: 1024,
        argon2_iterations: 1,
        hash_workers: 2,
        // Every test talks from 127.0.0.1: limits high enough to never matter,
        // except in the tests about throttling, which set their own.
        login_limit_ip: "10000/1m".parse().unwrap(),
        login_limit_account: "10000/1m".parse().unwrap(),
        login_limit_account_ip: "10000/1m".parse().unwrap(),
        register_limit_ip: "10000/1m".parse().unwrap(),
        refresh_limit_ip: "10000/1m".parse().unwrap(),
        database_pooler: if pooler_url().is_some() {
            tessera::config::Pooler::Transaction
        } else {
            tessera::config::Pooler::None
        },
        ..Config::default()
    }
}

/// A PostgreSQL schema of its own for one test (a database of its own when the
/// tests run through a pooler), dropped when the test ends.
pub struct PgSchema {
    admin_url: String,
    name: String,
    database: bool,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name, database) = (self.admin_url.clone(), self.name.clone(), self.database);
        // Drop runs outside async context guarantees; use a small runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(pg_admin(
                &url,
                if database {
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                } else {
                    format!("DROP SCHEMA IF EXISTS {name} CASCADE")
                },
            ));
        })
        .join();
    }
}

async fn pg_admin(url: &str, sql: String) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to TESSERA_TEST_POSTGRES_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("admin statement");
    let _ = conn.close().await;
}

/// The PostgreSQL server for tests, or `None` (said once on stderr) when unset.
pub fn pg_url() -> Option<String> {
    match std::env::var("TESSERA_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "PostgreSQL end-to-end tests skipped: TESSERA_TEST_POSTGRES_URL is not set"
                );
            });
            None
        }
    }
}

/// `TESSERA_TEST_PGBOUNCER_URL` (`postgres://user@host:port`, no database): the
/// PostgreSQL tests then reach the server through this PgBouncer in transaction
/// mode, each test in a database of its own (PgBouncer passes no `search_path`),
/// and every server they start says `database_pooler = transaction`.
pub fn pooler_url() -> Option<String> {
    std::env::var("TESSERA_TEST_PGBOUNCER_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_string())
}

/// The server itself for a URL `pg_schema` gave: with a pooler in between, the
/// same database reached without it (for a test's own queries, which use named
/// prepared statements a transaction pooler cannot carry).
pub fn direct_url(url: &str) -> String {
    match (pooler_url(), pg_url()) {
        (Some(pooler), Some(server)) if url.starts_with(&pooler) => {
            let db = url[pooler.len()..].trim_start_matches('/');
            let base = &server[..server.rfind('/').unwrap_or(server.len())];
            format!("{base}/{db}")
        }
        _ => url.to_string(),
    }
}

/// Creates a fresh schema and returns a database URL whose connections use it.
pub async fn pg_schema() -> Option<(String, Arc<PgSchema>)> {
    let url = pg_url()?;
    // Only hex digits after a fixed prefix: safe inside the statement.
    let name = format!("tessera_e2e_{}", uuid::Uuid::now_v7().simple());
    if let Some(pooler) = pooler_url() {
        pg_admin(&url, format!("CREATE DATABASE {name}")).await;
        return Some((
            format!("{pooler}/{name}"),
            Arc::new(PgSchema {
                admin_url: url,
                name,
                database: true,
            }),
        ));
    }
    pg_admin(&url, format!("CREATE SCHEMA {name}")).await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options[search_path]={name}");
    Some((
        scoped,
        Arc::new(PgSchema {
            admin_url: url,
            name,
            database: false,
        }),
    ))
}

pub const SHARED_REFRESH_SECRET: &str = "shared-refresh-secret-for-every-instance-0123";

pub struct TestServer {
    pub pg: Option<Arc<PgSchema>>,
    pub running: Option<Running>,
    pub base: String,
    pub http: Client,
    pub clock: ManualClock,
    pub cfg: Config,
    pub dir: Arc<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut cfg = test_config(dir.path());
        tweak(&mut cfg);
        Self::boot(cfg, ManualClock::starting_now(), dir, None).await
    }

    /// A server on `cfg`, whose data folder lies under `dir` (a restored one, say).
    pub async fn start_config(cfg: Config, dir: Arc<tempfile::TempDir>) -> Self {
        Self::boot(cfg, ManualClock::starting_now(), dir, None).await
    }

    /// A server on a fresh PostgreSQL schema, or `None` when no server is configured.
    pub async fn start_pg() -> Option<Self> {
        Self::start_pg_with(|_| {}).await
    }

    pub async fn start_pg_with(tweak: impl FnOnce(&mut Config)) -> Option<Self> {
        let (url, schema) = pg_schema().await?;
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut cfg = test_config(dir.path());
        cfg.database_url = Some(url);
        cfg.refresh_token_secret = Some(SHARED_REFRESH_SECRET.into());
        tweak(&mut cfg);
        Some(Self::boot(cfg, ManualClock::starting_now(), dir, Some(schema)).await)
    }

    async fn boot(
        cfg: Config,
        clock: ManualClock,
        dir: Arc<tempfile::TempDir>,
        pg: Option<Arc<PgSchema>>,
    ) -> Self {
        let running = tessera::start(&cfg, Arc::new(clock.clone()) as Arc<dyn Clock>)
            .await
            .unwrap();
        let base = format!("http://{}", running.addr);
        let http = Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        TestServer {
            pg,
            running: Some(running),
            base,
            http,
            clock,
            cfg,
            dir,
        }
    }

    /// Restarts with a changed configuration (same data folder, database and clock).
    pub async fn restart_with(mut self, tweak: impl FnOnce(&mut Config)) -> Self {
        tweak(&mut self.cfg);
        self.restart().await
    }

    /// Stops this server and starts a new one on the same data folder and clock.
    pub async fn restart(mut self) -> Self {
        self.running.take().unwrap().stop().await.unwrap();
        Self::boot(
            self.cfg.clone(),
            self.clock.clone(),
            self.dir.clone(),
            self.pg.clone(),
        )
        .await
    }

    pub fn clock_now(&self) -> i64 {
        self.clock.now()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn state(&self) -> &tessera_server::AppState {
        &self.running.as_ref().unwrap().state
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_auth(&self, path: &str, access: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
    }

    /// A JSON request with a bearer access token.
    pub async fn json_auth(
        &self,
        method: reqwest::Method,
        path: &str,
        access: &str,
        body: Value,
    ) -> Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(access)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, name: &str) -> Value {
        let r = self
            .post(
                "/v1/auth/register",
                json!({"email": format!("{name}@example.com"), "username": name, "password": PASSWORD, "fullname": "Test User"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }

    pub async fn login(&self, login: &str) -> Tokens {
        let r = self
            .post(
                "/v1/auth/login",
                json!({"login": login, "password": PASSWORD, "delivery": "body"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "login failed");
        Tokens::from(r.json::<Value>().await.unwrap())
    }

    pub async fn login_with(&self, login: &str, password: &str) -> Tokens {
        let r = self
            .post(
                "/v1/auth/login",
                json!({"login": login, "password": password, "delivery": "body"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "login failed");
        Tokens::from(r.json::<Value>().await.unwrap())
    }

    /// Registers a user and logs in once.
    pub async fn user(&self, name: &str) -> Tokens {
        self.register(name).await;
        self.login(name).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh_token, "delivery": "body"}),
        )
        .await
    }

    pub async fn refresh_ok(&self, refresh_token: &str) -> Tokens {
        let r = self.refresh(refresh_token).await;
        assert_eq!(r.status(), StatusCode::OK);
        Tokens::from(r.json::<Value>().await.unwrap())
    }

    pub async fn me_status(&self, access: &str) -> StatusCode {
        self.get_auth("/v1/me", access).await.status()
    }
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub raw: Value,
}

impl From<Value> for Tokens {
    fn from(v: Value) -> Self {
        Tokens {
            access: v["access_token"].as_str().unwrap_or_default().to_string(),
            refresh: v["refresh_token"].as_str().unwrap_or_default().to_string(),
            session_id: v["session_id"].as_str().unwrap_or_default().to_string(),
            raw: v,
        }
    }
}

/// Asserts status and error code of a JSON error response.
pub async fn expect_error(r: Response, status: StatusCode, code: &str) -> Value {
    let got = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "body: {body}");
    assert_eq!(body["error"], code, "body: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "body: {body}"
    );
    assert_eq!(ct.as_deref(), Some("application/json"));
    body
}

/// The real `tessera` binary, with no configuration inherited from this process.
pub fn tessera() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TESSERA_") || k.ends_with("_TOKEN_SECRET") || k.ends_with("_TOKEN_EXPIRY")
        {
            c.env_remove(k);
        }
    }
    if pooler_url().is_some() {
        c.env("TESSERA_DATABASE_POOLER", "transaction");
    }
    c
}

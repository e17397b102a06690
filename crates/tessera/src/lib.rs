//! The `tessera` program: configuration, wiring of store, keys and HTTP server,
//! and the operator CLI. Tests start the same wiring in-process.

pub mod cli;
pub mod config;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use config::{Config, Validated};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessera_app::App;
use tessera_core::{Clock, Store};
use tessera_server::AppState;
use tessera_store::{PgPoolSettings, PostgresStore, SqliteStore};
use tokio::sync::oneshot;

/// A server started by [`start`].
pub struct Running {
    pub addr: SocketAddr,
    /// The metrics listener's address, when `metrics_listen` names one.
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    pub banner: String,
    shutdown: Option<oneshot::Sender<()>>,
    /// Periodic jobs (key reload, pruning); stopped with the server.
    background: Vec<tokio::task::JoinHandle<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The metrics listener, stopped with the server.
    metrics: Option<(
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    )>,
    store: Arc<dyn Store>,
}

impl Drop for Running {
    /// A server dropped without `stop` still stops accepting and ends its jobs.
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some((tx, _)) = self.metrics.take() {
            let _ = tx.send(());
        }
        for job in &self.background {
            job.abort();
        }
    }
}

impl Running {
    /// Stops accepting, finishes in-flight requests, closes the database.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for job in &self.background {
            job.abort();
        }
        let r = (&mut self.task).await.unwrap_or(Ok(()));
        if let Some((tx, task)) = self.metrics.take() {
            let _ = tx.send(());
            let _ = task.await;
        }
        self.store.close().await;
        r
    }
}

/// Reads the refresh-token secret: configured, or generated once into the data folder.
fn refresh_secret(cfg: &Config) -> Result<(Vec<u8>, String), String> {
    if let Some(s) = &cfg.refresh_token_secret {
        return Ok((s.as_bytes().to_vec(), "REFRESH_TOKEN_SECRET".into()));
    }
    let path = cfg.data_dir.join("refresh_token.secret");
    let shown = path.display().to_string();
    let text = match read_secret_file(&path)? {
        Some(text) => text,
        None => {
            prepare_data_dir(cfg)?;
            create_secret_file(&path)?
        }
    };
    let bytes = STANDARD
        .decode(&text)
        .map_err(|_| format!("{shown} is not valid base64"))?;
    if bytes.len() < 32 {
        return Err(format!("{shown} holds fewer than 32 bytes"));
    }
    Ok((bytes, shown))
}

/// The generated key-encryption key's file in the data folder. Its contents are
/// used exactly as a `TESSERA_MASTER_KEY` value would be, so setting
/// `TESSERA_MASTER_KEY` to them opens the same keys.
pub const MASTER_KEY_FILE: &str = "master_key.secret";

/// The contents of a secret file in the data folder (trimmed), or `None` when
/// there is none.
fn read_secret_file(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Creates `path` holding 256 random bits in base64, readable by its owner only,
/// and returns its contents. Processes starting together on one data folder end
/// up with one secret: each writes a complete file under a temporary name and
/// moves it into place only if `path` does not exist yet; whoever finds it
/// already there reads the winner's.
fn create_secret_file(path: &Path) -> Result<String, String> {
    use std::io::Write;
    let shown = path.display();
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no system randomness".to_string())?;
    let text = STANDARD.encode(bytes);
    let dir = path.parent().unwrap_or(Path::new("."));
    // tempfile creates it with mode 0600 on Unix.
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("cannot create {shown}: {e}"))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(text),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            read_secret_file(path)?.ok_or_else(|| format!("cannot read {shown}: it vanished"))
        }
        Err(e) => Err(format!("cannot create {shown}: {}", e.error)),
    }
}

/// Writes a file only the owner can read.
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(data)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates the data folder readable by its owner only: it holds the database
/// (signing keys included) and the refresh-token secret.
pub fn prepare_data_dir(cfg: &Config) -> Result<PathBuf, String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(&cfg.data_dir)
        .map_err(|e| format!("cannot create data folder {}: {e}", cfg.data_dir.display()))?;
    Ok(cfg.data_dir.clone())
}

/// Creates a missing SQLite database file as owner-only; SQLite gives its `-wal`
/// and `-shm` files the same permissions.
fn create_private_db_file(url: &str) -> Result<(), String> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" || Path::new(path).exists() {
        return Ok(());
    }
    match write_private(Path::new(path), b"") {
        Ok(()) => Ok(()),
        // Another process created it first: fine.
        Err(_) if Path::new(path).exists() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The PostgreSQL pool as configured.
fn pg_settings(cfg: &Config) -> PgPoolSettings {
    let secs = |s: tessera_core::Span| std::time::Duration::from_secs(s.secs().max(1));
    PgPoolSettings {
        max_connections: cfg.database_pool_size,
        min_connections: cfg.database_min_connections,
        acquire_timeout: secs(cfg.database_acquire_timeout),
        idle_timeout: Some(secs(cfg.database_idle_timeout)),
        transaction_pooler: cfg.database_pooler == config::Pooler::Transaction,
    }
}

/// Opens the configured database (SQLite or PostgreSQL) and migrates it.
pub async fn open_store(cfg: &Config, v: &Validated) -> Result<Arc<dyn Store>, String> {
    let shown = config::redact_url(&v.database_url);
    let failed = |e: tessera_core::StoreError| format!("cannot open database {shown}: {e}");
    if v.database_url.starts_with("sqlite:") {
        prepare_data_dir(cfg)?;
        create_private_db_file(&v.database_url)?;
        let acquire = std::time::Duration::from_secs(cfg.database_acquire_timeout.secs().max(1));
        let max = cfg.database_max_size_bytes()?;
        let store =
            SqliteStore::open_limited(&v.database_url, cfg.database_pool_size, acquire, max)
                .await
                .map_err(failed)?;
        return Ok(Arc::new(store));
    }
    Ok(Arc::new(
        PostgresStore::open(&v.database_url, pg_settings(cfg))
            .await
            .map_err(failed)?,
    ))
}

/// The SQLite database file a `sqlite:` URL names (`None` for an in-memory one).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Opens the configured database as it is, for commands that only read or that
/// act on records that must already exist: creates no folder, file or schema.
/// `migrate` lets a command that writes bring an older schema up to date.
pub async fn open_existing_store(
    cfg: &Config,
    v: &Validated,
    migrate: bool,
) -> Result<Arc<dyn Store>, String> {
    let shown = config::redact_url(&v.database_url);
    let failed = |e: tessera_core::StoreError| format!("cannot open database {shown}: {e}");
    if v.database_url.starts_with("sqlite:")
        && let Some(path) = sqlite_path(&v.database_url)
        && !path.is_file()
    {
        return Err(format!(
            "no database at {}; run `tessera serve` or `tessera migrate` first",
            path.display()
        ));
    }
    if migrate {
        return open_store(cfg, v).await;
    }
    let acquire = std::time::Duration::from_secs(cfg.database_acquire_timeout.secs().max(1));
    if v.database_url.starts_with("sqlite:") {
        let store = SqliteStore::open_existing(&v.database_url, cfg.database_pool_size, acquire)
            .await
            .map_err(failed)?;
        return Ok(Arc::new(store));
    }
    Ok(Arc::new(
        PostgresStore::open_existing(&v.database_url, pg_settings(cfg))
            .await
            .map_err(failed)?,
    ))
}

/// Where signing keys come from, per the validated configuration, and the
/// key-encryption key that seals them: `TESSERA_MASTER_KEY` when set (a key
/// generated into the data folder earlier then only opens keys it sealed, which
/// start-up re-seals), otherwise the one in the data folder, generated on first
/// use. A new one is never generated while the database holds sealed keys: they
/// were sealed elsewhere, and a second key would only hide that. Commands that only
/// read pass `may_create = false`: without a key file they open plain keys only.
pub async fn key_source(
    cfg: &Config,
    v: &Validated,
    store: &dyn Store,
    may_create: bool,
) -> Result<tessera_app::KeySource, String> {
    use tessera_app::MasterOrigin;
    use tessera_jose::seal::{MasterKey, is_sealed};
    let master = |secret: &[u8]| MasterKey::new(secret).map_err(|e| e.to_string());
    let path = cfg.data_dir.join(MASTER_KEY_FILE);
    let (key, origin, previous) = match &v.master_key {
        Some(m) => (
            Some(master(m)?),
            MasterOrigin::Configured,
            read_secret_file(&path)?
                .map(|g| master(g.as_bytes()))
                .transpose()?,
        ),
        None => {
            // The database first, then the file: an instance starting alongside
            // on the same folder creates the file before it stores a sealed key,
            // so whoever sees that key also sees the file.
            let keys = store.list_keys().await.map_err(|e| e.to_string())?;
            let text = match read_secret_file(&path)? {
                Some(text) => Some(text),
                None if !may_create && !keys.iter().any(|k| is_sealed(&k.private_der)) => None,
                None => {
                    if keys.iter().any(|k| is_sealed(&k.private_der)) {
                        return Err(format!(
                            "the signing keys in the database are sealed, and this instance has \
                             neither TESSERA_MASTER_KEY nor {} to open them: set \
                             TESSERA_MASTER_KEY on every instance to the key they were sealed with \
                             (for instance the contents of {MASTER_KEY_FILE} in the data folder of \
                             the instance that created them)",
                            path.display()
                        ));
                    }
                    prepare_data_dir(cfg)?;
                    Some(create_secret_file(&path)?)
                }
            };
            let key = text.map(|t| master(t.as_bytes())).transpose()?;
            (key, MasterOrigin::File(path), None)
        }
    };
    Ok(tessera_app::KeySource {
        alg: v.server.signing_alg,
        hs256_secret: v.hs256_secret.clone(),
        master: key,
        master_origin: origin,
        previous_master: previous,
        retire_window: v.server.access_ttl + v.server.leeway,
    })
}

/// The application object over an opened store: what `serve` runs and what the
/// operator CLI calls, so both apply the same use cases. Returns it with where
/// the refresh-token secret came from.
pub async fn build_app(
    cfg: &Config,
    v: &Validated,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<App>, String), String> {
    let (secret, secret_source) = refresh_secret(cfg)?;
    // On PostgreSQL every instance judges time by the database's clock.
    let clock = if cfg.database_clock {
        tessera_app::db_clock::follow_database(store.clone(), clock).await
    } else {
        clock
    };
    let key_source = key_source(cfg, v, store.as_ref(), true).await?;
    let keys = tessera_app::load_key_set(store.as_ref(), &key_source, clock.now())
        .await
        .map_err(|e| format!("cannot load signing keys: {e}"))?;
    let app = App::new(
        store,
        clock,
        v.server.clone(),
        keys,
        key_source,
        &secret,
        v.hash,
    )?;
    Ok((Arc::new(app), secret_source))
}

/// Starts a server for `cfg` with `clock`; binds `cfg.listen` (port 0 picks one).
pub async fn start(cfg: &Config, clock: Arc<dyn Clock>) -> Result<Running, String> {
    let v = cfg.validate()?;
    let store = open_store(cfg, &v).await?;
    let (app, secret_source) = build_app(cfg, &v, store.clone(), clock.clone()).await?;
    // Keys stored before sealing was the default, or sealed with the data
    // folder's key before TESSERA_MASTER_KEY was set: sealed with the master key
    // now. Reading them all back proves this instance can open every key.
    let resealed = tessera_app::seal_stored_keys(store.as_ref(), &app.key_source)
        .await
        .map_err(|e| format!("cannot seal signing keys: {e}"))?;
    if resealed > 0 {
        tracing::info!(resealed, "signing keys sealed with the master key");
    }
    app.reload_keys()
        .await
        .map_err(|e| format!("cannot load signing keys: {e}"))?;
    let keys = app.key_set();
    tessera_app::ensure_default_client(store.as_ref(), &v.server.client_id, clock.now()).await?;
    let signing = format!(
        "{} (kid {})",
        keys.signing_key().alg,
        keys.signing_key().kid
    );
    let sealed_with = app.key_source.master_origin.clone();
    if v.master_key.is_none() && !v.database_url.starts_with("sqlite:") {
        tracing::warn!(
            key_file = %sealed_with,
            "signing keys are sealed with this instance's own key: set TESSERA_MASTER_KEY \
             (identical everywhere) before another instance uses this database"
        );
    }
    let state = AppState::new(app, v.http.clone());
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let header_timeout = std::time::Duration::from_secs(cfg.header_read_timeout.secs().max(1));
    let (metrics, metrics_addr, metrics_shown) = match v.http.metrics {
        tessera_server::MetricsExposure::Main => (None, None, format!("http://{addr}/metrics")),
        tessera_server::MetricsExposure::Off => (None, None, "off".into()),
        tessera_server::MetricsExposure::Separate(at) => {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| format!("cannot listen on {at} (metrics_listen): {e}"))?;
            let bound = listener.local_addr().map_err(|e| e.to_string())?;
            let (tx, rx) = oneshot::channel::<()>();
            let task = tokio::spawn(tessera_server::serve(
                listener,
                tessera_server::metrics_router(state.clone()),
                header_timeout,
                async move {
                    let _ = rx.await;
                },
            ));
            (
                Some((tx, task)),
                Some(bound),
                format!("http://{bound}/metrics"),
            )
        }
    };
    let mut banner = format!(
        "Tessera listening on http://{addr}\n  issuer:    {}\n  database:  {}\n  signing:   {signing}\n  secrets:   refresh-token secret from {secret_source}; signing keys in the database, sealed with the key from {sealed_with}\n  metrics:   {metrics_shown}",
        v.server.issuer,
        config::redact_url(&v.database_url)
    );
    banner.push_str(&format!("\n  mail:      {}", state.mailer.describe()));
    if !cfg.sources.files.is_empty() {
        let files: Vec<String> = cfg
            .sources
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        banner.push_str(&format!("\n  config:    read {}", files.join(", ")));
    }
    for w in &v.warnings {
        banner.push_str(&format!("\n  warning:   {w}"));
    }
    // Old audit events, ended sessions and spent throttle windows: pruned once at
    // start-up, then periodically by a background job.
    let retention = cfg.audit_retention.as_i64();
    if let Err(e) = tessera_app::housekeeping::prune(store.as_ref(), state.now(), retention).await {
        tracing::warn!(error = %e, "could not prune old records");
    }
    let (tx, rx) = oneshot::channel::<()>();
    let router = tessera_server::router(state.clone());
    let task = tokio::spawn(tessera_server::serve(
        listener,
        router,
        header_timeout,
        async move {
            let _ = rx.await;
        },
    ));
    let reload_every = std::time::Duration::from_secs(cfg.key_reload_interval.secs());
    let reloading = state.clone();
    let mut background = vec![tokio::spawn(async move {
        loop {
            tokio::time::sleep(reload_every).await;
            if let Err(e) = reloading.reload_keys().await {
                tracing::warn!(error = %e, "could not reload signing keys");
            }
        }
    })];
    // Mail queued by any instance (or before a restart) is delivered from here.
    background.push(state.app.spawn_mail_delivery());
    background.push(tessera_app::housekeeping::spawn(
        store.clone(),
        state.clock.clone(),
        retention,
    ));
    Ok(Running {
        addr,
        metrics_addr,
        metrics,
        state,
        banner,
        shutdown: Some(tx),
        background,
        task,
        store,
    })
}

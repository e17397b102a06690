//! The command line: `tessera serve | migrate | config show | ...` (contract §9).
//! Exit codes: 0 ok, 1 failure, 2 usage error (clap's own, and [`usage`]).
//!
//! Each group of operator commands lives in its own module and gets the opened
//! store through one of three doors: [`with_reader`] for commands that only read
//! (nothing is created, migrated or written), [`with_existing_app`] for commands
//! that change records that must already exist, and [`with_store`] /
//! [`with_app`] for commands that may start a database from nothing.

/// `println!` for command output: when the reader of stdout has gone (`tessera
/// user list | head -1`), the command ends quietly instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::cli::output_failed(e)
        }
    }};
}

/// `print!` for command output, like [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        if let Err(e) = write!(stdout, $($arg)*).and_then(|()| stdout.flush()) {
            $crate::cli::output_failed(e)
        }
    }};
}

mod audit;
mod backup;
mod clients;
mod import;
mod keys;
mod token;
mod users;

use crate::config::{Config, FlagOverrides};
use clap::{CommandFactory, Parser, Subcommand};
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tessera_app::App;
use tessera_core::{Store, SystemClock};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Access and refresh tokens done right"
)]
pub struct Cli {
    /// Configuration file (default: ./tessera.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data folder for the SQLite database and generated secrets [env: TESSERA_DATA_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL, sqlite://... or postgres://... [env: TESSERA_DATABASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on [env: TESSERA_LISTEN] [default: 127.0.0.1:8080].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Issuer URL put in tokens [env: TESSERA_ISSUER].
        #[arg(long, value_name = "URL")]
        issuer: Option<String>,
        /// Log lines as text or JSON objects [env: TESSERA_LOG_FORMAT] [default: text].
        #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
        log_format: Option<String>,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// OAuth clients: add, list, remove.
    Client {
        #[command(subcommand)]
        command: clients::ClientCommand,
    },
    /// Users: add, list, show, disable, enable, delete, set-password, import.
    User {
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// Sessions: list, revoke.
    Session {
        #[command(subcommand)]
        command: users::SessionCommand,
    },
    /// Access tokens: decode, verify, sign.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Signing keys: list, rotate.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Back up the SQLite database (consistent, while servers run) and the data
    /// folder's secrets into one owner-only tar archive. PostgreSQL: use pg_dump.
    Backup {
        /// The archive to create; an existing file is never replaced.
        file: PathBuf,
    },
    /// Restore a backup into the data folder (--data-dir), which must be new or empty.
    Restore { file: PathBuf },
    /// Print the newest audit events (logins, throttling, reuse, logouts, ...).
    Audit(audit::AuditArgs),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check the configuration as `serve` does and print the values in force,
    /// secrets redacted.
    Show,
}

/// A Unix time as the operator reads it (RFC 3339, UTC).
pub fn time(unix: i64) -> String {
    tessera_app::rfc3339(unix)
}

/// A command failed: the message goes to stderr and the exit code is 1.
pub fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

/// The command was called wrongly: clap's usage message and exit code 2.
pub fn usage(msg: impl std::fmt::Display) -> ExitCode {
    let err = Cli::command().error(clap::error::ErrorKind::ArgumentConflict, msg);
    let _ = err.print();
    ExitCode::from(2)
}

/// `1 session`, `2 sessions`.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Ends the command when its output cannot be written: quietly (exit 0) when the
/// reader went away, which is how a pipe into `head` ends; else with an error.
pub(crate) fn output_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write the output: {e}");
    std::process::exit(1);
}

/// Prints a machine-readable answer (`--json`).
pub fn print_json(value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    outln!("{text}");
    Ok(())
}

async fn run_on<F, Fut>(store: Result<Arc<dyn Store>, String>, f: F) -> ExitCode
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let store = match store {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let result = f(store.clone()).await;
    store.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Opens the configured store (creating and migrating it when needed), runs `f`
/// on it, closes it.
pub async fn with_store<F, Fut>(cfg: &Config, f: F) -> ExitCode
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let v = match cfg.validate() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    run_on(crate::open_store(cfg, &v).await, f).await
}

/// Opens the existing store as it is and runs `f`: for commands that only read.
/// A missing SQLite database is an error, never created; no schema is applied.
pub async fn with_reader<F, Fut>(cfg: &Config, f: F) -> ExitCode
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let v = match cfg.validate() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    run_on(crate::open_existing_store(cfg, &v, false).await, f).await
}

/// Opens the existing store (a missing SQLite database is an error, not created;
/// an older schema is migrated) and runs `f`: for commands that write records
/// about ones that must already exist.
pub async fn with_existing_store<F, Fut>(cfg: &Config, f: F) -> ExitCode
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let v = match cfg.validate() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    run_on(crate::open_existing_store(cfg, &v, true).await, f).await
}

async fn app_on<F, Fut>(cfg: &Config, store: Arc<dyn Store>, f: F) -> Result<(), String>
where
    F: FnOnce(Arc<App>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let v = cfg.validate()?;
    let (app, _) = crate::build_app(cfg, &v, store, Arc::new(SystemClock)).await?;
    f(app).await
}

/// Opens the configured store and builds the application on it (no HTTP
/// listener), runs `f`, closes the store. Commands that change accounts, sessions
/// or keys go through this, so they share the server's use cases.
pub async fn with_app<F, Fut>(cfg: &Config, f: F) -> ExitCode
where
    F: FnOnce(Arc<App>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    with_store(cfg, |store| app_on(cfg, store, f)).await
}

/// As [`with_app`], for commands about records that must already exist (a user,
/// a session, a key): a missing SQLite database is an error, not created.
pub async fn with_existing_app<F, Fut>(cfg: &Config, f: F) -> ExitCode
where
    F: FnOnce(Arc<App>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let v = match cfg.validate() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let store = crate::open_existing_store(cfg, &v, true).await;
    run_on(store, |store| app_on(cfg, store, f)).await
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let mut flags = FlagOverrides {
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        ..Default::default()
    };
    if let Command::Serve {
        listen,
        issuer,
        log_format,
    } = &cli.command
    {
        flags.listen = listen.clone();
        flags.issuer = issuer.clone();
        flags.log_format = log_format.clone();
    }
    let cfg = match Config::load(cli.config.as_deref(), &flags) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // `serve` puts them in its banner, `config show` with the other warnings.
    if !matches!(cli.command, Command::Serve { .. } | Command::Config { .. }) {
        for w in &cfg.sources.warnings {
            eprintln!("warning: {w}");
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match cli.command {
        Command::Config {
            command: ConfigCommand::Show,
        } => match cfg.validate().and_then(|v| Ok((v, cfg.show()?))) {
            Ok((v, text)) => {
                out!("{text}");
                for w in &v.warnings {
                    eprintln!("warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Keys { command } => rt.block_on(keys::run(&cfg, command)),
        Command::Token { command } => rt.block_on(token::run(&cfg, command)),
        Command::User { command } => rt.block_on(users::run_user(&cfg, command)),
        Command::Session { command } => rt.block_on(users::run_session(&cfg, command)),
        Command::Audit(args) => rt.block_on(audit::run(&cfg, args)),
        Command::Backup { file } => rt.block_on(backup::backup(&cfg, &file)),
        Command::Restore { file } => rt.block_on(backup::restore(&cfg, &file)),
        Command::Client { command } => rt.block_on(clients::run(&cfg, command)),
        Command::Migrate => rt.block_on(with_store(&cfg, |_| async {
            outln!(
                "database {} is up to date",
                crate::config::redact_url(&cfg.database_url())
            );
            Ok(())
        })),
        Command::Serve { .. } => {
            // Checked before logging starts: a bad `log` filter is reported, not
            // replaced by a default.
            let filter = match cfg
                .validate()
                .and_then(|_| crate::config::log_filter(&cfg.log))
            {
                Ok(f) => f,
                Err(e) => return fail(e),
            };
            init_logging(filter, cfg.log_format);
            rt.block_on(serve(&cfg))
        }
    }
}

async fn serve(cfg: &Config) -> ExitCode {
    let running = match crate::start(cfg, Arc::new(SystemClock)).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    // One write, so a reader of the pipe sees the whole banner at once (writeln!
    // would send its last line separately). A closed stdout must not take the
    // server down.
    let _ = std::io::stdout().write_all(format!("{}\n", running.banner).as_bytes());
    shutdown_signal().await;
    tracing::info!("shutting down");
    match running.stop().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn init_logging(filter: tracing_subscriber::EnvFilter, format: crate::config::LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        crate::config::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // One JSON object per line: the event's fields at the top level, the
        // request's (method, route, request id, client) under "span".
        crate::config::LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

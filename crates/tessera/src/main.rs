//! `tessera`: the server and the operator CLI.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tessera::config::{Config, FlagOverrides};
use tessera_core::SystemClock;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Access and refresh tokens done right"
)]
struct Cli {
    /// Configuration file (default: ./tessera.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data folder for the SQLite database and generated secrets [env: TESSERA_DATA_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL, sqlite://... [env: TESSERA_DATABASE_URL].
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
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, secrets redacted.
    Show,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut flags = FlagOverrides {
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        ..Default::default()
    };
    if let Command::Serve { listen, issuer } = &cli.command {
        flags.listen = listen.clone();
        flags.issuer = issuer.clone();
    }
    let cfg = match Config::load(cli.config.as_deref(), &flags) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
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
        } => {
            print!("{}", cfg.show());
            ExitCode::SUCCESS
        }
        Command::Migrate => rt.block_on(async {
            let v = match cfg.validate() {
                Ok(v) => v,
                Err(e) => return fail(e),
            };
            match tessera::open_store(&cfg, &v).await {
                Ok(store) => {
                    store.close().await;
                    println!("database {} is up to date", v.database_url);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }),
        Command::Serve { .. } => {
            init_logging(&cfg.log);
            rt.block_on(async {
                let running = match tessera::start(&cfg, Arc::new(SystemClock)).await {
                    Ok(r) => r,
                    Err(e) => return fail(e),
                };
                println!("{}", running.banner);
                let stop = tokio::signal::ctrl_c();
                tokio::select! {
                    _ = stop => {
                        tracing::info!("shutting down");
                        let _ = running.stop().await;
                    }
                }
                ExitCode::SUCCESS
            })
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(format!("{default},sqlx=warn")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

//! A resource server that accepts Tessera access tokens: `GET /hello` answers the
//! caller's `sub` as `{"sub": "..."}`; anything without a valid token gets 401
//! (503 while the revocation feed cannot be read).
//!
//! ```sh
//! cargo run -p tessera-verify --example resource_server -- \
//!     --issuer http://127.0.0.1:8080 --audience tessera --listen 127.0.0.1:3000
//! curl -H "authorization: Bearer $ACCESS" http://127.0.0.1:3000/hello
//! ```
//!
//! Options: `--issuer URL` (required: exactly the `iss` of the tokens; the JWKS
//! and the revocation feed are read from it), `--audience AUD` (default
//! `tessera`), `--listen ADDR` (default `127.0.0.1:3000`), `--poll-ms N` (feed
//! poll, default 2000), `--leeway SECS` (clock tolerance, default 30).

use axum::routing::get;
use axum::{Extension, Json, Router};
use std::process::ExitCode;
use std::time::Duration;
use tessera_verify::{Claims, Verifier, VerifierConfig};

struct Args {
    issuer: String,
    audience: String,
    listen: String,
    poll_ms: u64,
    leeway: i64,
}

const USAGE: &str = "usage: resource_server --issuer URL [--audience AUD] [--listen ADDR] \
                     [--poll-ms N] [--leeway SECS]";

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        issuer: String::new(),
        audience: "tessera".into(),
        listen: "127.0.0.1:3000".into(),
        poll_ms: 2_000,
        leeway: 30,
    };
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--issuer" => args.issuer = value()?,
            "--audience" => args.audience = value()?,
            "--listen" => args.listen = value()?,
            "--poll-ms" => {
                args.poll_ms = value()?
                    .parse()
                    .map_err(|_| "--poll-ms: a number of milliseconds")?
            }
            "--leeway" => {
                args.leeway = value()?
                    .parse()
                    .map_err(|_| "--leeway: a number of seconds")?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if args.issuer.is_empty() {
        return Err("--issuer is required".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut cfg = VerifierConfig::new(&args.issuer, &args.audience);
    cfg.revocation_poll = Duration::from_millis(args.poll_ms.max(100));
    cfg.leeway = args.leeway;
    // Refuses to start rather than accept tokens it cannot check.
    let verifier = match Verifier::connect(cfg).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    verifier.spawn_background();
    let app = Router::new()
        .route(
            "/hello",
            get(|Extension(Claims(c)): Extension<Claims>| async move {
                Json(serde_json::json!({ "sub": c.sub }))
            }),
        )
        .layer(verifier.layer());
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    println!("resource server on http://{}", args.listen);
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

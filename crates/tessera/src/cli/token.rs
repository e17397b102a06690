//! `tessera token decode | verify | sign`: the `jwt.verify` / `jwt.sign` of the
//! tutorials, for operators — human-readable times and clear reasons.

use crate::config::Config;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Subcommand;
use serde_json::Value;
use std::io::Read;
use std::process::ExitCode;
use tessera_core::model::{NewSession, RevokeReason};
use tessera_core::{Clock, SystemClock};
use tessera_jose::{AccessClaims, Audience, TokenError};
use uuid::Uuid;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Show a token's header and claims without checking anything (`-` reads stdin).
    Decode { token: String },
    /// Check a token as Tessera does: signature, algorithm, type, issuer, audience,
    /// times, and whether its session is still live. Exit code 1 when it is not valid.
    Verify { token: String },
    /// Sign an access token for a user in a new session (revoke it with `tessera
    /// session revoke`). Prints the token.
    Sign {
        user: String,
        /// Lifetime, e.g. 15m (default: the configured access-token lifetime).
        #[arg(long)]
        expires_in: Option<tessera_core::Span>,
    },
}

fn read_token(arg: String) -> Result<String, String> {
    let t = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| e.to_string())?;
        s
    } else {
        arg
    };
    Ok(t.trim().trim_start_matches("Bearer ").trim().to_string())
}

fn relative(t: i64, now: i64) -> String {
    let d = t.saturating_sub(now);
    let span = tessera_core::Span::from_secs(d.unsigned_abs());
    if d >= 0 {
        format!("{} (in {span})", super::time(t))
    } else {
        format!("{} ({span} ago)", super::time(t))
    }
}

fn part(p: Option<&str>) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(p.unwrap_or(""))
        .map_err(|_| "not a JWT: a part is not base64url".to_string())?;
    serde_json::from_slice(&bytes).map_err(|_| "not a JWT: a part is not JSON".to_string())
}

fn describe(token: &str) -> Result<String, String> {
    if token.starts_with("tsr_") {
        return Ok(
            "a Tessera refresh token: opaque by design; `tessera session list` shows sessions"
                .into(),
        );
    }
    let mut parts = token.split('.');
    let header = part(parts.next())?;
    let claims = part(parts.next())?;
    let now = SystemClock.now();
    let mut out = format!(
        "header: {}\nclaims:\n",
        serde_json::to_string(&header).unwrap_or_default()
    );
    if let Value::Object(map) = &claims {
        for (k, v) in map {
            let shown = match (k.as_str(), v.as_i64()) {
                ("exp" | "iat" | "nbf", Some(t)) => format!("{t}  {}", relative(t, now)),
                _ => v.to_string(),
            };
            out.push_str(&format!("  {k}: {shown}\n"));
        }
    }
    Ok(out)
}

pub async fn run(cfg: &Config, cmd: TokenCommand) -> ExitCode {
    if let TokenCommand::Decode { token } = cmd {
        return match read_token(token).and_then(|t| describe(&t)) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => super::fail(e),
        };
    }
    let signing = matches!(cmd, TokenCommand::Sign { .. });
    let v = match cfg.validate() {
        Ok(v) => v,
        Err(e) => return super::fail(e),
    };
    if let TokenCommand::Sign {
        expires_in: Some(e),
        ..
    } = &cmd
        && e.as_i64() > v.server.access_ttl
    {
        // The revocation feed only covers one access-token lifetime.
        return super::usage(format!(
            "--expires-in may not exceed the access-token lifetime ({})",
            tessera_core::Span::from_secs(v.server.access_ttl as u64)
        ));
    }
    let now = SystemClock.now();
    // Verifying only reads; signing adds a session to an existing database.
    let body = |store: std::sync::Arc<dyn tessera_core::Store>| async move {
        let src = crate::key_source(cfg, &v, store.as_ref()).await?;
        let keys = match &cmd {
            TokenCommand::Sign { .. } => {
                tessera_app::load_key_set(store.as_ref(), &src, now).await?
            }
            _ => super::keys::read_key_set(store.as_ref(), &src, now).await?,
        };
        match cmd {
            TokenCommand::Decode { .. } => Ok(()),
            TokenCommand::Verify { token } => {
                let token = read_token(token)?;
                let claims = keys
                    .verify(&token, &v.server.verify_options(), now)
                    .map_err(|e| match e {
                        TokenError::Expired => "invalid: the access token expired".to_string(),
                        TokenError::Invalid(why) => format!("invalid: {why}"),
                    })?;
                let sid = Uuid::parse_str(&claims.sid)
                    .map_err(|_| "invalid: the session id is malformed".to_string())?;
                match store.get_session(sid).await.map_err(|e| e.to_string())? {
                    Some((s, u)) if s.is_active(now) && !u.disabled => {
                        print!(
                            "valid: signature, algorithm, type, issuer, audience and times check out; session live\n{}",
                            describe(&token)?
                        );
                        Ok(())
                    }
                    Some((s, _)) if s.revoked_at.is_some() => {
                        Err("invalid: its session was revoked".into())
                    }
                    Some(_) => Err("invalid: its session expired or its user is disabled".into()),
                    None => Err("invalid: its session does not exist".into()),
                }
            }
            TokenCommand::Sign { user, expires_in } => {
                let u = super::users::find_user(store.as_ref(), &user).await?;
                if u.disabled {
                    return Err(format!("{} is disabled", u.username));
                }
                let s = &v.server;
                let ttl = expires_in
                    .map(|e| e.as_i64())
                    .unwrap_or(s.access_ttl)
                    .max(1);
                let session = store
                    .create_session(NewSession {
                        id: Uuid::now_v7(),
                        user_id: u.id,
                        client_id: "tessera-cli".into(),
                        created_at: now,
                        idle_expires_at: now + ttl,
                        absolute_expires_at: now + ttl,
                        user_agent: Some("tessera token sign".into()),
                        ip: None,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                let p = s.profile_claims;
                let claims = AccessClaims {
                    iss: s.issuer.clone(),
                    sub: u.id.to_string(),
                    aud: Audience::One(s.audience.clone()),
                    exp: now + ttl,
                    iat: now,
                    nbf: None,
                    jti: Uuid::now_v7().to_string(),
                    sid: session.id.to_string(),
                    client_id: session.client_id.clone(),
                    email: p.email.then(|| u.email.clone()),
                    username: p.username.then(|| u.username.clone()),
                    fullname: p.fullname.then(|| u.fullname.clone()),
                };
                let token = keys.signing_key().sign(&claims).map_err(|e| e.to_string());
                if token.is_err() {
                    let until = now + ttl + s.leeway;
                    let _ = store
                        .revoke_session(session.id, now, RevokeReason::Operator, until)
                        .await;
                }
                println!("{}", token?);
                eprintln!(
                    "session {} (expires {})",
                    session.id,
                    relative(now + ttl, now)
                );
                Ok(())
            }
        }
    };
    if signing {
        super::with_existing_store(cfg, body).await
    } else {
        super::with_reader(cfg, body).await
    }
}

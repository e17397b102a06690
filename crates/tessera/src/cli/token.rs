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
use tessera_jose::{AccessClaims, Algorithm, Audience, PublicKeys, TokenError, VerifyOptions};
use uuid::Uuid;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Show a token's header and claims without checking anything (`-` reads stdin).
    Decode { token: String },
    /// Check a token as Tessera does: signature, algorithm, type, issuer, audience,
    /// times, and whether its session is still live. Exit code 1 when it is not
    /// valid, with the reason. Without options it uses this Tessera's keys and
    /// database; the options check a token of any Tessera issuer instead.
    Verify {
        token: String,
        /// The issuer's URL. Alone: read its /.well-known/openid-configuration for
        /// the JWKS and its revocation feed for the session. With --jwks, --key or
        /// --secret-env: only the `iss` to expect (default: the configured issuer).
        #[arg(long, value_name = "URL")]
        issuer: Option<String>,
        /// Read the public keys from this JWKS URL.
        #[arg(long, value_name = "URL", group = "source")]
        jwks: Option<String>,
        /// Verify with this PEM public key (Ed25519, P-256 or RSA).
        #[arg(long, value_name = "FILE", group = "source")]
        key: Option<std::path::PathBuf>,
        /// Verify HS256 tokens with the secret in this environment variable.
        #[arg(long, value_name = "VAR", group = "source")]
        secret_env: Option<String>,
        /// The audience to expect (default: the configured audience).
        #[arg(long, value_name = "AUD")]
        audience: Option<String>,
    },
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
                out!("{text}");
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
    if let TokenCommand::Verify {
        token,
        issuer,
        jwks,
        key,
        secret_env,
        audience,
    } = &cmd
        && (issuer.is_some() || jwks.is_some() || key.is_some() || secret_env.is_some())
    {
        let elsewhere = Elsewhere {
            issuer: issuer.clone(),
            jwks: jwks.clone(),
            key: key.clone(),
            secret_env: secret_env.clone(),
            audience: audience.clone(),
        };
        return match read_token(token.clone()) {
            Ok(token) => match verify_elsewhere(&v, &token, elsewhere).await {
                Ok(text) => {
                    out!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => super::fail(e),
            },
            Err(e) => super::fail(e),
        };
    }
    let now = SystemClock.now();
    // Verifying only reads; signing adds a session to an existing database.
    let body = |store: std::sync::Arc<dyn tessera_core::Store>| async move {
        let src = crate::key_source(
            cfg,
            &v,
            store.as_ref(),
            matches!(cmd, TokenCommand::Sign { .. }),
        )
        .await?;
        let keys = match &cmd {
            TokenCommand::Sign { .. } => {
                tessera_app::load_key_set(store.as_ref(), &src, now).await?
            }
            _ => super::keys::read_key_set(store.as_ref(), &src, now).await?,
        };
        match cmd {
            TokenCommand::Decode { .. } => Ok(()),
            TokenCommand::Verify {
                token, audience, ..
            } => {
                let token = read_token(token)?;
                let mut opts = v.server.verify_options();
                if let Some(aud) = audience {
                    opts.audience = aud;
                }
                let keys = Keys::Set(keys);
                let claims = keys
                    .verify(&token, &opts, now)
                    .map_err(|e| explain(&token, e, &opts, &keys, "this Tessera's keys", now))?;
                let sid = Uuid::parse_str(&claims.sid)
                    .map_err(|_| "invalid: the session id is malformed".to_string())?;
                match store.get_session(sid).await.map_err(|e| e.to_string())? {
                    Some((s, u)) if s.is_active(now) && !u.disabled => {
                        out!(
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
                        scope: None,
                        parent_id: None,
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
                    legacy_id: p.legacy_id.then(|| u.legacy_id.clone()).flatten(),
                    email_verified: p.email.then_some(u.email_verified),
                    scope: None,
                };
                let token = keys.signing_key().sign(&claims).map_err(|e| e.to_string());
                if token.is_err() {
                    let until = now + ttl + s.leeway;
                    let _ = store
                        .revoke_session(session.id, now, RevokeReason::Operator, until)
                        .await;
                }
                outln!("{}", token?);
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

/// Keys a token is checked against: a key set (this Tessera's, or an HS256
/// secret) or public keys read from a JWKS or a PEM file.
enum Keys {
    Set(tessera_jose::KeySet),
    Public(PublicKeys),
}

impl Keys {
    fn verify(
        &self,
        token: &str,
        opts: &VerifyOptions,
        now: i64,
    ) -> Result<AccessClaims, TokenError> {
        match self {
            Keys::Set(k) => k.verify(token, opts, now),
            Keys::Public(k) => k.verify(token, opts, now),
        }
    }

    fn kids(&self) -> Vec<String> {
        match self {
            Keys::Set(k) => k.kids(),
            Keys::Public(k) => k.kids(),
        }
    }

    fn algorithm(&self, kid: &str) -> Option<Algorithm> {
        match self {
            Keys::Set(k) => k.get(kid).map(|k| k.alg),
            Keys::Public(k) => k.algorithm(kid),
        }
    }
}

/// Why a token failed, with what it carries (read without trusting it) next to
/// what was expected: the expiry time, both issuers, the audiences, the kid.
fn explain(
    token: &str,
    e: TokenError,
    opts: &VerifyOptions,
    keys: &Keys,
    source: &str,
    now: i64,
) -> String {
    let mut parts = token.split('.');
    let header = part(parts.next()).unwrap_or(Value::Null);
    let claims = part(parts.next()).unwrap_or(Value::Null);
    let shown = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "nothing".into(),
        other => other.to_string(),
    };
    let kid = shown(&header["kid"]);
    let why = match e {
        TokenError::Expired => match claims["exp"].as_i64() {
            Some(exp) => format!(
                "expired at {} (leeway {} s)",
                relative(exp, now),
                opts.leeway
            ),
            None => "the access token expired".into(),
        },
        TokenError::Invalid("the access token was issued by someone else") => format!(
            "wrong issuer: expected {}, got {}",
            opts.issuer,
            shown(&claims["iss"])
        ),
        TokenError::Invalid("the access token is meant for another audience") => format!(
            "wrong audience: expected {}, got {}",
            opts.audience,
            shown(&claims["aud"])
        ),
        TokenError::Invalid("the access token's signature is invalid") => {
            format!("bad signature: the token was altered, or signed by another key than {kid}")
        }
        TokenError::Invalid("the access token was signed by an unknown key") => {
            let known = keys.kids();
            let hint = if header["alg"] == "HS256" && matches!(keys, Keys::Public(_)) {
                " (an HS256 token is signed with a shared secret no JWKS publishes: use --secret-env)"
            } else {
                ""
            };
            format!(
                "unknown kid {kid}: {source} {}{hint}",
                if known.is_empty() {
                    "has no usable key".to_string()
                } else {
                    format!("has {}", known.join(", "))
                }
            )
        }
        TokenError::Invalid("the access token's algorithm does not match its key") => format!(
            "alg {} not allowed: key {kid} is {}",
            shown(&header["alg"]),
            keys.algorithm(&kid)
                .map(|a| a.as_str())
                .unwrap_or("unknown")
        ),
        TokenError::Invalid(why) => why.to_string(),
    };
    format!("invalid: {why}")
}

/// Where `token verify` finds keys when they are not this Tessera's own.
struct Elsewhere {
    issuer: Option<String>,
    jwks: Option<String>,
    key: Option<std::path::PathBuf>,
    secret_env: Option<String>,
    audience: Option<String>,
}

/// Largest document read from an issuer.
const MAX_DOCUMENT: usize = 1 << 20;

async fn fetch(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let failed = |why: String| format!("cannot read {url}: {why}");
    let mut res = http
        .get(url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !res.status().is_success() {
        return Err(failed(format!("HTTP {}", res.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| failed(e.to_string()))? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(failed("the document is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether the issuer's revocation feed lists session `sid`.
async fn revoked(http: &reqwest::Client, issuer: &str, sid: &str) -> Result<bool, String> {
    let base = format!("{}/v1/revocations", issuer.trim_end_matches('/'));
    let mut cursor = "0".to_string();
    for _ in 0..1_000 {
        let url = format!("{base}?since={cursor}");
        let page: Value = serde_json::from_slice(&fetch(http, &url).await?)
            .map_err(|_| format!("{url} is not a revocation feed"))?;
        let entries = page["revoked"]
            .as_array()
            .ok_or_else(|| format!("{url} is not a revocation feed"))?;
        if entries.iter().any(|e| e["sid"] == sid) {
            return Ok(true);
        }
        match page["cursor"].as_str() {
            Some(next) if !entries.is_empty() => cursor = next.to_string(),
            _ => return Ok(false),
        }
    }
    Err(format!("{base} did not end"))
}

async fn verify_elsewhere(
    v: &crate::config::Validated,
    token: &str,
    from: Elsewhere,
) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let expected_issuer = from.issuer.clone().unwrap_or(v.server.issuer.clone());
    let (keys, source, feed_of) = if let Some(url) = &from.jwks {
        let keys =
            PublicKeys::from_jwks(&fetch(&http, url).await?).map_err(|e| format!("{url}: {e}"))?;
        (Keys::Public(keys), format!("the JWKS at {url}"), None)
    } else if let Some(file) = &from.key {
        let pem = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let keys = PublicKeys::from_pem(&pem).map_err(|e| format!("{}: {e}", file.display()))?;
        (
            Keys::Public(keys),
            format!("the key in {}", file.display()),
            None,
        )
    } else if let Some(var) = &from.secret_env {
        let secret =
            std::env::var(var).map_err(|_| format!("the environment variable {var} is not set"))?;
        if secret.is_empty() {
            return Err(format!("the environment variable {var} is empty"));
        }
        let key = tessera_jose::hs256_key(secret.as_bytes());
        let set =
            tessera_jose::KeySet::new(vec![key], Algorithm::HS256, 0).map_err(|e| e.to_string())?;
        (Keys::Set(set), format!("the HS256 secret in {var}"), None)
    } else {
        // Discovery: the document must name the issuer asked for (OpenID
        // Connect Discovery §4.3), and it names the JWKS.
        let url = format!(
            "{}/.well-known/openid-configuration",
            expected_issuer.trim_end_matches('/')
        );
        let doc: Value = serde_json::from_slice(&fetch(&http, &url).await?)
            .map_err(|_| format!("{url} is not a discovery document"))?;
        if doc["issuer"] != expected_issuer.as_str() {
            return Err(format!(
                "{url} names issuer {}, not {expected_issuer}; give the issuer exactly as its tokens carry it",
                doc["issuer"]
            ));
        }
        let jwks_uri = doc["jwks_uri"]
            .as_str()
            .ok_or_else(|| format!("{url} names no jwks_uri"))?;
        let keys = PublicKeys::from_jwks(&fetch(&http, jwks_uri).await?)
            .map_err(|e| format!("{jwks_uri}: {e}"))?;
        (
            Keys::Public(keys),
            format!("the JWKS at {jwks_uri}"),
            Some(expected_issuer.clone()),
        )
    };
    if let Keys::Public(k) = &keys
        && k.is_empty()
    {
        return Err(format!(
            "{source} holds no usable public key (an HS256 issuer publishes none: use --secret-env)"
        ));
    }
    let opts = VerifyOptions {
        issuer: expected_issuer,
        audience: from.audience.unwrap_or(v.server.audience.clone()),
        leeway: v.server.leeway,
        // The longest life accepted is this configuration's ACCESS_TOKEN_EXPIRY:
        // set it to the issuer's when checking another issuer's tokens.
        max_lifetime: v.server.access_ttl,
    };
    let now = SystemClock.now();
    let claims = keys
        .verify(token, &opts, now)
        .map_err(|e| explain(token, e, &opts, &keys, &source, now))?;
    let session = match feed_of {
        Some(issuer) => {
            if revoked(&http, &issuer, &claims.sid).await? {
                return Err(format!(
                    "invalid: its session was revoked (revocation feed of {issuer})"
                ));
            }
            "session not revoked (revocation feed)"
        }
        None => "session not checked (give --issuer alone to read the revocation feed)",
    };
    Ok(format!(
        "valid: signature ({source}), algorithm, type, issuer, audience and times check out; {session}\n{}",
        describe(token)?
    ))
}

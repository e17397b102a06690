//! `tessera user ...` and `tessera session ...`: the operator's view of accounts.

use crate::config::{Config, Validated};
use clap::Subcommand;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::sync::Arc;
use tessera_core::model::{AuditEvent, NewUser, RevokeReason, User};
use tessera_core::validate::{self, LoginKey};
use tessera_core::{Clock, Store, SystemClock};
use tessera_server::hashing::{PasswordHasher, is_supported_hash};
use uuid::Uuid;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user (the password is prompted for, or read from stdin).
    Add {
        username: String,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        fullname: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users, oldest first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Show one user (by id, email or username) and their live sessions.
    Show {
        user: String,
    },
    /// Disable a user: logins fail and every session ends at once.
    Disable {
        user: String,
    },
    Enable {
        user: String,
    },
    /// Delete a user and their sessions.
    Delete {
        user: String,
    },
    /// Set a new password; every session of the user ends.
    SetPassword {
        user: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Import users from JSON lines: {"email","username","fullname"?,"password_hash"}
    /// with bcrypt ($2a$/$2b$/$2y$) or Argon2 hashes; bcrypt is upgraded at next login.
    Import {
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
pub enum SessionCommand {
    /// Live sessions of a user.
    List { user: String },
    /// Revoke one session by id, or every session of a user with --user.
    Revoke {
        session: Option<String>,
        #[arg(long, conflicts_with = "session")]
        user: Option<String>,
    },
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Finds a user by id, email or username.
pub(crate) async fn find_user(store: &dyn Store, who: &str) -> Result<User, String> {
    let record = match Uuid::parse_str(who) {
        Ok(id) => store.get_user(id).await.map_err(err)?,
        Err(_) => store
            .find_user_for_login(&validate::login_key(who))
            .await
            .map_err(err)?,
    };
    let missing = match validate::login_key(who) {
        LoginKey::Email(_) => format!("no user with email {who}"),
        LoginKey::Username(_) => format!("no user {who}"),
    };
    record.map(|r| r.user).ok_or(missing)
}

fn read_password(from_stdin: bool) -> Result<String, String> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(err)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let first = rpassword::prompt_password("Password: ").map_err(err)?;
        if rpassword::prompt_password("Again: ").map_err(err)? != first {
            return Err("the passwords differ".into());
        }
        first
    };
    validate::password(&password).map_err(err)?;
    Ok(password)
}

fn print_user(u: &User) {
    let state = if u.disabled { "disabled" } else { "active" };
    println!(
        "{}  {:<20} {:<32} {:<9} created {}  {}",
        u.id,
        u.username,
        u.email,
        state,
        super::time(u.created_at),
        u.fullname
    );
}

async fn audit(
    store: &dyn Store,
    kind: &str,
    user: Option<Uuid>,
    session: Option<Uuid>,
    detail: Option<String>,
) {
    let event = AuditEvent {
        at: SystemClock.now(),
        kind: kind.into(),
        user_id: user,
        session_id: session,
        ip: None,
        user_agent: Some("tessera cli".into()),
        detail,
    };
    let _ = store.record_audit(event).await;
}

async fn revoke_all(
    store: &dyn Store,
    v: &Validated,
    user: Uuid,
    reason: RevokeReason,
) -> Result<usize, String> {
    let now = SystemClock.now();
    let until = now + v.server.access_ttl + v.server.leeway;
    Ok(store
        .revoke_user_sessions(user, None, now, reason, until)
        .await
        .map_err(err)?
        .len())
}

pub async fn run_user(cfg: &Config, cmd: UserCommand) -> ExitCode {
    let v = match cfg.validate() {
        Ok(v) => v,
        Err(e) => return super::fail(e),
    };
    let hasher = match PasswordHasher::new(v.hash) {
        Ok(h) => Arc::new(h),
        Err(e) => return super::fail(e),
    };
    super::with_store(cfg, |store| async move {
        let store = store.as_ref();
        match cmd {
            UserCommand::Add {
                username,
                email,
                fullname,
                password_stdin,
            } => {
                let email = validate::email(&email).map_err(err)?;
                let username = validate::username(&username).map_err(err)?;
                let fullname = validate::fullname(&fullname).map_err(err)?;
                let password = read_password(password_stdin)?;
                let password_hash = hasher.hash(password).await.map_err(|e| e.description)?;
                let new = NewUser {
                    id: Uuid::now_v7(),
                    email,
                    username,
                    fullname,
                    password_hash,
                    created_at: SystemClock.now(),
                };
                let user = store.create_user(new).await.map_err(err)?;
                audit(
                    store,
                    "register",
                    Some(user.id),
                    None,
                    Some("by operator".into()),
                )
                .await;
                print_user(&user);
            }
            UserCommand::List { limit, offset } => {
                for u in store.list_users(limit, offset).await.map_err(err)? {
                    print_user(&u);
                }
            }
            UserCommand::Show { user } => {
                let u = find_user(store, &user).await?;
                print_user(&u);
                print_sessions(store, u.id).await?;
            }
            UserCommand::Disable { user } => {
                let u = find_user(store, &user).await?;
                store.set_user_disabled(u.id, true).await.map_err(err)?;
                let n = revoke_all(store, &v, u.id, RevokeReason::Operator).await?;
                audit(store, "user_disabled", Some(u.id), None, None).await;
                println!("disabled {}; {n} sessions revoked", u.username);
            }
            UserCommand::Enable { user } => {
                let u = find_user(store, &user).await?;
                store.set_user_disabled(u.id, false).await.map_err(err)?;
                audit(store, "user_enabled", Some(u.id), None, None).await;
                println!("enabled {}", u.username);
            }
            UserCommand::Delete { user } => {
                let u = find_user(store, &user).await?;
                revoke_all(store, &v, u.id, RevokeReason::Operator).await?;
                store.delete_user(u.id).await.map_err(err)?;
                audit(
                    store,
                    "user_deleted",
                    Some(u.id),
                    None,
                    Some(u.username.clone()),
                )
                .await;
                println!("deleted {}", u.username);
            }
            UserCommand::SetPassword {
                user,
                password_stdin,
            } => {
                let u = find_user(store, &user).await?;
                let password = read_password(password_stdin)?;
                let hash = hasher.hash(password).await.map_err(|e| e.description)?;
                store.set_password_hash(u.id, &hash).await.map_err(err)?;
                let n = revoke_all(store, &v, u.id, RevokeReason::PasswordChanged).await?;
                audit(
                    store,
                    "password_changed",
                    Some(u.id),
                    None,
                    Some("by operator".into()),
                )
                .await;
                println!("password set for {}; {n} sessions revoked", u.username);
            }
            UserCommand::Import { file } => import(store, &file).await?,
        }
        Ok(())
    })
    .await
}

#[derive(serde::Deserialize)]
struct ImportLine {
    email: String,
    username: String,
    #[serde(default)]
    fullname: Option<String>,
    password_hash: String,
}

async fn import(store: &dyn Store, file: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let bar = indicatif::ProgressBar::new(lines.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} users  {elapsed_precise}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut imported, mut failed) = (0usize, Vec::new());
    for (line_no, line) in lines {
        let outcome = async {
            let l: ImportLine =
                serde_json::from_str(line).map_err(|e| format!("not a user record ({e})"))?;
            if !is_supported_hash(&l.password_hash) {
                return Err("password_hash is neither bcrypt nor Argon2".to_string());
            }
            let new = NewUser {
                id: Uuid::now_v7(),
                email: validate::email(&l.email).map_err(err)?,
                username: validate::username(&l.username).map_err(err)?,
                fullname: validate::fullname(l.fullname.as_deref().unwrap_or("")).map_err(err)?,
                password_hash: l.password_hash,
                created_at: SystemClock.now(),
            };
            store.create_user(new).await.map_err(err)
        }
        .await;
        match outcome {
            Ok(_) => imported += 1,
            Err(e) => failed.push(format!("line {line_no}: {e}")),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("imported {imported} users; {} lines skipped", failed.len());
    for f in &failed {
        eprintln!("  {f}");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} lines could not be imported", failed.len()))
    }
}

async fn print_sessions(store: &dyn Store, user: Uuid) -> Result<(), String> {
    for s in store
        .list_user_sessions(user, SystemClock.now())
        .await
        .map_err(err)?
    {
        println!(
            "  session {}  client {}  created {}  last used {}  expires {}  {} {}",
            s.id,
            s.client_id,
            super::time(s.created_at),
            super::time(s.last_used_at),
            super::time(s.idle_expires_at.min(s.absolute_expires_at)),
            s.ip.as_deref().unwrap_or("-"),
            s.user_agent.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

pub async fn run_session(cfg: &Config, cmd: SessionCommand) -> ExitCode {
    let v = match cfg.validate() {
        Ok(v) => v,
        Err(e) => return super::fail(e),
    };
    super::with_store(cfg, |store| async move {
        let store = store.as_ref();
        match cmd {
            SessionCommand::List { user } => {
                let u = find_user(store, &user).await?;
                print_sessions(store, u.id).await?;
            }
            SessionCommand::Revoke {
                user: Some(user), ..
            } => {
                let u = find_user(store, &user).await?;
                let n = revoke_all(store, &v, u.id, RevokeReason::Operator).await?;
                audit(
                    store,
                    "session_revoked",
                    Some(u.id),
                    None,
                    Some(format!("{n} sessions by operator")),
                )
                .await;
                println!("{n} sessions of {} revoked", u.username);
            }
            SessionCommand::Revoke {
                session: Some(id), ..
            } => {
                let sid =
                    Uuid::parse_str(&id).map_err(|_| format!("`{id}` is not a session id"))?;
                let now = SystemClock.now();
                let until = now + v.server.access_ttl + v.server.leeway;
                if !store
                    .revoke_session(sid, now, RevokeReason::Operator, until)
                    .await
                    .map_err(err)?
                {
                    return Err(format!("no live session {sid}"));
                }
                audit(
                    store,
                    "session_revoked",
                    None,
                    Some(sid),
                    Some("by operator".into()),
                )
                .await;
                println!("session {sid} revoked");
            }
            SessionCommand::Revoke { .. } => return Err("name a session id, or --user".into()),
        }
        Ok(())
    })
    .await
}

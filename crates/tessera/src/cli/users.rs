//! `tessera user ...` and `tessera session ...`: the operator's view of accounts.

use crate::config::Config;
use clap::{ArgGroup, Subcommand};
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use tessera_app::Caller;
use tessera_core::model::{Session, User};
use tessera_core::validate;
use tessera_core::{Clock, Store, SystemClock};
use uuid::Uuid;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is asked for twice on a terminal; otherwise
    /// give it on stdin with --password-stdin.
    Add {
        #[arg(value_parser = checked(validate::username))]
        username: String,
        #[arg(long, value_parser = checked(validate::email))]
        email: String,
        #[arg(long, default_value = "", value_parser = checked(validate::fullname))]
        fullname: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Mail a single-use sign-up link to an address (needs signup = invite). The
    /// mail is handed over at once when it can be; otherwise it stays queued for
    /// the server's delivery.
    Invite {
        #[arg(value_parser = checked(validate::email))]
        email: String,
    },
    /// List users, oldest first, a page at a time; the total is on stderr.
    List {
        /// Users per page (1 to 10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Users to skip: the next page starts at offset + limit.
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// Print JSON: {total, offset, limit, users: [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Show one user (by id, email or username) and their live sessions.
    Show {
        user: String,
        /// Print JSON: {user, sessions: [...]}.
        #[arg(long)]
        json: bool,
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
    /// Set a new password; every session of the user ends. Asked for on a
    /// terminal; otherwise give it on stdin with --password-stdin.
    SetPassword {
        user: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Import users from JSON lines or a JSON array: {"email","username","fullname"?,
    /// "password_hash"} with bcrypt ($2a$/$2b$/$2y$) or Argon2 hashes, or mongoexport
    /// output ({"_id":{"$oid"},"fullName","password","createdAt":{"$date"},...}).
    /// bcrypt is upgraded at next login; users already imported are skipped.
    Import {
        file: std::path::PathBuf,
        /// Check every record and report what would happen; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub enum SessionCommand {
    /// Live sessions of a user, newest first.
    List {
        user: String,
        /// Print JSON: an array of sessions.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one session by id, or every session of a user with --user.
    #[command(group(ArgGroup::new("which").required(true).args(["session", "user"])))]
    Revoke {
        session: Option<Uuid>,
        #[arg(long, conflicts_with = "session")]
        user: Option<String>,
    },
}

/// A clap value parser from an input rule: a value the rule refuses is a usage
/// error (exit 2) reported before anything is opened. The value is kept as typed;
/// the use case normalises it.
fn checked<T: 'static, E: std::fmt::Display + 'static>(
    rule: fn(&str) -> Result<T, E>,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |raw: &str| {
        rule(raw)
            .map(|_| raw.to_string())
            .map_err(|e| e.to_string())
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Finds a user by id, email or username.
pub(crate) async fn find_user(store: &dyn Store, who: &str) -> Result<User, String> {
    tessera_app::find_user(store, who).await.map_err(err)
}

/// Without --password-stdin the password is asked for on the terminal; with no
/// terminal that cannot work, which is a usage error (exit 2) said before any
/// database is opened.
fn check_password_source(from_stdin: bool) -> Option<ExitCode> {
    (!from_stdin && !std::io::stdin().is_terminal()).then(|| {
        super::usage(
            "no terminal to ask for the password; give it on stdin with --password-stdin \
             (printf '%s\\n' \"$PASSWORD\" | tessera user add ... --password-stdin)",
        )
    })
}

fn read_password(from_stdin: bool) -> Result<String, String> {
    let password = if from_stdin {
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
    outln!(
        "{}  {:<20} {:<32} {:<9} created {}  {}",
        u.id,
        u.username,
        u.email,
        state,
        super::time(u.created_at),
        u.fullname
    );
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id.to_string(),
        "email": u.email,
        "username": u.username,
        "fullname": u.fullname,
        "created_at": super::time(u.created_at),
        "disabled": u.disabled,
    })
}

fn session_json(s: &Session) -> Value {
    json!({
        "id": s.id.to_string(),
        "client_id": s.client_id,
        "created_at": super::time(s.created_at),
        "last_used_at": super::time(s.last_used_at),
        "expires_at": super::time(s.idle_expires_at.min(s.absolute_expires_at)),
        "ip": s.ip,
        "user_agent": s.user_agent,
    })
}

/// What `user list` says about the page it printed (on stderr).
fn page_note(total: u64, offset: u64, shown: u64) -> String {
    if total == 0 {
        "no users".into()
    } else if shown == 0 {
        format!(
            "no users at offset {offset}; there are {total} (offsets 0 to {})",
            total - 1
        )
    } else if offset + shown < total {
        format!(
            "showing {}-{} of {total}; use --offset {} for more",
            offset + 1,
            offset + shown,
            offset + shown
        )
    } else if offset == 0 {
        super::plural(total, "user")
    } else {
        format!("showing {}-{} of {total}", offset + 1, offset + shown)
    }
}

pub async fn run_user(cfg: &Config, cmd: UserCommand) -> ExitCode {
    let operator = Caller::operator();
    match cmd {
        UserCommand::List {
            limit,
            offset,
            json,
        } => {
            super::with_reader(cfg, |store| async move {
                let total = store.count_users().await.map_err(err)?;
                let users = store.list_users(limit, offset).await.map_err(err)?;
                if json {
                    let next = u64::from(offset) + users.len() as u64;
                    return super::print_json(&json!({
                        "total": total,
                        "offset": offset,
                        "limit": limit,
                        "next_offset": (next < total).then_some(next),
                        "users": users.iter().map(user_json).collect::<Vec<_>>(),
                    }));
                }
                for u in &users {
                    print_user(u);
                }
                eprintln!(
                    "{}",
                    page_note(total, u64::from(offset), users.len() as u64)
                );
                Ok(())
            })
            .await
        }
        UserCommand::Show { user, json } => {
            super::with_reader(cfg, |store| async move {
                let u = find_user(store.as_ref(), &user).await?;
                let sessions = store
                    .list_user_sessions(u.id, SystemClock.now())
                    .await
                    .map_err(err)?;
                if json {
                    return super::print_json(&json!({
                        "user": user_json(&u),
                        "sessions": sessions.iter().map(session_json).collect::<Vec<_>>(),
                    }));
                }
                print_user(&u);
                if let Some(legacy) = &u.legacy_id {
                    outln!("  legacy id {legacy}");
                }
                print_sessions(&u, &sessions);
                Ok(())
            })
            .await
        }
        UserCommand::Import { file, dry_run } => {
            super::with_store(cfg, |store| async move {
                super::import::run(store.as_ref(), &file, dry_run).await
            })
            .await
        }
        UserCommand::Add {
            username,
            email,
            fullname,
            password_stdin,
        } => {
            if let Some(code) = check_password_source(password_stdin) {
                return code;
            }
            super::with_app(cfg, |app| async move {
                let password = read_password(password_stdin)?;
                let user = app
                    .sign_up(&email, &username, password, &fullname, &operator)
                    .await
                    .map_err(err)?;
                print_user(&user);
                Ok(())
            })
            .await
        }
        UserCommand::Invite { email } => {
            super::with_app(cfg, |app| async move {
                let until = app.invite(&email, &operator).await.map_err(err)?;
                let sent = app.deliver_due_mail().await > 0;
                let how = if sent {
                    "mailed"
                } else {
                    "queued for delivery by the server"
                };
                println!(
                    "invited {email} ({how}); the link works until {}",
                    tessera_app::rfc3339(until)
                );
                Ok(())
            })
            .await
        }
        UserCommand::Disable { user } => {
            super::with_existing_app(cfg, |app| async move {
                let u = find_user(app.store.as_ref(), &user).await?;
                let ended = app
                    .set_user_disabled(u.id, true, &operator)
                    .await
                    .map_err(err)?;
                outln!(
                    "disabled {}; {} revoked",
                    u.username,
                    super::plural(ended.len() as u64, "session")
                );
                Ok(())
            })
            .await
        }
        UserCommand::Enable { user } => {
            super::with_existing_app(cfg, |app| async move {
                let u = find_user(app.store.as_ref(), &user).await?;
                app.set_user_disabled(u.id, false, &operator)
                    .await
                    .map_err(err)?;
                outln!("enabled {}", u.username);
                Ok(())
            })
            .await
        }
        UserCommand::Delete { user } => {
            super::with_existing_app(cfg, |app| async move {
                let u = find_user(app.store.as_ref(), &user).await?;
                app.delete_user(&u, &operator).await.map_err(err)?;
                outln!("deleted {}", u.username);
                Ok(())
            })
            .await
        }
        UserCommand::SetPassword {
            user,
            password_stdin,
        } => {
            if let Some(code) = check_password_source(password_stdin) {
                return code;
            }
            super::with_existing_app(cfg, |app| async move {
                let u = find_user(app.store.as_ref(), &user).await?;
                let password = read_password(password_stdin)?;
                let ended = app
                    .set_password(u.id, password, &operator)
                    .await
                    .map_err(err)?;
                outln!(
                    "password set for {}; {} revoked",
                    u.username,
                    super::plural(ended.len() as u64, "session")
                );
                Ok(())
            })
            .await
        }
    }
}

fn print_sessions(user: &User, sessions: &[Session]) {
    if sessions.is_empty() {
        eprintln!("no live sessions of {}", user.username);
    }
    for s in sessions {
        outln!(
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
}

pub async fn run_session(cfg: &Config, cmd: SessionCommand) -> ExitCode {
    let operator = Caller::operator();
    match cmd {
        SessionCommand::List { user, json } => {
            super::with_reader(cfg, |store| async move {
                let u = find_user(store.as_ref(), &user).await?;
                let sessions = store
                    .list_user_sessions(u.id, SystemClock.now())
                    .await
                    .map_err(err)?;
                if json {
                    return super::print_json(&Value::Array(
                        sessions.iter().map(session_json).collect(),
                    ));
                }
                print_sessions(&u, &sessions);
                Ok(())
            })
            .await
        }
        SessionCommand::Revoke {
            user: Some(user), ..
        } => {
            super::with_existing_app(cfg, |app| async move {
                let u = find_user(app.store.as_ref(), &user).await?;
                let n = app
                    .revoke_user_sessions(u.id, &operator)
                    .await
                    .map_err(err)?
                    .len();
                outln!(
                    "{} of {} revoked",
                    super::plural(n as u64, "session"),
                    u.username
                );
                Ok(())
            })
            .await
        }
        SessionCommand::Revoke {
            session: Some(sid), ..
        } => {
            super::with_existing_app(cfg, |app| async move {
                app.revoke_session(sid, &operator).await.map_err(err)?;
                outln!("session {sid} revoked");
                Ok(())
            })
            .await
        }
        // clap requires one of the two.
        SessionCommand::Revoke { .. } => super::usage("name a session id, or --user"),
    }
}

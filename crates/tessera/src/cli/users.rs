//! `tessera user ...` and `tessera session ...`: the operator's view of accounts.

use crate::config::Config;
use clap::Subcommand;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use tessera_app::Caller;
use tessera_core::model::User;
use tessera_core::validate;
use tessera_core::{Clock, Store, SystemClock};
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
    tessera_app::find_user(store, who).await.map_err(err)
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

pub async fn run_user(cfg: &Config, cmd: UserCommand) -> ExitCode {
    let operator = Caller::operator();
    match cmd {
        UserCommand::List { limit, offset } => {
            super::with_store(cfg, |store| async move {
                for u in store.list_users(limit, offset).await.map_err(err)? {
                    print_user(&u);
                }
                Ok(())
            })
            .await
        }
        UserCommand::Show { user } => {
            super::with_store(cfg, |store| async move {
                let u = find_user(store.as_ref(), &user).await?;
                print_user(&u);
                if let Some(legacy) = &u.legacy_id {
                    println!("  legacy id {legacy}");
                }
                print_sessions(store.as_ref(), u.id).await
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
            super::with_app(cfg, |app| async move {
                // Input mistakes are reported before the password is asked for.
                validate::email(&email).map_err(err)?;
                validate::username(&username).map_err(err)?;
                validate::fullname(&fullname).map_err(err)?;
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
        UserCommand::Disable { user } => {
            super::with_app(cfg, |app| async move {
                let u = find_user(app.store.as_ref(), &user).await?;
                let ended = app
                    .set_user_disabled(u.id, true, &operator)
                    .await
                    .map_err(err)?;
                println!("disabled {}; {} sessions revoked", u.username, ended.len());
                Ok(())
            })
            .await
        }
        UserCommand::Enable { user } => {
            super::with_app(cfg, |app| async move {
                let u = find_user(app.store.as_ref(), &user).await?;
                app.set_user_disabled(u.id, false, &operator)
                    .await
                    .map_err(err)?;
                println!("enabled {}", u.username);
                Ok(())
            })
            .await
        }
        UserCommand::Delete { user } => {
            super::with_app(cfg, |app| async move {
                let u = find_user(app.store.as_ref(), &user).await?;
                app.delete_user(&u, &operator).await.map_err(err)?;
                println!("deleted {}", u.username);
                Ok(())
            })
            .await
        }
        UserCommand::SetPassword {
            user,
            password_stdin,
        } => {
            super::with_app(cfg, |app| async move {
                let u = find_user(app.store.as_ref(), &user).await?;
                let password = read_password(password_stdin)?;
                let ended = app
                    .set_password(u.id, password, &operator)
                    .await
                    .map_err(err)?;
                println!(
                    "password set for {}; {} sessions revoked",
                    u.username,
                    ended.len()
                );
                Ok(())
            })
            .await
        }
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
    let operator = Caller::operator();
    match cmd {
        SessionCommand::List { user } => {
            super::with_store(cfg, |store| async move {
                let u = find_user(store.as_ref(), &user).await?;
                print_sessions(store.as_ref(), u.id).await
            })
            .await
        }
        SessionCommand::Revoke {
            user: Some(user), ..
        } => {
            super::with_app(cfg, |app| async move {
                let u = find_user(app.store.as_ref(), &user).await?;
                let n = app
                    .revoke_user_sessions(u.id, &operator)
                    .await
                    .map_err(err)?
                    .len();
                println!("{n} sessions of {} revoked", u.username);
                Ok(())
            })
            .await
        }
        SessionCommand::Revoke {
            session: Some(id), ..
        } => {
            super::with_app(cfg, |app| async move {
                let sid =
                    Uuid::parse_str(&id).map_err(|_| format!("`{id}` is not a session id"))?;
                app.revoke_session(sid, &operator).await.map_err(err)?;
                println!("session {sid} revoked");
                Ok(())
            })
            .await
        }
        SessionCommand::Revoke { .. } => super::fail("name a session id, or --user"),
    }
}

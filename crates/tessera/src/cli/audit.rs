//! `tessera audit [--user U] [--since T] [--tail N] [--json]`: the newest events
//! of the audit trail, printed oldest first like `tail`.

use crate::config::Config;
use clap::Args;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use tessera_core::model::AuditEvent;
use tessera_core::{Clock, Span, Store, SystemClock, validate};
use uuid::Uuid;

/// Every kind of event Tessera records, with what it means.
pub const EVENT_KINDS: &[(&str, &str)] = &[
    (
        "register",
        "an account was created (API, invitation or `tessera user add`)",
    ),
    ("login_ok", "a password login succeeded"),
    (
        "login_failed",
        "a login was refused (wrong password, unknown or disabled user, email not verified)",
    ),
    (
        "email_verified",
        "an email address was confirmed through a mailed link",
    ),
    (
        "password_reset_requested",
        "a password-reset link was asked for (detail: unknown address when none was sent)",
    ),
    ("throttled", "a request was refused by a rate limit"),
    (
        "refresh_reuse",
        "a superseded refresh token was replayed; its session was revoked",
    ),
    ("logout", "a session ended by logout or token revocation"),
    (
        "consent_granted",
        "a user allowed a third-party application the scopes it asked for",
    ),
    (
        "consent_revoked",
        "a user withdrew an application's access; its sessions ended",
    ),
    (
        "code_exchanged",
        "an authorization code was exchanged for tokens (a session of that client)",
    ),
    (
        "code_reuse",
        "an authorization code was presented again; the session it opened ended",
    ),
    (
        "password_changed",
        "a password was changed, set or reset by link; other sessions ended",
    ),
    (
        "password_change_failed",
        "a password change gave the wrong current password",
    ),
    (
        "invited",
        "an operator mailed an invitation to sign up (`tessera user invite`)",
    ),
    (
        "register_pending",
        "a registration waits for its address to be confirmed (email verification `required`)",
    ),
    (
        "register_taken_address",
        "a registration named an address that has an account; its owner was mailed",
    ),
    (
        "email_change_taken_address",
        "an email change named an address that has an account; answered like a free one",
    ),
    (
        "account_delete_failed",
        "an account deletion gave the wrong current password",
    ),
    (
        "account_deleted",
        "a user deleted their own account; its sessions ended",
    ),
    (
        "email_change_requested",
        "a confirmation link was mailed to a new address",
    ),
    (
        "email_change_failed",
        "an email change gave the wrong current password",
    ),
    (
        "email_changed",
        "a new address was confirmed and replaced the old one",
    ),
    (
        "session_revoked",
        "sessions ended by their user or an operator",
    ),
    (
        "user_disabled",
        "an operator disabled a user; their sessions ended",
    ),
    ("user_enabled", "an operator enabled a user again"),
    (
        "user_deleted",
        "an operator deleted a user and their sessions",
    ),
    ("key_rotated", "a new signing key was published"),
];

const DEFAULT_TAIL: u32 = 50;

fn after_help() -> String {
    let mut out = String::from("Event kinds:\n");
    for (kind, meaning) in EVENT_KINDS {
        out.push_str(&format!("  {kind:<26}{meaning}\n"));
    }
    out.push_str(
        "\nEach line shows the time, the kind, the user, the session, the client \
         address and user agent, and details.",
    );
    out
}

#[derive(Args)]
#[command(after_help = after_help())]
pub struct AuditArgs {
    /// Only this user's events: a user id, an email or a username.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Only events since this time: RFC 3339 (2026-01-31T12:00:00Z) or a span ago
    /// (2h, 7d, 1h30m). Alone, it shows every event since then.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    since: Option<Since>,
    /// Show the newest N events [default: 50, or all with --since].
    #[arg(long, visible_alias = "limit", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    tail: Option<u32>,
    /// Print JSON: an array of events, oldest first.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Since {
    At(i64),
    Ago(Span),
}

/// `2h` (that long ago) or an RFC 3339 time (`Z` or an offset; a date alone is midnight UTC).
fn parse_since(raw: &str) -> Result<Since, String> {
    let s = raw.trim();
    if let Ok(span) = s.parse::<Span>() {
        return Ok(Since::Ago(span));
    }
    let bad =
        || format!("`{raw}` is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a span (2h)");
    let b = s.as_bytes();
    let (base, offset) =
        if b.len() > 6 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':' {
            let (base, off) = s.split_at(s.len() - 6);
            let hours: i64 = off[1..3].parse().map_err(|_| bad())?;
            let mins: i64 = off[4..].parse().map_err(|_| bad())?;
            let sign = if off.starts_with('-') { -1 } else { 1 };
            (base.to_string(), sign * (hours * 3600 + mins * 60))
        } else if s.len() == 10 {
            (format!("{s}T00:00:00"), 0)
        } else {
            (s.trim_end_matches(['Z', 'z']).to_string(), 0)
        };
    let t = humantime::parse_rfc3339_weak(&base).map_err(|_| bad())?;
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad())?
        .as_secs() as i64;
    Ok(Since::At(secs - offset))
}

/// Shows untrusted text (user agents, details) on one line without control characters.
fn clean(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect()
}

async fn resolve_user(store: &dyn Store, who: &str) -> Result<Uuid, String> {
    if let Ok(id) = Uuid::parse_str(who.trim()) {
        // Events outlive deleted users: an id is taken as is.
        return Ok(id);
    }
    match store.find_user_for_login(&validate::login_key(who)).await {
        Ok(Some(r)) => Ok(r.user.id),
        Ok(None) => Err(format!("no user has the id, email or username `{who}`")),
        Err(e) => Err(e.to_string()),
    }
}

fn line(e: &AuditEvent, names: &HashMap<Uuid, String>) -> String {
    let user = match e.user_id {
        Some(id) => match names.get(&id) {
            Some(name) => format!("{name} ({id})"),
            None => id.to_string(),
        },
        None => "-".into(),
    };
    let session = e
        .session_id
        .map(|s| s.to_string())
        .unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{}  {:<22} user={user} session={session} ip={} ua=\"{}\"",
        crate::cli::time(e.at),
        clean(&e.kind),
        e.ip.as_deref().map(clean).unwrap_or_else(|| "-".into()),
        e.user_agent.as_deref().map(clean).unwrap_or_default(),
    );
    if let Some(d) = &e.detail {
        out.push_str("  ");
        out.push_str(&clean(d));
    }
    out
}

fn event_json(e: &AuditEvent, names: &HashMap<Uuid, String>) -> Value {
    json!({
        "at": crate::cli::time(e.at),
        "kind": e.kind,
        "user_id": e.user_id.map(|u| u.to_string()),
        "username": e.user_id.and_then(|u| names.get(&u)),
        "session_id": e.session_id.map(|s| s.to_string()),
        "ip": e.ip,
        "user_agent": e.user_agent,
        "detail": e.detail,
    })
}

pub async fn run(cfg: &Config, args: AuditArgs) -> ExitCode {
    let now = SystemClock.now();
    let since = match args.since {
        None => 0,
        Some(Since::At(t)) => t,
        Some(Since::Ago(span)) => now.saturating_sub(span.as_i64()),
    };
    let tail = args.tail.unwrap_or(if args.since.is_some() {
        u32::MAX - 1
    } else {
        DEFAULT_TAIL
    });
    super::with_reader(cfg, |store| async move {
        let user = match &args.user {
            Some(who) => Some(resolve_user(store.as_ref(), who).await?),
            None => None,
        };
        // One more than shown tells whether older events exist.
        let mut events = store
            .list_recent_audit(user, since, tail.saturating_add(1))
            .await
            .map_err(|e| e.to_string())?;
        let more = events.len() > tail as usize;
        events.truncate(tail as usize);
        events.reverse();
        let mut names = HashMap::new();
        for id in events.iter().filter_map(|e| e.user_id) {
            if !names.contains_key(&id)
                && let Ok(Some(r)) = store.get_user(id).await
            {
                names.insert(id, r.user.username);
            }
        }
        if args.json {
            return super::print_json(&Value::Array(
                events.iter().map(|e| event_json(e, &names)).collect(),
            ));
        }
        for e in &events {
            outln!("{}", line(e, &names));
        }
        if events.is_empty() {
            eprintln!("no audit events match");
        } else if more {
            eprintln!(
                "(the newest {}; older ones exist: raise --tail or use --since)",
                super::plural(events.len() as u64, "event")
            );
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_spans_and_rfc3339() {
        assert!(matches!(parse_since("2h"), Ok(Since::Ago(s)) if s.secs() == 7200));
        assert!(matches!(parse_since("900"), Ok(Since::Ago(s)) if s.secs() == 900));
        let at = |s| match parse_since(s) {
            Ok(Since::At(t)) => t,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(at("1970-01-02T00:00:00Z"), 86_400);
        assert_eq!(at("1970-01-02T00:00:00"), 86_400);
        assert_eq!(at("1970-01-02"), 86_400);
        assert_eq!(at("1970-01-02T02:00:00+02:00"), 86_400);
        assert_eq!(at("1970-01-01T22:30:00-01:30"), 86_400);
        for bad in [
            "yesterday",
            "2h ago",
            "2026-13-01T00:00:00Z",
            "",
            "1970-01-02T00:00:00+2",
        ] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_text_is_printed_inert() {
        assert_eq!(clean("curl/8\u{1b}[2J\n"), "curl/8\\u{1b}[2J\\n");
    }
}

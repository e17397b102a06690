//! `tessera audit [--user U] [--since T] [--limit N]`: the audit trail, oldest first.

use crate::config::Config;
use clap::Args;
use std::collections::HashMap;
use std::process::ExitCode;
use tessera_core::model::AuditEvent;
use tessera_core::{Clock, Span, Store, SystemClock, validate};
use uuid::Uuid;

#[derive(Args)]
#[command(
    after_help = "Event kinds: register, login_ok, login_failed, throttled, \
refresh_reuse, logout, password_changed, password_change_failed, session_revoked, \
key_rotated.\nEach line shows the time, the kind, the user, the session, the client \
address and user agent, and details."
)]
pub struct AuditArgs {
    /// Only this user's events: a user id, an email or a username.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Only events since this time: RFC 3339 (2026-01-31T12:00:00Z) or a span ago (2h, 7d).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    since: Option<Since>,
    /// Print at most this many events.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    limit: u32,
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

pub async fn run(cfg: &Config, args: AuditArgs) -> ExitCode {
    let now = SystemClock.now();
    let since = match args.since {
        None => 0,
        Some(Since::At(t)) => t,
        Some(Since::Ago(span)) => now.saturating_sub(span.as_i64()),
    };
    super::with_store(cfg, |store| async move {
        let user = match &args.user {
            Some(who) => Some(resolve_user(store.as_ref(), who).await?),
            None => None,
        };
        let events = store
            .list_audit(user, since, args.limit.max(1))
            .await
            .map_err(|e| e.to_string())?;
        let mut names = HashMap::new();
        for id in events.iter().filter_map(|e| e.user_id) {
            if !names.contains_key(&id)
                && let Ok(Some(r)) = store.get_user(id).await
            {
                names.insert(id, r.user.username);
            }
        }
        for e in &events {
            println!("{}", line(e, &names));
        }
        if events.is_empty() {
            eprintln!("no audit events match");
        } else if events.len() as u32 >= args.limit.max(1) {
            eprintln!(
                "(the first {} events; narrow with --since or raise --limit)",
                events.len()
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

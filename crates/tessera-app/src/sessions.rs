//! The one way a session ends. Logout (every scope), reuse detection, a password
//! change or reset, an operator's revoke, disable or delete, a user deleting their
//! account, and OAuth token revocation all call [`App::end_sessions`]: it revokes
//! the sessions (which lists them in the revocation feed until their last access
//! token has expired), records the audit event and queues the OpenID Connect
//! back-channel logout notices. Effects that must follow every ending belong here.

use crate::error::AppResult;
use crate::{App, Caller};
use tessera_core::Session;
use tessera_core::model::{OutboxKind, RevokeReason};
use uuid::Uuid;

/// Which sessions end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSet {
    One(Uuid),
    /// Every live session of `user`, except `except` (the caller's own, for
    /// "sign out everywhere else" and a password change).
    AllOf {
        user: Uuid,
        except: Option<Uuid>,
    },
}

/// A request to end sessions, and how the audit trail records it.
#[derive(Debug, Clone)]
pub struct Ending {
    pub sessions: SessionSet,
    pub reason: RevokeReason,
    /// The audit event's kind (`logout`, `refresh_reuse`, `password_changed`, ...).
    pub event: &'static str,
    /// The user and session the event is about.
    pub user: Option<Uuid>,
    pub session: Option<Uuid>,
    pub detail: Option<String>,
}

impl App {
    /// How long a revoked session stays in the revocation feed: until the last
    /// access token issued for it has expired everywhere.
    pub fn feed_until(&self, now: i64) -> i64 {
        now + self.settings.access_ttl + self.settings.leeway
    }

    /// Ends the sessions `ending` names and records its event: for one session
    /// only when it was still live, for a user's sessions always (with the count).
    /// Returns the ids of the sessions that ended now.
    pub async fn end_sessions(&self, ending: Ending, caller: &Caller) -> AppResult<Vec<Uuid>> {
        let now = self.now();
        let until = self.feed_until(now);
        // Which client each session belongs to, read before they end: the
        // clients with a back-channel logout URI are told afterwards.
        let mut candidates: Vec<Session> = match ending.sessions {
            SessionSet::One(sid) => self
                .store
                .get_session(sid)
                .await?
                .map(|(s, _)| s)
                .into_iter()
                .collect(),
            SessionSet::AllOf { user, .. } => self.store.list_user_sessions(user, now).await?,
        };
        let (ended, detail) = match ending.sessions {
            SessionSet::One(sid) => {
                let ended = self
                    .store
                    .revoke_session(sid, now, ending.reason, until)
                    .await?;
                if !ended {
                    return Ok(Vec::new());
                }
                // A browser signing out signs out the applications' sessions
                // opened from it (single logout).
                let mut ended = vec![sid];
                for child in self.store.child_sessions(sid, now).await? {
                    if self
                        .store
                        .revoke_session(child.id, now, ending.reason, until)
                        .await?
                    {
                        ended.push(child.id);
                        candidates.push(child);
                    }
                }
                let detail = match (ending.detail, ended.len()) {
                    (d, 1) => d,
                    (Some(d), n) => Some(format!("{d}; with {} application sessions", n - 1)),
                    (None, n) => Some(format!("with {} application sessions", n - 1)),
                };
                (ended, detail)
            }
            SessionSet::AllOf { user, except } => {
                let ended = self
                    .store
                    .revoke_user_sessions(user, except, now, ending.reason, until)
                    .await?;
                let count = format!("{} sessions revoked", ended.len());
                let detail = match ending.detail {
                    Some(d) => format!("{d}; {count}"),
                    None => count,
                };
                (ended, Some(detail))
            }
        };
        self.audit(ending.event, ending.user, ending.session, caller, detail)
            .await;
        let ended_sessions: Vec<&Session> = candidates
            .iter()
            .filter(|s| ended.contains(&s.id))
            .collect();
        self.queue_backchannel_logouts(&ended_sessions).await;
        Ok(ended)
    }

    /// Queues an OpenID Connect back-channel logout notice for each ended session
    /// whose client registered a `backchannel_logout_uri`. The session has ended
    /// whatever happens here; a notice that cannot be queued is logged.
    async fn queue_backchannel_logouts(&self, ended: &[&Session]) {
        let mut clients: Vec<tessera_core::Client> = Vec::new();
        for s in ended {
            if !clients.iter().any(|c| c.id == s.client_id) {
                match self.store.get_client(&s.client_id).await {
                    Ok(Some(c)) => clients.push(c),
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, session = %s.id, "cannot read the session's client; no back-channel logout queued");
                        continue;
                    }
                }
            }
            let Some(uri) = clients
                .iter()
                .find(|c| c.id == s.client_id)
                .and_then(|c| c.backchannel_logout_uri.clone())
            else {
                continue;
            };
            let notice = serde_json::json!({
                "aud": s.client_id,
                "sub": s.user_id.to_string(),
                "sid": s.id.to_string(),
            });
            if let Err(e) = self
                .queue_outbox(
                    OutboxKind::BackchannelLogout,
                    &uri,
                    &s.client_id,
                    notice.to_string(),
                )
                .await
            {
                tracing::warn!(error = %e.description, session = %s.id, "cannot queue a back-channel logout");
            }
        }
    }
}

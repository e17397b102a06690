//! What an operator can do to accounts and sessions (the `tessera` CLI).

use crate::error::{AppError, AppResult};
use crate::sessions::{Ending, SessionSet};
use crate::{App, Caller};
use std::sync::Arc;
use tessera_core::model::RevokeReason;
use tessera_core::validate::{self, LoginKey};
use tessera_core::{Store, User};
use uuid::Uuid;

/// Finds a user by id, email or username.
pub async fn find_user(store: &dyn Store, who: &str) -> AppResult<User> {
    let record = match Uuid::parse_str(who) {
        Ok(id) => store.get_user(id).await?,
        Err(_) => store.find_user_for_login(&validate::login_key(who)).await?,
    };
    let missing = match validate::login_key(who) {
        LoginKey::Email(_) => format!("no user with email {who}"),
        LoginKey::Username(_) => format!("no user {who}"),
    };
    record
        .map(|r| r.user)
        .ok_or_else(|| AppError::not_found(missing))
}

impl App {
    /// Sets a user's password (the operator knows no current one); every session
    /// of the user ends. Returns how many ended.
    pub async fn set_password(
        self: &Arc<Self>,
        user: Uuid,
        password: String,
        caller: &Caller,
    ) -> AppResult<Vec<Uuid>> {
        let record = self
            .store
            .get_user(user)
            .await?
            .ok_or_else(|| AppError::not_found("no such user"))?;
        validate::new_password(&password, &[&record.user.email, &record.user.username])?;
        let hash = self.hasher.hash(password).await?;
        let detail = caller.operator.then(|| "by operator".to_string());
        self.replace_password(user, hash, None, detail, caller.clone())
            .await
    }

    /// Disables a user (logins fail, refreshes fail) and ends every session at
    /// once; or enables one again. Returns the sessions ended.
    pub async fn set_user_disabled(
        &self,
        user: Uuid,
        disabled: bool,
        caller: &Caller,
    ) -> AppResult<Vec<Uuid>> {
        self.store.set_user_disabled(user, disabled).await?;
        if !disabled {
            self.audit("user_enabled", Some(user), None, caller, None)
                .await;
            return Ok(Vec::new());
        }
        self.end_user_sessions(user, RevokeReason::Operator, "user_disabled", None, caller)
            .await
    }

    /// Ends every session of a user, then deletes the user.
    pub async fn delete_user(&self, user: &User, caller: &Caller) -> AppResult<()> {
        self.end_user_sessions(
            user.id,
            RevokeReason::Operator,
            "user_deleted",
            Some(user.username.clone()),
            caller,
        )
        .await?;
        self.store.delete_user(user.id).await?;
        Ok(())
    }

    /// An operator's (or an admin's) revoke of every session of a user.
    pub async fn revoke_user_sessions(&self, user: Uuid, caller: &Caller) -> AppResult<Vec<Uuid>> {
        self.end_user_sessions(
            user,
            RevokeReason::Operator,
            "session_revoked",
            None,
            caller,
        )
        .await
    }

    /// An operator's (or an admin's) revoke of one session; "not found" unless it was live.
    pub async fn revoke_session(&self, sid: Uuid, caller: &Caller) -> AppResult<()> {
        let ending = Ending {
            sessions: SessionSet::One(sid),
            reason: RevokeReason::Operator,
            event: "session_revoked",
            user: None,
            session: Some(sid),
            detail: caller.operator.then(|| "by operator".to_string()),
        };
        if self.end_sessions(ending, caller).await?.is_empty() {
            return Err(AppError::not_found(format!("no live session {sid}")));
        }
        Ok(())
    }

    async fn end_user_sessions(
        &self,
        user: Uuid,
        reason: RevokeReason,
        event: &'static str,
        detail: Option<String>,
        caller: &Caller,
    ) -> AppResult<Vec<Uuid>> {
        let by = caller.operator.then_some("by operator");
        let detail = match (detail, by) {
            (Some(d), Some(b)) => Some(format!("{d}; {b}")),
            (d, b) => d.or(b.map(str::to_string)),
        };
        let ending = Ending {
            sessions: SessionSet::AllOf { user, except: None },
            reason,
            event,
            user: Some(user),
            session: None,
            detail,
        };
        self.end_sessions(ending, caller).await
    }
}

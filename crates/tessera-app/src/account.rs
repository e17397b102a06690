//! The signed-in user's own account: profile, password, sessions.

use crate::error::{AppError, AppResult};
use crate::sessions::{Ending, SessionSet};
use crate::{App, Caller};
use std::sync::Arc;
use tessera_core::model::{RevokeReason, UserPatch};
use tessera_core::validate::{self, LoginKey};
use tessera_core::{Session, StoreError, User};
use uuid::Uuid;

/// A profile change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProfileChange<'a> {
    pub email: Option<&'a str>,
    pub username: Option<&'a str>,
    pub fullname: Option<&'a str>,
}

impl App {
    /// Changes the user's username or full name (an email in `change` is refused:
    /// see `request_email_change`).
    pub async fn update_profile(
        &self,
        user: Uuid,
        change: ProfileChange<'_>,
        caller: &Caller,
    ) -> AppResult<User> {
        // The address changes only through a link mailed to the new one.
        if change.email.is_some() {
            return Err(AppError::invalid_request(
                "email: change the address with POST /v1/me/email (it needs the current password and a confirmation from the new address)",
            ));
        }
        // A taken username answers 409, as registration does; changing it therefore
        // spends the registration budget, so it is no cheaper way to probe.
        if change.username.is_some() {
            self.throttle_ip("register", self.settings.throttle.register_ip, caller)
                .await?;
        }
        let patch = UserPatch {
            email: None,
            username: change.username.map(validate::username).transpose()?,
            fullname: change.fullname.map(validate::fullname).transpose()?,
        };
        // A name a registration waiting for its confirmation reserved is taken.
        if let Some(name) = &patch.username
            && self
                .store
                .find_pending_user(&LoginKey::Username(name.clone()), self.now())
                .await?
                .is_some()
        {
            return Err(StoreError::Conflict("username").into());
        }
        Ok(self.store.update_user(user, patch).await?)
    }

    /// Changes `user`'s password after checking the current one; every session of
    /// the user but `current_session` (the one asking) ends.
    pub async fn change_password(
        self: &Arc<Self>,
        user: &User,
        current_session: Uuid,
        current_password: String,
        new_password: String,
        caller: &Caller,
    ) -> AppResult<()> {
        validate::new_password(&new_password, &[&user.email, &user.username])
            .map_err(|e| AppError::invalid_request(format!("new_{e}")))?;
        self.check_current_password(
            user,
            current_session,
            current_password,
            "password_change_failed",
            caller,
        )
        .await?;
        let hash = self.hasher.hash(new_password).await?;
        self.replace_password(user.id, hash, Some(current_session), None, caller.clone())
            .await?;
        Ok(())
    }

    /// Checks the signed-in user's current password before a change that needs it
    /// (password, address, deletion). A wrong one is answered 403 `forbidden`;
    /// checks count against the login limits of the account, so a stolen access
    /// token is no unthrottled password oracle.
    pub(crate) async fn check_current_password(
        &self,
        user: &User,
        current_session: Uuid,
        current_password: String,
        failed_event: &'static str,
        caller: &Caller,
    ) -> AppResult<()> {
        let wrong = || AppError::forbidden("the current password is incorrect");
        if current_password
            .chars()
            .nth(validate::PASSWORD_MAX_CHARS)
            .is_some()
        {
            return Err(wrong());
        }
        let record = self
            .store
            .get_user(user.id)
            .await?
            .ok_or_else(|| AppError::invalid_token("no such user"))?;
        self.throttle_login(&user.username, caller).await?;
        if !self
            .hasher
            .verify(current_password, Some(record.password_hash))
            .await?
        {
            self.audit(
                failed_event,
                Some(user.id),
                Some(current_session),
                caller,
                None,
            )
            .await;
            return Err(wrong());
        }
        self.login_succeeded(&user.username, caller).await;
        Ok(())
    }

    /// Stores a new password hash and ends every session of the user but `keep`
    /// (returned).
    /// The two writes belong together: they run in their own task so a request
    /// timeout or a dropped connection cannot stop between them.
    pub(crate) async fn replace_password(
        self: &Arc<Self>,
        user: Uuid,
        hash: String,
        keep: Option<Uuid>,
        detail: Option<String>,
        caller: Caller,
    ) -> AppResult<Vec<Uuid>> {
        let app = self.clone();
        let writes = tokio::spawn(async move {
            app.store.set_password_hash(user, &hash).await?;
            let ending = Ending {
                sessions: SessionSet::AllOf { user, except: keep },
                reason: RevokeReason::PasswordChanged,
                event: "password_changed",
                user: Some(user),
                session: keep,
                detail,
            };
            let ended = app.end_sessions(ending, &caller).await?;
            // Links asked for before the change must not undo it: a reset link, or
            // an address change that whoever knew the old password started.
            for purpose in [
                tessera_core::TokenPurpose::ResetPassword,
                tessera_core::TokenPurpose::ChangeEmail,
            ] {
                app.store.delete_account_tokens(user, purpose).await?;
            }
            if let Err(e) = app.notify_password_changed(user).await {
                tracing::warn!(error = %e, "could not queue the password-change notice");
            }
            Ok(ended)
        });
        writes.await.map_err(|_| AppError::overloaded())?
    }

    /// The user's live sessions, newest first.
    pub async fn list_sessions(&self, user: Uuid) -> AppResult<Vec<Session>> {
        Ok(self.store.list_user_sessions(user, self.now()).await?)
    }

    /// Ends one of the user's own live sessions; another user's or an ended
    /// session is "not found".
    pub async fn revoke_own_session(
        &self,
        user: Uuid,
        sid: Uuid,
        caller: &Caller,
    ) -> AppResult<()> {
        let missing = || AppError::not_found("no such session");
        let (session, _) = self.store.get_session(sid).await?.ok_or_else(missing)?;
        if session.user_id != user || !session.is_active(self.now()) {
            return Err(missing());
        }
        let ending = Ending {
            sessions: SessionSet::One(sid),
            reason: RevokeReason::UserRequest,
            event: "session_revoked",
            user: Some(user),
            session: Some(sid),
            detail: None,
        };
        self.end_sessions(ending, caller).await?;
        Ok(())
    }
}

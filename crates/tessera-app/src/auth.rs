//! Sign up, password login, refresh, logout, and recognising a presented token:
//! the token lifecycle.

use crate::error::{AppError, AppResult, ErrorKind};
use crate::sessions::{Ending, SessionSet};
use crate::{App, Caller, Issued};
use tessera_core::model::{NewSession, NewUser, RevokeReason};
use tessera_core::validate::{self, LoginKey};
use tessera_core::{RefreshDecision, RejectReason, Session, User, decide};
use tessera_jose::{AccessClaims, TokenError};
use uuid::Uuid;

/// Longest login (an email or a username) looked at.
const MAX_LOGIN_LEN: usize = 320;

/// A caller proven by a valid access token whose session is still live.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: AccessClaims,
    pub session: Session,
    pub user: User,
}

/// Which sessions a logout ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogoutScope {
    /// This session.
    #[default]
    Local,
    /// Every other session of the user.
    Others,
    /// Every session of the user.
    Global,
}

/// How the caller proved which session is logging out.
pub enum LogoutBy<'a> {
    /// A valid access token of this live session.
    Session(&'a Session),
    /// A refresh token (current, or a grace replay); a superseded one is reuse.
    RefreshToken(&'a str),
}

/// What a presented token turned out to be; nothing is changed by looking.
#[allow(clippy::large_enum_variant)]
pub enum Recognised {
    /// A genuine refresh token of an existing session, and what presenting it to
    /// the token endpoint now would do.
    Refresh {
        session: Session,
        user: User,
        decision: RefreshDecision,
    },
    /// A valid access token of a live session.
    Access(Authenticated),
    /// Malformed, forged, expired, or of a session that is gone.
    Unknown,
}

fn invalid_refresh_token() -> AppError {
    AppError::invalid_grant("the refresh token is invalid")
}

impl App {
    /// Creates an account. The password is hashed on the bounded pool; the
    /// registration limit per address is counted first.
    pub async fn sign_up(
        &self,
        email: &str,
        username: &str,
        password: String,
        fullname: &str,
        caller: &Caller,
    ) -> AppResult<User> {
        self.check_signup_open(caller)?;
        let email = validate::email(email)?;
        let username = validate::username(username)?;
        let fullname = validate::fullname(fullname)?;
        validate::new_password(&password, &[&email, &username])?;
        self.hasher.admit_or_refuse().await?;
        if !caller.operator {
            self.throttle_ip("register", self.settings.throttle.register_ip, caller)
                .await?;
        }
        self.check_username_free(&username, &email).await?;
        let password_hash = self.hasher.hash(password).await?;
        let new_user = NewUser {
            id: Uuid::now_v7(),
            email,
            username,
            fullname,
            password_hash,
            created_at: self.now(),
            legacy_id: None,
        };
        if self.hides_taken_addresses(caller) {
            return self.sign_up_pending(new_user, caller).await;
        }
        let user = self.store.create_user(new_user).await?;
        let detail = caller.operator.then(|| "by operator".to_string());
        self.audit("register", Some(user.id), None, caller, detail)
            .await;
        if let Err(e) = self.send_verification(&user).await {
            tracing::warn!(error = %e, "could not queue the verification mail");
        }
        Ok(user)
    }

    /// Checks a login and password and opens a new session for OAuth client
    /// `client_id`, without scopes (a first-party session). Unknown users, wrong
    /// passwords and disabled users all cost one hash and answer the same.
    pub async fn password_login(
        &self,
        login: &str,
        password: String,
        caller: &Caller,
        client_id: &str,
    ) -> AppResult<(User, Session)> {
        self.password_login_scoped(login, password, caller, client_id, None)
            .await
    }

    /// [`App::password_login`] for a session granted `scope` (already checked
    /// against what the client may have).
    pub async fn password_login_scoped(
        &self,
        login: &str,
        password: String,
        caller: &Caller,
        client_id: &str,
        scope: Option<&str>,
    ) -> AppResult<(User, Session)> {
        if login.len() > MAX_LOGIN_LEN {
            return Err(AppError::invalid_request("login is too long"));
        }
        if password.chars().nth(validate::PASSWORD_MAX_CHARS).is_some() {
            return Err(AppError::invalid_request(
                "password: must be at most 128 characters",
            ));
        }
        // A flood beyond the hash pool is refused before any database work; then
        // the attempt is counted: a throttled one costs no lookup and no hash.
        self.hasher.admit_or_refuse().await?;
        self.throttle_login(login, caller).await?;
        let key = validate::login_key(login);
        let record = match &key {
            LoginKey::Email(e) if e.is_empty() => None,
            _ => self.store.find_user_for_login(&key).await?,
        };
        let hash = record.as_ref().map(|r| r.password_hash.clone());
        let verified = self.hasher.verify(password.clone(), hash).await?;
        let record = match record {
            Some(r) if verified && !r.user.disabled => r,
            other => {
                // A registration waiting for its confirmation: the password is
                // checked against it only now, so a failed login costs the same
                // whether or not an account holds the name or address. A match
                // proves nothing about the account (anyone can register a taken
                // address with a password of their own), so the attempt stays
                // counted against the account's login limits.
                if self.pending_registration_matches(&key, &password).await? {
                    let detail = Some("registration not confirmed".to_string());
                    self.audit("login_failed", None, None, caller, detail).await;
                    return Err(crate::lifecycle::email_not_verified());
                }
                // The reason is for the operator's audit trail only; the caller
                // gets the same answer in every case.
                let reason = match &other {
                    None => "unknown account",
                    Some(r) if r.user.disabled => "account disabled",
                    Some(_) => "wrong password",
                };
                let uid = other.map(|r| r.user.id);
                self.audit("login_failed", uid, None, caller, Some(reason.into()))
                    .await;
                return Err(AppError::invalid_credentials());
            }
        };
        self.login_succeeded(login, caller).await;
        // Only someone who knows the password learns that the address waits for
        // confirmation.
        if self.settings.email_verification == crate::EmailVerification::Required
            && !record.user.email_verified
        {
            let detail = Some("email not verified".to_string());
            self.audit("login_failed", Some(record.user.id), None, caller, detail)
                .await;
            return Err(crate::lifecycle::email_not_verified());
        }
        let mut verified_hash = record.password_hash.clone();
        // Parameters changed since this hash was made: upgrade it while we hold the password.
        if self.hasher.needs_rehash(&record.password_hash)
            && let Ok(new_hash) = self.hasher.hash(password.clone()).await
            && let Ok(true) = self
                .store
                .upgrade_password_hash(record.user.id, &record.password_hash, &new_hash)
                .await
        {
            verified_hash = new_hash;
        }
        let now = self.now();
        let s = &self.settings;
        let session = self
            .store
            .create_session(NewSession {
                id: Uuid::now_v7(),
                user_id: record.user.id,
                client_id: client_id.to_string(),
                created_at: now,
                idle_expires_at: now + s.refresh_idle.min(s.session_max),
                absolute_expires_at: now + s.session_max,
                user_agent: caller.user_agent.clone(),
                ip: caller.ip.clone(),
                scope: scope.map(str::to_string),
                parent_id: None,
            })
            .await?;
        // A password change that raced this login revokes every session it can see;
        // one created after that must not survive on the old password.
        let current = self
            .store
            .get_user(record.user.id)
            .await?
            .map(|r| r.password_hash);
        if current.as_deref() != Some(verified_hash.as_str()) {
            let still_valid = match current {
                Some(h) => self.hasher.verify(password, Some(h)).await.unwrap_or(false),
                None => false,
            };
            if !still_valid {
                let ending = Ending {
                    sessions: SessionSet::One(session.id),
                    reason: RevokeReason::PasswordChanged,
                    event: "login_failed",
                    user: Some(record.user.id),
                    session: Some(session.id),
                    detail: Some("the password changed during the login".into()),
                };
                self.end_sessions(ending, caller).await?;
                return Err(AppError::invalid_credentials());
            }
        }
        self.audit(
            "login_ok",
            Some(record.user.id),
            Some(session.id),
            caller,
            None,
        )
        .await;
        Ok((record.user, session))
    }

    /// A password login that answers with the session's first token pair.
    pub async fn login_and_issue(
        &self,
        login: &str,
        password: String,
        caller: &Caller,
        client_id: &str,
    ) -> AppResult<Issued> {
        self.login_and_issue_scoped(login, password, caller, client_id, None)
            .await
    }

    /// [`App::login_and_issue`] for a session granted `scope`.
    pub async fn login_and_issue_scoped(
        &self,
        login: &str,
        password: String,
        caller: &Caller,
        client_id: &str,
        scope: Option<&str>,
    ) -> AppResult<Issued> {
        let (user, session) = self
            .password_login_scoped(login, password, caller, client_id, scope)
            .await?;
        self.issue(&session, &user, 0, session.created_at)
    }

    /// Applies the rotation rules to a presented refresh token.
    /// A lost compare-and-set means another request rotated first: decide again on
    /// the fresh state, which turns this request into a grace replay.
    /// A token is only accepted from the OAuth client its session belongs to.
    pub async fn refresh(
        &self,
        presented: &str,
        caller: &Caller,
        client_id: &str,
    ) -> AppResult<Issued> {
        self.refresh_scoped(presented, caller, client_id, &[]).await
    }

    /// [`App::refresh`] asking for `scope` (RFC 6749 §6): accepted when the
    /// session was granted every one of them (a first-party session without
    /// scopes may have any the client may have, checked by the caller). The new
    /// tokens carry the session's scopes.
    pub async fn refresh_scoped(
        &self,
        presented: &str,
        caller: &Caller,
        client_id: &str,
        scope: &[String],
    ) -> AppResult<Issued> {
        let outcome = self.refresh_once(presented, caller, client_id, scope).await;
        // Reuse is counted by its audit event.
        if !matches!(&outcome, Err(e) if e.kind == ErrorKind::RefreshTokenReused) {
            self.metrics.on_refresh(outcome.is_ok());
        }
        outcome
    }

    async fn refresh_once(
        &self,
        presented: &str,
        caller: &Caller,
        client_id: &str,
        scope: &[String],
    ) -> AppResult<Issued> {
        let token = self
            .refresh_codec
            .decode(presented)
            .map_err(|_| invalid_refresh_token())?;
        // After the MAC check: a forged token costs no database work at all.
        self.throttle_refresh(self.settings.throttle.refresh_ip, caller)
            .await?;
        for _ in 0..4 {
            let now = self.now();
            let (session, user) = self
                .store
                .get_session(token.session_id)
                .await?
                .ok_or_else(invalid_refresh_token)?;
            if session.client_id != client_id {
                return Err(AppError::invalid_grant(
                    "the refresh token was issued to another client",
                ));
            }
            if let Some(granted) = &session.scope
                && let Some(extra) = scope.iter().find(|s| !granted.split(' ').any(|g| g == *s))
            {
                return Err(AppError::new(
                    ErrorKind::InvalidScope,
                    format!("the scope `{extra}` was not granted to this session"),
                ));
            }
            match decide(
                &session,
                user.disabled,
                token.counter,
                now,
                self.settings.refresh_policy(),
            ) {
                RefreshDecision::Rotate {
                    from,
                    idle_expires_at,
                } => {
                    if self
                        .store
                        .rotate_session(session.id, from, now, idle_expires_at)
                        .await?
                    {
                        let rotated = Session {
                            counter: from + 1,
                            rotated_at: now,
                            last_used_at: now,
                            idle_expires_at,
                            ..session
                        };
                        return self.issue(&rotated, &user, from + 1, now);
                    }
                }
                RefreshDecision::ReplayWithinGrace { current } => {
                    return self.issue(&session, &user, current, now);
                }
                RefreshDecision::ReuseDetected => {
                    return Err(self.reuse_detected(&session, &user, caller).await);
                }
                RefreshDecision::Rejected(reason) => {
                    return Err(AppError::invalid_grant(match reason {
                        RejectReason::Revoked => "the session has been revoked",
                        RejectReason::Expired => "the session has expired",
                        RejectReason::UserDisabled => "the account is disabled",
                        RejectReason::UnknownToken => "the refresh token is invalid",
                    }));
                }
            }
        }
        Err(AppError::overloaded())
    }

    /// Reuse is theft: a superseded token was presented. Ends the session, records
    /// the event, and returns the error to answer with.
    async fn reuse_detected(&self, session: &Session, user: &User, caller: &Caller) -> AppError {
        let ending = Ending {
            sessions: SessionSet::One(session.id),
            reason: RevokeReason::RefreshReuse,
            event: "refresh_reuse",
            user: Some(user.id),
            session: Some(session.id),
            detail: None,
        };
        if let Err(e) = self.end_sessions(ending, caller).await {
            return e;
        }
        tracing::warn!(session = %session.id, "refresh token reuse detected; session revoked");
        AppError::refresh_token_reused()
    }

    /// Verifies an access token and that its session is live, at once: a revoked
    /// session stops working on Tessera's own endpoints immediately.
    pub async fn authenticate(&self, token: &str) -> AppResult<Authenticated> {
        let now = self.now();
        let claims = match self.verified.get(token, now) {
            Some(claims) => claims,
            None => {
                let claims = self
                    .keys_for(token)
                    .await
                    .verify(token, &self.verify_options, now)
                    .map_err(|e| match e {
                        TokenError::Expired => {
                            AppError::invalid_token("the access token expired; refresh it")
                        }
                        TokenError::Invalid(why) => AppError::invalid_token(why),
                    })?;
                self.verified
                    .insert(token, &claims, self.verify_options.leeway, now);
                claims
            }
        };
        let ended = || AppError::invalid_token("the session of this access token has ended");
        let sid = Uuid::parse_str(&claims.sid).map_err(|_| ended())?;
        let (session, user) = self.store.get_session(sid).await?.ok_or_else(ended)?;
        if !session.is_active(now) || user.disabled || session.user_id.to_string() != claims.sub {
            return Err(ended());
        }
        Ok(Authenticated {
            claims,
            session,
            user,
        })
    }

    /// Logs out `scope` for the session `by` names. Logging out an already ended
    /// session by its refresh token succeeds (`local`) or says it has ended.
    pub async fn logout(
        &self,
        by: LogoutBy<'_>,
        scope: LogoutScope,
        caller: &Caller,
    ) -> AppResult<()> {
        let session = match by {
            LogoutBy::Session(s) => s.clone(),
            LogoutBy::RefreshToken(token) => {
                let t = self
                    .refresh_codec
                    .decode(token)
                    .map_err(|_| invalid_refresh_token())?;
                let (session, user) = self
                    .store
                    .get_session(t.session_id)
                    .await?
                    .ok_or_else(invalid_refresh_token)?;
                match decide(
                    &session,
                    user.disabled,
                    t.counter,
                    self.now(),
                    self.settings.refresh_policy(),
                ) {
                    RefreshDecision::Rotate { .. } | RefreshDecision::ReplayWithinGrace { .. } => {
                        session
                    }
                    RefreshDecision::ReuseDetected => {
                        return Err(self.reuse_detected(&session, &user, caller).await);
                    }
                    // Already over: logging out again is harmless and succeeds.
                    RefreshDecision::Rejected(_) if scope == LogoutScope::Local => return Ok(()),
                    RefreshDecision::Rejected(_) => {
                        return Err(AppError::invalid_grant("the session has ended"));
                    }
                }
            }
        };
        let (sessions, reason, name) = match scope {
            LogoutScope::Local => (SessionSet::One(session.id), RevokeReason::Logout, "local"),
            LogoutScope::Others => (
                SessionSet::AllOf {
                    user: session.user_id,
                    except: Some(session.id),
                },
                RevokeReason::LogoutOthers,
                "others",
            ),
            LogoutScope::Global => (
                SessionSet::AllOf {
                    user: session.user_id,
                    except: None,
                },
                RevokeReason::LogoutGlobal,
                "global",
            ),
        };
        let ending = Ending {
            sessions,
            reason,
            event: "logout",
            user: Some(session.user_id),
            session: Some(session.id),
            detail: Some(format!("scope={name}")),
        };
        self.end_sessions(ending, caller).await?;
        Ok(())
    }

    /// Recognises a token without changing anything. Refresh tokens are told apart
    /// by their format.
    pub async fn recognise(&self, token: &str) -> AppResult<Recognised> {
        if let Ok(t) = self.refresh_codec.decode(token) {
            let Some((session, user)) = self.store.get_session(t.session_id).await? else {
                return Ok(Recognised::Unknown);
            };
            let decision = decide(
                &session,
                user.disabled,
                t.counter,
                self.now(),
                self.settings.refresh_policy(),
            );
            return Ok(Recognised::Refresh {
                session,
                user,
                decision,
            });
        }
        match self.authenticate(token).await {
            Ok(auth) => Ok(Recognised::Access(auth)),
            Err(e) if e.kind == ErrorKind::InvalidToken => Ok(Recognised::Unknown),
            Err(e) => Err(e),
        }
    }

    /// OAuth token revocation by `client_id`: a refresh or access token ends its
    /// whole session. Unknown and already-ended tokens are no error; another
    /// client's token is refused.
    pub async fn revoke_token(
        &self,
        token: &str,
        client_id: &str,
        caller: &Caller,
    ) -> AppResult<()> {
        let session = match self.recognise(token).await? {
            Recognised::Refresh {
                decision: RefreshDecision::Rejected(_),
                ..
            }
            | Recognised::Unknown => return Ok(()),
            Recognised::Refresh { session, .. } => session,
            Recognised::Access(auth) => auth.session,
        };
        if session.client_id != client_id {
            return Err(AppError::invalid_grant(
                "the token was issued to another client",
            ));
        }
        let ending = Ending {
            sessions: SessionSet::One(session.id),
            reason: RevokeReason::Logout,
            event: "logout",
            user: Some(session.user_id),
            session: Some(session.id),
            detail: Some("oauth revocation".into()),
        };
        self.end_sessions(ending, caller).await?;
        Ok(())
    }
}

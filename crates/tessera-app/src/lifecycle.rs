//! The account lifecycle (contract §10): email verification, password reset,
//! sign-up policy. Every mailed link carries a random single-use token of which
//! only the SHA-256 is stored; it expires, and a newer link of the same kind
//! replaces it.

use crate::error::{AppError, AppResult};
use crate::mail::Composed;
use crate::sessions::{Ending, SessionSet};
use crate::throttle::Limit;
use crate::{App, Caller};
use aws_lc_rs::{digest, rand};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tessera_core::model::{NewUser, RevokeReason, UserPatch};
use tessera_core::validate::{self, LoginKey};
use tessera_core::{AccountToken, PendingUser, Session, StoreError, TokenPurpose, User};
use uuid::Uuid;

/// Who may create an account through `POST /v1/auth/register`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignupPolicy {
    /// Anyone.
    #[default]
    Open,
    /// Whoever holds an invitation (`tessera user invite`).
    Invite,
    /// Nobody: operators create users (`tessera user add`).
    Closed,
}

/// What becomes of an address that was never confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailVerification {
    /// No verification mail is sent.
    Off,
    /// A mail is sent; signing in does not wait for it.
    #[default]
    Optional,
    /// Login answers 403 `email_not_verified` until the address is confirmed.
    Required,
}

/// How long each kind of link works.
const VERIFY_TTL: i64 = 24 * 3_600;
const RESET_TTL: i64 = 30 * 60;
const INVITE_TTL: i64 = 7 * 24 * 3_600;
/// How recent a sign-in stands in for the current password (seconds).
pub const RECENT_SIGN_IN: i64 = 5 * 60;
/// Links asked for per account (verification, reset), whatever the address.
const MAIL_PER_ACCOUNT: Limit = Limit::new(3, 15 * 60);
/// The budget registrations of an address and the new links it asks for share.
const REGISTER_ADDRESS: &str = "register_address";

/// A fresh link token (64 hex digits) and the hash stored for it.
fn new_token() -> AppResult<(String, String)> {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).map_err(|_| AppError::internal())?;
    let token = hex(&bytes);
    let hash = token_hash(&token);
    Ok((token, hash))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What is stored for a token: its SHA-256, in hex.
pub fn token_hash(token: &str) -> String {
    hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A mail of a few paragraphs and, optionally, one link to follow.
fn compose(subject: &str, paragraphs: &[String], link: Option<(&str, &str)>) -> Composed {
    let mut text = String::new();
    let mut html =
        String::from("<!doctype html><html><body style=\"font-family:sans-serif;max-width:36em\">");
    for p in paragraphs {
        text.push_str(p);
        text.push_str("\n\n");
        html.push_str(&format!("<p>{}</p>", escape_html(p)));
    }
    if let Some((label, url)) = link {
        text.push_str(&format!("{label}:\n{url}\n"));
        html.push_str(&format!(
            "<p><a href=\"{0}\">{1}</a></p><p style=\"color:#555\">{0}</p>",
            escape_html(url),
            escape_html(label)
        ));
    }
    html.push_str("</body></html>");
    Composed {
        subject: subject.to_string(),
        text,
        html,
    }
}

/// Login with the right password to an address not yet confirmed, under
/// verification `required`.
pub(crate) fn email_not_verified() -> AppError {
    AppError::new(
        crate::ErrorKind::EmailNotVerified,
        "confirm your email address first: follow the link in the mail we sent, or ask for a new one (POST /v1/auth/email/resend)",
    )
}

/// The mail that asks to confirm an address, with its link.
fn verification_mail(username: &str, url: &str) -> Composed {
    compose(
        "Confirm your email address",
        &[
            format!("Hello {username},"),
            "please confirm that this is your email address. The link works once, for 24 hours."
                .into(),
            "If you did not create an account, ignore this mail.".into(),
        ],
        Some(("Confirm my email address", url)),
    )
}

fn invalid_link() -> AppError {
    AppError::invalid_link("this link is invalid or was already used; ask for a new one")
}

impl App {
    /// The public URL of a page of this server.
    fn page_url(&self, path: &str, token: &str) -> String {
        format!(
            "{}{path}?token={token}",
            self.settings.issuer.trim_end_matches('/')
        )
    }

    /// Stores a new link of `purpose` for `email`, replacing the user's earlier
    /// ones of the same purpose; returns the token.
    async fn issue_link(
        &self,
        purpose: TokenPurpose,
        user: Option<Uuid>,
        email: &str,
        ttl: i64,
    ) -> AppResult<String> {
        if let Some(user) = user {
            self.store.delete_account_tokens(user, purpose).await?;
        }
        let (token, hash) = new_token()?;
        let now = self.now();
        self.store
            .insert_account_token(AccountToken {
                hash,
                purpose,
                user_id: user,
                email: email.to_string(),
                created_at: now,
                expires_at: now + ttl,
                data: None,
            })
            .await?;
        Ok(token)
    }

    /// Uses up a link token of one of `purposes`: unknown, used, superseded, expired and
    /// other-purpose tokens are refused (an expired one says so).
    async fn use_link(&self, token: &str, purposes: &[TokenPurpose]) -> AppResult<AccountToken> {
        if token.len() != 64 {
            return Err(invalid_link());
        }
        let hash = token_hash(token);
        match self.store.get_account_token(&hash).await? {
            Some(t) if purposes.contains(&t.purpose) => {}
            _ => return Err(invalid_link()),
        }
        let t = self
            .store
            .take_account_token(&hash)
            .await?
            .ok_or_else(invalid_link)?;
        if t.expires_at <= self.now() {
            return Err(AppError::invalid_link(
                "this link has expired; ask for a new one",
            ));
        }
        Ok(t)
    }

    /// Mails `user` a link that confirms their current address (unless
    /// verification is off).
    pub(crate) async fn send_verification(&self, user: &User) -> AppResult<()> {
        if self.settings.email_verification == EmailVerification::Off {
            return Ok(());
        }
        let token = self
            .issue_link(
                TokenPurpose::VerifyEmail,
                Some(user.id),
                &user.email,
                VERIFY_TTL,
            )
            .await?;
        let url = self.page_url("/account/verify-email", &token);
        self.queue_mail(&user.email, verification_mail(&user.username, &url))
            .await
    }

    /// `POST /v1/me/email/verify`: mails a new verification link.
    pub async fn request_verification(&self, user: &User, caller: &Caller) -> AppResult<()> {
        if self.settings.email_verification == EmailVerification::Off {
            return Err(AppError::invalid_request(
                "email verification is off on this server",
            ));
        }
        if user.email_verified {
            return Err(AppError::invalid_request(
                "the email address is already verified",
            ));
        }
        self.throttle_ip("verify", self.settings.throttle.register_ip, caller)
            .await?;
        let key = format!("id:{}", user.id);
        if !self
            .throttle_account_mail("verify", &key, MAIL_PER_ACCOUNT, caller)
            .await?
        {
            return Err(AppError::rate_limited(MAIL_PER_ACCOUNT.window.secs()));
        }
        self.send_verification(user).await
    }

    /// `POST /v1/auth/email/resend`: mails a new link to confirm `email`, to a
    /// registration waiting for it or to an account whose address is not
    /// confirmed; nothing otherwise. Like `forgot_password`, the caller learns
    /// nothing: the answer comes before the lookup, which runs on its own task.
    pub async fn resend_verification(
        self: &Arc<Self>,
        email: &str,
        caller: &Caller,
    ) -> AppResult<()> {
        if self.settings.email_verification == EmailVerification::Off {
            return Err(AppError::invalid_request(
                "email verification is off on this server",
            ));
        }
        let email = validate::email(email)?;
        self.throttle_ip("verify", self.settings.throttle.register_ip, caller)
            .await?;
        let app = self.clone();
        let caller = caller.clone();
        tokio::spawn(async move {
            if let Err(e) = app.send_new_verification(&email, &caller).await {
                tracing::warn!(error = %e, "could not queue a verification mail");
            }
        });
        Ok(())
    }

    async fn send_new_verification(&self, email: &str, caller: &Caller) -> AppResult<()> {
        let key = validate::email_key(email);
        // One budget per address for registrations and new links together.
        if !self
            .throttle_account_mail(REGISTER_ADDRESS, &key, MAIL_PER_ACCOUNT, caller)
            .await?
        {
            return Ok(());
        }
        let key = LoginKey::Email(key);
        if let Some(r) = self.store.find_user_for_login(&key).await? {
            if !r.user.email_verified && !r.user.disabled {
                self.send_verification(&r.user).await?;
            }
            return Ok(());
        }
        // A registration's link is replaced (the newest mail holds the one that
        // works); its expiry stays, so asking again reserves nothing for longer.
        // One of a taken address has no link, and there is an account anyway.
        let now = self.now();
        if let Some(p) = self.store.find_pending_user(&key, now).await?
            && let Some(old) = &p.token_hash
        {
            let (token, hash) = new_token()?;
            if self
                .store
                .renew_pending_link(p.user.id, old, &hash, now)
                .await?
            {
                let url = self.page_url("/account/verify-email", &token);
                let mail = verification_mail(&p.user.username, &url);
                self.queue_mail(&p.user.email, mail).await?;
            }
        }
        Ok(())
    }

    /// Confirms an address with the token of a verification link, or of an
    /// email-change link: then the new address replaces the old one (409 if it was
    /// taken meanwhile), links mailed to the old one stop working, and the old one
    /// is told.
    pub async fn confirm_email(&self, token: &str, caller: &Caller) -> AppResult<User> {
        // A registration waiting for this link becomes its account now.
        if token.len() == 64
            && let Some(user) = self
                .store
                .complete_pending_user(&token_hash(token), self.now())
                .await?
        {
            self.audit("register", Some(user.id), None, caller, None)
                .await;
            self.audit("email_verified", Some(user.id), None, caller, None)
                .await;
            return Ok(user);
        }
        let t = self
            .use_link(
                token,
                &[TokenPurpose::VerifyEmail, TokenPurpose::ChangeEmail],
            )
            .await?;
        let user = t.user_id.ok_or_else(invalid_link)?;
        let owner = self.store.get_user(user).await?.ok_or_else(invalid_link)?;
        // A disabled account's links confirm nothing.
        if owner.user.disabled {
            return Err(invalid_link());
        }
        if t.purpose == TokenPurpose::ChangeEmail {
            self.change_email(user, &t.email, caller).await?;
        }
        // A link for an address the user has since changed confirms nothing.
        if !self
            .store
            .set_email_verified(user, &validate::email_key(&t.email), self.now())
            .await?
        {
            return Err(invalid_link());
        }
        self.audit("email_verified", Some(user), None, caller, None)
            .await;
        let record = self.store.get_user(user).await?.ok_or_else(invalid_link)?;
        Ok(record.user)
    }

    /// Replaces the address of `user` by `new_email` (confirmed by a link sent
    /// there) and mails the old address a notice.
    async fn change_email(&self, user: Uuid, new_email: &str, caller: &Caller) -> AppResult<()> {
        let old = self
            .store
            .get_user(user)
            .await?
            .ok_or_else(invalid_link)?
            .user;
        let patch = UserPatch {
            email: Some(new_email.to_string()),
            ..UserPatch::default()
        };
        self.store.update_user(user, patch).await?;
        // Links mailed to the old address must not act on the account any more.
        for purpose in [TokenPurpose::ResetPassword, TokenPurpose::VerifyEmail] {
            self.store.delete_account_tokens(user, purpose).await?;
        }
        // Addresses stay out of the audit trail, which outlives a deleted account.
        self.audit("email_changed", Some(user), None, caller, None)
            .await;
        let mail = compose(
            "Your email address was changed",
            &[
                format!("Hello {},", old.username),
                format!(
                    "the email address of your account was changed from {} to {new_email}. Mail about your account now goes there.",
                    old.email
                ),
                "If this was not you, contact the operator of this service at once.".into(),
            ],
            None,
        );
        if let Err(e) = self.queue_mail(&old.email, mail).await {
            tracing::warn!(error = %e, "could not queue the email-change notice");
        }
        Ok(())
    }

    /// `POST /v1/me/email`: mails a link to `new_email` that makes it the
    /// account's address once followed. Needs the current password, or a session
    /// signed in within the last [`RECENT_SIGN_IN`] seconds. A taken address
    /// spends the registration budget like registration, and is answered 409, or
    /// under verification `required` like a free address (no mail).
    pub async fn request_email_change(
        &self,
        user: &User,
        session: &Session,
        new_email: &str,
        current_password: Option<String>,
        caller: &Caller,
    ) -> AppResult<()> {
        let email = validate::email(new_email)?;
        match current_password {
            Some(p) => {
                self.check_current_password(user, session.id, p, "email_change_failed", caller)
                    .await?
            }
            // A sign-in on these pages or the JSON API; an application's session
            // opened by a code exchange is new whenever the sign-in was.
            None if session.scope.is_none()
                && session.created_at + RECENT_SIGN_IN >= self.now() => {}
            None => {
                return Err(AppError::forbidden(
                    "current_password: required unless this session signed in within the last 5 minutes",
                ));
            }
        }
        let key = validate::email_key(&email);
        if key == validate::email_key(&user.email) {
            return Err(AppError::invalid_request(
                "email: this is already the account's address",
            ));
        }
        self.throttle_ip("register", self.settings.throttle.register_ip, caller)
            .await?;
        let taken = self
            .store
            .find_user_for_login(&LoginKey::Email(key))
            .await?
            .is_some();
        let hidden = self.hides_taken_addresses(caller);
        if taken && !hidden {
            return Err(StoreError::Conflict("email").into());
        }
        if !self
            .throttle_account_mail(
                "change_email",
                &format!("id:{}", user.id),
                MAIL_PER_ACCOUNT,
                caller,
            )
            .await?
        {
            return Err(AppError::rate_limited(MAIL_PER_ACCOUNT.window.secs()));
        }
        // Answered like a free address, earlier links superseded alike; the new
        // link is mailed to nobody, since none could complete.
        let token = self
            .issue_link(TokenPurpose::ChangeEmail, Some(user.id), &email, VERIFY_TTL)
            .await?;
        if taken {
            self.audit(
                "email_change_taken_address",
                Some(user.id),
                Some(session.id),
                caller,
                None,
            )
            .await;
            return Ok(());
        }
        let url = self.page_url("/account/verify-email", &token);
        let mail = compose(
            "Confirm your new email address",
            &[
                format!("Hello {},", user.username),
                "please confirm that this address should become the address of your account. Until you do, the old one stays. The link works once, for 24 hours.".into(),
                "If you did not ask for this, ignore this mail.".into(),
            ],
            Some(("Confirm my new email address", &url)),
        );
        self.queue_mail(&email, mail).await?;
        self.audit(
            "email_change_requested",
            Some(user.id),
            Some(session.id),
            caller,
            None,
        )
        .await;
        Ok(())
    }

    /// `DELETE /v1/me`: after checking the current password, ends every session
    /// of the user, deletes the account and mails a notice. The audit trail keeps
    /// the (random) user id of its events, never the name or the address.
    pub async fn delete_account(
        self: &Arc<Self>,
        user: &User,
        session: Uuid,
        current_password: String,
        caller: &Caller,
    ) -> AppResult<()> {
        self.check_current_password(
            user,
            session,
            current_password,
            "account_delete_failed",
            caller,
        )
        .await?;
        // The writes belong together: a dropped connection must not stop between.
        let app = self.clone();
        let user = user.clone();
        let caller = caller.clone();
        let writes = tokio::spawn(async move {
            let ending = Ending {
                sessions: SessionSet::AllOf {
                    user: user.id,
                    except: None,
                },
                reason: RevokeReason::UserRequest,
                event: "account_deleted",
                user: Some(user.id),
                session: Some(session),
                detail: None,
            };
            app.end_sessions(ending, &caller).await?;
            app.store.delete_user(user.id).await?;
            let mail = compose(
                "Your account was deleted",
                &[
                    format!("Hello {},", user.username),
                    "your account was deleted as you asked, and every sign-in to it has ended."
                        .into(),
                    "If this was not you, contact the operator of this service at once.".into(),
                ],
                None,
            );
            if let Err(e) = app.queue_mail(&user.email, mail).await {
                tracing::warn!(error = %e, "could not queue the deletion notice");
            }
            Ok(())
        });
        writes.await.map_err(|_| AppError::overloaded())?
    }

    /// `POST /v1/auth/password/forgot`: mails a reset link if the address names an
    /// account. The caller learns nothing either way: the answer comes before the
    /// lookup, which runs on its own task.
    pub async fn forgot_password(self: &Arc<Self>, email: &str, caller: &Caller) -> AppResult<()> {
        let email = validate::email(email)?;
        self.throttle_ip("forgot", self.settings.throttle.register_ip, caller)
            .await?;
        let app = self.clone();
        let caller = caller.clone();
        tokio::spawn(async move {
            if let Err(e) = app.send_reset_link(&email, &caller).await {
                tracing::warn!(error = %e, "could not queue a password-reset mail");
            }
        });
        Ok(())
    }

    async fn send_reset_link(&self, email: &str, caller: &Caller) -> AppResult<()> {
        if !self
            .throttle_account_mail("forgot", email, MAIL_PER_ACCOUNT, caller)
            .await?
        {
            return Ok(());
        }
        let key = LoginKey::Email(validate::email_key(email));
        let Some(record) = self.store.find_user_for_login(&key).await? else {
            self.audit(
                "password_reset_requested",
                None,
                None,
                caller,
                Some("unknown address".into()),
            )
            .await;
            return Ok(());
        };
        let user = record.user;
        if user.disabled {
            return Ok(());
        }
        let token = self
            .issue_link(
                TokenPurpose::ResetPassword,
                Some(user.id),
                &user.email,
                RESET_TTL,
            )
            .await?;
        let url = self.page_url("/account/reset-password", &token);
        let mail = compose(
            "Reset your password",
            &[
                format!("Hello {},", user.username),
                "someone (hopefully you) asked to reset the password of your account. The link works once, for 30 minutes; signing in everywhere ends when you use it.".into(),
                "If it was not you, ignore this mail: your password stays as it is.".into(),
            ],
            Some(("Choose a new password", &url)),
        );
        self.queue_mail(&user.email, mail).await?;
        self.audit(
            "password_reset_requested",
            Some(user.id),
            None,
            caller,
            None,
        )
        .await;
        Ok(())
    }

    /// `POST /v1/auth/password/reset`: sets a new password with the token of a
    /// reset link; every session of the user ends and a notice is mailed.
    pub async fn reset_password(
        self: &Arc<Self>,
        token: &str,
        new_password: String,
        caller: &Caller,
    ) -> AppResult<()> {
        validate::password(&new_password)
            .map_err(|e| AppError::invalid_request(format!("new_{e}")))?;
        let hash = token_hash(token);
        // Check the password against the account before the token is used up, so a
        // refused password leaves the link working.
        let peek = match self.store.get_account_token(&hash).await? {
            Some(t) if t.purpose == TokenPurpose::ResetPassword && token.len() == 64 => t,
            _ => return Err(invalid_link()),
        };
        let user_id = peek.user_id.ok_or_else(invalid_link)?;
        let record = self
            .store
            .get_user(user_id)
            .await?
            .ok_or_else(invalid_link)?;
        // A link asked for before the account was disabled resets nothing.
        if record.user.disabled {
            return Err(invalid_link());
        }
        validate::new_password(&new_password, &[&record.user.email, &record.user.username])
            .map_err(|e| AppError::invalid_request(format!("new_{e}")))?;
        self.hasher.admit_or_refuse().await?;
        let t = self.use_link(token, &[TokenPurpose::ResetPassword]).await?;
        let password_hash = self.hasher.hash(new_password).await?;
        self.replace_password(
            user_id,
            password_hash,
            None,
            Some("by reset link".into()),
            caller.clone(),
        )
        .await?;
        // Following the link proved the mailbox is the user's.
        let _ = self
            .store
            .set_email_verified(user_id, &validate::email_key(&t.email), self.now())
            .await;
        Ok(())
    }

    /// Mails the user that their password changed (whoever changed it).
    pub(crate) async fn notify_password_changed(&self, user: Uuid) -> AppResult<()> {
        let Some(record) = self.store.get_user(user).await? else {
            return Ok(());
        };
        let u = record.user;
        let mail = compose(
            "Your password was changed",
            &[
                format!("Hello {},", u.username),
                "the password of your account was just changed, and every other sign-in was ended.".into(),
                "If this was not you, reset your password at once and contact the operator of this service.".into(),
            ],
            None,
        );
        self.queue_mail(&u.email, mail).await
    }

    /// Whether a taken address is answered like a free one, at registration and
    /// at an email change (contract §10.5): with verification `required`, where
    /// nobody signs in with an address they have not confirmed.
    pub(crate) fn hides_taken_addresses(&self, caller: &Caller) -> bool {
        !caller.operator && self.settings.email_verification == EmailVerification::Required
    }

    /// Refuses a username an account holds, or a live pending registration of
    /// another address (a newer registration of the same address replaces it).
    pub(crate) async fn check_username_free(&self, username: &str, email: &str) -> AppResult<()> {
        let name = LoginKey::Username(username.to_string());
        if self.store.find_user_for_login(&name).await?.is_some() {
            return Err(StoreError::Conflict("username").into());
        }
        if let Some(p) = self.store.find_pending_user(&name, self.now()).await?
            && validate::email_key(&p.user.email) != validate::email_key(email)
        {
            return Err(StoreError::Conflict("username").into());
        }
        Ok(())
    }

    /// A registration under verification `required`: nothing is an account until
    /// the address is confirmed. The username and address are reserved by a
    /// pending registration, for a taken address as for a new one, so neither the
    /// answer nor any later request (a login with this password answers 403
    /// `email_not_verified` in both cases, the username stays taken) tells them
    /// apart. A new address is mailed the link that creates the account; the
    /// owner of a taken one is told instead, and nothing can confirm that record.
    pub(crate) async fn sign_up_pending(&self, new: NewUser, caller: &Caller) -> AppResult<User> {
        let email_key = validate::email_key(&new.email);
        // At most 3 registrations of one address in 15 minutes are kept and
        // mailed, whoever sends them; beyond that nothing changes (an earlier
        // link keeps working) and the answer is the same.
        let kept = self
            .throttle_account_mail(REGISTER_ADDRESS, &email_key, MAIL_PER_ACCOUNT, caller)
            .await?;
        let key = LoginKey::Email(email_key);
        let owner = self.store.find_user_for_login(&key).await?.map(|r| r.user);
        if kept {
            let link = match owner {
                None => Some(new_token()?),
                Some(_) => None,
            };
            let pending = PendingUser {
                user: new.clone(),
                token_hash: link.as_ref().map(|(_, hash)| hash.clone()),
                expires_at: new.created_at + VERIFY_TTL,
            };
            self.store.put_pending_user(&pending).await?;
            match (owner, link) {
                (Some(owner), _) => self.tell_owner_of_taken_address(&owner, caller).await?,
                (None, Some((token, _))) => {
                    let url = self.page_url("/account/verify-email", &token);
                    self.queue_mail(&new.email, verification_mail(&new.username, &url))
                        .await?;
                    self.audit("register_pending", None, None, caller, None)
                        .await;
                }
                (None, None) => {}
            }
        }
        Ok(User {
            id: new.id,
            email: new.email,
            username: new.username,
            fullname: new.fullname,
            created_at: new.created_at,
            disabled: false,
            legacy_id: None,
            email_verified: false,
        })
    }

    /// Whether `password` is the one of a live pending registration of this
    /// address or username (checked only after the account's own check failed).
    pub(crate) async fn pending_registration_matches(
        &self,
        key: &LoginKey,
        password: &str,
    ) -> AppResult<bool> {
        let pending = match key {
            LoginKey::Email(e) if e.is_empty() => None,
            _ => self.store.find_pending_user(key, self.now()).await?,
        };
        match pending {
            Some(p) => Ok(self
                .hasher
                .verify(password.to_string(), Some(p.user.password_hash))
                .await?),
            None => Ok(false),
        }
    }

    /// Mails the owner of an address someone tried to register again (within
    /// the address's registration budget, spent by the caller).
    async fn tell_owner_of_taken_address(&self, owner: &User, caller: &Caller) -> AppResult<()> {
        let url = format!(
            "{}/account/forgot-password",
            self.settings.issuer.trim_end_matches('/')
        );
        let mail = compose(
            "Someone tried to register with your address",
            &[
                format!("Hello {},", owner.username),
                "someone tried to create a new account with this email address, which already has your account. Nothing was changed.".into(),
                "If it was you and you forgot your password, you can reset it.".into(),
            ],
            Some(("Reset my password", &url)),
        );
        self.queue_mail(&owner.email, mail).await?;
        self.audit("register_taken_address", Some(owner.id), None, caller, None)
            .await;
        Ok(())
    }

    /// `tessera user invite EMAIL`: with `signup = invite`, mails a single-use
    /// link (7 days) with which one account can be registered for this address.
    /// Returns the invitation's expiry.
    pub async fn invite(&self, email: &str, caller: &Caller) -> AppResult<i64> {
        if self.settings.signup != SignupPolicy::Invite {
            return Err(AppError::invalid_request(
                "invitations need signup = invite (TESSERA_SIGNUP=invite)",
            ));
        }
        let email = validate::email(email)?;
        let key = LoginKey::Email(validate::email_key(&email));
        if self.store.find_user_for_login(&key).await?.is_some() {
            return Err(StoreError::Conflict("email").into());
        }
        let token = self
            .issue_link(TokenPurpose::Invite, None, &email, INVITE_TTL)
            .await?;
        let url = format!(
            "{}/account/register?invitation={token}",
            self.settings.issuer.trim_end_matches('/')
        );
        let mail = compose(
            "You are invited to create an account",
            &[
                "Hello,".into(),
                format!(
                    "you are invited to create an account with the address {email}. The link works once, for 7 days."
                ),
                "If you did not expect this, ignore this mail.".into(),
            ],
            Some(("Create my account", &url)),
        );
        self.queue_mail(&email, mail).await?;
        self.audit("invited", None, None, caller, None).await;
        Ok(self.now() + INVITE_TTL)
    }

    /// Registers with the token of an invitation: only for the address it was
    /// sent to (which is thereby confirmed), and only once.
    pub async fn sign_up_invited(
        &self,
        invitation: &str,
        email: &str,
        username: &str,
        password: String,
        fullname: &str,
        caller: &Caller,
    ) -> AppResult<User> {
        if self.settings.signup == SignupPolicy::Closed {
            return Err(AppError::new(
                crate::ErrorKind::SignupClosed,
                "sign-up is closed on this server",
            ));
        }
        let email = validate::email(email)?;
        let username = validate::username(username)?;
        let fullname = validate::fullname(fullname)?;
        validate::new_password(&password, &[&email, &username])?;
        let hash = token_hash(invitation);
        match self.store.get_account_token(&hash).await? {
            Some(t) if t.purpose == TokenPurpose::Invite && invitation.len() == 64 => {
                if validate::email_key(&t.email) != validate::email_key(&email) {
                    return Err(AppError::invalid_link(
                        "this invitation is for another email address",
                    ));
                }
            }
            _ => return Err(invalid_link()),
        }
        self.hasher.admit_or_refuse().await?;
        self.throttle_ip("register", self.settings.throttle.register_ip, caller)
            .await?;
        self.check_username_free(&username, &email).await?;
        let password_hash = self.hasher.hash(password).await?;
        let taken = self.use_link(invitation, &[TokenPurpose::Invite]).await?;
        let created = self
            .store
            .create_user(NewUser {
                id: Uuid::now_v7(),
                email,
                username,
                fullname,
                password_hash,
                created_at: self.now(),
                legacy_id: None,
            })
            .await;
        let user = match created {
            Ok(user) => user,
            Err(e) => {
                // A taken username: the invitation stays usable for another try.
                if let Err(e) = self.store.insert_account_token(taken).await {
                    tracing::warn!(error = %e, "could not keep an invitation after a failed sign-up");
                }
                return Err(e.into());
            }
        };
        self.store
            .set_email_verified(user.id, &validate::email_key(&user.email), self.now())
            .await?;
        self.audit(
            "register",
            Some(user.id),
            None,
            caller,
            Some("by invitation".into()),
        )
        .await;
        let record = self.store.get_user(user.id).await?;
        Ok(record.map_or(user, |r| r.user))
    }

    /// Refuses `POST /v1/auth/register` when the policy does not allow it.
    pub(crate) fn check_signup_open(&self, caller: &Caller) -> AppResult<()> {
        match self.settings.signup {
            _ if caller.operator => Ok(()),
            SignupPolicy::Open => Ok(()),
            SignupPolicy::Invite => Err(AppError::new(
                crate::ErrorKind::SignupClosed,
                "sign-up needs an invitation on this server",
            )),
            SignupPolicy::Closed => Err(AppError::new(
                crate::ErrorKind::SignupClosed,
                "sign-up is closed on this server",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, ha) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(token_hash(&a), ha);
        assert_ne!(ha, a);
    }

    #[test]
    fn mails_escape_what_they_show() {
        let m = compose(
            "s",
            &["<b>bob</b> & co".into()],
            Some(("go", "https://x.example/?token=1&a=\"2\"")),
        );
        assert!(m.html.contains("&lt;b&gt;bob&lt;/b&gt; &amp; co"));
        assert!(
            m.html
                .contains("href=\"https://x.example/?token=1&amp;a=&quot;2&quot;\"")
        );
        assert!(m.text.contains("https://x.example/?token=1&a=\"2\""));
    }
}

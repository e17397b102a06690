//! What the hosted sign-in and sign-up pages ask for: the same password login and
//! registration as the JSON API, shaped for a browser that keeps one session in
//! its cookies.

use crate::auth::{LogoutBy, LogoutScope};
use crate::error::AppResult;
use crate::{App, Caller, EmailVerification, Issued};
use tessera_core::User;

/// How a sign-up on the page ended.
pub enum BrowserSignUp {
    /// The account exists and this browser is signed in to it.
    SignedIn(Issued),
    /// The address must be confirmed before the first sign-in (`email_verification
    /// = required`); the answer is the same whether or not the address was taken.
    ConfirmEmailFirst(User),
}

impl App {
    /// A password login from the sign-in page. The browser's previous session
    /// (the one its access cookie `previous` names, if still live) ends once the
    /// new one exists, so one browser holds one session.
    pub async fn sign_in_browser(
        &self,
        login: &str,
        password: String,
        previous: Option<&str>,
        caller: &Caller,
    ) -> AppResult<Issued> {
        let issued = self
            .login_and_issue(login, password, caller, &self.settings.client_id)
            .await?;
        if let Some(old) = previous
            && let Ok(old) = self.authenticate(old).await
            && old.session.id != issued.session_id
            && let Err(e) = self
                .logout(LogoutBy::Session(&old.session), LogoutScope::Local, caller)
                .await
        {
            tracing::warn!(error = %e, "could not end the browser's previous session");
        }
        Ok(issued)
    }

    /// A registration from the sign-up page, signed in at once unless the address
    /// must be confirmed first.
    pub async fn sign_up_browser(
        &self,
        email: &str,
        username: &str,
        password: String,
        fullname: &str,
        caller: &Caller,
    ) -> AppResult<BrowserSignUp> {
        let user = self
            .sign_up(email, username, password.clone(), fullname, caller)
            .await?;
        if self.settings.email_verification == EmailVerification::Required {
            return Ok(BrowserSignUp::ConfirmEmailFirst(user));
        }
        let issued = self
            .login_and_issue(&user.username, password, caller, &self.settings.client_id)
            .await?;
        Ok(BrowserSignUp::SignedIn(issued))
    }
}

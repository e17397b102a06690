//! The pages mailed links open: confirm an email address, ask for a password
//! reset, choose a new password, create an invited account (contract §10). Each
//! page's form calls the same use case as the JSON route.

use super::{Layout, Notice, for_people, form, hidden, input, page, refusal, submitted};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::ClientInfo;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;
use tessera_app::AppError;
use tessera_app::lifecycle::escape_html as esc;

/// A link's `?token=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The token the mail's link carries.
    token: Option<String>,
}

#[derive(Deserialize)]
struct TokenForm {
    token: String,
}

const VERIFY: &str = "/account/verify-email";
const FORGOT: &str = "/account/forgot-password";
pub(crate) const RESEND: &str = "/account/resend-verification";
const RESET: &str = "/account/reset-password";

/// An error as a page, with the status the JSON API would answer.
fn failed(title: &str, e: AppError, body: &str) -> Response {
    let message = for_people(&ApiError::from(e.clone()).description);
    refusal(&e, title, &message, body, &Layout::default())
}

fn missing_token(title: &str) -> Response {
    let again = format!("<p><a href=\"{FORGOT}\">Ask for a new link</a></p>");
    page(
        StatusCode::BAD_REQUEST,
        title,
        Notice::Error("This link is incomplete. Open it exactly as it is in the mail."),
        &again,
    )
}

/// The confirmation page a verification link opens: one button confirms (a
/// mail scanner following the link confirms nothing).
#[utoipa::path(
    get,
    path = "/account/verify-email",
    operation_id = "page_verify_email",
    tag = "pages",
    params(TokenQuery),
    responses(
        (status = 200, description = "An HTML page with the confirmation form", content_type = "text/html"),
        (status = 400, description = "An HTML page: the link has no token", content_type = "text/html"),
    )
)]
pub async fn verify_email_page(Query(q): Query<TokenQuery>) -> Response {
    let title = "Confirm your email address";
    let Some(token) = q.token.filter(|t| !t.is_empty()) else {
        return missing_token(title);
    };
    let body = format!(
        "<p>Confirm that this address is yours.</p>{}",
        form(VERIFY, &hidden("token", &token), "Confirm my email address")
    );
    page(StatusCode::OK, title, Notice::None, &body)
}

/// Confirms the address (the form of the page above).
#[utoipa::path(
    post,
    path = "/account/verify-email",
    operation_id = "page_verify_email_submit",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`token`"),
    responses(
        (status = 200, description = "An HTML page: the address is confirmed (for an email change, the new address replaced the old one)", content_type = "text/html"),
        (status = 400, description = "An HTML page: the form is incomplete, or the link is invalid, used or expired", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site", content_type = "text/html"),
        (status = 409, description = "An HTML page: the new address of an email change was taken meanwhile", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn verify_email_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Confirm your email address";
    let f: TokenForm = match submitted(&headers, &state, &body, title) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    match state.app.confirm_email(&f.token, &client).await {
        Ok(user) => page(
            StatusCode::OK,
            "Email address confirmed",
            Notice::Ok(&format!("Thank you: {} is confirmed.", user.email)),
            "<p>You can close this page.</p>",
        ),
        Err(e) => failed(title, e, ""),
    }
}

/// A form of one field, an email address, posted to `action`.
fn address_form(action: &str, hint: &str) -> String {
    form(
        action,
        &input(
            "email",
            "Email address",
            "email",
            "required maxlength=\"254\" autocomplete=\"email\" autofocus",
            Some(hint),
        ),
        "Send me a link",
    )
}

fn forgot_form() -> String {
    address_form(
        FORGOT,
        "We will mail a link to choose a new password, if an account has this address.",
    )
}

fn resend_form() -> String {
    address_form(
        RESEND,
        "We will mail a new link to confirm this address, if a registration or an account waits for it.",
    )
}

/// The page to ask for a reset link.
#[utoipa::path(
    get,
    path = "/account/forgot-password",
    operation_id = "page_forgot_password",
    tag = "pages",
    responses((status = 200, description = "An HTML page with the form", content_type = "text/html"))
)]
pub async fn forgot_password_page() -> Response {
    page(
        StatusCode::OK,
        "Forgot your password?",
        Notice::None,
        &forgot_form(),
    )
}

/// A form of one email address.
#[derive(Deserialize)]
struct AddressForm {
    email: String,
}

/// Asks for a reset link (the form above); the same page whatever the address.
#[utoipa::path(
    post,
    path = "/account/forgot-password",
    operation_id = "page_forgot_password_submit",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`email`"),
    responses(
        (status = 200, description = "An HTML page: a link is on its way if an account has this address", content_type = "text/html"),
        (status = 400, description = "An HTML page: the address is malformed", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site", content_type = "text/html"),
        (status = 429, description = "An HTML page: too many requests from this address", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn forgot_password_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Forgot your password?";
    let f: AddressForm = match submitted(&headers, &state, &body, title) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let outcome = state.app.forgot_password(&f.email, &client).await;
    mail_sent(
        outcome,
        title,
        "If an account has this address, a link to choose a new password is on its way. It works once, for 30 minutes.",
        &forgot_form(),
    )
}

/// The answer to a form of one address: the same page whatever the address,
/// or the form again with the reason it was refused.
fn mail_sent(outcome: Result<(), AppError>, title: &str, sent: &str, form: &str) -> Response {
    match outcome {
        Ok(()) => page(StatusCode::OK, "Check your mail", Notice::Ok(sent), ""),
        Err(e) => failed(title, e, form),
    }
}

/// The page to ask for a new confirmation link, without signing in.
#[utoipa::path(
    get,
    path = "/account/resend-verification",
    operation_id = "page_resend_verification",
    tag = "pages",
    responses((status = 200, description = "An HTML page with the form", content_type = "text/html"))
)]
pub async fn resend_verification_page() -> Response {
    page(
        StatusCode::OK,
        "Confirm your email address",
        Notice::None,
        &resend_form(),
    )
}

/// Asks for a new confirmation link (the form above); the same page whatever
/// the address.
#[utoipa::path(
    post,
    path = "/account/resend-verification",
    operation_id = "page_resend_verification_submit",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`email`"),
    responses(
        (status = 200, description = "An HTML page: a link is on its way if a registration or an account waits for this address", content_type = "text/html"),
        (status = 400, description = "An HTML page: the address is malformed, or email verification is off", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site", content_type = "text/html"),
        (status = 429, description = "An HTML page: too many requests from this address", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn resend_verification_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Confirm your email address";
    let f: AddressForm = match submitted(&headers, &state, &body, title) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let outcome = state.app.resend_verification(&f.email, &client).await;
    mail_sent(
        outcome,
        title,
        "If a registration or an account waits for this address to be confirmed, a new link is on its way. It works once, for 24 hours.",
        &resend_form(),
    )
}

fn reset_form(token: &str) -> String {
    let fields = format!(
        "{}{}",
        hidden("token", token),
        input(
            "new_password",
            "New password",
            "password",
            "required minlength=\"8\" maxlength=\"128\" autocomplete=\"new-password\" autofocus",
            Some("8 to 128 characters; common or easily guessed passwords are refused."),
        )
    );
    form(RESET, &fields, "Set my new password")
}

/// The page a reset link opens: choose a new password.
#[utoipa::path(
    get,
    path = "/account/reset-password",
    operation_id = "page_reset_password",
    tag = "pages",
    params(TokenQuery),
    responses(
        (status = 200, description = "An HTML page with the form", content_type = "text/html"),
        (status = 400, description = "An HTML page: the link has no token", content_type = "text/html"),
    )
)]
pub async fn reset_password_page(Query(q): Query<TokenQuery>) -> Response {
    let title = "Choose a new password";
    let Some(token) = q.token.filter(|t| !t.is_empty()) else {
        return missing_token(title);
    };
    page(StatusCode::OK, title, Notice::None, &reset_form(&token))
}

#[derive(Deserialize)]
struct ResetForm {
    token: String,
    new_password: String,
}

/// Sets the new password (the form above); every session of the account ends.
#[utoipa::path(
    post,
    path = "/account/reset-password",
    operation_id = "page_reset_password_submit",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`token`, `new_password`"),
    responses(
        (status = 200, description = "An HTML page: the password is set", content_type = "text/html"),
        (status = 400, description = "An HTML page: the password breaks a rule (the form is shown again), or the link is invalid, used or expired", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the server is busy or the database unavailable", content_type = "text/html"),
    )
)]
pub async fn reset_password_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Choose a new password";
    let f: ResetForm = match submitted(&headers, &state, &body, title) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    match state
        .app
        .reset_password(&f.token, f.new_password, &client)
        .await
    {
        Ok(()) => page(
            StatusCode::OK,
            "Password changed",
            Notice::Ok(
                "Your new password is set. You were signed out everywhere; sign in again with it.",
            ),
            "",
        ),
        // A refused password: the same link, the form again.
        Err(e) if e.kind == tessera_app::ErrorKind::InvalidRequest => {
            failed(title, e, &reset_form(&f.token))
        }
        Err(e) => {
            let again = format!("<p><a href=\"{FORGOT}\">Ask for a new link</a></p>");
            failed(title, e, &again)
        }
    }
}

const REGISTER: &str = "/account/register";

/// An invitation link's `?invitation=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvitationQuery {
    /// The token the invitation mail's link carries.
    invitation: Option<String>,
}

#[derive(Deserialize)]
struct RegisterForm {
    invitation: String,
    email: String,
    username: String,
    password: String,
}

fn register_form(invitation: &str, email: &str, username: &str) -> String {
    let value = |v: &str| format!(" value=\"{}\"", esc(v));
    let fields = [
        hidden("invitation", invitation),
        input(
            "email",
            "Email address",
            "email",
            &format!(
                "required maxlength=\"254\" autocomplete=\"email\"{}",
                value(email)
            ),
            Some("The address the invitation was sent to."),
        ),
        input(
            "username",
            "Username",
            "text",
            &format!(
                "required minlength=\"3\" maxlength=\"32\" autocomplete=\"username\" autofocus{}",
                value(username)
            ),
            Some("3 to 32 of a-z, 0-9, _ . -"),
        ),
        input(
            "password",
            "Password",
            "password",
            "required minlength=\"8\" maxlength=\"128\" autocomplete=\"new-password\"",
            Some("8 to 128 characters; common or easily guessed passwords are refused."),
        ),
    ]
    .concat();
    form(REGISTER, &fields, "Create my account")
}

/// The page an invitation link opens: create the account.
#[utoipa::path(
    get,
    path = "/account/register",
    operation_id = "page_register",
    tag = "pages",
    params(InvitationQuery),
    responses(
        (status = 200, description = "An HTML page with the form", content_type = "text/html"),
        (status = 400, description = "An HTML page: the link has no invitation", content_type = "text/html"),
    )
)]
pub async fn register_page(Query(q): Query<InvitationQuery>) -> Response {
    let title = "Create your account";
    let Some(invitation) = q.invitation.filter(|t| !t.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            title,
            Notice::Error("This link is incomplete. Open it exactly as it is in the mail."),
            "",
        );
    };
    let body = register_form(&invitation, "", "");
    page(StatusCode::OK, title, Notice::None, &body)
}

/// Creates the account (the form above) with the invitation.
#[utoipa::path(
    post,
    path = "/account/register",
    operation_id = "page_register_submit",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`invitation`, `email`, `username`, `password`"),
    responses(
        (status = 201, description = "An HTML page: the account is created", content_type = "text/html"),
        (status = 400, description = "An HTML page: a field breaks its rule (the form is shown again), or the invitation is invalid, used, expired or for another address", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site, or sign-up is closed", content_type = "text/html"),
        (status = 409, description = "An HTML page: the username or address is taken (the form is shown again)", content_type = "text/html"),
        (status = 429, description = "An HTML page: too many registrations from this address", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the server is busy or the database unavailable", content_type = "text/html"),
    )
)]
pub async fn register_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Create your account";
    let f: RegisterForm = match submitted(&headers, &state, &body, title) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let created = state
        .app
        .sign_up_invited(
            &f.invitation,
            &f.email,
            &f.username,
            f.password,
            "",
            &client,
        )
        .await;
    match created {
        Ok(user) => page(
            StatusCode::CREATED,
            "Account created",
            Notice::Ok(&format!(
                "Welcome, {}: your account is ready and its address confirmed. Sign in with your username or address and your password.",
                user.username
            )),
            "",
        ),
        // A field to correct: the same invitation, the form again.
        Err(e)
            if matches!(
                e.kind,
                tessera_app::ErrorKind::InvalidRequest | tessera_app::ErrorKind::Conflict
            ) =>
        {
            failed(
                title,
                e,
                &register_form(&f.invitation, &f.email, &f.username),
            )
        }
        Err(e) => failed(title, e, ""),
    }
}

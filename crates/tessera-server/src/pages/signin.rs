//! Signing in and signing up on the hosted pages, and getting back to a page once
//! the access cookie has expired. A session made here lives in the same cookies as
//! one made by `POST /v1/auth/login` with cookie delivery.

use super::{Layout, Notice, for_people, form, hidden, input, page, page_with, refusal, submitted};
use crate::AppState;
use crate::cookies;
use crate::extract::ClientInfo;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use tessera_app::lifecycle::escape_html as esc;
use tessera_app::{AppError, BrowserSignUp, ErrorKind, Issued};

pub(crate) const SIGNIN: &str = "/signin";
pub(crate) const SIGNUP: &str = "/signup";
pub(crate) const ACCOUNT: &str = "/account";
pub(crate) const RESUME: &str = "/v1/auth/resume";
const FORGOT: &str = "/account/forgot-password";
/// The one place a sign-in may continue to besides the account page: the OAuth
/// authorization endpoint, which sends signed-out visitors here.
const AUTHORIZE_PREFIX: &str = "/oauth/authorize?";
const RETURN_TO_MAX: usize = 4096;

/// `return_to` if it is a path of this server's authorization endpoint; anything
/// else (another site, another path, a scheme-relative or backslash trick) is
/// ignored, so these pages redirect nowhere else.
pub(crate) fn return_to(raw: Option<&str>) -> Option<String> {
    let r = raw?;
    let plain = r.len() <= RETURN_TO_MAX
        && r.starts_with(AUTHORIZE_PREFIX)
        && !r.contains('\\')
        && !r.chars().any(|c| c.is_control() || c.is_whitespace());
    plain.then(|| r.to_string())
}

/// A URL-encoded query value.
fn enc(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// `path`, with `?return_to=` when there is one to carry on.
pub(crate) fn with_return_to(path: &str, return_to: Option<&str>) -> String {
    match return_to {
        Some(r) => format!("{path}?return_to={}", enc(r)),
        None => path.to_string(),
    }
}

/// A 303 to `location` with `headers` (cookies, say).
pub(crate) fn see_other(location: &str, mut headers: HeaderMap) -> Response {
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (StatusCode::SEE_OTHER, headers).into_response()
}

/// The cookies of a new or rotated session, as the JSON API's cookie delivery sets them.
pub(crate) fn session_cookies(state: &AppState, issued: &Issued) -> HeaderMap {
    let mut headers = HeaderMap::new();
    state.cookies.set_issued(&mut headers, issued);
    headers
}

/// An error from a use case as a sentence for the sign-in and sign-up pages.
pub(crate) fn explain(e: &AppError) -> String {
    match e.kind {
        ErrorKind::InvalidCredentials => {
            "The username, email address or password is incorrect.".into()
        }
        ErrorKind::RateLimited => {
            let wait = e.retry_after.unwrap_or(60);
            let unit = if wait == 1 { "second" } else { "seconds" };
            format!("Too many attempts from here. Try again in {wait} {unit}.")
        }
        ErrorKind::Conflict if e.description.starts_with("username") => {
            "This username is taken; choose another.".into()
        }
        ErrorKind::Conflict if e.description.starts_with("email") => {
            "An account already uses this email address. Sign in, or reset its password.".into()
        }
        ErrorKind::SignupClosed => format!(
            "{} Ask the operator of this service for an invitation.",
            for_people(&e.description)
        ),
        ErrorKind::EmailNotVerified => {
            "Confirm your email address first: follow the link in the mail we sent you (it works for 24 hours), or ask for a new one below.".into()
        }
        _ => sentence(named_field(&e.description)),
    }
}

/// Ends `text` with a full stop unless it already ends a sentence.
fn sentence(mut text: String) -> String {
    if !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    text
}

/// `password: is too common …` as `Password is too common …`: on a form of
/// several fields the sentence names the one to correct.
fn named_field(description: &str) -> String {
    let labels = [
        ("email", "Email address"),
        ("username", "Username"),
        ("fullname", "Full name"),
        ("password", "Password"),
        ("new_password", "New password"),
        ("current_password", "Current password"),
        ("login", "Login"),
    ];
    match description.split_once(": ") {
        Some((f, rest)) => match labels.iter().find(|(name, _)| *name == f) {
            Some((_, label)) => format!("{label} {rest}"),
            None => for_people(description),
        },
        None => for_people(description),
    }
}

/// The field an error is about, to mark and focus it.
fn field_of(e: &AppError) -> Option<&'static str> {
    let d = e.description.as_str();
    ["email", "username", "fullname", "password"]
        .into_iter()
        .find(|f| d.starts_with(&format!("{f}:")) || d.starts_with(&format!("{f} is")))
}

/// A failed form, shown again with the reason.
fn refused(title: &str, e: &AppError, body: &str) -> Response {
    let layout = Layout {
        forms_redirect_on: true,
        ..Layout::default()
    };
    refusal(e, title, &explain(e), body, &layout)
}

/// An input's attributes: `value`, and marked and focused when it is the one to correct.
fn attrs(base: &str, value: &str, invalid: bool, focus: bool) -> String {
    let mut a = base.to_string();
    if !value.is_empty() {
        a.push_str(&format!(" value=\"{}\"", esc(value)));
    }
    if invalid {
        a.push_str(" aria-invalid=\"true\"");
    }
    if focus {
        a.push_str(" autofocus");
    }
    a
}

fn links(return_to: Option<&str>, to_signup: bool) -> String {
    let other = if to_signup {
        format!(
            "<a href=\"{}\">Create an account</a>",
            esc(&with_return_to(SIGNUP, return_to))
        )
    } else {
        format!(
            "<a href=\"{}\">I already have an account</a>",
            esc(&with_return_to(SIGNIN, return_to))
        )
    };
    format!("<p class=\"links\">{other}<a href=\"{FORGOT}\">Forgot your password?</a></p>")
}

fn signin_form(login: &str, return_to: Option<&str>, error: bool) -> String {
    let mut fields = String::new();
    if let Some(r) = return_to {
        fields.push_str(&hidden("return_to", r));
    }
    fields.push_str(&input(
        "login",
        "Username or email address",
        "text",
        &attrs(
            "required maxlength=\"320\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\"",
            login,
            error,
            login.is_empty(),
        ),
        None,
    ));
    fields.push_str(&input(
        "password",
        "Password",
        "password",
        &attrs(
            "required maxlength=\"128\" autocomplete=\"current-password\"",
            "",
            error,
            !login.is_empty(),
        ),
        None,
    ));
    format!(
        "{}{}",
        form(SIGNIN, &fields, "Sign in"),
        links(return_to, true)
    )
}

/// `/signin`'s and `/signup`'s query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignInQuery {
    /// Where to continue after signing in: only a path of the authorization
    /// endpoint (`/oauth/authorize?…`) is followed; otherwise the account page.
    return_to: Option<String>,
    /// Fills in the username or email field.
    login_hint: Option<String>,
}

/// The sign-in page; shown even to a signed-in visitor (signing in again replaces
/// the browser's session).
#[utoipa::path(
    get,
    path = "/signin",
    operation_id = "page_signin",
    tag = "pages",
    params(SignInQuery),
    responses((status = 200, description = "An HTML page with the sign-in form", content_type = "text/html"))
)]
pub async fn signin_page(Query(q): Query<SignInQuery>) -> Response {
    let return_to = return_to(q.return_to.as_deref());
    let hint: String = q.login_hint.unwrap_or_default().chars().take(320).collect();
    let layout = Layout {
        forms_redirect_on: true,
        ..Layout::default()
    };
    let body = signin_form(&hint, return_to.as_deref(), false);
    page_with(StatusCode::OK, "Sign in", Notice::None, &body, &layout)
}

#[derive(Deserialize)]
struct SignInForm {
    login: String,
    password: String,
    return_to: Option<String>,
}

/// Signs in (the form above): new session cookies, then on to `return_to` or the
/// account page.
#[utoipa::path(
    post,
    path = "/signin",
    operation_id = "page_signin_submit",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`login`, `password`, `return_to` (optional)"),
    responses(
        (status = 303, description = "Signed in: the session's cookies are set (a session this browser had before ends); on to `return_to` or `/account`",
            headers(("Location" = String, description = "`return_to` or `/account`"), ("Set-Cookie" = String, description = "The access and refresh cookies"))),
        (status = 400, description = "An HTML page: the form is incomplete, or a field is too long (the form is shown again)", content_type = "text/html"),
        (status = 401, description = "An HTML page: the login or password is incorrect (the form is shown again)", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site, or the address must be confirmed first", content_type = "text/html"),
        (status = 429, description = "An HTML page: too many attempts; it says how long to wait", content_type = "text/html",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the server is busy or the database unavailable", content_type = "text/html"),
    )
)]
pub async fn signin_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Sign in";
    let f: SignInForm = match submitted(&headers, &state, &body, title) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let return_to = return_to(f.return_to.as_deref());
    let previous = cookies::read(&headers, &state.cookies.access);
    match state
        .sign_in_browser(&f.login, f.password, previous, &client)
        .await
    {
        Ok(issued) => see_other(
            return_to.as_deref().unwrap_or(ACCOUNT),
            session_cookies(&state, &issued),
        ),
        Err(e) => {
            let mut body = signin_form(&f.login, return_to.as_deref(), true);
            if e.kind == ErrorKind::EmailNotVerified {
                body.push_str(&format!(
                    "<p class=\"links\"><a href=\"{}\">Send me a new confirmation link</a></p>",
                    super::account::RESEND
                ));
            }
            refused(title, &e, &body)
        }
    }
}

/// What the sign-up form shows again after a refusal.
#[derive(Default)]
struct SignUpValues<'a> {
    email: &'a str,
    username: &'a str,
    fullname: &'a str,
}

fn signup_form(v: &SignUpValues<'_>, return_to: Option<&str>, error: Option<&AppError>) -> String {
    let wrong = error.and_then(field_of);
    // The field to correct has the focus; the first field otherwise.
    let focus = |f: &str| wrong.map_or(f == "email", |w| w == f);
    let mark = |f: &str| wrong == Some(f);
    let mut fields = String::new();
    if let Some(r) = return_to {
        fields.push_str(&hidden("return_to", r));
    }
    fields.push_str(&input(
        "email",
        "Email address",
        "email",
        &attrs(
            "required maxlength=\"254\" autocomplete=\"email\"",
            v.email,
            mark("email"),
            focus("email"),
        ),
        None,
    ));
    fields.push_str(&input(
        "username",
        "Username",
        "text",
        &attrs(
            "required minlength=\"3\" maxlength=\"32\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\"",
            v.username,
            mark("username"),
            focus("username"),
        ),
        Some("3 to 32 of a-z, 0-9, _ . -"),
    ));
    fields.push_str(&input(
        "fullname",
        "Full name (optional)",
        "text",
        &attrs(
            "maxlength=\"128\" autocomplete=\"name\"",
            v.fullname,
            mark("fullname"),
            focus("fullname"),
        ),
        None,
    ));
    fields.push_str(&input(
        "password",
        "Password",
        "password",
        &attrs(
            "required minlength=\"8\" maxlength=\"128\" autocomplete=\"new-password\"",
            "",
            mark("password"),
            focus("password"),
        ),
        Some("8 to 128 characters; common or easily guessed passwords are refused."),
    ));
    format!(
        "{}{}",
        form(SIGNUP, &fields, "Create my account"),
        links(return_to, false)
    )
}

/// The sign-up page.
#[utoipa::path(
    get,
    path = "/signup",
    operation_id = "page_signup",
    tag = "pages",
    params(SignInQuery),
    responses((status = 200, description = "An HTML page with the sign-up form", content_type = "text/html"))
)]
pub async fn signup_page(Query(q): Query<SignInQuery>) -> Response {
    let return_to = return_to(q.return_to.as_deref());
    let layout = Layout {
        forms_redirect_on: true,
        ..Layout::default()
    };
    let body = signup_form(&SignUpValues::default(), return_to.as_deref(), None);
    page_with(
        StatusCode::OK,
        "Create your account",
        Notice::None,
        &body,
        &layout,
    )
}

#[derive(Deserialize)]
struct SignUpForm {
    email: String,
    username: String,
    #[serde(default)]
    fullname: String,
    password: String,
    return_to: Option<String>,
}

/// Creates the account (the form above) and signs in to it, unless the address
/// must be confirmed first.
#[utoipa::path(
    post,
    path = "/signup",
    operation_id = "page_signup_submit",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`email`, `username`, `fullname` (optional), `password`, `return_to` (optional)"),
    responses(
        (status = 201, description = "An HTML page: email verification is `required`; the account is made when the mailed link is followed, then sign in (a taken address is answered the same)", content_type = "text/html"),
        (status = 303, description = "The account is made and this browser signed in to it; on to `return_to` or `/account`",
            headers(("Location" = String, description = "`return_to` or `/account`"), ("Set-Cookie" = String, description = "The access and refresh cookies"))),
        (status = 400, description = "An HTML page: a field breaks its rule, the password too (the form is shown again, saying why)", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site, or sign-up is closed", content_type = "text/html"),
        (status = 409, description = "An HTML page: the username is taken, or the address (not with email verification `required`); the form is shown again", content_type = "text/html"),
        (status = 429, description = "An HTML page: too many registrations from this address; it says how long to wait", content_type = "text/html",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the server is busy or the database unavailable", content_type = "text/html"),
    )
)]
pub async fn signup_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Create your account";
    let f: SignUpForm = match submitted(&headers, &state, &body, title) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let return_to = return_to(f.return_to.as_deref());
    let made = state
        .sign_up_browser(&f.email, &f.username, f.password, &f.fullname, &client)
        .await;
    match made {
        Ok(BrowserSignUp::SignedIn(issued)) => see_other(
            return_to.as_deref().unwrap_or(ACCOUNT),
            session_cookies(&state, &issued),
        ),
        Ok(BrowserSignUp::ConfirmEmailFirst(_)) => page(
            StatusCode::CREATED,
            "Check your mail",
            Notice::Ok(
                "We sent a link to your email address. Follow it to confirm the address, then sign in.",
            ),
            &format!(
                "<p class=\"links\"><a href=\"{}\">Sign in</a></p>",
                esc(&with_return_to(SIGNIN, return_to.as_deref()))
            ),
        ),
        Err(e) => {
            let values = SignUpValues {
                email: &f.email,
                username: &f.username,
                fullname: &f.fullname,
            };
            refused(
                title,
                &e,
                &signup_form(&values, return_to.as_deref(), Some(&e)),
            )
        }
    }
}

/// The home page: the account page when signed in, else sign-in.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "page_home",
    tag = "pages",
    responses(
        (status = 303, description = "To `/account` with a live access cookie; otherwise through `/v1/auth/resume`, which continues to `/account` when the refresh cookie still holds a session and to `/signin` when not",
            headers(("Location" = String, description = "`/account` or `/v1/auth/resume?return_to=%2Faccount`"))),
    )
)]
pub async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match super::signed_in(&headers, &state).await {
        Some(_) => see_other(ACCOUNT, HeaderMap::new()),
        None => see_other(&resume_location(ACCOUNT), HeaderMap::new()),
    }
}

/// Where a page sends a visitor without a live access cookie: the refresh cookie
/// reaches only `/v1/auth`, so the session is resumed there.
pub(crate) fn resume_location(then: &str) -> String {
    format!("{RESUME}?return_to={}", enc(then))
}

/// `/v1/auth/resume`'s query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResumeQuery {
    /// The page to continue to: `/account` or a path of the authorization endpoint;
    /// anything else is the account page.
    return_to: Option<String>,
}

/// Resumes a browser's session from its refresh cookie (rotated as `POST
/// /v1/auth/refresh` does), then continues to the page that needed it; without a
/// usable session, to the sign-in page.
#[utoipa::path(
    get,
    path = "/v1/auth/resume",
    operation_id = "page_resume",
    tag = "pages",
    params(ResumeQuery),
    security((), ("refresh_cookie" = [])),
    responses(
        (status = 303, description = "With a usable refresh cookie from this site: new cookies, on to `return_to`; otherwise the cookies are cleared and on to `/signin`",
            headers(("Location" = String, description = "`return_to`, or `/signin`"), ("Set-Cookie" = String, description = "New cookies, or both cleared"))),
        (status = 429, description = "An HTML page: too many refreshes from this address; it says how long to wait", content_type = "text/html",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the server is busy or the database unavailable", content_type = "text/html"),
    )
)]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    Query(q): Query<ResumeQuery>,
) -> Response {
    let authorize = return_to(q.return_to.as_deref());
    let then = authorize.clone().unwrap_or_else(|| ACCOUNT.to_string());
    // Without a session: the sign-in page, unless the authorization request may
    // show no page (`prompt=none`), which then answers the client itself.
    let signin = match &authorize {
        Some(a) if super::oauth::is_silent(a) => a.clone(),
        _ => with_return_to(SIGNIN, authorize.as_deref()),
    };
    // The refresh cookie is `SameSite=Strict`; a request another site started is
    // treated as signed out as well.
    let token = cookies::read(&headers, &state.cookies.refresh)
        .filter(|_| cookies::same_origin(&headers, &state.http.trusted_origins));
    let Some(token) = token else {
        return see_other(&signin, HeaderMap::new());
    };
    match state
        .refresh(token, &client, &state.settings.client_id)
        .await
    {
        Ok(issued) => see_other(&then, session_cookies(&state, &issued)),
        Err(e) if matches!(e.kind, ErrorKind::RateLimited | ErrorKind::Overloaded) => {
            refused("Signing you in", &e, "")
        }
        Err(e) if e.kind == ErrorKind::Internal => refused("Signing you in", &e, ""),
        Err(_) => {
            let mut cleared = HeaderMap::new();
            state.cookies.clear(&mut cleared);
            see_other(&signin, cleared)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_authorization_endpoint_is_a_place_to_return_to() {
        let ok = "/oauth/authorize?client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb";
        assert_eq!(return_to(Some(ok)).as_deref(), Some(ok));
        for bad in [
            "https://evil.example/",
            "//evil.example/oauth/authorize?x=1",
            "/\\evil.example/oauth/authorize?x=1",
            "/oauth/authorize",
            "/oauth/authorizex?x=1",
            "/oauth/authorize?x=1\\@evil.example",
            "/oauth/authorize?x=1 y",
            "/oauth/authorize?x=1\r\nSet-Cookie: a=b",
            "/account",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(return_to(Some(bad)), None, "{bad}");
        }
        assert_eq!(return_to(None), None);
        let long = format!("{AUTHORIZE_PREFIX}{}", "a".repeat(RETURN_TO_MAX));
        assert_eq!(return_to(Some(&long)), None);
    }

    #[test]
    fn errors_say_what_to_correct() {
        let weak = AppError::invalid_request("password: is too common or too easy to guess");
        assert_eq!(
            explain(&weak),
            "Password is too common or too easy to guess."
        );
        assert_eq!(field_of(&weak), Some("password"));
        let taken = AppError::new(ErrorKind::Conflict, "username is already taken");
        assert_eq!(explain(&taken), "This username is taken; choose another.");
        assert_eq!(field_of(&taken), Some("username"));
        let slow = AppError::rate_limited(42);
        assert_eq!(
            explain(&slow),
            "Too many attempts from here. Try again in 42 seconds."
        );
        assert!(explain(&AppError::invalid_credentials()).contains("incorrect"));
    }
}

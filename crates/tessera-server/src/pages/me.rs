//! The account page of a signed-in user (`/account`) and its forms: profile,
//! address, password, signed-in devices, signing out, deleting the account. Each
//! form calls the use case the matching JSON route calls; a refusal shows that form
//! again with the reason, a success returns to the account page with a notice.

use super::signin::{ACCOUNT, SIGNIN, SIGNUP, explain, resume_location, see_other};
use super::{
    Layout, Notice, agent, form, hidden, named_input, page, page_with, refusal, signed_in,
    styled_form, submitted,
};
use crate::AppState;
use crate::extract::ClientInfo;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;
use tessera_app::lifecycle::escape_html as esc;
use tessera_app::rfc3339;
use tessera_app::{AppError, Authenticated, ErrorKind, LogoutBy, LogoutScope, ProfileChange};
use tessera_core::{Session, User};
use uuid::Uuid;

const PROFILE: &str = "/account/profile";
const EMAIL: &str = "/account/email";
const PASSWORD: &str = "/account/password";
const DEVICES: &str = "/account/devices/signout";
const APPS: &str = "/account/apps/revoke";
const SIGNOUT: &str = "/account/signout";
const DELETE: &str = "/account/delete";

/// `/account`'s query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// What the form just sent did: `profile`, `email`, `password` or `device`;
    /// the page says so.
    done: Option<String>,
}

/// A Unix time as people read it: `2025-01-31 14:05 UTC`.
fn when(unix: i64) -> String {
    let t = rfc3339(unix);
    match (t.get(..10), t.get(11..16)) {
        (Some(day), Some(time)) if t.len() == 20 => format!("{day} {time} UTC"),
        _ => t,
    }
}

fn facts(user: &User) -> String {
    let verified = if user.email_verified {
        "<span class=\"badge good\">confirmed</span>"
    } else {
        "<span class=\"badge warn\">not confirmed</span>"
    };
    let name = if user.fullname.is_empty() {
        "<span class=\"hint\">not given</span>".to_string()
    } else {
        esc(&user.fullname)
    };
    format!(
        "<dl class=\"facts\"><dt>Name</dt><dd>{name}</dd><dt>Email</dt><dd>{} {verified}</dd>\
         <dt>Username</dt><dd>{}</dd></dl>",
        esc(&user.email),
        esc(&user.username)
    )
}

fn signout_buttons() -> String {
    format!(
        "<div class=\"actions\">{}{}</div>",
        styled_form(SIGNOUT, &hidden("scope", "local"), "Sign out", "secondary"),
        styled_form(
            SIGNOUT,
            &hidden("scope", "global"),
            "Sign out everywhere",
            "secondary"
        ),
    )
}

fn section(id: &str, title: &str, content: &str) -> String {
    format!(
        "<section aria-labelledby=\"{id}\"><h2 id=\"{id}\">{}</h2>{content}</section>",
        esc(title)
    )
}

fn value(v: &str) -> String {
    format!(" value=\"{}\"", esc(v))
}

fn profile_form(username: &str, fullname: &str) -> String {
    let fields = [
        named_input(
            "profile-username",
            "username",
            "Username",
            "text",
            &format!(
                "required minlength=\"3\" maxlength=\"32\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\"{}",
                value(username)
            ),
            Some("3 to 32 of a-z, 0-9, _ . -"),
        ),
        named_input(
            "profile-fullname",
            "fullname",
            "Full name",
            "text",
            &format!("maxlength=\"128\" autocomplete=\"name\"{}", value(fullname)),
            None,
        ),
    ]
    .concat();
    form(PROFILE, &fields, "Save profile")
}

fn current_password(id: &str) -> String {
    named_input(
        id,
        "current_password",
        "Current password",
        "password",
        "required maxlength=\"128\" autocomplete=\"current-password\"",
        None,
    )
}

fn email_form(email: &str) -> String {
    let fields = [
        named_input(
            "email-new",
            "email",
            "New email address",
            "email",
            &format!(
                "required maxlength=\"254\" autocomplete=\"email\"{}",
                value(email)
            ),
            Some("We mail a link to the new address; it replaces the old one once you follow it."),
        ),
        current_password("email-current-password"),
    ]
    .concat();
    form(EMAIL, &fields, "Send the confirmation link")
}

fn password_form() -> String {
    let fields = [
        current_password("password-current"),
        named_input(
            "password-new",
            "new_password",
            "New password",
            "password",
            "required minlength=\"8\" maxlength=\"128\" autocomplete=\"new-password\"",
            Some(
                "8 to 128 characters; common or easily guessed passwords are refused. Your other devices are signed out.",
            ),
        ),
    ]
    .concat();
    form(PASSWORD, &fields, "Change password")
}

fn delete_form() -> String {
    let fields = format!(
        "<p>Deleting your account signs you out everywhere and removes it for good.</p>{}",
        current_password("delete-current-password")
    );
    styled_form(DELETE, &fields, "Delete my account", "danger")
}

/// One signed-in device; `app` names the application the session belongs to
/// when it is not these pages (a session an app opened through the browser).
fn device(s: &Session, current: Uuid, app: Option<&str>) -> String {
    let (browser, os) = agent::describe(s.user_agent.as_deref());
    let mut name = match os {
        Some(os) => format!("{browser} on {os}"),
        None => browser,
    };
    if let Some(app) = app {
        name = format!("{app} · {name}");
    }
    let (marker, action) = if s.id == current {
        (
            "<span class=\"badge\">This device</span>".to_string(),
            String::new(),
        )
    } else {
        (
            String::new(),
            styled_form(
                DEVICES,
                &hidden("session", &s.id.to_string()),
                "Sign out",
                "secondary",
            ),
        )
    };
    format!(
        "<li><strong>{}</strong>{marker}<dl class=\"facts\"><dt>Address</dt><dd>{}</dd>\
         <dt>Signed in</dt><dd>{}</dd><dt>Last active</dt><dd>{}</dd></dl>{action}</li>",
        esc(&name),
        esc(s.ip.as_deref().unwrap_or("unknown")),
        when(s.created_at),
        when(s.last_used_at),
    )
}

/// The third-party applications the user granted access to, each with what it
/// may see and a button that withdraws it (and signs the app out).
fn apps_section(grants: &[(tessera_core::Grant, String)]) -> String {
    if grants.is_empty() {
        return section(
            "apps",
            "Connected apps",
            "<p class=\"hint\">No other application has access to your account.</p>",
        );
    }
    let items: String = grants
        .iter()
        .map(|(g, name)| {
            format!(
                "<li><strong>{}</strong><dl class=\"facts\"><dt>May see</dt><dd>{}</dd>\
                 <dt>Allowed</dt><dd>{}</dd></dl>{}</li>",
                esc(name),
                esc(&g.scope),
                when(g.granted_at),
                styled_form(
                    APPS,
                    &hidden("client", &g.client_id),
                    "Remove access",
                    "secondary"
                ),
            )
        })
        .collect();
    section(
        "apps",
        "Connected apps",
        &format!("<ul class=\"devices\">{items}</ul>"),
    )
}

fn done_notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "profile" => "Your profile is saved.",
        "email" => "We sent a link to the new address. Your address changes once you follow it.",
        "password" => "Your password is changed, and your other devices are signed out.",
        "device" => "That device is signed out.",
        "app" => "That app no longer has access, and is signed out.",
        _ => return None,
    })
}

/// The signed-in user's account page.
#[utoipa::path(
    get,
    path = "/account",
    operation_id = "page_account",
    tag = "pages",
    params(AccountQuery),
    security(("access_cookie" = [])),
    responses(
        (status = 200, description = "An HTML page: the account, its forms and its signed-in devices; a script keeps the session refreshed while it is open", content_type = "text/html"),
        (status = 303, description = "No live access cookie: through `/v1/auth/resume` (back here with a session, else the sign-in page)",
            headers(("Location" = String, description = "`/v1/auth/resume?return_to=%2Faccount`"))),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn account_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AccountQuery>,
) -> Response {
    let Some(auth) = signed_in(&headers, &state).await else {
        return see_other(&resume_location(ACCOUNT), HeaderMap::new());
    };
    let sessions = match state.list_sessions(auth.user.id).await {
        Ok(s) => s,
        Err(e) => return failed("Your account", &e, ""),
    };
    let grants = match state.list_grants(auth.user.id).await {
        Ok(g) => g,
        Err(e) => return failed("Your account", &e, ""),
    };
    let user = &auth.user;
    let mut apps: Vec<(String, String)> = Vec::new();
    for s in &sessions {
        if s.client_id != state.settings.client_id && !apps.iter().any(|(id, _)| *id == s.client_id)
        {
            let name = match state.store.get_client(&s.client_id).await {
                Ok(Some(c)) => c.name,
                _ => s.client_id.clone(),
            };
            apps.push((s.client_id.clone(), name));
        }
    }
    let app_of = |s: &Session| {
        apps.iter()
            .find(|(id, _)| *id == s.client_id)
            .map(|(_, name)| name.as_str())
    };
    let devices: String = sessions
        .iter()
        .map(|s| device(s, auth.session.id, app_of(s)))
        .collect();
    let body = [
        facts(user),
        signout_buttons(),
        section(
            "profile",
            "Profile",
            &profile_form(&user.username, &user.fullname),
        ),
        section("email", "Email address", &email_form("")),
        section("password", "Password", &password_form()),
        section(
            "devices",
            "Signed-in devices",
            &format!("<ul class=\"devices\">{devices}</ul>"),
        ),
        apps_section(&grants),
        section("delete", "Delete your account", &delete_form()),
    ]
    .concat();
    let notice = match done_notice(q.done.as_deref()) {
        Some(m) => Notice::Ok(m),
        None => Notice::None,
    };
    let layout = Layout {
        wide: true,
        refresh_in: Some(auth.claims.exp - state.now()),
        forms_redirect_on: false,
    };
    page_with(StatusCode::OK, "Your account", notice, &body, &layout)
}

/// A refused account form: the reason and the form again, with the status the
/// JSON API would answer.
fn failed(title: &str, e: &AppError, form: &str) -> Response {
    let message = match e.kind {
        ErrorKind::Conflict if e.description.starts_with("email") => {
            "Another account already uses this address.".to_string()
        }
        _ => explain(e),
    };
    let body =
        format!("{form}<p class=\"links\"><a href=\"{ACCOUNT}\">Back to your account</a></p>");
    refusal(e, title, &message, &body, &Layout::default())
}

/// A form post of the account page: the same-origin check, the form, and the
/// signed-in user; or the answer to give instead.
async fn signed_in_form<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    title: &str,
) -> Result<(Authenticated, T), Response> {
    let f: T = submitted(headers, state, body, title).map_err(|r| *r)?;
    match signed_in(headers, state).await {
        Some(auth) => Ok((auth, f)),
        None => Err(see_other(&resume_location(ACCOUNT), HeaderMap::new())),
    }
}

fn done(what: &str) -> Response {
    see_other(&format!("{ACCOUNT}?done={what}"), HeaderMap::new())
}

#[derive(Deserialize)]
struct ProfileForm {
    username: String,
    #[serde(default)]
    fullname: String,
}

/// Saves the username and full name.
#[utoipa::path(
    post,
    path = "/account/profile",
    operation_id = "page_account_profile",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`username`, `fullname`"),
    security(("access_cookie" = [])),
    responses(
        (status = 303, description = "Saved, back to the account page; or no live access cookie, through `/v1/auth/resume`",
            headers(("Location" = String, description = "`/account?done=profile`, or `/v1/auth/resume?return_to=%2Faccount`"))),
        (status = 400, description = "An HTML page: the form is incomplete or a field breaks its rule (the form is shown again)", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site", content_type = "text/html"),
        (status = 409, description = "An HTML page: the username is taken (the form is shown again)", content_type = "text/html"),
        (status = 429, description = "An HTML page: username changes share the registration limit", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn profile_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Your profile";
    let (auth, f) = match signed_in_form::<ProfileForm>(&state, &headers, &body, title).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // An unchanged username is not sent: it would spend the registration limit.
    let username = (f.username.trim() != auth.user.username).then_some(f.username.as_str());
    let change = ProfileChange {
        email: None,
        username,
        fullname: Some(&f.fullname),
    };
    match state.update_profile(auth.user.id, change, &client).await {
        Ok(_) => done("profile"),
        Err(e) => failed(title, &e, &profile_form(&f.username, &f.fullname)),
    }
}

#[derive(Deserialize)]
struct EmailForm {
    email: String,
    current_password: String,
}

/// Mails a confirmation link to a new address.
#[utoipa::path(
    post,
    path = "/account/email",
    operation_id = "page_account_email",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`email`, `current_password`"),
    security(("access_cookie" = [])),
    responses(
        (status = 303, description = "The link is on its way, back to the account page; or no live access cookie, through `/v1/auth/resume`",
            headers(("Location" = String, description = "`/account?done=email`, or `/v1/auth/resume?return_to=%2Faccount`"))),
        (status = 400, description = "An HTML page: the form is incomplete, or the address is malformed or already the account's (the form is shown again)", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site, or the current password is incorrect", content_type = "text/html"),
        (status = 409, description = "An HTML page: another account has the address", content_type = "text/html"),
        (status = 429, description = "An HTML page: a limit is spent", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the server is busy or the database unavailable", content_type = "text/html"),
    )
)]
pub async fn email_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Your email address";
    let (auth, f) = match signed_in_form::<EmailForm>(&state, &headers, &body, title).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match state
        .request_email_change(
            &auth.user,
            &auth.session,
            &f.email,
            Some(f.current_password),
            &client,
        )
        .await
    {
        Ok(()) => done("email"),
        Err(e) => failed(title, &e, &email_form(&f.email)),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

/// Changes the password; the user's other sessions end.
#[utoipa::path(
    post,
    path = "/account/password",
    operation_id = "page_account_password",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`current_password`, `new_password`"),
    security(("access_cookie" = [])),
    responses(
        (status = 303, description = "Changed, back to the account page; or no live access cookie, through `/v1/auth/resume`",
            headers(("Location" = String, description = "`/account?done=password`, or `/v1/auth/resume?return_to=%2Faccount`"))),
        (status = 400, description = "An HTML page: the form is incomplete, or the new password breaks its rule (the form is shown again, saying why)", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site, or the current password is incorrect", content_type = "text/html"),
        (status = 429, description = "An HTML page: password checks share the login limits", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the server is busy or the database unavailable", content_type = "text/html"),
    )
)]
pub async fn password_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Your password";
    let (auth, f) = match signed_in_form::<PasswordForm>(&state, &headers, &body, title).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match state
        .app
        .change_password(
            &auth.user,
            auth.session.id,
            f.current_password,
            f.new_password,
            &client,
        )
        .await
    {
        Ok(()) => done("password"),
        Err(e) => failed(title, &e, &password_form()),
    }
}

#[derive(Deserialize)]
struct DeviceForm {
    session: String,
}

/// Signs one of the user's other devices out.
#[utoipa::path(
    post,
    path = "/account/devices/signout",
    operation_id = "page_account_device_signout",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`session`: a session id as the page lists it"),
    security(("access_cookie" = [])),
    responses(
        (status = 303, description = "Signed out, back to the account page; or no live access cookie, through `/v1/auth/resume`",
            headers(("Location" = String, description = "`/account?done=device`, or `/v1/auth/resume?return_to=%2Faccount`"))),
        (status = 400, description = "An HTML page: the form is incomplete", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site", content_type = "text/html"),
        (status = 404, description = "An HTML page: no such live session of this user", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn device_signout_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Signed-in devices";
    let (auth, f) = match signed_in_form::<DeviceForm>(&state, &headers, &body, title).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let gone = || AppError::not_found("That device is no longer signed in.");
    let result = match Uuid::parse_str(&f.session) {
        Ok(sid) => state.revoke_own_session(auth.user.id, sid, &client).await,
        Err(_) => Err(gone()),
    };
    match result {
        Ok(()) => done("device"),
        Err(e) if e.kind == ErrorKind::NotFound => failed(title, &gone(), ""),
        Err(e) => failed(title, &e, ""),
    }
}

#[derive(Deserialize)]
struct AppForm {
    client: String,
}

/// Withdraws an application's access: its consent is forgotten and its sessions
/// of this user end.
#[utoipa::path(
    post,
    path = "/account/apps/revoke",
    operation_id = "page_account_app_revoke",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`client`: a client id as the page lists it"),
    security(("access_cookie" = [])),
    responses(
        (status = 303, description = "Removed, back to the account page; or no live access cookie, through `/v1/auth/resume`",
            headers(("Location" = String, description = "`/account?done=app`, or `/v1/auth/resume?return_to=%2Faccount`"))),
        (status = 400, description = "An HTML page: the form is incomplete", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site", content_type = "text/html"),
        (status = 404, description = "An HTML page: this app has no access", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn app_revoke_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Connected apps";
    let (auth, f) = match signed_in_form::<AppForm>(&state, &headers, &body, title).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match state.revoke_grant(auth.user.id, &f.client, &client).await {
        Ok(()) => done("app"),
        Err(e) => failed(title, &e, ""),
    }
}

#[derive(Deserialize)]
struct SignOutForm {
    scope: String,
}

/// Signs this browser out (`scope=local`) or every device of the user
/// (`scope=global`); the cookies are cleared either way.
#[utoipa::path(
    post,
    path = "/account/signout",
    operation_id = "page_account_signout",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`scope`: `local` or `global`"),
    security(("access_cookie" = [])),
    responses(
        (status = 303, description = "Signed out, cookies cleared, on to the sign-in page; or no live access cookie, through `/v1/auth/resume`",
            headers(("Location" = String, description = "`/signin`, or `/v1/auth/resume?return_to=%2Faccount`"), ("Set-Cookie" = String, description = "Clears the access and refresh cookies"))),
        (status = 400, description = "An HTML page: the form is incomplete or names another scope", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn signout_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Sign out";
    let (auth, f) = match signed_in_form::<SignOutForm>(&state, &headers, &body, title).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let scope = match f.scope.as_str() {
        "local" => LogoutScope::Local,
        "global" => LogoutScope::Global,
        _ => {
            let e = AppError::invalid_request("scope: must be local or global");
            return failed(title, &e, "");
        }
    };
    match state
        .logout(LogoutBy::Session(&auth.session), scope, &client)
        .await
    {
        Ok(()) => {
            let mut cleared = HeaderMap::new();
            state.cookies.clear(&mut cleared);
            super::signin::see_other(SIGNIN, cleared)
        }
        Err(e) => failed(title, &e, ""),
    }
}

#[derive(Deserialize)]
struct DeleteForm {
    current_password: String,
}

/// Deletes the account after checking the current password.
#[utoipa::path(
    post,
    path = "/account/delete",
    operation_id = "page_account_delete",
    tag = "pages",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`current_password`"),
    security(("access_cookie" = [])),
    responses(
        (status = 200, description = "An HTML page: the account is deleted, every session ended, the cookies cleared", content_type = "text/html",
            headers(("Set-Cookie" = String, description = "Clears the access and refresh cookies"))),
        (status = 303, description = "No live access cookie: through `/v1/auth/resume`",
            headers(("Location" = String, description = "`/v1/auth/resume?return_to=%2Faccount`"))),
        (status = 400, description = "An HTML page: the form is incomplete", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site, or the current password is incorrect (the form is shown again)", content_type = "text/html"),
        (status = 429, description = "An HTML page: password checks share the login limits", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the server is busy or the database unavailable", content_type = "text/html"),
    )
)]
pub async fn delete_submit(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let title = "Delete your account";
    let (auth, f) = match signed_in_form::<DeleteForm>(&state, &headers, &body, title).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match state
        .app
        .delete_account(&auth.user, auth.session.id, f.current_password, &client)
        .await
    {
        Ok(()) => {
            let mut r = page(
                StatusCode::OK,
                "Account deleted",
                Notice::Ok("Your account is deleted and every device is signed out."),
                &format!("<p class=\"links\"><a href=\"{SIGNUP}\">Create a new account</a></p>"),
            );
            state.cookies.clear(r.headers_mut());
            r
        }
        Err(e) => failed(title, &e, &delete_form()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_dates() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_735_689_600 + 3_661), "2025-01-01 01:01 UTC");
    }

    #[test]
    fn only_known_notices_are_shown() {
        assert!(done_notice(Some("password")).is_some());
        assert_eq!(done_notice(Some("<script>")), None);
        assert_eq!(done_notice(None), None);
    }
}

//! The browser's side of OAuth 2 and OpenID Connect: the authorization endpoint
//! (RFC 6749 §4.1), the consent page, and RP-initiated logout. The rules are in
//! `tessera_app::oidc`; these handlers read the browser's session from its
//! access cookie, call one use case and turn its answer into a page or a redirect.

use super::signin::resume_location;
use super::{Layout, Notice, form, hidden, page, page_with, signed_in, submitted};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::ClientInfo;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use tessera_app::lifecycle::escape_html as esc;
use tessera_app::oidc::{
    AuthorizeError, AuthorizeParams, AuthorizeRequest, LOGIN_AFTER, LogoutOutcome, LogoutRequest,
    Next,
};
use tessera_app::{AppError, Authenticated};

const AUTHORIZE: &str = "/oauth/authorize";
const LOGOUT: &str = "/oauth/logout";
/// Where a signed-out visitor signs in; `return_to` brings them back.
const SIGN_IN: &str = "/signin";
/// Marks an authorization request that has been through `/v1/auth/resume`.
const RESUMED: &str = "tessera_resumed";

fn authorize_url(p: &[(String, String)]) -> String {
    format!(
        "{AUTHORIZE}?{}",
        serde_urlencoded::to_string(p).unwrap_or_default()
    )
}

/// Whether the authorization request `url` (a path and query) must not show any
/// page (`prompt=none`): a failed resume goes back to it instead of to sign in.
pub(crate) fn is_silent(url: &str) -> bool {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    pairs(query.as_bytes())
        .unwrap_or_default()
        .iter()
        .any(|(k, v)| k == "prompt" && v.split(' ').any(|x| x == "none"))
}

/// The parameters of the authorization endpoint (for the API description; the
/// handler reads the raw query so a repeated parameter can be refused).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuthorizeQuery {
    /// A registered client's id.
    client_id: Option<String>,
    /// Exactly one registered for the client (loopback URIs may vary the port).
    redirect_uri: Option<String>,
    /// `code`.
    response_type: Option<String>,
    /// Space-separated: `openid profile email offline_access`.
    scope: Option<String>,
    /// Echoed back to the client.
    state: Option<String>,
    /// Put into the ID token.
    nonce: Option<String>,
    /// PKCE (RFC 7636): required for public clients.
    code_challenge: Option<String>,
    /// `S256` (`plain` is refused).
    code_challenge_method: Option<String>,
    /// `none`, `login`, `consent`.
    prompt: Option<String>,
    /// Seconds since the sign-in after which the user must sign in again.
    max_age: Option<String>,
    /// Prefills the sign-in form.
    login_hint: Option<String>,
}

/// The parameters of RP-initiated logout.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct LogoutQuery {
    /// An ID token this server issued (expired ones too).
    id_token_hint: Option<String>,
    client_id: Option<String>,
    /// Registered for the client, exactly.
    post_logout_redirect_uri: Option<String>,
    /// Echoed to the post-logout redirect URI.
    state: Option<String>,
}

/// Name/value pairs of a query or form; a repeated name is refused (RFC 6749 §3.1).
fn pairs(raw: &[u8]) -> Result<Vec<(String, String)>, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw)
        .map_err(|_| "the parameters are malformed".to_string())?;
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &pairs {
        if !seen.insert(k.as_str()) {
            return Err(format!("the parameter `{k}` is repeated"));
        }
    }
    Ok(pairs)
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn authorize_params(p: &[(String, String)]) -> AuthorizeParams {
    let v = |n: &str| get(p, n).map(str::to_string);
    AuthorizeParams {
        client_id: v("client_id"),
        redirect_uri: v("redirect_uri"),
        response_type: v("response_type"),
        scope: v("scope"),
        state: v("state"),
        nonce: v("nonce"),
        code_challenge: v("code_challenge"),
        code_challenge_method: v("code_challenge_method"),
        prompt: v("prompt"),
        max_age: v("max_age"),
        login_hint: v("login_hint"),
        response_mode: v("response_mode"),
        request: v("request"),
        request_uri: v("request_uri"),
        login_after: v(LOGIN_AFTER),
    }
}

/// A redirect the browser follows with a GET (`303` after a form, `302` else).
fn redirect(status: StatusCode, to: &str) -> Response {
    let mut r = status.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// An error of the server (not of the request) as a page, through the pages'
/// one refusal page (its status, and `Retry-After` when the server is busy).
fn unavailable(e: AppError) -> Response {
    let description = ApiError::from(e.clone()).description;
    super::refusal(
        &e,
        "Something went wrong",
        &description,
        "",
        &Layout::default(),
    )
}

fn refused(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "This sign-in link does not work",
        Notice::Error(message),
        "<p>Go back to the application and try again. If it keeps happening, tell the application's developers.</p>",
    )
}

/// Sends the browser through `/v1/auth/resume` to come back here signed in.
/// Not a redirect: a page of this site starts that navigation, so the browser
/// sends the `SameSite=Strict` refresh cookie with it (a redirect in a chain
/// another site started would not).
fn resume_page(authorize_url: &str) -> Response {
    let to = resume_location(authorize_url);
    let body = format!(
        "<p>Checking whether you are signed in…</p><p><a href=\"{}\">Continue</a></p>",
        esc(&to)
    );
    let mut r = page(StatusCode::OK, "One moment", Notice::None, &body);
    if let Ok(v) = HeaderValue::from_str(&format!("0;url={to}")) {
        r.headers_mut().insert(header::REFRESH, v);
    }
    r
}

/// The sign-in page, coming back to this request afterwards marked with the
/// time it was sent (`now`): `prompt=login` and `max_age` then need a sign-in
/// made since, so the address cannot be used again later to skip them.
fn sign_in_url(p: &[(String, String)], now: i64) -> String {
    let mut marked: Vec<(String, String)> = p
        .iter()
        .filter(|(k, _)| k != LOGIN_AFTER)
        .cloned()
        .collect();
    marked.push((LOGIN_AFTER.into(), now.to_string()));
    let back = authorize_url(&marked);
    let mut q = vec![("return_to", back.as_str())];
    if let Some(hint) = get(p, "login_hint") {
        q.push(("login_hint", hint));
    }
    format!(
        "{SIGN_IN}?{}",
        serde_urlencoded::to_string(&q).unwrap_or_default()
    )
}

fn scope_line(scope: &str) -> Option<&'static str> {
    match scope {
        "openid" => Some("Know who you are (your account's identifier)"),
        "profile" => Some("See your name and username"),
        "email" => Some("See your email address"),
        "offline_access" => Some("Stay connected to your account when you are not using it"),
        _ => None,
    }
}

fn consent_page(req: &AuthorizeRequest, p: &[(String, String)], auth: &Authenticated) -> Response {
    let items: String = req
        .scope
        .iter()
        .filter_map(|s| scope_line(s))
        .map(|line| format!("<li>{}</li>", esc(line)))
        .collect();
    let items = if items.is_empty() {
        "<li>Use your account to sign you in</li>".to_string()
    } else {
        items
    };
    let fields: String = p
        .iter()
        .filter(|(k, _)| k != "decision")
        .map(|(k, v)| hidden(k, v))
        .collect();
    let body = format!(
        "<p><strong>{name}</strong> wants to access your account <strong>{user}</strong>. It will be able to:</p>\
         <ul>{items}</ul>\
         <form method=\"post\" action=\"{AUTHORIZE}\">{fields}\
         <button type=\"submit\" name=\"decision\" value=\"allow\" autofocus>Allow</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>\
         <p class=\"hint\">You can withdraw this access at any time from your <a href=\"/account\">account page</a>.</p>",
        name = esc(&req.client.name),
        user = esc(&auth.user.username),
    );
    page_with(
        StatusCode::OK,
        "Allow access?",
        Notice::None,
        &body,
        &Layout {
            forms_redirect_on: true,
            ..Layout::default()
        },
    )
}

/// Checks an authorization request from its pairs: a checked request, or the
/// response to give.
async fn checked(state: &AppState, p: &[(String, String)]) -> Result<AuthorizeRequest, Response> {
    match state.check_authorize(&authorize_params(p)).await {
        Ok(Ok(req)) => Ok(req),
        Ok(Err(AuthorizeError::Page(m))) => Err(refused(&m)),
        Ok(Err(AuthorizeError::Redirect(to))) => Err(redirect(StatusCode::FOUND, &to)),
        Err(e) => Err(unavailable(e)),
    }
}

/// Start an authorization (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2).
///
/// A signed-in user is sent back to the client with a code (after the consent
/// page for a third-party client); a signed-out one goes through the sign-in
/// page. An unknown client or an unregistered redirect URI is an error page and
/// never a redirect; every other error is sent back to the client.
#[utoipa::path(
    get,
    path = "/oauth/authorize",
    operation_id = "authorize",
    tag = "oauth",
    params(AuthorizeQuery),
    responses(
        (status = 200, description = "An HTML page: the consent page, or a moment's check of the browser's session", content_type = "text/html"),
        (status = 302, description = "Back to the client's redirect URI with `code` or `error`, `state` and `iss`"),
        (status = 303, description = "To the sign-in page, which comes back here"),
        (status = 400, description = "An HTML page: the client or its redirect URI is not registered, or the parameters are malformed", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    client: ClientInfo,
    RawQuery(query): RawQuery,
) -> Response {
    let p = match pairs(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(m) => return refused(&m),
    };
    let req = match checked(&state, &p).await {
        Ok(req) => req,
        Err(r) => return r,
    };
    let Some(auth) = signed_in(&headers, &state).await else {
        if req.prompt.iter().any(|x| x == "none") {
            // Silent: try the refresh cookie once (the resume comes back here
            // marked, signed in or not), then answer without showing anything.
            // In a frame (a silent check) no page of this site can show.
            let framed = headers
                .get("sec-fetch-dest")
                .is_some_and(|d| d.as_bytes() == b"iframe");
            if framed || get(&p, RESUMED).is_some() {
                return redirect(
                    StatusCode::FOUND,
                    &req.error("login_required", "the user is not signed in"),
                );
            }
            let mut marked = p.clone();
            marked.push((RESUMED.into(), "1".into()));
            return resume_page(&authorize_url(&marked));
        }
        if req.prompt.iter().any(|x| x == "login") || req.max_age.is_some() {
            return redirect(StatusCode::SEE_OTHER, &sign_in_url(&p, state.now()));
        }
        return resume_page(&authorize_url(&p));
    };
    match state
        .authorize_next(&req, Some((&auth.session, &auth.user)), &client)
        .await
    {
        Ok(Next::SignIn) => redirect(StatusCode::SEE_OTHER, &sign_in_url(&p, state.now())),
        Ok(Next::Consent) => consent_page(&req, &p, &auth),
        Ok(Next::Redirect(to)) => redirect(StatusCode::FOUND, &to),
        Err(e) => unavailable(e),
    }
}

/// The user's answer on the consent page.
#[utoipa::path(
    post,
    path = "/oauth/authorize",
    operation_id = "authorize_consent",
    tag = "oauth",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "The authorization request's parameters and `decision` (`allow` or `deny`)"),
    responses(
        (status = 200, description = "An HTML page: a moment's check of the browser's session", content_type = "text/html"),
        (status = 302, description = "Back to the client when the request itself is faulty"),
        (status = 303, description = "Back to the client with `code` (allowed) or `error=access_denied`"),
        (status = 400, description = "An HTML page: the form is incomplete, or the client or its redirect URI is not registered", content_type = "text/html"),
        (status = 403, description = "An HTML page: the form was sent from another site", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn authorize_consent(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    client: ClientInfo,
    body: Bytes,
) -> Response {
    let title = "Allow access?";
    let p: Vec<(String, String)> = match submitted(&headers, &state, &body, title) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if let Err(m) = pairs(&body) {
        return refused(&m);
    }
    let allow = match get(&p, "decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => return refused("The form was incomplete: choose Allow or Deny."),
    };
    let req = match checked(&state, &p).await {
        Ok(req) => req,
        Err(r) => return r,
    };
    let Some(auth) = signed_in(&headers, &state).await else {
        return redirect(StatusCode::SEE_OTHER, &sign_in_url(&p, state.now()));
    };
    match state
        .consent(&req, &auth.session, &auth.user, allow, &client)
        .await
    {
        Ok(Next::Redirect(to)) => redirect(StatusCode::SEE_OTHER, &to),
        Ok(_) => redirect(StatusCode::SEE_OTHER, &sign_in_url(&p, state.now())),
        Err(e) => unavailable(e),
    }
}

/// Signs the browser out and says where to go (OpenID Connect RP-Initiated
/// Logout 1.0).
async fn log_out(
    state: &AppState,
    headers: &HeaderMap,
    client: &ClientInfo,
    p: &[(String, String)],
    confirmed: bool,
) -> Response {
    let browser = signed_in(headers, state).await;
    let done = state
        .end_session(
            LogoutRequest {
                id_token_hint: get(p, "id_token_hint"),
                client_id: get(p, "client_id"),
                post_logout_redirect_uri: get(p, "post_logout_redirect_uri"),
                state: get(p, "state"),
            },
            browser.as_ref().map(|a| &a.session),
            confirmed,
            client,
        )
        .await;
    let mut res = match done {
        Ok(LogoutOutcome::Confirm) => return confirm_logout(p),
        Ok(LogoutOutcome::Done(Some(to))) => redirect(StatusCode::SEE_OTHER, &to),
        Ok(LogoutOutcome::Done(None)) => page(
            StatusCode::OK,
            "You are signed out",
            Notice::Ok("You have been signed out."),
            &format!("<p><a href=\"{SIGN_IN}\">Sign in again</a></p>"),
        ),
        Err(e) if e.kind == tessera_app::ErrorKind::InvalidRequest => {
            return page(
                StatusCode::BAD_REQUEST,
                "Sign-out failed",
                Notice::Error(&e.description),
                "",
            );
        }
        Err(e) => return unavailable(e),
    };
    state.cookies.clear(res.headers_mut());
    res
}

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
///
/// With an `id_token_hint` of the browser's user (or with no one signed in), the
/// session it names and the browser's session end at once; without a hint, or
/// with another user's, a page asks the user to confirm. A
/// `post_logout_redirect_uri` must be registered for the client exactly; the
/// browser is sent there with `state`.
#[utoipa::path(
    get,
    path = "/oauth/logout",
    operation_id = "end_session",
    tag = "oauth",
    params(LogoutQuery),
    responses(
        (status = 200, description = "An HTML page: signed out, or asking to confirm", content_type = "text/html"),
        (status = 303, description = "To the post-logout redirect URI, with `state`"),
        (status = 400, description = "An HTML page: the hint or the redirect URI cannot be accepted", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn end_session(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    client: ClientInfo,
    RawQuery(query): RawQuery,
) -> Response {
    let p = match pairs(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(m) => return refused(&m),
    };
    log_out(&state, &headers, &client, &p, false).await
}

/// Asks the user to confirm signing out; the form carries the request on.
fn confirm_logout(p: &[(String, String)]) -> Response {
    let fields: String = p.iter().map(|(k, v)| hidden(k, v)).collect();
    page_with(
        StatusCode::OK,
        "Sign out?",
        Notice::None,
        &format!(
            "<p>Do you want to sign out of your account on this device?</p>{}",
            form(LOGOUT, &fields, "Sign out")
        ),
        // The answer may go on to the application's post-logout address.
        &Layout {
            forms_redirect_on: true,
            ..Layout::default()
        },
    )
}

/// The confirmed sign-out (the form of `GET /oauth/logout`), or a relying party
/// posting the same parameters from its own site, which gets the confirmation
/// page first.
#[utoipa::path(
    post,
    path = "/oauth/logout",
    operation_id = "end_session_post",
    tag = "oauth",
    request_body(content = inline(Object), content_type = "application/x-www-form-urlencoded", description = "`id_token_hint`, `client_id`, `post_logout_redirect_uri`, `state`"),
    responses(
        (status = 200, description = "An HTML page: signed out, or (posted from another site) asking to confirm", content_type = "text/html"),
        (status = 303, description = "To the post-logout redirect URI, with `state`"),
        (status = 400, description = "An HTML page: the form is malformed, or the hint or the redirect URI cannot be accepted", content_type = "text/html"),
        (status = 500, description = "An HTML page: an internal error", content_type = "text/html"),
        (status = 503, description = "An HTML page: the database is unavailable", content_type = "text/html"),
    )
)]
pub async fn end_session_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    client: ClientInfo,
    body: Bytes,
) -> Response {
    let p = match pairs(&body) {
        Ok(p) => p,
        Err(m) => return refused(&m),
    };
    // The confirmation form of this site is the user's word; a relying party's
    // own page may post here too (the spec allows it), and is treated like a link.
    let confirmed = super::same_site(&headers, &state).is_ok();
    log_out(&state, &headers, &client, &p, confirmed).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(pairs(b"a=1&b=2").is_ok());
        assert!(pairs(b"a=1&a=2").is_err());
    }

    #[test]
    fn sign_in_comes_back_marked_with_the_time_it_was_sent() {
        let p = pairs(
            b"client_id=c&prompt=login+consent&max_age=0&login_hint=ada&state=s&tessera_login_after=5",
        )
        .unwrap();
        let url = sign_in_url(&p, 1_800_000_000);
        let q: Vec<(String, String)> =
            serde_urlencoded::from_str(url.strip_prefix("/signin?").unwrap()).unwrap();
        let back = &q.iter().find(|(k, _)| k == "return_to").unwrap().1;
        assert_eq!(
            back,
            "/oauth/authorize?client_id=c&prompt=login+consent&max_age=0&login_hint=ada&state=s\
             &tessera_login_after=1800000000"
        );
        assert!(q.iter().any(|(k, v)| k == "login_hint" && v == "ada"));
    }
}

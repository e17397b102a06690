//! The browser flow of OAuth 2 and OpenID Connect: checking an authorization
//! request (RFC 6749 §4.1 with PKCE, RFC 7636, under the rules of RFC 9700),
//! consent, authorization codes, the code exchange, ID tokens, and RP-initiated
//! logout. Back-channel logout notices are queued by [`App::end_sessions`]
//! (`sessions.rs`) and delivered by the outbox (`mail.rs`).
//!
//! A code is a random token stored only as its SHA-256, for at most
//! [`CODE_TTL`] seconds, bound to the client, the redirect URI, the PKCE
//! challenge, the scopes and the nonce. Redeeming it deletes it and leaves a marker
//! naming the session it opened, so a second redemption ends that session.

use crate::error::{AppError, AppResult, ErrorKind};
use crate::lifecycle::token_hash;
use crate::sessions::{Ending, SessionSet};
use crate::tokens::Issued;
use crate::{App, Authenticated, Caller};
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tessera_core::model::{AccountToken, Grant, RevokeReason, TokenPurpose};
use tessera_core::{Client, NewSession, Session, User};
use uuid::Uuid;

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
/// Every scope Tessera knows.
pub const SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
/// How long a code may wait for its exchange.
pub const CODE_TTL: i64 = 60;
/// How long a redeemed code is remembered, so a second use is caught.
const USED_CODE_TTL: i64 = 10 * 60;

/// The parameters of `GET /oauth/authorize`, as received (empty counts as absent).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeParams {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub response_mode: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
    /// Set by Tessera when it sends the browser to sign in for this request
    /// (`prompt=login`, or `max_age` passed): only a sign-in at or after this
    /// time satisfies them.
    pub login_after: Option<String>,
}

/// The parameter that carries [`AuthorizeParams::login_after`].
pub const LOGIN_AFTER: &str = "tessera_login_after";

/// Why an authorization request cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Shown on Tessera's own page: the client or its redirect URI could not be
    /// trusted, so the browser is never sent anywhere (RFC 6749 §4.1.2.1).
    Page(String),
    /// Sent back to the client: the redirect URI with `error`, `state` and `iss`.
    Redirect(String),
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client: Client,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    login_after: Option<i64>,
    issuer: String,
}

impl AuthorizeRequest {
    fn prompts(&self, p: &str) -> bool {
        self.prompt.iter().any(|x| x == p)
    }

    /// The redirect URI with `params`, `state` and `iss` (RFC 9207) added.
    fn back(&self, params: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&self.redirect_uri).expect("checked when the request was");
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(state) = &self.state {
                q.append_pair("state", state);
            }
            q.append_pair("iss", &self.issuer);
        }
        url.to_string()
    }

    /// An error for the client (RFC 6749 §4.1.2.1).
    pub fn error(&self, code: &str, description: &str) -> String {
        self.back(&[("error", code), ("error_description", description)])
    }

    /// The scopes, space-separated.
    pub fn scope_string(&self) -> String {
        self.scope.join(" ")
    }
}

/// What the browser sees next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The user must sign in (again).
    SignIn,
    /// The user must say whether the client may have the scopes.
    Consent,
    /// Back to the client, with a code or an error.
    Redirect(String),
}

/// What a code stands for (stored as JSON in the code's row).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CodeData {
    client_id: String,
    redirect_uri: String,
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    challenge: Option<String>,
    auth_time: i64,
    /// The browser that was signed in (the session shows it, not the client's
    /// back end that exchanges the code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    /// The browser's session: the code works only while it lives, and the
    /// application's session ends with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    browser_sid: Option<String>,
    /// Set on the marker a redemption leaves: the session it opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    used_by: Option<String>,
}

/// The parameters of RP-initiated logout (absent ones `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogoutRequest<'a> {
    pub id_token_hint: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub state: Option<&'a str>,
}

/// What RP-initiated logout did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// Signed out; the browser goes to this post-logout address, or is shown
    /// that it is signed out.
    Done(Option<String>),
    /// Nothing ended yet: the user must confirm on this site (no hint, or a hint
    /// of another user than the browser's).
    Confirm,
}

/// Tokens from a code exchange.
pub struct CodeTokens {
    pub issued: Issued,
    /// Only when the client may have one (first-party, or `offline_access`).
    pub refresh: bool,
    pub id_token: Option<String>,
    pub scope: String,
}

/// The claims of an ID token (OpenID Connect Core §2, §5.1).
#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
    sid: String,
    amr: [&'static str; 1],
    /// `sub` and the claims the scopes allow.
    #[serde(flatten)]
    user: UserClaims,
}

/// What a session's scopes let an application know about its user (OpenID
/// Connect Core §5.4): `email` and `email_verified` with `email`,
/// `preferred_username` and `name` with `profile`. A first-party session without
/// scopes may know all of it.
#[derive(Debug, Clone, Serialize)]
pub struct UserClaims {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// True only after the address was confirmed through a mailed link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// Omitted when the user has no full name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Whether `scope` (space-separated; `None`: a session without scopes, which
/// may have everything) includes `wanted`.
pub fn has_scope(scope: Option<&str>, wanted: &str) -> bool {
    scope.is_none_or(|s| s.split(' ').any(|g| g == wanted))
}

impl UserClaims {
    pub fn of(user: &User, scope: Option<&str>) -> Self {
        let (email, profile) = (has_scope(scope, "email"), has_scope(scope, "profile"));
        UserClaims {
            sub: user.id.to_string(),
            email: email.then(|| user.email.clone()),
            email_verified: email.then_some(user.email_verified),
            preferred_username: profile.then(|| user.username.clone()),
            name: Some(user.fullname.clone()).filter(|n| profile && !n.is_empty()),
        }
    }
}

/// A redirect URI registered for `client` that `presented` matches: exactly, or
/// for a loopback URI of a native app, in everything but the port (RFC 8252 §7.3).
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(mut r), Ok(mut p)) = (url::Url::parse(registered), url::Url::parse(presented)) else {
        return false;
    };
    let loopback = |u: &url::Url| {
        u.scheme() == "http"
            && matches!(
                u.host(),
                Some(url::Host::Ipv4(ip)) if ip.is_loopback()
            )
            || u.scheme() == "http"
                && matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
    };
    if !loopback(&r) || !loopback(&p) {
        return false;
    }
    let _ = r.set_port(None);
    let _ = p.set_port(None);
    r == p
}

/// Checks a URI a client registers (redirect or post-logout): absolute, no
/// fragment; `https`, or `http` only for a loopback address or `localhost`, or a
/// private-use scheme of a native app (`com.example.app:/callback`).
pub fn check_client_uri(uri: &str) -> Result<(), String> {
    let u = url::Url::parse(uri).map_err(|e| format!("`{uri}` is not an absolute URI: {e}"))?;
    if u.fragment().is_some() {
        return Err(format!("`{uri}` must not have a fragment"));
    }
    if uri.contains(char::is_whitespace) {
        return Err(format!("`{uri}` must not contain spaces"));
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" => match u.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Domain("localhost")) => Ok(()),
            _ => Err(format!(
                "`{uri}`: plain http only for loopback addresses; use https"
            )),
        },
        "javascript" | "data" | "file" | "vbscript" | "blob" => Err(format!(
            "`{uri}`: the scheme `{}` is not allowed",
            u.scheme()
        )),
        s if s.contains('.') => Ok(()),
        _ => Err(format!(
            "`{uri}`: use https, http on loopback, or a reverse-domain scheme (com.example.app:/cb)"
        )),
    }
}

/// `BASE64URL(SHA-256(verifier))` (RFC 7636 §4.2).
fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// A PKCE verifier or S256 challenge: 43 to 128 unreserved characters.
fn pkce_shaped(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The left half of the access token's SHA-256, base64url (OIDC Core §3.1.3.6).
fn at_hash(access_token: &str) -> String {
    let d = digest::digest(&digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

fn param(p: &Option<String>) -> Option<&str> {
    p.as_deref().filter(|s| !s.is_empty())
}

/// Splits and checks a scope parameter against what the client may have.
pub fn check_scope(requested: Option<&str>, client: &Client) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for s in requested.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        if !SCOPES.contains(&s) {
            return Err(format!("unknown scope `{s}`; known: {}", SCOPES.join(" ")));
        }
        if !client.scopes.is_empty() && !client.scopes.iter().any(|c| c == s) {
            return Err(format!("this client may not ask for `{s}`"));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

impl App {
    /// Checks an authorization request. An unknown client or a redirect URI not
    /// registered for it is [`AuthorizeError::Page`]; every other fault goes back
    /// to the client.
    pub async fn check_authorize(
        &self,
        p: &AuthorizeParams,
    ) -> AppResult<Result<AuthorizeRequest, AuthorizeError>> {
        let page = |m: &str| Ok(Err(AuthorizeError::Page(m.to_string())));
        let Some(client_id) = param(&p.client_id) else {
            return page("The application did not say who it is (client_id is missing).");
        };
        let unknown = "The application is not registered with this server.";
        if client_id.len() > 256 {
            return page(unknown);
        }
        let Some(client) = self.store.get_client(client_id).await? else {
            return page(unknown);
        };
        let Some(redirect_uri) = param(&p.redirect_uri) else {
            return page("The application did not say where to return (redirect_uri is missing).");
        };
        if !client
            .redirect_uris
            .iter()
            .any(|r| redirect_uri_matches(r, redirect_uri))
        {
            return page("The return address is not registered for this application.");
        }
        let mut req = AuthorizeRequest {
            client,
            redirect_uri: redirect_uri.to_string(),
            scope: Vec::new(),
            state: param(&p.state).map(str::to_string),
            nonce: param(&p.nonce).map(str::to_string),
            code_challenge: param(&p.code_challenge).map(str::to_string),
            prompt: param(&p.prompt)
                .unwrap_or("")
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            max_age: None,
            login_hint: param(&p.login_hint).map(str::to_string),
            login_after: param(&p.login_after).and_then(|t| t.parse().ok()),
            issuer: self.settings.issuer.clone(),
        };
        let fail = |req: &AuthorizeRequest, code: &str, d: &str| {
            Ok(Err(AuthorizeError::Redirect(req.error(code, d))))
        };
        if !req
            .client
            .grant_types
            .iter()
            .any(|g| g == GRANT_AUTHORIZATION_CODE)
        {
            return fail(
                &req,
                "unauthorized_client",
                "this client may not use the authorization code flow",
            );
        }
        if param(&p.request).is_some() {
            return fail(
                &req,
                "request_not_supported",
                "request objects are not supported",
            );
        }
        if param(&p.request_uri).is_some() {
            return fail(
                &req,
                "request_uri_not_supported",
                "request_uri is not supported",
            );
        }
        match param(&p.response_type) {
            Some("code") => {}
            None => return fail(&req, "invalid_request", "response_type is required"),
            Some(_) => {
                return fail(
                    &req,
                    "unsupported_response_type",
                    "only response_type=code is supported",
                );
            }
        }
        if param(&p.response_mode).is_some_and(|m| m != "query") {
            return fail(
                &req,
                "invalid_request",
                "only response_mode=query is supported",
            );
        }
        match check_scope(param(&p.scope), &req.client) {
            Ok(scope) => req.scope = scope,
            Err(e) => return fail(&req, "invalid_scope", &e),
        }
        match param(&p.code_challenge_method) {
            None | Some("S256") => {}
            Some("plain") => {
                return fail(
                    &req,
                    "invalid_request",
                    "code_challenge_method plain is not allowed; use S256",
                );
            }
            Some(_) => {
                return fail(
                    &req,
                    "invalid_request",
                    "code_challenge_method must be S256",
                );
            }
        }
        match &req.code_challenge {
            Some(c) if !pkce_shaped(c) => {
                return fail(&req, "invalid_request", "code_challenge is malformed");
            }
            Some(_) if param(&p.code_challenge_method).is_none() => {
                return fail(
                    &req,
                    "invalid_request",
                    "code_challenge_method=S256 is required with code_challenge",
                );
            }
            None if req.client.secret_hash.is_none() => {
                return fail(
                    &req,
                    "invalid_request",
                    "public clients must use PKCE (code_challenge with code_challenge_method=S256)",
                );
            }
            // RFC 9700 §2.1.1: a confidential client binds its code to the
            // browser with PKCE, or with an OpenID Connect nonce.
            None if !(req.scope.iter().any(|s| s == "openid") && req.nonce.is_some()) => {
                return fail(
                    &req,
                    "invalid_request",
                    "use PKCE (code_challenge with code_challenge_method=S256), or scope openid with a nonce",
                );
            }
            _ => {}
        }
        if req.prompts("none") && req.prompt.len() > 1 {
            return fail(&req, "invalid_request", "prompt=none cannot be combined");
        }
        if let Some(m) = param(&p.max_age) {
            match m.parse::<i64>() {
                Ok(v) if v >= 0 => req.max_age = Some(v),
                _ => {
                    return fail(
                        &req,
                        "invalid_request",
                        "max_age must be a whole number of seconds",
                    );
                }
            }
        }
        if req.nonce.as_ref().is_some_and(|n| n.len() > 512)
            || req.state.as_ref().is_some_and(|s| s.len() > 2048)
        {
            return fail(&req, "invalid_request", "state or nonce is too long");
        }
        Ok(Ok(req))
    }

    /// What follows a checked request for the browser's session (`None`: signed
    /// out). `prompt=login` and a passed `max_age` need a sign-in made after
    /// Tessera sent the browser to sign in for this request.
    pub async fn authorize_next(
        &self,
        req: &AuthorizeRequest,
        signed_in: Option<(&Session, &User)>,
        caller: &Caller,
    ) -> AppResult<Next> {
        let now = self.now();
        let Some((session, user)) = signed_in else {
            return Ok(if req.prompts("none") {
                Next::Redirect(req.error("login_required", "the user is not signed in"))
            } else {
                Next::SignIn
            });
        };
        if let Some(next) = Self::sign_in_again(req, session, now) {
            return Ok(next);
        }
        if self.needs_consent(req, user.id).await? {
            return Ok(if req.prompts("none") {
                Next::Redirect(req.error("consent_required", "the user has not granted access"))
            } else {
                Next::Consent
            });
        }
        Ok(Next::Redirect(
            self.issue_code(req, session, user, caller).await?,
        ))
    }

    /// `prompt=login`, or a `max_age` shorter than the time since the browser's
    /// sign-in, without a sign-in made since Tessera sent the browser to sign in
    /// for this request: sign in (again), or `login_required` under `prompt=none`.
    fn sign_in_again(req: &AuthorizeRequest, session: &Session, now: i64) -> Option<Next> {
        let too_old = req.max_age.is_some_and(|m| now - session.created_at > m);
        let fresh = req.login_after.is_some_and(|t| session.created_at >= t);
        if fresh || !(req.prompts("login") || too_old) {
            return None;
        }
        Some(if req.prompts("none") {
            Next::Redirect(req.error("login_required", "a new sign-in is required"))
        } else {
            Next::SignIn
        })
    }

    /// Third-party clients need the user's consent to every scope, once (until
    /// revoked), and again on `prompt=consent`.
    async fn needs_consent(&self, req: &AuthorizeRequest, user: Uuid) -> AppResult<bool> {
        if req.client.first_party {
            return Ok(false);
        }
        if req.prompts("consent") {
            return Ok(true);
        }
        let granted = self.store.get_grant(user, &req.client.id).await?;
        Ok(!granted.is_some_and(|g| {
            let have: Vec<&str> = g.scope.split(' ').collect();
            req.scope.iter().all(|s| have.contains(&s.as_str()))
        }))
    }

    /// The user's answer on the consent page: remembered when given.
    pub async fn consent(
        &self,
        req: &AuthorizeRequest,
        session: &Session,
        user: &User,
        allow: bool,
        caller: &Caller,
    ) -> AppResult<Next> {
        if !allow {
            return Ok(Next::Redirect(
                req.error("access_denied", "the user declined"),
            ));
        }
        if let Some(next) = Self::sign_in_again(req, session, self.now()) {
            return Ok(next);
        }
        let mut scope: Vec<String> = match self.store.get_grant(user.id, &req.client.id).await? {
            Some(g) => g.scope.split(' ').map(str::to_string).collect(),
            None => Vec::new(),
        };
        for s in &req.scope {
            if !scope.contains(s) {
                scope.push(s.clone());
            }
        }
        self.store
            .put_grant(Grant {
                user_id: user.id,
                client_id: req.client.id.clone(),
                scope: scope.join(" "),
                granted_at: self.now(),
            })
            .await?;
        let detail = format!("client={} scope={}", req.client.id, req.scope_string());
        self.audit(
            "consent_granted",
            Some(user.id),
            Some(session.id),
            caller,
            Some(detail),
        )
        .await;
        Ok(Next::Redirect(
            self.issue_code(req, session, user, caller).await?,
        ))
    }

    /// Stores a new code and returns the redirect that carries it.
    async fn issue_code(
        &self,
        req: &AuthorizeRequest,
        session: &Session,
        user: &User,
        browser: &Caller,
    ) -> AppResult<String> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| AppError::internal())?;
        let code = URL_SAFE_NO_PAD.encode(bytes);
        let data = CodeData {
            client_id: req.client.id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            scope: req.scope_string(),
            nonce: req.nonce.clone(),
            challenge: req.code_challenge.clone(),
            auth_time: session.created_at,
            user_agent: browser.user_agent.clone(),
            ip: browser.ip.clone(),
            browser_sid: Some(session.id.to_string()),
            used_by: None,
        };
        let now = self.now();
        self.store
            .insert_account_token(AccountToken {
                hash: token_hash(&code),
                purpose: TokenPurpose::AuthorizationCode,
                user_id: Some(user.id),
                email: String::new(),
                created_at: now,
                expires_at: now + CODE_TTL,
                data: Some(serde_json::to_string(&data).map_err(|_| AppError::internal())?),
            })
            .await?;
        Ok(req.back(&[("code", &code)]))
    }

    /// Exchanges a code (`grant_type=authorization_code`) for `client`.
    pub async fn redeem_code(
        &self,
        code: &str,
        client: &Client,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        caller: &Caller,
    ) -> AppResult<CodeTokens> {
        let bad = || AppError::invalid_grant("the code is unknown, used or expired");
        if code.len() > 256 {
            return Err(bad());
        }
        let hash = token_hash(code);
        let row = match self.store.get_account_token(&hash).await? {
            Some(t) if t.purpose == TokenPurpose::AuthorizationCode => self
                .store
                .take_account_token(&hash)
                .await?
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        let data: CodeData = row
            .data
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .ok_or_else(bad)?;
        let user_id = row.user_id.ok_or_else(bad)?;
        if let Some(sid) = data
            .used_by
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            let ending = Ending {
                sessions: SessionSet::One(sid),
                reason: RevokeReason::RefreshReuse,
                event: "code_reuse",
                user: Some(user_id),
                session: Some(sid),
                detail: Some(format!("client={}", data.client_id)),
            };
            self.end_sessions(ending, caller).await?;
            return Err(AppError::invalid_grant(
                "the code was used before; the tokens it gave are revoked",
            ));
        }
        let now = self.now();
        if now >= row.expires_at {
            return Err(bad());
        }
        if data.client_id != client.id {
            return Err(AppError::invalid_grant(
                "the code was issued to another client",
            ));
        }
        if redirect_uri != Some(data.redirect_uri.as_str()) {
            return Err(AppError::invalid_grant(
                "redirect_uri must be the one of the authorization request",
            ));
        }
        match (&data.challenge, verifier) {
            (Some(challenge), Some(v)) if pkce_shaped(v) && s256(v) == *challenge => {}
            (Some(_), None) => return Err(AppError::invalid_grant("code_verifier is required")),
            (Some(_), Some(_)) => {
                return Err(AppError::invalid_grant("code_verifier does not match"));
            }
            (None, Some(_)) => {
                return Err(AppError::invalid_grant(
                    "code_verifier without a code_challenge in the authorization request",
                ));
            }
            (None, None) => {}
        }
        // Remember the redemption before opening the session: a second use finds it.
        let sid = Uuid::now_v7();
        let marker = CodeData {
            used_by: Some(sid.to_string()),
            ..data.clone()
        };
        self.store
            .insert_account_token(AccountToken {
                expires_at: now + USED_CODE_TTL,
                data: Some(serde_json::to_string(&marker).map_err(|_| AppError::internal())?),
                ..row
            })
            .await?;
        let record = self.store.get_user(user_id).await?.ok_or_else(bad)?;
        let user = record.user;
        if user.disabled {
            return Err(AppError::invalid_grant("the account is disabled"));
        }
        // The browser signed out (or its sessions were ended) since: no tokens.
        let parent = data
            .browser_sid
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok());
        if let Some(b) = parent {
            match self.store.get_session(b).await? {
                Some((s, _)) if s.is_active(now) => {}
                _ => {
                    return Err(AppError::invalid_grant(
                        "the sign-in this code came from has ended",
                    ));
                }
            }
        }
        let scopes: Vec<&str> = data.scope.split(' ').filter(|s| !s.is_empty()).collect();
        let refresh = client.first_party || scopes.contains(&"offline_access");
        let s = &self.settings;
        let (idle, absolute) = if refresh {
            (s.refresh_idle.min(s.session_max), s.session_max)
        } else {
            // No refresh token: the session lives as long as its access token.
            (s.access_ttl, s.access_ttl)
        };
        let session = self
            .store
            .create_session(NewSession {
                id: sid,
                user_id: user.id,
                client_id: client.id.clone(),
                created_at: now,
                idle_expires_at: now + idle,
                absolute_expires_at: now + absolute,
                user_agent: data
                    .user_agent
                    .clone()
                    .or_else(|| caller.user_agent.clone()),
                ip: data.ip.clone().or_else(|| caller.ip.clone()),
                scope: Some(data.scope.clone()),
                parent_id: parent,
            })
            .await?;
        let issued = self.issue(&session, &user, 0, now)?;
        let id_token = if scopes.contains(&"openid") {
            Some(self.id_token(&user, &session, &data, &issued.access_token, now)?)
        } else {
            None
        };
        let detail = format!("client={} scope={}", client.id, data.scope);
        self.audit(
            "code_exchanged",
            Some(user.id),
            Some(sid),
            caller,
            Some(detail),
        )
        .await;
        Ok(CodeTokens {
            issued,
            refresh,
            id_token,
            scope: data.scope,
        })
    }

    /// Signs an ID token with the RS256 key.
    fn id_token(
        &self,
        user: &User,
        session: &Session,
        data: &CodeData,
        access_token: &str,
        now: i64,
    ) -> AppResult<String> {
        let claims = IdClaims {
            iss: &self.settings.issuer,
            aud: &session.client_id,
            exp: now + self.settings.access_ttl,
            iat: now,
            auth_time: data.auth_time,
            nonce: data.nonce.as_deref(),
            at_hash: at_hash(access_token),
            sid: session.id.to_string(),
            amr: ["pwd"],
            user: UserClaims::of(user, Some(&data.scope)),
        };
        self.sign_rs256("JWT", &claims)
    }

    /// Signs with the RS256 key of ID and logout tokens.
    pub(crate) fn sign_rs256<T: Serialize>(&self, typ: &str, claims: &T) -> AppResult<String> {
        let keys = self.key_set();
        let key = keys.id_signing_key().ok_or_else(|| {
            tracing::error!("no RS256 key signs ID tokens");
            AppError::internal()
        })?;
        key.sign_typed(typ, claims).map_err(|e| {
            tracing::error!(error = %e, "signing failed");
            AppError::internal()
        })
    }

    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the
    /// session the `id_token_hint` names and the browser's own session, and says
    /// where to send the browser (a registered `post_logout_redirect_uri` with
    /// `state`), or `None` to show Tessera's signed-out page. A redirect URI that
    /// cannot be checked is an error, never followed.
    pub async fn end_session(
        &self,
        req: LogoutRequest<'_>,
        browser: Option<&Session>,
        confirmed: bool,
        caller: &Caller,
    ) -> AppResult<LogoutOutcome> {
        let LogoutRequest {
            id_token_hint,
            client_id,
            post_logout_redirect_uri,
            state,
        } = req;
        let hint = match id_token_hint {
            Some(t) => Some(
                self.key_set()
                    .verify_id_token_hint(t, &self.settings.issuer)
                    .map_err(|_| {
                        AppError::invalid_request("id_token_hint is not an ID token issued here")
                    })?,
            ),
            None => None,
        };
        let hint_client = match &hint {
            Some(h) => match &h.aud {
                tessera_jose::Audience::One(a) => Some(a.clone()),
                tessera_jose::Audience::Many(v) if v.len() == 1 => Some(v[0].clone()),
                _ => None,
            },
            None => None,
        };
        if let (Some(a), Some(b)) = (&hint_client, client_id)
            && a != b
        {
            return Err(AppError::invalid_request(
                "client_id does not match the id_token_hint",
            ));
        }
        let target = match post_logout_redirect_uri {
            None => None,
            Some(uri) => {
                let cid = hint_client.as_deref().or(client_id).ok_or_else(|| {
                    AppError::invalid_request(
                        "post_logout_redirect_uri needs id_token_hint or client_id",
                    )
                })?;
                let client = self
                    .store
                    .get_client(cid)
                    .await?
                    .ok_or_else(|| AppError::invalid_request("unknown client"))?;
                if !client.post_logout_redirect_uris.iter().any(|r| r == uri) {
                    return Err(AppError::invalid_request(
                        "post_logout_redirect_uri is not registered for this client",
                    ));
                }
                let mut url = url::Url::parse(uri).map_err(|_| {
                    AppError::invalid_request("post_logout_redirect_uri is malformed")
                })?;
                if let Some(state) = state {
                    url.query_pairs_mut().append_pair("state", state);
                }
                Some(url.to_string())
            }
        };
        // Without the user's word, only a hint naming the browser's own user
        // signs it out: anyone can send a browser here with a hint of theirs.
        let same_user = match (&hint, browser) {
            (Some(h), Some(b)) => b.user_id.to_string() == h.sub,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !confirmed && !same_user {
            return Ok(LogoutOutcome::Confirm);
        }
        let mut ended: Vec<Uuid> = Vec::new();
        if let Some(h) = &hint
            && let Some(sid) = h.sid.as_deref().and_then(|s| Uuid::parse_str(s).ok())
            && let Some((session, _)) = self.store.get_session(sid).await?
            && session.user_id.to_string() == h.sub
        {
            ended.push(sid);
        }
        if let Some(b) = browser {
            ended.push(b.id);
        }
        for sid in ended {
            let session = self.store.get_session(sid).await?;
            let ending = Ending {
                sessions: SessionSet::One(sid),
                reason: RevokeReason::Logout,
                event: "logout",
                user: session.map(|(s, _)| s.user_id),
                session: Some(sid),
                detail: Some("rp-initiated logout".into()),
            };
            self.end_sessions(ending, caller).await?;
        }
        Ok(LogoutOutcome::Done(target))
    }

    /// The password grant asking for `scope` (each one the client may have).
    pub async fn grant_password(
        &self,
        login: &str,
        password: String,
        caller: &Caller,
        client: &Client,
        scope: Option<&str>,
    ) -> AppResult<Issued> {
        let scope = Self::scopes_for(client, scope)?.join(" ");
        let scope = Some(scope.as_str()).filter(|s| !s.is_empty());
        self.login_and_issue_scoped(login, password, caller, &client.id, scope)
            .await
    }

    /// The refresh grant asking for `scope`: each one the client may have and
    /// the session was granted ([`App::refresh_scoped`]).
    pub async fn grant_refresh(
        &self,
        token: &str,
        caller: &Caller,
        client: &Client,
        scope: Option<&str>,
    ) -> AppResult<Issued> {
        let scope = Self::scopes_for(client, scope)?;
        self.refresh_scoped(token, caller, &client.id, &scope).await
    }

    fn scopes_for(client: &Client, scope: Option<&str>) -> AppResult<Vec<String>> {
        check_scope(scope, client).map_err(|e| AppError::new(ErrorKind::InvalidScope, e))
    }

    /// [`App::authenticate`] for the account API and the pages: a session a
    /// third-party application opened (through the code flow or with scopes)
    /// may read the user's claims at `/oauth/userinfo` and nothing else, so its
    /// token cannot change the account, list or end its sessions.
    pub async fn authenticate_account(&self, token: &str) -> AppResult<Authenticated> {
        let auth = self.authenticate(token).await?;
        if auth.session.scope.is_some()
            && !self
                .store
                .get_client(&auth.session.client_id)
                .await?
                .is_some_and(|c| c.first_party)
        {
            return Err(AppError::forbidden(
                "this access token belongs to a third-party application: it may only read /oauth/userinfo",
            ));
        }
        Ok(auth)
    }

    /// The third-party clients a user has granted access to, with their names.
    pub async fn list_grants(&self, user: Uuid) -> AppResult<Vec<(Grant, String)>> {
        let mut out = Vec::new();
        for g in self.store.list_grants(user).await? {
            let name = match self.store.get_client(&g.client_id).await? {
                Some(c) => c.name,
                None => g.client_id.clone(),
            };
            out.push((g, name));
        }
        Ok(out)
    }

    /// Withdraws a user's consent to a client and ends the client's sessions of
    /// that user.
    pub async fn revoke_grant(
        &self,
        user: Uuid,
        client_id: &str,
        caller: &Caller,
    ) -> AppResult<()> {
        if !self.store.delete_grant(user, client_id).await? {
            return Err(AppError::new(ErrorKind::NotFound, "no such app"));
        }
        for s in self.store.list_user_sessions(user, self.now()).await? {
            if s.client_id == client_id {
                let ending = Ending {
                    sessions: SessionSet::One(s.id),
                    reason: RevokeReason::UserRequest,
                    event: "consent_revoked",
                    user: Some(user),
                    session: Some(s.id),
                    detail: Some(format!("client={client_id}")),
                };
                self.end_sessions(ending, caller).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_may_change_port_only() {
        let reg = "http://127.0.0.1/callback";
        assert!(redirect_uri_matches(reg, "http://127.0.0.1:53123/callback"));
        assert!(redirect_uri_matches(
            "http://[::1]:80/cb",
            "http://[::1]:9000/cb"
        ));
        assert!(!redirect_uri_matches(reg, "http://127.0.0.1:53123/other"));
        assert!(!redirect_uri_matches(
            reg,
            "http://127.0.0.1:1/callback?x=1"
        ));
        assert!(!redirect_uri_matches(reg, "https://127.0.0.1:1/callback"));
        let web = "https://app.example/cb";
        assert!(redirect_uri_matches(web, web));
        assert!(!redirect_uri_matches(web, "https://app.example:444/cb"));
        assert!(!redirect_uri_matches(web, "https://app.example/cb/"));
        assert!(!redirect_uri_matches(web, "https://app.example/CB"));
        assert!(!redirect_uri_matches(
            "http://localhost/cb",
            "http://localhost:1/cb"
        ));
    }

    #[test]
    fn client_uris() {
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth",
        ] {
            assert!(check_client_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#x",
            "javascript:alert(1)",
            "/relative",
            "myapp:/cb",
        ] {
            assert!(check_client_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(pkce_shaped(verifier));
        assert!(!pkce_shaped("short"));
        assert!(!pkce_shaped(&"a".repeat(129)));
        assert!(!pkce_shaped(&format!("{}+", "a".repeat(43))));
    }
}

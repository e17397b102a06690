//! The OAuth 2 / OpenID Connect endpoints: token (refresh and password grants),
//! revocation, introspection, userinfo and discovery (contract §5.2).

use super::openapi::ErrorBody;
use crate::AppState;
use crate::extract::{AccessAuth, AnyAccess, ClientInfo};
use crate::oauth::{Form, OAuthError, param};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tessera_app::oidc::UserClaims;
use tessera_app::{GRANT_AUTHORIZATION_CODE, GRANT_PASSWORD, GRANT_REFRESH_TOKEN, Recognised};
use tessera_core::RefreshDecision;
use utoipa::ToSchema;

/// `POST /oauth/token` parameters (RFC 6749 §4.3.2, §6, §2.3.1). Unknown parameters
/// are ignored, a repeated one is refused, and an empty one counts as absent.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"grant_type": "password", "username": "ada", "password": "correct horse battery"}))]
pub struct TokenRequest {
    /// `password` only while the password grant is enabled (see discovery).
    #[schema(required = true, nullable = false, value_type = GrantType)]
    grant_type: Option<String>,
    /// Required by `grant_type=refresh_token`.
    #[schema(nullable = false)]
    refresh_token: Option<String>,
    /// An email or a username; required by `grant_type=password`.
    #[schema(nullable = false, max_length = 320)]
    username: Option<String>,
    /// Required by `grant_type=password`.
    #[schema(nullable = false, max_length = 128)]
    password: Option<String>,
    /// Space-separated scopes (`openid profile email offline_access`), each one the
    /// client may have; on the refresh grant, each one granted to the session.
    #[schema(nullable = false, max_length = 512)]
    scope: Option<String>,
    /// Required by `grant_type=authorization_code`.
    #[schema(nullable = false, max_length = 256)]
    code: Option<String>,
    /// `grant_type=authorization_code`: the redirect URI of the authorization request.
    #[schema(nullable = false, max_length = 2048)]
    redirect_uri: Option<String>,
    /// `grant_type=authorization_code`: the PKCE verifier (RFC 7636).
    #[schema(nullable = false, max_length = 128)]
    code_verifier: Option<String>,
    /// Identifies the client (`none` and `client_secret_post`).
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// `client_secret_post`; or use HTTP Basic (`client_secret_basic`), not both.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// The grants of the token endpoint.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    Password,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
pub struct OAuthTokenResponse {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Access-token lifetime in seconds.
    expires_in: i64,
    /// Absent when the code flow gives a third-party client no `offline_access`.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// The OpenID Connect ID token (RS256), when `openid` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    /// The scopes granted, when any were.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// Headers every response carrying tokens or token facts has (RFC 6749 §5.1).
fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// Issue tokens: refresh-token rotation or first-party password login.
///
/// The refresh grant follows exactly the rotation rules of `/v1/auth/refresh`
/// (a replay of the previous token within the grace window gets the same successor;
/// any other reuse revokes the session). A refresh token is only accepted from the
/// client whose session it is.
#[utoipa::path(
    post,
    path = "/oauth/token",
    operation_id = "oauth_token",
    tag = "oauth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses(
        (status = 200, description = "Tokens issued", body = OAuthTokenResponse,
            headers(("Cache-Control" = String, description = "`no-store`"), ("Pragma" = String, description = "`no-cache`")),
            links(
                ("refresh" = (operation_id = "oauth_token", description = "Rotate the refresh token (same client)",
                    request_body = json!({"grant_type": "refresh_token", "refresh_token": "$response.body#/refresh_token"}))),
                ("introspect" = (operation_id = "oauth_introspect", description = "Introspect the access token (a confidential client)",
                    request_body = json!({"token": "$response.body#/access_token"}))),
                ("revoke" = (operation_id = "oauth_revoke", description = "End the session (same client)",
                    request_body = json!({"token": "$response.body#/refresh_token"}))),
            )),
        (status = 400, description = "`invalid_request` (also for a body that is not a form), `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`", body = ErrorBody),
        (status = 401, description = "`invalid_client`; with `WWW-Authenticate: Basic` when HTTP Basic was tried", body = ErrorBody),
        (status = 429, description = "`rate_limited`: a login or refresh limit is spent", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    info: ClientInfo,
    Form(req): Form<TokenRequest>,
) -> Result<Response, OAuthError> {
    let client = state
        .authenticate_client_http(&headers, param(&req.client_id), param(&req.client_secret))
        .await?;
    let grant = param(&req.grant_type)
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let body = match grant {
        GRANT_AUTHORIZATION_CODE => {
            state.check_grant(&client, grant)?;
            let code =
                param(&req.code).ok_or_else(|| OAuthError::invalid_request("code is required"))?;
            let t = state
                .redeem_code(
                    code,
                    &client,
                    param(&req.redirect_uri),
                    param(&req.code_verifier),
                    &info,
                )
                .await?;
            OAuthTokenResponse {
                access_token: t.issued.access_token,
                token_type: "Bearer",
                expires_in: t.issued.expires_in,
                refresh_token: t.refresh.then_some(t.issued.refresh_token),
                id_token: t.id_token,
                scope: Some(t.scope).filter(|s| !s.is_empty()),
            }
        }
        GRANT_REFRESH_TOKEN => {
            state.check_grant(&client, grant)?;
            let token = param(&req.refresh_token)
                .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
            pair(
                state
                    .grant_refresh(token, &info, &client, param(&req.scope))
                    .await?,
            )
        }
        GRANT_PASSWORD if state.settings.password_grant => {
            state.check_grant(&client, grant)?;
            let (Some(username), Some(password)) = (param(&req.username), param(&req.password))
            else {
                return Err(OAuthError::invalid_request(
                    "username and password are required",
                ));
            };
            pair(
                state
                    .grant_password(
                        username,
                        password.to_string(),
                        &info,
                        &client,
                        param(&req.scope),
                    )
                    .await?,
            )
        }
        _ => {
            return Err(OAuthError::unsupported_grant_type(
                "supported grant types: authorization_code, refresh_token, and password when enabled",
            ));
        }
    };
    Ok(no_store(axum::Json(body).into_response()))
}

/// The answer of the refresh and password grants.
fn pair(issued: tessera_app::Issued) -> OAuthTokenResponse {
    OAuthTokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: Some(issued.refresh_token),
        id_token: None,
        scope: issued.scope,
    }
}

/// `POST /oauth/revoke` and `POST /oauth/introspect` parameters (RFC 7009, 7662).
/// Unknown parameters are ignored, a repeated one is refused, and an empty one
/// counts as absent.
#[derive(Deserialize, ToSchema)]
pub struct TokenQuery {
    /// An access token or a refresh token.
    #[schema(required = true, nullable = false, min_length = 1)]
    token: Option<String>,
    /// Any value is accepted and none is needed: access and refresh tokens are told
    /// apart by their format.
    #[allow(dead_code)]
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
    /// Identifies the client (`none` and `client_secret_post`).
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// `client_secret_post`; or use HTTP Basic (`client_secret_basic`), not both.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// Revoke a token (RFC 7009).
///
/// A refresh token ends its whole session. An access token ends its session too
/// (access tokens are stateless: ending the session is what stops them, on Tessera
/// at once and on resource servers through the revocation feed). Unknown, invalid
/// or already-ended tokens answer 200 as well. A token issued to another client is
/// refused with `invalid_grant`.
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    operation_id = "oauth_revoke",
    tag = "oauth",
    request_body(content = TokenQuery, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke (an empty body)"),
        (status = 400, description = "`invalid_request` (also for a body that is not a form), `invalid_grant` (another client's token)", body = ErrorBody),
        (status = 401, description = "`invalid_client`; with `WWW-Authenticate: Basic` when HTTP Basic was tried", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    info: ClientInfo,
    Form(req): Form<TokenQuery>,
) -> Result<Response, OAuthError> {
    let client = state
        .authenticate_client_http(&headers, param(&req.client_id), param(&req.client_secret))
        .await?;
    let token =
        param(&req.token).ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    state.revoke_token(token, &client.id, &info).await?;
    Ok(no_store(StatusCode::OK.into_response()))
}

/// An introspection answer (RFC 7662 §2.2). Inactive tokens get `{"active": false}`
/// and nothing else.
#[derive(Serialize, ToSchema, Default)]
pub struct Introspection {
    active: bool,
    /// `Bearer` for an access token, `refresh_token` for a refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// The access token's audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Audience>)]
    aud: Option<serde_json::Value>,
    /// Session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

/// Introspect a token (RFC 7662); for confidential clients only.
///
/// A refresh token is active only while it is the session's current one (a
/// superseded token is inactive, and introspecting it revokes nothing); an access
/// token while it verifies and its session is live.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    operation_id = "oauth_introspect",
    tag = "oauth",
    request_body(content = TokenQuery, content_type = "application/x-www-form-urlencoded"),
    security(("client_basic" = []), ()),
    responses(
        (status = 200, description = "Token state", body = Introspection,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "`invalid_request` (also for a body that is not a form)", body = ErrorBody),
        (status = 401, description = "`invalid_client` (also for public clients); with `WWW-Authenticate: Basic` when HTTP Basic was tried", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn introspect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(req): Form<TokenQuery>,
) -> Result<Response, OAuthError> {
    let client = state
        .authenticate_client_http(&headers, param(&req.client_id), param(&req.client_secret))
        .await?;
    if client.secret_hash.is_none() {
        return Err(OAuthError::invalid_client(
            headers.contains_key(header::AUTHORIZATION),
            "introspection needs a confidential client",
        ));
    }
    let token =
        param(&req.token).ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let answer = match state.recognise(token).await? {
        Recognised::Refresh {
            session,
            user,
            decision: RefreshDecision::Rotate { .. },
        } => Introspection {
            active: true,
            token_type: Some("refresh_token"),
            client_id: Some(session.client_id),
            sub: Some(user.id.to_string()),
            username: Some(user.username),
            exp: Some(session.idle_expires_at.min(session.absolute_expires_at)),
            iat: Some(session.rotated_at),
            iss: Some(state.settings.issuer.clone()),
            sid: Some(session.id.to_string()),
            ..Default::default()
        },
        Recognised::Access(auth) => {
            let c = auth.claims;
            Introspection {
                active: true,
                token_type: Some("Bearer"),
                client_id: Some(c.client_id),
                sub: Some(c.sub),
                username: Some(auth.user.username),
                exp: Some(c.exp),
                iat: Some(c.iat),
                iss: Some(c.iss),
                aud: serde_json::to_value(c.aud).ok(),
                sid: Some(c.sid),
                jti: Some(c.jti),
            }
        }
        _ => Introspection::default(),
    };
    Ok(no_store(axum::Json(answer).into_response()))
}

/// Standard claims about the signed-in user (OIDC Core §5.1). A token issued with
/// scopes gets the email claims only with `email` and the profile claims only
/// with `profile`; a first-party token without scopes gets all of them.
#[derive(Serialize, ToSchema)]
pub struct UserInfo {
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// True only after the address was confirmed through a mailed link.
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_username: Option<String>,
    /// Omitted when the user has no full name.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// The signed-in user's claims (OIDC Core §5.3), by access token.
#[utoipa::path(
    get,
    path = "/oauth/userinfo",
    operation_id = "userinfo",
    tag = "oauth",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "Claims", body = UserInfo,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, description = "`invalid_token`", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn userinfo(AnyAccess(auth): AnyAccess) -> Response {
    user_claims(auth)
}

/// The same as `GET /oauth/userinfo` (OIDC Core §5.3 allows both methods).
#[utoipa::path(
    post,
    path = "/oauth/userinfo",
    operation_id = "userinfo_post",
    tag = "oauth",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "Claims", body = UserInfo,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, description = "`invalid_token`", body = ErrorBody),
        (status = 403, description = "`csrf`: an access cookie sent from another site", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn userinfo_post(AnyAccess(auth): AnyAccess) -> Response {
    user_claims(auth)
}

fn user_claims(auth: AccessAuth) -> Response {
    let c = UserClaims::of(&auth.user, auth.session.scope.as_deref());
    let body = UserInfo {
        sub: c.sub,
        email: c.email,
        email_verified: c.email_verified,
        preferred_username: c.preferred_username,
        name: c.name,
    };
    no_store(axum::Json(body).into_response())
}

/// Authorization-server metadata (RFC 8414; OpenID Connect Discovery 1.0). ID
/// tokens are always RS256; access tokens use the configured algorithm.
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    end_session_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    userinfo_endpoint: String,
    jwks_uri: String,
    grant_types_supported: Vec<&'static str>,
    response_types_supported: Vec<&'static str>,
    response_modes_supported: Vec<&'static str>,
    scopes_supported: Vec<&'static str>,
    code_challenge_methods_supported: Vec<&'static str>,
    prompt_values_supported: Vec<&'static str>,
    backchannel_logout_supported: bool,
    backchannel_logout_session_supported: bool,
    authorization_response_iss_parameter_supported: bool,
    /// Request objects are not supported (the OpenID default would be `true`).
    request_uri_parameter_supported: bool,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    id_token_signing_alg_values_supported: Vec<&'static str>,
    subject_types_supported: Vec<&'static str>,
    claims_supported: Vec<&'static str>,
}

fn metadata(state: &AppState) -> Response {
    let s = &state.settings;
    let base = s.issuer.trim_end_matches('/');
    let at = |path: &str| format!("{base}{path}");
    let mut grants = vec![GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN];
    if s.password_grant {
        grants.push(GRANT_PASSWORD);
    }
    let client_auth = vec!["client_secret_basic", "client_secret_post", "none"];
    let body = ServerMetadata {
        issuer: s.issuer.clone(),
        authorization_endpoint: at("/oauth/authorize"),
        token_endpoint: at("/oauth/token"),
        end_session_endpoint: at("/oauth/logout"),
        revocation_endpoint: at("/oauth/revoke"),
        introspection_endpoint: at("/oauth/introspect"),
        userinfo_endpoint: at("/oauth/userinfo"),
        jwks_uri: at("/.well-known/jwks.json"),
        grant_types_supported: grants,
        response_types_supported: vec!["code"],
        response_modes_supported: vec!["query"],
        scopes_supported: tessera_app::oidc::SCOPES.to_vec(),
        code_challenge_methods_supported: vec!["S256"],
        prompt_values_supported: vec!["none", "login", "consent"],
        backchannel_logout_supported: true,
        backchannel_logout_session_supported: true,
        authorization_response_iss_parameter_supported: true,
        request_uri_parameter_supported: false,
        token_endpoint_auth_methods_supported: client_auth.clone(),
        revocation_endpoint_auth_methods_supported: client_auth,
        introspection_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
        ],
        id_token_signing_alg_values_supported: vec!["RS256"],
        subject_types_supported: vec!["public"],
        claims_supported: vec![
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "amr",
            "jti",
            "sid",
            "client_id",
            "scope",
            "email",
            "email_verified",
            "preferred_username",
            "name",
        ],
    };
    let mut res = axum::Json(body).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

/// OpenID Connect Discovery metadata.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    operation_id = "openid_configuration",
    tag = "oauth",
    responses((status = 200, description = "Provider metadata", body = ServerMetadata))
)]
pub async fn openid_configuration(State(state): State<Arc<AppState>>) -> Response {
    metadata(&state)
}

/// OAuth 2 authorization-server metadata (RFC 8414); the same document.
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    operation_id = "oauth_authorization_server",
    tag = "oauth",
    responses((status = 200, description = "Server metadata", body = ServerMetadata))
)]
pub async fn oauth_authorization_server(State(state): State<Arc<AppState>>) -> Response {
    metadata(&state)
}

/// An access token's `aud` claim: one audience, or several.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

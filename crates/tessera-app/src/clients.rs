//! OAuth clients: authenticating one, what it may do, and the default
//! first-party client every zero-configuration server has.

use crate::App;
use crate::error::{AppError, AppResult, ErrorKind};
use crate::hashing::client_secret_matches;
use tessera_core::{Client, Store, StoreError};

/// Grant types Tessera implements at `/oauth/token`.
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_PASSWORD: &str = "password";

/// Longest client id or secret looked at (no hashing of huge input).
const MAX_CREDENTIAL_LEN: usize = 256;

impl App {
    /// Authenticates an OAuth client: a confidential client by its secret, a
    /// public client by its id alone. An empty secret counts as none. Every
    /// failure is the same `InvalidClient`.
    pub async fn authenticate_client(
        &self,
        id: Option<&str>,
        secret: Option<&str>,
    ) -> AppResult<Client> {
        let failed = || AppError::new(ErrorKind::InvalidClient, "client authentication failed");
        let id = id.ok_or_else(|| {
            AppError::new(
                ErrorKind::InvalidClient,
                "client authentication is required (client_id)",
            )
        })?;
        let secret = secret.filter(|s| !s.is_empty());
        if id.len() > MAX_CREDENTIAL_LEN || secret.is_some_and(|s| s.len() > MAX_CREDENTIAL_LEN) {
            return Err(failed());
        }
        let client = self.store.get_client(id).await?;
        match (client, secret) {
            (Some(c), None) if c.secret_hash.is_none() => Ok(c),
            (Some(c), Some(secret))
                if c.secret_hash
                    .as_deref()
                    .is_some_and(|h| client_secret_matches(secret, h)) =>
            {
                Ok(c)
            }
            _ => Err(failed()),
        }
    }

    /// Whether `client` may use `grant`; the password grant is for first-party
    /// clients only.
    pub fn check_grant(&self, client: &Client, grant: &str) -> AppResult<()> {
        let allowed = client.grant_types.iter().any(|g| g == grant);
        match grant {
            GRANT_PASSWORD if !client.first_party || !allowed => Err(AppError::new(
                ErrorKind::UnauthorizedClient,
                "only first-party clients allowed the password grant may use it",
            )),
            _ if !allowed => Err(AppError::new(
                ErrorKind::UnauthorizedClient,
                format!("this client may not use the {grant} grant"),
            )),
            _ => Ok(()),
        }
    }
}

/// Checks a client's registration before it is stored: known grants (the
/// password grant only for first-party clients), known scopes, redirect and
/// post-logout URIs that may be trusted (see [`crate::oidc::check_client_uri`]),
/// plain origins for CORS, and at least one redirect URI for the code flow.
pub fn check_client(c: &Client) -> Result<(), String> {
    use crate::oidc::{GRANT_AUTHORIZATION_CODE, SCOPES, check_client_uri};
    for g in &c.grant_types {
        if ![
            GRANT_AUTHORIZATION_CODE,
            GRANT_REFRESH_TOKEN,
            GRANT_PASSWORD,
        ]
        .contains(&g.as_str())
        {
            return Err(format!("unknown grant `{g}`"));
        }
    }
    if c.grant_types.iter().any(|g| g == GRANT_PASSWORD) && !c.first_party {
        return Err("the password grant is for first-party clients: add --first-party".into());
    }
    if c.grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) && c.redirect_uris.is_empty() {
        return Err("the authorization_code grant needs at least one --redirect-uri".into());
    }
    for s in &c.scopes {
        if !SCOPES.contains(&s.as_str()) {
            return Err(format!("unknown scope `{s}`; known: {}", SCOPES.join(" ")));
        }
    }
    for uri in c.redirect_uris.iter().chain(&c.post_logout_redirect_uris) {
        check_client_uri(uri)?;
    }
    if let Some(uri) = &c.backchannel_logout_uri {
        check_client_uri(uri)?;
        if !uri.starts_with("http://") && !uri.starts_with("https://") {
            return Err(format!(
                "`{uri}`: the back-channel logout URI must be http(s)"
            ));
        }
    }
    for o in &c.allowed_origins {
        let u = url::Url::parse(o).map_err(|e| format!("`{o}` is not an origin: {e}"))?;
        if u.origin().ascii_serialization() != *o || !matches!(u.scheme(), "http" | "https") {
            return Err(format!(
                "`{o}` is not an origin (scheme://host[:port], no path or slash at the end)"
            ));
        }
    }
    Ok(())
}

/// Creates the default first-party public client (`settings.client_id`, grants
/// `refresh_token password`) unless it exists, so a zero-configuration server
/// answers `/oauth/token` at once. Safe when several instances start together.
pub async fn ensure_default_client(store: &dyn Store, id: &str, now: i64) -> Result<(), String> {
    let failed = |e: StoreError| format!("cannot create the default OAuth client `{id}`: {e}");
    if store.get_client(id).await.map_err(failed)?.is_some() {
        return Ok(());
    }
    let client = Client::new(
        id,
        "Tessera first-party client",
        vec![GRANT_REFRESH_TOKEN.into(), GRANT_PASSWORD.into()],
        true,
        now,
    );
    match store.create_client(client).await {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

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

/// Creates the default first-party public client (`settings.client_id`, grants
/// `refresh_token password`) unless it exists, so a zero-configuration server
/// answers `/oauth/token` at once. Safe when several instances start together.
pub async fn ensure_default_client(store: &dyn Store, id: &str, now: i64) -> Result<(), String> {
    let failed = |e: StoreError| format!("cannot create the default OAuth client `{id}`: {e}");
    if store.get_client(id).await.map_err(failed)?.is_some() {
        return Ok(());
    }
    let client = Client {
        id: id.to_string(),
        name: "Tessera first-party client".into(),
        secret_hash: None,
        grant_types: vec![GRANT_REFRESH_TOKEN.into(), GRANT_PASSWORD.into()],
        first_party: true,
        created_at: now,
    };
    match store.create_client(client).await {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

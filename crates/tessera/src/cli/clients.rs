//! `tessera client add | show | update | list | remove`: the registry of OAuth
//! clients allowed at the authorization, token, revocation and introspection
//! endpoints.

use crate::config::Config;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;
use tessera_app::hashing::client_secret_hash;
use tessera_app::{GRANT_AUTHORIZATION_CODE, GRANT_PASSWORD, GRANT_REFRESH_TOKEN, check_client};
use tessera_core::{Client, Clock, Store, StoreError, SystemClock};

/// What a client may do in the browser flow; each list option is repeatable.
#[derive(clap::Args, Default)]
pub struct ClientOptions {
    /// Where the authorization endpoint may send the browser back (exact match;
    /// http only on loopback, where the port may vary); repeat for several.
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser afterwards; repeatable.
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// Origin of a single-page app allowed to call the token endpoint (CORS); repeatable.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Where back-channel logout tokens are posted when a session ends.
    #[arg(long = "backchannel-logout-uri", value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    /// A scope the client may ask for (openid, profile, email, offline_access);
    /// repeatable [default: all of them].
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register a client. A confidential client gets a generated secret, printed once.
    Add {
        /// Client id: 1 to 64 of A-Z a-z 0-9 . _ ~ -
        id: String,
        /// A name shown to users on the consent page and to operators.
        #[arg(long)]
        name: Option<String>,
        /// The client keeps a secret (a backend); otherwise it is public (an app).
        #[arg(long)]
        confidential: bool,
        /// Grant type the client may use; repeat for several [default: refresh_token].
        #[arg(long = "grant", value_name = "GRANT", value_parser = GRANTS)]
        grants: Vec<String>,
        /// The client is your own: it may use the password grant and skips the
        /// consent screen. Without it a client is third-party.
        #[arg(long)]
        first_party: bool,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Show one client.
    Show {
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a client. A list option given replaces that whole list (an empty
    /// value clears it); options not given keep their values.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces the grant types; repeatable.
        #[arg(long = "grant", value_name = "GRANT", value_parser = GRANTS)]
        grants: Vec<String>,
        /// Make the client first-party (true) or third-party (false).
        #[arg(long, value_name = "BOOL")]
        first_party: Option<bool>,
        /// Give a confidential client a new secret (printed once; the old one stops working).
        #[arg(long)]
        new_secret: bool,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// List the registered clients.
    List {
        /// Print JSON: an array of clients.
        #[arg(long)]
        json: bool,
    },
    /// Remove a client; its sessions can no longer be refreshed.
    Remove { id: String },
}

const GRANTS: [&str; 3] = [
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_PASSWORD,
];

/// A list option as given: `None` when absent, an empty list for one empty value.
fn list_option(values: Vec<String>) -> Option<Vec<String>> {
    if values.is_empty() {
        return None;
    }
    let mut out: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
    out.dedup();
    Some(out)
}

impl ClientOptions {
    /// Applies the options given to `c`.
    fn apply(self, c: &mut Client) {
        if let Some(v) = list_option(self.redirect_uris) {
            c.redirect_uris = v;
        }
        if let Some(v) = list_option(self.post_logout_redirect_uris) {
            c.post_logout_redirect_uris = v;
        }
        if let Some(v) = list_option(self.allowed_origins) {
            c.allowed_origins = v;
        }
        if let Some(v) = self.backchannel_logout_uri {
            c.backchannel_logout_uri = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = list_option(self.scopes) {
            c.scopes = v;
        }
    }
}

fn describe(c: &Client) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "type": kind(c),
        "first_party": c.first_party,
        "grants": c.grant_types,
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "allowed_origins": c.allowed_origins,
        "backchannel_logout_uri": c.backchannel_logout_uri,
        "scopes": c.scopes,
        "created_at": super::time(c.created_at),
    })
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
}

/// 256 random bits, base64url: what a confidential client authenticates with.
fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no system randomness".to_string())?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn kind(c: &Client) -> &'static str {
    if c.secret_hash.is_some() {
        "confidential"
    } else {
        "public"
    }
}

async fn list(store: &dyn Store, json: bool) -> Result<(), String> {
    let clients = store.list_clients().await.map_err(|e| e.to_string())?;
    if json {
        let out = clients.iter().map(describe).collect();
        return super::print_json(&Value::Array(out));
    }
    if clients.is_empty() {
        eprintln!("no clients; `tessera serve` creates the default client");
        return Ok(());
    }
    outln!(
        "{:<24} {:<13} {:<12} {:<24} {:<21} NAME",
        "ID",
        "TYPE",
        "FIRST-PARTY",
        "GRANTS",
        "CREATED"
    );
    for c in &clients {
        outln!(
            "{:<24} {:<13} {:<12} {:<24} {:<21} {}",
            c.id,
            kind(c),
            if c.first_party { "yes" } else { "no" },
            c.grant_types.join(" "),
            super::time(c.created_at),
            c.name
        );
    }
    Ok(())
}

pub async fn run(cfg: &Config, cmd: ClientCommand) -> ExitCode {
    let v = match cfg.validate() {
        Ok(v) => v,
        Err(e) => return super::fail(e),
    };
    let default_id = v.server.client_id.clone();
    match cmd {
        ClientCommand::List { json } => {
            super::with_reader(cfg, |store| async move { list(store.as_ref(), json).await }).await
        }
        ClientCommand::Remove { id } => {
            super::with_existing_store(cfg, |store| async move {
                if !store.delete_client(&id).await.map_err(|e| e.to_string())? {
                    return Err(format!("no client `{id}`"));
                }
                outln!("removed client `{id}`");
                if id == default_id {
                    outln!("(the default client `{id}` is created again when the server starts)");
                }
                Ok(())
            })
            .await
        }
        ClientCommand::Show { id, json } => {
            super::with_reader(cfg, |store| async move {
                let c = store
                    .get_client(&id)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("no client `{id}`"))?;
                if json {
                    return super::print_json(&describe(&c));
                }
                let list = |v: &[String]| {
                    if v.is_empty() {
                        "-".to_string()
                    } else {
                        v.join(" ")
                    }
                };
                outln!("id:                        {}", c.id);
                outln!("name:                      {}", c.name);
                outln!("type:                      {}", kind(&c));
                outln!(
                    "first party:               {}",
                    if c.first_party { "yes" } else { "no" }
                );
                outln!("grants:                    {}", list(&c.grant_types));
                outln!("redirect URIs:             {}", list(&c.redirect_uris));
                outln!(
                    "post-logout redirect URIs: {}",
                    list(&c.post_logout_redirect_uris)
                );
                outln!("allowed origins:           {}", list(&c.allowed_origins));
                outln!(
                    "back-channel logout URI:   {}",
                    c.backchannel_logout_uri.as_deref().unwrap_or("-")
                );
                outln!(
                    "scopes:                    {}",
                    if c.scopes.is_empty() {
                        "all".to_string()
                    } else {
                        c.scopes.join(" ")
                    }
                );
                outln!("created:                   {}", super::time(c.created_at));
                Ok(())
            })
            .await
        }
        ClientCommand::Add {
            id,
            name,
            confidential,
            mut grants,
            first_party,
            options,
        } => {
            if !valid_id(&id) {
                return super::usage(format!(
                    "invalid client id `{}`: a client id is 1 to 64 of A-Z a-z 0-9 . _ ~ -",
                    id.escape_debug()
                ));
            }
            if grants.is_empty() {
                grants.push(GRANT_REFRESH_TOKEN.into());
            }
            grants.sort();
            grants.dedup();
            let mut client = Client::new(
                &id,
                name.as_deref().unwrap_or(&id),
                grants.clone(),
                first_party,
                SystemClock.now(),
            );
            options.apply(&mut client);
            if let Err(e) = check_client(&client) {
                return super::usage(e);
            }
            super::with_store(cfg, |store| async move {
                let secret = confidential.then(new_secret).transpose()?;
                client.secret_hash = secret.as_deref().map(client_secret_hash);
                store.create_client(client).await.map_err(|e| match e {
                    StoreError::Conflict(_) => format!("a client `{id}` already exists"),
                    e => e.to_string(),
                })?;
                let kind = if confidential {
                    "confidential"
                } else {
                    "public"
                };
                outln!("added {kind} client `{id}` (grants: {})", grants.join(" "));
                if let Some(s) = secret {
                    outln!("client_secret: {s}");
                    outln!("The secret is shown only this once; Tessera keeps only its hash.");
                }
                Ok(())
            })
            .await
        }
        ClientCommand::Update {
            id,
            name,
            grants,
            first_party,
            new_secret: rotate_secret,
            options,
        } => {
            super::with_existing_store(cfg, |store| async move {
                let mut c = store
                    .get_client(&id)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("no client `{id}`"))?;
                if let Some(n) = name {
                    c.name = n;
                }
                if let Some(mut g) = list_option(grants) {
                    g.sort();
                    g.dedup();
                    c.grant_types = g;
                }
                if let Some(f) = first_party {
                    c.first_party = f;
                }
                options.apply(&mut c);
                check_client(&c)?;
                let secret = if rotate_secret {
                    if c.secret_hash.is_none() {
                        return Err(format!("`{id}` is a public client: it has no secret"));
                    }
                    let s = new_secret()?;
                    c.secret_hash = Some(client_secret_hash(&s));
                    Some(s)
                } else {
                    None
                };
                if !store.update_client(c).await.map_err(|e| e.to_string())? {
                    return Err(format!("no client `{id}`"));
                }
                outln!("updated client `{id}`");
                if let Some(s) = secret {
                    outln!("client_secret: {s}");
                    outln!("The secret is shown only this once; Tessera keeps only its hash.");
                }
                Ok(())
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_ids() {
        assert!(super::valid_id("my-app_1.2~x"));
        for bad in ["", "a b", "a:b", "é", &"x".repeat(65)] {
            assert!(!super::valid_id(bad), "{bad}");
        }
    }
}

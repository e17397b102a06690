//! `tessera client add | list | remove`: the registry of OAuth clients allowed at
//! `/oauth/token`, `/oauth/revoke` and `/oauth/introspect`.

use crate::config::Config;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;
use tessera_app::hashing::client_secret_hash;
use tessera_app::{GRANT_PASSWORD, GRANT_REFRESH_TOKEN};
use tessera_core::{Client, Clock, Store, StoreError, SystemClock};

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register a client. A confidential client gets a generated secret, printed once.
    Add {
        /// Client id: 1 to 64 of A-Z a-z 0-9 . _ ~ -
        id: String,
        /// A name for operators.
        #[arg(long)]
        name: Option<String>,
        /// The client keeps a secret (a backend); otherwise it is public (an app).
        #[arg(long)]
        confidential: bool,
        /// Grant type the client may use; repeat for several [default: refresh_token].
        #[arg(long = "grant", value_name = "GRANT", value_parser = [GRANT_REFRESH_TOKEN, GRANT_PASSWORD])]
        grants: Vec<String>,
        /// The client is your own (needed for the password grant).
        #[arg(long)]
        first_party: bool,
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
        let out = clients
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "name": c.name,
                    "type": kind(c),
                    "first_party": c.first_party,
                    "grants": c.grant_types,
                    "created_at": super::time(c.created_at),
                })
            })
            .collect();
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
        ClientCommand::Add {
            id,
            name,
            confidential,
            mut grants,
            first_party,
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
            if grants.iter().any(|g| g == GRANT_PASSWORD) && !first_party {
                return super::usage(
                    "the password grant is for first-party clients: add --first-party",
                );
            }
            super::with_store(cfg, |store| async move {
                let secret = confidential.then(new_secret).transpose()?;
                let secret_hash = secret.as_deref().map(client_secret_hash);
                let client = Client {
                    id: id.clone(),
                    name: name.unwrap_or_else(|| id.clone()),
                    secret_hash,
                    grant_types: grants.clone(),
                    first_party,
                    created_at: SystemClock.now(),
                };
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

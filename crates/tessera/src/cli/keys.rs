//! `tessera keys list | rotate`: the signing keys every instance shares.

use crate::config::Config;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;
use tessera_app::{Caller, KeySource};
use tessera_core::model::StoredKey;
use tessera_core::{Clock, Store, SystemClock};
use tessera_jose::{Algorithm, KeySet, LoadedKey};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List signing keys and what each does now.
    List {
        /// Print JSON: an array of keys.
        #[arg(long)]
        json: bool,
    },
    /// Publish new signing keys now (the access tokens' and the RS256 key of ID
    /// tokens); they sign after the JWKS cache lifetime and the current keys stay
    /// published until their last token has expired.
    Rotate,
}

fn when(t: i64) -> String {
    crate::cli::time(t)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A stored key that still verifies: not retired longer ago than the last token
/// it can have signed.
fn usable(k: &StoredKey, src: &KeySource, now: i64) -> bool {
    k.retired_at.is_none_or(|r| r + src.retire_window > now)
}

fn signs_now(alg: Algorithm, k: &LoadedKey, now: i64) -> bool {
    k.alg == alg && k.activates_at <= now && k.retired_at.is_none_or(|r| r > now)
}

/// The keys as stored, for commands that only read: unlike the server's loader it
/// creates no key when none signs and deletes none that has expired. Verifying
/// needs no signing key, so when the configured algorithm has none signing (the
/// server has not run since it changed) another algorithm's key stands in.
pub(crate) async fn read_key_set(
    store: &dyn Store,
    src: &KeySource,
    now: i64,
) -> Result<KeySet, String> {
    let mut keys = Vec::new();
    for k in store.list_keys().await.map_err(err)? {
        if usable(&k, src, now) {
            keys.push(
                LoadedKey::open(&k, src.master.as_ref())
                    .map_err(|e| format!("key {}: {e}", k.kid))?,
            );
        }
    }
    if let Some(secret) = &src.hs256_secret {
        keys.push(tessera_jose::hs256_key(secret));
        return KeySet::new(keys, Algorithm::HS256, now).map_err(err);
    }
    let alg = std::iter::once(src.alg)
        .chain(Algorithm::ALL)
        .find(|a| keys.iter().any(|k| signs_now(*a, k, now)))
        .ok_or("the database holds no signing key yet; `tessera serve` creates the first")?;
    KeySet::new(keys, alg, now).map_err(err)
}

/// What a stored key does at `now`, given the keys that sign (access tokens,
/// then ID and logout tokens).
fn state(k: &StoredKey, signing: &[Option<String>; 2], now: i64) -> &'static str {
    if signing[0].as_deref() == Some(k.kid.as_str()) {
        "signing"
    } else if signing[1].as_deref() == Some(k.kid.as_str()) {
        "signing-id"
    } else if k.activates_at > now {
        "next"
    } else if k.retired_at.is_some_and(|r| r <= now) {
        "retired"
    } else {
        "verifies"
    }
}

pub async fn run(cfg: &Config, cmd: KeysCommand) -> ExitCode {
    let v = match cfg.validate() {
        Ok(v) => v,
        Err(e) => return super::fail(e),
    };
    let now = SystemClock.now();
    let json = match cmd {
        KeysCommand::Rotate => {
            let caller = Caller {
                user_agent: Some("tessera keys rotate".into()),
                ..Caller::operator()
            };
            return super::with_existing_app(cfg, |app| async move {
                for key in app.rotate_signing_key(&caller).await.map_err(err)? {
                    outln!(
                        "published key {} ({}); it signs from {}; the previous key stays published until its last token expires",
                        key.kid,
                        key.alg,
                        when(key.activates_at)
                    );
                }
                Ok(())
            })
            .await;
        }
        KeysCommand::List { json } => json,
    };
    super::with_reader(cfg, |store| async move {
        let src = crate::key_source(cfg, &v, store.as_ref(), false).await?;
        let stored: Vec<StoredKey> = store
            .list_keys()
            .await
            .map_err(err)?
            .into_iter()
            .filter(|k| usable(k, &src, now))
            .collect();
        let signers = match read_key_set(store.as_ref(), &src, now).await {
            Ok(set) => [
                Some(set.signing_key().kid.clone()),
                set.id_signing_key().map(|k| k.kid.clone()),
            ],
            Err(_) if stored.is_empty() && src.hs256_secret.is_none() => [None, None],
            Err(e) => return Err(e),
        };
        let signing = &signers[0];
        let at_rest = |k: &StoredKey| {
            if tessera_jose::seal::is_sealed(&k.private_der) {
                "sealed"
            } else {
                "plain"
            }
        };
        if json {
            let mut out: Vec<Value> = stored
                .iter()
                .map(|k| {
                    json!({
                        "kid": k.kid,
                        "alg": k.alg,
                        "state": state(k, &signers, now),
                        "at_rest": at_rest(k),
                        "created_at": when(k.created_at),
                        "signs_from": when(k.activates_at),
                        "retired_at": k.retired_at.map(when),
                    })
                })
                .collect();
            if let (Some(kid), Some(_)) = (signing, &src.hs256_secret) {
                out.push(json!({
                    "kid": kid,
                    "alg": "HS256",
                    "state": "signing",
                    "at_rest": "ACCESS_TOKEN_SECRET (never stored or published)",
                    "created_at": null,
                    "signs_from": null,
                    "retired_at": null,
                }));
            }
            return super::print_json(&Value::Array(out));
        }
        if stored.is_empty() && src.hs256_secret.is_none() {
            eprintln!("no signing keys yet; `tessera serve` creates the first");
            return Ok(());
        }
        outln!(
            "{:<45} {:<6} {:<10} {:<7} {:<21} {:<21} RETIRED",
            "KID",
            "ALG",
            "STATE",
            "AT REST",
            "CREATED",
            "SIGNS FROM"
        );
        for k in &stored {
            let retired = k.retired_at.map(when).unwrap_or_else(|| "-".into());
            outln!(
                "{:<45} {:<6} {:<10} {:<7} {:<21} {:<21} {retired}",
                k.kid,
                k.alg,
                state(k, &signers, now),
                at_rest(k),
                when(k.created_at),
                when(k.activates_at)
            );
        }
        outln!(
            "private keys are sealed at rest with the key-encryption key from {}",
            src.master_origin
        );
        if let (Some(kid), Some(_)) = (signing, &src.hs256_secret) {
            outln!("{kid:<45} HS256  signing    (ACCESS_TOKEN_SECRET; never stored or published)");
        }
        Ok(())
    })
    .await
}

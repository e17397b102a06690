//! `tessera keys list | rotate`: the signing keys every instance shares.

use crate::config::Config;
use clap::Subcommand;
use std::process::ExitCode;
use tessera_app::Caller;
use tessera_core::{Clock, SystemClock};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List signing keys and what each does now.
    List,
    /// Publish a new signing key now; it signs after the JWKS cache lifetime and the
    /// current key stays published until its last token has expired.
    Rotate,
}

fn when(t: i64) -> String {
    crate::cli::time(t)
}

pub async fn run(cfg: &Config, cmd: KeysCommand) -> ExitCode {
    let v = match cfg.validate() {
        Ok(v) => v,
        Err(e) => return super::fail(e),
    };
    let now = SystemClock.now();
    if matches!(cmd, KeysCommand::Rotate) {
        let caller = Caller {
            user_agent: Some("tessera keys rotate".into()),
            ..Caller::operator()
        };
        return super::with_app(cfg, |app| async move {
            let key = app.rotate_signing_key(&caller).await.map_err(|e| e.to_string())?;
                println!(
                    "published key {} ({}); it signs from {}; the previous key stays published until its last token expires",
                    key.kid,
                    key.alg,
                    when(key.activates_at)
                );
            Ok(())
        })
        .await;
    }
    super::with_store(cfg, |store| async move {
        let src = crate::key_source(cfg, &v, store.as_ref()).await?;
        let set = tessera_app::load_key_set(store.as_ref(), &src, now).await?;
        let signing = set.signing_key().kid.clone();
        println!(
            "{:<45} {:<6} {:<10} {:<7} {:<21} {:<21} RETIRED",
            "KID", "ALG", "STATE", "AT REST", "CREATED", "SIGNS FROM"
        );
        for k in store.list_keys().await.map_err(|e| e.to_string())? {
            let state = if k.kid == signing {
                "signing"
            } else if k.activates_at > now {
                "next"
            } else if k.retired_at.is_some_and(|r| r <= now) {
                "retired"
            } else {
                "verifies"
            };
            let retired = k.retired_at.map(when).unwrap_or_else(|| "-".into());
            println!(
                "{:<45} {:<6} {:<10} {:<7} {:<21} {:<21} {retired}",
                k.kid,
                k.alg,
                state,
                if tessera_jose::seal::is_sealed(&k.private_der) {
                    "sealed"
                } else {
                    "plain"
                },
                when(k.created_at),
                when(k.activates_at)
            );
        }
        println!(
            "private keys are sealed at rest with the key-encryption key from {}",
            src.master_origin
        );
        if src.hs256_secret.is_some() {
            println!(
                "{signing:<45} HS256  signing    (ACCESS_TOKEN_SECRET; never stored or published)"
            );
        }
        Ok(())
    })
    .await
}

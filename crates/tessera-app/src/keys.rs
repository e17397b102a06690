//! Signing keys over time: loading them at start-up and on every reload,
//! creating the first one, rotating, and dropping keys whose last token expired.
//!
//! A rotation publishes the next key at once and lets it sign only after the JWKS
//! cache lifetime, so every verifier already holds it; the previous key is retired
//! at that moment and stays published until the last token it signed has expired.

use tessera_core::Store;
use tessera_core::model::StoredKey;
use tessera_jose::seal::MasterKey;
use tessera_jose::{Algorithm, KeySet, LoadedKey, generate_key, hs256_key};

/// Where keys come from and how long retired ones stay published.
#[derive(Debug)]
pub struct KeySource {
    pub alg: Algorithm,
    /// `ACCESS_TOKEN_SECRET`: when set, it signs (HS256) and stored keys only verify.
    pub hs256_secret: Option<Vec<u8>>,
    pub master: Option<MasterKey>,
    /// Seconds a retired key stays published: the access-token lifetime plus leeway.
    pub retire_window: i64,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A key whose retirement is older than the last token it can have signed.
fn expired(k: &StoredKey, src: &KeySource, now: i64) -> bool {
    k.retired_at.is_some_and(|r| r + src.retire_window <= now)
}

async fn load_usable(
    store: &dyn Store,
    src: &KeySource,
    now: i64,
) -> Result<Vec<LoadedKey>, String> {
    let mut keys = Vec::new();
    for k in store.list_keys().await.map_err(err)? {
        if expired(&k, src, now) {
            // Best effort: another instance may have deleted it already.
            let _ = store.delete_key(&k.kid).await;
            continue;
        }
        keys.push(
            LoadedKey::open(&k, src.master.as_ref()).map_err(|e| format!("key {}: {e}", k.kid))?,
        );
    }
    Ok(keys)
}

/// Stores a newly generated key, sealed when a master key is configured.
async fn insert_new(
    store: &dyn Store,
    src: &KeySource,
    mut key: StoredKey,
) -> Result<StoredKey, String> {
    if let Some(master) = &src.master {
        key.private_der = master.seal(&key.kid, &key.private_der).map_err(err)?;
    }
    store.insert_key(key.clone()).await.map_err(err)?;
    Ok(key)
}

/// Loads every usable key; when `src.alg` has no key signing now, creates one that
/// signs at once (first start, or a change of algorithm).
pub async fn load_key_set(store: &dyn Store, src: &KeySource, now: i64) -> Result<KeySet, String> {
    let mut keys = load_usable(store, src, now).await?;
    if let Some(secret) = &src.hs256_secret {
        keys.push(hs256_key(secret));
        return KeySet::new(keys, Algorithm::HS256, now).map_err(err);
    }
    let signing_now = |k: &LoadedKey| {
        k.alg == src.alg && k.activates_at <= now && k.retired_at.is_none_or(|r| r > now)
    };
    if !keys.iter().any(signing_now) {
        insert_new(store, src, generate_key(src.alg, now, now).map_err(err)?).await?;
        keys = load_usable(store, src, now).await?;
    }
    KeySet::new(keys, src.alg, now).map_err(err)
}

/// Publishes a new key of `src.alg` now that signs from `now + publish_delay`, and
/// retires every current key at that moment. Returns the new key (sealed form).
pub async fn rotate_keys(
    store: &dyn Store,
    src: &KeySource,
    now: i64,
    publish_delay: i64,
) -> Result<StoredKey, String> {
    if src.hs256_secret.is_some() {
        return Err("HS256 signs with ACCESS_TOKEN_SECRET; rotate that secret instead".into());
    }
    let activates_at = now + publish_delay;
    let current = store.list_keys().await.map_err(err)?;
    let new = insert_new(
        store,
        src,
        generate_key(src.alg, now, activates_at).map_err(err)?,
    )
    .await?;
    for k in current.iter().filter(|k| k.retired_at.is_none()) {
        store.retire_key(&k.kid, activates_at).await.map_err(err)?;
    }
    Ok(new)
}

impl crate::App {
    /// Rotates the signing key (see [`rotate_keys`]): the new key is published at
    /// once and signs after the JWKS cache lifetime. Recorded in the audit trail.
    pub async fn rotate_signing_key(&self, caller: &crate::Caller) -> crate::AppResult<StoredKey> {
        let key = rotate_keys(
            self.store.as_ref(),
            &self.key_source,
            self.now(),
            self.settings.jwks_max_age,
        )
        .await
        .map_err(|e| crate::AppError::new(crate::ErrorKind::Internal, e))?;
        let detail = format!(
            "kid={} alg={} signs_from={}",
            key.kid, key.alg, key.activates_at
        );
        self.audit("key_rotated", None, None, caller, Some(detail))
            .await;
        Ok(key)
    }
}

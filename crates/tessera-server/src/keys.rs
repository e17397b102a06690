//! Loading the signing keys at start-up, creating the first one when none exists.

use tessera_core::Store;
use tessera_jose::{Algorithm, KeySet, LoadedKey, generate_key, hs256_key};

/// Loads every stored key; when `alg` has no active key, generates one and stores
/// it first. With an HS256 `secret` that secret signs and stored keys only verify.
pub async fn load_key_set(
    store: &dyn Store,
    alg: Algorithm,
    hs256_secret: Option<&[u8]>,
    now: i64,
) -> Result<KeySet, String> {
    let load = |stored: Vec<tessera_core::model::StoredKey>| -> Result<Vec<LoadedKey>, String> {
        stored
            .iter()
            .map(|k| LoadedKey::from_stored(k).map_err(|e| format!("key {}: {e}", k.kid)))
            .collect()
    };
    let mut keys = load(store.list_keys().await.map_err(|e| e.to_string())?)?;
    if let Some(secret) = hs256_secret {
        keys.push(hs256_key(secret));
        return KeySet::new(keys, Algorithm::HS256, now).map_err(|e| e.to_string());
    }
    if !keys
        .iter()
        .any(|k| k.alg == alg && k.retired_at.is_none() && k.activates_at <= now)
    {
        let key = generate_key(alg, now, now).map_err(|e| e.to_string())?;
        store.insert_key(key).await.map_err(|e| e.to_string())?;
        keys = load(store.list_keys().await.map_err(|e| e.to_string())?)?;
    }
    KeySet::new(keys, alg, now).map_err(|e| e.to_string())
}

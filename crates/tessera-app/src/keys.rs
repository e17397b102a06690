//! Signing keys over time: loading them at start-up and on every reload,
//! creating the first one, sealing them at rest, rotating, re-reading them when a
//! token names a key this instance has not seen yet, and dropping keys whose last
//! token expired.
//!
//! A rotation publishes the next key at once and lets it sign only after the JWKS
//! cache lifetime, so every verifier already holds it; the previous key is retired
//! at that moment and stays published until the last token it signed has expired.
//!
//! Every private key is stored sealed with the key-encryption key ("master key"):
//! `TESSERA_MASTER_KEY`, or one generated into the data folder. A copy of the
//! database alone therefore cannot sign anything.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tessera_core::Store;
use tessera_core::model::StoredKey;
use tessera_jose::seal::{self, MasterKey, SealError};
use tessera_jose::{Algorithm, KeySet, LoadedKey, MAX_TOKEN_BYTES, generate_key, hs256_key};

/// Where the key-encryption key comes from (said in messages, never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterOrigin {
    /// `TESSERA_MASTER_KEY`.
    Configured,
    /// Generated into this file of the data folder.
    File(PathBuf),
}

impl fmt::Display for MasterOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterOrigin::Configured => f.write_str("TESSERA_MASTER_KEY"),
            MasterOrigin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Where keys come from, how they are sealed, and how long retired ones stay published.
#[derive(Debug)]
pub struct KeySource {
    pub alg: Algorithm,
    /// `ACCESS_TOKEN_SECRET`: when set, it signs (HS256) and stored keys only verify.
    pub hs256_secret: Option<Vec<u8>>,
    /// Seals every stored private key and opens them. `None` only where nothing
    /// is ever written (tests of the verification rules).
    pub master: Option<MasterKey>,
    pub master_origin: MasterOrigin,
    /// Opens keys sealed before `master` was configured (the data folder's
    /// generated key); [`seal_stored_keys`] re-seals them with `master`.
    pub previous_master: Option<MasterKey>,
    /// Seconds a retired key stays published: the access-token lifetime plus leeway.
    pub retire_window: i64,
}

fn err(e: impl fmt::Display) -> String {
    e.to_string()
}

/// A key whose retirement is older than the last token it can have signed.
fn expired(k: &StoredKey, src: &KeySource, now: i64) -> bool {
    k.retired_at.is_some_and(|r| r + src.retire_window <= now)
}

/// What an operator reads when a stored key cannot be opened.
fn unseal_advice(kid: &str, src: &KeySource, e: SealError) -> String {
    match (&e, &src.master_origin) {
        (SealError::WrongMasterKey(_), MasterOrigin::File(path)) => format!(
            "signing key {kid} is sealed with another key-encryption key than the one in {}; \
             every instance on one database needs the same one: set TESSERA_MASTER_KEY on \
             every instance (for instance to the contents of master_key.secret in the data \
             folder of the instance that created the key)",
            path.display()
        ),
        _ => e.to_string(),
    }
}

/// The private key of `k` in plain PKCS#8, and whether it was opened with the
/// previous master key (so it still needs re-sealing).
fn unseal(k: &StoredKey, src: &KeySource) -> Result<(Vec<u8>, bool), String> {
    match seal::open(&k.kid, &k.private_der, src.master.as_ref()) {
        Ok(plain) => Ok((plain, false)),
        Err(e) => match src
            .previous_master
            .as_ref()
            .map(|prev| seal::open(&k.kid, &k.private_der, Some(prev)))
        {
            Some(Ok(plain)) => Ok((plain, true)),
            _ => Err(unseal_advice(&k.kid, src, e)),
        },
    }
}

fn open(k: &StoredKey, src: &KeySource) -> Result<LoadedKey, String> {
    let (plain, _) = unseal(k, src)?;
    let plain = StoredKey {
        private_der: plain,
        ..k.clone()
    };
    LoadedKey::from_stored(&plain).map_err(|e| format!("key {}: {e}", k.kid))
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
        keys.push(open(&k, src)?);
    }
    Ok(keys)
}

/// A newly generated key in its stored form: sealed with the master key.
fn sealed_new(src: &KeySource, mut key: StoredKey) -> Result<StoredKey, String> {
    if let Some(master) = &src.master {
        key.private_der = master.seal(&key.kid, &key.private_der).map_err(err)?;
    }
    Ok(key)
}

fn signs_at(k: &LoadedKey, alg: Algorithm, now: i64) -> bool {
    k.alg == alg && k.activates_at <= now && k.retired_at.is_none_or(|r| r > now)
}

/// How far before its creation a first key counts as signing (seconds).
const FIRST_KEY_BACKDATE: i64 = 60;

/// The algorithms that need a stored key signing now: the access tokens' (unless
/// `ACCESS_TOKEN_SECRET` signs them) and RS256, which OpenID Connect requires for
/// ID tokens and which signs logout tokens.
fn stored_signers(src: &KeySource) -> Vec<Algorithm> {
    let mut algs = vec![Algorithm::RS256];
    if src.hs256_secret.is_none() && src.alg != Algorithm::RS256 {
        algs.insert(0, src.alg);
    }
    algs
}

/// Loads every usable key; when an algorithm of [`stored_signers`] has no key
/// signing now, creates one that signs at once (first start, or a change of
/// algorithm).
///
/// Instances starting together on one empty database must not each create their
/// own first key (each would then refuse the others' tokens and publish another
/// JWKS). So the key is stored with [`Store::insert_first_key`], which inserts it
/// only if, at that moment, still no key of the algorithm signs — one atomic step
/// under PostgreSQL's advisory lock or SQLite's single writer — and every instance
/// then reads the table again and signs with whichever key was stored first.
pub async fn load_key_set(store: &dyn Store, src: &KeySource, now: i64) -> Result<KeySet, String> {
    let mut keys = load_usable(store, src, now).await?;
    // One algorithm at a time, reading the keys again after each: an instance
    // that cannot open the first key another instance stored (another master
    // key) stops here, before it stores a key of the next algorithm.
    for alg in stored_signers(src) {
        if !keys.iter().any(|k| signs_at(k, alg, now)) {
            // Signing from a minute ago: instances whose clocks read a second
            // apart (starting together across a second boundary) all see it
            // signing, so none stores a twin and none finds no signer.
            let since = now - FIRST_KEY_BACKDATE;
            let key = sealed_new(src, generate_key(alg, now, since).map_err(err)?)?;
            store.insert_first_key(key, now).await.map_err(err)?;
            keys = load_usable(store, src, now).await?;
        }
    }
    let never_retired: Vec<(Algorithm, String)> = keys
        .iter()
        .filter(|k| stored_signers(src).contains(&k.alg) && signs_at(k, k.alg, now))
        .filter(|k| k.retired_at.is_none())
        .map(|k| (k.alg, k.kid.clone()))
        .collect();
    let alg = match &src.hs256_secret {
        Some(secret) => {
            keys.push(hs256_key(secret));
            Algorithm::HS256
        }
        None => src.alg,
    };
    let set = KeySet::new(keys, alg, now).map_err(err)?;
    if retire_extra_signers(store, &set, &never_retired, now).await? {
        let mut keys = load_usable(store, src, now).await?;
        if let Some(secret) = &src.hs256_secret {
            keys.push(hs256_key(secret));
        }
        return KeySet::new(keys, alg, now).map_err(err);
    }
    Ok(set)
}

/// Retires, as of `now`, every key in `never_retired` (keys that sign now and
/// were never retired) but the one of its algorithm that signs: a database from
/// before first keys were created once holds such twins, which would otherwise
/// stay published for good. Every instance picks the same signing keys, so they
/// all retire the same others. Returns whether any was retired.
async fn retire_extra_signers(
    store: &dyn Store,
    set: &KeySet,
    never_retired: &[(Algorithm, String)],
    now: i64,
) -> Result<bool, String> {
    let signing = [Some(set.signing_key()), set.id_signing_key()];
    let signs = |alg: Algorithm, kid: &str| {
        signing
            .iter()
            .flatten()
            .any(|k| k.alg == alg && k.kid == kid)
    };
    let mut retired = false;
    for (_, kid) in never_retired.iter().filter(|(a, k)| !signs(*a, k)) {
        retired |= store.retire_key(kid, now).await.map_err(err)?;
    }
    if retired {
        tracing::info!("retired signing keys that duplicated the current one");
    }
    Ok(retired)
}

/// Seals, in place, every stored key that is not sealed with the master key: plain
/// keys from before sealing was the default, and keys sealed with the data
/// folder's key before `TESSERA_MASTER_KEY` was set. Each write is a
/// compare-and-set on the old value, so instances doing this at once are harmless
/// and a second run changes nothing. Returns how many keys this call re-sealed.
pub async fn seal_stored_keys(store: &dyn Store, src: &KeySource) -> Result<usize, String> {
    let Some(master) = &src.master else {
        return Ok(0);
    };
    let mut sealed = 0;
    for k in store.list_keys().await.map_err(err)? {
        let (plain, with_previous) = unseal(&k, src)?;
        if seal::is_sealed(&k.private_der) && !with_previous {
            continue;
        }
        let blob = master.seal(&k.kid, &plain).map_err(err)?;
        if store
            .replace_key_private(&k.kid, &k.private_der, &blob)
            .await
            .map_err(err)?
        {
            sealed += 1;
        }
    }
    Ok(sealed)
}

/// Publishes a new key of each algorithm of [`stored_signers`] now, each signing
/// from `now + publish_delay`, and retires every current key at that moment.
/// Returns the new keys (sealed form), the access tokens' first.
pub async fn rotate_keys(
    store: &dyn Store,
    src: &KeySource,
    now: i64,
    publish_delay: i64,
) -> Result<Vec<StoredKey>, String> {
    let activates_at = now + publish_delay;
    let current = store.list_keys().await.map_err(err)?;
    let mut new = Vec::new();
    for alg in stored_signers(src) {
        let key = sealed_new(src, generate_key(alg, now, activates_at).map_err(err)?)?;
        store.insert_key(key.clone()).await.map_err(err)?;
        new.push(key);
    }
    for k in current.iter().filter(|k| k.retired_at.is_none()) {
        store.retire_key(&k.kid, activates_at).await.map_err(err)?;
    }
    Ok(new)
}

/// How often at most a token naming an unknown `kid` makes this instance read
/// the keys again.
pub const UNKNOWN_KID_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Re-reading the keys for tokens that name a `kid` this instance does not hold
/// (a key another instance or the CLI just stored): one read at a time, which
/// concurrent requests wait for and share, and at most one per
/// [`UNKNOWN_KID_RELOAD_INTERVAL`], so tokens with made-up kids cannot turn into a
/// stream of database reads.
#[derive(Debug, Default)]
pub(crate) struct UnknownKidReload {
    last: tokio::sync::Mutex<Option<Instant>>,
    count: AtomicU64,
}

impl crate::App {
    /// The keys to verify `token` with: the current set, read again first when
    /// the token names a key it lacks (see [`UnknownKidReload`]).
    pub(crate) async fn keys_for(&self, token: &str) -> std::sync::Arc<KeySet> {
        let keys = self.key_set();
        if token.len() > MAX_TOKEN_BYTES {
            return keys;
        }
        let Some(kid) = tessera_jose::token_kid(token) else {
            return keys;
        };
        if keys.get(&kid).is_some() {
            return keys;
        }
        let mut last = self.unknown_kid.last.lock().await;
        let keys = self.key_set();
        if keys.get(&kid).is_some()
            || last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_RELOAD_INTERVAL)
        {
            // Found by the read another request just made, or read too recently.
            return keys;
        }
        *last = Some(Instant::now());
        self.unknown_kid.count.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.reload_keys().await {
            tracing::warn!(error = %e, "could not reload signing keys");
        }
        self.key_set()
    }

    /// How many times a token naming an unknown key made this instance read the
    /// keys again.
    pub fn unknown_kid_reloads(&self) -> u64 {
        self.unknown_kid.count.load(Ordering::Relaxed)
    }

    /// Rotates the signing keys (see [`rotate_keys`]): the new keys are published
    /// at once and sign after the JWKS cache lifetime. Recorded in the audit trail.
    pub async fn rotate_signing_key(
        &self,
        caller: &crate::Caller,
    ) -> crate::AppResult<Vec<StoredKey>> {
        let keys = rotate_keys(
            self.store.as_ref(),
            &self.key_source,
            self.now(),
            self.settings.jwks_max_age,
        )
        .await
        .map_err(|e| crate::AppError::new(crate::ErrorKind::Internal, e))?;
        for key in &keys {
            let detail = format!(
                "kid={} alg={} signs_from={}",
                key.kid, key.alg, key.activates_at
            );
            self.audit("key_rotated", None, None, caller, Some(detail))
                .await;
        }
        Ok(keys)
    }
}

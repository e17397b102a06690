//! Sealing private keys at rest with `TESSERA_MASTER_KEY` (AES-256-GCM, the key id
//! as associated data so a sealed blob cannot be moved to another key's row).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;

const MAGIC: &[u8] = b"tessera-sealed-v1:";

/// The key-encryption key derived from the operator's master key.
pub struct MasterKey(LessSafeKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("TESSERA_MASTER_KEY must be at least 32 bytes")]
    WeakMasterKey,
    #[error(
        "signing key {0} is sealed; set TESSERA_MASTER_KEY to the master key it was sealed with"
    )]
    MasterKeyMissing(String),
    #[error("signing key {0} cannot be unsealed with this TESSERA_MASTER_KEY")]
    WrongMasterKey(String),
    #[error("sealing failed")]
    Crypto,
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl MasterKey {
    pub fn new(secret: &[u8]) -> Result<Self, SealError> {
        if secret.len() < 32 {
            return Err(SealError::WeakMasterKey);
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"tessera/master-key/v1").extract(secret);
        let mut key = [0u8; 32];
        prk.expand(&[b"signing-key-seal"], Len32)
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| SealError::Crypto)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| SealError::Crypto)?;
        Ok(Self(LessSafeKey::new(unbound)))
    }

    pub fn seal(&self, kid: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Crypto)?;
        let mut data = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError::Crypto)?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + data.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(out)
    }
}

pub fn is_sealed(blob: &[u8]) -> bool {
    blob.starts_with(MAGIC)
}

/// The plain PKCS#8 bytes of a stored key, unsealing when needed.
pub fn open(kid: &str, blob: &[u8], master: Option<&MasterKey>) -> Result<Vec<u8>, SealError> {
    let Some(rest) = blob.strip_prefix(MAGIC) else {
        return Ok(blob.to_vec());
    };
    let master = master.ok_or_else(|| SealError::MasterKeyMissing(kid.to_string()))?;
    if rest.len() < NONCE_LEN {
        return Err(SealError::WrongMasterKey(kid.to_string()));
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| SealError::WrongMasterKey(kid.to_string()))?;
    let mut data = sealed.to_vec();
    let plain = master
        .0
        .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut data)
        .map_err(|_| SealError::WrongMasterKey(kid.to_string()))?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_the_kid() {
        let m = MasterKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let blob = m.seal("k1", b"private").unwrap();
        assert!(is_sealed(&blob));
        assert!(!blob.windows(7).any(|w| w == b"private"));
        assert_eq!(open("k1", &blob, Some(&m)).unwrap(), b"private");
        assert_eq!(
            open("k2", &blob, Some(&m)),
            Err(SealError::WrongMasterKey("k2".into()))
        );
        assert_eq!(
            open("k1", &blob, None),
            Err(SealError::MasterKeyMissing("k1".into()))
        );
        let other = MasterKey::new(b"another master key, also long enough").unwrap();
        assert!(open("k1", &blob, Some(&other)).is_err());
        assert_eq!(open("k1", b"plain der", Some(&m)).unwrap(), b"plain der");
        assert_eq!(
            MasterKey::new(b"short").unwrap_err(),
            SealError::WeakMasterKey
        );
    }
}

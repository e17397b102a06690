//! Signing keys: generation, loading from their stored form, JWKS publication.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use aws_lc_rs::{digest, hmac, rsa};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use tessera_core::model::StoredKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    EdDSA,
    ES256,
    RS256,
    HS256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 4] = [
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::RS256,
        Algorithm::HS256,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
            Algorithm::RS256 => "RS256",
            Algorithm::HS256 => "HS256",
        }
    }

    pub(crate) fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                KeyError(format!(
                    "unknown signing algorithm `{s}`; accepted: EdDSA, ES256, RS256, HS256"
                ))
            })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

enum Signer {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    Hs256(Box<hmac::Key>),
}

/// A key ready to sign and verify. Parsed once; signing reuses the parsed key.
pub struct LoadedKey {
    pub kid: String,
    pub alg: Algorithm,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    signer: Signer,
    pub(crate) decoding: DecodingKey,
    /// The public JWK, `None` for a symmetric key (never published).
    pub(crate) jwk: Option<Value>,
    /// `base64url({"alg":..,"typ":"at+jwt","kid":..})`, fixed per key.
    header_b64: String,
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638 thumbprint of the required members, already in lexicographic order.
pub(crate) fn thumbprint(canonical: &str) -> String {
    b64(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
}

fn key_err<E: fmt::Debug>(what: &'static str) -> impl FnOnce(E) -> KeyError {
    move |e| KeyError(format!("{what}: {e:?}"))
}

/// Creates a new key pair for `alg` (not HS256: its secret comes from configuration).
pub fn generate_key(alg: Algorithm, now: i64, activates_at: i64) -> Result<StoredKey, KeyError> {
    let rng = SystemRandom::new();
    let der: Vec<u8> = match alg {
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(key_err("Ed25519 key generation"))?
            .as_ref()
            .to_vec(),
        Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(key_err("P-256 key generation"))?
            .as_ref()
            .to_vec(),
        Algorithm::RS256 => {
            let kp = RsaKeyPair::generate(rsa::KeySize::Rsa2048)
                .map_err(key_err("RSA key generation"))?;
            kp.as_der()
                .map_err(key_err("RSA key encoding"))?
                .as_ref()
                .to_vec()
        }
        Algorithm::HS256 => {
            return Err(KeyError("HS256 keys come from ACCESS_TOKEN_SECRET".into()));
        }
    };
    let loaded = LoadedKey::from_private(alg, &der, String::new(), now, None)?;
    Ok(StoredKey {
        kid: loaded.kid,
        alg: alg.as_str().to_string(),
        private_der: der,
        created_at: now,
        activates_at,
        retired_at: None,
    })
}

/// The HS256 key built from `ACCESS_TOKEN_SECRET`; never stored, never published.
pub fn hs256_key(secret: &[u8]) -> LoadedKey {
    let kid = thumbprint(&format!(r#"{{"k":"{}","kty":"oct"}}"#, b64(secret)));
    let kid = format!("hs256-{}", &kid[..16]);
    LoadedKey {
        header_b64: header_b64(Algorithm::HS256, &kid),
        kid,
        alg: Algorithm::HS256,
        activates_at: 0,
        retired_at: None,
        signer: Signer::Hs256(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
        decoding: DecodingKey::from_secret(secret),
        jwk: None,
    }
}

fn header_b64(alg: Algorithm, kid: &str) -> String {
    typed_header_b64(alg, kid, "at+jwt")
}

fn typed_header_b64(alg: Algorithm, kid: &str, typ: &str) -> String {
    b64(json!({"alg": alg.as_str(), "typ": typ, "kid": kid})
        .to_string()
        .as_bytes())
}

impl LoadedKey {
    /// Loads a stored key. An empty `kid` means "derive it" (at generation time).
    fn from_private(
        alg: Algorithm,
        der: &[u8],
        kid: String,
        activates_at: i64,
        retired_at: Option<i64>,
    ) -> Result<Self, KeyError> {
        let (signer, mut jwk, canonical) = match alg {
            Algorithm::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8(der).map_err(key_err("stored Ed25519 key"))?;
                let x = b64(kp.public_key().as_ref());
                let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
                (
                    Signer::Ed25519(kp),
                    json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
                    canonical,
                )
            }
            Algorithm::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(key_err("stored P-256 key"))?;
                let point = kp.public_key().as_ref();
                if point.len() != 65 {
                    return Err(KeyError(
                        "stored P-256 key has an unexpected public point".into(),
                    ));
                }
                let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
                let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                (
                    Signer::Es256(kp),
                    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                    canonical,
                )
            }
            Algorithm::RS256 => {
                let kp = RsaKeyPair::from_pkcs8(der).map_err(key_err("stored RSA key"))?;
                if kp.public_modulus_len() < 256 {
                    return Err(KeyError("RSA keys must be at least 2048 bits".into()));
                }
                let public = kp.public_key();
                let pk = rsa::PublicKeyComponents::<Vec<u8>>::from(public);
                let (n, e) = (b64(&pk.n), b64(&pk.e));
                let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                (
                    Signer::Rs256(kp),
                    json!({"kty": "RSA", "n": n, "e": e}),
                    canonical,
                )
            }
            Algorithm::HS256 => return Err(KeyError("HS256 keys are not stored".into())),
        };
        let kid = if kid.is_empty() {
            thumbprint(&canonical)
        } else {
            kid
        };
        let decoding = DecodingKey::from_jwk(
            &serde_json::from_value(jwk.clone()).map_err(key_err("public JWK"))?,
        )
        .map_err(key_err("public key"))?;
        let obj = jwk.as_object_mut().expect("built as an object above");
        obj.insert("kid".into(), Value::String(kid.clone()));
        obj.insert("alg".into(), Value::String(alg.as_str().into()));
        obj.insert("use".into(), Value::String("sig".into()));
        Ok(LoadedKey {
            header_b64: header_b64(alg, &kid),
            kid,
            alg,
            activates_at,
            retired_at,
            signer,
            decoding,
            jwk: Some(jwk),
        })
    }

    pub fn from_stored(stored: &StoredKey) -> Result<Self, KeyError> {
        Self::open(stored, None)
    }

    /// Loads a stored key whose private part may be sealed with `master`.
    pub fn open(
        stored: &StoredKey,
        master: Option<&crate::seal::MasterKey>,
    ) -> Result<Self, KeyError> {
        let alg: Algorithm = stored.alg.parse()?;
        let der = crate::seal::open(&stored.kid, &stored.private_der, master)
            .map_err(|e| KeyError(e.to_string()))?;
        Self::from_private(
            alg,
            &der,
            stored.kid.clone(),
            stored.activates_at,
            stored.retired_at,
        )
    }

    /// Signs `claims` as a compact JWS with this key's fixed header (`typ`
    /// `at+jwt`: an access token).
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        self.sign_with_header(&self.header_b64, claims)
    }

    /// Signs `claims` with the media type `typ` in the header: `JWT` for an ID
    /// token, `logout+jwt` for a logout token. Never `at+jwt`: only
    /// [`LoadedKey::sign`] makes access tokens.
    pub fn sign_typed<T: serde::Serialize>(
        &self,
        typ: &str,
        claims: &T,
    ) -> Result<String, KeyError> {
        if typ.eq_ignore_ascii_case("at+jwt") {
            return Err(KeyError("access tokens are signed by `sign`".into()));
        }
        self.sign_with_header(&typed_header_b64(self.alg, &self.kid, typ), claims)
    }

    fn sign_with_header<T: serde::Serialize>(
        &self,
        header_b64: &str,
        claims: &T,
    ) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(claims).map_err(key_err("claims"))?;
        let mut out = String::with_capacity(header_b64.len() + payload.len() * 4 / 3 + 400);
        out.push_str(header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        let rng = SystemRandom::new();
        let sig: Vec<u8> = match &self.signer {
            Signer::Ed25519(kp) => kp.sign(out.as_bytes()).as_ref().to_vec(),
            Signer::Es256(kp) => kp
                .sign(&rng, out.as_bytes())
                .map_err(key_err("ES256 signing"))?
                .as_ref()
                .to_vec(),
            Signer::Rs256(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &rng, out.as_bytes(), &mut sig)
                    .map_err(key_err("RS256 signing"))?;
                sig
            }
            Signer::Hs256(key) => hmac::sign(key, out.as_bytes()).as_ref().to_vec(),
        };
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
        Ok(out)
    }
}

/// Every key the server knows: which one signs now, which verify, what is published.
pub struct KeySet {
    keys: HashMap<String, LoadedKey>,
    signing_kid: String,
    /// The RS256 key that signs ID tokens and logout tokens, when there is one.
    id_signing_kid: Option<String>,
    jwks: String,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("signing_kid", &self.signing_kid)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Builds the set from loaded keys. The signing key is the newest key of `alg`
    /// that is active at `now` — activated and not yet retired — with ties broken
    /// by kid, so every instance picks the same one. Every key given is published
    /// and verifies; the caller drops keys whose last token has expired.
    pub fn new(keys: Vec<LoadedKey>, alg: Algorithm, now: i64) -> Result<Self, KeyError> {
        let signer = |alg: Algorithm| {
            keys.iter()
                .filter(|k| {
                    k.alg == alg && k.activates_at <= now && k.retired_at.is_none_or(|r| r > now)
                })
                .max_by(|a, b| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)))
                .map(|k| k.kid.clone())
        };
        let signing_kid =
            signer(alg).ok_or_else(|| KeyError(format!("no active {alg} signing key")))?;
        let id_signing_kid = signer(Algorithm::RS256);
        let published: Vec<&Value> = keys.iter().filter_map(|k| k.jwk.as_ref()).collect();
        let jwks = json!({ "keys": published }).to_string();
        let keys = keys.into_iter().map(|k| (k.kid.clone(), k)).collect();
        Ok(Self {
            keys,
            signing_kid,
            id_signing_kid,
            jwks,
        })
    }

    pub fn signing_key(&self) -> &LoadedKey {
        &self.keys[&self.signing_kid]
    }

    /// The newest active RS256 key: it signs ID tokens and logout tokens
    /// (OpenID Connect requires RS256 whatever the access tokens use).
    pub fn id_signing_key(&self) -> Option<&LoadedKey> {
        self.id_signing_kid.as_ref().map(|kid| &self.keys[kid])
    }

    pub fn get(&self, kid: &str) -> Option<&LoadedKey> {
        self.keys.get(kid)
    }

    /// The kids of every key in the set, sorted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.keys.keys().cloned().collect();
        kids.sort();
        kids
    }

    /// The JWKS document (`{"keys": [...]}`), public keys only.
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }
}

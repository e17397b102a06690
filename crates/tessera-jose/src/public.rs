//! A verifier's copy of the issuer's public keys, read from its JWKS.

use crate::keys::{Algorithm, KeyError, b64, thumbprint};
use crate::verify::{AccessClaims, TokenError, VerifyOptions, verify_with};
use base64::Engine;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Public keys by `kid`, each bound to the one algorithm its JWK names.
#[derive(Default)]
pub struct PublicKeys {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKeys")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The algorithm a JWK may be used with: its `alg` must name an asymmetric algorithm
/// Tessera signs with, and its key type and curve must fit that algorithm.
fn bound_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let alg: Algorithm = jwk.common.key_algorithm?.to_string().parse().ok()?;
    let fits = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        // 2048 bits and up: the modulus is at least 256 bytes (342 base64url chars).
        (AlgorithmParameters::RSA(p), Algorithm::RS256) => p.n.len() >= 342,
        _ => false,
    };
    fits.then_some(alg)
}

impl PublicKeys {
    /// Reads a JWKS document. Keys without a `kid`, with an unusable algorithm
    /// (symmetric keys, `none`, mismatched key types) are skipped, never trusted.
    pub fn from_jwks(json: &[u8]) -> Result<Self, KeyError> {
        let set: JwkSet = serde_json::from_slice(json)
            .map_err(|e| KeyError(format!("not a JWKS document: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), bound_algorithm(jwk)) else {
                continue;
            };
            if let Ok(decoding) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (alg, decoding));
            }
        }
        Ok(Self { keys })
    }

    /// One public key from a PEM file (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC
    /// KEY`): Ed25519, P-256 or RSA of at least 2048 bits, bound to EdDSA, ES256 or
    /// RS256. Its kid is its RFC 7638 thumbprint, the kid Tessera gives its keys.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = pem_der(pem)?;
        let (alg, canonical, jwk) = if der.len() == 44 && der.starts_with(&ED25519_SPKI) {
            let x = b64(&der[12..]);
            (
                Algorithm::EdDSA,
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
                json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            )
        } else if der.len() == 91 && der.starts_with(&P256_SPKI) && der[26] == 4 {
            let (x, y) = (b64(&der[27..59]), b64(&der[59..]));
            (
                Algorithm::ES256,
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            )
        } else {
            let rsa = aws_lc_rs::rsa::PublicKey::from_der(&der)
                .map_err(|_| KeyError("not an Ed25519, P-256 or RSA public key".into()))?;
            let c = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(&rsa);
            let (n, e) = (b64(&c.n), b64(&c.e));
            (
                Algorithm::RS256,
                format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
                json!({"kty": "RSA", "n": n, "e": e}),
            )
        };
        let mut jwk = jwk;
        jwk["kid"] = Value::String(thumbprint(&canonical));
        jwk["alg"] = Value::String(alg.as_str().into());
        let keys = Self::from_jwks(json!({ "keys": [jwk] }).to_string().as_bytes())?;
        if keys.is_empty() {
            return Err(KeyError("RSA keys must be at least 2048 bits".into()));
        }
        Ok(keys)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The kids of every key, sorted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.keys.keys().cloned().collect();
        kids.sort();
        kids
    }

    /// The one algorithm the key named `kid` verifies.
    pub fn algorithm(&self, kid: &str) -> Option<Algorithm> {
        self.keys.get(kid).map(|(alg, _)| *alg)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies an access token exactly as the issuing server does.
    pub fn verify(
        &self,
        token: &str,
        opts: &VerifyOptions,
        now: i64,
    ) -> Result<AccessClaims, TokenError> {
        verify_with(token, opts, now, |kid| {
            self.keys.get(kid).map(|(alg, key)| (*alg, key))
        })
    }
}

/// SubjectPublicKeyInfo DER before the key bytes: id-Ed25519, then a 32-byte key.
const ED25519_SPKI: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// id-ecPublicKey with prime256v1, then a 65-byte uncompressed point.
const P256_SPKI: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The DER inside a PEM public key.
fn pem_der(pem: &str) -> Result<Vec<u8>, KeyError> {
    let bad = |why: &str| KeyError(format!("not a PEM public key: {why}"));
    let mut lines = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN "));
    let label = lines
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| bad("no -----BEGIN PUBLIC KEY----- line"))?;
    if label.contains("PRIVATE") {
        return Err(KeyError(
            "this is a private key; give the public key (openssl pkey -pubout)".into(),
        ));
    }
    if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
        return Err(bad(&format!("a {label}")));
    }
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    for l in lines.by_ref() {
        if l == end {
            return base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|_| bad("the body is not base64"));
        }
        body.push_str(l);
    }
    Err(bad("no END line"))
}

/// The `kid` a token's header names, if it can be read (to decide whether the
/// JWKS must be fetched again). Nothing else of the header is trusted here.
pub fn token_kid(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    crate::header::parse(header).ok().map(|h| h.kid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeySet, LoadedKey, generate_key, hs256_key};

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn verifies_tokens_of_every_published_key_and_skips_the_rest() {
        let opts = VerifyOptions {
            issuer: "https://id".into(),
            audience: "api".into(),
            leeway: 30,
            max_lifetime: 900,
        };
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let key = LoadedKey::from_stored(&generate_key(alg, NOW, NOW).unwrap()).unwrap();
            let all = vec![key, hs256_key(b"0123456789abcdef0123456789abcdef")];
            let set = KeySet::new(all, alg, NOW).unwrap();
            let public = PublicKeys::from_jwks(set.jwks_json().as_bytes()).unwrap();
            assert_eq!(
                public.len(),
                1,
                "the HMAC key is never published nor trusted"
            );
            let claims = crate::test_claims("https://id", "api", NOW, NOW + 60);
            let token = set.signing_key().sign(&claims).unwrap();
            assert_eq!(
                token_kid(&token).as_deref(),
                Some(set.signing_key().kid.as_str())
            );
            assert_eq!(public.verify(&token, &opts, NOW).unwrap(), claims);
            assert_eq!(
                public.verify(&token, &opts, NOW + 100),
                Err(TokenError::Expired)
            );
        }
    }

    /// The PEM public key of a stored key, as `openssl pkey -pubout` writes it.
    fn public_pem(stored: &tessera_core::model::StoredKey) -> String {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
        };
        let der = &stored.private_der;
        let spki: PublicKeyX509Der = match stored.alg.as_str() {
            "EdDSA" => Ed25519KeyPair::from_pkcs8(der)
                .unwrap()
                .public_key()
                .as_der(),
            "ES256" => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .unwrap()
                .public_key()
                .as_der(),
            _ => RsaKeyPair::from_pkcs8(der).unwrap().public_key().as_der(),
        }
        .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(spki.as_ref());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn pem_public_keys_verify_with_the_kid_tessera_gives_them() {
        let opts = VerifyOptions {
            issuer: "https://id".into(),
            audience: "api".into(),
            leeway: 30,
            max_lifetime: 900,
        };
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let stored = generate_key(alg, NOW, NOW).unwrap();
            let set =
                KeySet::new(vec![LoadedKey::from_stored(&stored).unwrap()], alg, NOW).unwrap();
            let pem = public_pem(&stored);
            let keys = PublicKeys::from_pem(&format!("# exported key\n{pem}")).unwrap();
            assert_eq!(keys.kids(), vec![stored.kid.clone()], "{alg}");
            assert_eq!(keys.algorithm(&stored.kid), Some(alg));
            let claims = crate::test_claims("https://id", "api", NOW, NOW + 60);
            let token = set.signing_key().sign(&claims).unwrap();
            assert_eq!(keys.verify(&token, &opts, NOW).unwrap(), claims);
        }
        let private =
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        assert!(
            PublicKeys::from_pem(private)
                .unwrap_err()
                .0
                .contains("private key")
        );
        for junk in [
            "",
            "hello",
            "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n",
            "-----BEGIN PUBLIC KEY-----\naGVsbG8gd29ybGQ=\n-----END PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----",
        ] {
            assert!(PublicKeys::from_pem(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn hostile_jwks_entries_are_not_trusted() {
        let jwks = br#"{"keys":[
            {"kty":"oct","kid":"h","alg":"HS256","k":"c2VjcmV0"},
            {"kty":"OKP","kid":"noalg","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"EC","kid":"swap","alg":"EdDSA","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}"#;
        assert!(PublicKeys::from_jwks(jwks).unwrap().is_empty());
        assert!(PublicKeys::from_jwks(b"not json").is_err());
    }
}

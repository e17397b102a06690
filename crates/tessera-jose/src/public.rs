//! A verifier's copy of the issuer's public keys, read from its JWKS.

use crate::keys::{Algorithm, KeyError};
use crate::verify::{AccessClaims, TokenError, VerifyOptions, verify_with};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
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

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
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
    use crate::verify::Audience;

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
            let claims = AccessClaims {
                iss: "https://id".into(),
                sub: "u".into(),
                aud: Audience::One("api".into()),
                exp: NOW + 60,
                iat: NOW,
                nbf: None,
                jti: "j".into(),
                sid: "s".into(),
                client_id: "c".into(),
                email: None,
                username: None,
                fullname: None,
            };
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

//! Access tokens as JWTs (contract §4.1): signing keys bound to one algorithm each,
//! the published JWKS, and the one strict verification preset shared by the
//! server and the resource-server crate.

mod header;
mod keys;
mod public;
pub mod seal;
mod verified;
mod verify;

pub use keys::{Algorithm, KeyError, KeySet, LoadedKey, generate_key, hs256_key};
pub use public::{PublicKeys, token_kid};
pub use verified::VerifiedTokens;
pub use verify::{AccessClaims, Audience, IdTokenHint, MAX_TOKEN_BYTES, TokenError, VerifyOptions};

/// Claims with only the registered fields set, for the crate's unit tests.
#[cfg(test)]
pub(crate) fn test_claims(iss: &str, aud: &str, iat: i64, exp: i64) -> AccessClaims {
    AccessClaims {
        iss: iss.into(),
        sub: "u".into(),
        aud: Audience::One(aud.into()),
        exp,
        iat,
        nbf: None,
        jti: "j".into(),
        sid: "s".into(),
        client_id: "c".into(),
        email: None,
        username: None,
        fullname: None,
        legacy_id: None,
        email_verified: None,
        scope: None,
    }
}

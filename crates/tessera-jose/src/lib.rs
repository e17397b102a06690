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
pub use verify::{AccessClaims, Audience, MAX_TOKEN_BYTES, TokenError, VerifyOptions};

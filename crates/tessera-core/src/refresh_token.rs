//! The refresh-token codec (contract §4.2).
//!
//! A token is `tsr_` + base64url(version ‖ session id ‖ counter ‖ MAC), where the
//! MAC is HMAC-SHA-256 over the first three fields keyed by `REFRESH_TOKEN_SECRET`.
//! Nothing about a token is stored: the server recomputes it from the session id and
//! counter, so a database dump cannot be replayed, a grace replay can hand out the
//! byte-identical successor, and a forged or mangled token is refused before any
//! database work.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

const PREFIX: &str = "tsr_";
const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"tessera/refresh-token/v1";
const BODY_LEN: usize = 1 + 16 + 8;
const RAW_LEN: usize = BODY_LEN + 32;
/// Length of an encoded token; anything else is malformed without decoding.
pub const ENCODED_LEN: usize = PREFIX.len() + (RAW_LEN * 4).div_ceil(3);

/// What a genuine refresh token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshToken {
    pub session_id: Uuid,
    pub counter: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("refresh token is malformed or was not issued by this server")]
pub struct InvalidRefreshToken;

#[derive(Clone)]
pub struct RefreshTokenCodec {
    key: hmac::Key,
}

impl std::fmt::Debug for RefreshTokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokenCodec([redacted])")
    }
}

impl RefreshTokenCodec {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn mac(&self, body: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(DOMAIN);
        ctx.update(body);
        ctx.sign()
    }

    fn body(token: RefreshToken) -> [u8; BODY_LEN] {
        let mut body = [0u8; BODY_LEN];
        body[0] = VERSION;
        body[1..17].copy_from_slice(token.session_id.as_bytes());
        body[17..].copy_from_slice(&token.counter.to_be_bytes());
        body
    }

    pub fn encode(&self, token: RefreshToken) -> String {
        let body = Self::body(token);
        let mut raw = [0u8; RAW_LEN];
        raw[..BODY_LEN].copy_from_slice(&body);
        raw[BODY_LEN..].copy_from_slice(self.mac(&body).as_ref());
        let mut out = String::with_capacity(ENCODED_LEN);
        out.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(raw, &mut out);
        out
    }

    pub fn decode(&self, encoded: &str) -> Result<RefreshToken, InvalidRefreshToken> {
        if encoded.len() != ENCODED_LEN {
            return Err(InvalidRefreshToken);
        }
        let b64 = encoded.strip_prefix(PREFIX).ok_or(InvalidRefreshToken)?;
        let mut raw = [0u8; RAW_LEN + 2];
        let n = URL_SAFE_NO_PAD
            .decode_slice(b64, &mut raw)
            .map_err(|_| InvalidRefreshToken)?;
        if n != RAW_LEN || raw[0] != VERSION {
            return Err(InvalidRefreshToken);
        }
        let expected = self.mac(&raw[..BODY_LEN]);
        aws_lc_rs::constant_time::verify_slices_are_equal(
            expected.as_ref(),
            &raw[BODY_LEN..RAW_LEN],
        )
        .map_err(|_| InvalidRefreshToken)?;
        let session_id = Uuid::from_slice(&raw[1..17]).map_err(|_| InvalidRefreshToken)?;
        let counter = u64::from_be_bytes(
            raw[17..BODY_LEN]
                .try_into()
                .map_err(|_| InvalidRefreshToken)?,
        );
        Ok(RefreshToken {
            session_id,
            counter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn codec() -> RefreshTokenCodec {
        RefreshTokenCodec::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn encoded_length_is_fixed() {
        let t = codec().encode(RefreshToken {
            session_id: Uuid::now_v7(),
            counter: 7,
        });
        assert_eq!(t.len(), ENCODED_LEN);
        assert!(t.starts_with("tsr_"));
    }

    #[test]
    fn another_secret_does_not_verify() {
        let t = codec().encode(RefreshToken {
            session_id: Uuid::now_v7(),
            counter: 0,
        });
        let other = RefreshTokenCodec::new(b"another secret of enough length!!");
        assert_eq!(other.decode(&t), Err(InvalidRefreshToken));
    }

    proptest! {
        #[test]
        fn round_trips(id in any::<u128>(), counter in any::<u64>()) {
            let token = RefreshToken { session_id: Uuid::from_u128(id), counter };
            prop_assert_eq!(codec().decode(&codec().encode(token)), Ok(token));
        }

        #[test]
        fn any_single_change_is_refused(id in any::<u128>(), counter in any::<u64>(),
                                         pos in 4usize..ENCODED_LEN, ch in "[A-Za-z0-9_-]") {
            let c = codec();
            let good = c.encode(RefreshToken { session_id: Uuid::from_u128(id), counter });
            let mut bad = good.clone();
            bad.replace_range(pos..pos + 1, &ch);
            prop_assume!(bad != good);
            prop_assert_eq!(c.decode(&bad), Err(InvalidRefreshToken));
        }

        #[test]
        fn garbage_never_panics(s in ".{0,120}") {
            let _ = codec().decode(&s);
        }
    }
}

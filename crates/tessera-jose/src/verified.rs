//! Access tokens whose signature and claims already verified, so a token presented
//! again (every request of a client carries the same one until it expires) costs
//! a map lookup instead of a signature check. Only the verification is cached:
//! its users still check the session behind the token on every request (the
//! server reads it, `tessera-verify` looks it up in the revocation feed), so a
//! revoked session still stops at once.

use crate::AccessClaims;
use std::collections::HashMap;
use std::sync::Mutex;

/// Tokens remembered at most; a full map drops expired entries, then everything.
const CAPACITY: usize = 16_384;

struct Entry {
    claims: AccessClaims,
    /// The token verifies for `valid_from <= now < valid_until` (leeway included).
    valid_from: i64,
    valid_until: i64,
}

#[derive(Default)]
pub struct VerifiedTokens {
    // Keyed by the whole token: a hit means these exact bytes verified before.
    map: Mutex<HashMap<Box<str>, Entry>>,
}

impl VerifiedTokens {
    /// The claims of `token` if it verified before and its time window holds `now`.
    pub fn get(&self, token: &str, now: i64) -> Option<AccessClaims> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.get(token)?;
        (e.valid_from <= now && now < e.valid_until).then(|| e.claims.clone())
    }

    /// Remembers a token that just verified with `leeway`.
    pub fn insert(&self, token: &str, claims: &AccessClaims, leeway: i64, now: i64) {
        let entry = Entry {
            valid_from: claims.iat.max(claims.nbf.unwrap_or(i64::MIN)) - leeway,
            valid_until: claims.exp.saturating_add(leeway),
            claims: claims.clone(),
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAPACITY {
            map.retain(|_, e| now < e.valid_until);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(token.into(), entry);
    }

    /// Forgets everything (the signing keys changed).
    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iat: i64, exp: i64, nbf: Option<i64>) -> AccessClaims {
        AccessClaims {
            nbf,
            ..crate::test_claims("https://issuer", "a", iat, exp)
        }
    }

    #[test]
    fn a_hit_holds_only_inside_the_tokens_time_window() {
        let cache = VerifiedTokens::default();
        cache.insert("t1", &claims(1000, 1900, None), 30, 1000);
        assert!(cache.get("t1", 1000).is_some());
        assert!(cache.get("t1", 1929).is_some(), "leeway after exp");
        assert!(cache.get("t1", 1930).is_none(), "expired: verify again");
        assert!(cache.get("t1", 969).is_none(), "before iat minus leeway");
        assert!(cache.get("t2", 1000).is_none(), "other bytes never hit");
        cache.insert("t3", &claims(1000, 1900, Some(1500)), 30, 1000);
        assert!(
            cache.get("t3", 1400).is_none(),
            "not before nbf minus leeway"
        );
        assert!(cache.get("t3", 1470).is_some());
    }

    #[test]
    fn the_map_stays_bounded() {
        let cache = VerifiedTokens::default();
        for i in 0..(CAPACITY + 10) {
            cache.insert(&format!("t{i}"), &claims(1000, 1900, None), 30, 1000);
        }
        assert!(cache.map.lock().unwrap().len() <= CAPACITY);
        assert!(cache.get(&format!("t{}", CAPACITY + 9), 1000).is_some());
        cache.clear();
        assert!(cache.get(&format!("t{}", CAPACITY + 9), 1000).is_none());
    }
}

//! The one verification preset for access tokens (contract §4.1).

use crate::header;
use crate::keys::{Algorithm, KeySet};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// 9999-12-31T23:59:59Z: the latest time claim accepted.
const MAX_TIME: i64 = 253_402_300_799;

/// `aud` may be one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(v) => v.iter().any(|a| a == aud),
        }
    }
}

/// The claims of a Tessera access token (RFC 9068 plus `sid` and profile claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    pub sid: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fullname: Option<String>,
    /// The user's id in the system they were imported from, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_id: Option<String>,
    /// Whether `email` was confirmed (present with `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// The OAuth scopes granted (space-separated); absent on first-party tokens
    /// issued without scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub issuer: String,
    pub audience: String,
    /// Allowed clock difference in seconds.
    pub leeway: i64,
    /// The longest lifetime (`exp - iat`, in seconds) the issuer gives an access
    /// token: its access-token lifetime. A token claiming a longer one (plus the
    /// leeway) is refused, so a leaked signing key cannot mint long-lived tokens
    /// that would outlive the revocation feed's window.
    pub max_lifetime: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token expired")]
    Expired,
    #[error("{0}")]
    Invalid(&'static str),
}

impl KeySet {
    /// Verifies an access token at time `now`: the algorithm bound to the key named
    /// by `kid` only, `typ` at+jwt, exact `iss`, our `aud`, `exp`/`iat`/`nbf` with
    /// leeway, `sub` and `sid` present, no `crit` and no key named by the header.
    pub fn verify(
        &self,
        token: &str,
        opts: &VerifyOptions,
        now: i64,
    ) -> Result<AccessClaims, TokenError> {
        verify_with(token, opts, now, |kid| {
            self.get(kid).map(|k| (k.alg, &k.decoding))
        })
    }
}

/// The one verification preset, over any way of finding the key a `kid` names
/// (the server's own keys, or a resource server's copy of the JWKS).
pub(crate) fn verify_with<'k>(
    token: &str,
    opts: &VerifyOptions,
    now: i64,
    lookup: impl FnOnce(&str) -> Option<(Algorithm, &'k jsonwebtoken::DecodingKey)>,
) -> Result<AccessClaims, TokenError> {
    use TokenError::Invalid;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Invalid("the access token is too large"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid("the access token is not a signed JWT"));
    };
    let header = header::parse(h).map_err(Invalid)?;
    let (alg, decoding) =
        lookup(&header.kid).ok_or(Invalid("the access token was signed by an unknown key"))?;
    if header.alg != alg.as_str() {
        return Err(Invalid(
            "the access token's algorithm does not match its key",
        ));
    }
    let mut v = jsonwebtoken::Validation::new(alg.jsonwebtoken());
    // Time claims are checked below against the injected clock.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = 0;
    v.required_spec_claims = ["exp", "iss", "aud", "sub"]
        .iter()
        .map(|s| s.to_string())
        .collect::<HashSet<_>>();
    v.set_issuer(&[&opts.issuer]);
    v.set_audience(&[&opts.audience]);
    let data = jsonwebtoken::decode::<AccessClaims>(token, decoding, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        Invalid(match e.kind() {
            K::InvalidSignature => "the access token's signature is invalid",
            K::InvalidIssuer => "the access token was issued by someone else",
            K::InvalidAudience => "the access token is meant for another audience",
            K::MissingRequiredClaim(_) => "the access token lacks a required claim",
            _ => "the access token is malformed",
        })
    })?;
    let c = data.claims;
    // Reject payloads with repeated claim names (parsers disagree on which wins).
    let payload = token.split('.').nth(1).unwrap_or_default();
    header::unique_object(payload, MAX_TOKEN_BYTES).map_err(Invalid)?;
    if c.sub.is_empty() || c.sid.is_empty() {
        return Err(Invalid("the access token lacks a subject or session"));
    }
    // Times before 1970 or after year 9999 are not times; a token cannot expire
    // before it was issued. (An `exp` near i64::MAX would otherwise never expire.)
    let in_range = |t: i64| (0..=MAX_TIME).contains(&t);
    if !in_range(c.exp) || !in_range(c.iat) || c.nbf.is_some_and(|t| !in_range(t)) {
        return Err(Invalid("the access token's time claims are out of range"));
    }
    if c.exp <= c.iat {
        return Err(Invalid("the access token expires before it was issued"));
    }
    if c.exp - c.iat > opts.max_lifetime.saturating_add(opts.leeway) {
        return Err(Invalid(
            "the access token's lifetime is longer than its issuer gives",
        ));
    }
    if c.iat > now + opts.leeway {
        return Err(Invalid("the access token was issued in the future"));
    }
    if let Some(nbf) = c.nbf
        && nbf > now + opts.leeway
    {
        return Err(Invalid("the access token is not valid yet"));
    }
    if now >= c.exp.saturating_add(opts.leeway) {
        return Err(TokenError::Expired);
    }
    Ok(c)
}

/// What Tessera reads from an `id_token_hint` (OpenID Connect RP-Initiated
/// Logout 1.0 §2): whose session and which client.
#[derive(Debug, Clone, Deserialize)]
pub struct IdTokenHint {
    pub sub: String,
    pub aud: Audience,
    #[serde(default)]
    pub sid: Option<String>,
}

impl KeySet {
    /// Checks an ID token this issuer signed, presented as a logout hint: an RS256
    /// signature by one of the published keys, `typ` JWT and our `iss`. Its
    /// expiry is not checked: a hint may come after its ID token expired.
    pub fn verify_id_token_hint(
        &self,
        token: &str,
        issuer: &str,
    ) -> Result<IdTokenHint, TokenError> {
        use TokenError::Invalid;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Invalid("the ID token is too large"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Invalid("the ID token is malformed"))?;
        if header.alg != jsonwebtoken::Algorithm::RS256 || header.typ.as_deref() != Some("JWT") {
            return Err(Invalid("the ID token is not an RS256-signed JWT"));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.get(kid))
            .filter(|k| k.alg == Algorithm::RS256)
            .ok_or(Invalid("the ID token was signed by an unknown key"))?;
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims = ["iss", "sub", "aud"]
            .iter()
            .map(|s| s.to_string())
            .collect::<HashSet<_>>();
        v.set_issuer(&[issuer]);
        jsonwebtoken::decode::<IdTokenHint>(token, &key.decoding, &v)
            .map(|d| d.claims)
            .map_err(|_| Invalid("the ID token is not one this server issued"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, LoadedKey, generate_key, hs256_key};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const NOW: i64 = 1_800_000_000;

    fn opts() -> VerifyOptions {
        VerifyOptions {
            issuer: "https://id.example".into(),
            audience: "api".into(),
            leeway: 30,
            max_lifetime: 900,
        }
    }

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "https://id.example".into(),
            sub: "u1".into(),
            aud: Audience::One("api".into()),
            exp: NOW + 900,
            iat: NOW,
            nbf: None,
            jti: "j".into(),
            sid: "s1".into(),
            client_id: "tessera".into(),
            email: Some("a@b.c".into()),
            username: None,
            fullname: None,
            legacy_id: None,
            email_verified: None,
            scope: None,
        }
    }

    fn set(alg: Algorithm) -> KeySet {
        let key = if alg == Algorithm::HS256 {
            hs256_key(b"0123456789abcdef0123456789abcdef")
        } else {
            LoadedKey::from_stored(&generate_key(alg, NOW, NOW).unwrap()).unwrap()
        };
        KeySet::new(vec![key], alg, NOW).unwrap()
    }

    fn forge(header: &str, payload: &str, sig: &[u8]) -> String {
        let e = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        format!(
            "{}.{}.{}",
            e(header.as_bytes()),
            e(payload.as_bytes()),
            e(sig)
        )
    }

    #[test]
    fn every_algorithm_round_trips() {
        for alg in Algorithm::ALL {
            let ks = set(alg);
            let t = ks.signing_key().sign(&claims()).unwrap();
            assert_eq!(ks.verify(&t, &opts(), NOW).unwrap(), claims(), "{alg}");
            assert_eq!(
                ks.verify(&t, &opts(), NOW + 900 + 30),
                Err(TokenError::Expired)
            );
            assert!(ks.verify(&t, &opts(), NOW + 900 + 29).is_ok());
        }
    }

    #[test]
    fn hmac_secret_is_never_published() {
        assert_eq!(set(Algorithm::HS256).jwks_json(), r#"{"keys":[]}"#);
        assert!(set(Algorithm::EdDSA).jwks_json().contains("\"OKP\""));
    }

    #[test]
    fn wrong_claims_are_refused() {
        let ks = set(Algorithm::EdDSA);
        let sign = |c: AccessClaims| ks.signing_key().sign(&c).unwrap();
        let mut c = claims();
        c.iss = "https://evil.example".into();
        assert!(ks.verify(&sign(c), &opts(), NOW).is_err());
        let mut c = claims();
        c.aud = Audience::Many(vec!["other".into()]);
        assert!(ks.verify(&sign(c), &opts(), NOW).is_err());
        let mut c = claims();
        c.aud = Audience::Many(vec!["other".into(), "api".into()]);
        assert!(ks.verify(&sign(c), &opts(), NOW).is_ok());
        let mut c = claims();
        c.iat = NOW + 120;
        assert!(ks.verify(&sign(c), &opts(), NOW).is_err());
        let mut c = claims();
        c.nbf = Some(NOW + 120);
        assert!(ks.verify(&sign(c), &opts(), NOW).is_err());
        // Out of range or inconsistent time claims, even with a valid signature.
        for (exp, iat, nbf) in [
            (i64::MAX, NOW, None),
            (MAX_TIME + 1, NOW, None),
            (NOW + 900, -1, None),
            (NOW + 900, i64::MIN, None),
            (NOW + 900, NOW, Some(-5)),
            (NOW + 900, NOW, Some(i64::MAX)),
            (NOW - 10, NOW, None),
            (NOW, NOW, None),
        ] {
            let mut c = claims();
            (c.exp, c.iat, c.nbf) = (exp, iat, nbf);
            assert!(
                matches!(
                    ks.verify(&sign(c), &opts(), NOW),
                    Err(TokenError::Invalid(_))
                ),
                "exp {exp} iat {iat} nbf {nbf:?}"
            );
        }
    }

    #[test]
    fn a_lifetime_longer_than_the_issuer_gives_is_refused() {
        let ks = set(Algorithm::EdDSA);
        let sign = |c: AccessClaims| ks.signing_key().sign(&c).unwrap();
        // Up to the lifetime plus the leeway: accepted.
        for life in [1, 900, 930] {
            let mut c = claims();
            c.exp = NOW + life;
            assert!(ks.verify(&sign(c), &opts(), NOW).is_ok(), "{life}");
        }
        // Beyond it, however well signed: refused, also with `iat` in the past.
        for (iat, exp) in [
            (NOW, NOW + 931),
            (NOW, NOW + 10 * 365 * 86_400),
            (NOW - 3_600, NOW + 600),
        ] {
            let mut c = claims();
            (c.iat, c.exp) = (iat, exp);
            assert_eq!(
                ks.verify(&sign(c), &opts(), NOW),
                Err(TokenError::Invalid(
                    "the access token's lifetime is longer than its issuer gives"
                )),
                "iat {iat} exp {exp}"
            );
        }
    }

    #[test]
    fn hostile_headers_are_refused_before_verification() {
        let ks = set(Algorithm::EdDSA);
        let kid = ks.signing_key().kid.clone();
        let body = serde_json::to_string(&claims()).unwrap();
        for header in [
            r#"{"alg":"none","typ":"at+jwt","kid":"K"}"#.to_string(),
            r#"{"alg":"HS256","typ":"at+jwt","kid":"K"}"#.to_string(),
            r#"{"alg":"EdDSA","typ":"JWT","kid":"K"}"#.to_string(),
            r#"{"alg":"EdDSA","kid":"K"}"#.to_string(),
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"K","jku":"http://x"}"#.to_string(),
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"K","crit":["exp"]}"#.to_string(),
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"K","alg":"EdDSA"}"#.to_string(),
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"../../etc/passwd"}"#.to_string(),
        ] {
            let header = header.replace("\"K\"", &format!("\"{kid}\""));
            let t = forge(&header, &body, b"sig");
            assert!(
                matches!(ks.verify(&t, &opts(), NOW), Err(TokenError::Invalid(_))),
                "{header}"
            );
        }
        for junk in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            &"x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(ks.verify(junk, &opts(), NOW).is_err());
        }
    }
}

//! Strict parsing of a JWS protected header before any signature work.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Members that would make a verifier fetch or trust key material named by the
/// token itself, demand extensions we do not implement, or belong to JWE.
const FORBIDDEN: &[&str] = &["jku", "x5u", "jwk", "x5c", "crit", "b64", "enc", "zip"];
const MAX_HEADER_BYTES: usize = 1024;

pub(crate) struct Header {
    pub alg: String,
    pub kid: String,
}

/// A JSON object whose parse fails on a repeated member name.
struct UniqueObject(BTreeMap<String, Value>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueObject, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if out.insert(k, v).is_some() {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                }
                Ok(UniqueObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Decodes a base64url JSON object, refusing duplicate member names.
pub(crate) fn unique_object(
    b64: &str,
    max: usize,
) -> Result<BTreeMap<String, Value>, &'static str> {
    if b64.len() > max * 4 / 3 + 4 {
        return Err("token part too large");
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| "token part is not base64url")?;
    let obj: UniqueObject = serde_json::from_slice(&bytes)
        .map_err(|_| "token part is not a JSON object with unique members")?;
    Ok(obj.0)
}

pub(crate) fn parse(b64: &str) -> Result<Header, &'static str> {
    let h = unique_object(b64, MAX_HEADER_BYTES)?;
    if FORBIDDEN.iter().any(|k| h.contains_key(*k)) {
        return Err("token header names a key source or extension that is not accepted");
    }
    let typ = h
        .get("typ")
        .and_then(Value::as_str)
        .ok_or("token type (typ) must be at+jwt")?;
    let typ = typ.to_ascii_lowercase();
    if typ != "at+jwt" && typ != "application/at+jwt" {
        return Err("token type (typ) must be at+jwt");
    }
    let alg = h
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("token has no algorithm")?;
    let kid = h
        .get("kid")
        .and_then(Value::as_str)
        .ok_or("token has no key id (kid)")?;
    Ok(Header {
        alg: alg.to_string(),
        kid: kid.to_string(),
    })
}

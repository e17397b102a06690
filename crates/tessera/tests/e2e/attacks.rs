//! Hostile input (contract §4.1, §5.1, §6; RFC 8725 and the JWT-attack literature):
//! forged and malformed access tokens against every signing algorithm, hostile
//! bodies and headers, cross-site use of the cookies, and secrets in the logs.
//! Every case must be a 4xx (401 for tokens), never a 5xx, cheap to refuse, and
//! nothing a token names may be fetched.

use crate::protect::TIMING;
use crate::support::*;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(part).unwrap()
}

/// The server's own signing key, read from its store: forgeries that need a valid
/// signature get one, so each case tests exactly one rule.
enum Signer {
    Ed(Ed25519KeyPair),
    Es(EcdsaKeyPair, Vec<u8>),
    Rs(RsaKeyPair),
    Hs(Vec<u8>),
}

struct Forger {
    alg: String,
    kid: String,
    signer: Signer,
}

impl Forger {
    async fn of(s: &TestServer) -> Forger {
        let set = s.state().key_set();
        let (alg, kid) = (
            set.signing_key().alg.to_string(),
            set.signing_key().kid.clone(),
        );
        if alg == "HS256" {
            let secret = s.cfg.access_token_secret.clone().unwrap().into_bytes();
            return Forger {
                alg,
                kid,
                signer: Signer::Hs(secret),
            };
        }
        let keys = s.state().store.list_keys().await.unwrap();
        let sealed = keys.into_iter().find(|k| k.kid == kid).unwrap().private_der;
        let master = s.state().key_source.master.as_ref();
        let der = tessera_jose::seal::open(&kid, &sealed, master).unwrap();
        let signer = match alg.as_str() {
            "EdDSA" => Signer::Ed(Ed25519KeyPair::from_pkcs8(&der).unwrap()),
            "ES256" => Signer::Es(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap(),
                der,
            ),
            "RS256" => Signer::Rs(RsaKeyPair::from_pkcs8(&der).unwrap()),
            other => panic!("unexpected algorithm {other}"),
        };
        Forger { alg, kid, signer }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Ed(k) => k.sign(input).as_ref().to_vec(),
            Signer::Es(k, _) => k.sign(&rng, input).unwrap().as_ref().to_vec(),
            Signer::Rs(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, input, &mut sig).unwrap();
                sig
            }
            Signer::Hs(secret) => hmac_sign(hmac::HMAC_SHA256, secret, input),
        }
    }

    /// A compact JWS of exactly these header and payload texts, validly signed.
    fn token(&self, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64(sig))
    }

    /// Public key encodings an attacker could use as an HMAC secret.
    fn public_secrets(&self, jwk: &Value) -> Vec<(&'static str, Vec<u8>)> {
        let (raw, spki): (Vec<u8>, Vec<u8>) = match &self.signer {
            Signer::Ed(k) => (
                k.public_key().as_ref().to_vec(),
                k.public_key().as_der().unwrap().as_ref().to_vec(),
            ),
            Signer::Es(k, _) => (
                k.public_key().as_ref().to_vec(),
                k.public_key().as_der().unwrap().as_ref().to_vec(),
            ),
            Signer::Rs(k) => (
                k.public_key().as_ref().to_vec(),
                k.public_key().as_der().unwrap().as_ref().to_vec(),
            ),
            Signer::Hs(_) => return Vec::new(),
        };
        let lines: Vec<String> = STANDARD
            .encode(&spki)
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        );
        let member = jwk.get("x").or(jwk.get("n")).unwrap().as_str().unwrap();
        vec![
            ("raw public key", raw),
            ("SPKI DER", spki),
            ("PEM", pem.clone().into_bytes()),
            ("PEM without newline", pem.trim_end().as_bytes().to_vec()),
            ("JWK JSON", jwk.to_string().into_bytes()),
            ("JWKS JSON", json!({"keys": [jwk]}).to_string().into_bytes()),
            ("JWK member", member.as_bytes().to_vec()),
        ]
    }
}

fn hmac_sign(alg: hmac::Algorithm, secret: &[u8], input: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(alg, secret), input)
        .as_ref()
        .to_vec()
}

/// A TCP listener counting connections: proof that nothing named in a token is fetched.
async fn tripwire() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, hits)
}

fn with(claims: &Value, key: &str, value: Option<Value>) -> String {
    let mut c: Map<String, Value> = claims.as_object().unwrap().clone();
    match value {
        Some(v) => c.insert(key.into(), v),
        None => c.remove(key),
    };
    Value::Object(c).to_string()
}

/// Every hostile token for a server signing with `f`, by name.
fn hostile_tokens(
    f: &Forger,
    claims: &Value,
    real: &str,
    jwk: &Value,
    trap: &str,
    other: &Value,
) -> Vec<(String, String)> {
    let (alg, kid) = (f.alg.as_str(), f.kid.as_str());
    let payload = claims.to_string();
    let header = json!({"alg": alg, "typ": "at+jwt", "kid": kid}).to_string();
    let h = |extra: Value| {
        let mut m = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() && k.starts_with('-') {
                m.as_object_mut().unwrap().remove(&k[1..]);
            } else {
                m[k] = v.clone();
            }
        }
        m.to_string()
    };
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut add = |name: String, token: String| cases.push((name, token));

    // alg "none" in every spelling, unsigned and signed.
    for none in ["none", "None", "NONE", "nOnE"] {
        let hn = h(json!({"alg": none}));
        add(
            format!("alg {none}, no signature"),
            format!("{}.{}.", b64(&hn), b64(&payload)),
        );
        add(format!("alg {none}, signed"), f.token(&hn, &payload));
        let bare = json!({"alg": none}).to_string();
        add(
            format!("alg {none}, bare header"),
            format!("{}.{}.", b64(&bare), b64(&payload)),
        );
    }
    // Algorithm confusion: HMAC keyed with the public key in every encoding.
    for (what, secret) in f.public_secrets(jwk) {
        for (name, mac) in [
            ("HS256", hmac::HMAC_SHA256),
            ("HS384", hmac::HMAC_SHA384),
            ("HS512", hmac::HMAC_SHA512),
        ] {
            let hh = h(json!({"alg": name}));
            let input = format!("{}.{}", b64(&hh), b64(&payload));
            let sig = hmac_sign(mac, &secret, input.as_bytes());
            add(
                format!("{name} keyed with the {what}"),
                format!("{input}.{}", b64(sig)),
            );
        }
        let hh = json!({"alg": "HS256", "typ": "at+jwt"}).to_string();
        let input = format!("{}.{}", b64(&hh), b64(&payload));
        let sig = hmac_sign(hmac::HMAC_SHA256, &secret, input.as_bytes());
        add(
            format!("HS256 keyed with the {what}, no kid"),
            format!("{input}.{}", b64(sig)),
        );
    }
    // Algorithm swaps with a genuine signature, and algs of the wrong shape.
    for other_alg in [
        "EdDSA", "ES256", "RS256", "HS256", "PS256", "ES384", "ES512", "RS512", "HS512", "Ed25519",
        "ES256K",
    ] {
        if other_alg != alg {
            add(
                format!("alg swapped to {other_alg}"),
                f.token(&h(json!({"alg": other_alg})), &payload),
            );
        }
    }
    for shape in [
        json!(alg.to_lowercase()),
        json!(format!("{alg} ")),
        json!(null),
        json!(0),
        json!([alg]),
        json!({"alg": alg}),
    ] {
        add(
            format!("alg {shape}"),
            f.token(&h(json!({"alg": shape})), &payload),
        );
    }
    add(
        "alg missing".into(),
        f.token(&h(json!({"-alg": null})), &payload),
    );
    // kid injection: paths, SQL, URLs, commands, odd types; all genuinely signed.
    let long = "k".repeat(900);
    for bad in [
        "../../../../../../etc/passwd",
        "/dev/null",
        "/proc/self/environ",
        "file:///etc/passwd",
        &format!("{trap}/key.pem"),
        "' OR '1'='1",
        "x' UNION SELECT private_der FROM signing_keys --",
        "|id",
        "$(id)",
        "${jndi:ldap://127.0.0.1:1/a}",
        "",
        &format!("{kid} "),
        &kid.to_uppercase(),
        &format!("{kid}\u{0}"),
        long.as_str(),
    ] {
        let shown: String = bad.chars().take(40).collect();
        add(
            format!("kid {shown:?}"),
            f.token(&h(json!({"kid": bad})), &payload),
        );
    }
    for shape in [json!(null), json!(1), json!([kid]), json!({"kid": kid})] {
        add(
            format!("kid {shape}"),
            f.token(&h(json!({"kid": shape})), &payload),
        );
    }
    add(
        "kid missing".into(),
        f.token(&h(json!({"-kid": null})), &payload),
    );
    // Key material named or embedded by the token: never fetched, never trusted.
    let attacker = Ed25519KeyPair::generate().unwrap();
    let attacker_jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(attacker.public_key().as_ref())});
    for (member, value) in [
        ("jku", json!(format!("{trap}/jwks.json"))),
        ("x5u", json!(format!("{trap}/cert.pem"))),
        ("jwk", attacker_jwk.clone()),
        ("jwk", jwk.clone()),
        ("x5c", json!([STANDARD.encode(b"not really a certificate")])),
        ("x5c", json!([])),
    ] {
        add(
            format!("{member} header, genuine signature"),
            f.token(&h(json!({member: value})), &payload),
        );
    }
    for hh in [
        json!({"alg": "EdDSA", "typ": "at+jwt", "jwk": attacker_jwk}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "jwk": attacker_jwk}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "attacker", "jku": format!("{trap}/jwks.json")}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}),
    ] {
        let input = format!("{}.{}", b64(hh.to_string()), b64(&payload));
        let sig = attacker.sign(input.as_bytes());
        add(
            format!("signed by an attacker key, header {hh}"),
            format!("{input}.{}", b64(sig)),
        );
    }
    // crit, JWE members, unencoded payloads.
    for extra in [
        json!({"crit": ["exp"], "exp": 1}),
        json!({"crit": []}),
        json!({"crit": ["b64"], "b64": false}),
        json!({"crit": "exp"}),
        json!({"b64": false}),
        json!({"enc": "A128GCM"}),
        json!({"zip": "DEF"}),
    ] {
        add(format!("header {extra}"), f.token(&h(extra), &payload));
    }
    // typ: missing or anything but at+jwt.
    add(
        "typ missing".into(),
        f.token(&h(json!({"-typ": null})), &payload),
    );
    for typ in [
        json!("JWT"),
        json!("jwt"),
        json!(""),
        json!(null),
        json!(1),
        json!("at+jwt "),
        json!("JOSE"),
        json!("JOSE+JSON"),
        json!("application/jwt"),
        json!("rt+jwt"),
        json!("at+jwt;q=1"),
        json!(["at+jwt"]),
    ] {
        add(
            format!("typ {typ}"),
            f.token(&h(json!({"typ": typ})), &payload),
        );
    }
    add(
        "JWE-shaped, five parts".into(),
        format!(
            "{}.{}.{}.{}.{}",
            b64(r#"{"alg":"dir","enc":"A128GCM","typ":"at+jwt"}"#),
            "",
            b64("iv"),
            b64(&payload),
            b64("tag")
        ),
    );
    // Claims: time claims of the wrong type or out of range, issuer, audience,
    // subject and session; all genuinely signed.
    let exp = claims["exp"].as_i64().unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    let iss = claims["iss"].as_str().unwrap();
    let time_cases: Vec<(&str, Option<Value>)> = vec![
        ("exp", Some(json!(exp.to_string()))),
        ("exp", Some(json!(exp as f64 + 0.5))),
        ("exp", Some(json!(1e300))),
        ("exp", Some(json!(u64::MAX))),
        ("exp", Some(json!(9_223_372_036_854_775_808u64))),
        ("exp", Some(json!(i64::MAX))),
        ("exp", Some(json!(-1))),
        ("exp", Some(json!(0))),
        ("exp", Some(json!(true))),
        ("exp", Some(json!(null))),
        ("exp", Some(json!([exp]))),
        ("exp", Some(json!({"exp": exp}))),
        ("exp", None),
        ("exp", Some(json!(iat - 3600))),
        ("iat", Some(json!(iat + 3600))),
        ("iat", Some(json!(iat.to_string()))),
        ("iat", Some(json!(iat as f64 + 0.25))),
        ("iat", Some(json!(-1))),
        ("iat", Some(json!(i64::MIN))),
        ("iat", Some(json!(exp + 1))),
        ("iat", Some(json!(null))),
        ("iat", None),
        ("nbf", Some(json!(iat + 3600))),
        ("nbf", Some(json!(iat.to_string()))),
        ("nbf", Some(json!(i64::MAX))),
        ("nbf", Some(json!(-1))),
        ("nbf", Some(json!(1e20))),
        ("iss", Some(json!("https://evil.example"))),
        ("iss", Some(json!(format!("{iss}/")))),
        ("iss", Some(json!(iss.to_uppercase()))),
        ("iss", Some(json!(trap))),
        ("iss", Some(json!([iss]))),
        ("iss", Some(json!(""))),
        ("iss", Some(json!(null))),
        ("iss", Some(json!(1))),
        ("iss", None),
        ("aud", Some(json!("someone-else"))),
        ("aud", Some(json!(["someone-else"]))),
        ("aud", Some(json!([]))),
        ("aud", Some(json!(""))),
        ("aud", Some(json!(null))),
        ("aud", Some(json!(7))),
        ("aud", Some(json!({"aud": "tessera"}))),
        ("aud", None),
        ("sub", Some(other["sub"].clone())),
        ("sub", Some(json!(""))),
        ("sub", Some(json!(1))),
        ("sub", None),
        ("sid", Some(other["sid"].clone())),
        ("sid", Some(json!(uuid::Uuid::now_v7().to_string()))),
        ("sid", Some(json!(""))),
        ("sid", Some(json!("../../etc/passwd"))),
        ("sid", Some(json!("' OR 1=1 --"))),
        ("sid", Some(json!(1))),
        ("sid", None),
        ("jti", None),
        ("jti", Some(json!(5))),
        ("client_id", None),
        ("pad", Some(json!("x".repeat(9000)))),
    ];
    for (claim, value) in time_cases {
        let shown = value
            .as_ref()
            .map(|v| v.to_string().chars().take(40).collect::<String>());
        add(
            format!("claim {claim} = {shown:?}"),
            f.token(&header, &with(claims, claim, value)),
        );
    }
    // Duplicate members: parsers disagree on which one wins.
    let tail = |extra: &str| format!("{},{extra}}}", payload.trim_end_matches('}'));
    let other_sub = other["sub"].as_str().unwrap();
    let other_sid = other["sid"].as_str().unwrap();
    for dup in [
        tail(&format!(r#""sub":"{other_sub}""#)),
        tail(&format!(r#""sid":"{other_sid}""#)),
        tail(r#""exp":9999999999"#),
        tail(r#""iss":"https://evil.example""#),
        tail(r#""aud":"someone-else""#),
        format!(r#"{{"sub":"{other_sub}",{}"#, &payload[1..]),
    ] {
        add(
            format!("duplicate claim {}", &dup[dup.len().saturating_sub(50)..]),
            f.token(&header, &dup),
        );
    }
    for dup in [
        format!(r#"{{"alg":"none","alg":"{alg}","typ":"at+jwt","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}","alg":"none"}}"#),
        format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}","kid":"../x"}}"#),
        format!(r#"{{"alg":"{alg}","typ":"JWT","typ":"at+jwt","kid":"{kid}"}}"#),
    ] {
        add(
            format!("duplicate header member {dup}"),
            f.token(&dup, &payload),
        );
    }
    // Malformed and oversized tokens.
    let parts: Vec<&str> = real.split('.').collect();
    let (rh, rp, rs) = (parts[0], parts[1], parts[2]);
    let deep = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
    for (name, token) in [
        ("empty", String::new()),
        ("one dot", ".".into()),
        ("two dots", "..".into()),
        ("three dots", "...".into()),
        ("one part", "abc".into()),
        ("two parts", format!("{rh}.{rp}")),
        ("four parts", format!("{real}.{rs}")),
        ("a hundred dots", ".".repeat(100)),
        ("trailing garbage", format!("{real}x")),
        ("padded base64", format!("{rh}==.{rp}.{rs}")),
        ("standard base64", {
            // Claim bytes whose base64 needs '+' and '/', signed as sent.
            let odd = with(claims, "x", Some(json!("~~~???")));
            let input = format!(
                "{}.{}",
                STANDARD_NO_PAD.encode(&header),
                STANDARD_NO_PAD.encode(&odd)
            );
            assert!(input.contains('+') && input.contains('/'));
            format!("{input}.{}", b64(f.sign(input.as_bytes())))
        }),
        ("parts swapped", format!("{rp}.{rh}.{rs}")),
        ("header not JSON", format!("{}.{rp}.{rs}", b64("not json"))),
        ("header a JSON array", format!("{}.{rp}.{rs}", b64("[]"))),
        (
            "header a JSON string",
            format!("{}.{rp}.{rs}", b64("\"at+jwt\"")),
        ),
        (
            "header invalid UTF-8",
            format!("{}.{rp}.{rs}", b64([0xff, 0xfe, 0x7b, 0x7d])),
        ),
        (
            "header with trailing bytes",
            f.token(&format!("{header}x"), &payload),
        ),
        (
            "header with a BOM",
            f.token(&format!("\u{feff}{header}"), &payload),
        ),
        (
            "header of 2 KiB",
            f.token(&h(json!({"x": "y".repeat(2048)})), &payload),
        ),
        (
            "header deeply nested",
            f.token(
                &h(json!({"x": deep.clone()})).replace(&format!("\"{deep}\""), &deep),
                &payload,
            ),
        ),
        ("payload not JSON", f.token(&header, "not json")),
        ("payload null", f.token(&header, "null")),
        ("payload an array", f.token(&header, "[]")),
        (
            "payload deeply nested",
            f.token(&header, &format!("{{\"x\":{deep}}}")),
        ),
        (
            "payload with a huge number",
            f.token(&header, &tail(r#""n":1e999999"#)),
        ),
        (
            "payload with a lone surrogate",
            f.token(
                &header,
                &payload.replacen("\"sub\":\"", "\"sub\":\"\\ud800", 1),
            ),
        ),
        ("payload invalid UTF-8", {
            let input = format!("{rh}.{}", b64([0x7b, 0xff, 0x7d]));
            format!("{input}.{}", b64(f.sign(input.as_bytes())))
        }),
        (
            "just over 8 KiB",
            format!("{rh}.{}.{rs}", "A".repeat(8 * 1024)),
        ),
        ("20 KiB", "a".repeat(20 * 1024)),
        ("with a space", format!("{rh}.{rp} .{rs}")),
        ("signature empty", format!("{rh}.{rp}.")),
        (
            "signature truncated",
            format!("{rh}.{rp}.{}", &rs[..rs.len() - 4]),
        ),
        ("signature extended", format!("{real}AAAA")),
        (
            "signature flipped",
            format!(
                "{rh}.{rp}.{}{}",
                if rs.starts_with('A') { "B" } else { "A" },
                &rs[1..]
            ),
        ),
        (
            "signature all zeros",
            format!("{rh}.{rp}.{}", b64(vec![0u8; unb64(rs).len()])),
        ),
        (
            "signature of another payload",
            format!(
                "{rh}.{}.{rs}",
                b64(with(claims, "sub", Some(other["sub"].clone())))
            ),
        ),
    ] {
        add(format!("malformed: {name}"), token);
    }
    if let Signer::Es(_, der) = &f.signer {
        let asn1 = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der).unwrap();
        let input = format!("{rh}.{rp}");
        let sig = asn1.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        add(
            "ES256 with a DER signature".into(),
            format!("{input}.{}", b64(sig)),
        );
    }
    cases
}

/// Sends `token` as a bearer token and as the access cookie; each must be a 401
/// `invalid_token` with a challenge. Returns the fastest of the answers (ms).
async fn refused(s: &TestServer, name: &str, token: &str) -> f64 {
    let mut best = f64::MAX;
    for cookie in [false, true, false] {
        let req = s.http.get(s.url("/v1/me"));
        let req = if cookie {
            req.header("cookie", format!("tessera_at={token}"))
        } else {
            req.header("authorization", format!("Bearer {token}"))
        };
        let started = Instant::now();
        let r = req.send().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        best = best.min(started.elapsed().as_secs_f64() * 1000.0);
        let status = r.status();
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{name} (cookie: {cookie}): {body}"
        );
        assert_eq!(body["error"], "invalid_token", "{name}: {body}");
        assert!(
            challenge.is_some_and(|c| c.starts_with("Bearer error=\"invalid_token\"")),
            "{name}"
        );
    }
    best
}

async fn accepted(s: &TestServer, name: &str, token: &str) -> f64 {
    let started = Instant::now();
    let r = s.get_auth("/v1/me", token).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = r.status();
    assert_eq!(
        status,
        StatusCode::OK,
        "{name}: {}",
        r.text().await.unwrap()
    );
    ms
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&unb64(part)).unwrap()
}

async fn hostile_tokens_are_refused(tweak: impl FnOnce(&mut tessera::config::Config)) {
    let _t = TIMING.lock().await;
    let s = TestServer::start_with(tweak).await;
    let victim = s.user("victim").await;
    let other = s.user("other").await;
    let (trap, connections) = tripwire().await;
    let f = Forger::of(&s).await;
    let jwks: Value = s
        .http
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == f.kid.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    let parts: Vec<&str> = victim.access.split('.').collect();
    let (header_text, payload_text) = (
        String::from_utf8(unb64(parts[0])).unwrap(),
        String::from_utf8(unb64(parts[1])).unwrap(),
    );
    let claims = decode(parts[1]);
    let other_claims = decode(other.access.split('.').nth(1).unwrap());

    // Controls: the forger signs exactly as the server does, so every refusal below
    // is about the one thing each case changes.
    let mut valid = vec![accepted(&s, "the real token", &victim.access).await];
    accepted(
        &s,
        "a re-signed copy",
        &f.token(&header_text, &payload_text),
    )
    .await;
    let alike = |typ: &str| json!({"alg": f.alg, "typ": typ, "kid": f.kid}).to_string();
    accepted(
        &s,
        "typ application/at+jwt",
        &f.token(&alike("application/at+jwt"), &payload_text),
    )
    .await;
    accepted(&s, "typ AT+JWT", &f.token(&alike("AT+JWT"), &payload_text)).await;
    let aud = with(
        &claims,
        "aud",
        Some(json!(["someone-else", claims["aud"].clone()])),
    );
    accepted(&s, "aud list with ours", &f.token(&header_text, &aud)).await;

    let cases = hostile_tokens(&f, &claims, &victim.access, &jwk, &trap, &other_claims);
    let mut fastest = Vec::new();
    // Refusals are compared with valid tokens seen for the first time: a token
    // presented again skips the signature check (it verified before), which would
    // make every refusal look slow next to it.
    let mut chain = victim.refresh.clone();
    for (i, (name, token)) in cases.iter().enumerate() {
        fastest.push((refused(&s, name, token).await, name));
        if i % 8 == 0 {
            let fresh = s.refresh_ok(&chain).await;
            chain = fresh.refresh.clone();
            valid.push(accepted(&s, "a fresh real token", &fresh.access).await);
        }
    }
    // Refresh and access tokens are not interchangeable.
    refused(&s, "a refresh token as access token", &victim.refresh).await;
    expect_error(
        s.refresh(&victim.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    // A token of another server (another key) is refused too.
    if f.alg != "HS256" {
        let elsewhere = TestServer::start_with(|c| c.signing_alg = f.alg.clone()).await;
        let stranger = elsewhere.user("victim").await;
        refused(&s, "a token from another server", &stranger.access).await;
    }

    // Nothing named in a token was fetched.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a URL named in a token was fetched"
    );
    // Every refusal is cheap: none is inherently slower than a valid request (the
    // fastest of three tries against the median valid one, with room for noise).
    valid.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let typical = valid[valid.len() / 2];
    let slow: Vec<_> = fastest
        .iter()
        .filter(|(ms, _)| *ms > typical * 10.0)
        .collect();
    assert!(
        slow.is_empty(),
        "slow refusals vs {typical:.2} ms for a valid token: {slow:?}"
    );
    eprintln!(
        "{}: {} hostile tokens refused; valid median {typical:.2} ms",
        f.alg,
        cases.len()
    );
    // The victim's session is untouched.
    assert_eq!(s.me_status(&victim.access).await, StatusCode::OK);
    s.refresh_ok(&chain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_are_refused_eddsa() {
    hostile_tokens_are_refused(|_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_are_refused_es256() {
    hostile_tokens_are_refused(|c| c.signing_alg = "ES256".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_are_refused_rs256() {
    hostile_tokens_are_refused(|c| c.signing_alg = "RS256".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_are_refused_hs256() {
    hostile_tokens_are_refused(|c| {
        c.access_token_secret = Some("an-hs256-secret-of-more-than-32-bytes".into())
    })
    .await;
}

/// One request written byte for byte; returns the status and the whole answer.
async fn raw(addr: &str, request: &[u8]) -> (u16, String) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything: that is fine.
    let _ = sock.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn request(method: &str, path: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nhost: tessera.test\r\nconnection: close\r\n")
        .into_bytes();
    for (k, v) in headers {
        r.extend_from_slice(k.as_bytes());
        r.extend_from_slice(b": ");
        r.extend_from_slice(v);
        r.extend_from_slice(b"\r\n");
    }
    if !headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    }) {
        r.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_and_headers_get_4xx() {
    let s = TestServer::start().await;
    s.register("rita").await;
    let addr = s.base.trim_start_matches("http://").to_string();
    const JSON: (&str, &[u8]) = ("content-type", b"application/json");
    let login = |body: &[u8]| request("POST", "/v1/auth/login", &[JSON], body);
    let big_header = "h".repeat(40 * 1024);
    let many_headers: Vec<(String, Vec<u8>)> = (0..150)
        .map(|i| (format!("x-h{i}"), b"v".to_vec()))
        .collect();
    let many: Vec<(&str, &[u8])> = many_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let mut chunked = b"4000\r\n".to_vec();
    chunked.extend(vec![b' '; 0x4000]);
    chunked.extend_from_slice(b"\r\n4000\r\n");
    chunked.extend(vec![b' '; 0x4000]);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let deep = format!("{}{}", "[".repeat(6000), "]".repeat(6000));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("body over the limit", login(&vec![b' '; 17 * 1024]), 413),
        (
            "chunked body over the limit",
            request(
                "POST",
                "/v1/auth/login",
                &[JSON, ("transfer-encoding", b"chunked")],
                &chunked,
            ),
            413,
        ),
        (
            "expect 100-continue with a huge body",
            request(
                "POST",
                "/v1/auth/register",
                &[
                    JSON,
                    ("expect", b"100-continue"),
                    ("content-length", b"99999999"),
                ],
                b"",
            ),
            413,
        ),
        (
            "text/plain",
            request(
                "POST",
                "/v1/auth/login",
                &[("content-type", b"text/plain")],
                br#"{"login":"rita","password":"x"}"#,
            ),
            415,
        ),
        (
            "form post",
            request(
                "POST",
                "/v1/auth/login",
                &[("content-type", b"application/x-www-form-urlencoded")],
                b"login=rita&password=x",
            ),
            415,
        ),
        (
            "multipart",
            request(
                "POST",
                "/v1/auth/register",
                &[("content-type", b"multipart/form-data; boundary=x")],
                b"--x--",
            ),
            415,
        ),
        (
            "no content type",
            request(
                "POST",
                "/v1/auth/login",
                &[],
                br#"{"login":"rita","password":"x"}"#,
            ),
            415,
        ),
        (
            "application/jsonx",
            request(
                "POST",
                "/v1/auth/login",
                &[("content-type", b"application/jsonx")],
                b"{}",
            ),
            415,
        ),
        (
            "refresh as text/plain",
            request(
                "POST",
                "/v1/auth/refresh",
                &[("content-type", b"text/plain")],
                b"refresh_token=x",
            ),
            415,
        ),
        (
            "logout as a form",
            request(
                "POST",
                "/v1/auth/logout",
                &[("content-type", b"application/x-www-form-urlencoded")],
                b"scope=global",
            ),
            415,
        ),
        (
            "invalid UTF-8 in a string",
            login(b"{\"login\":\"\xff\xfe\",\"password\":\"x\"}"),
            400,
        ),
        (
            "invalid UTF-8 in a key",
            login(b"{\"\xff\":1,\"login\":\"rita\",\"password\":\"x\"}"),
            400,
        ),
        (
            "overlong UTF-8",
            login(b"{\"login\":\"\xc0\xaf\",\"password\":\"x\"}"),
            400,
        ),
        ("UTF-16 body", login(b"\xff\xfe{\x00}\x00"), 400),
        (
            "lone surrogate escape",
            login(br#"{"login":"rita","password":"\ud800abcdefgh"}"#),
            400,
        ),
        (
            "raw control character",
            login(b"{\"login\":\"ri\x00ta\",\"password\":\"x\"}"),
            400,
        ),
        ("nested 6000 deep", login(deep.as_bytes()), 400),
        (
            "duplicate keys",
            login(br#"{"login":"rita","password":"x","password":"y"}"#),
            400,
        ),
        (
            "huge number",
            login(br#"{"login":1e999999,"password":"x"}"#),
            400,
        ),
        (
            "trailing garbage",
            login(br#"{"login":"rita","password":"x"} x"#),
            400,
        ),
        (
            "refresh body invalid UTF-8",
            request(
                "POST",
                "/v1/auth/refresh",
                &[JSON],
                b"{\"refresh_token\":\"\xff\"}",
            ),
            400,
        ),
        (
            "Content-Length and Transfer-Encoding",
            request(
                "POST",
                "/v1/auth/login",
                &[
                    JSON,
                    ("content-length", b"4"),
                    ("transfer-encoding", b"chunked"),
                ],
                b"0\r\n\r\n",
            ),
            400,
        ),
        (
            "invalid UTF-8 bearer",
            request(
                "GET",
                "/v1/me",
                &[("authorization", b"Bearer \xff\xfe.\xfd")],
                b"",
            ),
            401,
        ),
        (
            "invalid UTF-8 cookie",
            request("GET", "/v1/me", &[("cookie", b"tessera_at=\xff\xfe")], b""),
            401,
        ),
        (
            "invalid UTF-8 user agent",
            login_with(&[("user-agent", b"\xff\xfe\x80")]),
            401,
        ),
        (
            "invalid X-Forwarded-For",
            login_with(&[("x-forwarded-for", b"\xff, ::::, 999.1.1.1")]),
            401,
        ),
        (
            "a 40 KiB header",
            request("GET", "/v1/me", &[("x-big", big_header.as_bytes())], b""),
            431,
        ),
        (
            "a 40 KiB cookie",
            request(
                "GET",
                "/v1/me",
                &[("cookie", format!("tessera_at={big_header}").as_bytes())],
                b"",
            ),
            431,
        ),
        ("150 headers", request("GET", "/v1/me", &many, b""), 431),
        (
            "header name with a space",
            request("GET", "/v1/me", &[("bad header", b"x")], b""),
            400,
        ),
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            "path traversal",
            request("GET", "/v1/auth/../../etc/passwd", &[], b""),
            404,
        ),
        (
            "encoded traversal",
            request("GET", "/v1/%2e%2e/%2e%2e/etc/passwd", &[], b""),
            404,
        ),
        (
            "NUL in the path",
            request("GET", "/v1/me%00", &[], b""),
            404,
        ),
        ("TRACE", request("TRACE", "/v1/me", &[], b""), 405),
        (
            "GET refresh",
            request(
                "GET",
                "/v1/auth/refresh",
                &[("cookie", b"tessera_rt=x")],
                b"",
            ),
            405,
        ),
    ];
    fn login_with(extra: &[(&str, &[u8])]) -> Vec<u8> {
        let mut h: Vec<(&str, &[u8])> = vec![("content-type", b"application/json")];
        h.extend_from_slice(extra);
        request(
            "POST",
            "/v1/auth/login",
            &h,
            br#"{"login":"rita","password":"not her password"}"#,
        )
    }
    for (name, req, want) in cases {
        let (status, answer) = raw(&addr, &req).await;
        let shown: String = answer.chars().take(300).collect();
        assert_eq!(status, want, "{name}: {shown}");
        if answer.contains("content-type: application/json") {
            assert!(answer.contains("\"error\""), "{name}: {shown}");
        } else {
            // Only HTTP framing the server cannot parse gets hyper's bare answer.
            assert!(matches!(status, 400 | 431), "{name}: {shown}");
        }
    }
    // Nothing was lost and the server is fine.
    s.login("rita").await;
}

fn set_cookies(r: &reqwest::Response) -> Vec<(String, String, Vec<String>)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| {
            let v = v.to_str().unwrap();
            let mut parts = v.split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let mut attrs: Vec<String> = parts.map(String::from).collect();
            attrs.sort();
            (name.to_string(), value.to_string(), attrs)
        })
        .collect()
}

fn attrs(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_have_exactly_the_spec_attributes() {
    for (issuer, at, rt) in [
        (None, "tessera_at", "tessera_rt"),
        (
            Some("https://id.example.com"),
            "__Host-tessera_at",
            "__Secure-tessera_rt",
        ),
    ] {
        let s = TestServer::start_with(|c| c.issuer = issuer.map(String::from)).await;
        s.register("sam").await;
        let r = s
            .post(
                "/v1/auth/login",
                json!({"login": "sam", "password": PASSWORD}),
            )
            .await;
        let cookies = set_cookies(&r);
        assert_eq!(cookies.len(), 2, "{cookies:?}");
        assert_eq!(cookies[0].0, at);
        assert_eq!(
            cookies[0].2,
            attrs(&[
                "HttpOnly",
                "Secure",
                "SameSite=Lax",
                "Path=/",
                "Max-Age=900"
            ])
        );
        assert_eq!(cookies[1].0, rt);
        assert_eq!(
            cookies[1].2,
            attrs(&[
                "HttpOnly",
                "Secure",
                "SameSite=Strict",
                "Path=/v1/auth",
                "Max-Age=864000"
            ])
        );
        // Refresh by cookie: the new refresh cookie's Max-Age is what is left.
        s.clock.advance(100);
        let r = s
            .http
            .post(s.url("/v1/auth/refresh"))
            .header("cookie", format!("{rt}={}", cookies[1].1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let again = set_cookies(&r);
        assert_eq!(
            again[1].2,
            attrs(&[
                "HttpOnly",
                "Secure",
                "SameSite=Strict",
                "Path=/v1/auth",
                "Max-Age=864000"
            ])
        );
        // Logout clears both with the same attributes.
        let r = s
            .http
            .post(s.url("/v1/auth/logout"))
            .header("cookie", format!("{rt}={}", again[1].1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let cleared = set_cookies(&r);
        assert_eq!(cleared[0].0, at);
        assert_eq!(cleared[0].1, "");
        assert_eq!(
            cleared[0].2,
            attrs(&["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=0"])
        );
        assert_eq!(cleared[1].0, rt);
        assert_eq!(
            cleared[1].2,
            attrs(&[
                "HttpOnly",
                "Secure",
                "SameSite=Strict",
                "Path=/v1/auth",
                "Max-Age=0"
            ])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_authenticated_writes_from_other_sites_are_refused() {
    // The issuer is the server's real address, so its origin is this page's own.
    let port = free_port();
    let s = TestServer::start_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.issuer = Some(format!("http://127.0.0.1:{port}"));
    })
    .await;
    let t = s.user("tess").await;
    let own = s.base.clone();
    let host = own.trim_start_matches("http://").to_string();
    let prefix_trick = format!("{own}.evil.example");
    let userinfo_trick = format!("http://{host}@evil.example");
    // The same host and port under another scheme, and another port: other origins,
    // though the Host header matches their host.
    let other_scheme = format!("https://{host}");
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1).max(1));
    let with_path = format!("{own}/somewhere");
    // (Origin headers, Sec-Fetch-Site) of requests a browser sends from someone
    // else's page, or that no browser sends.
    let contexts: Vec<(Vec<&str>, Option<&str>)> = vec![
        (vec!["https://evil.example"], None),
        (vec!["https://evil.example"], Some("cross-site")),
        (vec!["https://evil.example"], Some("same-origin")),
        (vec!["null"], None),
        (vec!["null"], Some("cross-site")),
        (vec![prefix_trick.as_str()], None),
        (vec![userinfo_trick.as_str()], None),
        (vec![other_scheme.as_str()], Some("same-site")),
        (vec![other_port.as_str()], Some("same-site")),
        (vec![with_path.as_str()], None),
        (vec![own.as_str(), "https://evil.example"], None),
        (vec!["https://evil.example", own.as_str()], None),
        (vec![own.as_str(), own.as_str()], Some("same-origin")),
        (vec![], Some("cross-site")),
        (vec![], Some("same-site")),
    ];
    let rt = format!("tessera_rt={}", t.refresh);
    let at = format!("tessera_at={}", t.access);
    let (rt, at) = (rt.as_str(), at.as_str());
    let delete = format!("/v1/me/sessions/{}", t.session_id);
    // (method, path, cookie, content type, body): JSON calls and simple form posts.
    let writes: Vec<(&str, &str, &str, Option<&str>, &str)> = vec![
        ("POST", "/v1/auth/refresh", rt, None, ""),
        (
            "POST",
            "/v1/auth/refresh",
            rt,
            Some("application/x-www-form-urlencoded"),
            "",
        ),
        ("POST", "/v1/auth/refresh", rt, Some("text/plain"), ""),
        (
            "POST",
            "/v1/auth/refresh",
            rt,
            Some("application/json"),
            "{}",
        ),
        ("POST", "/v1/auth/logout", rt, None, ""),
        (
            "POST",
            "/v1/auth/logout",
            rt,
            Some("application/x-www-form-urlencoded"),
            "",
        ),
        ("POST", "/v1/auth/logout", at, None, ""),
        (
            "POST",
            "/v1/auth/logout",
            at,
            Some("application/json"),
            r#"{"scope":"global"}"#,
        ),
        (
            "PATCH",
            "/v1/me",
            at,
            Some("application/json"),
            r#"{"fullname":"pwned"}"#,
        ),
        (
            "POST",
            "/v1/me/password",
            at,
            Some("application/json"),
            r#"{"current_password":"x","new_password":"pwned pwned"}"#,
        ),
        ("DELETE", &delete, at, None, ""),
    ];
    for (origins, site) in &contexts {
        for (method, path, cookie, ct, body) in &writes {
            let mut req = s
                .http
                .request(method.parse().unwrap(), s.url(path))
                .header("cookie", *cookie)
                .body(body.to_string());
            for o in origins {
                req = req.header("origin", *o);
            }
            if let Some(site) = site {
                req = req.header("sec-fetch-site", *site);
            }
            if let Some(ct) = ct {
                req = req.header("content-type", *ct);
            }
            let r = req.send().await.unwrap();
            let shown = format!("{method} {path} {cookie:.12} {ct:?} from {origins:?}/{site:?}");
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{shown}");
            expect_error(r, StatusCode::FORBIDDEN, "csrf").await;
        }
    }
    // GET (and HEAD) cannot refresh or log out.
    for method in ["GET", "HEAD"] {
        for path in ["/v1/auth/refresh", "/v1/auth/logout"] {
            let r = s
                .http
                .request(method.parse().unwrap(), s.url(path))
                .header("cookie", format!("{rt}; {at}"))
                .header("origin", "https://evil.example")
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
        }
    }
    // CORS: no origin is ever reflected or allowed, with or without credentials,
    // on preflights, answers and errors alike.
    for (method, path) in [
        ("OPTIONS", "/v1/auth/refresh"),
        ("OPTIONS", "/v1/auth/login"),
        ("OPTIONS", "/v1/me"),
        ("GET", "/v1/me"),
        ("POST", "/v1/auth/refresh"),
    ] {
        let r = s
            .http
            .request(method.parse().unwrap(), s.url(path))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .header("cookie", format!("{rt}; {at}"))
            .send()
            .await
            .unwrap();
        // A cross-site GET with the access cookie is answered (the page cannot
        // read it without CORS); everything else is refused.
        assert!(
            method == "GET" || r.status().is_client_error(),
            "{method} {path}: {}",
            r.status()
        );
        for h in r.headers().keys() {
            assert!(
                !h.as_str().starts_with("access-control-"),
                "{method} {path} sent {h}"
            );
        }
    }
    // The session survived every attempt, and this origin itself may write.
    let r = s
        .http
        .post(s.url("/v1/auth/refresh"))
        .header("cookie", rt)
        .header("origin", &own)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = s.get_auth("/v1/me", &t.access).await.json().await.unwrap();
    assert_eq!(me["user"]["fullname"], "Test User");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let secret = "log-test-refresh-secret-0123456789abcdef";
    let mut child = tessera()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TESSERA_LOG", "debug,tessera=trace,tessera_app=trace,tessera_server=trace,tessera_core=trace,tessera_jose=trace,tessera_store=trace")
        .env("REFRESH_TOKEN_SECRET", secret)
        .env("TESSERA_ARGON2_MEMORY_KIB", "1024")
        .env("TESSERA_ARGON2_ITERATIONS", "1")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut out, &mut banner).unwrap();
    let base = banner.trim().rsplit(' ').next().unwrap().to_string();
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
    let wrong = "Tr0ub4dor&3-not-it";
    let new_password = "a-brand-new-passphrase-42";
    let mut seen_bodies = String::new();
    let mut tokens: Vec<String> = Vec::new();

    let r = post(
        "/v1/auth/register",
        json!({"email": "lee@example.com", "username": "lee", "password": PASSWORD}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    seen_bodies += &r.text().await.unwrap();
    let login = json!({"login": "lee", "password": PASSWORD, "delivery": "body"});
    let a = Tokens::from(
        post("/v1/auth/login", login.clone())
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
    );
    let r = post("/v1/auth/login", json!({"login": "lee", "password": wrong}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    seen_bodies += &r.text().await.unwrap();
    // Passwords in the wrong place: echoed nowhere.
    for body in [
        json!({"login": "lee", "password": 123456789012u64}),
        json!({"login": "lee", "password": wrong, "delivery": wrong}),
        json!({"login": ["lee"], "password": wrong}),
    ] {
        let r = post("/v1/auth/login", body).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        seen_bodies += &r.text().await.unwrap();
    }
    let a1 = Tokens::from(
        post(
            "/v1/auth/refresh",
            json!({"refresh_token": a.refresh, "delivery": "body"}),
        )
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap(),
    );
    let a2 = Tokens::from(
        post(
            "/v1/auth/refresh",
            json!({"refresh_token": a1.refresh, "delivery": "body"}),
        )
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap(),
    );
    let r = http
        .get(format!("{base}/v1/me"))
        .bearer_auth(&a2.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A token in the query string is not read, and not logged either.
    let r = http
        .get(format!("{base}/v1/me?access_token={}", a2.access))
        .header("x-request-id", "req-secrets-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["x-request-id"], "req-secrets-1");
    seen_bodies += &r.text().await.unwrap();
    // A token in the path of an unknown endpoint neither.
    let r = http
        .get(format!("{base}/v1/tokens/{}", a2.refresh))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    seen_bodies += &r.text().await.unwrap();
    // A token two rotations old: reuse, the session is revoked.
    let r = post("/v1/auth/refresh", json!({"refresh_token": a.refresh}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    seen_bodies += &r.text().await.unwrap();
    let r = http
        .get(format!("{base}/v1/me"))
        .bearer_auth(&a2.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    seen_bodies += &r.text().await.unwrap();
    // Cookie delivery, a password change and a logout by cookie.
    let r = post(
        "/v1/auth/login",
        json!({"login": "lee@example.com", "password": PASSWORD, "delivery": "cookie"}),
    )
    .await
    .unwrap();
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect();
    let b = Tokens::from(
        post("/v1/auth/login", login.clone())
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
    );
    let r = http
        .post(format!("{base}/v1/me/password"))
        .bearer_auth(&b.access)
        .json(&json!({"current_password": wrong, "new_password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    seen_bodies += &r.text().await.unwrap();
    let r = http
        .post(format!("{base}/v1/me/password"))
        .bearer_auth(&b.access)
        .json(&json!({"current_password": PASSWORD, "new_password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .post(format!("{base}/v1/auth/logout"))
        .header("cookie", cookies.join("; "))
        .send()
        .await
        .unwrap();
    seen_bodies += &r.text().await.unwrap();
    let r = http
        .post(format!("{base}/v1/auth/logout"))
        .bearer_auth(&b.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = post("/v1/auth/refresh", json!({"refresh_token": b.refresh}))
        .await
        .unwrap();
    seen_bodies += &r.text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("DEBUG") || log.contains("TRACE"),
        "debug logging was on: {log}"
    );
    assert!(
        log.contains("refresh token reuse"),
        "the reuse was logged: {log}"
    );
    // One access line per request, with the request's id and route.
    assert!(
        log.lines().any(|l| l.contains("tessera_server::access")
            && l.contains("request_id=req-secrets-1")
            && l.contains("route=/v1/me")
            && l.contains("status=401")),
        "no access line for the request: {log}"
    );
    assert!(
        log.lines()
            .filter(|l| l.contains("tessera_server::access"))
            .count()
            >= 15,
        "{log}"
    );
    for t in [&a, &a1, &a2, &b] {
        tokens.push(t.access.clone());
        tokens.push(t.access.rsplit('.').next().unwrap().to_string());
        tokens.push(t.refresh.clone());
        tokens.push(t.refresh.trim_start_matches("tsr_").to_string());
    }
    for c in &cookies {
        tokens.push(c.split_once('=').unwrap().1.to_string());
    }
    let secrets: Vec<&str> = [
        PASSWORD,
        wrong,
        new_password,
        secret,
        "123456789012",
        "$argon2id$",
    ]
    .into_iter()
    .chain(tokens.iter().map(String::as_str))
    .collect();
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!log.contains(s), "the log contains a secret ({:.12}...)", s);
        assert!(
            !seen_bodies.contains(s),
            "an error body contains a secret ({:.12}...)",
            s
        );
    }
}

/// The `access-control-*` headers of an answer, by name.
fn cors_headers(r: &reqwest::Response) -> Vec<(String, String)> {
    r.headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("access-control-"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_the_trusted_origins() {
    let spa = "http://localhost:3000";
    let s = TestServer::start_with(|c| {
        c.trusted_origins = Some(format!("{spa}, https://admin.example.com"));
        c.issuer = Some("https://id.example.com/tenant".into());
    })
    .await;
    let t = s.user("cora").await;
    // The issuer's own origin is trusted for cookie writes but needs no CORS.
    let issuer = "https://id.example.com";
    // A preflight from the single-page app: allowed, with credentials, exactly the
    // methods and headers the API uses, cached for a while.
    for (path, method, headers) in [
        ("/v1/auth/login", "POST", "content-type"),
        (
            "/v1/me",
            "PATCH",
            "authorization, content-type, x-request-id",
        ),
        ("/v1/me/sessions/0192", "DELETE", "authorization"),
        ("/oauth/token", "POST", "authorization"),
    ] {
        let r = s
            .http
            .request(reqwest::Method::OPTIONS, s.url(path))
            .header("origin", spa)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], spa);
        assert_eq!(h["access-control-allow-credentials"], "true");
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        assert_eq!(methods, "GET,POST,PATCH,DELETE", "{path}");
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        assert_eq!(allowed, "content-type,authorization,x-request-id");
        assert_eq!(h["access-control-max-age"], "600");
        assert!(
            h.get_all("vary")
                .iter()
                .any(|v| v.to_str().unwrap().contains("origin")),
            "{h:?}"
        );
    }
    // The app's real requests: readable, with the headers a client needs exposed.
    let r = s
        .http
        .get(s.url("/v1/me"))
        .header("origin", spa)
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], spa);
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_string();
    for h in ["x-request-id", "www-authenticate", "retry-after"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    let r = s
        .http
        .get(s.url("/v1/me"))
        .header("origin", "https://admin.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://admin.example.com",
        "errors are readable too"
    );
    // Everyone else: no CORS header at all, on preflights, answers and errors.
    let other_port = "http://localhost:3001";
    let other_scheme = "https://localhost:3000";
    for origin in [
        vec!["https://evil.example"],
        vec![other_port],
        vec![other_scheme],
        vec!["null"],
        vec![issuer],
        vec![spa, "https://evil.example"],
        vec![spa, spa],
    ] {
        for (method, path) in [
            ("OPTIONS", "/v1/auth/login"),
            ("OPTIONS", "/v1/me"),
            ("GET", "/v1/me"),
            ("POST", "/v1/auth/refresh"),
        ] {
            let mut req = s
                .http
                .request(method.parse().unwrap(), s.url(path))
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type")
                .bearer_auth(&t.access);
            for o in &origin {
                req = req.header("origin", *o);
            }
            let r = req.send().await.unwrap();
            assert_eq!(cors_headers(&r), vec![], "{method} {path} from {origin:?}");
            if method == "OPTIONS" {
                expect_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
            }
        }
    }
    // Without trusted origins there is no CORS at all.
    let plain = TestServer::start().await;
    let r = plain
        .http
        .request(reqwest::Method::OPTIONS, plain.url("/v1/auth/login"))
        .header("origin", spa)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(cors_headers(&r), vec![]);
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_answers_are_never_cached() {
    let s = TestServer::start().await;
    let secret = crate::oauth::add_client(&s, "rs", true, &["refresh_token"], false)
        .await
        .unwrap();
    let r = s
        .post(
            "/v1/auth/register",
            json!({"email": "nico@example.com", "username": "nico", "password": PASSWORD}),
        )
        .await;
    let mut seen = vec![("POST /v1/auth/register", r)];
    let t = s.login("nico").await;
    let other = s.login("nico").await;
    let get = |path: &str| s.http.get(s.url(path)).bearer_auth(&t.access).send();
    seen.push(("GET /v1/me", get("/v1/me").await.unwrap()));
    seen.push(("GET /v1/me/sessions", get("/v1/me/sessions").await.unwrap()));
    seen.push(("GET /oauth/userinfo", get("/oauth/userinfo").await.unwrap()));
    seen.push(("GET /v1/revocations", get("/v1/revocations").await.unwrap()));
    let r = s
        .http
        .patch(s.url("/v1/me"))
        .bearer_auth(&t.access)
        .json(&json!({"fullname": "Nico"}))
        .send()
        .await
        .unwrap();
    seen.push(("PATCH /v1/me", r));
    let r = s
        .http
        .post(s.url("/oauth/userinfo"))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    seen.push(("POST /oauth/userinfo", r));
    let r = s
        .http
        .post(s.url("/oauth/introspect"))
        .basic_auth("rs", Some(&secret))
        .form(&[("token", t.access.as_str())])
        .send()
        .await
        .unwrap();
    seen.push(("POST /oauth/introspect", r));
    let r = s
        .http
        .post(s.url("/oauth/revoke"))
        .basic_auth("rs", Some(&secret))
        .form(&[("token", "unknown")])
        .send()
        .await
        .unwrap();
    seen.push(("POST /oauth/revoke", r));
    let r = s
        .http
        .delete(s.url(&format!("/v1/me/sessions/{}", other.session_id)))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    seen.push(("DELETE /v1/me/sessions/{id}", r));
    seen.push(("POST /v1/auth/refresh", s.refresh(&t.refresh).await));
    seen.push(("GET /v1/nothing", get("/v1/nothing").await.unwrap()));
    for (what, r) in &seen {
        assert!(r.status().as_u16() < 500, "{what}: {}", r.status());
        assert_eq!(
            r.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{what} ({})",
            r.status()
        );
    }
    assert!(seen.iter().filter(|(_, r)| r.status().is_success()).count() >= 11);
    // Public documents keep their public lifetime.
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        let cc = r.headers()["cache-control"].to_str().unwrap().to_string();
        assert!(cc.starts_with("public, max-age="), "{path}: {cc}");
    }
}

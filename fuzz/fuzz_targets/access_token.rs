//! Fuzzes access-token verification (header parsing, claims, time checks): the
//! input as a raw token, and — split at the first NUL byte — as a header and a
//! payload signed with a real key, so the checks after the signature run too.
//! `$KID` in the header stands for the real key id. Nothing may panic, and only
//! a token with a valid signature may ever verify.
#![no_main]

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tessera_jose::{Algorithm, KeySet, LoadedKey, VerifyOptions, generate_key};

const NOW: i64 = 1_800_000_000;

struct Fixture {
    keys: KeySet,
    signer: Ed25519KeyPair,
    kid: String,
    opts: VerifyOptions,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let stored = generate_key(Algorithm::EdDSA, NOW, NOW).expect("key");
        let signer = Ed25519KeyPair::from_pkcs8(&stored.private_der).expect("pkcs8");
        let kid = stored.kid.clone();
        let loaded = LoadedKey::from_stored(&stored).expect("load");
        Fixture {
            keys: KeySet::new(vec![loaded], Algorithm::EdDSA, NOW).expect("key set"),
            signer,
            kid,
            opts: VerifyOptions {
                issuer: "https://id.example".into(),
                audience: "api".into(),
                leeway: 30,
                max_lifetime: 900,
            },
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(token) = std::str::from_utf8(data) {
        // Unsigned by us: it must never verify.
        assert!(f.keys.verify(token, &f.opts, NOW).is_err());
    }
    if let Some(split) = data.iter().position(|b| *b == 0) {
        let header = String::from_utf8_lossy(&data[..split]).replace("$KID", &f.kid);
        let payload = &data[split + 1..];
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.as_bytes()),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig = f.signer.sign(input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        if let Ok(claims) = f.keys.verify(&token, &f.opts, NOW) {
            // Whatever verifies obeys the rules it was verified against.
            assert_eq!(claims.iss, f.opts.issuer);
            assert!(claims.aud.contains(&f.opts.audience));
            assert!(NOW < claims.exp + f.opts.leeway);
            assert!(claims.iat <= NOW + f.opts.leeway && claims.iat < claims.exp);
            assert!(claims.exp - claims.iat <= f.opts.max_lifetime + f.opts.leeway);
            assert!(!claims.sub.is_empty() && !claims.sid.is_empty());
        }
    }
});

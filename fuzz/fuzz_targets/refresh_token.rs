//! Fuzzes the refresh-token codec: arbitrary text must be refused without a
//! panic, and any 24 bytes (a session id and a counter) must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::{RefreshToken, RefreshTokenCodec};

const SECRET: &[u8] = b"fuzzing-secret-of-at-least-32-bytes!";

fuzz_target!(|data: &[u8]| {
    let codec = RefreshTokenCodec::new(SECRET);
    if let Ok(text) = std::str::from_utf8(data) {
        // Not made by this codec: never accepted (a forgery would need the MAC).
        assert!(codec.decode(text).is_err());
    }
    if data.len() >= 24 {
        let id = u128::from_be_bytes(data[..16].try_into().unwrap());
        let counter = u64::from_be_bytes(data[16..24].try_into().unwrap());
        let token = RefreshToken {
            session_id: uuid::Uuid::from_u128(id),
            counter,
        };
        let encoded = codec.encode(token);
        assert_eq!(codec.decode(&encoded), Ok(token));
        // Any single changed character is refused.
        let pos = 4 + (data.len() % (encoded.len() - 4));
        let mut bad = encoded.clone().into_bytes();
        bad[pos] = if bad[pos] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(codec.decode(&bad).is_err());
    }
});

//! Time spans in the forms Node users already write: `900`, `"900"`, `"15m"`,
//! `"2h"`, `"10d"`, `"1w"`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A positive length of time in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(u64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not a time span; use seconds (`900`) or a number with one unit s, m, h, d or w (`15m`, `10d`)"
)]
pub struct SpanError(String);

/// Upper bound keeps every span representable as an i64 timestamp offset.
const MAX_SECONDS: u64 = 100 * 365 * 86_400;

impl Span {
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }
    pub const fn secs(self) -> u64 {
        self.0
    }
    pub const fn as_i64(self) -> i64 {
        self.0 as i64
    }
}

impl FromStr for Span {
    type Err = SpanError;
    fn from_str(raw: &str) -> Result<Self, SpanError> {
        let err = || SpanError(raw.to_string());
        let s = raw.trim();
        let (digits, unit) = match s.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
            Some(_) => (s, 's'),
            None => return Err(err()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let n: u64 = digits.parse().map_err(|_| err())?;
        let mult = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(err()),
        };
        let secs = n
            .checked_mul(mult)
            .filter(|v| *v <= MAX_SECONDS)
            .ok_or_else(err)?;
        Ok(Span(secs))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        for (unit, size) in [('w', 604_800), ('d', 86_400), ('h', 3_600), ('m', 60)] {
            if s != 0 && s.is_multiple_of(size) {
                return write!(f, "{}{}", s / size, unit);
            }
        }
        write!(f, "{s}s")
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time span such as 900, \"15m\", \"2h\", \"10d\" or \"1w\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Span, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Span, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Span, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_node_forms() {
        for (raw, secs) in [
            ("900", 900),
            ("15m", 900),
            ("2h", 7200),
            ("10d", 864_000),
            ("1w", 604_800),
            ("30s", 30),
            (" 5m ", 300),
            ("0", 0),
        ] {
            assert_eq!(raw.parse::<Span>().unwrap().secs(), secs, "{raw}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for raw in [
            "",
            "m",
            "15x",
            "1.5h",
            "-5m",
            "15 m",
            "1h30m",
            "15M",
            "abc",
            "९",
            "99999999999999999999",
            "5000000w",
        ] {
            assert!(raw.parse::<Span>().is_err(), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [0u64, 1, 59, 60, 900, 3600, 86_400, 864_000, 604_800, 90_061] {
            let span = Span(s);
            assert_eq!(span.to_string().parse::<Span>().unwrap(), span);
        }
    }
}

//! Time spans in the forms Node users already write: `900`, `"900"`, `"15m"`,
//! `"2h"`, `"10d"`, `"1w"`, and compounds of them such as `"1h30m"` or `"1d12h"`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A positive length of time in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(u64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not a time span; use seconds (`900`), a number with a unit s, m, h, d or w (`15m`, `10d`), or units from largest to smallest (`1h30m`)"
)]
pub struct SpanError(String);

/// Upper bound keeps every span representable as an i64 timestamp offset.
const MAX_SECONDS: u64 = 100 * 365 * 86_400;

/// The units, largest first; a compound span names each at most once, in this order.
const UNITS: [(char, u64); 5] = [
    ('w', 604_800),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

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
    /// Whole seconds (`900`), or one or more `<digits><unit>` parts with units
    /// from largest to smallest, each at most once (`2h`, `1h30m`, `1w2d`). No
    /// signs, fractions, spaces inside, upper-case or bare units.
    fn from_str(raw: &str) -> Result<Self, SpanError> {
        let err = || SpanError(raw.to_string());
        let s = raw.trim();
        if s.is_empty() {
            return Err(err());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            let n: u64 = s.parse().map_err(|_| err())?;
            return (n <= MAX_SECONDS).then_some(Span(n)).ok_or_else(err);
        }
        let mut total: u64 = 0;
        // Index into UNITS of the next unit allowed: each part must be smaller.
        let mut next_unit = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| err())?;
            let unit = rest[digits..].chars().next().ok_or_else(err)?;
            let at = UNITS[next_unit..]
                .iter()
                .position(|(u, _)| *u == unit)
                .ok_or_else(err)?
                + next_unit;
            next_unit = at + 1;
            total = n
                .checked_mul(UNITS[at].1)
                .and_then(|v| v.checked_add(total))
                .filter(|v| *v <= MAX_SECONDS)
                .ok_or_else(err)?;
            rest = &rest[digits + unit.len_utf8()..];
        }
        Ok(Span(total))
    }
}

impl fmt::Display for Span {
    /// Whole weeks as `Nw`, otherwise days, hours, minutes and seconds, largest
    /// first and zero parts left out: `15m`, `10d`, `1h30m`, `1d5s`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s == 0 {
            return f.write_str("0s");
        }
        if s.is_multiple_of(UNITS[0].1) {
            return write!(f, "{}w", s / UNITS[0].1);
        }
        let mut left = s;
        for (unit, size) in &UNITS[1..] {
            if left >= *size {
                write!(f, "{}{}", left / size, unit)?;
                left %= size;
            }
        }
        Ok(())
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
                f.write_str(
                    "a time span such as 900, \"15m\", \"2h\", \"10d\", \"1w\" or \"1h30m\"",
                )
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
    use proptest::prelude::*;

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
    fn accepts_compounds_largest_unit_first() {
        for (raw, secs) in [
            ("1h30m", 5_400),
            ("1d12h", 129_600),
            ("2m30s", 150),
            ("1w2d3h4m5s", 604_800 + 2 * 86_400 + 3 * 3_600 + 4 * 60 + 5),
            ("2h0m", 7_200),
            ("1w1s", 604_801),
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
            "+5m",
            "15 m",
            "15M",
            "abc",
            "९",
            "99999999999999999999",
            "5000000w",
            // Compounds: units largest first, each once, nothing between or after.
            "30m1h",
            "1m1m",
            "1h 30m",
            "1h30",
            "h30m",
            "1h-30m",
            "1h30mm",
            "1hour",
            "1h_30m",
            "5214w6d23h59m59s",
        ] {
            assert!(raw.parse::<Span>().is_err(), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn display_round_trips() {
        for (s, shown) in [
            (0u64, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m"),
            (90, "1m30s"),
            (900, "15m"),
            (3600, "1h"),
            (5_400, "1h30m"),
            (86_400, "1d"),
            (86_460, "1d1m"),
            (864_000, "10d"),
            (604_800, "1w"),
            (1_209_600, "2w"),
            (90_061, "1d1h1m1s"),
        ] {
            let span = Span(s);
            assert_eq!(span.to_string(), shown);
            assert_eq!(span.to_string().parse::<Span>().unwrap(), span);
        }
    }

    proptest! {
        #[test]
        fn every_span_round_trips_through_its_display(secs in 0..=MAX_SECONDS) {
            let span = Span(secs);
            prop_assert_eq!(span.to_string().parse::<Span>(), Ok(span));
            prop_assert_eq!(secs.to_string().parse::<Span>(), Ok(span));
        }

        #[test]
        fn compounds_add_up(w in 0u64..100, d in 0u64..7, h in 0u64..24, m in 0u64..60, s in 0u64..60) {
            let raw = format!("{w}w{d}d{h}h{m}m{s}s");
            let want = w * 604_800 + d * 86_400 + h * 3_600 + m * 60 + s;
            prop_assert_eq!(raw.parse::<Span>().map(Span::secs), Ok(want));
        }

        #[test]
        fn arbitrary_text_never_panics(raw in "\\PC{0,12}") {
            let _ = raw.parse::<Span>();
        }
    }
}

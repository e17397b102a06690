//! Throttling of logins, registrations and refreshes (contract §6), and the client
//! address they are keyed on. Login and registration counters live in the database
//! so every instance shares them; the refresh limit is per instance, in memory.
//!
//! Each limit is a fixed window: at most `N` attempts in `SPAN` from the first one.
//! Attempts are counted *before* any password is hashed, so a burst of parallel
//! attempts cannot overshoot a limit and a refused attempt costs no hash. Hammering
//! on does not extend a window. Logins are limited three ways:
//!
//! * per address (`login_limit_ip`): one source guessing across many accounts;
//! * per account and address (`login_limit_account_ip`): the strict one; a correct
//!   password clears it;
//! * per account (`login_limit_account`): generous, it slows guessing spread over
//!   many addresses. It never applies from an address the account logged in from
//!   recently, so a flood from elsewhere cannot lock the owner out where they
//!   usually are, and elsewhere it only delays them until the window ends.
//!
//! Accounts are keyed on the login as typed (normalized), never on whether it
//! exists, so throttling tells nothing about which accounts exist. The key is a MAC
//! of the login: a password typed into the login field is not stored readably.

use crate::error::{AppError, AppResult};
use crate::{App, Caller};
use aws_lc_rs::hmac;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use tessera_core::Span;
use tessera_core::validate::{self, LoginKey};

/// How long a successful login exempts its address from the per-account limit.
const KNOWN_ADDRESS_SECS: i64 = 30 * 86_400;

/// At most `hits` attempts per `window`; `hits == 0` means the limit is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub hits: u32,
    pub window: Span,
}

impl Limit {
    pub const OFF: Limit = Limit {
        hits: 0,
        window: Span::from_secs(1),
    };
    pub const fn new(hits: u32, window_secs: u64) -> Self {
        Self {
            hits,
            window: Span::from_secs(window_secs),
        }
    }
}

impl FromStr for Limit {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Limit::OFF);
        }
        let err = || {
            format!(
                "`{raw}` is not a limit; use attempts/span such as `5/5m` or `100/1h`, or `off`"
            )
        };
        let (n, span) = s.split_once('/').ok_or_else(err)?;
        let hits: u32 = n.trim().parse().map_err(|_| err())?;
        let window: Span = span.trim().parse().map_err(|_| err())?;
        if hits == 0 || window.secs() == 0 {
            return Err(err());
        }
        Ok(Limit { hits, window })
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hits == 0 {
            f.write_str("off")
        } else {
            write!(f, "{}/{}", self.hits, self.window)
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Login, registration and refresh limits (all configurable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleSettings {
    pub login_ip: Limit,
    pub login_account: Limit,
    pub login_account_ip: Limit,
    pub register_ip: Limit,
    pub refresh_ip: Limit,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            login_ip: Limit::new(100, 300),
            login_account: Limit::new(30, 300),
            login_account_ip: Limit::new(5, 300),
            register_ip: Limit::new(20, 900),
            refresh_ip: Limit::new(600, 60),
        }
    }
}

/// The throttle bucket of an address: itself, or its /64 for IPv6 (one host
/// usually holds a whole /64).
fn bucket(ip: &str) -> String {
    match ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(v4) => v4.to_string(),
        Err(_) => ip.to_string(),
    }
}

/// Names accounts in throttle keys by a MAC of their normalized login.
pub struct Throttle {
    key: hmac::Key,
    /// Per-instance windows for the refresh limit (see [`LocalWindows`]).
    local: LocalWindows,
}

/// Fixed windows kept in this instance's memory. Refreshes are limited here rather
/// than in the database so a refresh stays one small write (the rotation) — a
/// refresh token cannot be guessed, so the limit only caps load, and a per-instance
/// count does that. The map is bounded: expired windows are dropped when it fills,
/// and if every entry is live the half with the fewest hits goes (never growing).
#[derive(Default)]
struct LocalWindows(std::sync::Mutex<std::collections::HashMap<String, (i64, u32)>>);

const LOCAL_WINDOWS_MAX: usize = 65_536;

impl LocalWindows {
    /// Counts a hit; returns the hits in the window and when the window ends.
    fn hit(&self, key: &str, now: i64, window: i64) -> (u32, i64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= LOCAL_WINDOWS_MAX && !map.contains_key(key) {
            map.retain(|_, (start, _)| *start + window > now);
            if map.len() >= LOCAL_WINDOWS_MAX {
                // Every window is live: drop the quieter half, so one client
                // spraying addresses cannot reset everyone's busiest counters.
                let mut hits: Vec<u32> = map.values().map(|(_, h)| *h).collect();
                let (_, median, _) = hits.select_nth_unstable(LOCAL_WINDOWS_MAX / 2);
                let median = *median;
                map.retain(|_, (_, h)| *h > median);
            }
        }
        let entry = map.entry(key.to_string()).or_insert((now, 0));
        if entry.0 + window <= now {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        (entry.1, entry.0 + window)
    }
}

impl Throttle {
    pub fn new(secret: &[u8]) -> Self {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, secret),
            b"tessera/throttle-key/v1",
        );
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            local: LocalWindows::default(),
        }
    }

    fn account(&self, login: &str) -> String {
        let normalized = match validate::login_key(login) {
            LoginKey::Email(e) => format!("e:{e}"),
            LoginKey::Username(u) => format!("u:{u}"),
        };
        let tag = hmac::sign(&self.key, normalized.as_bytes());
        tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl App {
    /// Counts a login attempt for `login` from `client`; 429 when a limit is spent.
    pub(crate) async fn throttle_login(&self, login: &str, client: &Caller) -> AppResult<()> {
        let t = &self.settings.throttle;
        let account = self.throttle.account(login);
        if let Some(ip) = client.ip.as_deref().map(bucket) {
            self.count(
                "login per address",
                &format!("login:ip:{ip}"),
                t.login_ip,
                None,
                client,
            )
            .await?;
            let key = format!("login:acct-ip:{account}:{ip}");
            self.count(
                "login per account and address",
                &key,
                t.login_account_ip,
                Some(login),
                client,
            )
            .await?;
            let known = format!("login:known:{account}:{ip}");
            if self
                .store
                .throttle_peek(&known, self.now())
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        let key = format!("login:acct:{account}");
        self.count(
            "login per account",
            &key,
            t.login_account,
            Some(login),
            client,
        )
        .await
    }

    /// After a correct password: clears the strict counter and remembers the address.
    pub(crate) async fn login_succeeded(&self, login: &str, client: &Caller) {
        let Some(ip) = client.ip.as_deref().map(bucket) else {
            return;
        };
        let account = self.throttle.account(login);
        let cleared = self
            .store
            .throttle_clear(&format!("login:acct-ip:{account}:{ip}"))
            .await;
        let known = self
            .store
            .throttle_hit(
                &format!("login:known:{account}:{ip}"),
                self.now(),
                KNOWN_ADDRESS_SECS,
            )
            .await;
        if let Err(e) = cleared.and(known.map(|_| ())) {
            tracing::warn!(error = %e, "could not update login throttle state");
        }
    }

    /// Counts one `kind` request (`register`, `refresh`) from the client's address;
    /// 429 when the limit is spent.
    pub(crate) async fn throttle_ip(
        &self,
        kind: &str,
        limit: Limit,
        client: &Caller,
    ) -> AppResult<()> {
        match client.ip.as_deref() {
            Some(ip) => {
                let key = format!("{kind}:ip:{}", bucket(ip));
                let what = format!("{kind} per address");
                self.count(&what, &key, limit, None, client).await
            }
            None => Ok(()),
        }
    }

    /// Counts one `kind` request (a mailed link) about the account `login` names,
    /// whether or not it exists; false when the limit is spent (the caller then
    /// sends nothing, and answers as usual).
    pub(crate) async fn throttle_account_mail(
        &self,
        kind: &str,
        login: &str,
        limit: Limit,
        client: &Caller,
    ) -> AppResult<bool> {
        let key = format!("{kind}:acct:{}", self.throttle.account(login));
        let what = format!("{kind} per account");
        match self.count(&what, &key, limit, None, client).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind == crate::ErrorKind::RateLimited => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Counts one refresh from the client's address in this instance's memory;
    /// 429 when the limit is spent.
    pub(crate) async fn throttle_refresh(&self, limit: Limit, client: &Caller) -> AppResult<()> {
        let Some(ip) = client.ip.as_deref() else {
            return Ok(());
        };
        if limit.hits == 0 {
            return Ok(());
        }
        let now = self.now();
        let (hits, ends) = self
            .throttle
            .local
            .hit(&bucket(ip), now, limit.window.as_i64());
        if hits <= limit.hits {
            return Ok(());
        }
        let wait = (ends - now).max(1) as u64;
        if hits == limit.hits.saturating_add(1) {
            let detail = format!("refresh per address: more than {limit}; retry in {wait}s");
            self.audit("throttled", None, None, client, Some(detail))
                .await;
        } else {
            self.metrics.on_rate_limited();
        }
        Err(AppError::rate_limited(wait))
    }

    /// One hit on `key`. The first refusal in a window is audited (with the user
    /// the login names, when there is one); later ones only counted.
    async fn count(
        &self,
        what: &str,
        key: &str,
        limit: Limit,
        login: Option<&str>,
        client: &Caller,
    ) -> AppResult<()> {
        if limit.hits == 0 {
            return Ok(());
        }
        let now = self.now();
        let state = self
            .store
            .throttle_hit(key, now, limit.window.as_i64())
            .await?;
        if state.hits <= limit.hits {
            return Ok(());
        }
        let wait = (state.window_ends_at - now).max(1) as u64;
        if state.hits == limit.hits.saturating_add(1) {
            let user = match login {
                Some(l) => self
                    .store
                    .find_user_for_login(&validate::login_key(l))
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.user.id),
                None => None,
            };
            tracing::info!(limit = what, retry_after = wait, "throttled");
            // `audit` also counts the refusal in the metrics.
            let detail = format!("{what}: more than {limit}; retry in {wait}s");
            self.audit("throttled", user, None, client, Some(detail))
                .await;
        } else {
            self.metrics.on_rate_limited();
        }
        Err(AppError::rate_limited(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_print() {
        assert_eq!("5/5m".parse::<Limit>().unwrap(), Limit::new(5, 300));
        assert_eq!(
            " 100 / 1h ".parse::<Limit>().unwrap(),
            Limit::new(100, 3600)
        );
        assert_eq!("off".parse::<Limit>().unwrap(), Limit::OFF);
        assert_eq!(Limit::new(5, 300).to_string(), "5/5m");
        assert_eq!(Limit::OFF.to_string(), "off");
        for bad in [
            "",
            "5",
            "0/5m",
            "5/0",
            "-1/5m",
            "5/5 minutes",
            "x/5m",
            "5/5m/1",
        ] {
            assert!(bad.parse::<Limit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn local_windows_count_reset_and_stay_bounded() {
        let w = LocalWindows::default();
        assert_eq!(w.hit("a", 100, 60), (1, 160));
        assert_eq!(w.hit("a", 159, 60), (2, 160));
        assert_eq!(w.hit("a", 160, 60), (1, 220), "a new window");
        for _ in 0..100 {
            w.hit("busy", 1000, 60);
        }
        for i in 0..(LOCAL_WINDOWS_MAX + 10) {
            w.hit(&format!("k{i}"), 1000, 60);
        }
        assert!(w.0.lock().unwrap().len() <= LOCAL_WINDOWS_MAX);
        assert_eq!(
            w.hit("busy", 1001, 60).0,
            101,
            "a spray of addresses cannot reset a busy counter"
        );
    }

    #[test]
    fn buckets_group_ipv6_by_64() {
        assert_eq!(bucket("203.0.113.7"), "203.0.113.7");
        assert_eq!(bucket("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(bucket("2001:db8:1:2::ffff"), "2001:db8:1:2::/64");
        assert_eq!(bucket("::ffff:203.0.113.7"), "203.0.113.7");
    }

    #[test]
    fn account_keys_are_normalized_and_opaque() {
        let t = Throttle::new(b"0123456789abcdef0123456789abcdef");
        assert_eq!(t.account("Alice"), t.account(" alice "));
        assert_eq!(t.account("A@Example.com"), t.account("a@example.com"));
        assert_ne!(t.account("alice"), t.account("bob"));
        assert!(!t.account("alice").contains("alice"));
        assert_eq!(t.account("alice").len(), 32);
        let other = Throttle::new(b"another secret of enough length!!");
        assert_ne!(t.account("alice"), other.account("alice"));
    }
}

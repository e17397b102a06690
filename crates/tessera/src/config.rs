//! Configuration: flag > environment > `tessera.toml` > default (SPEC §3).
//! Invalid values stop start-up with a message naming the setting.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tessera_app::{Limit, ProfileClaims};
use tessera_core::Span;
use tessera_jose::Algorithm;

/// Environment names the seed tutorials use, read without a prefix.
const SEED_ENV: &[&str] = &[
    "ACCESS_TOKEN_EXPIRY",
    "REFRESH_TOKEN_EXPIRY",
    "ACCESS_TOKEN_SECRET",
    "REFRESH_TOKEN_SECRET",
];

/// Accepts a string or a number (environment values like `123` parse as numbers).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Signed(i64),
        Unsigned(u64),
        Float(f64),
    }
    Ok(Option::<Raw>::deserialize(d)?.map(|v| match v {
        Raw::Text(s) => s,
        Raw::Signed(i) => i.to_string(),
        Raw::Unsigned(u) => u.to_string(),
        Raw::Float(f) => f.to_string(),
    }))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    #[serde(default, deserialize_with = "lenient_string")]
    pub database_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub issuer: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub audience: Option<String>,
    pub access_token_expiry: Span,
    pub refresh_token_expiry: Span,
    pub session_max_lifetime: Span,
    pub refresh_grace: Span,
    pub leeway: Span,
    #[serde(default, deserialize_with = "lenient_string")]
    pub access_token_secret: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub refresh_token_secret: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub master_key: Option<String>,
    pub signing_alg: String,
    #[serde(deserialize_with = "lenient_string")]
    pub access_token_claims: Option<String>,
    pub cookie_secure: bool,
    /// Comma-separated origins allowed to make cookie-authenticated requests.
    #[serde(default, deserialize_with = "lenient_string")]
    pub trusted_origins: Option<String>,
    pub body_limit: usize,
    pub request_timeout: Span,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Span,
    /// Whether `/oauth/token` accepts `grant_type=password` from first-party clients.
    pub password_grant: bool,
    pub jwks_max_age: Span,
    /// How often each instance re-reads the signing keys from the database.
    pub key_reload_interval: Span,
    pub database_pool_size: u32,
    pub database_min_connections: u32,
    /// How long a request waits for a database connection before answering 503.
    pub database_acquire_timeout: Span,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub hash_workers: usize,
    pub hash_queue: usize,
    /// Proxies whose `X-Forwarded-For` is believed: addresses or CIDR ranges, as a
    /// list or one comma-separated string. Empty: the socket address is the client.
    #[serde(default, deserialize_with = "string_list")]
    pub trusted_proxies: Vec<String>,
    /// Throttling, each `attempts/span` (such as `5/5m`) or `off`.
    pub login_limit_ip: Limit,
    pub login_limit_account: Limit,
    pub login_limit_account_ip: Limit,
    pub register_limit_ip: Limit,
    pub refresh_limit_ip: Limit,
    /// How long audit events (and ended sessions) are kept before pruning.
    pub audit_retention: Span,
    pub log: String,
    // The HTTP edge as operators run it.
    /// How long a request body may stall before the request is answered 408.
    pub body_read_timeout: Span,
    /// Log lines as `text` or `json` (one object per line).
    pub log_format: LogFormat,
    /// Where `/metrics` is served: unset, on the main listener; an address, on a
    /// listener of its own (and not on the main one); `off`, nowhere.
    #[serde(default, deserialize_with = "lenient_string")]
    pub metrics_listen: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        let hash = tessera_app::HashSettings::default();
        let throttle = tessera_app::ThrottleSettings::default();
        Self {
            data_dir: PathBuf::from("./tessera-data"),
            listen: "127.0.0.1:8080".parse().expect("valid default"),
            database_url: None,
            issuer: None,
            audience: Some("tessera".into()),
            access_token_expiry: Span::from_secs(15 * 60),
            refresh_token_expiry: Span::from_secs(10 * 86_400),
            session_max_lifetime: Span::from_secs(30 * 86_400),
            refresh_grace: Span::from_secs(10),
            leeway: Span::from_secs(30),
            access_token_secret: None,
            refresh_token_secret: None,
            master_key: None,
            signing_alg: "EdDSA".into(),
            access_token_claims: Some("email,username,fullname".into()),
            cookie_secure: true,
            trusted_origins: None,
            body_limit: 16 * 1024,
            request_timeout: Span::from_secs(30),
            header_read_timeout: Span::from_secs(10),
            password_grant: true,
            jwks_max_age: Span::from_secs(300),
            key_reload_interval: Span::from_secs(10),
            database_pool_size: 8,
            database_min_connections: 0,
            database_acquire_timeout: Span::from_secs(5),
            argon2_memory_kib: hash.memory_kib,
            argon2_iterations: hash.iterations,
            argon2_parallelism: hash.parallelism,
            // One core stays free for the runtime: a login flood must not slow
            // refresh and token checks (measured: all cores hashing doubles them).
            hash_workers: std::thread::available_parallelism()
                .map(|n| n.get().saturating_sub(1).max(1))
                .unwrap_or(1),
            hash_queue: hash.queue,
            trusted_proxies: Vec::new(),
            login_limit_ip: throttle.login_ip,
            login_limit_account: throttle.login_account,
            login_limit_account_ip: throttle.login_account_ip,
            register_limit_ip: throttle.register_ip,
            refresh_limit_ip: throttle.refresh_ip,
            audit_retention: Span::from_secs(90 * 86_400),
            log: "info".into(),
            body_read_timeout: Span::from_secs(10),
            log_format: LogFormat::Text,
            metrics_listen: None,
        }
    }
}

/// A list given as an array or as one comma-separated string (environment).
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    let items = match Option::<Raw>::deserialize(d)? {
        None => Vec::new(),
        Some(Raw::One(s)) => vec![s],
        Some(Raw::Many(v)) => v,
    };
    Ok(items
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Values given on the command line; `None` leaves the setting to lower layers.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

/// The settings, checked and turned into the types the rest of the program uses.
#[derive(Debug, Clone)]
pub struct Validated {
    pub server: tessera_app::Settings,
    pub http: tessera_server::HttpSettings,
    pub hash: tessera_app::HashSettings,
    pub database_url: String,
    pub hs256_secret: Option<Vec<u8>>,
    pub master_key: Option<Vec<u8>>,
}

fn bad(setting: &str, accepted: &str) -> String {
    format!("invalid setting `{setting}`: {accepted}")
}

impl Config {
    /// Reads the layers. `config_file` is `--config`; without it `tessera.toml` in the
    /// working directory is read when present.
    pub fn load(config_file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match config_file {
            Some(path) => {
                if !path.exists() {
                    return Err(format!("config file {} does not exist", path.display()));
                }
                fig = fig.merge(Toml::file_exact(path));
            }
            None if Path::new("tessera.toml").exists() => {
                fig = fig.merge(Toml::file_exact("tessera.toml"))
            }
            None => {}
        }
        let fig = fig
            .merge(Env::raw().only(SEED_ENV))
            .merge(Env::prefixed("TESSERA_"))
            .merge(Serialized::defaults(flags));
        fig.extract::<Config>().map_err(|e| {
            let key = e.path.join(".");
            let key = if key.is_empty() {
                String::from("(configuration)")
            } else {
                key
            };
            format!("invalid setting `{key}`: {}", e.kind)
        })
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("tessera.db").display()))
    }

    pub fn issuer(&self) -> String {
        self.issuer.clone().unwrap_or_else(|| {
            let mut addr = self.listen;
            if addr.ip().is_unspecified() || addr.port() == 0 {
                addr.set_ip([127, 0, 0, 1].into());
                if addr.port() == 0 {
                    addr.set_port(8080);
                }
            }
            format!("http://{addr}")
        })
    }

    pub fn validate(&self) -> Result<Validated, String> {
        let positive = |name: &str, s: Span| {
            if s.secs() == 0 {
                Err(bad(name, "must be longer than 0 seconds"))
            } else {
                Ok(s.as_i64())
            }
        };
        let access_ttl = positive("access_token_expiry", self.access_token_expiry)?;
        let refresh_idle = positive("refresh_token_expiry", self.refresh_token_expiry)?;
        let session_max = positive("session_max_lifetime", self.session_max_lifetime)?;
        let issuer = self.issuer();
        if !(issuer.starts_with("http://") || issuer.starts_with("https://")) || issuer.len() < 9 {
            return Err(bad("issuer", "must be an http:// or https:// URL"));
        }
        let audience = self.audience.clone().unwrap_or_default();
        if audience.is_empty() {
            return Err(bad("audience", "must not be empty"));
        }
        let hs256_secret = match &self.access_token_secret {
            Some(s) if s.len() < 32 => {
                return Err(bad("ACCESS_TOKEN_SECRET", "must be at least 32 bytes long"));
            }
            Some(s) => Some(s.as_bytes().to_vec()),
            None => None,
        };
        let mut signing_alg: Algorithm = self.signing_alg.parse().map_err(|_| {
            bad(
                "signing_alg (TESSERA_SIGNING_ALG)",
                "one of EdDSA, ES256, RS256, HS256",
            )
        })?;
        if hs256_secret.is_some() {
            signing_alg = Algorithm::HS256;
        } else if signing_alg == Algorithm::HS256 {
            return Err(bad(
                "signing_alg (TESSERA_SIGNING_ALG)",
                "HS256 needs ACCESS_TOKEN_SECRET (at least 32 bytes)",
            ));
        }
        let master_key = match &self.master_key {
            Some(m) if m.len() < 32 => {
                return Err(bad("master_key (TESSERA_MASTER_KEY)", "at least 32 bytes"));
            }
            other => other.as_ref().map(|m| m.as_bytes().to_vec()),
        };
        if self.key_reload_interval.secs() == 0 {
            return Err(bad("key_reload_interval", "must be longer than 0 seconds"));
        }
        if let Some(s) = &self.refresh_token_secret
            && s.len() < 32
        {
            return Err(bad(
                "REFRESH_TOKEN_SECRET",
                "must be at least 32 bytes long",
            ));
        }
        let mut claims = ProfileClaims {
            email: false,
            username: false,
            fullname: false,
        };
        for c in self
            .access_token_claims
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            match c {
                "email" => claims.email = true,
                "username" => claims.username = true,
                "fullname" => claims.fullname = true,
                _ => {
                    return Err(bad(
                        "access_token_claims",
                        "a comma-separated list of email, username, fullname (or empty)",
                    ));
                }
            }
        }
        if self.body_limit < 1024 {
            return Err(bad("body_limit", "at least 1024 bytes"));
        }
        if self.hash_workers == 0 {
            return Err(bad("hash_workers", "at least 1"));
        }
        let database_url = self.database_url();
        let postgres =
            database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
        if !postgres && !database_url.starts_with("sqlite:") {
            return Err(bad(
                "database_url",
                "a sqlite:// URL (sqlite://./tessera-data/tessera.db) or a postgres:// URL",
            ));
        }
        if postgres && self.refresh_token_secret.is_none() {
            // Every instance on a shared database must verify every other's refresh
            // tokens, and the secret must not live in the database it protects.
            return Err(bad(
                "REFRESH_TOKEN_SECRET",
                "must be set (at least 32 bytes, the same on every instance) when the database is PostgreSQL",
            ));
        }
        if self.database_pool_size == 0 || self.database_min_connections > self.database_pool_size {
            return Err(bad(
                "database_pool_size / database_min_connections",
                "a pool size of at least 1 and not below the minimum",
            ));
        }
        let own_origin = tessera_server::parse_origin(&origin_of(&issuer))
            .map_err(|_| bad("issuer", "must be an http:// or https:// URL"))?;
        let trusted_origins = self
            .trusted_origins
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(tessera_server::parse_origin)
            .chain(std::iter::once(Ok(own_origin)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("trusted_origins (TESSERA_TRUSTED_ORIGINS)", &e))?;
        let metrics = match self.metrics_listen.as_deref().map(str::trim) {
            None | Some("") => tessera_server::MetricsExposure::Main,
            Some("off") => tessera_server::MetricsExposure::Off,
            Some(addr) => {
                tessera_server::MetricsExposure::Separate(addr.parse().map_err(|_| {
                    bad(
                        "metrics_listen (TESSERA_METRICS_LISTEN)",
                        "an address such as 127.0.0.1:9090, or off",
                    )
                })?)
            }
        };
        positive("body_read_timeout", self.body_read_timeout)?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|p| p.parse::<tessera_server::IpNet>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("trusted_proxies (TESSERA_TRUSTED_PROXIES)", &e))?;
        positive("audit_retention", self.audit_retention)?;
        let hash = tessera_app::HashSettings {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
            workers: self.hash_workers,
            queue: self.hash_queue,
        };
        hash.check().map_err(|e| {
            bad(
                "argon2_memory_kib / argon2_iterations / argon2_parallelism",
                &e,
            )
        })?;
        Ok(Validated {
            server: tessera_app::Settings {
                issuer,
                audience,
                access_ttl,
                refresh_idle,
                session_max,
                refresh_grace: self.refresh_grace.as_i64(),
                leeway: self.leeway.as_i64(),
                profile_claims: claims,
                signing_alg,
                client_id: "tessera".into(),
                password_grant: self.password_grant,
                jwks_max_age: self.jwks_max_age.as_i64(),
                throttle: tessera_app::ThrottleSettings {
                    login_ip: self.login_limit_ip,
                    login_account: self.login_limit_account,
                    login_account_ip: self.login_limit_account_ip,
                    register_ip: self.register_limit_ip,
                    refresh_ip: self.refresh_limit_ip,
                },
            },
            http: tessera_server::HttpSettings {
                cookie_secure: self.cookie_secure,
                trusted_origins,
                body_limit: self.body_limit,
                request_timeout: std::time::Duration::from_secs(self.request_timeout.secs().max(1)),
                trusted_proxies,
                body_read_timeout: std::time::Duration::from_secs(self.body_read_timeout.secs()),
                metrics,
            },
            hash,
            database_url,
            hs256_secret,
            master_key,
        })
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn show(&self) -> String {
        let mut c = self.clone();
        for s in [
            &mut c.access_token_secret,
            &mut c.refresh_token_secret,
            &mut c.master_key,
        ] {
            if s.is_some() {
                *s = Some("[redacted]".into());
            }
        }
        c.database_url = Some(redact_url(&self.database_url()));
        c.issuer = Some(self.issuer());
        toml::to_string(&c).unwrap_or_else(|e| format!("# cannot render configuration: {e}"))
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or("")),
        None => url.to_string(),
    }
}

/// Hides passwords in a database URL: the user-info part
/// (`scheme://user:password@host/...`, split at the last `@`, since passwords may
/// contain one) and `password=` query parameters.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let main = match main.rfind('@') {
        Some(at) => {
            let (cred, host) = (&main[..at], &main[at + 1..]);
            match cred.split_once(':') {
                Some((user, _)) => format!("{user}:[redacted]@{host}"),
                None => main.to_string(),
            }
        }
        None => main.to_string(),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => {
                    format!("{k}=[redacted]")
                }
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) => format!("{scheme}://{main}?{q}"),
        None => format!("{scheme}://{main}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_origins_must_be_origins() {
        let mut c = Config {
            trusted_origins: Some("http://localhost:3000, https://app.example.com/".into()),
            ..Config::default()
        };
        let v = c.validate().unwrap();
        let shown: Vec<String> = v
            .http
            .trusted_origins
            .iter()
            .map(|o| o.ascii_serialization())
            .collect();
        assert_eq!(
            shown,
            [
                "http://localhost:3000",
                "https://app.example.com",
                "http://127.0.0.1:8080"
            ]
        );
        for bad in ["localhost:3000", "https://app.example.com/login", "*"] {
            c.trusted_origins = Some(bad.into());
            let e = c.validate().unwrap_err();
            assert!(e.contains("trusted_origins"), "{bad}: {e}");
        }
    }

    #[test]
    fn origins_and_redaction() {
        assert_eq!(
            origin_of("https://id.example.com/base"),
            "https://id.example.com"
        );
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:[redacted]@h/db"
        );
        assert_eq!(
            redact_url("postgres://u:p@ss:w0rd@db/x"),
            "postgres://u:[redacted]@db/x"
        );
        assert_eq!(
            redact_url("postgres://u@db/x?sslmode=require&password=hunter2"),
            "postgres://u@db/x?sslmode=require&password=[redacted]"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}

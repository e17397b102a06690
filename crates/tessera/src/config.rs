//! Configuration: flag > environment > `.env` > `tessera.toml` > default (contract §3).
//! Invalid values and unknown keys stop start-up with a message naming the setting.

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
    /// PostgreSQL: idle connections above `database_min_connections` are closed
    /// after this long.
    pub database_idle_timeout: Span,
    /// PostgreSQL: `transaction` when a connection pooler in transaction mode
    /// (PgBouncer `pool_mode = transaction`) sits between Tessera and the server.
    pub database_pooler: Pooler,
    /// PostgreSQL: judge time (expiry, grace windows, throttling) by the database
    /// server's clock, so instances whose clocks disagree still agree.
    pub database_clock: bool,
    /// SQLite: the largest the database may grow (`512MiB`, `2GiB`, bytes); when it
    /// is full, writes answer 503 and reads keep working. Unset: no limit.
    #[serde(default, deserialize_with = "lenient_string")]
    pub database_max_size: Option<String>,
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
    /// Who may register through the API: `open`, `invite` or `closed`.
    pub signup: tessera_app::SignupPolicy,
    /// `off`, `optional` or `required` (login waits for a confirmed address).
    pub email_verification: tessera_app::EmailVerification,
    /// `smtp://` or `smtps://` server for outgoing mail; unset: `.eml` files in
    /// `<data_dir>/outbox/`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub smtp_url: Option<String>,
    /// The sender of every mail.
    #[serde(default, deserialize_with = "lenient_string")]
    pub mail_from: Option<String>,
    /// Where the values came from; not a setting.
    #[serde(skip)]
    pub sources: Sources,
}

/// The files a configuration was read from, and what reading them noticed.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `tessera.toml` (or `--config`) and `.env`, as read.
    pub files: Vec<PathBuf>,
    /// Variables that look like settings but name none (`TESSERA_LISTN`).
    pub warnings: Vec<String>,
}

/// What sits between Tessera and PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooler {
    /// Direct connections (or a pooler in session mode).
    #[default]
    None,
    /// A pooler in transaction mode: no session state, no named prepared statements.
    Transaction,
}

/// Whether a database URL names PostgreSQL: a `postgres://` / `postgresql://` URL
/// or libpq's keyword form (`host=a,b dbname=auth ...`).
pub fn is_postgres_url(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("postgres://")
        || url.starts_with("postgresql://")
        || (!url.contains("://")
            && !url.starts_with("sqlite:")
            && url
                .split_whitespace()
                .any(|w| w.starts_with("host=") || w.starts_with("dbname=")))
}

/// A size such as `512MiB`, `2GiB`, `64MB` or plain bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let unit: u64 = match s[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
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
            database_idle_timeout: Span::from_secs(600),
            database_pooler: Pooler::None,
            database_clock: true,
            database_max_size: None,
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
            sources: Sources::default(),
            body_read_timeout: Span::from_secs(10),
            log_format: LogFormat::Text,
            metrics_listen: None,
            signup: tessera_app::SignupPolicy::Open,
            email_verification: tessera_app::EmailVerification::Optional,
            smtp_url: None,
            mail_from: None,
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
    /// Settings that work but probably not as meant; `serve` and `config show`
    /// print them.
    pub warnings: Vec<String>,
}

fn bad(setting: &str, accepted: &str) -> String {
    format!("invalid setting `{setting}`: {accepted}")
}

impl Config {
    /// Reads the layers. `config_file` is `--config`; without it `tessera.toml` in the
    /// working directory is read when present. A `.env` file in the working
    /// directory counts as environment, below the real environment.
    pub fn load(config_file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        let mut sources = Sources::default();
        let file = match config_file {
            Some(path) if !path.exists() => {
                return Err(format!("config file {} does not exist", path.display()));
            }
            Some(path) => Some(path.to_path_buf()),
            None if Path::new("tessera.toml").exists() => Some(PathBuf::from("tessera.toml")),
            None => None,
        };
        if let Some(path) = file {
            check_toml_keys(&path)?;
            fig = fig.merge(Toml::file_exact(&path));
            sources.files.push(absolute(&path));
        }
        let dotenv = Path::new(".env");
        if dotenv.is_file() {
            let (values, unknown) = read_dotenv(dotenv)?;
            fig = fig.merge(Serialized::defaults(values));
            sources.files.push(absolute(dotenv));
            sources.warnings.extend(unknown);
        }
        sources.warnings.extend(unknown_env_vars());
        let fig = fig
            .merge(Env::raw().only(SEED_ENV))
            .merge(Env::prefixed("TESSERA_"))
            .merge(Serialized::defaults(flags));
        let mut cfg = fig.extract::<Config>().map_err(|e| {
            let key = e.path.join(".");
            let key = if key.is_empty() {
                String::from("(configuration)")
            } else {
                key
            };
            format!("invalid setting `{key}`: {}", e.kind)
        })?;
        cfg.sources = sources;
        Ok(cfg)
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

    /// The sender: `mail_from`, or `Tessera <no-reply@HOST>` with the issuer's host.
    pub fn mail_from(&self) -> String {
        self.mail_from.clone().unwrap_or_else(|| {
            let host = url::Url::parse(&self.issuer())
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "localhost".into());
            // A bare IP address is no mail domain.
            let domain = if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
                "localhost".to_string()
            } else {
                host
            };
            format!("Tessera <no-reply@{domain}>")
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
        let mut warnings = self.sources.warnings.clone();
        if access_ttl > refresh_idle {
            // The client refreshes when its access token expires; by then the
            // session has idled out, so every refresh would fail.
            return Err(bad(
                "access_token_expiry (ACCESS_TOKEN_EXPIRY)",
                &format!(
                    "{} is longer than refresh_token_expiry (REFRESH_TOKEN_EXPIRY, {}): sessions would expire before their access token needs refreshing; make it at most {}",
                    self.access_token_expiry, self.refresh_token_expiry, self.refresh_token_expiry
                ),
            ));
        }
        if refresh_idle > session_max {
            warnings.push(format!(
                "refresh_token_expiry (REFRESH_TOKEN_EXPIRY, {}) is longer than session_max_lifetime (TESSERA_SESSION_MAX_LIFETIME, {}): every session ends {} after sign-in however often it refreshes; raise session_max_lifetime to let sessions live longer",
                self.refresh_token_expiry, self.session_max_lifetime, self.session_max_lifetime
            ));
        }
        let issuer = self.issuer();
        let issuer_url = check_issuer(&issuer)?;
        if self.cookie_secure && issuer_url.scheme() == "http" && !is_loopback(&issuer_url) {
            warnings.push(format!(
                "cookie_secure is on but the issuer {issuer} is plain http: browsers drop Secure cookies on http, so cookie delivery will not work; serve over https (set TESSERA_ISSUER to the https URL) or set TESSERA_COOKIE_SECURE=false for development"
            ));
        }
        log_filter(&self.log)?;
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
            legacy_id: false,
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
                "legacy_id" => claims.legacy_id = true,
                _ => {
                    return Err(bad(
                        "access_token_claims",
                        "a comma-separated list of email, username, fullname, legacy_id (or empty)",
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
        let postgres = is_postgres_url(&database_url);
        if !postgres && !database_url.starts_with("sqlite:") {
            return Err(bad(
                "database_url",
                "a sqlite:// URL (sqlite://./tessera-data/tessera.db), a postgres:// URL (hosts may be a list: postgres://u@h1,h2/db?target_session_attrs=read-write) or libpq keywords (host=h1,h2 dbname=db ...)",
            ));
        }
        self.database_max_size_bytes()?;
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
        if let Some(url) = &self.smtp_url {
            tessera_app::mail::check_smtp_url(url).map_err(|e| {
                bad(
                    "smtp_url (TESSERA_SMTP_URL)",
                    &format!("smtp://[user:password@]host[:port] (STARTTLS when offered; ?tls=required to insist) or smtps://…; {e}"),
                )
            })?;
        }
        let mail_from = self.mail_from();
        tessera_app::mail::check_mail_from(&mail_from).map_err(|e| {
            bad(
                "mail_from (TESSERA_MAIL_FROM)",
                &format!("an address such as `Tessera <no-reply@example.com>`; {e}"),
            )
        })?;
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
                signup: self.signup,
                email_verification: self.email_verification,
                mail: tessera_app::MailSettings {
                    smtp_url: self.smtp_url.clone(),
                    from: mail_from,
                    outbox_dir: self.data_dir.join("outbox"),
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
            warnings,
        })
    }

    /// `database_max_size` in bytes (`None`: no limit).
    pub fn database_max_size_bytes(&self) -> Result<Option<u64>, String> {
        match self.database_max_size.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => match parse_size(s) {
                Some(n) if n >= 1 << 20 => Ok(Some(n)),
                _ => Err(bad(
                    "database_max_size (TESSERA_DATABASE_MAX_SIZE)",
                    "a size such as 512MiB, 2GiB or a number of bytes (at least 1MiB)",
                )),
            },
        }
    }

    /// The effective configuration as TOML, secrets redacted, after the same
    /// checks as `serve`: the signing algorithm is the one actually used (HS256
    /// whenever `ACCESS_TOKEN_SECRET` is set).
    pub fn show(&self) -> Result<String, String> {
        let v = self.validate()?;
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
        if let Some(url) = &self.smtp_url {
            c.smtp_url = Some(tessera_app::mail::check_smtp_url(url)?);
        }
        c.mail_from = Some(self.mail_from());
        c.issuer = Some(self.issuer());
        c.signing_alg = v.server.signing_alg.to_string();
        let mut out = match self.sources.files.as_slice() {
            [] => "# read from: defaults and environment only\n".to_string(),
            files => format!(
                "# read from: {}, environment\n",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        out.push_str(
            &toml::to_string(&c).map_err(|e| format!("cannot render configuration: {e}"))?,
        );
        Ok(out)
    }
}

/// The issuer must be an absolute http(s) URL with a host and nothing a token's
/// `iss` should not carry: no spaces, credentials, query or fragment.
fn check_issuer(issuer: &str) -> Result<url::Url, String> {
    let bad = || {
        bad(
            "issuer (TESSERA_ISSUER)",
            "an absolute http:// or https:// URL with a host and no spaces, user name, query or fragment, such as https://auth.example.com",
        )
    };
    if issuer.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let url = url::Url::parse(issuer).map_err(|_| bad())?;
    let fine = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if fine { Ok(url) } else { Err(bad()) }
}

/// Whether browsers treat the URL's host as this machine (where they accept
/// `Secure` cookies over plain http).
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// libpq's keyword form with the value of `password=` (quoted or not) replaced.
fn redact_keywords(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("password") {
        let before_ok = at == 0 || rest[..at].ends_with(char::is_whitespace);
        let after = rest[at + "password".len()..].trim_start();
        if !before_ok || !after.starts_with('=') {
            out.push_str(&rest[..at + "password".len()]);
            rest = &rest[at + "password".len()..];
            continue;
        }
        out.push_str(&rest[..at]);
        out.push_str("password=[redacted]");
        let value = after[1..].trim_start();
        rest = if let Some(quoted) = value.strip_prefix('\'') {
            let mut end = quoted.len();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            &quoted[end..]
        } else {
            &value[value.find(char::is_whitespace).unwrap_or(value.len())..]
        };
    }
    out.push_str(rest);
    out
}

/// The log filter `serve` installs: the `log` setting (the default `info` with
/// sqlx's per-query logs kept at `warn`). A filter that does not parse, or a
/// bare word one typo away from a level (`inf`, `debg`), is an error.
pub fn log_filter(log: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    let accepted = "a tracing filter such as `info`, `warn,tessera_server=debug` or `off`";
    let levels = ["off", "error", "warn", "info", "debug", "trace"];
    for directive in log.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let word = directive.to_ascii_lowercase();
        if directive.contains(['=', '[', ':']) || levels.contains(&word.as_str()) {
            continue;
        }
        if let Some(level) = levels.iter().find(|l| {
            let d = strsim::damerau_levenshtein(&word, l);
            d <= 1 || (d <= 2 && word.len() >= 5) || word.starts_with(*l)
        }) {
            return Err(bad(
                "log (TESSERA_LOG)",
                &format!("{accepted}; `{directive}` is no level: did you mean `{level}`?"),
            ));
        }
    }
    // The default keeps sqlx's statement logs out; a filter that was set is
    // taken as given.
    let full = if log == Config::default().log {
        format!("{log},sqlx=warn")
    } else {
        log.to_string()
    };
    tracing_subscriber::EnvFilter::builder()
        .parse(&full)
        .map_err(|e| bad("log (TESSERA_LOG)", &format!("{accepted} ({e})")))
}

/// Every setting's name (the keys of `tessera.toml`).
fn known_keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The known key closest to `unknown`, when it is close enough to be a typo.
fn closest<'a>(unknown: &str, known: &'a [String]) -> Option<&'a str> {
    let unknown = unknown.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&unknown, k), k))
        .filter(|(d, k)| *d <= (k.len().max(unknown.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn did_you_mean(unknown: &str, known: &[String], shown: impl Fn(&str) -> String) -> String {
    match closest(unknown, known) {
        Some(k) => format!("; did you mean `{}`?", shown(k)),
        None => String::new(),
    }
}

/// Refuses keys and tables of a config file that are not settings: a typo must
/// not leave a setting at its default unnoticed.
fn check_toml_keys(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        // The message only: the error's excerpt of the line could hold a secret.
        let line = e
            .span()
            .map(|r| text[..r.start.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(n) => format!("{shown} line {n}: {}", e.message().trim()),
            None => format!("{shown}: {}", e.message().trim()),
        }
    })?;
    let known = known_keys();
    let problems: Vec<String> = table
        .iter()
        .filter(|(k, _)| !known.contains(k))
        .map(|(k, v)| {
            let what = if v.is_table() {
                format!("unknown table `[{k}]`")
            } else {
                format!("unknown setting `{k}`")
            };
            let hint = did_you_mean(k, &known, str::to_string);
            let hint = if hint.is_empty() && v.is_table() {
                "; settings are top-level keys (`listen = \"0.0.0.0:8080\"`)".to_string()
            } else {
                hint
            };
            format!("{what} in {shown}{hint}")
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// The environment name of a setting: unprefixed for the tutorials' names.
fn env_name(key: &str) -> String {
    let upper = key.to_ascii_uppercase();
    if SEED_ENV.contains(&upper.as_str()) {
        upper
    } else {
        format!("TESSERA_{upper}")
    }
}

/// `TESSERA_*` names that are no setting, with the closest one. Warnings, not
/// errors: the environment is shared with other programs.
fn unknown_tessera_names<'a>(names: impl Iterator<Item = &'a str>, from: &str) -> Vec<String> {
    let known = known_keys();
    names
        .filter_map(|name| {
            let key = name.strip_prefix("TESSERA_")?.to_ascii_lowercase();
            if known.contains(&key) {
                return None;
            }
            let hint = did_you_mean(&key, &known, env_name);
            Some(format!(
                "{name} in {from} is not a setting and is ignored{hint}"
            ))
        })
        .collect()
}

fn unknown_env_vars() -> Vec<String> {
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    unknown_tessera_names(names.iter().map(String::as_str), "the environment")
}

/// Reads `.env`: the tutorials' variables and `TESSERA_*` ones become settings
/// (values parsed as the environment's are); other variables are not ours and are
/// left alone. Returns the settings and warnings about unknown `TESSERA_*` names.
fn read_dotenv(
    path: &Path,
) -> Result<
    (
        std::collections::BTreeMap<String, figment::value::Value>,
        Vec<String>,
    ),
    String,
> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let iter = dotenvy::from_read_iter(text.as_bytes());
    let mut values = std::collections::BTreeMap::new();
    let mut names = Vec::new();
    for item in iter {
        let (name, value) = item.map_err(|e| match e {
            dotenvy::Error::LineParse(line, _) => {
                // Say where, never what: the line may hold a secret.
                let first = line.lines().next().unwrap_or("").trim();
                let n = text
                    .lines()
                    .position(|l| !first.is_empty() && l.trim() == first)
                    .map(|i| format!(" line {}", i + 1))
                    .unwrap_or_default();
                format!("{shown}{n} is not NAME=value")
            }
            other => format!("cannot read {shown}: {other}"),
        })?;
        let key = if SEED_ENV.contains(&name.as_str()) {
            name.to_ascii_lowercase()
        } else if let Some(rest) = name.strip_prefix("TESSERA_") {
            names.push(name.clone());
            rest.to_ascii_lowercase()
        } else {
            continue;
        };
        let parsed: figment::value::Value = value.parse().unwrap_or_else(|e| match e {});
        values.insert(key, parsed);
    }
    let warnings = unknown_tessera_names(names.iter().map(String::as_str), &shown.to_string());
    Ok((values, warnings))
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
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
        return redact_keywords(url);
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
            redact_keywords("host=a,b password='s e\\'cret' dbname=d"),
            "host=a,b password=[redacted] dbname=d"
        );
        assert_eq!(
            redact_url("host=a password=secret"),
            "host=a password=[redacted]"
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

    #[test]
    fn typos_get_the_closest_setting_and_strangers_none() {
        let known = known_keys();
        assert!(known.contains(&"access_token_secret".to_string()));
        assert!(!known.contains(&"sources".to_string()), "not a setting");
        for (typo, meant) in [
            ("acces_token_secret", "access_token_secret"),
            ("cookie_secur", "cookie_secure"),
            ("ACCESS_TOKEN_EXPIRY", "access_token_expiry"),
            ("database-url", "database_url"),
            ("lg", "log"),
            ("isuer", "issuer"),
        ] {
            assert_eq!(closest(typo, &known), Some(meant), "{typo}");
        }
        for stranger in ["port", "completely_unrelated", "server", "foo"] {
            assert_eq!(closest(stranger, &known), None, "{stranger}");
        }
    }

    #[test]
    fn issuers_are_absolute_http_urls_without_extras() {
        for good in [
            "https://auth.example.com",
            "https://auth.example.com/",
            "https://auth.example.com/realms/main",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
        ] {
            assert!(check_issuer(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "auth.example.com",
            "/relative",
            "ftp://auth.example.com",
            "https://auth.example.com/a b",
            " https://auth.example.com",
            "https://auth.example.com?x=1",
            "https://auth.example.com?",
            "https://auth.example.com#f",
            "https://user@auth.example.com",
            "https://",
            "mailto:a@example.com",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad:?}");
        }
        let local = |u: &str| is_loopback(&url::Url::parse(u).unwrap());
        assert!(local("http://localhost:8080") && local("http://app.localhost"));
        assert!(local("http://127.0.0.1") && local("http://127.1.2.3") && local("http://[::1]"));
        assert!(!local("http://10.0.0.5") && !local("http://auth.example.com"));
    }

    #[test]
    fn log_filters_parse_or_are_refused() {
        for good in [
            "info",
            "warn,tessera_server=debug",
            "off",
            "tessera",
            "INFO",
            "sqlx=debug",
        ] {
            assert!(log_filter(good).is_ok(), "{good}");
        }
        for (bad, hint) in [
            ("inf", "`info`"),
            ("debg", "`debug`"),
            ("warning", "`warn`"),
            ("information", "`info`"),
            ("eror", "`error`"),
        ] {
            let e = log_filter(bad).unwrap_err();
            assert!(e.contains(hint), "{bad}: {e}");
        }
        for bad in ["info,tessera=loud", "[", "tessera[=x"] {
            assert!(log_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lifetimes_are_checked_against_each_other() {
        let with = |access: u64, idle: u64, max: u64| Config {
            access_token_expiry: Span::from_secs(access),
            refresh_token_expiry: Span::from_secs(idle),
            session_max_lifetime: Span::from_secs(max),
            ..Config::default()
        };
        assert!(with(900, 900, 900).validate().unwrap().warnings.is_empty());
        let e = with(3600, 1800, 86_400).validate().unwrap_err();
        assert!(
            e.contains("access_token_expiry") && e.contains("at most 30m"),
            "{e}"
        );
        let w = with(900, 60 * 86_400, 30 * 86_400)
            .validate()
            .unwrap()
            .warnings;
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("session_max_lifetime"), "{w:?}");
    }
}

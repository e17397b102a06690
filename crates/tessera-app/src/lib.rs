//! Tessera's use cases: one function per thing a user, an operator or a client
//! can ask for — sign up, log in, refresh, log out, end sessions, change or set a
//! password, disable, enable or delete a user, rotate keys — with no HTTP in
//! sight. The JSON API, the OAuth endpoints and the operator CLI are doors onto
//! these functions; whichever door a request comes through, the same rules and
//! the same effects (revocation feed, audit trail, metrics) follow.
//!
//! Rules themselves live in `tessera-core` (the rotation decision, input rules);
//! this crate applies them to the store, the keys and the clock.

mod account;
mod admin;
mod audit;
mod auth;
mod browser;
mod caller;
mod clients;
pub mod db_clock;
mod error;
pub mod hashing;
pub mod housekeeping;
mod keys;
pub mod lifecycle;
pub mod mail;
pub mod metrics;
pub mod oidc;
mod sessions;
pub mod throttle;
mod tokens;

use std::sync::{Arc, RwLock};
use tessera_core::{Clock, RefreshPolicy, RefreshTokenCodec, Store};
use tessera_jose::{Algorithm, KeySet, VerifyOptions};

pub use account::ProfileChange;
pub use admin::find_user;
pub use auth::{Authenticated, LogoutBy, LogoutScope, Recognised};
pub use browser::BrowserSignUp;
pub use caller::Caller;
pub use clients::{GRANT_PASSWORD, GRANT_REFRESH_TOKEN, check_client, ensure_default_client};
pub use error::{AppError, AppResult, ErrorKind};
pub use hashing::HashSettings;
pub use keys::{
    KeySource, MasterOrigin, UNKNOWN_KID_RELOAD_INTERVAL, load_key_set, rotate_keys,
    seal_stored_keys,
};
pub use lifecycle::{EmailVerification, SignupPolicy};
pub use oidc::GRANT_AUTHORIZATION_CODE;
pub use sessions::{Ending, SessionSet};
pub use throttle::{Limit, ThrottleSettings};
pub use tokens::{Issued, rfc3339};

/// Which profile claims go into access tokens (`TESSERA_ACCESS_TOKEN_CLAIMS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileClaims {
    pub email: bool,
    pub username: bool,
    pub fullname: bool,
    /// The id the user had before being imported (only imported users have one).
    pub legacy_id: bool,
}

impl Default for ProfileClaims {
    fn default() -> Self {
        Self {
            email: true,
            username: true,
            fullname: true,
            legacy_id: false,
        }
    }
}

/// Everything the use cases need to know, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub audience: String,
    /// Seconds.
    pub access_ttl: i64,
    pub refresh_idle: i64,
    pub session_max: i64,
    pub refresh_grace: i64,
    pub leeway: i64,
    pub profile_claims: ProfileClaims,
    pub signing_alg: Algorithm,
    /// The default first-party OAuth client (JSON API sessions belong to it).
    pub client_id: String,
    /// Whether `/oauth/token` accepts `grant_type=password` (first-party clients only).
    pub password_grant: bool,
    /// How long clients may cache the JWKS; a new key signs only after this.
    pub jwks_max_age: i64,
    /// Login, registration and refresh limits.
    pub throttle: ThrottleSettings,
    /// Who may create an account through the API (contract §10.5).
    pub signup: SignupPolicy,
    /// Whether addresses are verified, and whether login waits for it (§10.2).
    pub email_verification: EmailVerification,
    /// Where mail goes (§10.1).
    pub mail: MailSettings,
}

/// Mail delivery: SMTP when `smtp_url` is set, else `.eml` files in `outbox_dir`.
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub smtp_url: Option<String>,
    pub from: String,
    pub outbox_dir: std::path::PathBuf,
}

impl Settings {
    pub fn refresh_policy(&self) -> RefreshPolicy {
        RefreshPolicy {
            idle_lifetime: self.refresh_idle,
            grace: self.refresh_grace,
        }
    }
    pub fn verify_options(&self) -> VerifyOptions {
        VerifyOptions {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            leeway: self.leeway,
            max_lifetime: self.access_ttl,
        }
    }
}

/// The application: the store, the clock, the keys and the settings every use
/// case works with. The server and the CLI each build one.
pub struct App {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub keys: RwLock<Arc<KeySet>>,
    pub refresh_codec: RefreshTokenCodec,
    pub hasher: hashing::PasswordHasher,
    pub key_source: KeySource,
    pub metrics: metrics::Metrics,
    pub throttle: throttle::Throttle,
    pub mailer: mail::Mailer,
    mail_wake: tokio::sync::Notify,
    /// Posts back-channel logout tokens.
    http: reqwest::Client,
    verify_options: VerifyOptions,
    verified: tessera_jose::VerifiedTokens,
    unknown_kid: keys::UnknownKidReload,
}

impl App {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        keys: KeySet,
        key_source: KeySource,
        refresh_secret: &[u8],
        hash: HashSettings,
    ) -> Result<Self, String> {
        Ok(Self {
            mailer: mail::Mailer::new(&settings.mail)?,
            mail_wake: tokio::sync::Notify::new(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(20))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
            store,
            clock,
            verify_options: settings.verify_options(),
            settings,
            keys: RwLock::new(Arc::new(keys)),
            refresh_codec: RefreshTokenCodec::new(refresh_secret),
            hasher: hashing::PasswordHasher::new(hash)?,
            key_source,
            metrics: metrics::Metrics::default(),
            throttle: throttle::Throttle::new(refresh_secret),
            verified: tessera_jose::VerifiedTokens::default(),
            unknown_kid: keys::UnknownKidReload::default(),
        })
    }

    pub fn key_set(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the keys from the store: picks up keys rotated by other instances
    /// or the CLI, switches to a key whose activation time has come, and drops keys
    /// whose last token has expired.
    pub async fn reload_keys(&self) -> Result<(), String> {
        let set = load_key_set(self.store.as_ref(), &self.key_source, self.now()).await?;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        // A key that is gone takes its tokens' cached verifications with it.
        if keys.jwks_json() != set.jwks_json() {
            self.verified.clear();
        }
        *keys = Arc::new(set);
        Ok(())
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

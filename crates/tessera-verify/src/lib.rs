//! Verifies Tessera access tokens inside other services, without a database round
//! trip: a cached copy of the issuer's JWKS, the same strict checks as the server
//! (`tessera-jose`), and the revocation feed so a revoked session stops working
//! within seconds (contract §4.4).
//!
//! ```no_run
//! # async fn demo() -> Result<(), tessera_verify::SetupError> {
//! use axum::{Router, routing::get, Extension};
//! use tessera_verify::{Claims, Verifier, VerifierConfig};
//!
//! let verifier = Verifier::connect(VerifierConfig::new("https://auth.example.com", "tessera")).await?;
//! verifier.spawn_background();
//! let app: Router = Router::new()
//!     .route("/hello", get(|Extension(c): Extension<Claims>| async move { format!("hi {}", c.0.sub) }))
//!     .layer(verifier.layer());
//! # Ok(()) }
//! ```

mod layer;

pub use layer::{Claims, VerifyLayer, VerifyService};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tessera_jose::{
    AccessClaims, PublicKeys, TokenError, VerifiedTokens, VerifyOptions, token_kid,
};

/// Where the issuer is and how fresh this service's view of it must stay.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Exactly the issuer Tessera puts in `iss`.
    pub issuer: String,
    /// The audience this service accepts (`aud` must contain it).
    pub audience: String,
    pub jwks_url: String,
    pub revocations_url: String,
    /// How often the revocation feed is read.
    pub revocation_poll: Duration,
    /// How often the JWKS is read again even without an unknown `kid`.
    pub jwks_refresh: Duration,
    /// Tokens naming an unknown `kid` read the JWKS again at most this often.
    pub jwks_min_interval: Duration,
    /// When the feed could not be read for this long, tokens are refused (503):
    /// a revoked session must not keep working because the feed is unreachable.
    pub stale_after: Duration,
    /// Allowed clock difference for `exp`, `iat`, `nbf`, in seconds.
    pub leeway: i64,
    /// The issuer's access-token lifetime (`ACCESS_TOKEN_EXPIRY`, 15 minutes by
    /// default). A token whose `exp - iat` is longer (plus `leeway`) is refused,
    /// whoever signed it: set this to the issuer's value when it differs.
    pub max_lifetime: Duration,
}

impl VerifierConfig {
    /// Defaults for an issuer: its well-known JWKS and revocation feed, a feed
    /// poll every 2 s, JWKS every 5 min, fail closed after 30 s without the feed,
    /// tokens living at most Tessera's default 15 minutes.
    pub fn new(issuer: &str, audience: &str) -> Self {
        let base = issuer.trim_end_matches('/');
        Self {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            jwks_url: format!("{base}/.well-known/jwks.json"),
            revocations_url: format!("{base}/v1/revocations"),
            revocation_poll: Duration::from_secs(2),
            jwks_refresh: Duration::from_secs(300),
            jwks_min_interval: Duration::from_secs(10),
            stale_after: Duration::from_secs(30),
            leeway: 30,
            max_lifetime: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read {url}: {reason}")]
    Fetch { url: String, reason: String },
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("an access token is required")]
    Missing,
    #[error("the access token expired; refresh it")]
    Expired,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("the session of this access token has ended")]
    Revoked,
    /// The revocation feed has been unreachable for longer than `stale_after`.
    #[error("token revocation status is unknown; retry shortly")]
    Unavailable,
}

struct Inner {
    cfg: VerifierConfig,
    opts: VerifyOptions,
    http: reqwest::Client,
    keys: RwLock<Arc<PublicKeys>>,
    /// Revoked session id → Unix time until which its tokens could still appear.
    revoked: RwLock<HashMap<String, i64>>,
    cursor: Mutex<String>,
    feed_read_at: Mutex<Instant>,
    jwks_read_at: Mutex<Instant>,
    /// When an unknown `kid` last caused a JWKS read (successful or not).
    jwks_attempt_at: Mutex<Instant>,
    /// One JWKS read for unknown `kid`s at a time.
    refetching: tokio::sync::Mutex<()>,
    /// Tokens whose signature and claims verified before: a repeated token costs
    /// a lookup, not a signature check. The revocation check runs every time.
    verified: VerifiedTokens,
}

/// A shared, cheaply clonable verifier.
#[derive(Clone)]
pub struct Verifier(Arc<Inner>);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The feed's page shape (`GET /v1/revocations?since=`).
#[derive(serde::Deserialize)]
struct FeedPage {
    cursor: String,
    revoked: Vec<FeedEntry>,
}

#[derive(serde::Deserialize)]
struct FeedEntry {
    sid: String,
    until: i64,
}

const MAX_DOCUMENT_BYTES: usize = 1 << 20;

impl Verifier {
    /// Reads the JWKS and the whole revocation feed once; fails if either cannot
    /// be read, so a service does not start up accepting tokens it cannot check.
    pub async fn connect(cfg: VerifierConfig) -> Result<Self, SetupError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SetupError::Fetch {
                url: cfg.jwks_url.clone(),
                reason: e.to_string(),
            })?;
        let opts = VerifyOptions {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway: cfg.leeway,
            max_lifetime: i64::try_from(cfg.max_lifetime.as_secs()).unwrap_or(i64::MAX),
        };
        let v = Verifier(Arc::new(Inner {
            cfg,
            opts,
            http,
            keys: RwLock::new(Arc::new(PublicKeys::default())),
            revoked: RwLock::new(HashMap::new()),
            cursor: Mutex::new("0".into()),
            feed_read_at: Mutex::new(Instant::now()),
            jwks_read_at: Mutex::new(Instant::now()),
            jwks_attempt_at: Mutex::new(Instant::now()),
            refetching: tokio::sync::Mutex::new(()),
            verified: VerifiedTokens::default(),
        }));
        v.refresh_keys().await?;
        v.sync_revocations().await?;
        Ok(v)
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, SetupError> {
        let err = |reason: String| SetupError::Fetch {
            url: url.to_string(),
            reason,
        };
        let res = self
            .0
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !res.status().is_success() {
            return Err(err(format!("status {}", res.status())));
        }
        // Read at most MAX_DOCUMENT_BYTES, whatever the peer announces or sends.
        if res
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(err("document too large".into()));
        }
        let mut res = res;
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| err(e.to_string()))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(err("document too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Reads the JWKS again and replaces the key set.
    pub async fn refresh_keys(&self) -> Result<(), SetupError> {
        let url = self.0.cfg.jwks_url.clone();
        let body = self.fetch(&url).await?;
        let keys = PublicKeys::from_jwks(&body).map_err(|e| SetupError::Fetch {
            url,
            reason: e.to_string(),
        })?;
        let mut current = self.0.keys.write().unwrap_or_else(|p| p.into_inner());
        // A key that left the set must not keep accepting the tokens it signed.
        if current.kids() != keys.kids() {
            self.0.verified.clear();
        }
        *current = Arc::new(keys);
        drop(current);
        *self
            .0
            .jwks_read_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }

    /// Reads the revocation feed from the last cursor to its end.
    pub async fn sync_revocations(&self) -> Result<(), SetupError> {
        for _ in 0..100 {
            let cursor = self
                .0
                .cursor
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let url = format!("{}?since={cursor}", self.0.cfg.revocations_url);
            let body = self.fetch(&url).await?;
            let page: FeedPage = serde_json::from_slice(&body).map_err(|e| SetupError::Fetch {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            let done = page.revoked.is_empty();
            {
                let mut revoked = self.0.revoked.write().unwrap_or_else(|p| p.into_inner());
                let now = now();
                let leeway = self.0.cfg.leeway;
                revoked.retain(|_, until| until.saturating_add(leeway) > now);
                for e in page.revoked {
                    revoked.insert(e.sid, e.until);
                }
            }
            *self.0.cursor.lock().unwrap_or_else(|p| p.into_inner()) = page.cursor;
            if done {
                break;
            }
        }
        *self
            .0
            .feed_read_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }

    /// Keeps the feed and the keys fresh until the runtime shuts down.
    pub fn spawn_background(&self) -> tokio::task::JoinHandle<()> {
        let v = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(v.0.cfg.revocation_poll);
            loop {
                tick.tick().await;
                if let Err(e) = v.sync_revocations().await {
                    tracing::warn!(error = %e, "tessera revocation feed unreachable");
                }
                let jwks_age =
                    v.0.jwks_read_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .elapsed();
                if jwks_age >= v.0.cfg.jwks_refresh
                    && let Err(e) = v.refresh_keys().await
                {
                    tracing::warn!(error = %e, "tessera JWKS unreachable");
                }
            }
        })
    }

    /// Verifies an access token: signature and claims as Tessera checks them, then
    /// the revocation feed. An unknown `kid` reads the JWKS again (rate-limited),
    /// so a rotated key is picked up before its first token arrives elsewhere.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, Rejection> {
        if self
            .0
            .feed_read_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            > self.0.cfg.stale_after
        {
            return Err(Rejection::Unavailable);
        }
        let now = now();
        let claims = match self.0.verified.get(token, now) {
            Some(claims) => claims,
            None => {
                let claims = self.check_signature_and_claims(token, now).await?;
                self.0
                    .verified
                    .insert(token, &claims, self.0.cfg.leeway, now);
                claims
            }
        };
        let revoked = self.0.revoked.read().unwrap_or_else(|p| p.into_inner());
        // Kept (and checked) while this service's own leeway could still accept a token.
        if revoked
            .get(&claims.sid)
            .is_some_and(|until| until.saturating_add(self.0.cfg.leeway) > now)
        {
            return Err(Rejection::Revoked);
        }
        Ok(claims)
    }

    async fn check_signature_and_claims(
        &self,
        token: &str,
        now: i64,
    ) -> Result<AccessClaims, Rejection> {
        let keys = self
            .0
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let keys = match token_kid(token) {
            Some(kid) if !keys.contains(&kid) => self.keys_after_refetch(&kid).await,
            _ => keys,
        };
        keys.verify(token, &self.0.opts, now).map_err(|e| match e {
            TokenError::Expired => Rejection::Expired,
            TokenError::Invalid(why) => Rejection::Invalid(why),
        })
    }

    /// Reads the JWKS again for a `kid` we do not know: one read at a time, at most
    /// one per `jwks_min_interval` whether it succeeds or not, so tokens naming
    /// random kids cannot make this service hammer the issuer.
    async fn keys_after_refetch(&self, kid: &str) -> Arc<PublicKeys> {
        let current = || {
            self.0
                .keys
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        let _one_at_a_time = self.0.refetching.lock().await;
        if current().contains(kid) {
            return current();
        }
        {
            let mut attempted = self
                .0
                .jwks_attempt_at
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if attempted.elapsed() < self.0.cfg.jwks_min_interval {
                return current();
            }
            *attempted = Instant::now();
        }
        if let Err(e) = self.refresh_keys().await {
            tracing::warn!(error = %e, "tessera JWKS unreachable");
        }
        current()
    }

    /// A tower layer that lets through only requests with a valid access token
    /// and hands handlers its claims as [`Claims`].
    pub fn layer(&self) -> VerifyLayer {
        VerifyLayer::new(self.clone())
    }
}

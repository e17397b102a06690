//! Issuing a token pair for a session.

use crate::App;
use crate::error::AppError;
use crate::oidc::has_scope;
use tessera_core::{RefreshToken, Session, User};
use tessera_jose::{AccessClaims, Audience};
use uuid::Uuid;

/// A Unix time as RFC 3339 (UTC). Times outside 1970..=9999 (only ever seen in
/// hostile tokens) are shown as the raw number.
pub fn rfc3339(unix: i64) -> String {
    const LAST_SECOND_OF_9999: i64 = 253_402_300_799;
    if !(0..=LAST_SECOND_OF_9999).contains(&unix) {
        return format!("{unix} (out of range)");
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A freshly issued pair.
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub refresh_expires_in: i64,
    pub session_id: Uuid,
    pub user: User,
    /// The session's scopes, when it was granted any.
    pub scope: Option<String>,
}

impl App {
    /// Signs an access token for `session` and encodes its refresh token number `counter`.
    pub fn issue(
        &self,
        session: &Session,
        user: &User,
        counter: u64,
        now: i64,
    ) -> Result<Issued, AppError> {
        let s = &self.settings;
        let p = s.profile_claims;
        // An application's session sees only what its scopes allow.
        let scope = session.scope.as_deref();
        let email = p.email && has_scope(scope, "email");
        let profile_claims = |on: bool| on && has_scope(scope, "profile");
        // Never outlive the session: the revocation feed covers an access lifetime.
        let exp = (now + s.access_ttl).min(session.absolute_expires_at.max(now + 1));
        let claims = AccessClaims {
            iss: s.issuer.clone(),
            sub: user.id.to_string(),
            aud: Audience::One(s.audience.clone()),
            exp,
            iat: now,
            nbf: None,
            jti: Uuid::now_v7().to_string(),
            sid: session.id.to_string(),
            client_id: session.client_id.clone(),
            email: email.then(|| user.email.clone()),
            username: profile_claims(p.username).then(|| user.username.clone()),
            fullname: profile_claims(p.fullname).then(|| user.fullname.clone()),
            legacy_id: (p.legacy_id && scope.is_none())
                .then(|| user.legacy_id.clone())
                .flatten(),
            email_verified: email.then_some(user.email_verified),
            scope: session.scope.clone(),
        };
        let access_token = self.key_set().signing_key().sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "signing failed");
            AppError::internal()
        })?;
        let refresh_token = self.refresh_codec.encode(RefreshToken {
            session_id: session.id,
            counter,
        });
        Ok(Issued {
            access_token,
            refresh_token,
            expires_in: exp - now,
            refresh_expires_in: (session.idle_expires_at.min(session.absolute_expires_at) - now)
                .max(0),
            session_id: session.id,
            user: user.clone(),
            scope: session.scope.clone(),
        })
    }
}

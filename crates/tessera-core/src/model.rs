//! The records the domain works with. Times are Unix seconds.

use uuid::Uuid;

/// A user as every part of the system may see it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub fullname: String,
    pub created_at: i64,
    pub disabled: bool,
    /// The user's id in the system they were imported from (a MongoDB ObjectId,
    /// for instance), kept so services keyed by it keep working during a move.
    pub legacy_id: Option<String>,
    /// Whether the current email address was confirmed through a mailed link
    /// (contract §10.2); changing the address clears it.
    pub email_verified: bool,
}

/// A user together with the stored password hash, for login and password change.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub fullname: String,
    pub password_hash: String,
    pub created_at: i64,
    /// Only imported users have one; unique when set.
    pub legacy_id: Option<String>,
}

/// What [`crate::Store::import_users`] did with one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    Inserted,
    /// Imported before: a user with the same legacy id, or with the same email
    /// (whatever its case) and username, exists. Nothing was changed.
    AlreadyPresent,
    /// Another user holds this field (`email`, `username`, `legacy_id`).
    Conflict(&'static str),
}

/// Fields a user may change about themselves; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub email: Option<String>,
    pub username: Option<String>,
    pub fullname: Option<String>,
}

/// One login on one device. Its refresh tokens form one family, numbered by
/// `counter`: only the token carrying the current counter rotates the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_id: String,
    pub counter: u64,
    /// When `counter` last moved (the grace window is measured from here).
    pub rotated_at: i64,
    pub created_at: i64,
    pub last_used_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// The OAuth scopes granted to this session (space-separated); `None` for a
    /// first-party session without scopes, which may do everything its user may.
    pub scope: Option<String>,
}

impl Session {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.idle_expires_at && now < self.absolute_expires_at
    }
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_id: String,
    pub created_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// See [`Session::scope`].
    pub scope: Option<String>,
    /// The browser session an application's session was opened from: it ends
    /// with it.
    pub parent_id: Option<Uuid>,
}

/// Why a session was revoked; kept for the audit trail and the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Logout,
    LogoutOthers,
    LogoutGlobal,
    PasswordChanged,
    RefreshReuse,
    UserRequest,
    Operator,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::LogoutOthers => "logout_others",
            RevokeReason::LogoutGlobal => "logout_global",
            RevokeReason::PasswordChanged => "password_changed",
            RevokeReason::RefreshReuse => "refresh_token_reused",
            RevokeReason::UserRequest => "user_request",
            RevokeReason::Operator => "operator",
        }
    }
}

/// A session id that was revoked, and the time until which access tokens issued
/// for it may still be presented somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub cursor: i64,
    pub session_id: Uuid,
    pub until: i64,
}

/// A signing key as stored: the private part is PKCS#8 DER (sealed when a master
/// key is configured), bound to exactly one algorithm.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub private_der: Vec<u8>,
    pub created_at: i64,
    /// The key signs from this time on (it is published from `created_at`).
    pub activates_at: i64,
    /// When set, the key no longer signs; it stays published until `expires_at`.
    pub retired_at: Option<i64>,
}

/// One line of the audit trail.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: i64,
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

/// An OAuth 2 client. Public clients have no secret; confidential ones keep only
/// an Argon2id hash of theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub secret_hash: Option<String>,
    /// Grant types this client may use (`refresh_token`, `password`,
    /// `authorization_code`).
    pub grant_types: Vec<String>,
    /// First-party clients may use the password grant and skip the consent screen.
    pub first_party: bool,
    pub created_at: i64,
    /// Where the authorization endpoint may send the browser back (exact match;
    /// loopback URIs may differ in their port).
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser afterwards (exact match).
    pub post_logout_redirect_uris: Vec<String>,
    /// Origins of single-page apps allowed to call the token endpoint (CORS).
    pub allowed_origins: Vec<String>,
    /// Where OpenID Connect back-channel logout tokens are posted.
    pub backchannel_logout_uri: Option<String>,
    /// Scopes this client may ask for; empty means every scope Tessera knows.
    pub scopes: Vec<String>,
}

impl Client {
    /// A client with only the fields of the first releases set.
    pub fn new(
        id: &str,
        name: &str,
        grant_types: Vec<String>,
        first_party: bool,
        now: i64,
    ) -> Self {
        Client {
            id: id.to_string(),
            name: name.to_string(),
            secret_hash: None,
            grant_types,
            first_party,
            created_at: now,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            allowed_origins: Vec::new(),
            backchannel_logout_uri: None,
            scopes: Vec::new(),
        }
    }
}

/// A user's consent to a third-party client: the scopes granted, remembered until
/// the user revokes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user_id: Uuid,
    pub client_id: String,
    /// Space-separated.
    pub scope: String,
    pub granted_at: i64,
}

/// What [`crate::Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub sessions: u64,
    pub revocations: u64,
    pub audit_events: u64,
    pub throttle_rows: u64,
}

/// A throttle counter after one more hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    /// Hits in the current window, this one included.
    pub hits: u32,
    /// When the current window ends (Unix seconds).
    pub window_ends_at: i64,
}

/// What a mailed single-use link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
    ChangeEmail,
    Invite,
    /// An OAuth authorization code (not mailed: handed to the client's redirect URI).
    AuthorizationCode,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::ChangeEmail => "change_email",
            Self::Invite => "invite",
            Self::AuthorizationCode => "authorization_code",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::VerifyEmail,
            Self::ResetPassword,
            Self::ChangeEmail,
            Self::Invite,
            Self::AuthorizationCode,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// A registration waiting for its address to be confirmed (email verification
/// `required`): the username and the address are reserved, and the account is
/// created, as `user`, when the mailed link is followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUser {
    pub user: NewUser,
    /// SHA-256 (hex) of the mailed link's token; none when the address already
    /// has an account (its owner was told instead, and nothing can confirm it).
    pub token_hash: Option<String>,
    pub expires_at: i64,
}

/// A single-use token sent by mail. Only its SHA-256 (`hash`, hex) is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountToken {
    pub hash: String,
    pub purpose: TokenPurpose,
    /// The account it acts on (none for an invitation).
    pub user_id: Option<Uuid>,
    /// The address the link was sent to (the new one for an email change).
    pub email: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// What else the token stands for (an authorization code's request, as text).
    pub data: Option<String>,
}

/// What a row of the outbox carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// A mail: `recipient` is an address.
    Mail,
    /// An OpenID Connect back-channel logout: `recipient` is the client's
    /// `backchannel_logout_uri`, `text` the logout token's claims (JSON), signed
    /// at each delivery attempt.
    BackchannelLogout,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mail => "mail",
            Self::BackchannelLogout => "backchannel_logout",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Mail, Self::BackchannelLogout]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A mail waiting in the durable queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMail {
    pub id: Uuid,
    pub kind: OutboxKind,
    pub recipient: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub created_at: i64,
    /// Delivery attempts made so far.
    pub attempts: u32,
    pub next_attempt_at: i64,
}

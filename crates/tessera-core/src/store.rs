//! What the domain needs from storage. SQLite and PostgreSQL both fill [`Store`];
//! handlers depend on the trait only.

use crate::model::*;
use crate::validate::LoginKey;
use async_trait::async_trait;
use uuid::Uuid;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; names the field (`email`, `username`).
    #[error("{0} is already taken")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    /// The database cannot be reached or is overloaded; retrying later may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn ping(&self) -> StoreResult<()>;
    /// Closes every connection; later calls fail as unavailable.
    async fn close(&self);
    /// The database server's own clock (Unix seconds), where instances on several
    /// machines share one database; `None` where the host's clock is the only one.
    async fn database_time(&self) -> StoreResult<Option<i64>> {
        Ok(None)
    }

    // Users
    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    /// Imports users in one transaction: each new user is one row, inserted or
    /// not at all. Returns one outcome per user, in order. Users already present
    /// (same legacy id, or same email key and username) are left as they are. With
    /// `dry_run` the transaction is rolled back: the outcomes are what an import
    /// would do, and nothing is written.
    async fn import_users(
        &self,
        users: &[NewUser],
        dry_run: bool,
    ) -> StoreResult<Vec<ImportOutcome>>;
    async fn find_user_for_login(&self, key: &LoginKey) -> StoreResult<Option<UserRecord>>;
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<UserRecord>>;
    async fn update_user(&self, id: Uuid, patch: UserPatch) -> StoreResult<User>;
    async fn set_password_hash(&self, id: Uuid, hash: &str) -> StoreResult<()>;
    /// Compare-and-set of the hash (an upgrade at login): replaces `old` with `new`
    /// only if `old` is still stored, so it can never undo a password change that
    /// landed in between. Returns whether it replaced.
    async fn upgrade_password_hash(&self, id: Uuid, old: &str, new: &str) -> StoreResult<bool>;
    async fn set_user_disabled(&self, id: Uuid, disabled: bool) -> StoreResult<()>;
    /// Users ordered by creation, for the operator.
    async fn list_users(&self, limit: u32, offset: u32) -> StoreResult<Vec<User>>;
    /// How many users there are (to page `list_users`).
    async fn count_users(&self) -> StoreResult<u64>;
    /// Deletes a user and (by cascade) their sessions. Returns whether it existed.
    async fn delete_user(&self, id: Uuid) -> StoreResult<bool>;

    /// Marks the user's email as confirmed at `at`, only while it still is the
    /// address whose key is `email_key`. Returns whether it did.
    async fn set_email_verified(&self, id: Uuid, email_key: &str, at: i64) -> StoreResult<bool>;

    // Registrations waiting for their address to be confirmed
    /// Stores a pending registration, in one transaction: drops the expired ones
    /// and an earlier one for the same address (the newer replaces it), and
    /// refuses a username an account or another live pending registration holds
    /// (`Conflict("username")`).
    async fn put_pending_user(&self, pending: &PendingUser) -> StoreResult<()>;
    /// The live pending registration (`expires_at > now`) of this address or username.
    async fn find_pending_user(&self, key: &LoginKey, now: i64)
    -> StoreResult<Option<PendingUser>>;
    /// Creates the account a live pending registration with this link waits for,
    /// its address confirmed at `now`, and drops the pending record, in one
    /// transaction. `None`: no such live registration. A username or address an
    /// account took meanwhile is a `Conflict` and keeps the record.
    async fn complete_pending_user(&self, token_hash: &str, now: i64) -> StoreResult<Option<User>>;
    /// Replaces the link of the live pending registration `id` (still holding
    /// the link `old_hash`) by `new_hash`, keeping its expiry. Returns whether it
    /// did: not for a registration confirmed, replaced or expired meanwhile.
    async fn renew_pending_link(
        &self,
        id: Uuid,
        old_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> StoreResult<bool>;

    // Single-use mailed tokens
    async fn insert_account_token(&self, token: AccountToken) -> StoreResult<()>;
    /// Reads a token without using it.
    async fn get_account_token(&self, hash: &str) -> StoreResult<Option<AccountToken>>;
    /// Deletes a token and returns it: of two callers, exactly one gets it.
    async fn take_account_token(&self, hash: &str) -> StoreResult<Option<AccountToken>>;
    /// Deletes every token of `purpose` for a user; returns how many.
    async fn delete_account_tokens(&self, user_id: Uuid, purpose: TokenPurpose)
    -> StoreResult<u64>;

    // The mail queue
    async fn enqueue_mail(&self, mail: QueuedMail) -> StoreResult<()>;
    /// Claims up to `limit` mails due at `now`, oldest first: each one's next attempt
    /// moves to `lease_until`, so no other instance takes it meanwhile.
    async fn claim_mail(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<QueuedMail>>;
    /// A mail was handed to the server (or written out): it leaves the queue.
    async fn mail_delivered(&self, id: Uuid) -> StoreResult<()>;
    /// A delivery failed: counts the attempt and schedules the next one.
    async fn mail_failed(&self, id: Uuid, next_attempt_at: i64, error: &str) -> StoreResult<()>;
    /// Mails still in the queue.
    async fn count_mail(&self) -> StoreResult<u64>;

    // Sessions
    async fn create_session(&self, session: NewSession) -> StoreResult<Session>;
    /// The session and its user's record, read together.
    async fn get_session(&self, id: Uuid) -> StoreResult<Option<(Session, User)>>;
    /// Compare-and-set: moves `counter` from `from` to `from + 1` only if the session
    /// still holds `from` and is not revoked. Returns whether this call won.
    async fn rotate_session(
        &self,
        id: Uuid,
        from: u64,
        now: i64,
        idle_expires_at: i64,
    ) -> StoreResult<bool>;
    /// Revokes one session; `feed_until` is how long it stays in the revocation feed.
    /// Returns false if it was already revoked or does not exist.
    async fn revoke_session(
        &self,
        id: Uuid,
        now: i64,
        reason: RevokeReason,
        feed_until: i64,
    ) -> StoreResult<bool>;
    /// Revokes every live session of a user except `keep`; returns the ids revoked.
    async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        now: i64,
        reason: RevokeReason,
        feed_until: i64,
    ) -> StoreResult<Vec<Uuid>>;
    /// Number of live sessions across all users (for the metrics gauge).
    async fn count_active_sessions(&self, now: i64) -> StoreResult<u64>;
    /// Live (unrevoked, unexpired) sessions of a user, newest first.
    async fn list_user_sessions(&self, user_id: Uuid, now: i64) -> StoreResult<Vec<Session>>;
    /// Live sessions opened from the session `parent` (applications' sessions
    /// opened from a browser's), newest first.
    async fn child_sessions(&self, parent: Uuid, now: i64) -> StoreResult<Vec<Session>>;
    /// Revocations after `cursor` still inside their feed window, oldest first.
    async fn revocations_since(
        &self,
        cursor: i64,
        now: i64,
        limit: u32,
    ) -> StoreResult<Vec<Revocation>>;

    // Keys
    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>>;
    async fn insert_key(&self, key: StoredKey) -> StoreResult<()>;
    /// Inserts `key` only if no key of its algorithm signs at `now` (activated, not
    /// retired), as one atomic step across every instance on the database: when
    /// several instances find no signing key at once, exactly one key is stored.
    /// Returns whether `key` was stored.
    async fn insert_first_key(&self, key: StoredKey, now: i64) -> StoreResult<bool>;
    /// Replaces a key's stored private part, only if it still is `old`
    /// (compare-and-set, so concurrent re-sealing is harmless). Returns whether it did.
    async fn replace_key_private(&self, kid: &str, old: &[u8], new: &[u8]) -> StoreResult<bool>;
    /// Stops a key from signing (it stays published). Returns false if unknown or already retired.
    async fn retire_key(&self, kid: &str, at: i64) -> StoreResult<bool>;
    async fn delete_key(&self, kid: &str) -> StoreResult<bool>;

    // OAuth clients
    async fn create_client(&self, client: Client) -> StoreResult<()>;
    async fn get_client(&self, id: &str) -> StoreResult<Option<Client>>;
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;
    async fn delete_client(&self, id: &str) -> StoreResult<bool>;
    /// Replaces every field of the client named by `client.id` but its id and
    /// creation time. Returns whether it existed.
    async fn update_client(&self, client: Client) -> StoreResult<bool>;

    // Consents to third-party clients
    /// Records (or replaces) a user's consent to a client.
    async fn put_grant(&self, grant: Grant) -> StoreResult<()>;
    async fn get_grant(&self, user_id: Uuid, client_id: &str) -> StoreResult<Option<Grant>>;
    /// A user's consents, oldest first.
    async fn list_grants(&self, user_id: Uuid) -> StoreResult<Vec<Grant>>;
    /// Returns whether there was one.
    async fn delete_grant(&self, user_id: Uuid, client_id: &str) -> StoreResult<bool>;

    // Throttling, shared by every instance on the database
    /// Counts one hit on `key` in a fixed window of `window` seconds starting at
    /// its first hit; a hit after the window ends starts a new one.
    async fn throttle_hit(&self, key: &str, now: i64, window: i64) -> StoreResult<ThrottleState>;
    /// Hits on `key` in the window current at `now`, without counting one.
    async fn throttle_peek(&self, key: &str, now: i64) -> StoreResult<Option<ThrottleState>>;
    async fn throttle_clear(&self, key: &str) -> StoreResult<()>;

    // Audit
    async fn record_audit(&self, event: AuditEvent) -> StoreResult<()>;
    /// Audit events at or after `since` (optionally of one user), oldest first.
    async fn list_audit(
        &self,
        user_id: Option<Uuid>,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// The newest `limit` audit events at or after `since` (optionally of one
    /// user), newest first.
    async fn list_recent_audit(
        &self,
        user_id: Option<Uuid>,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>>;

    /// Housekeeping: drops sessions ended before `sessions_before`, revocation rows
    /// past their window, expired throttle windows, links and pending
    /// registrations, and audit events before `audit_before`.
    async fn prune(
        &self,
        now: i64,
        sessions_before: i64,
        audit_before: i64,
    ) -> StoreResult<PruneReport>;
}

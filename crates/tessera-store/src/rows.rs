//! Row shapes both backends share: the same columns decode into the same records,
//! so each mapping is written once, generic over the driver's row type.

use crate::map_err;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{ColumnIndex, Decode, Row, Type};
use tessera_core::StoreError;
use tessera_core::model::{
    AccountToken, AuditEvent, Client, Grant, NewUser, OutboxKind, PendingUser, QueuedMail,
    Revocation, Session, StoredKey, ThrottleState, TokenPurpose, User, UserRecord,
};
use tessera_core::store::StoreResult;
use uuid::Uuid;

/// `row.try_get(column)` with the domain's error.
fn get<'r, R, T>(row: &'r R, column: &str) -> StoreResult<T>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(column).map_err(map_err)
}

pub(crate) fn key_from<R>(row: &R) -> StoreResult<StoredKey>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(StoredKey {
        kid: get(row, "kid")?,
        alg: get(row, "alg")?,
        private_der: get(row, "private_der")?,
        created_at: get(row, "created_at")?,
        activates_at: get(row, "activates_at")?,
        retired_at: get(row, "retired_at")?,
    })
}

pub(crate) fn client_from<R>(row: &R) -> StoreResult<Client>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Client {
        id: get(row, "id")?,
        name: get(row, "name")?,
        secret_hash: get(row, "secret_hash")?,
        grant_types: crate::split_list(&get::<_, String>(row, "grant_types")?),
        first_party: get(row, "first_party")?,
        created_at: get(row, "created_at")?,
        redirect_uris: crate::split_list(&get::<_, String>(row, "redirect_uris")?),
        post_logout_redirect_uris: crate::split_list(&get::<_, String>(
            row,
            "post_logout_redirect_uris",
        )?),
        allowed_origins: crate::split_list(&get::<_, String>(row, "allowed_origins")?),
        backchannel_logout_uri: get(row, "backchannel_logout_uri")?,
        scopes: crate::split_list(&get::<_, String>(row, "scopes")?),
    })
}

/// A `throttle` row selected as `hits` and `ends` (window end).
pub(crate) fn throttle_from<R>(row: &R) -> StoreResult<ThrottleState>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let hits: i64 = get(row, "hits")?;
    Ok(ThrottleState {
        hits: hits.clamp(0, u32::MAX as i64) as u32,
        window_ends_at: get(row, "ends")?,
    })
}

/// A row's columns as the domain's types. Only ids differ between the backends
/// (PostgreSQL has a `uuid` type, SQLite keeps them as text), so the mappings
/// below are written once over this trait.
pub(crate) trait DomainRow {
    fn id(&self, column: &str) -> StoreResult<Uuid>;
    fn opt_id(&self, column: &str) -> StoreResult<Option<Uuid>>;
    fn text(&self, column: &str) -> StoreResult<String>;
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>>;
    fn int(&self, column: &str) -> StoreResult<i64>;
    fn opt_int(&self, column: &str) -> StoreResult<Option<i64>>;
    fn flag(&self, column: &str) -> StoreResult<bool>;
}

/// The columns both drivers decode alike.
macro_rules! plain_columns {
    () => {
        fn text(&self, column: &str) -> StoreResult<String> {
            get(self, column)
        }
        fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
            get(self, column)
        }
        fn int(&self, column: &str) -> StoreResult<i64> {
            get(self, column)
        }
        fn opt_int(&self, column: &str) -> StoreResult<Option<i64>> {
            get(self, column)
        }
        fn flag(&self, column: &str) -> StoreResult<bool> {
            get(self, column)
        }
    };
}

impl DomainRow for PgRow {
    fn id(&self, column: &str) -> StoreResult<Uuid> {
        get(self, column)
    }
    fn opt_id(&self, column: &str) -> StoreResult<Option<Uuid>> {
        get(self, column)
    }
    plain_columns!();
}

/// An id SQLite keeps as text.
pub(crate) fn parse_id(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| StoreError::Other(format!("corrupt id `{s}` in database")))
}

impl DomainRow for SqliteRow {
    fn id(&self, column: &str) -> StoreResult<Uuid> {
        parse_id(&self.text(column)?)
    }
    fn opt_id(&self, column: &str) -> StoreResult<Option<Uuid>> {
        self.opt_text(column)?.as_deref().map(parse_id).transpose()
    }
    plain_columns!();
}

pub(crate) fn user_from(row: &impl DomainRow) -> StoreResult<User> {
    Ok(User {
        id: row.id("id")?,
        email: row.text("email")?,
        username: row.text("username")?,
        fullname: row.text("fullname")?,
        created_at: row.int("created_at")?,
        disabled: row.flag("disabled")?,
        legacy_id: row.opt_text("legacy_id")?,
        email_verified: row.opt_int("email_verified_at")?.is_some(),
    })
}

pub(crate) fn record_from(row: &impl DomainRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        user: user_from(row)?,
        password_hash: row.text("password_hash")?,
    })
}

/// A session joined with its user: its own id as `sid`, its `created_at` as
/// `s_created_at` (the user's columns keep their names).
pub(crate) fn session_from(row: &impl DomainRow) -> StoreResult<Session> {
    Ok(Session {
        id: row.id("sid")?,
        user_id: row.id("user_id")?,
        client_id: row.text("client_id")?,
        counter: u64::try_from(row.int("counter")?)
            .map_err(|_| StoreError::Other("negative session counter in database".into()))?,
        rotated_at: row.int("rotated_at")?,
        created_at: row.int("s_created_at")?,
        last_used_at: row.int("last_used_at")?,
        idle_expires_at: row.int("idle_expires_at")?,
        absolute_expires_at: row.int("absolute_expires_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        user_agent: row.opt_text("user_agent")?,
        ip: row.opt_text("ip")?,
        scope: row.opt_text("scope")?,
    })
}

pub(crate) fn audit_from(row: &impl DomainRow) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        at: row.int("at")?,
        kind: row.text("kind")?,
        user_id: row.opt_id("user_id")?,
        session_id: row.opt_id("session_id")?,
        ip: row.opt_text("ip")?,
        user_agent: row.opt_text("user_agent")?,
        detail: row.opt_text("detail")?,
    })
}

/// An entry of the revocation feed (`revocations` row, its sequence as `seq`).
pub(crate) fn revocation_from(row: &impl DomainRow) -> StoreResult<Revocation> {
    Ok(Revocation {
        cursor: row.int("seq")?,
        session_id: row.id("session_id")?,
        until: row.int("until")?,
    })
}

/// What an import compares a new record with.
pub(crate) fn existing_user_from(row: &impl DomainRow) -> StoreResult<crate::ExistingUser> {
    Ok(crate::ExistingUser {
        email_key: row.text("email_key")?,
        username: row.text("username")?,
        legacy_id: row.opt_text("legacy_id")?,
    })
}

/// A mailed link's token (`account_tokens` row).
pub(crate) fn token_from(row: &impl DomainRow) -> StoreResult<AccountToken> {
    let purpose = row.text("purpose")?;
    Ok(AccountToken {
        hash: row.text("token_hash")?,
        purpose: TokenPurpose::parse(&purpose)
            .ok_or_else(|| StoreError::Other(format!("unknown token purpose `{purpose}`")))?,
        user_id: row.opt_id("user_id")?,
        email: row.text("email")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        data: row.opt_text("data")?,
    })
}

/// The columns `token_from` reads.
pub(crate) const TOKEN_COLUMNS: &str =
    "token_hash, purpose, user_id, email, created_at, expires_at, data";

/// A registration waiting for its confirmation (`pending_users` row).
pub(crate) fn pending_from(row: &impl DomainRow) -> StoreResult<PendingUser> {
    Ok(PendingUser {
        user: NewUser {
            id: row.id("id")?,
            email: row.text("email")?,
            username: row.text("username")?,
            fullname: row.text("fullname")?,
            password_hash: row.text("password_hash")?,
            created_at: row.int("created_at")?,
            legacy_id: None,
        },
        token_hash: row.opt_text("token_hash")?,
        expires_at: row.int("expires_at")?,
    })
}

/// The account a confirmed pending registration became (registered when the
/// registration was sent).
pub(crate) fn confirmed_user(u: NewUser) -> User {
    User {
        id: u.id,
        email: u.email,
        username: u.username,
        fullname: u.fullname,
        created_at: u.created_at,
        disabled: false,
        legacy_id: None,
        email_verified: true,
    }
}

/// The columns `pending_from` reads.
pub(crate) const PENDING_COLUMNS: &str =
    "id, email, username, fullname, password_hash, token_hash, created_at, expires_at";

/// A queued mail (`mail_queue` row); `attempts` as a 64-bit integer.
pub(crate) fn mail_from(row: &impl DomainRow) -> StoreResult<QueuedMail> {
    let kind = row.text("kind")?;
    Ok(QueuedMail {
        id: row.id("id")?,
        kind: OutboxKind::parse(&kind)
            .ok_or_else(|| StoreError::Other(format!("unknown outbox kind `{kind}`")))?,
        recipient: row.text("recipient")?,
        subject: row.text("subject")?,
        text: row.text("text_body")?,
        html: row.text("html_body")?,
        created_at: row.int("created_at")?,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: row.int("next_attempt_at")?,
    })
}

/// A consent (`oauth_grants` row).
pub(crate) fn grant_from(row: &impl DomainRow) -> StoreResult<Grant> {
    Ok(Grant {
        user_id: row.id("user_id")?,
        client_id: row.text("client_id")?,
        scope: row.text("scope")?,
        granted_at: row.int("granted_at")?,
    })
}

//! Storage for Tessera: the [`tessera_core::Store`] trait filled by SQLite (the
//! embedded default) and PostgreSQL, with migrations per backend.

mod pg_conn;
mod postgres;
mod rows;
mod sqlite;
mod sqlite_fast;

#[cfg(test)]
mod contract_tests;

pub use postgres::{PgPoolSettings, PostgresStore};

/// How long an SQLite statement waits for a lock another process holds (an
/// operator's `sqlite3` shell, a second instance) before the store answers
/// `Unavailable`: short, so a locked database gives 503 with `Retry-After`
/// instead of requests that hang.
pub(crate) const SQLITE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
pub use sqlite::SqliteStore;

use sqlx::postgres::PgDatabaseError;
use tessera_core::StoreError;
use tessera_core::model::{ImportOutcome, NewUser};
use tessera_core::store::StoreResult;

/// For stores opened without migrating: the newest migration applied (`None`: no
/// schema at all) must be the newest this build knows.
pub(crate) fn check_schema(applied: Option<i64>, latest: i64) -> StoreResult<()> {
    match applied {
        None => Err(StoreError::Other(
            "it holds no Tessera schema yet; run `tessera serve` or `tessera migrate` first".into(),
        )),
        Some(v) if v < latest => Err(StoreError::Other(format!(
            "its schema is at version {v}, this build needs {latest}; run `tessera migrate` first"
        ))),
        Some(v) if v > latest => Err(StoreError::Other(format!(
            "its schema (version {v}) is newer than this build knows ({latest}); upgrade tessera"
        ))),
        Some(_) => Ok(()),
    }
}

/// Joins a list for a text column (grant types, URIs, origins, scopes: none
/// contains a space).
pub(crate) fn join_list(items: &[String]) -> String {
    items.join(" ")
}

pub(crate) fn split_list(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_string).collect()
}

/// The columns of `oauth_clients`, in the order inserts bind them.
#[macro_export]
#[doc(hidden)]
macro_rules! client_columns {
    () => {
        "id, name, secret_hash, grant_types, first_party, created_at, redirect_uris, \
         post_logout_redirect_uris, allowed_origins, backchannel_logout_uri, scopes"
    };
}

/// The columns `rows::session_from` reads, of a `sessions` row named `s`.
#[macro_export]
#[doc(hidden)]
macro_rules! session_columns {
    () => {
        "s.id AS sid, s.user_id, s.client_id, s.counter, s.rotated_at, s.created_at AS s_created_at, \
         s.last_used_at, s.idle_expires_at, s.absolute_expires_at, s.revoked_at, s.user_agent, s.ip, s.scope"
    };
}

/// An update of one row by id: none touched means there was no such row.
pub(crate) fn found(rows_affected: u64) -> StoreResult<()> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// A user row as the import sees it: the fields that make a user unique.
pub(crate) struct ExistingUser {
    pub email_key: String,
    pub username: String,
    pub legacy_id: Option<String>,
}

/// Rows an import needs to look up for users that were not inserted: their
/// legacy ids, email keys and usernames.
pub(crate) fn import_keys(users: &[&NewUser]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let legacy = users.iter().filter_map(|u| u.legacy_id.clone()).collect();
    let emails = users
        .iter()
        .map(|u| tessera_core::validate::email_key(&u.email))
        .collect();
    let names = users.iter().map(|u| u.username.clone()).collect();
    (legacy, emails, names)
}

/// Why a user was not inserted, given the rows that share one of its unique
/// fields. The same user imported again (same legacy id, or same email key and
/// username with no contradicting legacy id) is already present; anything else
/// is a conflict naming the field.
pub(crate) fn classify(u: &NewUser, existing: &[ExistingUser]) -> ImportOutcome {
    let key = tessera_core::validate::email_key(&u.email);
    if u.legacy_id.is_some() && existing.iter().any(|e| e.legacy_id == u.legacy_id) {
        return ImportOutcome::AlreadyPresent;
    }
    if let Some(same) = existing
        .iter()
        .find(|e| e.email_key == key && e.username == u.username)
    {
        return match (&same.legacy_id, &u.legacy_id) {
            (Some(a), Some(b)) if a != b => ImportOutcome::Conflict("legacy_id"),
            _ => ImportOutcome::AlreadyPresent,
        };
    }
    if existing.iter().any(|e| e.email_key == key) {
        ImportOutcome::Conflict("email")
    } else if existing.iter().any(|e| e.username == u.username) {
        ImportOutcome::Conflict("username")
    } else {
        ImportOutcome::Conflict("id")
    }
}

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            // PostgreSQL names the violated constraint; SQLite only puts the
            // column in the message.
            let name = db.constraint().unwrap_or_else(|| db.message());
            if name.contains("legacy_id") {
                StoreError::Conflict("legacy_id")
            } else if name.contains("email") {
                StoreError::Conflict("email")
            } else if name.contains("username") {
                StoreError::Conflict("username")
            } else if name.contains("client") {
                StoreError::Conflict("client_id")
            } else {
                StoreError::Conflict("id")
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db)
            if db
                .try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|pg| pg_unavailable(pg.code())) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(db)
            if db.message().contains("locked")
                || db.message().contains("busy")
                || db.message().contains("disk is full") =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

/// SQLSTATEs where the server, not the request, is the problem: connection
/// exceptions (08), insufficient resources such as too many connections (53),
/// and the server shutting down or still starting (57P01..57P03).
/// A read-only transaction (25006) means the server in use became a standby
/// after a failover: unavailable until the primary is found again.
pub(crate) fn pg_unavailable(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        // A deadlock victim or a serialization failure: rolled back whole, so the
        // request may simply be sent again (503 with Retry-After, not 500).
        || matches!(code, "57P01" | "57P02" | "57P03" | "25006" | "40P01" | "40001")
}

//! Storage for Tessera: the [`tessera_core::Store`] trait filled by SQLite (the
//! embedded default), with migrations per backend.

mod sqlite;

pub use sqlite::SqliteStore;

use tessera_core::StoreError;

/// Maps a driver error to the domain's storage error; unique violations name the field.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let msg = db.message();
            if msg.contains("email") {
                StoreError::Conflict("email")
            } else if msg.contains("username") {
                StoreError::Conflict("username")
            } else {
                StoreError::Conflict("id")
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db)
            if db.message().contains("locked") || db.message().contains("busy") =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

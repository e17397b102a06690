//! Storage for Tessera: the [`tessera_core::Store`] trait filled by SQLite (the
//! embedded default) and PostgreSQL, with migrations per backend.

mod postgres;
mod rows;
mod sqlite;
mod sqlite_fast;

#[cfg(test)]
mod contract_tests;

pub use postgres::{PgPoolSettings, PostgresStore};
pub use sqlite::SqliteStore;

use sqlx::postgres::PgDatabaseError;
use tessera_core::StoreError;
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

/// Maps a driver error to the domain's storage error; unique violations name the field.
/// Joins grant types for storage; they never contain a space.
pub(crate) fn join_grants(grants: &[String]) -> String {
    grants.join(" ")
}

pub(crate) fn split_grants(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_string).collect()
}

/// An update of one row by id: none touched means there was no such row.
pub(crate) fn found(rows_affected: u64) -> StoreResult<()> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            // PostgreSQL names the violated constraint; SQLite only puts the
            // column in the message.
            let name = db.constraint().unwrap_or_else(|| db.message());
            if name.contains("email") {
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
            if db.message().contains("locked") || db.message().contains("busy") =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

/// SQLSTATEs where the server, not the request, is the problem: connection
/// exceptions (08), insufficient resources such as too many connections (53),
/// and the server shutting down or still starting (57P01..57P03).
fn pg_unavailable(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03")
}

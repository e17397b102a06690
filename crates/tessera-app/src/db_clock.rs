//! Time on PostgreSQL comes from the database: instances whose own clocks
//! disagree (by more than the refresh grace window, say) must still judge a
//! replay, an expiry or a throttle window the same way. [`follow_database`] wraps
//! the injected clock with the offset between it and the database's clock,
//! measured at start and again every [`RESYNC`]; SQLite, one file on one machine,
//! keeps the injected clock as it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tessera_core::{Clock, Store};

/// How often the offset to the database's clock is measured again.
pub const RESYNC: Duration = Duration::from_secs(300);

/// The injected clock moved by the offset last measured to the database's clock.
pub struct DatabaseClock {
    base: Arc<dyn Clock>,
    offset: AtomicI64,
}

impl DatabaseClock {
    /// Seconds the database's clock is ahead of the base clock (last measured).
    pub fn offset(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }
}

impl Clock for DatabaseClock {
    fn now(&self) -> i64 {
        self.base.now() + self.offset.load(Ordering::Relaxed)
    }
}

/// The clock the use cases should follow over `store`: `base` itself when the
/// store has no clock of its own, else a [`DatabaseClock`] kept in step by a
/// background task (a failed measurement keeps the last offset).
pub async fn follow_database(store: Arc<dyn Store>, base: Arc<dyn Clock>) -> Arc<dyn Clock> {
    let db_now = match store.database_time().await {
        Ok(Some(t)) => t,
        Ok(None) => return base,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "cannot read the database's clock; following this machine's clock until restart"
            );
            return base;
        }
    };
    let clock = Arc::new(DatabaseClock {
        offset: AtomicI64::new(db_now - base.now()),
        base,
    });
    if clock.offset().abs() > 1 {
        tracing::warn!(
            offset_seconds = clock.offset(),
            "this machine's clock differs from the database's; following the database"
        );
    }
    let weak = Arc::downgrade(&clock);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RESYNC).await;
            let Some(clock) = weak.upgrade() else { return };
            if let Ok(Some(db_now)) = store.database_time().await {
                clock
                    .offset
                    .store(db_now - clock.base.now(), Ordering::Relaxed);
            }
        }
    });
    clock
}

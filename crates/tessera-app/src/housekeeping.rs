//! Housekeeping: deletes audit events and ended sessions older than the audit
//! retention, revocation-feed rows past their window and spent throttle windows —
//! once at start-up, then every [`PRUNE_EVERY`].

use std::sync::Arc;
use std::time::Duration;
use tessera_core::model::PruneReport;
use tessera_core::{Clock, Store, StoreError};

pub const PRUNE_EVERY: Duration = Duration::from_secs(10 * 60);

/// One pass. Sessions are kept as long as audit events, so that the session ids
/// in the audit trail still name something.
pub async fn prune(store: &dyn Store, now: i64, retention: i64) -> Result<PruneReport, StoreError> {
    let before = now.saturating_sub(retention);
    let report = store.prune(now, before, before).await?;
    if report != PruneReport::default() {
        tracing::info!(
            audit_events = report.audit_events,
            sessions = report.sessions,
            revocations = report.revocations,
            throttle_rows = report.throttle_rows,
            "pruned old records"
        );
    }
    Ok(report)
}

/// Runs [`prune`] every [`PRUNE_EVERY`] until the task is aborted.
pub fn spawn(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    retention: i64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + PRUNE_EVERY;
        let mut every = tokio::time::interval_at(start, PRUNE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = prune(store.as_ref(), clock.now(), retention).await {
                tracing::warn!(error = %e, "pruning failed; will retry");
            }
        }
    })
}

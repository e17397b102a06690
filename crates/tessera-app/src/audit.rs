//! The audit trail: every use case records what it did through [`App::audit`].

use crate::{App, Caller};
use tessera_core::model::AuditEvent;
use uuid::Uuid;

impl App {
    /// Records an audit event and counts the outcome it stands for in the metrics;
    /// a failure to record is logged, never fatal.
    pub async fn audit(
        &self,
        kind: &str,
        user_id: Option<Uuid>,
        session_id: Option<Uuid>,
        caller: &Caller,
        detail: Option<String>,
    ) {
        self.metrics.on_event(kind);
        let event = AuditEvent {
            at: self.now(),
            kind: kind.to_string(),
            user_id,
            session_id,
            ip: caller.ip.clone(),
            user_agent: caller.user_agent.clone(),
            detail,
        };
        if let Err(e) = self.store.record_audit(event).await {
            tracing::warn!(error = %e, kind, "could not record audit event");
        }
    }
}

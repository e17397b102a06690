//! The refresh-token rotation rules (contract §4.3) as one pure function.
//!
//! A session's tokens are numbered; the session stores only the current number
//! (`counter`) and when it last moved (`rotated_at`). Given that state, the number
//! carried by a presented token and the time, [`decide`] says what must happen.
//! Storage then applies a `Rotate` with one compare-and-set on `counter`.

use crate::model::Session;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// `REFRESH_TOKEN_EXPIRY`: each rotation pushes the idle expiry this far.
    pub idle_lifetime: i64,
    /// `TESSERA_REFRESH_GRACE`: how long the previous token still converges.
    pub grace: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// The current token: move the counter from `from` to `from + 1`.
    Rotate { from: u64, idle_expires_at: i64 },
    /// The immediately previous token, inside the grace window, while its successor
    /// is unused: answer with the successor (`current`) again; write nothing.
    ReplayWithinGrace { current: u64 },
    /// Any other superseded token: the family is compromised; revoke the session.
    ReuseDetected,
    /// The session cannot be refreshed at all.
    Rejected(RejectReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Revoked,
    Expired,
    UserDisabled,
    /// A counter ahead of the stored one: never issued by this database.
    UnknownToken,
}

pub fn decide(
    session: &Session,
    user_disabled: bool,
    presented: u64,
    now: i64,
    policy: RefreshPolicy,
) -> RefreshDecision {
    use RefreshDecision::*;
    if session.revoked_at.is_some() {
        return Rejected(RejectReason::Revoked);
    }
    if user_disabled {
        return Rejected(RejectReason::UserDisabled);
    }
    if now >= session.idle_expires_at || now >= session.absolute_expires_at {
        return Rejected(RejectReason::Expired);
    }
    let current = session.counter;
    if presented == current {
        let idle_expires_at = (now + policy.idle_lifetime).min(session.absolute_expires_at);
        return Rotate {
            from: current,
            idle_expires_at,
        };
    }
    if presented > current {
        return Rejected(RejectReason::UnknownToken);
    }
    // The successor of `presented` is `presented + 1`; it is unused exactly when it
    // is still the current token.
    if presented + 1 == current && now - session.rotated_at <= policy.grace {
        return ReplayWithinGrace { current };
    }
    ReuseDetected
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    const POLICY: RefreshPolicy = RefreshPolicy {
        idle_lifetime: 1000,
        grace: 10,
    };

    fn session(counter: u64, rotated_at: i64) -> Session {
        Session {
            id: Uuid::nil(),
            user_id: Uuid::nil(),
            client_id: "c".into(),
            counter,
            rotated_at,
            created_at: 0,
            last_used_at: rotated_at,
            idle_expires_at: rotated_at + 1000,
            absolute_expires_at: 5000,
            revoked_at: None,
            user_agent: None,
            ip: None,
            scope: None,
        }
    }

    #[test]
    fn current_token_rotates_and_extends_idle_expiry() {
        assert_eq!(
            decide(&session(3, 100), false, 3, 150, POLICY),
            RefreshDecision::Rotate {
                from: 3,
                idle_expires_at: 1150
            }
        );
    }

    #[test]
    fn idle_expiry_never_passes_absolute_expiry() {
        assert_eq!(
            decide(&session(3, 4500), false, 3, 4600, POLICY),
            RefreshDecision::Rotate {
                from: 3,
                idle_expires_at: 5000
            }
        );
    }

    #[test]
    fn previous_token_inside_grace_replays() {
        let s = session(4, 100);
        assert_eq!(
            decide(&s, false, 3, 100, POLICY),
            RefreshDecision::ReplayWithinGrace { current: 4 }
        );
        assert_eq!(
            decide(&s, false, 3, 110, POLICY),
            RefreshDecision::ReplayWithinGrace { current: 4 }
        );
    }

    #[test]
    fn previous_token_after_grace_is_reuse() {
        assert_eq!(
            decide(&session(4, 100), false, 3, 111, POLICY),
            RefreshDecision::ReuseDetected
        );
    }

    #[test]
    fn older_token_is_reuse_even_inside_grace() {
        assert_eq!(
            decide(&session(4, 100), false, 2, 101, POLICY),
            RefreshDecision::ReuseDetected
        );
    }

    #[test]
    fn future_counter_is_unknown() {
        assert_eq!(
            decide(&session(4, 100), false, 5, 101, POLICY),
            RefreshDecision::Rejected(RejectReason::UnknownToken)
        );
    }

    #[test]
    fn revoked_disabled_and_expired_are_rejected_before_anything_else() {
        let mut s = session(4, 100);
        assert_eq!(
            decide(&s, true, 4, 101, POLICY),
            RefreshDecision::Rejected(RejectReason::UserDisabled)
        );
        assert_eq!(
            decide(&s, false, 4, 1100, POLICY),
            RefreshDecision::Rejected(RejectReason::Expired)
        );
        s.idle_expires_at = 10_000;
        assert_eq!(
            decide(&s, false, 4, 5000, POLICY),
            RefreshDecision::Rejected(RejectReason::Expired)
        );
        s.revoked_at = Some(101);
        assert_eq!(
            decide(&s, false, 3, 101, POLICY),
            RefreshDecision::Rejected(RejectReason::Revoked)
        );
    }

    proptest! {
        /// Exhaustive shape of the rules over arbitrary states and presentations.
        #[test]
        fn rules_hold(counter in 0u64..50, presented in 0u64..60, rotated_at in 0i64..4000,
                      dt in 0i64..2000, revoked in any::<bool>(), disabled in any::<bool>()) {
            let mut s = session(counter, rotated_at);
            if revoked { s.revoked_at = Some(rotated_at); }
            let now = rotated_at + dt;
            let d = decide(&s, disabled, presented, now, POLICY);
            let live = !revoked && !disabled && now < s.idle_expires_at && now < s.absolute_expires_at;
            match d {
                RefreshDecision::Rotate { from, idle_expires_at } => {
                    prop_assert!(live);
                    prop_assert_eq!(from, counter);
                    prop_assert_eq!(presented, counter);
                    prop_assert!(idle_expires_at <= s.absolute_expires_at);
                    prop_assert!(idle_expires_at > now);
                }
                RefreshDecision::ReplayWithinGrace { current } => {
                    prop_assert!(live);
                    prop_assert_eq!(current, counter);
                    prop_assert_eq!(presented + 1, counter);
                    prop_assert!(dt <= POLICY.grace);
                }
                RefreshDecision::ReuseDetected => {
                    prop_assert!(live);
                    prop_assert!(presented < counter);
                    prop_assert!(presented + 1 < counter || dt > POLICY.grace);
                }
                RefreshDecision::Rejected(RejectReason::UnknownToken) => {
                    prop_assert!(live);
                    prop_assert!(presented > counter);
                }
                RefreshDecision::Rejected(_) => prop_assert!(!live),
            }
        }
    }
}

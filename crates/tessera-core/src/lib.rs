//! The Tessera domain: users, sessions, the refresh-token rotation rules, and the
//! storage and clock traits the rest of the system fills. No I/O lives here.

pub mod clock;
pub mod model;
pub mod refresh_token;
pub mod rotation;
pub mod span;
pub mod store;
pub mod validate;

pub use clock::{Clock, ManualClock, SystemClock};
pub use model::{
    AccountToken, Client, Grant, NewSession, NewUser, OutboxKind, PendingUser, QueuedMail, Session,
    TokenPurpose, User, UserPatch, UserRecord,
};
pub use refresh_token::{RefreshToken, RefreshTokenCodec};
pub use rotation::{RefreshDecision, RefreshPolicy, RejectReason, decide};
pub use span::Span;
pub use store::{Store, StoreError};

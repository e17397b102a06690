//! Who asked for a use case, and from where: recorded in the audit trail and used
//! for throttling.

/// The party behind a request. HTTP requests fill it from the socket and headers;
/// the operator CLI uses [`Caller::operator`].
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The client's address (after trusted proxies), if known.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// An operator at the command line, not a user or a client.
    pub operator: bool,
}

impl Caller {
    /// The operator, acting through `tessera` commands on the database.
    pub fn operator() -> Self {
        Self {
            ip: None,
            user_agent: Some("tessera cli".into()),
            operator: true,
        }
    }
}

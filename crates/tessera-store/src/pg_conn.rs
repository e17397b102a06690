//! How Tessera reaches PostgreSQL: the connection string (libpq's multi-host form
//! included), finding the primary among the hosts, moving to a new primary after a
//! failover, and running statements so that a transaction-pooling connection
//! pooler (PgBouncer) can sit in between.
//!
//! Every statement of [`crate::PostgresStore`] runs through [`Db`], which is an
//! sqlx executor: a failure that says the server is gone or read-only makes it
//! look for the primary again (one search at a time, in the background) while the
//! caller gets `StoreError::Unavailable` (503 `overloaded` with `Retry-After`).

use crate::map_err;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult, PgRow};
use sqlx::postgres::{PgConnection, PgStatement, PgTypeInfo, Postgres};
use sqlx::{Connection, Either, Execute, Executor, SqlStr, Transaction};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tessera_core::StoreError;
use tessera_core::store::StoreResult;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::postgres::PgPoolSettings;

/// What `target_session_attrs` asks of a host (libpq's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// `any`: the first host that answers.
    Any,
    /// `read-write` / `primary`: a host that is not a standby and accepts writes.
    ReadWrite,
}

/// A parsed connection string: the hosts in the order given, each with the full
/// connect options.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub hosts: Vec<PgConnectOptions>,
    pub wanted: Wanted,
    /// `connect_timeout` (seconds) if the string gave one.
    pub connect_timeout: Option<Duration>,
}

impl Target {
    /// One server, whatever it is.
    #[cfg(test)]
    pub(crate) fn single(o: PgConnectOptions) -> Self {
        Self {
            hosts: vec![o],
            wanted: Wanted::Any,
            connect_timeout: None,
        }
    }

    /// Whether a failure is a reason to look at the other hosts again.
    fn can_move(&self) -> bool {
        self.hosts.len() > 1 || self.wanted == Wanted::ReadWrite
    }
}

pub(crate) fn server_of(c: &PgConnectOptions) -> String {
    format!("{}:{}", c.get_host(), c.get_port())
}

fn invalid(msg: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("invalid PostgreSQL URL: {msg}"))
}

/// Percent-encodes everything but unreserved characters, for building a URL query.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits the keyword form (`host=a,b port=5432 user=x dbname=y`) into pairs.
/// Values may be single-quoted, with `\'` and `\\` escapes, as in libpq.
fn keyword_pairs(s: &str) -> StoreResult<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(invalid(format!("`{key}` has no value")));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(invalid(format!("unterminated quote in `{key}`"))),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',').map(|s| s.trim().to_string()).collect()
}

/// Parses a PostgreSQL connection string: the URL form
/// (`postgres://user@h1:5432,h2:5433/db?target_session_attrs=read-write`, hosts
/// also as `?host=a,b&port=1,2`) or the keyword form
/// (`host=a,b port=5432,5433 user=u dbname=d target_session_attrs=read-write`).
pub(crate) fn parse_target(s: &str) -> StoreResult<Target> {
    let s = s.trim();
    let (base, mut hosts, ports, extra) = if let Some((scheme, rest)) = s.split_once("://") {
        if scheme != "postgres" && scheme != "postgresql" {
            return Err(invalid(format!("unknown scheme `{scheme}`")));
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hostlist) = match authority.rfind('@') {
            Some(at) => (&authority[..=at], &authority[at + 1..]),
            None => ("", authority),
        };
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        if !hostlist.is_empty() {
            for item in hostlist.split(',') {
                let (h, p) = split_host_port(item)?;
                hosts.push(h);
                ports.push(p);
            }
        }
        let mut kept = Vec::new();
        let mut extra = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decode(v);
            match k {
                "host" => hosts = split_list(&decoded),
                "port" => ports = split_list(&decoded).into_iter().map(Some).collect(),
                "target_session_attrs" | "connect_timeout" => extra.push((k.to_string(), decoded)),
                _ => kept.push(pair.to_string()),
            }
        }
        let mut base = format!("{scheme}://{userinfo}localhost{path}");
        if !kept.is_empty() {
            base.push('?');
            base.push_str(&kept.join("&"));
        }
        (base, hosts, ports, extra)
    } else if s.contains('=') {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        let mut kept = Vec::new();
        let mut extra = Vec::new();
        for (k, v) in keyword_pairs(s)? {
            match k.as_str() {
                "host" | "hostaddr" => hosts = split_list(&v),
                "port" => ports = split_list(&v).into_iter().map(Some).collect(),
                "target_session_attrs" | "connect_timeout" => extra.push((k, v)),
                "user" | "password" | "dbname" | "sslmode" | "sslrootcert" | "sslcert"
                | "sslkey" | "application_name" | "options" => {
                    kept.push(format!("{k}={}", encode(&v)))
                }
                other => return Err(invalid(format!("unsupported parameter `{other}`"))),
            }
        }
        (
            format!("postgres://localhost/?{}", kept.join("&")),
            hosts,
            ports,
            extra,
        )
    } else {
        return Err(invalid(
            "expected postgres://… or key=value pairs such as `host=… dbname=…`",
        ));
    };

    let mut wanted = None;
    let mut connect_timeout = None;
    for (k, v) in extra {
        match (k.as_str(), v.as_str()) {
            ("target_session_attrs", "any") => wanted = Some(Wanted::Any),
            ("target_session_attrs", "read-write" | "primary") => {
                wanted = Some(Wanted::ReadWrite);
            }
            ("target_session_attrs", other) => {
                return Err(invalid(format!(
                    "target_session_attrs={other} is not supported (use any, read-write or primary)"
                )));
            }
            (_, v) => {
                let secs: u64 = v
                    .parse()
                    .map_err(|_| invalid(format!("connect_timeout={v} is not a number")))?;
                connect_timeout = Some(Duration::from_secs(secs.max(1)));
            }
        }
    }

    let template = PgConnectOptions::from_str(&base).map_err(invalid)?;
    if hosts.is_empty() {
        hosts.push(String::new());
    }
    // Tessera writes on every refresh: among several hosts only a primary will do.
    // Left to `any`, a failover could settle on a standby, whose reads lag (a
    // revoked session would still look live) and whose writes all fail.
    let wanted = match wanted {
        Some(Wanted::Any) if hosts.len() > 1 => {
            return Err(invalid(
                "target_session_attrs=any with several hosts could settle on a standby; \
                 use read-write (the default with several hosts)",
            ));
        }
        Some(w) => w,
        None if hosts.len() > 1 => Wanted::ReadWrite,
        None => Wanted::Any,
    };
    if !ports.is_empty() && ports.len() != 1 && ports.len() != hosts.len() {
        return Err(invalid(format!(
            "{} hosts but {} ports: give one port, or one per host",
            hosts.len(),
            ports.len()
        )));
    }
    let mut list = Vec::with_capacity(hosts.len());
    for (i, h) in hosts.iter().enumerate() {
        let mut o = template.clone();
        if h.starts_with('/') {
            o = o.socket(h);
        } else if !h.is_empty() {
            o = o.host(h);
        }
        let port = match ports.len() {
            0 => None,
            1 => ports[0].clone(),
            _ => ports[i].clone(),
        };
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            let p: u16 = p
                .parse()
                .map_err(|_| invalid(format!("port `{p}` is not a number")))?;
            o = o.port(p);
        }
        list.push(o);
    }
    Ok(Target {
        hosts: list,
        wanted,
        connect_timeout,
    })
}

fn split_host_port(item: &str) -> StoreResult<(String, Option<String>)> {
    if let Some(rest) = item.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid(format!("unclosed `[` in host `{item}`")))?;
        let port = after.strip_prefix(':').map(str::to_string);
        return Ok((h.to_string(), port));
    }
    match item.rsplit_once(':') {
        Some((h, p)) => Ok((percent_decode(h), Some(p.to_string()))),
        None => Ok((percent_decode(item), None)),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `e` says the server is gone, unreachable, or no longer accepts writes:
/// reasons to check which host is the primary now.
fn lost_primary(e: &sqlx::Error) -> bool {
    matches!(map_err_ref(e), StoreError::Unavailable(_))
}

fn map_err_ref(e: &sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(io) => StoreError::Unavailable(io.to_string()),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(c) if crate::pg_unavailable(c) => StoreError::Unavailable(db.message().into()),
            _ => StoreError::Other(String::new()),
        },
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(String::new()),
        _ => StoreError::Other(String::new()),
    }
}

/// The pool in use and the host it points at.
struct Current {
    pool: PgPool,
    host: usize,
}

struct Shared {
    target: Target,
    settings: PgPoolSettings,
    current: RwLock<Current>,
    searching: AtomicBool,
    closed: AtomicBool,
}

/// The way to the database: the pool of the current primary, swapped for another
/// when the primary is lost. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Db(Arc<Shared>);

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("hosts", &self.0.target.hosts.len())
            .field("pooler", &self.0.settings.transaction_pooler)
            .finish()
    }
}

/// Connects to one host and checks it is what the target wants; the probe
/// connection is closed again.
async fn probe(o: &PgConnectOptions, wanted: Wanted, timeout: Duration) -> StoreResult<()> {
    let attempt = async {
        let mut conn = PgConnection::connect_with(o)
            .await
            .map_err(|e| connect_error(o, e))?;
        let fits = match wanted {
            Wanted::Any => true,
            Wanted::ReadWrite => {
                // Simple protocol: no prepared statement, so it passes any pooler.
                let row = sqlx::raw_sql(
                    "SELECT (NOT pg_is_in_recovery() \
                     AND current_setting('transaction_read_only') = 'off')::TEXT",
                )
                .fetch_one(&mut conn)
                .await
                .map_err(|e| connect_error(o, e))?;
                use sqlx::Row;
                row.try_get::<String, _>(0).map_err(map_err)? == "true"
            }
        };
        let _ = conn.close().await;
        if fits {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "{} is read-only (a standby)",
                server_of(o)
            )))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer from {} within {} s",
            server_of(o),
            timeout.as_secs_f32()
        ))),
    }
}

/// Why a connection failed, in the words an operator acts on: the server refused
/// or could not be reached, the login was refused, or the database does not
/// exist. Never includes the password.
fn connect_error(c: &PgConnectOptions, e: sqlx::Error) -> StoreError {
    let at = server_of(c);
    let cause = match &e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused by {at} (is PostgreSQL running there?)")
        }
        sqlx::Error::Io(io) => format!("cannot reach {at}: {io}"),
        sqlx::Error::Tls(t) => format!("TLS with {at} failed: {t}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01" | "28000") => format!(
                "authentication failed as user `{}` at {at}: {}",
                c.get_username(),
                db.message()
            ),
            Some("3D000") => format!("unknown database at {at}: {}", db.message()),
            _ => format!("{at}: {}", db.message()),
        },
        other => format!("{at}: {other}"),
    };
    StoreError::Unavailable(cause)
}

impl Shared {
    fn probe_timeout(&self) -> Duration {
        self.target
            .connect_timeout
            .unwrap_or(self.settings.acquire_timeout)
            .min(self.settings.acquire_timeout)
    }

    fn pool_for(&self, host: usize) -> PgPool {
        let mut o = self.target.hosts[host].clone();
        if self.settings.transaction_pooler {
            o = o.statement_cache_capacity(0);
        }
        PgPoolOptions::new()
            .max_connections(self.settings.max_connections.max(1))
            .min_connections(self.settings.min_connections)
            .acquire_timeout(self.settings.acquire_timeout)
            .idle_timeout(self.settings.idle_timeout)
            .connect_lazy_with(o)
    }

    /// The first host, in order, that fits; every host's failure otherwise.
    async fn find(&self) -> StoreResult<usize> {
        let mut why = Vec::new();
        for (i, o) in self.target.hosts.iter().enumerate() {
            match probe(o, self.target.wanted, self.probe_timeout()).await {
                Ok(()) => return Ok(i),
                Err(e) => why.push(e),
            }
        }
        if why.len() == 1 {
            return Err(why.remove(0));
        }
        let all: Vec<String> = why.iter().map(|e| e.to_string()).collect();
        Err(StoreError::Unavailable(format!(
            "no host fits ({}): {}",
            match self.target.wanted {
                Wanted::Any => "any",
                Wanted::ReadWrite => "read-write",
            },
            all.join("; ")
        )))
    }
}

impl Db {
    /// Finds the host to use and makes its pool (connections opened on demand).
    pub(crate) async fn connect(target: Target, settings: PgPoolSettings) -> StoreResult<Self> {
        let first = Shared {
            current: RwLock::new(Current {
                pool: PgPoolOptions::new().connect_lazy_with(target.hosts[0].clone()),
                host: 0,
            }),
            target,
            settings,
            searching: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        };
        let host = first.find().await?;
        let pool = first.pool_for(host);
        *first.current.write().expect("pool lock") = Current { pool, host };
        Ok(Self(Arc::new(first)))
    }

    pub(crate) fn pool(&self) -> PgPool {
        self.0.current.read().expect("pool lock").pool.clone()
    }

    /// The connect options of the host in use (for migrations on a connection of
    /// their own).
    pub(crate) fn options(&self) -> PgConnectOptions {
        let host = self.0.current.read().expect("pool lock").host;
        self.0.target.hosts[host].clone()
    }

    pub(crate) fn transaction_pooler(&self) -> bool {
        self.0.settings.transaction_pooler
    }

    /// Named prepared statements are cached per connection unless a pooler may
    /// hand the next statement to another server connection.
    fn persistent(&self) -> bool {
        !self.0.settings.transaction_pooler
    }

    pub(crate) async fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.pool().close().await;
    }

    /// Maps a driver error to the store's, first starting a search for the primary
    /// when the error says it is lost.
    pub(crate) fn err(&self, e: sqlx::Error) -> StoreError {
        self.observe(&e);
        map_err(e)
    }

    fn observe(&self, e: &sqlx::Error) {
        if !lost_primary(e) || !self.0.target.can_move() || self.0.closed.load(Ordering::SeqCst) {
            return;
        }
        if self.0.searching.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = self.0.clone();
        tokio::spawn(async move {
            search(&shared).await;
            shared.searching.store(false, Ordering::SeqCst);
        });
    }

    /// While the primary is being looked for, statements fail at once instead of
    /// waiting out the acquire timeout on a server that is gone.
    fn check_not_lost(&self) -> Result<(), sqlx::Error> {
        if self.0.searching.load(Ordering::SeqCst) {
            Err(sqlx::Error::PoolClosed)
        } else {
            Ok(())
        }
    }

    /// A transaction on the current primary.
    pub(crate) async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.check_not_lost().map_err(map_err)?;
        self.pool().begin().await.map_err(|e| self.err(e))
    }

    /// Runs one statement: on a pooled connection, or, behind a transaction
    /// pooler, inside a transaction of its own with an unnamed statement, so that
    /// parse and execute reach the same server connection.
    async fn steps<'q, E>(&self, query: E) -> Result<Vec<Either<PgQueryResult, PgRow>>, sqlx::Error>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        self.check_not_lost()?;
        let q = Unnamed {
            inner: query,
            persistent: self.persistent(),
        };
        let pool = self.pool();
        let r = if self.0.settings.transaction_pooler {
            async {
                let mut tx = pool.begin().await?;
                let v = (&mut *tx).fetch_many(q).try_collect::<Vec<_>>().await?;
                tx.commit().await?;
                Ok(v)
            }
            .await
        } else {
            async {
                let mut c = pool.acquire().await?;
                (&mut *c).fetch_many(q).try_collect::<Vec<_>>().await
            }
            .await
        };
        if let Err(e) = &r {
            self.observe(e);
        }
        r
    }

    async fn optional<'q, E>(&self, query: E) -> Result<Option<PgRow>, sqlx::Error>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        self.check_not_lost()?;
        if self.0.settings.transaction_pooler {
            let rows = self.steps(query).await?;
            return Ok(rows.into_iter().find_map(|s| s.right()));
        }
        let r = async { self.pool().acquire().await?.fetch_optional(query).await }.await;
        if let Err(e) = &r {
            self.observe(e);
        }
        r
    }
}

/// Looks for the primary until one is found (or the store is closed): first
/// whether the host in use still fits, then every host in order.
async fn search(shared: &Shared) {
    let mut pause = Duration::from_millis(100);
    loop {
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        let host = shared.current.read().expect("pool lock").host;
        if probe(
            &shared.target.hosts[host],
            shared.target.wanted,
            shared.probe_timeout(),
        )
        .await
        .is_ok()
        {
            return;
        }
        if let Ok(found) = shared.find().await {
            let pool = shared.pool_for(found);
            let old = std::mem::replace(
                &mut *shared.current.write().expect("pool lock"),
                Current { pool, host: found },
            );
            tracing_note(&shared.target.hosts[found]);
            tokio::spawn(async move { old.pool.close().await });
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

fn tracing_note(o: &PgConnectOptions) {
    tracing::warn!(host = %server_of(o), "PostgreSQL: moved to a new primary");
}

/// A statement that is not kept as a named prepared statement when `persistent`
/// is off.
struct Unnamed<E> {
    inner: E,
    persistent: bool,
}

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(self) -> SqlStr {
        self.inner.sql()
    }
    fn statement(&self) -> Option<&PgStatement> {
        self.inner.statement()
    }
    fn take_arguments(&mut self) -> Result<Option<PgArguments>, sqlx::error::BoxDynError> {
        self.inner.take_arguments()
    }
    fn persistent(&self) -> bool {
        self.persistent && self.inner.persistent()
    }
}

impl<'p> Executor<'p> for &'_ Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let db = self.clone();
        stream::once(async move { db.steps(query).await })
            .map_ok(|v| stream::iter(v.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let db = self.clone();
        Box::pin(async move { db.optional(query).await })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        let pool = self.pool();
        Box::pin(async move { pool.acquire().await?.prepare_with(sql, parameters).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(t: &Target) -> Vec<String> {
        t.hosts.iter().map(server_of).collect()
    }

    #[test]
    fn url_with_several_hosts() {
        let t = parse_target(
            "postgres://app:s%40cret@db1:5433,db2,[::1]:6000/auth?target_session_attrs=read-write&sslmode=disable",
        )
        .unwrap();
        assert_eq!(hosts(&t), ["db1:5433", "db2:5432", "::1:6000"]);
        assert_eq!(t.wanted, Wanted::ReadWrite);
        assert_eq!(t.hosts[1].get_username(), "app");
        assert_eq!(t.hosts[2].get_database(), Some("auth"));
    }

    #[test]
    fn hosts_and_ports_as_query_parameters() {
        let t = parse_target("postgresql:///auth?host=a,b&port=1,2").unwrap();
        assert_eq!(hosts(&t), ["a:1", "b:2"]);
        assert_eq!(
            t.wanted,
            Wanted::ReadWrite,
            "the default with several hosts"
        );
        assert!(parse_target("postgresql:///auth?host=a,b&target_session_attrs=any").is_err());
        let one = parse_target("postgresql:///auth?host=a").unwrap();
        assert_eq!(one.wanted, Wanted::Any);
    }

    #[test]
    fn keyword_form() {
        let t = parse_target(
            "host=a,b port=7000 user=u password='it''s' dbname=d target_session_attrs=primary connect_timeout=2",
        );
        // libpq quotes with backslash, not doubling: the doubled quote ends the value.
        assert!(t.is_err());
        let t = parse_target(
            "host=a,b port=7000 user=u password='it\\'s' dbname=d target_session_attrs=primary connect_timeout=2",
        )
        .unwrap();
        assert_eq!(hosts(&t), ["a:7000", "b:7000"]);
        assert_eq!(t.wanted, Wanted::ReadWrite);
        assert_eq!(t.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(t.hosts[0].get_username(), "u");
        assert_eq!(t.hosts[0].get_database(), Some("d"));
    }

    #[test]
    fn bad_strings_say_why() {
        for (s, word) in [
            ("postgres://a,b/d?port=1,2,3", "ports"),
            ("postgres://a/d?target_session_attrs=standby", "standby"),
            ("host=a frobnicate=1", "frobnicate"),
            ("host=a port=x", "port"),
            ("mysql://a/d", "scheme"),
            ("just words", "expected"),
        ] {
            let e = parse_target(s).unwrap_err().to_string();
            assert!(e.contains(word), "{s}: {e}");
        }
    }
}

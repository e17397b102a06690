//! PostgreSQL: one pool for reads and writes; the database does the serialising.

use crate::pg_conn::{Db, parse_target};
use crate::rows::{
    TOKEN_COLUMNS, audit_from, mail_from, pending_from, record_from, session_from, token_from,
    user_from,
};
use crate::{map_err, rows};
use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgArguments, PgConnection, PgRow, Postgres};
use sqlx::{Connection, Row, SqlSafeStr};
use std::borrow::Cow;
use std::time::Duration;
use tessera_core::model::*;
use tessera_core::store::StoreResult;
use tessera_core::validate::LoginKey;
use tessera_core::{Store, StoreError};
use uuid::Uuid;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "clients_throttle",
        include_str!("../migrations/postgres/0002_clients_throttle.sql"),
    ),
    (
        3,
        "legacy_id",
        include_str!("../migrations/postgres/0003_legacy_id.sql"),
    ),
    (
        4,
        "account_lifecycle",
        include_str!("../migrations/postgres/0004_account_lifecycle.sql"),
    ),
    (
        5,
        "oidc",
        include_str!("../migrations/postgres/0005_oidc.sql"),
    ),
    (
        6,
        "pending_users",
        include_str!("../migrations/postgres/0006_pending_users.sql"),
    ),
];

/// The advisory lock key that serialises creating a first signing key (an
/// arbitrary constant: `tessera_first_key` in ASCII, truncated to 64 bits).
const FIRST_KEY_LOCK: i64 = 0x7465_7373_6572_6131;

/// The advisory lock key that serialises migrations behind a transaction pooler
/// (`tessera_migrate`, truncated to 64 bits).
const MIGRATE_LOCK: i64 = 0x7465_7373_6572_616d;

/// Connection-pool limits for [`PostgresStore`], and whether a pooler sits between.
#[derive(Debug, Clone)]
pub struct PgPoolSettings {
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a query waits for a free connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// A connection pooler in transaction mode (PgBouncer's `pool_mode =
    /// transaction`) is in between: every statement runs in a transaction of its
    /// own with an unnamed prepared statement, and no session state is used.
    pub transaction_pooler: bool,
}

impl Default for PgPoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            transaction_pooler: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PostgresStore {
    db: Db,
    /// Rotations waiting for the next group commit (see [`rotation_batcher`]).
    rotations: tokio::sync::mpsc::UnboundedSender<Rotation>,
    /// Session reads waiting for the next batched lookup (see [`session_reader`]).
    session_reads: tokio::sync::mpsc::UnboundedSender<SessionRead>,
}

struct SessionRead {
    id: Uuid,
    reply: tokio::sync::oneshot::Sender<StoreResult<Option<(Session, User)>>>,
}

/// Batched session lookups in flight at once.
const SESSION_READERS: usize = 4;
/// Rotation batches in flight at once.
const ROTATION_WRITERS: usize = 2;

/// A queue several tasks take turns at.
type Queue<T> = std::sync::Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<T>>>;

const SESSIONS_BY_ID: &str = "SELECT s.id AS sid, s.user_id, s.client_id, s.counter, s.rotated_at, \
     s.created_at AS s_created_at, s.last_used_at, s.idle_expires_at, s.absolute_expires_at, \
     s.revoked_at, s.user_agent, s.ip, s.scope, \
     u.id, u.email, u.username, u.fullname, u.created_at, u.disabled, u.legacy_id, u.email_verified_at \
     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ANY($1::uuid[])";

/// Session reads (every protected request and every refresh) batched like the
/// rotations: a reader takes every lookup queued since its last one and answers
/// them with one `WHERE s.id = ANY(…)` query, so a burst of requests costs a few
/// round trips instead of one each. Each lookup is still sent after its request
/// arrived, so it sees every commit made before then (a revocation by any
/// instance included). `SESSION_READERS` readers take turns at the queue.
async fn session_reader(db: Db, queue: Queue<SessionRead>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let ids: Vec<Uuid> = batch.iter().map(|r| r.id).collect();
        let result = sqlx::query(SESSIONS_BY_ID).bind(&ids).fetch_all(&db).await;
        match result {
            Ok(rows) => {
                for job in batch.drain(..) {
                    let found = rows
                        .iter()
                        .find(|r| r.try_get::<Uuid, _>("sid").is_ok_and(|sid| sid == job.id))
                        .map(|r| Ok((session_from(r)?, user_from(r)?)))
                        .transpose();
                    let _ = job.reply.send(found);
                }
            }
            Err(e) => {
                let e = db.err(e);
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

struct Rotation {
    id: Uuid,
    from: i64,
    now: i64,
    idle_expires_at: i64,
    reply: tokio::sync::oneshot::Sender<StoreResult<bool>>,
}

/// Most rotations applied by one statement.
const MAX_BATCH: usize = 256;

/// Group commit for rotations: a writer takes every rotation that arrived while
/// its previous batch ran and applies them with one statement — one round trip and
/// one WAL flush for the lot. `ROTATION_WRITERS` writers take turns at the queue,
/// so one batch is sent while another waits for its flush; a session named in
/// two batches at once is updated by the first to commit (the other's
/// compare-and-set then fails, as it must). Each row is still its own compare-and-set
/// (`counter = from`); a caller is answered only after the statement committed.
/// The statement goes through [`Db`] like every other: to the current primary,
/// and a lost primary answers the whole batch `Unavailable` (none acknowledged).
async fn rotation_batcher(db: Db, queue: Queue<Rotation>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let ids: Vec<Uuid> = batch.iter().map(|r| r.id).collect();
        let froms: Vec<i64> = batch.iter().map(|r| r.from).collect();
        let nows: Vec<i64> = batch.iter().map(|r| r.now).collect();
        let idles: Vec<i64> = batch.iter().map(|r| r.idle_expires_at).collect();
        // A session named twice in one batch (two requests presenting the same
        // token) is updated once; RETURNING says which (id, from) pair won.
        let mut attempts = 0;
        let result = loop {
            let result = sqlx::query(
                "UPDATE sessions AS s SET counter = s.counter + 1, rotated_at = v.now, \
                 last_used_at = v.now, idle_expires_at = v.idle \
                 FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[]) AS v(id, from_counter, now, idle) \
                 WHERE s.id = v.id AND s.counter = v.from_counter AND s.revoked_at IS NULL \
                 RETURNING s.id, v.from_counter",
            )
            .bind(&ids)
            .bind(&froms)
            .bind(&nows)
            .bind(&idles)
            .fetch_all(&db)
            .await;
            // Two batches naming the same sessions in another order can deadlock;
            // PostgreSQL then rolls one back whole, which is safe to run again.
            attempts += 1;
            match &result {
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("40P01") && attempts < 5 => {}
                _ => break result,
            }
        };
        match result {
            Ok(rows) => {
                let mut won: Vec<(Uuid, i64)> = rows
                    .iter()
                    .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
                    .collect();
                for job in batch.drain(..) {
                    let hit = won.iter().position(|w| *w == (job.id, job.from));
                    if let Some(i) = hit {
                        won.swap_remove(i);
                    }
                    let _ = job.reply.send(Ok(hit.is_some()));
                }
            }
            Err(e) => {
                let e = db.err(e);
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn migrator() -> Migrator {
    // `with_migrations` keeps `locking` on: the run holds a PostgreSQL advisory
    // lock, so instances starting together apply the migrations once.
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(v, d, sql)| {
                Migration::new(
                    *v,
                    Cow::Borrowed(*d),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

impl PostgresStore {
    /// Connects to `url` and brings the schema up to date. `url` is a libpq
    /// connection string: `postgres://user:pass@host:port/db`, several hosts
    /// (`postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`) or the
    /// keyword form (`host=h1,h2 port=5432 dbname=db target_session_attrs=read-write`).
    pub async fn open(url: &str, opts: PgPoolSettings) -> StoreResult<Self> {
        Self::open_target(parse_target(url)?, opts).await
    }

    /// [`PostgresStore::open`] for one server given by its options.
    #[cfg(test)]
    pub(crate) async fn open_with(
        connect: sqlx::postgres::PgConnectOptions,
        opts: PgPoolSettings,
    ) -> StoreResult<Self> {
        Self::open_target(crate::pg_conn::Target::single(connect), opts).await
    }

    async fn open_target(
        target: crate::pg_conn::Target,
        opts: PgPoolSettings,
    ) -> StoreResult<Self> {
        let db = Db::connect(target, opts).await?;
        if let Err(e) = migrate(&db).await {
            db.close().await;
            return Err(e);
        }
        Ok(Self::with_db(db))
    }

    /// Connects without applying migrations, for commands that only read: fails
    /// when the database holds no Tessera schema or another version of it.
    pub async fn open_existing(url: &str, opts: PgPoolSettings) -> StoreResult<Self> {
        let db = Db::connect(parse_target(url)?, opts).await?;
        let applied = async {
            let table: Option<String> =
                sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::TEXT")
                    .fetch_one(&db)
                    .await
                    .map_err(map_err)?;
            match table {
                None => Ok(None),
                Some(_) => sqlx::query_scalar::<_, Option<i64>>(
                    "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
                )
                .fetch_one(&db)
                .await
                .map_err(map_err),
            }
        }
        .await;
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        if let Err(e) = applied.and_then(|v| crate::check_schema(v, latest)) {
            db.close().await;
            return Err(e);
        }
        Ok(Self::with_db(db))
    }

    /// The store over a connected database, with its rotation batcher and session
    /// readers running.
    fn with_db(db: Db) -> Self {
        let (rotations, queue) = tokio::sync::mpsc::unbounded_channel();
        let queue = std::sync::Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..ROTATION_WRITERS {
            tokio::spawn(rotation_batcher(db.clone(), queue.clone()));
        }
        let (session_reads, queue) = tokio::sync::mpsc::unbounded_channel();
        let queue = std::sync::Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..SESSION_READERS {
            tokio::spawn(session_reader(db.clone(), queue.clone()));
        }
        Self {
            db,
            rotations,
            session_reads,
        }
    }

    /// A statement for a transaction this store opened: a named prepared statement
    /// only when no transaction pooler is in between.
    fn q(&self, sql: &'static str) -> sqlx::query::Query<'static, Postgres, PgArguments> {
        sqlx::query(sql).persistent(!self.db.transaction_pooler())
    }

    fn qs<O>(
        &self,
        sql: &'static str,
    ) -> sqlx::query::QueryScalar<'static, Postgres, O, PgArguments>
    where
        (O,): for<'r> sqlx::FromRow<'r, PgRow>,
    {
        sqlx::query_scalar(sql).persistent(!self.db.transaction_pooler())
    }
}

/// Applies the migrations on one connection of its own to the primary. Without a
/// pooler, sqlx's migrator holds a session-level advisory lock, so instances
/// starting together apply them once. Behind a transaction pooler a session lock
/// would stay on whichever server connection took it; there the whole run is one
/// transaction under a transaction-level advisory lock instead, and the prepared
/// statements it made are dropped before the commit hands the server connection on.
async fn migrate(db: &Db) -> StoreResult<()> {
    let failed = |e: &dyn std::fmt::Display| StoreError::Other(format!("migration failed: {e}"));
    let mut conn = PgConnection::connect_with(&db.options())
        .await
        .map_err(|e| db.err(e))?;
    let result = if db.transaction_pooler() {
        async {
            let mut tx = conn.begin().await.map_err(|e| db.err(e))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SELECT pg_advisory_xact_lock({MIGRATE_LOCK})"
            )))
            .execute(&mut *tx)
            .await
            .map_err(|e| db.err(e))?;
            let mut m = migrator();
            m.set_locking(false);
            m.run_direct(None, &mut *tx, false)
                .await
                .map_err(|e| failed(&e))?;
            sqlx::raw_sql("DEALLOCATE ALL")
                .execute(&mut *tx)
                .await
                .map_err(|e| db.err(e))?;
            tx.commit().await.map_err(|e| db.err(e))
        }
        .await
    } else {
        migrator()
            .run_direct(None, &mut conn, false)
            .await
            .map_err(|e| failed(&e))
    };
    // Closing ends the session, which also releases a lock a failed run left.
    let _ = conn.close().await;
    result
}

const MAIL_COLUMNS: &str = "id, kind, recipient, subject, text_body, html_body, created_at, attempts::bigint AS attempts, next_attempt_at";

/// Taken before a transaction adds revocation rows and held until it commits, so
/// feed sequence numbers become visible in order: a reader paging by cursor can
/// never pass a lower number that commits later. Reads are not blocked.
const LOCK_FEED: &str = "LOCK TABLE revocations IN EXCLUSIVE MODE";

#[async_trait]
impl Store for PostgresStore {
    async fn close(&self) {
        self.db.close().await;
    }

    async fn database_time(&self) -> StoreResult<Option<i64>> {
        let t: i64 = self
            .qs("SELECT FLOOR(EXTRACT(EPOCH FROM clock_timestamp()))::BIGINT")
            .fetch_one(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(Some(t))
    }

    async fn ping(&self) -> StoreResult<()> {
        self.q("SELECT 1")
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    async fn create_user(&self, u: NewUser) -> StoreResult<User> {
        self.q(
            "INSERT INTO users (id, email, email_key, username, fullname, password_hash, created_at, updated_at, legacy_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
        )
        .bind(u.id)
        .bind(&u.email)
        .bind(tessera_core::validate::email_key(&u.email))
        .bind(&u.username)
        .bind(&u.fullname)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .bind(&u.legacy_id)
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        Ok(User {
            id: u.id,
            email: u.email,
            username: u.username,
            fullname: u.fullname,
            created_at: u.created_at,
            disabled: false,
            legacy_id: u.legacy_id,
            email_verified: false,
        })
    }

    async fn import_users(
        &self,
        users: &[NewUser],
        dry_run: bool,
    ) -> StoreResult<Vec<ImportOutcome>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let col = |f: fn(&NewUser) -> String| users.iter().map(f).collect::<Vec<_>>();
        let mut tx = self.db.begin().await?;
        let rows = self.q(
            "INSERT INTO users (id, email, email_key, username, fullname, password_hash, \
             created_at, updated_at, legacy_id) \
             SELECT id, email, email_key, username, fullname, password_hash, created_at, created_at, legacy_id \
             FROM UNNEST($1::UUID[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], \
                         $7::BIGINT[], $8::TEXT[]) \
               AS t(id, email, email_key, username, fullname, password_hash, created_at, legacy_id) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(users.iter().map(|u| u.id).collect::<Vec<_>>())
        .bind(col(|u| u.email.clone()))
        .bind(col(|u| tessera_core::validate::email_key(&u.email)))
        .bind(col(|u| u.username.clone()))
        .bind(col(|u| u.fullname.clone()))
        .bind(col(|u| u.password_hash.clone()))
        .bind(users.iter().map(|u| u.created_at).collect::<Vec<_>>())
        .bind(users.iter().map(|u| u.legacy_id.clone()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.db.err(e))?;
        let inserted = rows
            .iter()
            .map(|r| r.try_get::<Uuid, _>("id").map_err(map_err))
            .collect::<StoreResult<std::collections::HashSet<_>>>()?;
        let rest: Vec<&NewUser> = users.iter().filter(|u| !inserted.contains(&u.id)).collect();
        let mut existing = Vec::new();
        if !rest.is_empty() {
            let (legacy, emails, names) = crate::import_keys(&rest);
            for r in self
                .q("SELECT email_key, username, legacy_id FROM users \
                 WHERE legacy_id = ANY($1) OR email_key = ANY($2) OR username = ANY($3)")
                .bind(legacy)
                .bind(emails)
                .bind(names)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.db.err(e))?
            {
                existing.push(rows::existing_user_from(&r)?);
            }
        }
        if dry_run {
            tx.rollback().await.map_err(|e| self.db.err(e))?;
        } else {
            tx.commit().await.map_err(|e| self.db.err(e))?;
        }
        Ok(users
            .iter()
            .map(|u| {
                if inserted.contains(&u.id) {
                    ImportOutcome::Inserted
                } else {
                    crate::classify(u, &existing)
                }
            })
            .collect())
    }

    async fn find_user_for_login(&self, key: &LoginKey) -> StoreResult<Option<UserRecord>> {
        let (sql, value) = match key {
            LoginKey::Email(e) => (
                "SELECT id, email, username, fullname, created_at, disabled, legacy_id, email_verified_at, password_hash \
                 FROM users WHERE email_key = $1",
                e,
            ),
            LoginKey::Username(u) => (
                "SELECT id, email, username, fullname, created_at, disabled, legacy_id, email_verified_at, password_hash \
                 FROM users WHERE username = $1",
                u,
            ),
        };
        let row = self
            .q(sql)
            .bind(value)
            .fetch_optional(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        row.as_ref().map(record_from).transpose()
    }

    async fn get_user(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        let row = self.q(
            "SELECT id, email, username, fullname, created_at, disabled, legacy_id, email_verified_at, password_hash \
             FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        row.as_ref().map(record_from).transpose()
    }

    async fn update_user(&self, id: Uuid, p: UserPatch) -> StoreResult<User> {
        let key = p.email.as_deref().map(tessera_core::validate::email_key);
        let row = self.q(
            "UPDATE users SET email = COALESCE($1, email), email_key = COALESCE($2, email_key), \
             username = COALESCE($3, username), fullname = COALESCE($4, fullname), \
             updated_at = EXTRACT(EPOCH FROM now())::BIGINT, \
             email_verified_at = CASE WHEN $2::TEXT IS NULL OR $2 = email_key THEN email_verified_at END \
             WHERE id = $5 RETURNING id, email, username, fullname, created_at, disabled, legacy_id, email_verified_at",
        )
        .bind(p.email)
        .bind(key)
        .bind(p.username)
        .bind(p.fullname)
        .bind(id)
        .fetch_optional(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        row.as_ref()
            .map(user_from)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    async fn set_email_verified(&self, id: Uuid, email_key: &str, at: i64) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1) WHERE id = $2 AND email_key = $3",
        )
        .bind(at)
        .bind(id)
        .bind(email_key)
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn put_pending_user(&self, p: &PendingUser) -> StoreResult<()> {
        let u = &p.user;
        let key = tessera_core::validate::email_key(&u.email);
        let err = |e| self.db.err(e);
        let mut tx = self.db.begin().await?;
        self.q(
            "DELETE FROM pending_users WHERE expires_at <= $1 AND (email_key = $2 OR username = $3)",
        )
        .bind(u.created_at)
        .bind(&key)
        .bind(&u.username)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if self
            .q("SELECT 1 FROM users WHERE username = $1")
            .bind(&u.username)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?
            .is_some()
        {
            return Err(StoreError::Conflict("username"));
        }
        self.q(
            "INSERT INTO pending_users (id, email, email_key, username, fullname, password_hash, \
             token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (email_key) DO UPDATE SET id = excluded.id, email = excluded.email, \
             username = excluded.username, fullname = excluded.fullname, \
             password_hash = excluded.password_hash, token_hash = excluded.token_hash, \
             created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(u.id)
        .bind(&u.email)
        .bind(&key)
        .bind(&u.username)
        .bind(&u.fullname)
        .bind(&u.password_hash)
        .bind(&p.token_hash)
        .bind(u.created_at)
        .bind(p.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn find_pending_user(
        &self,
        key: &LoginKey,
        now: i64,
    ) -> StoreResult<Option<PendingUser>> {
        let (sql, value) = match key {
            LoginKey::Email(e) => (
                "SELECT id, email, username, fullname, password_hash, token_hash, created_at, expires_at \
                 FROM pending_users WHERE email_key = $1 AND expires_at > $2",
                e,
            ),
            LoginKey::Username(u) => (
                "SELECT id, email, username, fullname, password_hash, token_hash, created_at, expires_at \
                 FROM pending_users WHERE username = $1 AND expires_at > $2",
                u,
            ),
        };
        let row = self
            .q(sql)
            .bind(value)
            .bind(now)
            .fetch_optional(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        row.as_ref().map(pending_from).transpose()
    }

    async fn complete_pending_user(&self, token_hash: &str, now: i64) -> StoreResult<Option<User>> {
        let err = |e| self.db.err(e);
        let mut tx = self.db.begin().await?;
        let row = self
            .q("DELETE FROM pending_users WHERE token_hash = $1 AND expires_at > $2 \
                RETURNING id, email, username, fullname, password_hash, token_hash, created_at, expires_at")
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        let Some(u) = row.as_ref().map(pending_from).transpose()?.map(|p| p.user) else {
            return Ok(None);
        };
        self.q(
            "INSERT INTO users (id, email, email_key, username, fullname, password_hash, \
             created_at, updated_at, email_verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(u.id)
        .bind(&u.email)
        .bind(tessera_core::validate::email_key(&u.email))
        .bind(&u.username)
        .bind(&u.fullname)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(Some(rows::confirmed_user(u)))
    }

    async fn renew_pending_link(
        &self,
        id: Uuid,
        old_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let r = self
            .q("UPDATE pending_users SET token_hash = $1 \
                WHERE id = $2 AND token_hash = $3 AND expires_at > $4")
            .bind(new_hash)
            .bind(id)
            .bind(old_hash)
            .bind(now)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn insert_account_token(&self, t: AccountToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO account_tokens (token_hash, purpose, user_id, email, created_at, expires_at, data) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.hash)
        .bind(t.purpose.as_str())
        .bind(t.user_id)
        .bind(&t.email)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(&t.data)
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    async fn get_account_token(&self, hash: &str) -> StoreResult<Option<AccountToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM account_tokens WHERE token_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        row.as_ref().map(token_from).transpose()
    }

    async fn take_account_token(&self, hash: &str) -> StoreResult<Option<AccountToken>> {
        let sql =
            format!("DELETE FROM account_tokens WHERE token_hash = $1 RETURNING {TOKEN_COLUMNS}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        row.as_ref().map(token_from).transpose()
    }

    async fn delete_account_tokens(
        &self,
        user_id: Uuid,
        purpose: TokenPurpose,
    ) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2")
            .bind(user_id)
            .bind(purpose.as_str())
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected())
    }

    async fn enqueue_mail(&self, m: QueuedMail) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mail_queue (id, recipient, subject, text_body, html_body, created_at, attempts, next_attempt_at, kind) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(m.id)
        .bind(&m.recipient)
        .bind(&m.subject)
        .bind(&m.text)
        .bind(&m.html)
        .bind(m.created_at)
        .bind(m.attempts as i32)
        .bind(m.next_attempt_at)
        .bind(m.kind.as_str())
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    async fn claim_mail(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<QueuedMail>> {
        // One statement: no two claims, on any instance, can take the same row.
        let sql = format!(
            "UPDATE mail_queue SET next_attempt_at = $1 WHERE id IN \
             (SELECT id FROM mail_queue WHERE next_attempt_at <= $2 ORDER BY next_attempt_at, created_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {MAIL_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lease_until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        let mut mails = rows
            .iter()
            .map(mail_from)
            .collect::<StoreResult<Vec<_>>>()?;
        mails.sort_by_key(|m| m.created_at);
        Ok(mails)
    }

    async fn mail_delivered(&self, id: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM mail_queue WHERE id = $1")
            .bind(id)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    async fn mail_failed(&self, id: Uuid, next_attempt_at: i64, error: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE mail_queue SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3",
        )
        .bind(next_attempt_at)
        .bind(error)
        .bind(id)
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    async fn count_mail(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mail_queue")
            .fetch_one(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(n as u64)
    }

    async fn upgrade_password_hash(&self, id: Uuid, old: &str, new: &str) -> StoreResult<bool> {
        let r = self
            .q("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
            .bind(new)
            .bind(id)
            .bind(old)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_password_hash(&self, id: Uuid, hash: &str) -> StoreResult<()> {
        let r = self.q(
            "UPDATE users SET password_hash = $1, updated_at = EXTRACT(EPOCH FROM now())::BIGINT \
             WHERE id = $2",
        )
        .bind(hash)
        .bind(id)
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        crate::found(r.rows_affected())
    }

    async fn set_user_disabled(&self, id: Uuid, disabled: bool) -> StoreResult<()> {
        let r = self
            .q(
                "UPDATE users SET disabled = $1, updated_at = EXTRACT(EPOCH FROM now())::BIGINT \
             WHERE id = $2",
            )
            .bind(disabled)
            .bind(id)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        crate::found(r.rows_affected())
    }

    async fn create_session(&self, s: NewSession) -> StoreResult<Session> {
        self.q(
            "INSERT INTO sessions (id, user_id, client_id, counter, rotated_at, created_at, last_used_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, scope, parent_id) \
             VALUES ($1, $2, $3, 0, $4, $4, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(s.id)
        .bind(s.user_id)
        .bind(&s.client_id)
        .bind(s.created_at)
        .bind(s.idle_expires_at)
        .bind(s.absolute_expires_at)
        .bind(&s.user_agent)
        .bind(&s.ip)
        .bind(&s.scope)
        .bind(s.parent_id)
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        Ok(Session {
            id: s.id,
            user_id: s.user_id,
            client_id: s.client_id,
            counter: 0,
            rotated_at: s.created_at,
            created_at: s.created_at,
            last_used_at: s.created_at,
            idle_expires_at: s.idle_expires_at,
            absolute_expires_at: s.absolute_expires_at,
            revoked_at: None,
            user_agent: s.user_agent,
            ip: s.ip,
            scope: s.scope,
        })
    }

    async fn get_session(&self, id: Uuid) -> StoreResult<Option<(Session, User)>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.session_reads
            .send(SessionRead { id, reply })
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the session reader stopped".into()))?
    }

    async fn rotate_session(
        &self,
        id: Uuid,
        from: u64,
        now: i64,
        idle_expires_at: i64,
    ) -> StoreResult<bool> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Rotation {
            id,
            from: from as i64,
            now,
            idle_expires_at,
            reply,
        };
        self.rotations
            .send(job)
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the rotation batcher stopped".into()))?
    }

    async fn revoke_session(
        &self,
        id: Uuid,
        now: i64,
        reason: RevokeReason,
        feed_until: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        let row = self
            .q("UPDATE sessions SET revoked_at = $1, revoke_reason = $2 \
             WHERE id = $3 AND revoked_at IS NULL RETURNING id")
            .bind(now)
            .bind(reason.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.db.err(e))?;
        let revoked = row.is_some();
        if revoked {
            self.q(LOCK_FEED)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db.err(e))?;
            self.q("INSERT INTO revocations (session_id, until) VALUES ($1, $2)")
                .bind(id)
                .bind(feed_until)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db.err(e))?;
        }
        tx.commit().await.map_err(|e| self.db.err(e))?;
        Ok(revoked)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        now: i64,
        reason: RevokeReason,
        feed_until: i64,
    ) -> StoreResult<Vec<Uuid>> {
        let mut tx = self.db.begin().await?;
        let rows = self
            .q("UPDATE sessions SET revoked_at = $1, revoke_reason = $2 \
             WHERE user_id = $3 AND ($4::UUID IS NULL OR id <> $4) AND revoked_at IS NULL \
             AND absolute_expires_at > $1 RETURNING id")
            .bind(now)
            .bind(reason.as_str())
            .bind(user_id)
            .bind(keep)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.db.err(e))?;
        let ids = rows
            .iter()
            .map(|r| r.try_get::<Uuid, _>("id").map_err(map_err))
            .collect::<StoreResult<Vec<_>>>()?;
        if !ids.is_empty() {
            self.q(LOCK_FEED)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db.err(e))?;
            self.q(
                "INSERT INTO revocations (session_id, until) SELECT id, $2 FROM UNNEST($1::UUID[]) AS t(id)",
            )
            .bind(&ids)
            .bind(feed_until)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db.err(e))?;
        }
        tx.commit().await.map_err(|e| self.db.err(e))?;
        Ok(ids)
    }

    async fn count_active_sessions(&self, now: i64) -> StoreResult<u64> {
        let n: i64 = self.qs(
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND idle_expires_at > $1 AND absolute_expires_at > $1",
        )
        .bind(now)
        .fetch_one(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        Ok(n.max(0) as u64)
    }

    async fn list_user_sessions(&self, user_id: Uuid, now: i64) -> StoreResult<Vec<Session>> {
        let rows = self.q(
            concat!(
                "SELECT ",
                crate::session_columns!(),
                " FROM sessions s WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.idle_expires_at > $2 \
             AND s.absolute_expires_at > $2 ORDER BY s.created_at DESC, s.id DESC"
            ),
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        rows.iter().map(session_from).collect()
    }

    async fn child_sessions(&self, parent: Uuid, now: i64) -> StoreResult<Vec<Session>> {
        let rows = self.q(
            concat!(
                "SELECT ",
                crate::session_columns!(),
                " FROM sessions s WHERE s.parent_id = $1 AND s.revoked_at IS NULL AND s.idle_expires_at > $2 \
             AND s.absolute_expires_at > $2 ORDER BY s.created_at DESC, s.id DESC"
            ),
        )
        .bind(parent)
        .bind(now)
        .fetch_all(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        rows.iter().map(session_from).collect()
    }

    async fn revocations_since(
        &self,
        cursor: i64,
        now: i64,
        limit: u32,
    ) -> StoreResult<Vec<Revocation>> {
        let rows = self
            .q(
                "SELECT seq, session_id, until FROM revocations WHERE seq > $1 AND until > $2 \
             ORDER BY seq LIMIT $3",
            )
            .bind(cursor)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        rows.iter().map(rows::revocation_from).collect()
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows = self.q(
            "SELECT kid, alg, private_der, created_at, activates_at, retired_at FROM signing_keys \
             ORDER BY created_at, kid",
        )
        .fetch_all(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        rows.iter().map(rows::key_from).collect()
    }

    async fn insert_key(&self, k: StoredKey) -> StoreResult<()> {
        self.q(
            "INSERT INTO signing_keys (kid, alg, private_der, created_at, activates_at, retired_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.private_der)
        .bind(k.created_at)
        .bind(k.activates_at)
        .bind(k.retired_at)
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    async fn insert_first_key(&self, k: StoredKey, now: i64) -> StoreResult<bool> {
        // Under READ COMMITTED, two transactions running the NOT EXISTS check at
        // once would both see no key and both insert. A transaction-level advisory
        // lock makes the check and the insert one step across every instance; it is
        // released by the commit (or by the rollback when the connection drops).
        let mut tx = self.db.begin().await?;
        self.q("SELECT pg_advisory_xact_lock($1)")
            .bind(FIRST_KEY_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db.err(e))?;
        let r = self.q(
            "INSERT INTO signing_keys (kid, alg, private_der, created_at, activates_at, retired_at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS ( \
               SELECT 1 FROM signing_keys WHERE alg = $2 AND activates_at <= $7 \
               AND (retired_at IS NULL OR retired_at > $7))",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.private_der)
        .bind(k.created_at)
        .bind(k.activates_at)
        .bind(k.retired_at)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db.err(e))?;
        tx.commit().await.map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn replace_key_private(&self, kid: &str, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        let r = self
            .q("UPDATE signing_keys SET private_der = $1 WHERE kid = $2 AND private_der = $3")
            .bind(new)
            .bind(kid)
            .bind(old)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn record_audit(&self, e: AuditEvent) -> StoreResult<()> {
        self.q(
            "INSERT INTO audit_events (at, kind, user_id, session_id, ip, user_agent, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.at)
        .bind(&e.kind)
        .bind(e.user_id)
        .bind(e.session_id)
        .bind(&e.ip)
        .bind(&e.user_agent)
        .bind(&e.detail)
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    async fn list_users(&self, limit: u32, offset: u32) -> StoreResult<Vec<User>> {
        let rows = self
            .q(
                "SELECT id, email, username, fullname, created_at, disabled, legacy_id, email_verified_at FROM users \
             ORDER BY created_at, id LIMIT $1 OFFSET $2",
            )
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        rows.iter().map(user_from).collect()
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let n: i64 = self
            .qs("SELECT COUNT(*) FROM users")
            .fetch_one(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(n.max(0) as u64)
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        let r = self
            .q("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn retire_key(&self, kid: &str, at: i64) -> StoreResult<bool> {
        let r = self
            .q("UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL")
            .bind(at)
            .bind(kid)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<bool> {
        let r = self
            .q("DELETE FROM signing_keys WHERE kid = $1")
            .bind(kid)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn create_client(&self, c: Client) -> StoreResult<()> {
        self.q(concat!(
            "INSERT INTO oauth_clients (",
            crate::client_columns!(),
            ") \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.secret_hash)
        .bind(crate::join_list(&c.grant_types))
        .bind(c.first_party)
        .bind(c.created_at)
        .bind(crate::join_list(&c.redirect_uris))
        .bind(crate::join_list(&c.post_logout_redirect_uris))
        .bind(crate::join_list(&c.allowed_origins))
        .bind(&c.backchannel_logout_uri)
        .bind(crate::join_list(&c.scopes))
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    async fn get_client(&self, id: &str) -> StoreResult<Option<Client>> {
        let row = self
            .q(concat!(
                "SELECT ",
                crate::client_columns!(),
                " FROM oauth_clients WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        row.as_ref().map(rows::client_from).transpose()
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        let rows = self
            .q(concat!(
                "SELECT ",
                crate::client_columns!(),
                " FROM oauth_clients ORDER BY id"
            ))
            .fetch_all(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        rows.iter().map(rows::client_from).collect()
    }

    async fn delete_client(&self, id: &str) -> StoreResult<bool> {
        let r = self
            .q("DELETE FROM oauth_clients WHERE id = $1")
            .bind(id)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn update_client(&self, c: Client) -> StoreResult<bool> {
        let r = self
            .q("UPDATE oauth_clients SET name = $1, secret_hash = $2, grant_types = $3, first_party = $4, \
             redirect_uris = $5, post_logout_redirect_uris = $6, allowed_origins = $7, \
             backchannel_logout_uri = $8, scopes = $9 WHERE id = $10")
            .bind(&c.name)
            .bind(&c.secret_hash)
            .bind(crate::join_list(&c.grant_types))
            .bind(c.first_party)
            .bind(crate::join_list(&c.redirect_uris))
            .bind(crate::join_list(&c.post_logout_redirect_uris))
            .bind(crate::join_list(&c.allowed_origins))
            .bind(&c.backchannel_logout_uri)
            .bind(crate::join_list(&c.scopes))
            .bind(&c.id)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn put_grant(&self, g: Grant) -> StoreResult<()> {
        self.q(
            "INSERT INTO oauth_grants (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at",
        )
        .bind(g.user_id)
        .bind(&g.client_id)
        .bind(&g.scope)
        .bind(g.granted_at)
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    async fn get_grant(&self, user_id: Uuid, client_id: &str) -> StoreResult<Option<Grant>> {
        let row = self
            .q("SELECT user_id, client_id, scope, granted_at FROM oauth_grants WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        row.as_ref().map(rows::grant_from).transpose()
    }

    async fn list_grants(&self, user_id: Uuid) -> StoreResult<Vec<Grant>> {
        let rows = self
            .q(
                "SELECT user_id, client_id, scope, granted_at FROM oauth_grants WHERE user_id = $1 \
             ORDER BY granted_at, client_id",
            )
            .bind(user_id)
            .fetch_all(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        rows.iter().map(rows::grant_from).collect()
    }

    async fn delete_grant(&self, user_id: Uuid, client_id: &str) -> StoreResult<bool> {
        let r = self
            .q("DELETE FROM oauth_grants WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn throttle_hit(&self, key: &str, now: i64, window: i64) -> StoreResult<ThrottleState> {
        // SET expressions all see the row as it was, so both CASEs agree.
        let row = self.q(
            "INSERT INTO throttle (key, window_start, window_len, hits) VALUES ($1, $2, $3, 1) \
             ON CONFLICT(key) DO UPDATE SET \
               hits = CASE WHEN throttle.window_start + throttle.window_len <= excluded.window_start \
                           THEN 1 ELSE throttle.hits + 1 END, \
               window_start = CASE WHEN throttle.window_start + throttle.window_len <= excluded.window_start \
                           THEN excluded.window_start ELSE throttle.window_start END, \
               window_len = CASE WHEN throttle.window_start + throttle.window_len <= excluded.window_start \
                           THEN excluded.window_len ELSE throttle.window_len END \
             RETURNING hits, window_start + window_len AS ends",
        )
        .bind(key)
        .bind(now)
        .bind(window)
        .fetch_one(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        rows::throttle_from(&row)
    }

    async fn throttle_peek(&self, key: &str, now: i64) -> StoreResult<Option<ThrottleState>> {
        let row = self.q(
            "SELECT hits, window_start + window_len AS ends FROM throttle WHERE key = $1 AND window_start + window_len > $2",
        )
        .bind(key)
        .bind(now)
        .fetch_optional(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        row.as_ref().map(rows::throttle_from).transpose()
    }

    async fn throttle_clear(&self, key: &str) -> StoreResult<()> {
        self.q("DELETE FROM throttle WHERE key = $1")
            .bind(key)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    async fn prune(
        &self,
        now: i64,
        sessions_before: i64,
        audit_before: i64,
    ) -> StoreResult<PruneReport> {
        // Separate short statements: a long prune must not hold the feed lock
        // that revocations wait for.
        let sessions = self.q(
            "DELETE FROM sessions WHERE absolute_expires_at < $1 OR idle_expires_at < $2 OR revoked_at < $3",
        )
        .bind(sessions_before)
        .bind(sessions_before)
        .bind(sessions_before)
        .execute(&self.db)
        .await
        .map_err(|e| self.db.err(e))?
        .rows_affected();
        let revocations = self
            .q("DELETE FROM revocations WHERE until <= $1")
            .bind(now)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?
            .rows_affected();
        let audit_events = self
            .q("DELETE FROM audit_events WHERE at < $1")
            .bind(audit_before)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?
            .rows_affected();
        let throttle_rows = self
            .q("DELETE FROM throttle WHERE window_start + window_len <= $1")
            .bind(now)
            .execute(&self.db)
            .await
            .map_err(|e| self.db.err(e))?
            .rows_affected();
        for sql in [
            "DELETE FROM account_tokens WHERE expires_at <= $1",
            "DELETE FROM pending_users WHERE expires_at <= $1",
        ] {
            self.q(sql)
                .bind(now)
                .execute(&self.db)
                .await
                .map_err(|e| self.db.err(e))?;
        }
        Ok(PruneReport {
            sessions,
            revocations,
            audit_events,
            throttle_rows,
        })
    }

    async fn list_audit(
        &self,
        user_id: Option<Uuid>,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>> {
        let rows = self
            .q(
                "SELECT at, kind, user_id, session_id, ip, user_agent, detail FROM audit_events \
             WHERE at >= $1 AND ($2::UUID IS NULL OR user_id = $2) ORDER BY at, id LIMIT $3",
            )
            .bind(since)
            .bind(user_id)
            .bind(i64::from(limit))
            .fetch_all(&self.db)
            .await
            .map_err(|e| self.db.err(e))?;
        rows.iter().map(audit_from).collect()
    }

    async fn list_recent_audit(
        &self,
        user_id: Option<Uuid>,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>> {
        let rows = self.q(
            "SELECT at, kind, user_id, session_id, ip, user_agent, detail FROM audit_events \
             WHERE at >= $1 AND ($2::UUID IS NULL OR user_id = $2) ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(since)
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await
        .map_err(|e| self.db.err(e))?;
        rows.iter().map(audit_from).collect()
    }
}

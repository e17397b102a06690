//! SQLite: one writer connection (SQLite serialises writers anyway) and a small
//! pool of readers, in WAL mode so readers never wait for the writer.

use crate::rows::{
    DomainRow, PENDING_COLUMNS, TOKEN_COLUMNS, audit_from, mail_from, pending_from, record_from,
    session_from, token_from, user_from,
};
use crate::sqlite_fast::FastPath;
use crate::{map_err, rows};
use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, SqlSafeStr, Sqlite};
use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
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
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "clients_throttle",
        include_str!("../migrations/sqlite/0002_clients_throttle.sql"),
    ),
    (
        3,
        "legacy_id",
        include_str!("../migrations/sqlite/0003_legacy_id.sql"),
    ),
    (
        4,
        "account_lifecycle",
        include_str!("../migrations/sqlite/0004_account_lifecycle.sql"),
    ),
    (
        5,
        "oidc",
        include_str!("../migrations/sqlite/0005_oidc.sql"),
    ),
    (
        6,
        "pending_users",
        include_str!("../migrations/sqlite/0006_pending_users.sql"),
    ),
];

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Inline session reads and group-committed rotations (none for an
    /// in-memory database, which other connections cannot see).
    fast: Option<Arc<FastPath>>,
}

fn migrator() -> Migrator {
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

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path` or a plain
    /// path) and brings its schema up to date.
    /// `acquire_timeout`: how long a request waits for a connection before the store
    /// reports itself unavailable.
    pub async fn open(url: &str, readers: u32, acquire_timeout: Duration) -> StoreResult<Self> {
        Self::open_inner(url, readers, acquire_timeout, true, None).await
    }

    /// [`SqliteStore::open`] with a ceiling on the database's size (`max_bytes`,
    /// SQLite's `max_page_count` on every writing connection): a write that would
    /// grow it further fails as `Unavailable`, as on a full disk, while reads go on.
    pub async fn open_limited(
        url: &str,
        readers: u32,
        acquire_timeout: Duration,
        max_bytes: Option<u64>,
    ) -> StoreResult<Self> {
        Self::open_inner(url, readers, acquire_timeout, true, max_bytes).await
    }

    /// Opens an existing database as it is: creates no file and applies no
    /// migration, for commands that only read. Fails when the file is missing or
    /// its schema is not the one this build uses.
    pub async fn open_existing(
        url: &str,
        readers: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        Self::open_inner(url, readers, acquire_timeout, false, None).await
    }

    /// Opens the database, trying again for a while when the file is busy: servers
    /// starting together on one new file race to switch it to WAL mode and to
    /// migrate it, and SQLite answers some of those races with "database is
    /// locked" at once instead of waiting out the busy timeout.
    async fn open_inner(
        url: &str,
        readers: u32,
        acquire_timeout: Duration,
        migrate: bool,
        max_bytes: Option<u64>,
    ) -> StoreResult<Self> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut attempt: u64 = 0;
        loop {
            match Self::open_once(url, readers, acquire_timeout, migrate, max_bytes).await {
                Err(StoreError::Unavailable(e))
                    if (e.contains("locked") || e.contains("busy"))
                        && std::time::Instant::now() < deadline =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * attempt.min(10))).await;
                }
                other => return other,
            }
        }
    }

    async fn open_once(
        url: &str,
        readers: u32,
        acquire_timeout: Duration,
        migrate: bool,
        max_bytes: Option<u64>,
    ) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(migrate)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(crate::SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true)
            // Checkpoints run on the fast path's own thread (sqlite_fast.rs).
            .pragma("wal_autocheckpoint", "0");
        // Opening and migrating may wait longer for the lock: instances starting
        // together on one file take turns there.
        let opening = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            .connect_with(opts.clone().busy_timeout(Duration::from_secs(5)))
            .await
            .map_err(map_err)?;
        if migrate {
            // SQLite has no lock that spans sqlx's migration run, so servers starting
            // together on one file can both try to apply the same migration; the
            // loser's transaction rolls back. Trying again then finds it applied.
            let mut attempt = 0;
            while let Err(e) = migrator().run(&opening).await {
                attempt += 1;
                if attempt == 20 {
                    opening.close().await;
                    return Err(StoreError::Other(format!("migration failed: {e}")));
                }
                tokio::time::sleep(Duration::from_millis(50 * attempt.min(10))).await;
            }
        } else {
            let has_table: Option<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            )
            .fetch_optional(&opening)
            .await
            .map_err(map_err)?;
            let applied = match has_table {
                None => None,
                Some(_) => sqlx::query_scalar::<_, Option<i64>>(
                    "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
                )
                .fetch_one(&opening)
                .await
                .map_err(map_err)?,
            };
            let latest = MIGRATIONS.last().map_or(0, |m| m.0);
            if let Err(e) = crate::check_schema(applied, latest) {
                opening.close().await;
                return Err(e);
            }
        }
        opening.close().await;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if let Some(bytes) = max_bytes {
                        let page: i64 = sqlx::query_scalar("PRAGMA page_size")
                            .fetch_one(&mut *conn)
                            .await?;
                        let pages = (bytes as i64 / page.max(512)).max(1);
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "PRAGMA max_page_count = {pages}"
                        )))
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts.clone())
            .await
            .map_err(map_err)?;
        let file = opts.get_filename().to_path_buf();
        let in_memory = file.as_os_str().is_empty() || file == Path::new(":memory:");
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(acquire_timeout)
            .connect_with(opts.read_only(true))
            .await
            .map_err(map_err)?;
        let fast = if in_memory {
            None
        } else {
            Some(Arc::new(FastPath::start(&file, max_bytes)?))
        };
        Ok(Self {
            writer,
            reader,
            fast,
        })
    }
}

impl SqliteStore {
    /// Writes a consistent copy of the whole database to `path` (a new file) while
    /// it stays in use: SQLite's `VACUUM INTO` reads one snapshot, so writers carry
    /// on and the copy holds every transaction committed before it began.
    pub async fn backup_into(&self, path: &std::path::Path) -> StoreResult<()> {
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Other("the backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO ?")
            .bind(target)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

const MAIL_COLUMNS: &str =
    "id, kind, recipient, subject, text_body, html_body, created_at, attempts, next_attempt_at";

#[async_trait]
impl Store for SqliteStore {
    async fn close(&self) {
        if let Some(fast) = &self.fast {
            fast.close();
        }
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn create_user(&self, u: NewUser) -> StoreResult<User> {
        sqlx::query(
            "INSERT INTO users (id, email, email_key, username, fullname, password_hash, created_at, updated_at, legacy_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(u.id.to_string())
        .bind(&u.email)
        .bind(tessera_core::validate::email_key(&u.email))
        .bind(&u.username)
        .bind(&u.fullname)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .bind(u.created_at)
        .bind(&u.legacy_id)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
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
        // 9 parameters a row; SQLite allows 32766 per statement.
        const ROWS: usize = 500;
        if users.is_empty() {
            return Ok(Vec::new());
        }
        // The first statement writes, so the write lock is taken at once.
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let mut inserted = HashSet::new();
        for chunk in users.chunks(ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO users (id, email, email_key, username, fullname, password_hash, \
                 created_at, updated_at, legacy_id) ",
            );
            q.push_values(chunk, |mut row, u| {
                row.push_bind(u.id.to_string())
                    .push_bind(&u.email)
                    .push_bind(tessera_core::validate::email_key(&u.email))
                    .push_bind(&u.username)
                    .push_bind(&u.fullname)
                    .push_bind(&u.password_hash)
                    .push_bind(u.created_at)
                    .push_bind(u.created_at)
                    .push_bind(&u.legacy_id);
            });
            q.push(" ON CONFLICT DO NOTHING RETURNING id");
            for r in q.build().fetch_all(&mut *tx).await.map_err(map_err)? {
                inserted.insert(r.id("id")?);
            }
        }
        let rest: Vec<&NewUser> = users.iter().filter(|u| !inserted.contains(&u.id)).collect();
        let mut existing = Vec::new();
        // Three lists of up to ROWS parameters each.
        for chunk in rest.chunks(ROWS) {
            let (legacy, emails, names) = crate::import_keys(chunk);
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT email_key, username, legacy_id FROM users WHERE legacy_id IN (",
            );
            let mut list = q.separated(", ");
            list.push("NULL");
            for l in &legacy {
                list.push_bind(l);
            }
            q.push(") OR email_key IN (");
            let mut list = q.separated(", ");
            for e in &emails {
                list.push_bind(e);
            }
            q.push(") OR username IN (");
            let mut list = q.separated(", ");
            for n in &names {
                list.push_bind(n);
            }
            q.push(")");
            for r in q.build().fetch_all(&mut *tx).await.map_err(map_err)? {
                existing.push(rows::existing_user_from(&r)?);
            }
        }
        if dry_run {
            tx.rollback().await.map_err(map_err)?;
        } else {
            tx.commit().await.map_err(map_err)?;
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
            LoginKey::Email(e) => (user_query("email_key"), e),
            LoginKey::Username(u) => (user_query("username"), u),
        };
        let row = sqlx::query(sql)
            .bind(value)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        row.as_ref().map(record_from).transpose()
    }

    async fn get_user(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(user_query("id"))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        row.as_ref().map(record_from).transpose()
    }

    async fn update_user(&self, id: Uuid, p: UserPatch) -> StoreResult<User> {
        let key = p.email.as_deref().map(tessera_core::validate::email_key);
        let row = sqlx::query(
            "UPDATE users SET email = COALESCE(?1, email), email_key = COALESCE(?2, email_key), \
             username = COALESCE(?3, username), fullname = COALESCE(?4, fullname), updated_at = unixepoch(), \
             email_verified_at = CASE WHEN ?2 IS NULL OR ?2 = email_key THEN email_verified_at END \
             WHERE id = ?5 RETURNING id, email, username, fullname, created_at, disabled, legacy_id, email_verified_at",
        )
        .bind(p.email)
        .bind(key)
        .bind(p.username)
        .bind(p.fullname)
        .bind(id.to_string())
        .fetch_optional(&self.writer)
        .await
        .map_err(map_err)?;
        row.as_ref()
            .map(user_from)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    async fn set_email_verified(&self, id: Uuid, email_key: &str, at: i64) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE users SET email_verified_at = COALESCE(email_verified_at, ?) WHERE id = ? AND email_key = ?",
        )
        .bind(at)
        .bind(id.to_string())
        .bind(email_key)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn put_pending_user(&self, p: &PendingUser) -> StoreResult<()> {
        let u = &p.user;
        let key = tessera_core::validate::email_key(&u.email);
        // The first statement writes, so the write lock is taken at once.
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        sqlx::query(
            "DELETE FROM pending_users WHERE expires_at <= ? AND (email_key = ? OR username = ?)",
        )
        .bind(u.created_at)
        .bind(&key)
        .bind(&u.username)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if sqlx::query("SELECT 1 FROM users WHERE username = ?")
            .bind(&u.username)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .is_some()
        {
            return Err(StoreError::Conflict("username"));
        }
        sqlx::query(
            "INSERT INTO pending_users (id, email, email_key, username, fullname, password_hash, \
             token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (email_key) DO UPDATE SET id = excluded.id, email = excluded.email, \
             username = excluded.username, fullname = excluded.fullname, \
             password_hash = excluded.password_hash, token_hash = excluded.token_hash, \
             created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(u.id.to_string())
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
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn find_pending_user(
        &self,
        key: &LoginKey,
        now: i64,
    ) -> StoreResult<Option<PendingUser>> {
        let (column, value) = match key {
            LoginKey::Email(e) => ("email_key", e),
            LoginKey::Username(u) => ("username", u),
        };
        let sql = format!(
            "SELECT {PENDING_COLUMNS} FROM pending_users WHERE {column} = ? AND expires_at > ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .bind(now)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        row.as_ref().map(pending_from).transpose()
    }

    async fn complete_pending_user(&self, token_hash: &str, now: i64) -> StoreResult<Option<User>> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let sql = format!(
            "DELETE FROM pending_users WHERE token_hash = ? AND expires_at > ? \
             RETURNING {PENDING_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(u) = row.as_ref().map(pending_from).transpose()?.map(|p| p.user) else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO users (id, email, email_key, username, fullname, password_hash, \
             created_at, updated_at, email_verified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(u.id.to_string())
        .bind(&u.email)
        .bind(tessera_core::validate::email_key(&u.email))
        .bind(&u.username)
        .bind(&u.fullname)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(rows::confirmed_user(u)))
    }

    async fn renew_pending_link(
        &self,
        id: Uuid,
        old_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE pending_users SET token_hash = ? WHERE id = ? AND token_hash = ? AND expires_at > ?",
        )
        .bind(new_hash)
        .bind(id.to_string())
        .bind(old_hash)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn insert_account_token(&self, t: AccountToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO account_tokens (token_hash, purpose, user_id, email, created_at, expires_at, data) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.hash)
        .bind(t.purpose.as_str())
        .bind(t.user_id.map(|u| u.to_string()))
        .bind(&t.email)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(&t.data)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn get_account_token(&self, hash: &str) -> StoreResult<Option<AccountToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM account_tokens WHERE token_hash = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        row.as_ref().map(token_from).transpose()
    }

    async fn take_account_token(&self, hash: &str) -> StoreResult<Option<AccountToken>> {
        let sql =
            format!("DELETE FROM account_tokens WHERE token_hash = ? RETURNING {TOKEN_COLUMNS}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(&self.writer)
            .await
            .map_err(map_err)?;
        row.as_ref().map(token_from).transpose()
    }

    async fn delete_account_tokens(
        &self,
        user_id: Uuid,
        purpose: TokenPurpose,
    ) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM account_tokens WHERE user_id = ? AND purpose = ?")
            .bind(user_id.to_string())
            .bind(purpose.as_str())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected())
    }

    async fn enqueue_mail(&self, m: QueuedMail) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mail_queue (id, recipient, subject, text_body, html_body, created_at, attempts, next_attempt_at, kind) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(m.id.to_string())
        .bind(&m.recipient)
        .bind(&m.subject)
        .bind(&m.text)
        .bind(&m.html)
        .bind(m.created_at)
        .bind(i64::from(m.attempts))
        .bind(m.next_attempt_at)
        .bind(m.kind.as_str())
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
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
            "UPDATE mail_queue SET next_attempt_at = ? WHERE id IN \
             (SELECT id FROM mail_queue WHERE next_attempt_at <= ? ORDER BY next_attempt_at, created_at LIMIT ?) \
             RETURNING {MAIL_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lease_until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
            .await
            .map_err(map_err)?;
        let mut mails = rows
            .iter()
            .map(mail_from)
            .collect::<StoreResult<Vec<_>>>()?;
        mails.sort_by_key(|m| m.created_at);
        Ok(mails)
    }

    async fn mail_delivered(&self, id: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM mail_queue WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn mail_failed(&self, id: Uuid, next_attempt_at: i64, error: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE mail_queue SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
        )
        .bind(next_attempt_at)
        .bind(error)
        .bind(id.to_string())
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn count_mail(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mail_queue")
            .fetch_one(&self.reader)
            .await
            .map_err(map_err)?;
        Ok(n as u64)
    }

    async fn upgrade_password_hash(&self, id: Uuid, old: &str, new: &str) -> StoreResult<bool> {
        let r =
            sqlx::query("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?")
                .bind(new)
                .bind(id.to_string())
                .bind(old)
                .execute(&self.writer)
                .await
                .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_password_hash(&self, id: Uuid, hash: &str) -> StoreResult<()> {
        let r = sqlx::query(
            "UPDATE users SET password_hash = ?, updated_at = unixepoch() WHERE id = ?",
        )
        .bind(hash)
        .bind(id.to_string())
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        crate::found(r.rows_affected())
    }

    async fn set_user_disabled(&self, id: Uuid, disabled: bool) -> StoreResult<()> {
        let r = sqlx::query("UPDATE users SET disabled = ?, updated_at = unixepoch() WHERE id = ?")
            .bind(disabled as i64)
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        crate::found(r.rows_affected())
    }

    async fn create_session(&self, s: NewSession) -> StoreResult<Session> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, client_id, counter, rotated_at, created_at, last_used_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, scope, parent_id) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(s.id.to_string())
        .bind(s.user_id.to_string())
        .bind(&s.client_id)
        .bind(s.created_at)
        .bind(s.created_at)
        .bind(s.created_at)
        .bind(s.idle_expires_at)
        .bind(s.absolute_expires_at)
        .bind(&s.user_agent)
        .bind(&s.ip)
        .bind(&s.scope)
        .bind(s.parent_id.map(|p| p.to_string()))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
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
        if let Some(fast) = &self.fast {
            return fast.get_session(id);
        }
        let row = sqlx::query(
            "SELECT s.id AS sid, s.user_id, s.client_id, s.counter, s.rotated_at, s.created_at AS s_created_at, \
             s.last_used_at, s.idle_expires_at, s.absolute_expires_at, s.revoked_at, s.user_agent, s.ip, s.scope, \
             u.id, u.email, u.username, u.fullname, u.created_at, u.disabled, u.legacy_id, u.email_verified_at \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        match row {
            Some(r) => Ok(Some((session_from(&r)?, user_from(&r)?))),
            None => Ok(None),
        }
    }

    async fn rotate_session(
        &self,
        id: Uuid,
        from: u64,
        now: i64,
        idle_expires_at: i64,
    ) -> StoreResult<bool> {
        if let Some(fast) = &self.fast {
            return fast.rotate(id, from, now, idle_expires_at).await;
        }
        let r = sqlx::query(
            "UPDATE sessions SET counter = counter + 1, rotated_at = ?, last_used_at = ?, idle_expires_at = ? \
             WHERE id = ? AND counter = ? AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(now)
        .bind(idle_expires_at)
        .bind(id.to_string())
        .bind(from as i64)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn revoke_session(
        &self,
        id: Uuid,
        now: i64,
        reason: RevokeReason,
        feed_until: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let r = sqlx::query("UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(reason.as_str())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let revoked = r.rows_affected() == 1;
        if revoked {
            sqlx::query("INSERT INTO revocations (session_id, until) VALUES (?, ?)")
                .bind(id.to_string())
                .bind(feed_until)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
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
        let keep = keep.map(|k| k.to_string()).unwrap_or_default();
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let rows = sqlx::query(
            "UPDATE sessions SET revoked_at = ?, revoke_reason = ? \
             WHERE user_id = ? AND id != ? AND revoked_at IS NULL AND absolute_expires_at > ? RETURNING id",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(user_id.to_string())
        .bind(&keep)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id").map_err(map_err)?;
            sqlx::query("INSERT INTO revocations (session_id, until) VALUES (?, ?)")
                .bind(&id)
                .bind(feed_until)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            ids.push(rows::parse_id(&id)?);
        }
        tx.commit().await.map_err(map_err)?;
        Ok(ids)
    }

    async fn count_active_sessions(&self, now: i64) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND idle_expires_at > ? AND absolute_expires_at > ?",
        )
        .bind(now)
        .bind(now)
        .fetch_one(&self.reader)
        .await
        .map_err(map_err)?;
        Ok(n.max(0) as u64)
    }

    async fn list_user_sessions(&self, user_id: Uuid, now: i64) -> StoreResult<Vec<Session>> {
        let rows = sqlx::query(
            concat!(
                "SELECT ",
                crate::session_columns!(),
                " FROM sessions s WHERE s.user_id = ? AND s.revoked_at IS NULL AND s.idle_expires_at > ? \
             AND s.absolute_expires_at > ? ORDER BY s.created_at DESC, s.id DESC"
            ),
        )
        .bind(user_id.to_string())
        .bind(now)
        .bind(now)
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(session_from).collect()
    }

    async fn child_sessions(&self, parent: Uuid, now: i64) -> StoreResult<Vec<Session>> {
        let rows = sqlx::query(
            concat!(
                "SELECT ",
                crate::session_columns!(),
                " FROM sessions s WHERE s.parent_id = ? AND s.revoked_at IS NULL AND s.idle_expires_at > ? \
             AND s.absolute_expires_at > ? ORDER BY s.created_at DESC, s.id DESC"
            ),
        )
        .bind(parent.to_string())
        .bind(now)
        .bind(now)
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(session_from).collect()
    }

    async fn revocations_since(
        &self,
        cursor: i64,
        now: i64,
        limit: u32,
    ) -> StoreResult<Vec<Revocation>> {
        let rows = sqlx::query(
            "SELECT seq, session_id, until FROM revocations WHERE seq > ? AND until > ? ORDER BY seq LIMIT ?",
        )
        .bind(cursor)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(rows::revocation_from).collect()
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_der, created_at, activates_at, retired_at FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(rows::key_from).collect()
    }

    async fn insert_key(&self, k: StoredKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_der, created_at, activates_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.private_der)
        .bind(k.created_at)
        .bind(k.activates_at)
        .bind(k.retired_at)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn insert_first_key(&self, k: StoredKey, now: i64) -> StoreResult<bool> {
        // One statement: SQLite takes the write lock before it evaluates the
        // NOT EXISTS, so no other writer (another pool or another process on the
        // same file) can insert between the check and the insert.
        let r = sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_der, created_at, activates_at, retired_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE NOT EXISTS ( \
               SELECT 1 FROM signing_keys WHERE alg = ?2 AND activates_at <= ?7 \
               AND (retired_at IS NULL OR retired_at > ?7))",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.private_der)
        .bind(k.created_at)
        .bind(k.activates_at)
        .bind(k.retired_at)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn replace_key_private(&self, kid: &str, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE signing_keys SET private_der = ? WHERE kid = ? AND private_der = ?",
        )
        .bind(new)
        .bind(kid)
        .bind(old)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn record_audit(&self, e: AuditEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_events (at, kind, user_id, session_id, ip, user_agent, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.at)
        .bind(&e.kind)
        .bind(e.user_id.map(|u| u.to_string()))
        .bind(e.session_id.map(|u| u.to_string()))
        .bind(&e.ip)
        .bind(&e.user_agent)
        .bind(&e.detail)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn list_users(&self, limit: u32, offset: u32) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(
            "SELECT id, email, username, fullname, created_at, disabled, legacy_id, email_verified_at FROM users \
             ORDER BY created_at, id LIMIT ? OFFSET ?",
        )
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(user_from).collect()
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.reader)
            .await
            .map_err(map_err)?;
        Ok(n.max(0) as u64)
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn retire_key(&self, kid: &str, at: i64) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE signing_keys SET retired_at = ? WHERE kid = ? AND retired_at IS NULL",
        )
        .bind(at)
        .bind(kid)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM signing_keys WHERE kid = ?")
            .bind(kid)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn create_client(&self, c: Client) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO oauth_clients (",
            crate::client_columns!(),
            ") \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.secret_hash)
        .bind(crate::join_list(&c.grant_types))
        .bind(c.first_party as i64)
        .bind(c.created_at)
        .bind(crate::join_list(&c.redirect_uris))
        .bind(crate::join_list(&c.post_logout_redirect_uris))
        .bind(crate::join_list(&c.allowed_origins))
        .bind(&c.backchannel_logout_uri)
        .bind(crate::join_list(&c.scopes))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn get_client(&self, id: &str) -> StoreResult<Option<Client>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            crate::client_columns!(),
            " FROM oauth_clients WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.as_ref().map(rows::client_from).transpose()
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            crate::client_columns!(),
            " FROM oauth_clients ORDER BY id"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(rows::client_from).collect()
    }

    async fn delete_client(&self, id: &str) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM oauth_clients WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn update_client(&self, c: Client) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE oauth_clients SET name = ?, secret_hash = ?, grant_types = ?, first_party = ?, \
             redirect_uris = ?, post_logout_redirect_uris = ?, allowed_origins = ?, \
             backchannel_logout_uri = ?, scopes = ? WHERE id = ?",
        )
        .bind(&c.name)
        .bind(&c.secret_hash)
        .bind(crate::join_list(&c.grant_types))
        .bind(c.first_party as i64)
        .bind(crate::join_list(&c.redirect_uris))
        .bind(crate::join_list(&c.post_logout_redirect_uris))
        .bind(crate::join_list(&c.allowed_origins))
        .bind(&c.backchannel_logout_uri)
        .bind(crate::join_list(&c.scopes))
        .bind(&c.id)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn put_grant(&self, g: Grant) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO oauth_grants (user_id, client_id, scope, granted_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at",
        )
        .bind(g.user_id.to_string())
        .bind(&g.client_id)
        .bind(&g.scope)
        .bind(g.granted_at)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn get_grant(&self, user_id: Uuid, client_id: &str) -> StoreResult<Option<Grant>> {
        let row = sqlx::query(
            "SELECT user_id, client_id, scope, granted_at FROM oauth_grants WHERE user_id = ? AND client_id = ?",
        )
        .bind(user_id.to_string())
        .bind(client_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.as_ref().map(rows::grant_from).transpose()
    }

    async fn list_grants(&self, user_id: Uuid) -> StoreResult<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT user_id, client_id, scope, granted_at FROM oauth_grants WHERE user_id = ? \
             ORDER BY granted_at, client_id",
        )
        .bind(user_id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(rows::grant_from).collect()
    }

    async fn delete_grant(&self, user_id: Uuid, client_id: &str) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM oauth_grants WHERE user_id = ? AND client_id = ?")
            .bind(user_id.to_string())
            .bind(client_id)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn throttle_hit(&self, key: &str, now: i64, window: i64) -> StoreResult<ThrottleState> {
        // SET expressions all see the row as it was, so both CASEs agree.
        let row = sqlx::query(
            "INSERT INTO throttle (key, window_start, window_len, hits) VALUES (?, ?, ?, 1) \
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
        .fetch_one(&self.writer)
        .await
        .map_err(map_err)?;
        rows::throttle_from(&row)
    }

    async fn throttle_peek(&self, key: &str, now: i64) -> StoreResult<Option<ThrottleState>> {
        let row = sqlx::query(
            "SELECT hits, window_start + window_len AS ends FROM throttle WHERE key = ? AND window_start + window_len > ?",
        )
        .bind(key)
        .bind(now)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.as_ref().map(rows::throttle_from).transpose()
    }

    async fn throttle_clear(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM throttle WHERE key = ?")
            .bind(key)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn prune(
        &self,
        now: i64,
        sessions_before: i64,
        audit_before: i64,
    ) -> StoreResult<PruneReport> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let sessions = sqlx::query(
            "DELETE FROM sessions WHERE absolute_expires_at < ? OR idle_expires_at < ? OR revoked_at < ?",
        )
        .bind(sessions_before)
        .bind(sessions_before)
        .bind(sessions_before)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        let revocations = sqlx::query("DELETE FROM revocations WHERE until <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        let audit_events = sqlx::query("DELETE FROM audit_events WHERE at < ?")
            .bind(audit_before)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        for sql in [
            "DELETE FROM account_tokens WHERE expires_at <= ?",
            "DELETE FROM pending_users WHERE expires_at <= ?",
        ] {
            sqlx::query(sql)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        let throttle_rows =
            sqlx::query("DELETE FROM throttle WHERE window_start + window_len <= ?")
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
        tx.commit().await.map_err(map_err)?;
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
        let rows = sqlx::query(
            "SELECT at, kind, user_id, session_id, ip, user_agent, detail FROM audit_events \
             WHERE at >= ? AND (? IS NULL OR user_id = ?) ORDER BY at, id LIMIT ?",
        )
        .bind(since)
        .bind(user_id.map(|u| u.to_string()))
        .bind(user_id.map(|u| u.to_string()))
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(audit_from).collect()
    }

    async fn list_recent_audit(
        &self,
        user_id: Option<Uuid>,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT at, kind, user_id, session_id, ip, user_agent, detail FROM audit_events \
             WHERE at >= ? AND (? IS NULL OR user_id = ?) ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(since)
        .bind(user_id.map(|u| u.to_string()))
        .bind(user_id.map(|u| u.to_string()))
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(audit_from).collect()
    }
}

/// The user lookup by one column; the column names are fixed strings, never input.
fn user_query(column: &str) -> &'static str {
    match column {
        "email_key" => {
            "SELECT id, email, username, fullname, created_at, disabled, legacy_id, email_verified_at, password_hash FROM users WHERE email_key = ?"
        }
        "username" => {
            "SELECT id, email, username, fullname, created_at, disabled, legacy_id, email_verified_at, password_hash FROM users WHERE username = ?"
        }
        _ => {
            "SELECT id, email, username, fullname, created_at, disabled, legacy_id, email_verified_at, password_hash FROM users WHERE id = ?"
        }
    }
}

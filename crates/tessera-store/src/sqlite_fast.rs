//! The two SQLite hot paths without a thread hop per statement.
//!
//! * Session reads (every protected request and every refresh) run inline on a
//!   small set of rusqlite connections: a primary-key lookup in WAL mode takes
//!   microseconds and never waits for a writer.
//! * Rotations go to one writer thread that commits whatever arrived together in
//!   one transaction (group commit). Each rotation is still its own compare-and-set
//!   `UPDATE`; a request is answered only after the transaction holding its
//!   rotation has committed, so an acknowledged rotation is durable (as durable as
//!   `synchronous=NORMAL` in WAL mode makes any commit).
//!
//! * Checkpoints (copying the write-ahead log back into the database file, with
//!   its fsyncs) run on a thread of their own every `CHECKPOINT_EVERY`, instead of
//!   inside whichever commit happens to fill the log: a rotation's answer never
//!   waits for one. Every write connection turns SQLite's automatic checkpoint off.
//!
//! Everything else stays on sqlx; both open the same file.

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;
use tessera_core::StoreError;
use tessera_core::model::{Session, User};
use tessera_core::store::StoreResult;
use uuid::Uuid;

/// Most rotations applied in one transaction.
const MAX_BATCH: usize = 256;
/// Idle reader connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;
/// How often the checkpoint thread copies the write-ahead log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

const SESSION_QUERY: &str = "SELECT s.id, s.user_id, s.client_id, s.counter, s.rotated_at, s.created_at, \
     s.last_used_at, s.idle_expires_at, s.absolute_expires_at, s.revoked_at, s.user_agent, s.ip, \
     u.email, u.username, u.fullname, u.created_at, u.disabled, u.legacy_id, u.email_verified_at, s.scope \
     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?1";

const ROTATE: &str = "UPDATE sessions SET counter = counter + 1, rotated_at = ?1, last_used_at = ?1, \
     idle_expires_at = ?2 WHERE id = ?3 AND counter = ?4 AND revoked_at IS NULL";

struct Rotation {
    id: String,
    from: i64,
    now: i64,
    idle_expires_at: i64,
    reply: tokio::sync::oneshot::Sender<StoreResult<bool>>,
}

pub(crate) struct FastPath {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<mpsc::Sender<Rotation>>>,
    /// Dropping the sender stops the checkpoint thread (after a last checkpoint).
    checkpointer: Mutex<Option<mpsc::Sender<()>>>,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("path", &self.path)
            .finish()
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | DiskFull | CannotOpen | SystemIoFailure) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

fn uuid(s: &str) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn open(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(crate::SQLITE_BUSY_TIMEOUT)?;
    // The checkpoint thread does this work (see the module's comment).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // The same settings sqlx gives its connections.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl FastPath {
    /// Starts the writer thread for the database file at `path` (already created
    /// and migrated, in WAL mode).
    /// `max_bytes` caps the database's size as on the sqlx writer.
    pub(crate) fn start(path: &Path, max_bytes: Option<u64>) -> StoreResult<Self> {
        let writer_conn = open(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(unavailable)?;
        if let Some(bytes) = max_bytes {
            let page: i64 = writer_conn
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .map_err(unavailable)?;
            let pages = (bytes as i64 / page.max(512)).max(1);
            // Setting it answers the value now in force.
            let _: i64 = writer_conn
                .pragma_update_and_check(None, "max_page_count", pages, |r| r.get(0))
                .map_err(unavailable)?;
        }
        let checkpoint_conn = open(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(unavailable)?;
        let spawn = |name: &str, work: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(work)
                .map(drop)
                .map_err(|e| StoreError::Other(format!("cannot start {name}: {e}")))
        };
        let (tx, rx) = mpsc::channel::<Rotation>();
        spawn(
            "tessera-sqlite-writer",
            Box::new(move || write_loop(writer_conn, rx)),
        )?;
        let (stop, stopped) = mpsc::channel::<()>();
        spawn(
            "tessera-sqlite-checkpoint",
            Box::new(move || checkpoint_loop(checkpoint_conn, stopped)),
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(Some(tx)),
            checkpointer: Mutex::new(Some(stop)),
        })
    }

    /// Stops the writer thread once the rotations already queued are done, and
    /// the checkpoint thread after one last checkpoint.
    pub(crate) fn close(&self) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.checkpointer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn reader(&self) -> StoreResult<Connection> {
        if let Some(c) = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        open(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(unavailable)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }

    pub(crate) fn get_session(&self, id: Uuid) -> StoreResult<Option<(Session, User)>> {
        let conn = self.reader()?;
        let found = read_session(&conn, &id.to_string());
        // A connection that failed may be broken; only healthy ones are reused.
        if found.is_ok() {
            self.give_back(conn);
        }
        found.map_err(unavailable)
    }

    pub(crate) async fn rotate(
        &self,
        id: Uuid,
        from: u64,
        now: i64,
        idle_expires_at: i64,
    ) -> StoreResult<bool> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Rotation {
            id: id.to_string(),
            from: from as i64,
            now,
            idle_expires_at,
            reply,
        };
        let sent = match &*self.writer.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite writer stopped".into()))?
    }
}

fn read_session(conn: &Connection, id: &str) -> rusqlite::Result<Option<(Session, User)>> {
    let mut stmt = conn.prepare_cached(SESSION_QUERY)?;
    stmt.query_row(params![id], |r| {
        let user_id = uuid(&r.get::<_, String>(1)?)?;
        let session = Session {
            id: uuid(&r.get::<_, String>(0)?)?,
            user_id,
            client_id: r.get(2)?,
            counter: r.get::<_, i64>(3)? as u64,
            rotated_at: r.get(4)?,
            created_at: r.get(5)?,
            last_used_at: r.get(6)?,
            idle_expires_at: r.get(7)?,
            absolute_expires_at: r.get(8)?,
            revoked_at: r.get(9)?,
            user_agent: r.get(10)?,
            ip: r.get(11)?,
            scope: r.get(19)?,
        };
        let user = User {
            id: user_id,
            email: r.get(12)?,
            username: r.get(13)?,
            fullname: r.get(14)?,
            created_at: r.get(15)?,
            disabled: r.get::<_, i64>(16)? != 0,
            legacy_id: r.get(17)?,
            email_verified: r.get::<_, Option<i64>>(18)?.is_some(),
        };
        Ok((session, user))
    })
    .optional()
}

/// Applies `batch` in one transaction; each rotation's own compare-and-set result.
fn apply(conn: &mut Connection, batch: &[Rotation]) -> rusqlite::Result<Vec<bool>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut applied = Vec::with_capacity(batch.len());
    {
        let mut stmt = tx.prepare_cached(ROTATE)?;
        for r in batch {
            let n = stmt.execute(params![r.now, r.idle_expires_at, r.id, r.from])?;
            applied.push(n == 1);
        }
    }
    tx.commit()?;
    Ok(applied)
}

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Rotation>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match apply(&mut conn, &batch) {
            Ok(applied) => {
                for (job, ok) in batch.into_iter().zip(applied) {
                    let _ = job.reply.send(Ok(ok));
                }
            }
            Err(e) => {
                // Nothing of this batch was committed: every caller hears so.
                let e = unavailable(e);
                for job in batch {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Copies the write-ahead log back into the database file every
/// `CHECKPOINT_EVERY` until told to stop, then once more. A passive checkpoint
/// never blocks writers or readers; one that cannot finish (a reader still uses
/// old frames, or the file is busy) is simply tried again on the next tick.
fn checkpoint_loop(conn: Connection, stop: mpsc::Receiver<()>) {
    let checkpoint = || {
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    };
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        checkpoint();
    }
    checkpoint();
}

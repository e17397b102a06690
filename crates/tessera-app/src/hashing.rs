//! Password hashing off the async runtime, on a bounded pool: at most `workers`
//! hashes run at once and at most `queue` more wait; beyond that a request is
//! refused at once (503) rather than queued without limit. Refresh and token
//! verification never touch this pool.

use crate::error::AppError;
use argon2::{Argon2, Params, PasswordHasher as _, PasswordVerifier as _};
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy)]
pub struct HashSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub workers: usize,
    pub queue: usize,
}

impl Default for HashSettings {
    /// OWASP's Argon2id recommendation: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            workers: 2,
            queue: 32,
        }
    }
}

impl HashSettings {
    /// Whether Argon2 accepts these parameters.
    pub fn check(&self) -> Result<(), String> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The refusal of a full pool, after [`SATURATED_PAUSE`].
async fn refuse() -> AppError {
    tokio::time::sleep(SATURATED_PAUSE).await;
    AppError::overloaded()
}

/// How long a request the full hash pool refuses waits for its 503: a login flood
/// then costs each connection a pause instead of the server a core.
pub const SATURATED_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

pub struct PasswordHasher {
    params: Params,
    admit: Arc<Semaphore>,
    run: Arc<Semaphore>,
    workers: usize,
    threads: HashThreads,
    /// Hash checked for unknown users so that a miss costs what a hit costs.
    dummy_hash: String,
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads that hash. They run at a lower CPU priority than the rest of the
/// server, so on a machine whose cores are all busy hashing a login flood, token
/// verification and refreshes still get the CPU first; when nothing else runs,
/// hashing gets all of it.
struct HashThreads {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// How much lower than the server's other threads hashing runs (a `nice` step).
const HASH_NICENESS: i32 = 10;

impl HashThreads {
    fn start(workers: usize) -> Result<Self, String> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("tessera-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| format!("cannot start a hashing thread: {e}"))?;
        }
        Ok(Self { jobs: tx })
    }

    fn run(&self, job: Job) -> Result<(), AppError> {
        self.jobs.send(job).map_err(|_| AppError::overloaded())
    }
}

/// Lowers the calling thread's scheduling priority (Linux: niceness is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, HASH_NICENESS) != 0 {
            tracing::debug!("could not lower the hashing threads' priority");
        }
    }
}

impl PasswordHasher {
    pub fn new(s: HashSettings) -> Result<Self, String> {
        let params = Params::new(s.memory_kib, s.iterations, s.parallelism, None)
            .map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
        let dummy_hash = Argon2::from(&params)
            .hash_password(b"tessera-dummy-password")
            .map_err(|e| format!("cannot hash: {e}"))?
            .to_string();
        Ok(Self {
            params,
            admit: Arc::new(Semaphore::new(s.workers.max(1) + s.queue)),
            run: Arc::new(Semaphore::new(s.workers.max(1))),
            workers: s.workers.max(1),
            threads: HashThreads::start(s.workers.max(1))?,
            dummy_hash,
        })
    }

    async fn on_pool<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let Ok(admitted) = self.admit.clone().try_acquire_owned() else {
            return Err(refuse().await);
        };
        let running = self
            .run
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppError::overloaded())?;
        // The permits go with the job: a request dropped mid-hash (client gone,
        // timeout) must not free its slot while the hash still runs, or a flood of
        // abandoned requests would run unbounded hashes at once.
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.threads.run(Box::new(move || {
            let _permits = (admitted, running);
            let _ = reply.send(job());
        }))?;
        answer.await.map_err(|_| AppError::overloaded())
    }

    /// Hashes running right now (never more than the configured workers).
    pub fn running(&self) -> usize {
        self.workers - self.run.available_permits()
    }

    /// Whether a hash asked for now would be refused: callers answer 503 before
    /// doing any other work (throttle counters, lookups) for a request that cannot run.
    pub fn saturated(&self) -> bool {
        self.admit.available_permits() == 0
    }

    /// `Err(overloaded)` when [`PasswordHasher::saturated`], answered after
    /// [`SATURATED_PAUSE`]: a flood beyond the pool is refused, but slowly enough
    /// that answering it does not take the CPU the hashes in the pool need.
    pub async fn admit_or_refuse(&self) -> Result<(), AppError> {
        if !self.saturated() {
            return Ok(());
        }
        Err(refuse().await)
    }

    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        let params = self.params.clone();
        self.on_pool(move || {
            Argon2::from(&params)
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
        })
        .await?
        .map_err(|_| AppError::invalid_request("password cannot be hashed"))
    }

    /// Checks `password` against `hash`, or against a dummy hash when there is no
    /// user, so both paths take the same time. Returns false for the dummy.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, AppError> {
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = self
            .on_pool(move || verify_any(password.as_bytes(), &hash))
            .await?;
        Ok(ok && real)
    }

    /// Whether a stored hash uses other parameters than the configured ones.
    /// (Imported bcrypt hashes always do: they are upgraded to Argon2id at login.)
    pub fn needs_rehash(&self, hash: &str) -> bool {
        let p = &self.params;
        let want = format!(
            "$argon2id$v=19$m={},t={},p={}$",
            p.m_cost(),
            p.t_cost(),
            p.p_cost()
        );
        !hash.starts_with(&want)
    }
}

/// The stored form of an OAuth client secret. Secrets are 256 random bits made
/// by Tessera, so a fast digest is enough: nothing to brute-force, and checking a
/// client never waits on (or floods) the password-hash pool.
pub fn client_secret_hash(secret: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Constant-time check of a presented client secret against its stored form.
pub fn client_secret_matches(secret: &str, stored: &str) -> bool {
    let presented = client_secret_hash(secret);
    aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), stored.as_bytes())
        .is_ok()
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

/// Checks a password against an Argon2 PHC string or an imported bcrypt hash.
fn verify_any(password: &[u8], hash: &str) -> bool {
    if is_bcrypt(hash) {
        bcrypt::verify(password, hash).unwrap_or(false)
    } else {
        Argon2::default().verify_password(password, hash).is_ok()
    }
}

/// Whether a stored hash is one Tessera can verify (for imports).
pub fn is_supported_hash(hash: &str) -> bool {
    is_bcrypt(hash) && hash.len() == 60
        || argon2::PasswordHash::new(hash).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn slow(workers: usize, queue: usize) -> PasswordHasher {
        PasswordHasher::new(HashSettings {
            memory_kib: 32 * 1024,
            iterations: 4,
            parallelism: 1,
            workers,
            queue,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn an_abandoned_request_keeps_its_slot_until_the_hash_ends() {
        let h = slow(1, 0);
        // The first poll admits and spawns the job; the request is then dropped.
        let abandoned = tokio::time::timeout(
            Duration::from_millis(1),
            h.verify("a password".into(), None),
        )
        .await;
        assert!(abandoned.is_err(), "the hash should outlast the timeout");
        assert_eq!(h.running(), 1, "the hash still runs and holds its worker");
        let e = h.verify("another".into(), None).await.unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Overloaded);
        while h.running() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!h.verify("a password".into(), None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_beyond_workers_and_queue_is_refused() {
        let h = Arc::new(slow(1, 2));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.verify("pw".into(), None).await })
            })
            .collect();
        let mut refused = 0;
        for t in tasks {
            if let Err(e) = t.await.unwrap() {
                assert_eq!(e.kind, crate::ErrorKind::Overloaded);
                assert_eq!(e.retry_after, Some(1));
                refused += 1;
            }
        }
        assert!(
            refused >= 10,
            "at most 1 running + 2 queued admitted: {refused}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_the_full_pool_refuses_is_answered_after_a_pause() {
        let h = Arc::new(slow(1, 1));
        assert!(h.admit_or_refuse().await.is_ok(), "an idle pool admits");
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.verify("pw".into(), None).await })
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !h.saturated() {
            assert!(
                std::time::Instant::now() < deadline,
                "the pool never filled"
            );
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        let e = h.admit_or_refuse().await.unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Overloaded);
        assert!(
            started.elapsed() >= SATURATED_PAUSE,
            "{:?}",
            started.elapsed()
        );
        for t in busy {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod import_tests {
    use super::*;

    #[test]
    fn bcrypt_and_argon2_hashes_verify() {
        let b = bcrypt::hash("hunter2 hunter2", 4).unwrap();
        assert!(is_supported_hash(&b));
        assert!(verify_any(b"hunter2 hunter2", &b));
        assert!(!verify_any(b"wrong", &b));
        let a = Argon2::from(Params::new(64, 1, 1, None).unwrap())
            .hash_password(b"pw pw pw pw")
            .unwrap()
            .to_string();
        assert!(is_supported_hash(&a));
        assert!(verify_any(b"pw pw pw pw", &a));
        for junk in [
            "",
            "plain",
            "$2b$04$short",
            "$argon2id$v=19$garbage",
            "$1$md5$x",
        ] {
            assert!(!is_supported_hash(junk), "{junk}");
            assert!(!verify_any(b"x", junk));
        }
    }

    #[tokio::test]
    async fn imported_bcrypt_hashes_are_upgraded() {
        let h = PasswordHasher::new(HashSettings {
            memory_kib: 64,
            iterations: 1,
            ..HashSettings::default()
        })
        .unwrap();
        let b = bcrypt::hash("imported password", 4).unwrap();
        assert!(h.needs_rehash(&b));
        assert!(h.verify("imported password".into(), Some(b)).await.unwrap());
        let fresh = h.hash("imported password".into()).await.unwrap();
        assert!(!h.needs_rehash(&fresh));
    }
}

#[cfg(test)]
mod client_secret_tests {
    #[test]
    fn client_secrets_match_only_themselves() {
        let stored = super::client_secret_hash("s3cret-value");
        assert!(stored.starts_with("sha256:") && !stored.contains("s3cret"));
        assert!(super::client_secret_matches("s3cret-value", &stored));
        assert!(!super::client_secret_matches("s3cret-valuf", &stored));
        assert!(!super::client_secret_matches("", &stored));
    }
}

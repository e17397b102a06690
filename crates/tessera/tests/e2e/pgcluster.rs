//! PostgreSQL servers and PgBouncer processes a test starts for itself, on free
//! loopback ports in temporary folders: a primary, a synchronous streaming
//! standby made with `pg_basebackup`, a pooler in transaction mode. PostgreSQL
//! refuses to run as root, so as root they run as the `postgres` user.

use crate::support::free_port;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether a missing program must fail the test (CI) rather than skip it.
fn required() -> bool {
    std::env::var("TESSERA_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

/// Says why a test cannot run: a failure on CI, a notice elsewhere.
pub fn unavailable(what: &str) {
    assert!(
        !required(),
        "{what} (TESSERA_REQUIRE_INTEROP=1: .ci/run installs it)"
    );
    eprintln!("skipped: {what}");
}

/// The newest installed PostgreSQL's programs (`/usr/lib/postgresql/<v>/bin`).
pub fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

pub fn pgbouncer_bin() -> Option<PathBuf> {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command run as the `postgres` user when this process is root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temporary folder the server's user may write.
pub fn owned_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if is_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["postgres:postgres"]).arg(dir.path());
                c
            },
            "chown",
        );
    }
    dir
}

/// One PostgreSQL server (a cluster of its own); stopped at once when dropped.
pub struct Cluster {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new primary that waits for one synchronous standby when `synchronous`.
    pub fn primary(bin: &Path, synchronous: bool) -> Self {
        let dir = owned_tempdir();
        let data = dir.path().join("data");
        let mut c = as_owner(&bin.join("initdb"));
        c.args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-N", "-E", "UTF8"]);
        run(c, "initdb");
        let cluster = Self {
            port: free_port(),
            data,
            bin: bin.to_path_buf(),
            _dir: dir,
        };
        let sync = if synchronous {
            " -c synchronous_standby_names=* -c synchronous_commit=on"
        } else {
            ""
        };
        cluster.start(&format!(
            "-c wal_level=replica -c max_wal_senders=4 -c wal_keep_size=64{sync}"
        ));
        cluster
    }

    /// A streaming standby of `primary`, copied with `pg_basebackup`.
    pub fn standby_of(primary: &Cluster) -> Self {
        let dir = owned_tempdir();
        let data = dir.path().join("data");
        let mut c = as_owner(&primary.bin.join("pg_basebackup"));
        c.args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args(["-U", "postgres", "-D"])
            .arg(&data)
            .args(["-R", "-X", "stream", "--no-sync"]);
        run(c, "pg_basebackup");
        let cluster = Self {
            port: free_port(),
            data,
            bin: primary.bin.clone(),
            _dir: dir,
        };
        cluster.start("-c hot_standby=on");
        cluster
    }

    fn start(&self, extra: &str) {
        let socket_dir = self.data.parent().unwrap();
        let mut c = as_owner(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(socket_dir.join("log"));
        c.arg("-o").arg(format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=off -c max_connections=100 {extra}",
            self.port,
            socket_dir.display()
        ));
        c.args(["-w", "-t", "60", "start"]);
        run(c, "pg_ctl start");
    }

    pub fn promote(&self) {
        let mut c = as_owner(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "promote"]);
        run(c, "pg_ctl promote");
    }

    /// The server's process id, from `postmaster.pid`.
    fn postmaster(&self) -> Option<i32> {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        pid.lines().next()?.trim().parse().ok()
    }

    /// SIGKILL to the postmaster and every process it started, at once: the
    /// machine's PostgreSQL dies without a word to its clients.
    pub fn kill(&self) {
        let Some(pid) = self.postmaster() else { return };
        let mut victims = vec![pid];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let ppid: Option<i32> = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            if ppid == Some(pid)
                && let Ok(child) = e.file_name().to_string_lossy().parse::<i32>()
            {
                victims.push(child);
            }
        }
        let mut c = Command::new("kill");
        c.arg("-KILL").args(victims.iter().map(|p| p.to_string()));
        run(c, "kill -KILL");
        let started = Instant::now();
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a stopped or killed server again, on its port.
    pub fn restart(&self) {
        self.start("");
    }

    pub fn stop(&self) {
        if self.postmaster().is_none() {
            return;
        }
        let mut c = as_owner(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = c.stdin(Stdio::null()).output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `sql` (one boolean) is true on `url`.
pub async fn wait_until(url: &str, sql: &'static str, within: Duration) {
    use sqlx::Connection;
    let started = Instant::now();
    loop {
        if let Ok(mut c) = sqlx::PgConnection::connect(url).await {
            let v: Result<(bool,), _> = sqlx::query_as(sql).fetch_one(&mut c).await;
            let _ = c.close().await;
            if matches!(v, Ok((true,))) {
                return;
            }
        }
        assert!(
            started.elapsed() < within,
            "not true within {within:?}: {sql}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A PgBouncer in transaction pooling mode in front of `upstream_port`, any
/// database name passed through; stopped when dropped.
pub struct Bouncer {
    pub port: u16,
    pidfile: PathBuf,
    _dir: tempfile::TempDir,
}

impl Bouncer {
    pub fn start(bin: &Path, upstream_port: u16, pool_size: u32) -> Self {
        let dir = owned_tempdir();
        let port = free_port();
        let ini = dir.path().join("pgbouncer.ini");
        let users = dir.path().join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={upstream_port}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\n\
                 pool_mode = transaction\ndefault_pool_size = {pool_size}\n\
                 max_client_conn = 500\nignore_startup_parameters = extra_float_digits\n\
                 server_reset_query =\nlogfile = {}\npidfile = {}\n",
                users.display(),
                dir.path().join("pgbouncer.log").display(),
                dir.path().join("pgbouncer.pid").display()
            ),
        )
        .unwrap();
        if is_root() {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:postgres"]).arg(dir.path());
            run(c, "chown");
        }
        let mut c = as_owner(bin);
        c.arg("-d").arg(&ini);
        run(c, "pgbouncer -d");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "pgbouncer did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            port,
            pidfile: dir.path().join("pgbouncer.pid"),
            _dir: dir,
        }
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            let _ = Command::new("kill").arg("-TERM").arg(pid.trim()).status();
        }
    }
}

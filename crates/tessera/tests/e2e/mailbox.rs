//! A real SMTP server for the mail tests: `aiosmtpd` (from tests/interop's virtual
//! environment, installed by `.ci/run`) on a loopback port, storing every mail it
//! accepts in a Maildir that the tests read.
//!
//! Without it the tests that need it say loudly that they skipped, unless
//! `TESSERA_REQUIRE_INTEROP=1` (as in `.ci/run`) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/.venv/bin/python")
}

/// Whether aiosmtpd can run, or a loud skip (a failure when required).
pub fn smtp_ready() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    let what = "aiosmtpd in tests/interop/.venv";
    let how = "install it as .ci/run does: `python3 -m venv tests/interop/.venv` and \
               `tests/interop/.venv/bin/pip install -r tests/interop/requirements.txt`";
    if std::env::var("TESSERA_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("TESSERA_REQUIRE_INTEROP=1 but not installed: {what}; {how}");
    }
    use std::io::Write;
    let bar = "!".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!! MAIL TEST SKIPPED, not installed: {what}\n!! {how}\n{bar}\n"
    );
    false
}

/// One mail as received.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    /// The whole message, transfer encoding undone.
    pub body: String,
}

impl Mail {
    /// The first whole link to `path` in the mail, as a reader would follow it.
    pub fn link(&self, path: &str) -> String {
        let token = self.token(path);
        let end = self.body.find(&token).unwrap() + token.len();
        let start = self.body[..end].rfind("http").unwrap();
        self.body[start..end].to_string()
    }

    /// The token of the first link to `path` in the mail.
    pub fn token(&self, path: &str) -> String {
        let at = self
            .body
            .find(&format!("{path}?token="))
            .unwrap_or_else(|| panic!("no link to {path} in {}", self.body));
        let start = at + path.len() + "?token=".len();
        self.body[start..start + 64].to_string()
    }
}

/// An SMTP server on 127.0.0.1:`port`, stopped when dropped.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_on(crate::support::free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let maildir = tempfile::tempdir().unwrap();
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            maildir,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every mail received so far.
    pub fn mails(&self) -> Vec<Mail> {
        read_maildir(&self.maildir.path().join("mail/new"))
    }

    /// Waits (up to 15 s) for the `n`-th mail to `to` (1-based) and returns it.
    pub async fn wait_for(&self, to: &str, n: usize) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mine: Vec<Mail> = self
                .mails()
                .into_iter()
                .filter(|m| m.to.contains(to))
                .collect();
            if mine.len() >= n {
                return mine[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no mail #{n} to {to}; received: {:?}",
                self.mails()
                    .iter()
                    .map(|m| (&m.to, &m.subject))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn count_to(&self, to: &str) -> usize {
        self.mails().iter().filter(|m| m.to.contains(to)).count()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads every message file in a folder (a Maildir's `new`, or an outbox), oldest
/// name first.
pub fn read_maildir(dir: &Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    paths.sort_by_key(|p| arrival(&p.file_name().unwrap().to_string_lossy()));
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|raw| parse(&raw))
        .collect()
}

/// The order mails arrived in. A Maildir name is `SECONDS.M<micros>P<pid>Q<n>.host`
/// with unpadded numbers, so names do not sort as text; `n` counts deliveries of
/// the server process. Other names (the outbox's `SECONDS-UUIDv7.eml`) sort as text.
fn arrival(name: &str) -> (u64, u64, String) {
    let mut parts = name.split('.');
    let secs = parts.next().and_then(|s| s.parse().ok());
    let n = parts
        .next()
        .and_then(|s| s.rsplit_once('Q'))
        .and_then(|(_, n)| n.parse().ok());
    match (secs, n) {
        (Some(secs), Some(n)) => (secs, n, String::new()),
        _ => (0, 0, name.to_string()),
    }
}

fn header(raw: &str, name: &str) -> String {
    raw.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn parse(raw: &str) -> Mail {
    let raw = raw.replace("\r\n", "\n");
    Mail {
        to: header(&raw, "To"),
        subject: header(&raw, "Subject"),
        body: decode_parts(&raw),
    }
}

/// The message with each MIME part's transfer encoding undone.
fn decode_parts(raw: &str) -> String {
    let mut out = String::new();
    for part in raw.split("\n--") {
        let (head, body) = part.split_once("\n\n").unwrap_or((part, ""));
        let cte = header(&format!("{head}\n"), "Content-Transfer-Encoding").to_ascii_lowercase();
        out.push_str(head);
        out.push_str("\n\n");
        match cte.as_str() {
            "quoted-printable" => out.push_str(&quoted_printable(body)),
            "base64" => {
                use base64::Engine;
                let joined: String = body.lines().take_while(|l| !l.is_empty()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(joined)
                    .unwrap_or_default();
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
            _ => out.push_str(body),
        }
        out.push('\n');
    }
    out
}

/// Undoes quoted-printable (soft breaks, `=XX`); plain 7-bit text passes unchanged.
fn quoted_printable(s: &str) -> String {
    let joined = s.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

//! `tessera backup FILE` and `tessera restore FILE`: the SQLite database and the
//! secrets the data folder holds, as one tar archive readable by its owner only.
//!
//! The database is copied with SQLite's `VACUUM INTO` while servers keep running:
//! the copy is one consistent snapshot, so every session in it is at a position
//! its own rotation rules accept. Restoring writes into a new, empty folder only.
//! PostgreSQL deployments back up with `pg_dump`; `backup` says so and exits 1.

use crate::config::Config;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tessera_core::{Clock, Store, SystemClock};
use tessera_store::SqliteStore;

/// What the archive holds, in this order.
const MANIFEST: &str = "tessera-backup.json";
const DATABASE: &str = "tessera.db";
/// The secrets Tessera generates into the data folder (see `lib.rs`): the
/// refresh-token secret and the key-encryption key that seals the signing keys.
const SECRETS: [&str; 2] = ["refresh_token.secret", crate::MASTER_KEY_FILE];
const FORMAT: &str = "tessera-backup/1";

fn sqlite_path(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

fn is_postgres(url: &str) -> bool {
    crate::config::is_postgres_url(url)
}

/// Opens a new file readable and writable by its owner only; never replaces one.
fn create_private(path: &Path) -> Result<File, String> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Removes a file when dropped unless kept: no partial copies are left behind.
struct Scratch(Option<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn beside(file: &Path, suffix: &str) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "backup".into());
    file.with_file_name(format!(".{name}.{suffix}"))
}

fn append(
    tar: &mut tar::Builder<File>,
    name: &str,
    size: u64,
    data: impl Read,
) -> Result<(), String> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(SystemClock.now().max(0) as u64);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
        .map_err(|e| format!("cannot write the archive: {e}"))
}

/// Secrets the running configuration holds outside the data folder: the archive
/// cannot carry them, the operator must keep them with it.
fn secrets_elsewhere(cfg: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg.refresh_token_secret.is_some() {
        out.push("REFRESH_TOKEN_SECRET");
    }
    if cfg.master_key.is_some() {
        out.push("TESSERA_MASTER_KEY (the signing keys in the database are sealed with it)");
    }
    if cfg.access_token_secret.is_some() {
        out.push("ACCESS_TOKEN_SECRET");
    }
    out
}

pub async fn backup(cfg: &Config, file: &Path) -> ExitCode {
    match write_backup(cfg, file).await {
        Ok(report) => {
            let _ = writeln!(std::io::stdout(), "{report}");
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(e),
    }
}

async fn write_backup(cfg: &Config, file: &Path) -> Result<String, String> {
    let url = cfg.database_url();
    if is_postgres(&url) {
        let mut keep = secrets_elsewhere(cfg);
        keep.retain(|s| !s.starts_with("REFRESH"));
        let also = if keep.is_empty() {
            String::new()
        } else {
            format!(", and {}", keep.join(", "))
        };
        return Err(format!(
            "the database is PostgreSQL ({}): `tessera backup` copies SQLite only. Back up the \
             database with pg_dump (pg_dump --format=custom --file tessera.dump \"$TESSERA_DATABASE_URL\"; \
             restore with pg_restore), and keep the secrets it does not hold: REFRESH_TOKEN_SECRET{also}",
            crate::config::redact_url(&url)
        ));
    }
    let v = cfg.validate()?;
    let db = sqlite_path(&v.database_url)
        .ok_or_else(|| "the SQLite database has no file to back up".to_string())?;
    if !db.is_file() {
        return Err(format!("no database at {}", db.display()));
    }
    if file.exists() {
        return Err(format!("{} exists; choose a new file", file.display()));
    }
    let partial = beside(file, "partial");
    let copy = beside(file, "db.partial");
    let out = create_private(&partial)?;
    // The finished archive is linked to its name; the partial name always goes.
    let _partial_guard = Scratch(Some(partial.clone()));
    // VACUUM INTO wants a missing or empty file; an empty one made here keeps the
    // copy owner-only from its first byte.
    drop(create_private(&copy)?);
    let _copy_guard = Scratch(Some(copy.clone()));

    let store = SqliteStore::open(&v.database_url, 1, Duration::from_secs(30))
        .await
        .map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    let taken_at = SystemClock.now();
    let copied = store.backup_into(&copy).await;
    store.close().await;
    copied.map_err(|e| format!("cannot copy the database: {e}"))?;

    let secrets: Vec<&str> = SECRETS
        .into_iter()
        .filter(|s| cfg.data_dir.join(s).is_file())
        .collect();
    let files: Vec<&str> = [DATABASE].into_iter().chain(secrets.clone()).collect();
    let manifest = serde_json::json!({
        "format": FORMAT,
        "taken_at": tessera_app::rfc3339(taken_at),
        "files": files,
    })
    .to_string();
    let mut tar = tar::Builder::new(out);
    append(
        &mut tar,
        MANIFEST,
        manifest.len() as u64,
        manifest.as_bytes(),
    )?;
    let db_file = File::open(&copy).map_err(|e| format!("cannot read the copy: {e}"))?;
    let size = db_file.metadata().map_err(|e| e.to_string())?.len();
    append(&mut tar, DATABASE, size, db_file)?;
    for name in &secrets {
        let path = cfg.data_dir.join(name);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        append(&mut tar, name, bytes.len() as u64, bytes.as_slice())?;
    }
    let out = tar
        .into_inner()
        .map_err(|e| format!("cannot write the archive: {e}"))?;
    out.sync_all()
        .map_err(|e| format!("cannot write the archive: {e}"))?;
    // A link, unlike a rename, never replaces a file that appeared meanwhile.
    std::fs::hard_link(&partial, file)
        .map_err(|e| format!("cannot create {}: {e}", file.display()))?;

    let mut report = format!(
        "backup written to {} (owner-only): the database as of {}",
        file.display(),
        tessera_app::rfc3339(taken_at)
    );
    for name in &secrets {
        report.push_str(if *name == SECRETS[0] {
            ", the refresh-token secret of the data folder"
        } else {
            ", the key-encryption key of the data folder (it opens the sealed signing keys)"
        });
    }
    let elsewhere = secrets_elsewhere(cfg);
    if !elsewhere.is_empty() {
        report.push_str(&format!(
            "\nnot in the archive (configured, not in the data folder): keep {} with it",
            elsewhere.join(", ")
        ));
    }
    Ok(report)
}

pub async fn restore(cfg: &Config, file: &Path) -> ExitCode {
    match read_backup(cfg, file).await {
        Ok(report) => {
            let _ = writeln!(std::io::stdout(), "{report}");
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(e),
    }
}

/// Files written by a restore, removed again unless it completes.
struct Restored {
    dir: PathBuf,
    created_dir: bool,
    files: Vec<PathBuf>,
    done: bool,
}

impl Drop for Restored {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        for f in std::iter::once(DATABASE).chain(SECRETS) {
            for suffix in ["-wal", "-shm", "-journal"] {
                let _ = std::fs::remove_file(self.dir.join(format!("{f}{suffix}")));
            }
        }
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

async fn read_backup(cfg: &Config, file: &Path) -> Result<String, String> {
    let v = cfg.validate()?;
    let dir = cfg.data_dir.clone();
    let target_db = dir.join(DATABASE);
    if is_postgres(&v.database_url) {
        return Err(
            "the configured database is PostgreSQL: restore it with pg_restore; \
             `tessera restore` writes a SQLite data folder"
                .into(),
        );
    }
    if sqlite_path(&v.database_url).as_deref() != Some(target_db.as_path()) {
        return Err(format!(
            "restore writes {}; database_url points elsewhere ({})",
            target_db.display(),
            crate::config::redact_url(&v.database_url)
        ));
    }
    let archive = File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let created_dir = match std::fs::read_dir(&dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{} is not empty; restore into a new folder",
                    dir.display()
                ));
            }
            // The data folder is owner-only, like one Tessera creates.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("cannot use {}: {e}", dir.display()))?;
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::prepare_data_dir(cfg)?;
            true
        }
        Err(e) => return Err(format!("cannot use {}: {e}", dir.display())),
    };
    let mut restored = Restored {
        dir: dir.clone(),
        created_dir,
        files: Vec::new(),
        done: false,
    };
    let mut tar = tar::Archive::new(archive);
    let mut manifest: Option<serde_json::Value> = None;
    let not_ours = || format!("{} is not a Tessera backup", file.display());
    for entry in tar.entries().map_err(|_| not_ours())? {
        let mut entry = entry.map_err(|_| not_ours())?;
        let name = entry
            .path()
            .map_err(|_| not_ours())?
            .to_string_lossy()
            .to_string();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(format!("{}: {name} is not a file", not_ours()));
        }
        match name.as_str() {
            MANIFEST => {
                let mut text = String::new();
                entry
                    .by_ref()
                    .take(64 * 1024)
                    .read_to_string(&mut text)
                    .map_err(|_| not_ours())?;
                let m: serde_json::Value = serde_json::from_str(&text).map_err(|_| not_ours())?;
                if m["format"] != FORMAT {
                    return Err(format!(
                        "{} is a backup of another format ({})",
                        file.display(),
                        m["format"]
                    ));
                }
                manifest = Some(m);
            }
            n if manifest.is_some() && (n == DATABASE || SECRETS.contains(&n)) => {
                let path = dir.join(&name);
                let mut out = create_private(&path)?;
                restored.files.push(path.clone());
                std::io::copy(&mut entry, &mut out)
                    .and_then(|_| out.sync_all())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            _ => return Err(format!("{}: unexpected entry {name}", not_ours())),
        }
    }
    let manifest = manifest.ok_or_else(not_ours)?;
    if !target_db.is_file() {
        return Err(format!("{}: it holds no database", not_ours()));
    }
    // Opening checks the file is a database and brings its schema up to date.
    let store = SqliteStore::open(&v.database_url, 1, Duration::from_secs(5))
        .await
        .map_err(|e| format!("the database in {} does not open: {e}", file.display()))?;
    let users = store.list_users(1, 0).await;
    store.close().await;
    users.map_err(|e| format!("the database in {} cannot be read: {e}", file.display()))?;
    restored.done = true;

    let mut report = format!(
        "restored into {}: the database as of {}",
        dir.display(),
        manifest["taken_at"].as_str().unwrap_or("an unknown time")
    );
    if dir.join(SECRETS[0]).is_file() {
        report.push_str(" and its refresh-token secret");
    } else {
        report.push_str(
            "\nthe backup holds no refresh-token secret: set REFRESH_TOKEN_SECRET to the one the \
             backed-up server used, or every session has to log in again",
        );
    }
    report.push_str(&format!(
        "\nstart it with: tessera serve --data-dir {}",
        dir.display()
    ));
    Ok(report)
}

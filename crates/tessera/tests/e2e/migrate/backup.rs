//! `tessera backup` while the server works, `tessera restore` into a new folder,
//! and a server on the restored folder: same users, same secrets, same rotation.

use super::{cli, stderr, stdout};
use crate::support::*;
use reqwest::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_load_restores_users_secrets_and_rotation() {
    let s = Arc::new(TestServer::start().await);
    s.register("ada").await;
    s.register("bob").await;
    // Ada's session before the backup: R0 is superseded by R1, R1 is current.
    let r0 = s.login("ada").await;
    let r1 = s.refresh_ok(&r0.refresh).await;

    // Refresh chains run on other sessions while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (s, stop, done) = (s.clone(), stop.clone(), done.clone());
        let start = s.login("bob").await;
        load.push(tokio::spawn(async move {
            let mut current = start.refresh;
            while !stop.load(Ordering::Relaxed) {
                current = s.refresh_ok(&current).await.refresh;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    while done.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let archive = s.dir.path().join("tessera-backup.tar");
    let path = archive.to_str().unwrap().to_string();
    let before = done.load(Ordering::Relaxed);
    let server = s.clone();
    let out = tokio::task::spawn_blocking(move || cli(&server, &["backup", &path]))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        done.load(Ordering::Relaxed) > before,
        "refreshes ran while the backup was taken"
    );
    assert!(
        stdout(&out).contains("refresh-token secret"),
        "{}",
        stdout(&out)
    );
    // Wait for more refreshes, then stop: the load ran across the backup, unharmed
    // (`refresh_ok` fails the task on any refresh that is not 200).
    while done.load(Ordering::Relaxed) < before + 20 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("every refresh under load succeeded");
    }
    #[cfg(unix)]
    assert_eq!(mode(&archive), 0o600, "the archive is owner-only");
    // An existing archive is never replaced.
    let again = cli(&s, &["backup", archive.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));

    // Restore into a new folder; a folder in use is refused.
    let parent = Arc::new(tempfile::tempdir().unwrap());
    let target = parent.path().join("restored");
    let restore = |dir: &std::path::Path| {
        tessera()
            .arg("--data-dir")
            .arg(dir)
            .args(["restore", archive.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let busy = restore(s.dir.path());
    assert_eq!(busy.status.code(), Some(1));
    assert!(stderr(&busy).contains("not empty"), "{}", stderr(&busy));
    let out = restore(&target);
    assert!(out.status.success(), "{}", stderr(&out));
    #[cfg(unix)]
    {
        assert_eq!(mode(&target), 0o700);
        assert_eq!(mode(&target.join("tessera.db")), 0o600);
        assert_eq!(mode(&target.join("refresh_token.secret")), 0o600);
    }
    assert_eq!(
        std::fs::read(target.join("refresh_token.secret")).unwrap(),
        std::fs::read(s.dir.path().join("refresh_token.secret")).unwrap()
    );
    let twice = restore(&target);
    assert_eq!(
        twice.status.code(),
        Some(1),
        "a restored folder is not empty"
    );
    let junk = parent.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar file at all").unwrap();
    let out = tessera()
        .arg("--data-dir")
        .arg(parent.path().join("junk-target"))
        .args(["restore", junk.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a Tessera backup"),
        "{}",
        stderr(&out)
    );
    assert!(
        !parent.path().join("junk-target").exists(),
        "nothing is left behind"
    );

    // A server on the restored folder: same users, same passwords, and Ada's
    // pre-backup session follows its rotation rules.
    let mut cfg = test_config(&target);
    cfg.data_dir = target.clone();
    let restored = TestServer::start_config(cfg, parent.clone()).await;
    restored.login("ada").await;
    restored.login("bob@example.com").await;
    let r2 = restored.refresh_ok(&r1.refresh).await;
    assert_ne!(
        r2.refresh, r1.refresh,
        "the current token's successor works"
    );
    let reused = restored.refresh(&r0.refresh).await;
    expect_error(reused, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    // Reuse revoked the session, its newest token included.
    let after = restored.refresh(&r2.refresh).await;
    expect_error(after, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    // The original server is unaffected by all this.
    s.refresh_ok(&r1.refresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_on_postgres_says_what_to_back_up_instead() {
    let s = TestServer::start().await;
    let out = tessera()
        .arg("--data-dir")
        .arg(s.dir.path())
        .args([
            "--database-url",
            "postgres://tessera:db-password-1@db.internal:5432/tessera",
            "backup",
        ])
        .arg(s.dir.path().join("pg.tar"))
        .env(
            "TESSERA_MASTER_KEY",
            "a-master-key-of-at-least-thirty-two-bytes",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for needed in ["pg_dump", "REFRESH_TOKEN_SECRET", "TESSERA_MASTER_KEY"] {
        assert!(err.contains(needed), "{needed} missing from: {err}");
    }
    assert!(!err.contains("db-password-1"), "{err}");
    assert!(!s.dir.path().join("pg.tar").exists());
}

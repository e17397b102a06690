//! The real `tessera` binary: zero-config start, configuration errors, config show.

use crate::support::tessera;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_start_creates_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tessera()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..5 {
        out.read_line(&mut banner).unwrap();
    }
    let url = banner
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{banner}");
    assert!(
        banner.contains("EdDSA") && banner.contains("sqlite://") && banner.contains("secret"),
        "{banner}"
    );
    let r = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
    let data = dir.path().join("tessera-data");
    assert!(data.join("tessera.db").exists());
    assert!(data.join("refresh_token.secret").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("refresh_token.secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the secret is private to its owner");
        for private in ["tessera.db", "tessera.db-wal", "."] {
            let path = data.join(private);
            if path.exists() {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(
                    mode & 0o077,
                    0,
                    "{private} is private to its owner: {mode:o}"
                );
            }
        }
    }
}

#[test]
fn bad_configuration_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (k, v, named) in [
        ("ACCESS_TOKEN_EXPIRY", "15 minutes", "access_token_expiry"),
        ("REFRESH_TOKEN_EXPIRY", "0", "refresh_token_expiry"),
        ("ACCESS_TOKEN_SECRET", "too-short", "ACCESS_TOKEN_SECRET"),
        ("TESSERA_SIGNING_ALG", "none", "signing_alg"),
        ("TESSERA_LISTEN", "nowhere", "listen"),
        (
            "TESSERA_ACCESS_TOKEN_CLAIMS",
            "email,password",
            "access_token_claims",
        ),
    ] {
        let out = tessera()
            .args(["serve"])
            .env(k, v)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{k}={v}: {err}");
        assert!(err.contains(named), "{k}={v} should name {named}: {err}");
    }
    let out = tessera()
        .args(["serve", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn precedence_is_flag_env_file_default_and_show_redacts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tessera.toml"),
        "access_token_expiry = \"5m\"\nrefresh_token_expiry = 3600\nlisten = \"127.0.0.1:9000\"\n",
    )
    .unwrap();
    let secret = "s3cret-s3cret-s3cret-s3cret-s3cret-xyz";
    let out = tessera()
        .args(["config", "show", "--data-dir", "/tmp/flagged"])
        .env("ACCESS_TOKEN_EXPIRY", "2h")
        .env("TESSERA_DATA_DIR", "/tmp/from-env")
        .env("REFRESH_TOKEN_SECRET", secret)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("access_token_expiry = \"2h\""),
        "env beats file: {text}"
    );
    assert!(
        text.contains("refresh_token_expiry = \"1h\""),
        "file beats default: {text}"
    );
    assert!(text.contains("listen = \"127.0.0.1:9000\""), "{text}");
    assert!(
        text.contains("data_dir = \"/tmp/flagged\""),
        "flag beats env: {text}"
    );
    assert!(!text.contains(secret), "secrets are redacted: {text}");
    assert!(text.contains("[redacted]"));
}

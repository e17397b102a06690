//! The real `tessera` binary: zero-config start, configuration errors, config show.

use crate::support::tessera;
use std::io::{BufRead, BufReader};
use std::path::Path;
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
        ("ACCESS_TOKEN_EXPIRY", "1h30", "access_token_expiry"),
        ("TESSERA_ISSUER", "https://id.example.com/a b", "issuer"),
        (
            "TESSERA_ISSUER",
            "https://id.example.com/?tenant=1",
            "issuer",
        ),
        ("TESSERA_ISSUER", "https://id.example.com/#top", "issuer"),
        ("TESSERA_ISSUER", "ftp://id.example.com", "issuer"),
        ("TESSERA_ISSUER", "id.example.com", "issuer"),
        ("TESSERA_ISSUER", "https://user:pw@id.example.com", "issuer"),
        ("TESSERA_ISSUER", "https://", "issuer"),
        ("TESSERA_LOG", "info,tessera=loud", "TESSERA_LOG"),
        ("TESSERA_LOG", "inf", "did you mean `info`"),
        ("TESSERA_LOG", "debg", "did you mean `debug`"),
        ("TESSERA_LOG", "warning", "did you mean `warn`"),
        ("TESSERA_LOG", "[", "TESSERA_LOG"),
        // An access token outliving the session's idle window: every refresh would fail.
        ("ACCESS_TOKEN_EXPIRY", "11d", "access_token_expiry"),
    ] {
        let serve = tessera()
            .args(["serve"])
            .env(k, v)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&serve.stderr);
        assert_eq!(serve.status.code(), Some(1), "{k}={v}: {err}");
        assert!(err.contains(named), "{k}={v} should name {named}: {err}");
        // `config show` checks exactly as `serve` does, with the same message.
        let show = tessera()
            .args(["config", "show"])
            .env(k, v)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(show.status.code(), Some(1), "{k}={v}");
        assert_eq!(String::from_utf8_lossy(&show.stderr), err, "{k}={v}");
        assert!(show.stdout.is_empty());
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was created on the way"
    );
    // Good values of the same settings pass.
    for (k, v) in [
        ("TESSERA_ISSUER", "https://id.example.com"),
        ("TESSERA_ISSUER", "https://id.example.com/realms/main"),
        ("TESSERA_ISSUER", "http://[::1]:8080"),
        ("TESSERA_LOG", "warn,tessera_server=debug,sqlx=info"),
        ("TESSERA_LOG", "tessera"),
        ("ACCESS_TOKEN_EXPIRY", "1h30m"),
    ] {
        let show = tessera()
            .args(["config", "show"])
            .env(k, v)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            show.status.success(),
            "{k}={v}: {}",
            String::from_utf8_lossy(&show.stderr)
        );
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
        "access_token_expiry = \"5m\"\nrefresh_token_expiry = 90000\nlisten = \"127.0.0.1:9000\"\n",
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
        text.contains("refresh_token_expiry = \"1d1h\""),
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

fn show_in(dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tessera();
    cmd.args(["config", "show"]).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn unknown_keys_stop_start_up_naming_the_closest_setting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tessera.toml"),
        "acces_token_secret = \"0123456789abcdef0123456789abcdef-xyz\"\ncookie_secur = false\nACCESS_TOKEN_EXPIRY = \"5m\"\ncompletely_unrelated = 1\n[server]\nlisten = \"0.0.0.0:80\"\n",
    )
    .unwrap();
    for args in [
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["config", "show"],
        &["user", "list"],
    ] {
        let out = tessera()
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        for expected in [
            "unknown setting `acces_token_secret` in tessera.toml; did you mean `access_token_secret`?",
            "unknown setting `cookie_secur` in tessera.toml; did you mean `cookie_secure`?",
            "unknown setting `ACCESS_TOKEN_EXPIRY` in tessera.toml; did you mean `access_token_expiry`?",
            "unknown setting `completely_unrelated` in tessera.toml",
            "unknown table `[server]` in tessera.toml",
        ] {
            assert!(
                err.contains(expected),
                "{args:?} should say {expected}: {err}"
            );
        }
        assert!(
            !err.contains("0123456789abcdef"),
            "values are never echoed: {err}"
        );
    }
    assert!(!dir.path().join("tessera-data").exists());
    // The same through --config, and a syntax error names the line, not its text.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        "listen = \"127.0.0.1:0\"\nmaster_key = hunter2-hunter2\n",
    )
    .unwrap();
    let out = tessera()
        .args(["config", "show", "--config", other.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("other.toml line 2"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // Unknown TESSERA_ variables are warned about (the environment is shared).
    std::fs::remove_file(dir.path().join("tessera.toml")).unwrap();
    let out = show_in(dir.path(), &[("TESSERA_ISUER", "https://id.example.com")]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains(
            "warning: TESSERA_ISUER in the environment is not a setting and is ignored; did you mean `TESSERA_ISSUER`?"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn dotenv_is_read_below_the_environment_and_named_in_the_banner() {
    let dir = tempfile::tempdir().unwrap();
    let hs = "a-tutorial-secret-of-at-least-32-bytes!";
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "# as the tutorials keep it\nACCESS_TOKEN_SECRET={hs}\nACCESS_TOKEN_EXPIRY=1h30m\nexport TESSERA_AUDIENCE=\"from-dotenv\"\nTESSERA_LEEWAY=45s\nPORT=3000\nTESSERA_LISTN=127.0.0.1:1\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tessera.toml"),
        "audience = \"from-file\"\nleeway = \"1m\"\nsigning_alg = \"ES256\"\n",
    )
    .unwrap();
    let out = show_in(dir.path(), &[("TESSERA_LEEWAY", "50s")]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(shown.contains("access_token_expiry = \"1h30m\""), "{shown}");
    assert!(
        shown.contains("audience = \"from-dotenv\""),
        ".env beats the file: {shown}"
    );
    assert!(
        shown.contains("leeway = \"50s\""),
        "the environment beats .env: {shown}"
    );
    assert!(
        shown.contains("signing_alg = \"HS256\""),
        "the algorithm in force, not the one asked for: {shown}"
    );
    assert!(!shown.contains(hs), "{shown}");
    assert!(shown.contains(".env"), "{shown}");
    assert!(
        text(&out.stderr).contains("TESSERA_LISTN in"),
        "{}",
        text(&out.stderr)
    );

    let mut child = tessera()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    while !banner.contains("config:") {
        if out.read_line(&mut banner).unwrap() == 0 {
            break;
        }
    }
    out.read_line(&mut banner).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let dotenv = std::fs::canonicalize(dir.path().join(".env")).unwrap();
    assert!(
        banner.contains("config:    read ") && banner.contains(&dotenv.display().to_string()),
        "{banner}"
    );
    assert!(banner.contains("HS256"), "{banner}");
    assert!(banner.contains("TESSERA_LISTN"), "{banner}");

    // A line that is no assignment stops start-up, naming the line, not its text.
    std::fs::write(
        dir.path().join(".env"),
        "ACCESS_TOKEN_EXPIRY=15m\nREFRESH_TOKEN_SECRET hunter2-hunter2\n",
    )
    .unwrap();
    let out = show_in(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(".env line 2"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// Serve's banner (first lines of stdout) with `env`, then the server is stopped.
fn banner_with(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tessera();
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    for _ in 0..5 {
        out.read_line(&mut banner).unwrap();
    }
    // The server answers once the banner is out; later lines would be in it already.
    let url = banner
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let _ = std::net::TcpStream::connect(url.trim_start_matches("http://"));
    child.kill().unwrap();
    let mut rest = String::new();
    use std::io::Read;
    let _ = out.read_to_string(&mut rest);
    child.wait().unwrap();
    banner + &rest
}

#[test]
fn lifetimes_and_insecure_cookies_are_reported_at_start() {
    let capped = banner_with(&[("REFRESH_TOKEN_EXPIRY", "60d")]);
    assert!(
        capped.contains("warning:   refresh_token_expiry (REFRESH_TOKEN_EXPIRY, 60d) is longer than session_max_lifetime"),
        "{capped}"
    );
    let insecure = banner_with(&[("TESSERA_ISSUER", "http://auth.example.com")]);
    assert!(
        insecure.contains(
            "warning:   cookie_secure is on but the issuer http://auth.example.com is plain http"
        ),
        "{insecure}"
    );
    for quiet in [
        vec![
            ("TESSERA_ISSUER", "http://auth.example.com"),
            ("TESSERA_COOKIE_SECURE", "false"),
        ],
        vec![("TESSERA_ISSUER", "http://localhost:8080")],
        vec![("TESSERA_ISSUER", "https://auth.example.com")],
        vec![("REFRESH_TOKEN_EXPIRY", "30d")],
    ] {
        let banner = banner_with(&quiet);
        assert!(!banner.contains("warning"), "{quiet:?}: {banner}");
    }
    // `config show` prints the same warnings on stderr.
    let dir = tempfile::tempdir().unwrap();
    let out = show_in(dir.path(), &[("TESSERA_ISSUER", "http://10.0.0.5:8080")]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("warning: cookie_secure is on"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn postgres_connection_failures_name_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let secret = (
        "REFRESH_TOKEN_SECRET",
        "a-shared-refresh-secret-of-32-bytes-or-more",
    );
    let started = std::time::Instant::now();
    let out = tessera()
        .args([
            "user",
            "list",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/tessera",
        ])
        .env(secret.0, secret.1)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("connection refused by 127.0.0.1:1"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "not a pool timeout"
    );
    let Some(url) = crate::support::pg_url() else {
        return;
    };
    let base = url.rsplit_once('/').unwrap().0.to_string();
    let host = base
        .rsplit_once('@')
        .map_or(base.as_str(), |(_, h)| h)
        .to_string();
    let host = host.trim_start_matches("postgres://").to_string();
    for (db_url, says) in [
        (
            format!("{base}/tessera_no_such_database"),
            "unknown database",
        ),
        (
            format!("postgres://tessera_no_such_role:pw-not-shown@{host}/postgres"),
            "authentication failed as user `tessera_no_such_role`",
        ),
    ] {
        let out = tessera()
            .args(["migrate", "--database-url", &db_url])
            .env(secret.0, secret.1)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(says), "{db_url}: {err}");
        assert!(!err.contains("pw-not-shown"), "{err}");
    }
}

//! The storage contract: every test is written once against `&dyn Store` and run
//! on a fresh SQLite database, and on a fresh PostgreSQL database when
//! `TESSERA_TEST_POSTGRES_URL` names a server (each test creates and drops its own
//! database there, so tests run in parallel and leave nothing behind).

use crate::{PgPoolSettings, PostgresStore, SqliteStore};
use futures_util::future::join_all;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Once;
use tessera_core::model::*;
use tessera_core::validate::login_key;
use tessera_core::{Store, StoreError};
use uuid::Uuid;

const PG_URL_VAR: &str = "TESSERA_TEST_POSTGRES_URL";

/// A contract test, as a function pointer the runners can take.
type Contract = for<'a> fn(&'a dyn Store) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

async fn open_sqlite(path: &std::path::Path) -> SqliteStore {
    SqliteStore::open(
        path.to_str().expect("utf-8 temp path"),
        4,
        std::time::Duration::from_secs(5),
    )
    .await
    .expect("open SQLite")
}

async fn on_sqlite(test: Contract) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_sqlite(&dir.path().join("tessera.db")).await;
    test(&store).await;
    store.close().await;
}

async fn on_postgres(test: Contract) {
    with_pg_database(|options| async move {
        let store = PostgresStore::open_with(options, PgPoolSettings::default())
            .await
            .expect("open PostgreSQL");
        test(&store).await;
        store.close().await;
    })
    .await;
}

/// Runs `body` against a new, empty database on the test server and drops the
/// database afterwards, also when `body` panics. Skips when no server is set.
async fn with_pg_database<F, Fut>(body: F)
where
    F: FnOnce(PgConnectOptions) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(url) = std::env::var(PG_URL_VAR) else {
        // libtest captures `eprintln!` from passing tests; write to the real
        // stderr so the skip is visible in a plain `cargo test`, once per run.
        static NOTICE: Once = Once::new();
        NOTICE.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL contract tests skipped: {PG_URL_VAR} is not set"
            );
        });
        return;
    };
    let server: PgConnectOptions = url.parse().expect("TESSERA_TEST_POSTGRES_URL");
    // Only hex digits after a fixed prefix: safe to put into the statement text.
    let name = format!("tessera_contract_{}", Uuid::now_v7().simple());
    admin(&server, format!("CREATE DATABASE {name}")).await;
    // In its own task so a failing assertion still reaches the drop.
    let outcome = tokio::spawn(body(server.clone().database(&name))).await;
    admin(&server, format!("DROP DATABASE {name} WITH (FORCE)")).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn admin(server: &PgConnectOptions, sql: String) {
    let mut conn = PgConnection::connect_with(server)
        .await
        .expect("connect to the PostgreSQL test server");
    sqlx::raw_sql(AssertSqlSafe(sql.clone()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// One `#[tokio::test]` per contract test and backend: `sqlite::<name>`, `postgres::<name>`.
macro_rules! contract {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_sqlite(|s| Box::pin(super::$name(s))).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_postgres(|s| Box::pin(super::$name(s))).await;
                }
            )+
        }
    };
}

contract!(
    ping,
    users_are_found_by_email_key_and_username,
    user_conflicts_name_the_field,
    update_user_changes_fields_and_reports_conflicts,
    set_password_hash_replaces_the_hash,
    set_user_disabled_flags_the_user,
    sessions_are_read_back_with_their_user,
    concurrent_session_reads_each_get_their_own,
    rotate_session_is_compare_and_set,
    concurrent_rotations_have_exactly_one_winner,
    rotations_arriving_together_are_each_compare_and_set,
    overlapping_rotation_batches_never_fail,
    revoke_session_is_idempotent_and_feeds_the_revocation_list,
    revoke_user_sessions_with_and_without_keep,
    list_user_sessions_skips_revoked_and_expired,
    revocations_since_pages_by_cursor_and_drops_expired,
    keys_are_inserted_and_listed,
    audit_events_are_recorded_and_listed,
    users_are_listed_and_deleted_with_their_sessions,
    keys_are_retired_and_deleted,
    a_first_key_is_stored_once_per_algorithm,
    a_key_private_part_is_replaced_by_compare_and_set,
    clients_are_created_listed_and_deleted,
    throttle_counts_hits_in_fixed_windows,
    prune_drops_only_what_has_ended,
    active_sessions_are_counted,
    password_hash_upgrade_is_compare_and_set,
    users_are_counted,
    recent_audit_is_the_newest_events_newest_first,
    import_users_inserts_skips_and_names_conflicts,
    import_users_handles_batches_larger_than_one_statement,
    email_verification_holds_only_for_the_address_confirmed,
    account_tokens_are_single_use,
    account_tokens_go_with_their_user_and_their_expiry,
    mail_is_claimed_once_and_retried_until_delivered,
    consents_are_kept_per_user_and_client,
    child_sessions_are_the_live_ones_opened_from_a_session,
    pending_registrations_reserve_their_name_and_address,
    a_pending_registration_becomes_a_confirmed_account_once,
);

// Backend-specific checks that do not fit the `&dyn Store` shape.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_starting_together_migrate_once() {
    with_pg_database(|options| async move {
        let open = || PostgresStore::open_with(options.clone(), PgPoolSettings::default());
        let (a, b) = tokio::join!(open(), open());
        let (a, b) = (a.expect("first instance"), b.expect("second instance"));
        let alice = user(&a, "alice").await;
        assert!(b.get_user(alice.id).await.unwrap().is_some());
        a.close().await;
        b.close().await;
        let e = a.ping().await.unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_server_is_unavailable() {
    let opts = PgPoolSettings {
        acquire_timeout: std::time::Duration::from_secs(1),
        ..PgPoolSettings::default()
    };
    // Port 1 on loopback: nothing listens there.
    let started = std::time::Instant::now();
    let e = PostgresStore::open("postgres://postgres@127.0.0.1:1/none", opts)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(
        e.to_string().contains("connection refused by 127.0.0.1:1"),
        "the cause, not a pool timeout: {e}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "a refused connection is reported at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_failures_name_their_cause() {
    let Ok(url) = std::env::var(PG_URL_VAR) else {
        return;
    };
    let server: PgConnectOptions = url.parse().expect("TESSERA_TEST_POSTGRES_URL");
    let missing_db = server
        .clone()
        .database(&format!("tessera_missing_{}", Uuid::now_v7().simple()));
    let e = PostgresStore::open_with(missing_db, PgPoolSettings::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown database"), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    let stranger = server
        .clone()
        .username("tessera_no_such_role")
        .password("not-shown-anywhere");
    let e = PostgresStore::open_with(stranger, PgPoolSettings::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("authentication failed"), "{e}");
    assert!(e.to_string().contains("tessera_no_such_role"), "{e}");
    assert!(!e.to_string().contains("not-shown-anywhere"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_open_existing_migrates_nothing() {
    with_pg_database(|options| async move {
        let url = |o: &PgConnectOptions| {
            format!(
                "postgres://{}@{}:{}/{}",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or_default()
            )
        };
        let e = PostgresStore::open_existing(&url(&options), PgPoolSettings::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no Tessera schema"), "{e}");
        let mut conn = PgConnection::connect_with(&options).await.unwrap();
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(tables, 0, "nothing was created");
        let _ = conn.close().await;
        let full = PostgresStore::open_with(options.clone(), PgPoolSettings::default())
            .await
            .unwrap();
        full.close().await;
        let existing = PostgresStore::open_existing(&url(&options), PgPoolSettings::default())
            .await
            .expect("a migrated database opens");
        assert_eq!(existing.count_users().await.unwrap(), 0);
        existing.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_open_existing_creates_nothing_and_checks_the_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tessera.db");
    let url = format!("sqlite://{}", path.display());
    let timeout = std::time::Duration::from_secs(5);
    assert!(SqliteStore::open_existing(&url, 2, timeout).await.is_err());
    assert!(!path.exists(), "a missing database is not created");
    // A database file without the schema (another program's, or an empty one).
    let foreign = SqliteStore::open_existing(&url, 2, timeout).await;
    assert!(foreign.is_err());
    {
        use sqlx::sqlite::SqliteConnectOptions;
        let mut conn = sqlx::SqliteConnection::connect_with(
            &SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::query("CREATE TABLE other (x INTEGER)")
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
    }
    let e = SqliteStore::open_existing(&url, 2, timeout)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no Tessera schema"), "{e}");
    std::fs::remove_file(&path).unwrap();
    let full = SqliteStore::open(&url, 2, timeout).await.unwrap();
    user(&full, "anna").await;
    full.close().await;
    let existing = SqliteStore::open_existing(&url, 2, timeout)
        .await
        .expect("a migrated database opens");
    assert_eq!(existing.count_users().await.unwrap(), 1);
    existing.close().await;
}

const T0: i64 = 1_700_000_000;

fn new_user(email: &str, username: &str) -> NewUser {
    NewUser {
        id: Uuid::now_v7(),
        email: email.into(),
        username: username.into(),
        fullname: format!("User {username}"),
        password_hash: format!("hash-of-{username}"),
        created_at: T0,
        legacy_id: None,
    }
}

fn imported(email: &str, username: &str, legacy_id: Option<&str>) -> NewUser {
    NewUser {
        legacy_id: legacy_id.map(str::to_string),
        ..new_user(email, username)
    }
}

async fn user(s: &dyn Store, username: &str) -> User {
    s.create_user(new_user(&format!("{username}@Example.com"), username))
        .await
        .expect("create user")
}

fn new_session(user_id: Uuid, created_at: i64) -> NewSession {
    NewSession {
        id: Uuid::now_v7(),
        user_id,
        client_id: "web".into(),
        created_at,
        idle_expires_at: created_at + 3_600,
        absolute_expires_at: created_at + 86_400,
        user_agent: Some("contract-test".into()),
        ip: Some("192.0.2.7".into()),
        scope: Some("openid offline_access".into()),
        parent_id: None,
    }
}

async fn session(s: &dyn Store, user_id: Uuid, created_at: i64) -> Session {
    s.create_session(new_session(user_id, created_at))
        .await
        .expect("create session")
}

async fn counter(s: &dyn Store, id: Uuid) -> u64 {
    s.get_session(id).await.unwrap().expect("session").0.counter
}

async fn ping(s: &dyn Store) {
    s.ping().await.expect("ping");
}

async fn users_are_found_by_email_key_and_username(s: &dyn Store) {
    let created = s
        .create_user(new_user("Alice@Example.COM", "alice"))
        .await
        .unwrap();
    assert_eq!(created.email, "Alice@Example.COM");
    assert!(!created.disabled);

    let by_email = s
        .find_user_for_login(&login_key("  ALICE@example.com "))
        .await
        .unwrap()
        .expect("found by email, whatever its case");
    assert_eq!(by_email.user, created);
    assert_eq!(by_email.password_hash, "hash-of-alice");

    let by_name = s
        .find_user_for_login(&login_key("Alice"))
        .await
        .unwrap()
        .expect("found by username");
    assert_eq!(by_name.user, created);

    let by_id = s.get_user(created.id).await.unwrap().expect("found by id");
    assert_eq!(by_id.user, created);

    assert!(
        s.find_user_for_login(&login_key("bob@example.com"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.find_user_for_login(&login_key("bob"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.get_user(Uuid::now_v7()).await.unwrap().is_none());
}

async fn user_conflicts_name_the_field(s: &dyn Store) {
    let alice = s
        .create_user(new_user("alice@example.com", "alice"))
        .await
        .unwrap();

    let e = s
        .create_user(new_user("ALICE@Example.com", "alice2"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict("email")), "{e:?}");

    let e = s
        .create_user(new_user("other@example.com", "alice"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict("username")), "{e:?}");

    let mut same_id = new_user("third@example.com", "third");
    same_id.id = alice.id;
    let e = s.create_user(same_id).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict("id")), "{e:?}");
}

async fn update_user_changes_fields_and_reports_conflicts(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let bob = user(s, "bob").await;

    let unchanged = s.update_user(alice.id, UserPatch::default()).await.unwrap();
    assert_eq!(unchanged, alice);

    let patch = UserPatch {
        email: Some("Alice.New@Example.com".into()),
        username: None,
        fullname: Some("Alice Liddell".into()),
    };
    let updated = s.update_user(alice.id, patch).await.unwrap();
    assert_eq!(updated.email, "Alice.New@Example.com");
    assert_eq!(updated.username, "alice");
    assert_eq!(updated.fullname, "Alice Liddell");
    assert_eq!(updated.created_at, alice.created_at);
    let found = s
        .find_user_for_login(&login_key("alice.new@example.com"))
        .await
        .unwrap()
        .expect("found by the new email");
    assert_eq!(found.user, updated);
    assert!(
        s.find_user_for_login(&login_key("alice@example.com"))
            .await
            .unwrap()
            .is_none()
    );

    let renamed = s
        .update_user(
            alice.id,
            UserPatch {
                username: Some("alice2".into()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.username, "alice2");

    let e = s
        .update_user(
            alice.id,
            UserPatch {
                username: Some(bob.username.clone()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict("username")), "{e:?}");

    let e = s
        .update_user(
            alice.id,
            UserPatch {
                email: Some("BOB@example.com".into()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict("email")), "{e:?}");

    // A failed update leaves the row as it was.
    assert_eq!(s.get_user(alice.id).await.unwrap().unwrap().user, renamed);

    let e = s
        .update_user(Uuid::now_v7(), UserPatch::default())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
}

async fn set_password_hash_replaces_the_hash(s: &dyn Store) {
    let alice = user(s, "alice").await;
    s.set_password_hash(alice.id, "new-hash").await.unwrap();
    let record = s.get_user(alice.id).await.unwrap().unwrap();
    assert_eq!(record.password_hash, "new-hash");
    assert_eq!(record.user, alice);

    let e = s.set_password_hash(Uuid::now_v7(), "x").await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
}

async fn set_user_disabled_flags_the_user(s: &dyn Store) {
    let alice = user(s, "alice").await;
    s.set_user_disabled(alice.id, true).await.unwrap();
    assert!(s.get_user(alice.id).await.unwrap().unwrap().user.disabled);
    s.set_user_disabled(alice.id, false).await.unwrap();
    assert!(!s.get_user(alice.id).await.unwrap().unwrap().user.disabled);

    let e = s.set_user_disabled(Uuid::now_v7(), true).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
}

async fn sessions_are_read_back_with_their_user(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let created = session(s, alice.id, T0).await;
    assert_eq!(created.counter, 0);
    assert_eq!(created.rotated_at, T0);
    assert_eq!(created.last_used_at, T0);
    assert_eq!(created.revoked_at, None);

    let (read, owner) = s.get_session(created.id).await.unwrap().expect("session");
    assert_eq!(read, created);
    assert_eq!(owner, alice);

    let mut bare = new_session(alice.id, T0 + 1);
    bare.user_agent = None;
    bare.ip = None;
    let bare = s.create_session(bare).await.unwrap();
    assert_eq!(s.get_session(bare.id).await.unwrap().unwrap().0, bare);

    assert!(s.get_session(Uuid::now_v7()).await.unwrap().is_none());
}

/// Reads arriving together (PostgreSQL answers them with one batched query) each
/// get their own session and user; a missing id gets none; a rotation committed
/// before a read was asked for is seen by it.
async fn concurrent_session_reads_each_get_their_own(s: &dyn Store) {
    let mut expected = Vec::new();
    for i in 0..40 {
        let u = user(s, &format!("reader{i}")).await;
        let created = session(s, u.id, T0 + i).await;
        expected.push((created, u));
    }
    assert!(
        s.rotate_session(expected[7].0.id, 0, T0 + 50, T0 + 3_650)
            .await
            .unwrap()
    );
    let missing = Uuid::now_v7();
    let reads = join_all(
        expected
            .iter()
            .map(|(session, _)| s.get_session(session.id))
            .chain(std::iter::once(s.get_session(missing))),
    )
    .await;
    for (i, ((session, owner), read)) in expected.iter().zip(&reads).enumerate() {
        let (got, got_owner) = read.as_ref().unwrap().as_ref().expect("session");
        assert_eq!(got.id, session.id);
        assert_eq!(got.counter, u64::from(i == 7), "read {i}");
        assert_eq!(got_owner, owner);
    }
    assert!(reads.last().unwrap().as_ref().unwrap().is_none());
}

async fn rotate_session_is_compare_and_set(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let id = session(s, alice.id, T0).await.id;

    assert!(s.rotate_session(id, 0, T0 + 10, T0 + 3_610).await.unwrap());
    let (after, _) = s.get_session(id).await.unwrap().unwrap();
    assert_eq!(after.counter, 1);
    assert_eq!(after.rotated_at, T0 + 10);
    assert_eq!(after.last_used_at, T0 + 10);
    assert_eq!(after.idle_expires_at, T0 + 3_610);
    assert_eq!(after.created_at, T0);

    // A stale counter loses and changes nothing.
    assert!(!s.rotate_session(id, 0, T0 + 20, T0 + 3_620).await.unwrap());
    assert_eq!(s.get_session(id).await.unwrap().unwrap().0, after);

    assert!(s.rotate_session(id, 1, T0 + 30, T0 + 3_630).await.unwrap());
    assert_eq!(counter(s, id).await, 2);

    // A revoked session never rotates, even with the current counter.
    assert!(
        s.revoke_session(id, T0 + 40, RevokeReason::Logout, T0 + 940)
            .await
            .unwrap()
    );
    assert!(!s.rotate_session(id, 2, T0 + 50, T0 + 3_650).await.unwrap());
    assert_eq!(counter(s, id).await, 2);

    assert!(
        !s.rotate_session(Uuid::now_v7(), 0, T0, T0 + 3_600)
            .await
            .unwrap()
    );
}

async fn concurrent_rotations_have_exactly_one_winner(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let id = session(s, alice.id, T0).await.id;
    assert!(s.rotate_session(id, 0, T0 + 1, T0 + 3_601).await.unwrap());

    let from = 1;
    let results = join_all((0..50).map(|_| s.rotate_session(id, from, T0 + 2, T0 + 3_602))).await;
    let wins = results
        .into_iter()
        .map(|r| r.expect("rotation must not fail"))
        .filter(|won| *won)
        .count();
    assert_eq!(wins, 1);
    assert_eq!(counter(s, id).await, from + 1);
}

/// Rotations that arrive together (and so share a group commit) still succeed or
/// fail one by one: per session exactly one caller presenting the current counter
/// wins, stale counters and revoked sessions lose, and each winner's values land.
/// Rotations of the same sessions arriving in opposite orders, round after round
/// (on PostgreSQL several batches run at once and may lock rows in opposite
/// orders): none fails, and each round has exactly one winner per session.
async fn overlapping_rotation_batches_never_fail(s: &dyn Store) {
    let bob = user(s, "bob").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(session(s, bob.id, T0 + i).await.id);
    }
    for round in 0..8u64 {
        let now = T0 + 100 + round as i64;
        let mut calls = Vec::new();
        for caller in 0..4 {
            let order: Vec<usize> = if caller % 2 == 0 {
                (0..ids.len()).collect()
            } else {
                (0..ids.len()).rev().collect()
            };
            for i in order {
                calls.push((i, s.rotate_session(ids[i], round, now, now + 3_600)));
            }
        }
        let (which, futures): (Vec<usize>, Vec<_>) = calls.into_iter().unzip();
        let mut wins = vec![0; ids.len()];
        for (i, r) in which.into_iter().zip(join_all(futures).await) {
            if r.expect("rotation must not fail") {
                wins[i] += 1;
            }
        }
        assert_eq!(wins, vec![1; ids.len()], "round {round}");
    }
    for id in &ids {
        assert_eq!(counter(s, *id).await, 8);
    }
}

async fn rotations_arriving_together_are_each_compare_and_set(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(session(s, alice.id, T0 + i).await.id);
    }
    // Session 0 is one step ahead: presenting counter 0 for it is stale.
    assert!(
        s.rotate_session(ids[0], 0, T0 + 1, T0 + 3_601)
            .await
            .unwrap()
    );
    let revoked = ids[19];
    assert!(
        s.revoke_session(revoked, T0 + 2, RevokeReason::Logout, T0 + 900)
            .await
            .unwrap()
    );
    let mut calls = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        // Three callers per session, as three tabs refreshing at once.
        for _ in 0..3 {
            calls.push((
                i,
                s.rotate_session(*id, 0, T0 + 100 + i as i64, T0 + 5_000 + i as i64),
            ));
        }
    }
    // Session 0 is also presented with its current counter, by two callers.
    for _ in 0..2 {
        calls.push((0, s.rotate_session(ids[0], 1, T0 + 200, T0 + 6_000)));
    }
    let (which, futures): (Vec<usize>, Vec<_>) = calls.into_iter().unzip();
    let results = join_all(futures).await;
    let mut wins = vec![0; ids.len()];
    for (i, r) in which.into_iter().zip(results) {
        if r.expect("rotation must not fail") {
            wins[i] += 1;
        }
    }
    for (i, id) in ids.iter().enumerate() {
        let want = if *id == revoked { 0 } else { 1 };
        assert_eq!(wins[i], want, "session {i}");
    }
    assert_eq!(counter(s, ids[0]).await, 2);
    let (s0, _) = s.get_session(ids[0]).await.unwrap().unwrap();
    assert_eq!((s0.rotated_at, s0.idle_expires_at), (T0 + 200, T0 + 6_000));
    let (s7, _) = s.get_session(ids[7]).await.unwrap().unwrap();
    assert_eq!(s7.counter, 1);
    assert_eq!((s7.rotated_at, s7.idle_expires_at), (T0 + 107, T0 + 5_007));
    assert_eq!(counter(s, revoked).await, 0);
}

async fn revoke_session_is_idempotent_and_feeds_the_revocation_list(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let live = session(s, alice.id, T0).await;
    let doomed = session(s, alice.id, T0).await;

    assert!(
        s.revoke_session(doomed.id, T0 + 5, RevokeReason::Logout, T0 + 905)
            .await
            .unwrap()
    );
    assert!(
        !s.revoke_session(doomed.id, T0 + 6, RevokeReason::Logout, T0 + 906)
            .await
            .unwrap()
    );
    assert!(
        !s.revoke_session(Uuid::now_v7(), T0 + 6, RevokeReason::Logout, T0 + 906)
            .await
            .unwrap()
    );

    let (read, _) = s.get_session(doomed.id).await.unwrap().unwrap();
    assert_eq!(
        read.revoked_at,
        Some(T0 + 5),
        "the first revocation's time stays"
    );
    assert!(!read.is_active(T0 + 5));
    assert_eq!(s.get_session(live.id).await.unwrap().unwrap().0, live);

    let feed = s.revocations_since(0, T0 + 5, 100).await.unwrap();
    assert_eq!(feed.len(), 1, "{feed:?}");
    assert_eq!(feed[0].session_id, doomed.id);
    assert_eq!(feed[0].until, T0 + 905);
    assert!(feed[0].cursor > 0);
}

async fn revoke_user_sessions_with_and_without_keep(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let bob = user(s, "bob").await;
    let a1 = session(s, alice.id, T0).await;
    let a2 = session(s, alice.id, T0 + 1).await;
    let a3 = session(s, alice.id, T0 + 2).await;
    let mut ended = new_session(alice.id, T0 - 100_000);
    ended.absolute_expires_at = T0 - 1;
    let ended = s.create_session(ended).await.unwrap();
    let b1 = session(s, bob.id, T0).await;
    let now = T0 + 10;

    let mut revoked = s
        .revoke_user_sessions(
            alice.id,
            Some(a2.id),
            now,
            RevokeReason::LogoutOthers,
            now + 900,
        )
        .await
        .unwrap();
    revoked.sort();
    let mut expected = vec![a1.id, a3.id];
    expected.sort();
    assert_eq!(revoked, expected, "keeps a2, skips the ended session");

    let live: Vec<Uuid> = s
        .list_user_sessions(alice.id, now)
        .await
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(live, vec![a2.id]);
    assert_eq!(
        s.get_session(ended.id).await.unwrap().unwrap().0.revoked_at,
        None
    );
    assert_eq!(s.get_session(b1.id).await.unwrap().unwrap().0, b1);

    let all = s
        .revoke_user_sessions(
            alice.id,
            None,
            now + 1,
            RevokeReason::LogoutGlobal,
            now + 901,
        )
        .await
        .unwrap();
    assert_eq!(all, vec![a2.id]);
    let again = s
        .revoke_user_sessions(
            alice.id,
            None,
            now + 2,
            RevokeReason::LogoutGlobal,
            now + 902,
        )
        .await
        .unwrap();
    assert!(again.is_empty());
    assert!(
        s.list_user_sessions(alice.id, now)
            .await
            .unwrap()
            .is_empty()
    );

    let mut fed: Vec<Uuid> = s
        .revocations_since(0, now, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.session_id)
        .collect();
    fed.sort();
    let mut expected = vec![a1.id, a2.id, a3.id];
    expected.sort();
    assert_eq!(fed, expected);
}

async fn list_user_sessions_skips_revoked_and_expired(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let bob = user(s, "bob").await;
    let now = T0 + 100;

    let oldest = session(s, alice.id, T0).await;
    let newest = session(s, alice.id, T0 + 20).await;
    let middle = session(s, alice.id, T0 + 10).await;
    let revoked = session(s, alice.id, T0 + 5).await;
    s.revoke_session(revoked.id, T0 + 50, RevokeReason::Logout, T0 + 950)
        .await
        .unwrap();
    let mut idle = new_session(alice.id, T0 + 30);
    idle.idle_expires_at = now;
    s.create_session(idle).await.unwrap();
    let mut ended = new_session(alice.id, T0 + 40);
    ended.absolute_expires_at = now - 1;
    s.create_session(ended).await.unwrap();
    session(s, bob.id, T0 + 50).await;

    let listed = s.list_user_sessions(alice.id, now).await.unwrap();
    assert_eq!(listed, vec![newest, middle, oldest]);
    assert!(
        s.list_user_sessions(Uuid::now_v7(), now)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn revocations_since_pages_by_cursor_and_drops_expired(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = session(s, alice.id, T0).await.id;
        // The second revocation leaves the feed early.
        let until = if i == 1 { T0 + 50 } else { T0 + 100 };
        assert!(
            s.revoke_session(id, T0 + i, RevokeReason::Operator, until)
                .await
                .unwrap()
        );
        ids.push(id);
    }

    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let page = s.revocations_since(cursor, T0, 2).await.unwrap();
        assert!(page.len() <= 2);
        if page.is_empty() {
            break;
        }
        for r in &page {
            assert!(r.cursor > cursor, "cursors grow: {page:?}");
            cursor = r.cursor;
        }
        seen.extend(page.iter().map(|r| r.session_id));
    }
    assert_eq!(seen, ids, "oldest first, every revocation once");

    let later: Vec<Uuid> = s
        .revocations_since(0, T0 + 60, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.session_id)
        .collect();
    assert_eq!(later, vec![ids[0], ids[2], ids[3], ids[4]]);

    let all = s.revocations_since(0, T0, 100).await.unwrap();
    let tail = s.revocations_since(all[2].cursor, T0, 100).await.unwrap();
    assert_eq!(tail, all[3..].to_vec());

    // `until` is exclusive: at that second the row has left the feed.
    assert!(
        s.revocations_since(0, T0 + 100, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn keys_are_inserted_and_listed(s: &dyn Store) {
    assert!(s.list_keys().await.unwrap().is_empty());
    let newer = StoredKey {
        kid: "k2".into(),
        alg: "ES256".into(),
        private_der: vec![0x30, 0x00, 0xff, 0x7f],
        created_at: T0 + 10,
        activates_at: T0 + 20,
        retired_at: None,
    };
    let older = StoredKey {
        kid: "k1".into(),
        alg: "EdDSA".into(),
        private_der: (0..=255).collect(),
        created_at: T0,
        activates_at: T0,
        retired_at: Some(T0 + 10),
    };
    s.insert_key(newer.clone()).await.unwrap();
    s.insert_key(older.clone()).await.unwrap();

    let listed = s.list_keys().await.unwrap();
    assert_eq!(listed.len(), 2);
    for (got, want) in listed.iter().zip([&older, &newer]) {
        assert_eq!(got.kid, want.kid);
        assert_eq!(got.alg, want.alg);
        assert_eq!(got.private_der, want.private_der);
        assert_eq!(got.created_at, want.created_at);
        assert_eq!(got.activates_at, want.activates_at);
        assert_eq!(got.retired_at, want.retired_at);
    }

    let e = s.insert_key(older).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
}

async fn audit_events_are_recorded_and_listed(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let sid = session(s, alice.id, T0).await.id;
    let full = AuditEvent {
        at: T0 + 1,
        kind: "login".into(),
        user_id: Some(alice.id),
        session_id: Some(sid),
        ip: Some("192.0.2.7".into()),
        user_agent: Some("contract-test".into()),
        detail: Some("{\"ok\":true}".into()),
    };
    let bare = AuditEvent {
        at: T0,
        kind: "register_failed".into(),
        user_id: None,
        session_id: None,
        ip: None,
        user_agent: None,
        detail: None,
    };
    s.record_audit(full.clone()).await.unwrap();
    s.record_audit(bare.clone()).await.unwrap();

    let all = s.list_audit(None, 0, 100).await.unwrap();
    let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["register_failed", "login"], "oldest first");
    let got = &all[1];
    assert_eq!(
        (got.at, got.user_id, got.session_id),
        (full.at, full.user_id, full.session_id)
    );
    assert_eq!(
        (&got.ip, &got.user_agent, &got.detail),
        (&full.ip, &full.user_agent, &full.detail)
    );
    assert_eq!(all[0].user_id, None);
    assert_eq!(all[0].detail, None);

    assert_eq!(s.list_audit(Some(alice.id), 0, 100).await.unwrap().len(), 1);
    assert_eq!(s.list_audit(None, T0 + 1, 100).await.unwrap().len(), 1);
    assert_eq!(s.list_audit(None, 0, 1).await.unwrap().len(), 1);
}

async fn users_are_listed_and_deleted_with_their_sessions(s: &dyn Store) {
    let a = user(s, "anna").await;
    let b = user(s, "bert").await;
    let sid = session(s, b.id, T0).await.id;
    let all = s.list_users(10, 0).await.unwrap();
    assert_eq!(all.iter().map(|u| u.id).collect::<Vec<_>>(), [a.id, b.id]);
    assert_eq!(s.list_users(10, 1).await.unwrap().len(), 1);
    assert!(s.delete_user(b.id).await.unwrap());
    assert!(!s.delete_user(b.id).await.unwrap());
    assert!(
        s.get_session(sid).await.unwrap().is_none(),
        "sessions go with their user"
    );
    assert_eq!(s.list_users(10, 0).await.unwrap().len(), 1);
}

async fn keys_are_retired_and_deleted(s: &dyn Store) {
    let key = StoredKey {
        kid: "k1".into(),
        alg: "EdDSA".into(),
        private_der: vec![1, 2, 3],
        created_at: T0,
        activates_at: T0,
        retired_at: None,
    };
    s.insert_key(key).await.unwrap();
    assert!(s.retire_key("k1", T0 + 5).await.unwrap());
    assert!(
        !s.retire_key("k1", T0 + 6).await.unwrap(),
        "already retired"
    );
    assert!(!s.retire_key("nope", T0).await.unwrap());
    assert_eq!(s.list_keys().await.unwrap()[0].retired_at, Some(T0 + 5));
    assert!(s.delete_key("k1").await.unwrap());
    assert!(s.list_keys().await.unwrap().is_empty());
}

fn stored_key(kid: &str, alg: &str, activates_at: i64) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        alg: alg.into(),
        private_der: kid.as_bytes().to_vec(),
        created_at: T0,
        activates_at,
        retired_at: None,
    }
}

async fn a_first_key_is_stored_once_per_algorithm(s: &dyn Store) {
    // Many instances finding no signing key at once: exactly one key is stored.
    let tries = join_all(
        (0..16).map(|i| s.insert_first_key(stored_key(&format!("ed{i}"), "EdDSA", T0), T0)),
    )
    .await;
    let stored = tries
        .into_iter()
        .map(|r| r.expect("must not fail"))
        .filter(|won| *won)
        .count();
    assert_eq!(stored, 1);
    let keys = s.list_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    let first = keys[0].kid.clone();

    // Another algorithm has no signing key of its own yet.
    assert!(
        s.insert_first_key(stored_key("p1", "ES256", T0), T0)
            .await
            .unwrap()
    );
    // A key published for later does not sign now.
    s.insert_key(stored_key("rs-next", "RS256", T0 + 100))
        .await
        .unwrap();
    assert!(
        s.insert_first_key(stored_key("rs1", "RS256", T0), T0)
            .await
            .unwrap()
    );
    // A retired key signs until its retirement, not after.
    assert!(s.retire_key(&first, T0 + 10).await.unwrap());
    assert!(
        !s.insert_first_key(stored_key("ed-late", "EdDSA", T0 + 9), T0 + 9)
            .await
            .unwrap()
    );
    assert!(
        s.insert_first_key(stored_key("ed-new", "EdDSA", T0 + 10), T0 + 10)
            .await
            .unwrap()
    );
    assert_eq!(s.list_keys().await.unwrap().len(), 5);
}

async fn a_key_private_part_is_replaced_by_compare_and_set(s: &dyn Store) {
    s.insert_key(stored_key("k1", "EdDSA", T0)).await.unwrap();
    let values: Vec<[u8; 1]> = (0..8).map(|i| [i]).collect();
    let tries = join_all(values.iter().map(|v| s.replace_key_private("k1", b"k1", v))).await;
    let wins: Vec<usize> = tries
        .into_iter()
        .enumerate()
        .filter(|(_, r)| *r.as_ref().expect("must not fail"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(wins.len(), 1, "exactly one replacement of the old value");
    let now = s.list_keys().await.unwrap()[0].private_der.clone();
    assert_eq!(now, vec![wins[0] as u8]);
    assert!(!s.replace_key_private("k1", b"k1", b"x").await.unwrap());
    assert!(!s.replace_key_private("nope", b"k1", b"x").await.unwrap());
}

async fn clients_are_created_listed_and_deleted(s: &dyn Store) {
    let c = Client {
        redirect_uris: vec![
            "https://app.example/cb".into(),
            "http://127.0.0.1/cb".into(),
        ],
        post_logout_redirect_uris: vec!["https://app.example/bye".into()],
        allowed_origins: vec!["https://app.example".into()],
        backchannel_logout_uri: Some("https://app.example/bcl".into()),
        scopes: vec!["openid".into(), "email".into()],
        ..Client::new(
            "spa",
            "Single-page app",
            vec!["refresh_token".into(), "password".into()],
            true,
            T0,
        )
    };
    s.create_client(c.clone()).await.unwrap();
    let confidential = Client {
        id: "backend".into(),
        secret_hash: Some("$argon2id$x".into()),
        first_party: false,
        ..c.clone()
    };
    s.create_client(confidential.clone()).await.unwrap();
    assert_eq!(s.get_client("spa").await.unwrap(), Some(c.clone()));
    assert_eq!(
        s.list_clients().await.unwrap(),
        vec![confidential, c.clone()]
    );
    let e = s.create_client(c.clone()).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict("client_id")), "{e:?}");
    // An update replaces every field but the id and creation time.
    let changed = Client {
        name: "Renamed".into(),
        redirect_uris: vec!["com.example.app:/cb".into()],
        backchannel_logout_uri: None,
        scopes: Vec::new(),
        first_party: false,
        created_at: T0 + 99,
        ..c.clone()
    };
    assert!(s.update_client(changed.clone()).await.unwrap());
    assert_eq!(
        s.get_client("spa").await.unwrap(),
        Some(Client {
            created_at: T0,
            ..changed
        })
    );
    let ghost = Client::new("ghost", "x", Vec::new(), false, T0);
    assert!(!s.update_client(ghost).await.unwrap());
    assert!(s.delete_client("spa").await.unwrap());
    assert!(!s.delete_client("spa").await.unwrap());
    assert_eq!(s.get_client("spa").await.unwrap(), None);
}

async fn throttle_counts_hits_in_fixed_windows(s: &dyn Store) {
    let hit = |now| s.throttle_hit("login:ip:192.0.2.1", now, 60);
    assert_eq!(
        hit(T0).await.unwrap(),
        ThrottleState {
            hits: 1,
            window_ends_at: T0 + 60
        }
    );
    assert_eq!(
        hit(T0 + 10).await.unwrap(),
        ThrottleState {
            hits: 2,
            window_ends_at: T0 + 60
        }
    );
    assert_eq!(
        s.throttle_peek("login:ip:192.0.2.1", T0 + 59)
            .await
            .unwrap()
            .map(|t| t.hits),
        Some(2)
    );
    assert_eq!(
        s.throttle_peek("login:ip:192.0.2.1", T0 + 60)
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.throttle_peek("other", T0).await.unwrap(), None);
    // The window ended: a new one starts with this hit.
    assert_eq!(
        hit(T0 + 60).await.unwrap(),
        ThrottleState {
            hits: 1,
            window_ends_at: T0 + 120
        }
    );
    let many = join_all((0..20).map(|_| s.throttle_hit("burst", T0, 60))).await;
    let mut counts: Vec<u32> = many.into_iter().map(|r| r.unwrap().hits).collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=20).collect::<Vec<u32>>(),
        "concurrent hits are each counted once"
    );
    s.throttle_clear("burst").await.unwrap();
    assert_eq!(s.throttle_peek("burst", T0).await.unwrap(), None);
}

async fn prune_drops_only_what_has_ended(s: &dyn Store) {
    let u = user(s, "pruned").await;
    let old = session(s, u.id, T0).await.id;
    let live = s
        .create_session(NewSession {
            id: Uuid::now_v7(),
            user_id: u.id,
            client_id: "tessera".into(),
            created_at: T0,
            idle_expires_at: T0 + 1_000_000,
            absolute_expires_at: T0 + 1_000_000,
            user_agent: None,
            ip: None,
            scope: None,
            parent_id: None,
        })
        .await
        .unwrap()
        .id;
    s.revoke_session(old, T0 + 1, RevokeReason::Logout, T0 + 100)
        .await
        .unwrap();
    s.throttle_hit("t", T0, 10).await.unwrap();
    for at in [T0, T0 + 500] {
        let e = AuditEvent {
            at,
            kind: "k".into(),
            user_id: None,
            session_id: None,
            ip: None,
            user_agent: None,
            detail: None,
        };
        s.record_audit(e).await.unwrap();
    }
    let report = s.prune(T0 + 200, T0 + 50, T0 + 100).await.unwrap();
    assert_eq!(
        report,
        PruneReport {
            sessions: 1,
            revocations: 1,
            audit_events: 1,
            throttle_rows: 1
        }
    );
    assert!(s.get_session(old).await.unwrap().is_none());
    assert!(s.get_session(live).await.unwrap().is_some());
    assert_eq!(s.list_audit(None, 0, 10).await.unwrap().len(), 1);
}

fn pending(email: &str, username: &str, token: Option<&str>, at: i64) -> PendingUser {
    PendingUser {
        user: NewUser {
            created_at: at,
            password_hash: format!("hash of {username}"),
            ..new_user(email, username)
        },
        token_hash: token.map(str::to_string),
        expires_at: at + 86_400,
    }
}

async fn pending_registrations_reserve_their_name_and_address(s: &dyn Store) {
    user(s, "owner").await;
    let p = pending("Penny@Example.com", "penny", Some("t1"), T0);
    s.put_pending_user(&p).await.unwrap();
    // Found by address (its key) and by username while live, not after.
    for key in ["penny@example.com", "PENNY"] {
        let found = s.find_pending_user(&login_key(key), T0 + 10).await.unwrap();
        assert_eq!(found.as_ref(), Some(&p), "{key}");
    }
    let later = s.find_pending_user(&login_key("penny"), T0 + 86_400).await;
    assert_eq!(later.unwrap(), None);
    assert_eq!(
        s.find_pending_user(&login_key("nobody"), T0).await.unwrap(),
        None
    );
    // A username held by an account or by another address's registration is
    // refused, and the earlier record stays.
    for taken in ["owner", "penny"] {
        let other = pending("other@example.com", taken, Some("t2"), T0 + 1);
        let e = s.put_pending_user(&other).await.unwrap_err();
        assert!(
            matches!(e, StoreError::Conflict("username")),
            "{taken}: {e:?}"
        );
    }
    assert_eq!(
        s.find_pending_user(&login_key("penny"), T0 + 1)
            .await
            .unwrap(),
        Some(p.clone())
    );
    // A newer registration of the same address replaces the older one and
    // frees its username; an address with an account may be pending too.
    let newer = pending("penny@EXAMPLE.com", "penelope", Some("t3"), T0 + 2);
    s.put_pending_user(&newer).await.unwrap();
    assert_eq!(
        s.find_pending_user(&login_key("penny"), T0 + 2)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.find_pending_user(&login_key("penny@example.com"), T0 + 2)
            .await
            .unwrap(),
        Some(newer.clone())
    );
    let at_owner = pending("owner@example.com", "penny", None, T0 + 3);
    s.put_pending_user(&at_owner).await.unwrap();
    // An expired registration holds nothing.
    let late = T0 + 2 + 86_400;
    let reuse = pending("late@example.com", "penelope", Some("t4"), late);
    s.put_pending_user(&reuse).await.unwrap();
    // Housekeeping drops what has expired.
    s.prune(T0 + 3 + 86_400, 0, 0).await.unwrap();
    let gone = s
        .find_pending_user(&login_key("owner@example.com"), T0)
        .await;
    assert_eq!(gone.unwrap(), None);
    assert_eq!(
        s.find_pending_user(&login_key("penelope"), late)
            .await
            .unwrap(),
        Some(reuse)
    );
}

async fn a_pending_registration_becomes_a_confirmed_account_once(s: &dyn Store) {
    let p = pending("cora@example.com", "cora", Some("c0"), T0);
    s.put_pending_user(&p).await.unwrap();
    // A new link replaces the old one and keeps the expiry; only from the
    // link it holds, and only while live.
    let id = p.user.id;
    assert!(s.renew_pending_link(id, "c0", "c1", T0 + 5).await.unwrap());
    assert!(!s.renew_pending_link(id, "c0", "cx", T0 + 5).await.unwrap());
    assert!(
        !s.renew_pending_link(Uuid::now_v7(), "c1", "cx", T0 + 5)
            .await
            .unwrap()
    );
    assert!(
        !s.renew_pending_link(id, "c1", "cx", T0 + 86_400)
            .await
            .unwrap()
    );
    let renewed = s
        .find_pending_user(&login_key("cora"), T0 + 5)
        .await
        .unwrap();
    let renewed = renewed.unwrap();
    assert_eq!(renewed.token_hash.as_deref(), Some("c1"));
    assert_eq!(renewed.expires_at, p.expires_at);
    assert_eq!(s.complete_pending_user("c0", T0 + 6).await.unwrap(), None);
    // An expired link creates nothing.
    assert_eq!(
        s.complete_pending_user("c1", T0 + 86_400).await.unwrap(),
        None
    );
    let done = join_all((0..6).map(|_| s.complete_pending_user("c1", T0 + 60))).await;
    let made: Vec<User> = done.into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(
        made.len(),
        1,
        "exactly one confirmation creates the account"
    );
    let u = &made[0];
    assert_eq!(
        (u.id, u.email_verified, u.created_at),
        (p.user.id, true, T0)
    );
    let record = s.get_user(p.user.id).await.unwrap().unwrap();
    assert_eq!(record.user, *u);
    assert_eq!(record.password_hash, "hash of cora");
    // A confirmed registration is gone for good: no new link brings it back.
    assert!(!s.renew_pending_link(id, "c1", "c2", T0 + 61).await.unwrap());
    assert_eq!(s.complete_pending_user("c2", T0 + 61).await.unwrap(), None);
    assert_eq!(
        s.find_pending_user(&login_key("cora"), T0 + 60)
            .await
            .unwrap(),
        None
    );
    // A username an account took meanwhile keeps the record and says so.
    let q = pending("quinn@example.com", "quinn", Some("q1"), T0);
    s.put_pending_user(&q).await.unwrap();
    s.create_user(new_user("else@example.com", "quinn"))
        .await
        .unwrap();
    let e = s.complete_pending_user("q1", T0 + 1).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict("username")), "{e:?}");
    assert!(
        s.find_pending_user(&login_key("quinn@example.com"), T0 + 1)
            .await
            .unwrap()
            .is_some()
    );
    // So does an address an account took meanwhile.
    let e = pending("erin@example.com", "erin", Some("e1"), T0);
    s.put_pending_user(&e).await.unwrap();
    s.create_user(new_user("ERIN@example.com", "erin2"))
        .await
        .unwrap();
    let err = s.complete_pending_user("e1", T0 + 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("email")), "{err:?}");
    assert!(
        s.find_pending_user(&login_key("erin"), T0 + 1)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        s.complete_pending_user("unknown", T0 + 1).await.unwrap(),
        None
    );
}

async fn active_sessions_are_counted(s: &dyn Store) {
    let u = user(s, "counted").await;
    assert_eq!(s.count_active_sessions(T0).await.unwrap(), 0);
    let a = session(s, u.id, T0).await.id;
    session(s, u.id, T0).await;
    assert_eq!(s.count_active_sessions(T0 + 1).await.unwrap(), 2);
    s.revoke_session(a, T0 + 1, RevokeReason::Logout, T0 + 100)
        .await
        .unwrap();
    assert_eq!(s.count_active_sessions(T0 + 1).await.unwrap(), 1);
    assert_eq!(
        s.count_active_sessions(T0 + 3_600).await.unwrap(),
        0,
        "idle-expired sessions do not count"
    );
}

async fn password_hash_upgrade_is_compare_and_set(s: &dyn Store) {
    let u = user(s, "upgrader").await;
    let stored = s.get_user(u.id).await.unwrap().unwrap().password_hash;
    assert!(
        s.upgrade_password_hash(u.id, &stored, "$argon2id$new")
            .await
            .unwrap()
    );
    // A change that landed in between wins: the stale upgrade does nothing.
    s.set_password_hash(u.id, "$argon2id$changed")
        .await
        .unwrap();
    assert!(
        !s.upgrade_password_hash(u.id, "$argon2id$new", "$argon2id$stale")
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_user(u.id).await.unwrap().unwrap().password_hash,
        "$argon2id$changed"
    );
}

async fn users_are_counted(s: &dyn Store) {
    assert_eq!(s.count_users().await.unwrap(), 0);
    let a = user(s, "anna").await;
    user(s, "bert").await;
    user(s, "cleo").await;
    assert_eq!(s.count_users().await.unwrap(), 3);
    assert!(s.delete_user(a.id).await.unwrap());
    assert_eq!(s.count_users().await.unwrap(), 2);
}

async fn recent_audit_is_the_newest_events_newest_first(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let event = |at: i64, kind: &str, user_id: Option<Uuid>| AuditEvent {
        at,
        kind: kind.into(),
        user_id,
        session_id: None,
        ip: None,
        user_agent: None,
        detail: None,
    };
    for (i, kind) in ["one", "two", "three", "four"].iter().enumerate() {
        let who = (i % 2 == 0).then_some(alice.id);
        s.record_audit(event(T0 + i as i64, kind, who))
            .await
            .unwrap();
    }
    let kinds = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(
        kinds(s.list_recent_audit(None, 0, 2).await.unwrap()),
        ["four", "three"]
    );
    assert_eq!(
        kinds(s.list_recent_audit(None, 0, 100).await.unwrap()),
        ["four", "three", "two", "one"]
    );
    assert_eq!(
        kinds(s.list_recent_audit(Some(alice.id), 0, 100).await.unwrap()),
        ["three", "one"]
    );
    assert_eq!(
        kinds(s.list_recent_audit(None, T0 + 2, 100).await.unwrap()),
        ["four", "three"]
    );
}

async fn import_users_inserts_skips_and_names_conflicts(s: &dyn Store) {
    use ImportOutcome::*;
    let ada = s
        .create_user(new_user("ada@example.com", "ada"))
        .await
        .unwrap();
    assert_eq!(ada.legacy_id, None);
    let batch = || {
        vec![
            imported(
                "Grace@Example.COM",
                "grace",
                Some("64b7f0c2a1e4d3b2c1a09f01"),
            ),
            // The same person as `ada`, email in another case: imported before.
            imported("ADA@example.com", "ada", None),
            imported("ada@EXAMPLE.com", "ada2", Some("64b7f0c2a1e4d3b2c1a09f02")),
            imported(
                "someone@example.com",
                "ada",
                Some("64b7f0c2a1e4d3b2c1a09f03"),
            ),
            imported(
                "linus@example.com",
                "linus",
                Some("64b7f0c2a1e4d3b2c1a09f04"),
            ),
        ]
    };
    let expected = vec![
        Inserted,
        AlreadyPresent,
        Conflict("email"),
        Conflict("username"),
        Inserted,
    ];
    // A dry run reports the same and writes nothing.
    assert_eq!(s.import_users(&batch(), true).await.unwrap(), expected);
    assert_eq!(s.list_users(100, 0).await.unwrap().len(), 1);
    assert!(
        s.find_user_for_login(&login_key("grace"))
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(s.import_users(&batch(), false).await.unwrap(), expected);
    let grace = s
        .find_user_for_login(&login_key("GRACE@example.com"))
        .await
        .unwrap()
        .expect("found by email, whatever its case");
    assert_eq!(
        grace.user.email, "Grace@Example.COM",
        "case kept for display"
    );
    assert_eq!(
        grace.user.legacy_id.as_deref(),
        Some("64b7f0c2a1e4d3b2c1a09f01")
    );
    assert_eq!(grace.password_hash, "hash-of-grace");
    assert_eq!(grace.user.created_at, T0);
    let again = s.get_user(grace.user.id).await.unwrap().unwrap();
    assert_eq!(again.user, grace.user);
    assert_eq!(s.list_users(100, 0).await.unwrap().len(), 3);

    // Run again (new ids, as a second import run makes): nothing new.
    assert_eq!(
        s.import_users(&batch(), false).await.unwrap(),
        vec![
            AlreadyPresent,
            AlreadyPresent,
            Conflict("email"),
            Conflict("username"),
            AlreadyPresent
        ]
    );
    assert_eq!(s.list_users(100, 0).await.unwrap().len(), 3);
    // A known legacy id is the same user, even after a profile change there.
    let renamed = imported(
        "grace.h@example.com",
        "gracie",
        Some("64b7f0c2a1e4d3b2c1a09f01"),
    );
    // Same email and username under another legacy id: not the same record.
    let other = imported(
        "linus@example.com",
        "linus",
        Some("64b7f0c2a1e4d3b2c1a09fff"),
    );
    assert_eq!(
        s.import_users(&[renamed, other], false).await.unwrap(),
        vec![AlreadyPresent, Conflict("legacy_id")]
    );
    assert!(s.import_users(&[], false).await.unwrap().is_empty());
    // The legacy id is unique for every way of creating users.
    let e = s
        .create_user(imported(
            "new@example.com",
            "newbie",
            Some("64b7f0c2a1e4d3b2c1a09f04"),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict("legacy_id")), "{e:?}");
    // Users and sessions read back carry it.
    let sess = session(s, grace.user.id, T0).await;
    let (_, u) = s.get_session(sess.id).await.unwrap().unwrap();
    assert_eq!(u.legacy_id, grace.user.legacy_id);
}

async fn import_users_handles_batches_larger_than_one_statement(s: &dyn Store) {
    let batch = |n: usize| {
        (0..n)
            .map(|i| {
                imported(
                    &format!("user{i}@example.com"),
                    &format!("user{i}"),
                    (i % 2 == 0).then(|| format!("{i:024x}")).as_deref(),
                )
            })
            .collect::<Vec<_>>()
    };
    let first = s.import_users(&batch(1_234), false).await.unwrap();
    assert_eq!(first.len(), 1_234);
    assert!(first.iter().all(|o| *o == ImportOutcome::Inserted));
    let second = s.import_users(&batch(1_234), false).await.unwrap();
    assert!(second.iter().all(|o| *o == ImportOutcome::AlreadyPresent));
    assert_eq!(s.list_users(2_000, 0).await.unwrap().len(), 1_234);
}

fn account_token(
    hash: &str,
    purpose: TokenPurpose,
    user: Option<Uuid>,
    expires_at: i64,
) -> AccountToken {
    AccountToken {
        hash: hash.into(),
        purpose,
        user_id: user,
        email: "who@example.com".into(),
        created_at: T0,
        expires_at,
        data: (purpose == TokenPurpose::AuthorizationCode).then(|| "{\"x\":1}".into()),
    }
}

async fn email_verification_holds_only_for_the_address_confirmed(s: &dyn Store) {
    let u = user(s, "vera").await;
    assert!(!u.email_verified);
    // A confirmation for an address the user no longer has changes nothing.
    assert!(
        !s.set_email_verified(u.id, "old@example.com", T0)
            .await
            .unwrap()
    );
    assert!(
        s.set_email_verified(u.id, "vera@example.com", T0)
            .await
            .unwrap()
    );
    assert!(s.get_user(u.id).await.unwrap().unwrap().user.email_verified);
    // Renaming keeps it; the same address in another case keeps it too.
    let patch = UserPatch {
        email: Some("VERA@example.com".into()),
        ..Default::default()
    };
    assert!(s.update_user(u.id, patch).await.unwrap().email_verified);
    let patch = UserPatch {
        username: Some("vera2".into()),
        ..Default::default()
    };
    assert!(s.update_user(u.id, patch).await.unwrap().email_verified);
    // A new address is not verified.
    let patch = UserPatch {
        email: Some("vera@elsewhere.org".into()),
        ..Default::default()
    };
    let changed = s.update_user(u.id, patch).await.unwrap();
    assert!(!changed.email_verified);
    let (_, with_session) = {
        let sess = session(s, u.id, T0).await;
        s.get_session(sess.id).await.unwrap().unwrap()
    };
    assert!(!with_session.email_verified);
}

async fn account_tokens_are_single_use(s: &dyn Store) {
    let u = user(s, "tomas").await;
    let t = account_token("aa11", TokenPurpose::ResetPassword, Some(u.id), T0 + 1_800);
    s.insert_account_token(t.clone()).await.unwrap();
    assert_eq!(s.get_account_token("aa11").await.unwrap(), Some(t.clone()));
    // Reading does not use it up; taking it does, for exactly one of many.
    let takes = join_all((0..8).map(|_| s.take_account_token("aa11"))).await;
    let won: Vec<_> = takes.into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(won, vec![t]);
    assert_eq!(s.get_account_token("aa11").await.unwrap(), None);
    assert_eq!(s.take_account_token("unknown").await.unwrap(), None);
    // An invitation names no user.
    let invite = account_token("bb22", TokenPurpose::Invite, None, T0 + 60);
    s.insert_account_token(invite.clone()).await.unwrap();
    assert_eq!(s.take_account_token("bb22").await.unwrap(), Some(invite));
    // An authorization code carries its request with it.
    let code = account_token("cc33", TokenPurpose::AuthorizationCode, Some(u.id), T0 + 60);
    s.insert_account_token(code.clone()).await.unwrap();
    assert_eq!(s.take_account_token("cc33").await.unwrap(), Some(code));
}

async fn account_tokens_go_with_their_user_and_their_expiry(s: &dyn Store) {
    let u = user(s, "ines").await;
    for (h, p) in [
        ("r1", TokenPurpose::ResetPassword),
        ("r2", TokenPurpose::ResetPassword),
        ("v1", TokenPurpose::VerifyEmail),
    ] {
        s.insert_account_token(account_token(h, p, Some(u.id), T0 + 100))
            .await
            .unwrap();
    }
    assert_eq!(
        s.delete_account_tokens(u.id, TokenPurpose::ResetPassword)
            .await
            .unwrap(),
        2
    );
    assert!(s.get_account_token("v1").await.unwrap().is_some());
    // Pruning drops expired tokens only.
    s.insert_account_token(account_token(
        "late",
        TokenPurpose::VerifyEmail,
        Some(u.id),
        T0 + 10_000,
    ))
    .await
    .unwrap();
    s.prune(T0 + 200, 0, 0).await.unwrap();
    assert!(s.get_account_token("v1").await.unwrap().is_none());
    assert!(s.get_account_token("late").await.unwrap().is_some());
    // Deleting the user deletes their tokens.
    assert!(s.delete_user(u.id).await.unwrap());
    assert!(s.get_account_token("late").await.unwrap().is_none());
}

async fn child_sessions_are_the_live_ones_opened_from_a_session(s: &dyn Store) {
    let u = user(s, "parent").await;
    let browser = session(s, u.id, T0).await;
    let child = |created_at| NewSession {
        parent_id: Some(browser.id),
        client_id: "app".into(),
        ..new_session(u.id, created_at)
    };
    let a = s.create_session(child(T0 + 1)).await.unwrap();
    let b = s.create_session(child(T0 + 2)).await.unwrap();
    let unrelated = session(s, u.id, T0 + 3).await;
    let ids = |v: Vec<Session>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.child_sessions(browser.id, T0 + 10).await.unwrap()),
        [b.id, a.id]
    );
    assert!(
        s.child_sessions(unrelated.id, T0 + 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Revoked or expired children are not live.
    s.revoke_session(b.id, T0 + 5, RevokeReason::Logout, T0 + 100)
        .await
        .unwrap();
    assert_eq!(
        ids(s.child_sessions(browser.id, T0 + 10).await.unwrap()),
        [a.id]
    );
    assert!(
        s.child_sessions(browser.id, T0 + 4_000)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn consents_are_kept_per_user_and_client(s: &dyn Store) {
    let u = user(s, "consenting").await;
    let other = user(s, "other").await;
    for id in ["app-a", "app-b"] {
        s.create_client(Client::new(id, id, Vec::new(), false, T0))
            .await
            .unwrap();
    }
    let grant = |user_id, client: &str, scope: &str, at| Grant {
        user_id,
        client_id: client.into(),
        scope: scope.into(),
        granted_at: at,
    };
    assert_eq!(s.get_grant(u.id, "app-a").await.unwrap(), None);
    s.put_grant(grant(u.id, "app-a", "openid", T0))
        .await
        .unwrap();
    s.put_grant(grant(u.id, "app-b", "openid email", T0 + 1))
        .await
        .unwrap();
    s.put_grant(grant(other.id, "app-a", "openid", T0))
        .await
        .unwrap();
    // A second consent replaces the first.
    s.put_grant(grant(u.id, "app-a", "openid profile", T0 + 2))
        .await
        .unwrap();
    assert_eq!(
        s.get_grant(u.id, "app-a").await.unwrap(),
        Some(grant(u.id, "app-a", "openid profile", T0 + 2))
    );
    let listed = s.list_grants(u.id).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|g| g.client_id.as_str())
            .collect::<Vec<_>>(),
        ["app-b", "app-a"]
    );
    assert!(s.delete_grant(u.id, "app-b").await.unwrap());
    assert!(!s.delete_grant(u.id, "app-b").await.unwrap());
    // Removing a client or a user removes their consents.
    assert!(s.delete_client("app-a").await.unwrap());
    assert!(s.list_grants(u.id).await.unwrap().is_empty());
    assert!(s.list_grants(other.id).await.unwrap().is_empty());
    s.create_client(Client::new("app-c", "c", Vec::new(), false, T0))
        .await
        .unwrap();
    s.put_grant(grant(u.id, "app-c", "openid", T0))
        .await
        .unwrap();
    assert!(s.delete_user(u.id).await.unwrap());
    assert_eq!(s.get_grant(u.id, "app-c").await.unwrap(), None);
}

async fn mail_is_claimed_once_and_retried_until_delivered(s: &dyn Store) {
    let mail = |n: i64| QueuedMail {
        id: Uuid::now_v7(),
        kind: if n == 1 {
            OutboxKind::BackchannelLogout
        } else {
            OutboxKind::Mail
        },
        recipient: format!("r{n}@example.com"),
        subject: format!("subject {n}"),
        text: "plain".into(),
        html: "<p>html</p>".into(),
        created_at: T0 + n,
        attempts: 0,
        next_attempt_at: T0 + n,
    };
    let (a, b, later) = (mail(0), mail(1), mail(500));
    for m in [&later, &b, &a] {
        s.enqueue_mail(m.clone()).await.unwrap();
    }
    assert_eq!(s.count_mail().await.unwrap(), 3);
    // Claims made together share out the due mails: each is taken once.
    let claims = join_all((0..4).map(|_| s.claim_mail(T0 + 10, T0 + 70, 10))).await;
    let mut taken: Vec<QueuedMail> = claims.into_iter().flat_map(Result::unwrap).collect();
    taken.sort_by_key(|m| m.created_at);
    let ids: Vec<_> = taken.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![a.id, b.id]);
    assert_eq!(taken[0].next_attempt_at, T0 + 70);
    assert_eq!(
        (taken[0].subject.as_str(), taken[0].html.as_str()),
        ("subject 0", "<p>html</p>")
    );
    // Leased: nothing is due until the lease ends.
    assert!(s.claim_mail(T0 + 20, T0 + 80, 10).await.unwrap().is_empty());
    s.mail_delivered(a.id).await.unwrap();
    s.mail_failed(b.id, T0 + 100, "connection refused")
        .await
        .unwrap();
    assert!(
        s.claim_mail(T0 + 99, T0 + 200, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = s.claim_mail(T0 + 100, T0 + 200, 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].id, retried[0].attempts), (b.id, 1));
    // The limit holds, oldest first.
    let both = s.claim_mail(T0 + 1_000, T0 + 1_100, 1).await.unwrap();
    assert_eq!(both.iter().map(|m| m.id).collect::<Vec<_>>(), vec![b.id]);
    assert_eq!(s.count_mail().await.unwrap(), 2);
}

/// SQLite only: rotations and other writes reach the database file itself (not
/// only the write-ahead log) while the store runs, although no commit checkpoints:
/// the checkpoint thread copies the log back on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_are_checkpointed_into_the_database_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tessera.db");
    let store = open_sqlite(&path).await;
    let alice = user(&store, "alice").await;
    let id = session(&store, alice.id, T0).await.id;
    for from in 0..50 {
        assert!(
            store
                .rotate_session(id, from, T0 + 10, T0 + 3_610)
                .await
                .unwrap()
        );
    }
    // Only the database file, as a copy taken without its log would see it.
    let counter_in_file = || {
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).expect("copy the database file");
        let conn = rusqlite::Connection::open(&copy).expect("open the copy");
        let counter: i64 = conn
            .query_row("SELECT counter FROM sessions", [], |r| r.get(0))
            .unwrap_or(-1);
        drop(conn);
        let _ = std::fs::remove_file(&copy);
        counter
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while counter_in_file() != 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file never received the rotations"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.close().await;
}

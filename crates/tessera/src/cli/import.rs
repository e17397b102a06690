//! `tessera user import FILE`: users from another system, as JSON lines or one
//! JSON array — Tessera's own shape `{email, username, fullname?, password_hash}`
//! or what `mongoexport` writes for the users collection of the common Express
//! tutorials (`_id: {"$oid"}`, `fullName`, `password` as a bcrypt hash,
//! `createdAt: {"$date"}`, ...).
//!
//! Every record is checked before anything is written. Records that share an
//! email (whatever its case), a username or an `_id` with another record of the
//! file are all refused: which account keeps the address is the operator's call.
//! The rest go to the store in batches, one transaction each, so an interrupted
//! run leaves whole users only, and a second run skips what the first imported.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use tessera_app::hashing::is_supported_hash;
use tessera_core::model::{ImportOutcome, NewUser};
use tessera_core::{Clock, Store, SystemClock, validate};
use uuid::Uuid;

/// Users per store call (one transaction).
const BATCH: usize = 1_000;
/// Longest legacy id kept (a MongoDB ObjectId is 24 hex digits).
const LEGACY_ID_MAX: usize = 128;
/// 9999-12-31T23:59:59Z, the latest creation time accepted.
const MAX_TIME: i64 = 253_402_300_799;

/// Fields Tessera keeps, under each name an export may use.
const KEPT: &[&str] = &[
    "_id",
    "email",
    "username",
    "fullName",
    "fullname",
    "full_name",
    "password",
    "password_hash",
    "createdAt",
    "created_at",
];

/// Where a record is in the file: a line of JSON lines, or an index of an array.
#[derive(Debug, Clone, Copy)]
enum At {
    Line(usize),
    Index(usize),
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Line(n) => write!(f, "line {n}"),
            At::Index(i) => write!(f, "array index {i}"),
        }
    }
}

/// A record of the file: a JSON object, or why it is not one.
type Record = Result<Map<String, Value>, String>;

/// The records of the file with their positions.
fn records(text: &str) -> Result<Vec<(At, Record)>, String> {
    let text = text.trim_start_matches('\u{feff}');
    let object = |v: Value| match v {
        Value::Object(m) => Ok(m),
        _ => Err("not a JSON object".to_string()),
    };
    if text.trim_start().starts_with('[') {
        let items: Vec<Value> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON array ({e})"))?;
        return Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (At::Index(i), object(v)))
            .collect());
    }
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let parsed = serde_json::from_str::<Value>(l.trim())
                .map_err(|e| format!("not JSON ({} at column {})", json_error(&e), e.column()))
                .and_then(object);
            (At::Line(i + 1), parsed)
        })
        .collect())
}

/// What went wrong in a JSON line, without repeating its content.
fn json_error(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "cut short",
    }
}

/// The first of `names` present (and not null) in the record, with its name.
fn field<'a>(
    m: &'a Map<String, Value>,
    names: &[&'static str],
) -> Option<(&'static str, &'a Value)> {
    names
        .iter()
        .find_map(|n| m.get(*n).filter(|v| !v.is_null()).map(|v| (*n, v)))
}

/// A string field under any of `names`; the names must agree when several are set.
fn text<'a>(m: &'a Map<String, Value>, names: &[&str]) -> Result<Option<&'a str>, String> {
    let mut found: Option<(&str, &str)> = None;
    for n in names {
        match m.get(*n) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => match found {
                Some((first, v)) if v != s => {
                    return Err(format!("{first} and {n} differ; keep one of them"));
                }
                Some(_) => {}
                None => found = Some((n, s)),
            },
            Some(_) => return Err(format!("{n} must be a string")),
        }
    }
    Ok(found.map(|(_, v)| v))
}

/// `_id` as MongoDB extended JSON (`{"$oid": "..."}`) or a plain string.
fn legacy_id(m: &Map<String, Value>) -> Result<Option<String>, String> {
    let bad = || "_id must be {\"$oid\": \"<24 hex digits>\"} or a string".to_string();
    let id = match m.get("_id") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) if o.len() == 1 => {
            let oid = o.get("$oid").and_then(Value::as_str).ok_or_else(bad)?;
            if oid.len() != 24 || !oid.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            oid.to_ascii_lowercase()
        }
        Some(_) => return Err(bad()),
    };
    if id.is_empty()
        || id.len() > LEGACY_ID_MAX
        || id.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "_id must be 1 to {LEGACY_ID_MAX} characters without spaces"
        ));
    }
    Ok(Some(id))
}

/// An RFC 3339 time with `Z` or a numeric offset (`+05:30`, `+0530`), as Unix
/// seconds. Fractions of a second are dropped.
fn iso_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (local, offset) = if let Some(local) = s.strip_suffix(['Z', 'z']) {
        (local, 0)
    } else {
        let at = s[19..].find(['+', '-'])? + 19;
        let (local, zone) = s.split_at(at);
        let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 || !digits.bytes().all(|d| d.is_ascii_digit()) {
            return None;
        }
        let (h, m): (i64, i64) = (digits[..2].parse().ok()?, digits[2..].parse().ok()?);
        if h > 23 || m > 59 {
            return None;
        }
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        (local, sign * (h * 3600 + m * 60))
    };
    let t = humantime::parse_rfc3339(&format!("{}T{}Z", &local[..10], &local[11..])).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok().map(|secs| secs - offset)
}

fn millis(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `createdAt` as MongoDB extended JSON: `{"$date": "ISO"}`, `{"$date":
/// {"$numberLong": "ms"}}`, `{"$date": ms}`, or a plain ISO string.
fn created_at(m: &Map<String, Value>) -> Result<Option<i64>, String> {
    let Some((name, v)) = field(m, &["createdAt", "created_at"]) else {
        return Ok(None);
    };
    let bad = || {
        format!(
            "{name} must be {{\"$date\": \"<ISO time>\"}}, {{\"$date\": {{\"$numberLong\": \"<ms>\"}}}} or an ISO time"
        )
    };
    let secs = match v {
        Value::String(s) => iso_time(s),
        Value::Object(o) if o.len() == 1 => match o.get("$date") {
            Some(Value::String(s)) => iso_time(s),
            Some(Value::Object(n)) if n.len() == 1 => n
                .get("$numberLong")
                .and_then(millis)
                .map(|ms| ms.div_euclid(1000)),
            Some(n @ Value::Number(_)) => millis(n).map(|ms| ms.div_euclid(1000)),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(bad)?;
    if !(0..=MAX_TIME).contains(&secs) {
        return Err(format!("{name} is before 1970 or after 9999"));
    }
    Ok(Some(secs))
}

/// One record as a user to create. Messages never repeat the password hash.
fn user_from(m: &Map<String, Value>, now: i64) -> Result<NewUser, String> {
    let email = text(m, &["email"])?.ok_or("email is missing")?;
    let username = text(m, &["username"])?.ok_or("username is missing")?;
    let fullname = text(m, &["fullName", "fullname", "full_name"])?.unwrap_or("");
    let hash =
        text(m, &["password_hash", "password"])?.ok_or("password (the bcrypt hash) is missing")?;
    if !is_supported_hash(hash) {
        return Err("the password is not a bcrypt or Argon2 hash".into());
    }
    Ok(NewUser {
        id: Uuid::now_v7(),
        email: validate::email(email).map_err(|e| e.to_string())?,
        username: validate::username(username).map_err(|e| e.to_string())?,
        fullname: validate::fullname(fullname).map_err(|e| e.to_string())?,
        password_hash: hash.to_string(),
        created_at: created_at(m)?.unwrap_or(now),
        legacy_id: legacy_id(m)?,
    })
}

/// Refuses every record that shares a unique field with another record of the
/// file, saying which and where; returns the others.
fn refuse_duplicates(
    users: Vec<(At, NewUser)>,
    rejected: &mut Vec<(At, String)>,
) -> Vec<(At, NewUser)> {
    let mut groups: BTreeMap<(&'static str, String), Vec<usize>> = BTreeMap::new();
    for (i, (_, u)) in users.iter().enumerate() {
        groups
            .entry(("email", validate::email_key(&u.email)))
            .or_default()
            .push(i);
        groups
            .entry(("username", u.username.clone()))
            .or_default()
            .push(i);
        if let Some(l) = &u.legacy_id {
            groups.entry(("_id", l.clone())).or_default().push(i);
        }
    }
    let mut refused: HashMap<usize, String> = HashMap::new();
    for ((what, _), members) in groups.iter().filter(|(_, m)| m.len() > 1) {
        for &i in members {
            let Some(j) = members.iter().copied().find(|&j| j != i) else {
                continue;
            };
            let (mine, theirs) = (&users[i].1, &users[j].1);
            let why = if *what == "email" && mine.email != theirs.email {
                format!(
                    "email {} differs only by case from {} ({}); logins match emails whatever \
                     their case, so neither is imported: merge the accounts or change one, then \
                     run again",
                    mine.email, theirs.email, users[j].0
                )
            } else {
                format!("same {what} as {}; neither is imported", users[j].0)
            };
            refused.entry(i).or_insert(why);
        }
    }
    let mut kept = Vec::with_capacity(users.len());
    for (i, (at, u)) in users.into_iter().enumerate() {
        match refused.remove(&i) {
            Some(why) => rejected.push((at, why)),
            None => kept.push((at, u)),
        }
    }
    kept
}

pub async fn run(store: &dyn Store, file: &Path, dry_run: bool) -> Result<(), String> {
    let started = Instant::now();
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let now = SystemClock.now();
    let mut rejected: Vec<(At, String)> = Vec::new();
    let mut not_kept: BTreeMap<String, usize> = BTreeMap::new();
    let mut users = Vec::new();
    let all = records(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let total = all.len();
    for (at, record) in all {
        let parsed = record.and_then(|m| {
            for k in m.keys().filter(|k| !KEPT.contains(&k.as_str())) {
                *not_kept.entry(k.clone()).or_default() += 1;
            }
            user_from(&m, now)
        });
        match parsed {
            Ok(u) => users.push((at, u)),
            Err(why) => rejected.push((at, why)),
        }
    }
    let users = refuse_duplicates(users, &mut rejected);

    let bar = indicatif::ProgressBar::new(users.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} users  {elapsed_precise}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut inserted, mut present) = (0usize, 0usize);
    for chunk in users.chunks(BATCH) {
        let batch: Vec<NewUser> = chunk.iter().map(|(_, u)| u.clone()).collect();
        let outcomes = store
            .import_users(&batch, dry_run)
            .await
            .map_err(|e| format!("{e}; users imported so far are kept, run again to continue"))?;
        for ((at, _), outcome) in chunk.iter().zip(outcomes) {
            match outcome {
                ImportOutcome::Inserted => inserted += 1,
                ImportOutcome::AlreadyPresent => present += 1,
                ImportOutcome::Conflict(field) => {
                    rejected.push((*at, format!("another user already has this {field}")))
                }
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    // A closed stdout or stderr (`| head`) must not turn a finished import into a panic.
    let verb = if dry_run {
        "dry run: would import"
    } else {
        "imported"
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{verb} {inserted} users; {present} already present (skipped); {} of {total} records refused; {:.1} s",
        rejected.len(),
        started.elapsed().as_secs_f64()
    );
    if !not_kept.is_empty() {
        let list: Vec<String> = not_kept.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        let _ = writeln!(
            out,
            "fields not kept (Tessera stores email, username, full name, password hash, creation time and _id as legacy_id): {}",
            list.join(", ")
        );
    }
    drop(out);
    rejected.sort_by_key(|(at, _)| match at {
        At::Line(n) | At::Index(n) => *n,
    });
    let mut err = std::io::stderr().lock();
    for (at, why) in &rejected {
        let _ = writeln!(err, "  {at}: {why}");
    }
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(format!("{} records could not be imported", rejected.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HASH: &str = "$2b$04$onw.NYs45V6FsYc5jpqUJ.G4MqsuSIYnAerfrY2Z/3kfTiiY4LI46";

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn mongo_dates_in_every_export_mode() {
        let at = |v: Value| created_at(&obj(json!({ "createdAt": v })));
        let t = 1_705_141_230; // 2024-01-13T10:20:30Z
        assert_eq!(
            at(json!({"$date": "2024-01-13T10:20:30.123Z"})),
            Ok(Some(t))
        );
        assert_eq!(at(json!({"$date": "2024-01-13T10:20:30Z"})), Ok(Some(t)));
        assert_eq!(
            at(json!({"$date": "2024-01-13T15:50:30.5+05:30"})),
            Ok(Some(t))
        );
        assert_eq!(
            at(json!({"$date": "2024-01-13T05:20:30-0500"})),
            Ok(Some(t))
        );
        assert_eq!(
            at(json!({"$date": {"$numberLong": "1705141230123"}})),
            Ok(Some(t))
        );
        assert_eq!(at(json!({"$date": 1_705_141_230_999_i64})), Ok(Some(t)));
        assert_eq!(at(json!("2024-01-13T10:20:30Z")), Ok(Some(t)));
        assert_eq!(at(Value::Null), Ok(None));
        assert_eq!(created_at(&obj(json!({}))), Ok(None));
        for bad in [
            json!({"$date": "yesterday"}),
            json!({"$date": "2024-01-13"}),
            json!({"$date": "2024-01-13T10:20:30+25:00"}),
            json!({"$date": {"$numberLong": "-5000"}}),
            json!({"$date": {"$numberLong": "x"}}),
            json!({"$date": true}),
            json!({"$date": "2024-01-13T10:20:30Z", "extra": 1}),
            json!(12),
            json!("2024-01-13T10:20:30é"),
        ] {
            assert!(at(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_ids_become_legacy_ids() {
        let id = |v: Value| legacy_id(&obj(json!({ "_id": v })));
        assert_eq!(
            id(json!({"$oid": "65A1F0C2E4B0A1B2C3D4E5F6"})),
            Ok(Some("65a1f0c2e4b0a1b2c3d4e5f6".into()))
        );
        assert_eq!(id(json!("user-17")), Ok(Some("user-17".into())));
        assert_eq!(legacy_id(&obj(json!({}))), Ok(None));
        for bad in [
            json!({"$oid": "65a1"}),
            json!({"$oid": "zz a1f0c2e4b0a1b2c3d4e5f6"}),
            json!({"$oid": 5}),
            json!(""),
            json!("has space"),
            json!("x".repeat(129)),
            json!(42),
        ] {
            assert!(id(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tutorial_user_document_becomes_a_user() {
        let m = obj(json!({
            "_id": {"$oid": "65a1f0c2e4b0a1b2c3d4e5f6"},
            "username": "Hitesh",
            "email": "Hitesh@Example.com",
            "fullName": "Hitesh C",
            "avatar": "http://res.cloudinary.com/demo/avatar.png",
            "coverImage": "",
            "watchHistory": [],
            "password": HASH,
            "refreshToken": "eyJhbGciOiJIUzI1NiJ9.e30.sig",
            "createdAt": {"$date": "2024-01-13T10:20:30.123Z"},
            "updatedAt": {"$date": "2024-02-01T00:00:00.000Z"},
            "__v": 0
        }));
        let u = user_from(&m, 7).unwrap();
        assert_eq!(u.username, "hitesh");
        assert_eq!(u.email, "Hitesh@Example.com", "case kept");
        assert_eq!(u.fullname, "Hitesh C");
        assert_eq!(u.password_hash, HASH);
        assert_eq!(u.created_at, 1_705_141_230);
        assert_eq!(u.legacy_id.as_deref(), Some("65a1f0c2e4b0a1b2c3d4e5f6"));
        // Tessera's own shape still works; no createdAt means now.
        let own = obj(json!({"email": "a@b.co", "username": "abc", "password_hash": HASH}));
        let u = user_from(&own, 7).unwrap();
        assert_eq!(
            (u.created_at, u.legacy_id, u.fullname.as_str()),
            (7, None, "")
        );
    }

    #[test]
    fn bad_records_say_why_without_the_hash() {
        let base = || obj(json!({"email": "a@b.co", "username": "abc", "password": HASH}));
        let with = |k: &str, v: Value| {
            let mut m = base();
            m.insert(k.into(), v);
            m
        };
        let without = |k: &str| {
            let mut m = base();
            m.remove(k);
            m
        };
        let cases = [
            (without("email"), "email is missing"),
            (without("password"), "password"),
            (
                with("password", json!("hunter2-plain")),
                "not a bcrypt or Argon2 hash",
            ),
            (with("password_hash", json!("$2b$04$other")), "differ"),
            (with("username", json!("a")), "username"),
            (with("email", json!(5)), "email must be a string"),
            (with("fullName", json!("x".repeat(200))), "fullname"),
        ];
        for (m, expected) in cases {
            let e = user_from(&m, 0).unwrap_err();
            assert!(e.contains(expected), "{e}");
            assert!(
                !e.contains("hunter2") && !e.contains(HASH) && !e.contains("$2b$04$other"),
                "{e}"
            );
        }
    }

    #[test]
    fn records_come_from_lines_or_an_array() {
        let lines = records("{\"a\":1}\n\n  \nnot json\n[1]\n").unwrap();
        let at: Vec<String> = lines.iter().map(|(at, _)| at.to_string()).collect();
        assert_eq!(at, ["line 1", "line 4", "line 5"]);
        assert!(lines[0].1.is_ok() && lines[1].1.is_err() && lines[2].1.is_err());
        let array = records("\u{feff} [{\"a\":1}, 2,\n {\"b\":2}]").unwrap();
        let at: Vec<String> = array.iter().map(|(at, _)| at.to_string()).collect();
        assert_eq!(at, ["array index 0", "array index 1", "array index 2"]);
        assert!(array[1].1.is_err());
        assert!(records("[{\"a\":1},").is_err());
    }

    #[test]
    fn records_sharing_a_unique_field_are_all_refused() {
        let user = |email: &str, name: &str, id: Option<&str>| NewUser {
            id: Uuid::now_v7(),
            email: email.into(),
            username: name.into(),
            fullname: String::new(),
            password_hash: HASH.into(),
            created_at: 0,
            legacy_id: id.map(str::to_string),
        };
        let users = vec![
            (At::Line(1), user("Ada@X.io", "ada", Some("1"))),
            (At::Line(2), user("bob@x.io", "bob", Some("2"))),
            (At::Line(3), user("ada@x.io", "ada2", Some("3"))),
            (At::Line(4), user("cy@x.io", "bob", Some("4"))),
            (At::Line(5), user("dee@x.io", "dee", Some("5"))),
            (At::Line(6), user("eve@x.io", "eve", Some("5"))),
            (At::Line(7), user("fay@x.io", "fay", None)),
        ];
        let mut rejected = Vec::new();
        let kept = refuse_duplicates(users, &mut rejected);
        let kept: Vec<String> = kept.iter().map(|(at, _)| at.to_string()).collect();
        assert_eq!(kept, ["line 7"]);
        let why = |n: usize| {
            rejected
                .iter()
                .find(|(at, _)| matches!(at, At::Line(l) if *l == n))
                .map(|(_, w)| w.clone())
                .unwrap()
        };
        assert!(why(1).contains("differs only by case") && why(1).contains("line 3"));
        assert!(why(3).contains("differs only by case") && why(3).contains("line 1"));
        assert!(why(2).contains("same username as line 4"), "{}", why(2));
        assert!(why(4).contains("same username as line 2"));
        assert!(why(5).contains("same _id as line 6"));
        assert!(why(6).contains("same _id as line 5"));
    }
}

//! Input rules for user fields. Each function returns the normalized value or a
//! message a user can act on.

pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;
const FULLNAME_MAX_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    pub field: &'static str,
    pub message: &'static str,
}

fn invalid(field: &'static str, message: &'static str) -> InvalidField {
    InvalidField { field, message }
}

/// Trimmed email; uniqueness is decided on [`email_key`].
pub fn email(raw: &str) -> Result<String, InvalidField> {
    let e = raw.trim();
    let bad = || {
        invalid(
            "email",
            "must be an address like name@example.com (at most 254 characters)",
        )
    };
    // A plain address only: no display name, quoting, comments, route or group
    // syntax, which a mail library would read as another recipient than the
    // text stored (`"boss@corp.com" <someone@else.org>`), and exactly one `@`.
    if e.len() > 254
        || e.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"(),;:[]\\".contains(c))
        || e.matches('@').count() != 1
    {
        return Err(bad());
    }
    let (local, domain) = e.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || domain.is_empty()
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(e.to_string())
}

/// The case-insensitive identity of an email address.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

pub fn username(raw: &str) -> Result<String, InvalidField> {
    let u = raw.trim().to_ascii_lowercase();
    let ok_len = (3..=32).contains(&u.len());
    let ok_chars = u
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok_len && ok_chars {
        Ok(u)
    } else {
        Err(invalid(
            "username",
            "must be 3 to 32 characters of a-z, 0-9, '_', '.', '-'",
        ))
    }
}

pub fn password(raw: &str) -> Result<(), InvalidField> {
    // Count without walking an absurdly long string to its end.
    let n = raw.chars().take(PASSWORD_MAX_CHARS + 1).count();
    if n < PASSWORD_MIN_CHARS {
        return Err(invalid("password", "must be at least 8 characters"));
    }
    if n > PASSWORD_MAX_CHARS {
        return Err(invalid("password", "must be at most 128 characters"));
    }
    Ok(())
}

/// Fewest guesses a new password must need, as estimated by zxcvbn (whose lists
/// hold the most common passwords, names and words): a password guessable in
/// fewer is as weak as one of the 100,000 most common passwords.
pub const PASSWORD_MIN_GUESSES: u64 = 100_000;
/// How many leading characters of a new password the estimate looks at.
const ESTIMATED_CHARS: usize = 48;

/// The rule for a password being set (sign-up, change, reset): 8 to 128
/// characters, and not common or guessable from the account's own `context`
/// (its email address and username).
pub fn new_password(raw: &str, context: &[&str]) -> Result<(), InvalidField> {
    password(raw)?;
    // The estimate's cost grows quickly with length on crafted input, and it runs
    // before any throttle; a prefix needs at most as many guesses as the whole, so
    // judging the first characters is never laxer.
    let judged: String = raw.chars().take(ESTIMATED_CHARS).collect();
    let entropy = zxcvbn::zxcvbn(&judged, context);
    if entropy.guesses() < PASSWORD_MIN_GUESSES {
        return Err(invalid(
            "password",
            "is too common or too easy to guess (it is among the most common passwords, \
             or made of a common word, a name, a date, a keyboard pattern or the account's \
             own email or username); choose a longer, less predictable one",
        ));
    }
    Ok(())
}

pub fn fullname(raw: &str) -> Result<String, InvalidField> {
    let f = raw.trim();
    if f.chars().count() > FULLNAME_MAX_CHARS || f.chars().any(char::is_control) {
        return Err(invalid(
            "fullname",
            "must be at most 128 printable characters",
        ));
    }
    Ok(f.to_string())
}

/// How a login string is looked up: an email when it contains `@`, else a username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginKey {
    Email(String),
    Username(String),
}

pub fn login_key(raw: &str) -> LoginKey {
    if raw.contains('@') {
        LoginKey::Email(email_key(raw))
    } else {
        LoginKey::Username(raw.trim().to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(username(" Alice_1 ").unwrap(), "alice_1");
        for bad in [
            "ab",
            "a b c",
            "élise",
            "x".repeat(33).as_str(),
            "semi;colon",
            "",
        ] {
            assert!(username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(email(" A@Example.com ").unwrap(), "A@Example.com");
        assert_eq!(email_key("A@Example.com"), "a@example.com");
        for bad in [
            "",
            "a",
            "@x.y",
            "a@",
            "a b@c.d",
            "a@.c",
            "a@c.",
            &format!("{}@x.y", "a".repeat(65)),
            // Another recipient than the text: display names, groups, routes, lists.
            "\"boss@corp.com\" <someone@else.org>",
            "<a@b.c>",
            "boss@corp.com<someone@else.org>",
            "a,b@x.com",
            "a;b@x.com",
            "list:a@x.com;",
            "a@b@c.d",
            "a(comment)@x.com",
            "a@[127.0.0.1]",
            "a\\b@x.com",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
        for good in [
            "first.last+tag@sub.example.co.uk",
            "o'brien@example.ie",
            "x@y",
        ] {
            assert!(email(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn long_passwords_are_judged_by_their_start_and_no_more_laxly() {
        // Weak material stays weak however long it is made.
        assert!(new_password(&"a".repeat(128), &[]).is_err());
        assert!(new_password(&"password".repeat(16), &[]).is_err());
        // A strong start is enough; the estimate reads only its first characters.
        let strong = format!("{}{}", "vR7#qLw2!xZ9@mKp4$", "a".repeat(110));
        assert!(new_password(&strong, &[]).is_ok());
    }

    #[test]
    fn passwords_count_characters_not_bytes() {
        assert!(password("1234567").is_err());
        assert!(password("12345678").is_ok());
        assert!(password(&"é".repeat(128)).is_ok());
        assert!(password(&"é".repeat(129)).is_err());
        assert!(password(&"x".repeat(1_000_000)).is_err());
    }

    #[test]
    fn common_and_predictable_passwords_are_refused() {
        for weak in [
            "password123",
            "Password1",
            "qwertyuiop",
            "11111111",
            "iloveyou",
            "letmein!",
            "ada12345",
        ] {
            assert!(
                new_password(weak, &["ada@example.com", "ada"]).is_err(),
                "{weak}"
            );
        }
        for strong in [
            "correct horse battery",
            "tessera-ops-7f3k9q",
            "ünïcødé påsswörd wörks",
        ] {
            assert!(
                new_password(strong, &["ada@example.com", "ada"]).is_ok(),
                "{strong}"
            );
        }
        // A repeated character is refused however long it is.
        assert!(new_password(&"é".repeat(128), &[]).is_err());
        // Length is still checked first, with its own message.
        assert_eq!(
            new_password("short", &[]).unwrap_err().message,
            "must be at least 8 characters"
        );
    }

    #[test]
    fn login_keys() {
        assert_eq!(login_key("Bob@X.io"), LoginKey::Email("bob@x.io".into()));
        assert_eq!(login_key("Bob"), LoginKey::Username("bob".into()));
    }
}

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
    if e.len() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
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
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
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
    fn login_keys() {
        assert_eq!(login_key("Bob@X.io"), LoginKey::Email("bob@x.io".into()));
        assert_eq!(login_key("Bob"), LoginKey::Username("bob".into()));
    }
}

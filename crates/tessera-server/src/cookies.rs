//! Token cookies (docs/contract.md §5.1) and the CSRF check for cookie-authenticated
//! writes. Cookies are written and read with the `cookie` crate, origins compared
//! with the `url` crate.

use axum::http::{HeaderMap, HeaderValue, header};
use cookie::time::Duration;
use cookie::{Cookie, SameSite};
use url::{Origin, Url};

/// Cookie names, prefixed `__Host-`/`__Secure-` when the issuer is https.
#[derive(Debug, Clone)]
pub struct CookieNames {
    pub access: String,
    pub refresh: String,
    pub secure: bool,
}

/// Path the refresh cookie is limited to: only the auth endpoints ever see it.
pub const REFRESH_COOKIE_PATH: &str = "/v1/auth";

impl CookieNames {
    pub fn new(https_issuer: bool, secure: bool) -> Self {
        let (a, r) = if https_issuer && secure {
            ("__Host-", "__Secure-")
        } else {
            ("", "")
        };
        Self {
            access: format!("{a}tessera_at"),
            refresh: format!("{r}tessera_rt"),
            secure,
        }
    }

    /// The access cookie: every path; from other sites only on top-level navigations.
    fn access_cookie<'a>(&'a self, token: &'a str, max_age: i64) -> Cookie<'a> {
        Cookie::build((self.access.as_str(), token))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path("/")
            .max_age(Duration::seconds(max_age.max(0)))
            .build()
    }

    /// The refresh cookie: only the auth endpoints, never cross-site.
    fn refresh_cookie<'a>(&'a self, token: &'a str, max_age: i64) -> Cookie<'a> {
        Cookie::build((self.refresh.as_str(), token))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Strict)
            .path(REFRESH_COOKIE_PATH)
            .max_age(Duration::seconds(max_age.max(0)))
            .build()
    }

    pub fn set_access(&self, headers: &mut HeaderMap, token: &str, max_age: i64) {
        append(headers, &self.access_cookie(token, max_age));
    }

    pub fn set_refresh(&self, headers: &mut HeaderMap, token: &str, max_age: i64) {
        append(headers, &self.refresh_cookie(token, max_age));
    }

    /// Both cookies of a freshly issued pair.
    pub fn set_issued(&self, headers: &mut HeaderMap, issued: &tessera_app::Issued) {
        self.set_access(headers, &issued.access_token, issued.expires_in);
        self.set_refresh(headers, &issued.refresh_token, issued.refresh_expires_in);
    }

    /// Clears both cookies (same names, paths and attributes, empty, `Max-Age=0`).
    pub fn clear(&self, headers: &mut HeaderMap) {
        append(headers, &self.access_cookie("", 0));
        append(headers, &self.refresh_cookie("", 0));
    }
}

fn append(headers: &mut HeaderMap, cookie: &Cookie<'_>) {
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        headers.append(header::SET_COOKIE, v);
    }
}

/// The value of cookie `name`, if the request carries exactly that cookie.
/// Two cookies of the same name mean someone else (a sibling subdomain) planted
/// one; neither is trusted.
pub fn read<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|c| c.name() == name);
    let first = found.next()?;
    if found.next().is_some() {
        return None;
    }
    // The value as a slice of the header, without the optional double quotes.
    let raw = first.value_raw()?;
    let value = raw
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(raw);
    (!value.is_empty()).then_some(value)
}

/// Parses a configured origin (`https://app.example.com`, `http://localhost:3000`):
/// a scheme, a host and an optional port, nothing else.
pub fn parse_origin(raw: &str) -> Result<Origin, String> {
    let bad = || {
        format!("`{raw}` is not an origin such as https://app.example.com or http://localhost:3000")
    };
    let url = Url::parse(raw.trim().trim_end_matches('/')).map_err(|_| bad())?;
    let plain = url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.path() == "/";
    let origin = url.origin();
    if !plain || !origin.is_tuple() || !matches!(url.scheme(), "http" | "https") {
        return Err(bad());
    }
    Ok(origin)
}

/// The origin a request's one `Origin` header names. `None` without the header;
/// `Some(None)` when it cannot be an origin we trust: repeated, `null`, not a
/// plain `scheme://host[:port]`.
fn request_origin(headers: &HeaderMap) -> Option<Option<Origin>> {
    let mut all = headers.get_all(header::ORIGIN).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some(None);
    }
    Some(first.to_str().ok().and_then(|o| parse_origin(o).ok()))
}

/// The origin of the request, when it carries exactly one `Origin` header and that
/// origin is one of `allowed` (scheme, host and port all equal).
pub fn allowed_origin<'a>(headers: &'a HeaderMap, allowed: &[Origin]) -> Option<&'a HeaderValue> {
    match request_origin(headers) {
        Some(Some(o)) if allowed.contains(&o) => headers.get(header::ORIGIN),
        _ => None,
    }
}

/// A cookie-authenticated state change must come from a trusted origin (the
/// issuer's own or a configured one; scheme, host and port compared). Browsers say
/// where a request comes from (`Origin`, `Sec-Fetch-Site`); a request with neither
/// is not from a browser and cannot be a cross-site forgery.
pub fn same_origin(headers: &HeaderMap, trusted_origins: &[Origin]) -> bool {
    if let Some(origin) = request_origin(headers) {
        return origin.is_some_and(|o| trusted_origins.contains(&o));
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    fn origins(list: &[&str]) -> Vec<Origin> {
        list.iter().map(|o| parse_origin(o).unwrap()).collect()
    }

    #[test]
    fn csrf_rules() {
        let trusted = origins(&["https://app.example", "http://127.0.0.1:8080"]);
        assert!(same_origin(&h(&[]), &trusted));
        assert!(same_origin(
            &h(&[("origin", "https://app.example")]),
            &trusted
        ));
        assert!(same_origin(
            &h(&[("origin", "https://app.example:443")]),
            &trusted
        ));
        assert!(same_origin(
            &h(&[
                ("origin", "http://127.0.0.1:8080"),
                ("host", "127.0.0.1:8080")
            ]),
            &trusted
        ));
        // Only the full origin counts: another scheme or port on a trusted host is
        // another origin, whatever the Host header says.
        for other in [
            "http://app.example",
            "https://app.example:8443",
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8081",
            "https://evil.example",
            "http://127.0.0.1:8080@evil.example",
            "https://app.example.evil.example",
            "https://app.example/path",
            "null",
            "",
        ] {
            assert!(
                !same_origin(
                    &h(&[("origin", other), ("host", "127.0.0.1:8080")]),
                    &trusted
                ),
                "{other}"
            );
        }
        // Two Origin headers: refused, even when both are trusted.
        assert!(!same_origin(
            &h(&[
                ("origin", "https://app.example"),
                ("origin", "https://app.example")
            ]),
            &trusted
        ));
        assert!(!same_origin(
            &h(&[("sec-fetch-site", "cross-site")]),
            &trusted
        ));
        assert!(!same_origin(
            &h(&[("sec-fetch-site", "same-site")]),
            &trusted
        ));
        assert!(same_origin(
            &h(&[("sec-fetch-site", "same-origin")]),
            &trusted
        ));
    }

    #[test]
    fn configured_origins_are_plain_origins() {
        assert!(parse_origin("http://localhost:3000").is_ok());
        assert!(parse_origin("https://app.example.com/").is_ok());
        for bad in [
            "localhost:3000",
            "app.example.com",
            "https://app.example.com/path",
            "https://u:p@app.example.com",
            "https://app.example.com?x=1",
            "ftp://app.example.com",
            "null",
            "",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_cookies() {
        let m = h(&[("cookie", "a=1; tessera_rt=tok; b=2")]);
        assert_eq!(read(&m, "tessera_rt"), Some("tok"));
        assert_eq!(read(&m, "tessera_at"), None);
        let quoted = h(&[("cookie", "tessera_rt=\"tok\"")]);
        assert_eq!(read(&quoted, "tessera_rt"), Some("tok"));
        let tossed = h(&[("cookie", "tessera_rt=mine; tessera_rt=planted")]);
        assert_eq!(read(&tossed, "tessera_rt"), None);
        let split = h(&[("cookie", "tessera_rt=mine"), ("cookie", "tessera_rt=x")]);
        assert_eq!(read(&split, "tessera_rt"), None);
        let empty = h(&[("cookie", "tessera_rt=; a=1")]);
        assert_eq!(read(&empty, "tessera_rt"), None);
    }

    #[test]
    fn cookies_carry_their_attributes() {
        let names = CookieNames::new(true, true);
        let mut hm = HeaderMap::new();
        names.set_access(&mut hm, "at", 900);
        names.set_refresh(&mut hm, "rt", 60);
        names.clear(&mut hm);
        let set: Vec<String> = hm
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| {
                let mut parts: Vec<&str> = v.to_str().unwrap().split("; ").collect();
                parts[1..].sort();
                parts.join("; ")
            })
            .collect();
        assert_eq!(
            set,
            [
                "__Host-tessera_at=at; HttpOnly; Max-Age=900; Path=/; SameSite=Lax; Secure",
                "__Secure-tessera_rt=rt; HttpOnly; Max-Age=60; Path=/v1/auth; SameSite=Strict; Secure",
                "__Host-tessera_at=; HttpOnly; Max-Age=0; Path=/; SameSite=Lax; Secure",
                "__Secure-tessera_rt=; HttpOnly; Max-Age=0; Path=/v1/auth; SameSite=Strict; Secure",
            ]
        );
        let plain = CookieNames::new(false, false);
        let mut hm = HeaderMap::new();
        plain.set_access(&mut hm, "at", 5);
        let v = hm[header::SET_COOKIE].to_str().unwrap();
        assert!(
            v.starts_with("tessera_at=at;") && !v.contains("Secure"),
            "{v}"
        );
    }
}

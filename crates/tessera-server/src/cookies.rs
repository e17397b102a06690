//! Token cookies (SPEC §5.1) and the CSRF check for cookie-authenticated writes.

use axum::http::{HeaderMap, HeaderValue, header};

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

    fn attrs(&self) -> &'static str {
        if self.secure {
            "; HttpOnly; Secure"
        } else {
            "; HttpOnly"
        }
    }

    pub fn set_access(&self, headers: &mut HeaderMap, token: &str, max_age: i64) {
        let v = format!(
            "{}={token}; Max-Age={max_age}; Path=/{}; SameSite=Lax",
            self.access,
            self.attrs()
        );
        append(headers, v);
    }

    pub fn set_refresh(&self, headers: &mut HeaderMap, token: &str, max_age: i64) {
        let v = format!(
            "{}={token}; Max-Age={max_age}; Path={REFRESH_COOKIE_PATH}{}; SameSite=Strict",
            self.refresh,
            self.attrs()
        );
        append(headers, v);
    }

    pub fn clear(&self, headers: &mut HeaderMap) {
        append(
            headers,
            format!(
                "{}=; Max-Age=0; Path=/{}; SameSite=Lax",
                self.access,
                self.attrs()
            ),
        );
        append(
            headers,
            format!(
                "{}=; Max-Age=0; Path={REFRESH_COOKIE_PATH}{}; SameSite=Strict",
                self.refresh,
                self.attrs()
            ),
        );
    }
}

fn append(headers: &mut HeaderMap, v: String) {
    if let Ok(v) = HeaderValue::from_str(&v) {
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
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'));
    let first = found.next()?;
    if found.next().is_some() || first.is_empty() {
        return None;
    }
    Some(first)
}

/// A cookie-authenticated state change must come from our own origin. Browsers
/// say where a request comes from (`Origin`, `Sec-Fetch-Site`); a request with
/// neither is not from a browser and cannot be a cross-site forgery.
pub fn same_origin(headers: &HeaderMap, trusted_origins: &[String]) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if origin == "null" {
            return false;
        }
        if trusted_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        return matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h));
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

    #[test]
    fn csrf_rules() {
        let trusted = vec!["https://app.example".to_string()];
        assert!(same_origin(&h(&[]), &trusted));
        assert!(same_origin(
            &h(&[("origin", "https://app.example")]),
            &trusted
        ));
        assert!(same_origin(
            &h(&[
                ("origin", "http://127.0.0.1:8080"),
                ("host", "127.0.0.1:8080")
            ]),
            &trusted
        ));
        assert!(!same_origin(
            &h(&[
                ("origin", "https://evil.example"),
                ("host", "127.0.0.1:8080")
            ]),
            &trusted
        ));
        assert!(!same_origin(&h(&[("origin", "null")]), &trusted));
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
    fn reads_cookies() {
        let m = h(&[("cookie", "a=1; tessera_rt=tok; b=2")]);
        assert_eq!(read(&m, "tessera_rt"), Some("tok"));
        assert_eq!(read(&m, "tessera_at"), None);
        let tossed = h(&[("cookie", "tessera_rt=mine; tessera_rt=planted")]);
        assert_eq!(read(&tossed, "tessera_rt"), None);
    }
}

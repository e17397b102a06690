//! A device as people name it ("Firefox 128 on Windows") from the `User-Agent`
//! a session was opened with. Only the common browsers and systems are told
//! apart; anything else is shown as what it says it is, shortened.

/// `(browser, operating system)` for a stored user agent.
pub(crate) fn describe(user_agent: Option<&str>) -> (String, Option<&'static str>) {
    let Some(ua) = user_agent.map(str::trim).filter(|u| !u.is_empty()) else {
        return ("Unknown browser".into(), None);
    };
    (browser(ua), system(ua))
}

/// The major version after `token` (`Firefox/128.0` → `128`).
fn major(ua: &str, token: &str) -> Option<String> {
    let rest = &ua[ua.find(token)? + token.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

fn browser(ua: &str) -> String {
    // Order matters: Edge, Opera and Samsung Internet also say Chrome and Safari;
    // Chrome also says Safari.
    const KNOWN: [(&str, &str); 11] = [
        ("Edg/", "Edge"),
        ("EdgiOS/", "Edge"),
        ("EdgA/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("HeadlessChrome/", "Headless Chrome"),
        ("CriOS/", "Chrome"),
        ("Chrome/", "Chrome"),
        ("Chromium/", "Chromium"),
    ];
    for (token, name) in KNOWN {
        if ua.contains(token) {
            return match major(ua, token) {
                Some(v) => format!("{name} {v}"),
                None => name.to_string(),
            };
        }
    }
    if ua.contains("Safari/") && ua.contains("Version/") {
        return match major(ua, "Version/") {
            Some(v) => format!("Safari {v}"),
            None => "Safari".into(),
        };
    }
    for (token, name) in [("curl/", "curl"), ("Wget/", "Wget")] {
        if ua.starts_with(token) {
            return name.into();
        }
    }
    // Something else: its first product token, kept short.
    let first = ua.split([' ', '/']).next().unwrap_or(ua);
    first.chars().take(40).collect()
}

fn system(ua: &str) -> Option<&'static str> {
    // iOS and Android before macOS and Linux: their agents mention those too.
    const KNOWN: [(&str, &str); 10] = [
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Android", "Android"),
        ("CrOS", "ChromeOS"),
        ("Windows Phone", "Windows Phone"),
        ("Windows", "Windows"),
        ("Macintosh", "macOS"),
        ("Mac OS X", "macOS"),
        ("Ubuntu", "Ubuntu"),
        ("Linux", "Linux"),
    ];
    KNOWN
        .iter()
        .find(|(token, _)| ua.contains(token))
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::describe;

    fn named(ua: &str) -> String {
        match describe(Some(ua)) {
            (b, Some(os)) => format!("{b} on {os}"),
            (b, None) => b,
        }
    }

    #[test]
    fn common_browsers_and_systems_are_named() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                "Chrome 126 on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87",
                "Edge 126 on Windows",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox 128 on Linux",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                "Safari 17 on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari 17 on iOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1",
                "Chrome 126 on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
                "Samsung Internet 25 on Android",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36 OPR/111.0.0.0",
                "Opera 111 on Linux",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                "Chrome 126 on ChromeOS",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 Safari/537.36",
                "Headless Chrome 126 on Linux",
            ),
            ("curl/8.5.0", "curl"),
            ("tessera cli", "tessera"),
        ];
        for (ua, want) in cases {
            assert_eq!(named(ua), want, "{ua}");
        }
        assert_eq!(describe(None).0, "Unknown browser");
        assert_eq!(describe(Some("  ")).0, "Unknown browser");
    }
}

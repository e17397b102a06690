//! Server-rendered pages: one shared layout (no external assets, no JavaScript,
//! labelled fields in reading order) and the forms built on it. Every page is
//! `no-store`, may not be framed, and every form posts back to the same origin,
//! checked like any cookie-authenticated write (contract §5.1).

pub(crate) mod account;
pub(crate) mod oauth;

use crate::AppState;
use crate::cookies;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_app::lifecycle::escape_html as esc;

/// The one stylesheet, inline: readable on a phone, visible focus, enough contrast.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1b1d21}\
main{max-width:26rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 3px #0003}\
h1{font-size:1.4rem;margin-top:0}label{display:block;font-weight:600;margin:1rem 0 .3rem}\
input{box-sizing:border-box;width:100%;padding:.6rem;font-size:1rem;border:1px solid #6b7280;border-radius:.3rem}\
button{margin-top:1.2rem;padding:.6rem 1.2rem;font-size:1rem;border:0;border-radius:.3rem;background:#1d4ed8;color:#fff;cursor:pointer}\
:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}\
.error{background:#fee2e2;color:#7f1d1d;padding:.7rem;border-radius:.3rem}\
.ok{background:#dcfce7;color:#14532d;padding:.7rem;border-radius:.3rem}\
.hint{color:#4b5563;font-size:.9rem}";

/// A message shown above a page's content.
pub(crate) enum Notice<'a> {
    None,
    Ok(&'a str),
    Error(&'a str),
}

/// What a page may do beyond the layout's defaults.
#[derive(Default)]
pub(crate) struct Allow<'a> {
    /// One inline script (allowed by its hash, nothing else runs).
    pub script: Option<&'a str>,
    /// More places its forms may lead to, redirects included (CSP source
    /// expressions: an origin, or a native app's `scheme:`).
    pub form_action: Vec<String>,
}

/// A whole page: the layout around `body` (already HTML).
pub(crate) fn page(status: StatusCode, title: &str, notice: Notice<'_>, body: &str) -> Response {
    page_with(status, title, notice, body, Allow::default())
}

/// [`page`] with an inline script or more form targets.
pub(crate) fn page_with(
    status: StatusCode,
    title: &str,
    notice: Notice<'_>,
    body: &str,
    allow: Allow<'_>,
) -> Response {
    let notice = match notice {
        Notice::None => String::new(),
        Notice::Ok(m) => format!("<p class=\"ok\" role=\"status\">{}</p>", esc(m)),
        Notice::Error(m) => format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · Tessera</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>{notice}{body}</main>{script}</body></html>",
        title = esc(title),
        script = allow
            .script
            .map(|s| format!("<script>{s}</script>"))
            .unwrap_or_default(),
    );
    let script_src = match allow.script {
        Some(s) => {
            use base64::Engine;
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
            format!(
                "; script-src 'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        }
        None => String::new(),
    };
    let mut form_action = String::from("'self'");
    for source in &allow.form_action {
        form_action.push(' ');
        form_action.push_str(source);
    }
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'{script_src}; connect-src 'self'"
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Mailed links carry their token in the URL: it must not leave this origin.
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends
    // `Origin: null` with the page's own form posts, which the same-origin check
    // then refuses.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// A form that posts to `action`: `fields` (already HTML) then one button.
pub(crate) fn form(action: &str, fields: &str, button: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\">{fields}<button type=\"submit\">{}</button></form>",
        esc(action),
        esc(button)
    )
}

/// A hidden field.
pub(crate) fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

/// A labelled input; `attrs` are extra attributes (already HTML).
pub(crate) fn input(id: &str, label: &str, kind: &str, attrs: &str, hint: Option<&str>) -> String {
    let (described, hint) = match hint {
        Some(h) => (
            format!(" aria-describedby=\"{id}-hint\""),
            format!("<p class=\"hint\" id=\"{id}-hint\">{}</p>", esc(h)),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "<label for=\"{id}\">{}</label><input id=\"{id}\" name=\"{id}\" type=\"{kind}\" {attrs}{described}>{hint}",
        esc(label)
    )
}

/// Cross-site form posts are refused (the same rule as the JSON API's cookie
/// writes): a page of another site cannot submit these forms.
pub(crate) fn same_site(headers: &HeaderMap, state: &AppState) -> Result<(), Box<Response>> {
    if cookies::same_origin(headers, &state.http.trusted_origins) {
        Ok(())
    } else {
        Err(Box::new(page(
            StatusCode::FORBIDDEN,
            "Request refused",
            Notice::Error(
                "This form was sent from another site. Open the page from its link and try again.",
            ),
            "",
        )))
    }
}

/// Reads a form body; a malformed one is a 400 page.
pub(crate) fn read_form<T: serde::de::DeserializeOwned>(
    body: &[u8],
    title: &str,
) -> Result<T, Box<Response>> {
    serde_urlencoded::from_bytes(body).map_err(|_| {
        Box::new(page(
            StatusCode::BAD_REQUEST,
            title,
            Notice::Error("The form was incomplete. Open the page from its link and try again."),
            "",
        ))
    })
}

/// A form post to one of these pages: refused from another site (403), a
/// malformed body is 400; both as pages.
pub(crate) fn submitted<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    state: &AppState,
    body: &[u8],
    title: &str,
) -> Result<T, Box<Response>> {
    same_site(headers, state)?;
    read_form(body, title)
}

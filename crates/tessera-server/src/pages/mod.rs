//! Server-rendered pages: one shared layout (no external assets, labelled fields
//! in reading order, no JavaScript but the account page's one refresher, allowed
//! by its hash) and the forms built on it. Every page is `no-store`, may not be
//! framed, and every form posts back to the same origin, checked like any
//! cookie-authenticated write (contract §5.1). Signed-in pages read the access
//! cookie; without a live one they go through `/v1/auth/resume`, the one page
//! route the refresh cookie reaches (`signin.rs`).

pub(crate) mod account;
pub(crate) mod agent;
pub(crate) mod me;
pub(crate) mod oauth;
pub(crate) mod signin;

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
.hint{color:#4b5563;font-size:.9rem}\
main.wide{max-width:44rem}h2{font-size:1.15rem;margin:2rem 0 .5rem;padding-top:1.2rem;border-top:1px solid #e5e7eb}\
a{color:#1d4ed8}.links{margin-top:1.5rem}.links a{display:inline-block;margin:0 1.2rem .5rem 0}\
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}dl.facts dt{font-weight:600}dl.facts dd{margin:0;overflow-wrap:anywhere}\
ul.devices{list-style:none;padding:0;margin:0}ul.devices li{border:1px solid #d1d5db;border-radius:.4rem;padding:.8rem 1rem;margin:.6rem 0}\
ul.devices dl{margin-top:.5rem}ul.devices form{display:inline}ul.devices button{margin-top:.6rem}\
.badge{display:inline-block;margin-left:.5rem;padding:.1rem .5rem;border-radius:1rem;font-size:.8rem;font-weight:600;background:#dbeafe;color:#1e3a8a}\
.badge.warn{background:#fef3c7;color:#78350f}.badge.good{background:#dcfce7;color:#14532d}\
.actions form{display:inline-block;margin-right:.8rem}button.secondary{background:#fff;color:#1d4ed8;border:1px solid #1d4ed8}\
button.danger{background:#b91c1c}[aria-invalid=true]{border:2px solid #b91c1c}\
@media (max-width:30rem){body{background:#fff}main{margin:0;border-radius:0;box-shadow:none;padding:1.2rem}}";

/// The one script a page may run: it keeps a signed-in account page signed in by
/// refreshing the session shortly before the access token expires. It reads the
/// seconds left from `<body data-refresh-in>`, sends the refresh cookie (the
/// tokens stay in HttpOnly cookies: `delivery: cookie` keeps them out of the
/// answer) and reloads when the session has ended, which shows the sign-in page.
const REFRESHER: &str = "(function(){var failures=0;\
function later(s){setTimeout(refresh,1000*(s>60?s-30:Math.max(0.5,s*0.5)));}\
function refresh(){fetch('/v1/auth/refresh',{method:'POST',credentials:'same-origin',\
headers:{'Content-Type':'application/json'},body:'{\"delivery\":\"cookie\"}'})\
.then(function(r){if(r.status===401){location.reload();return null;}\
if(!r.ok){throw new Error(String(r.status));}return r.json();})\
.then(function(b){if(b){failures=0;later(b.expires_in);}})\
.catch(function(){failures+=1;if(failures<6){setTimeout(refresh,2000*failures);}});}\
later(Number(document.body.dataset.refreshIn)||0);})();";

/// The `Content-Security-Policy` source naming [`REFRESHER`] by its SHA-256.
fn refresher_source() -> &'static str {
    static SOURCE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use base64::Engine;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, REFRESHER.as_bytes());
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        )
    });
    &SOURCE
}

/// How a page differs from the plain layout.
#[derive(Default)]
pub(crate) struct Layout {
    /// A wider column (the account page).
    pub wide: bool,
    /// Seconds until the access token expires: the page runs [`REFRESHER`].
    pub refresh_in: Option<i64>,
    /// Forms whose answer may redirect on to another site (sign-in and sign-up
    /// continue to the authorization endpoint, which returns to the client): no
    /// `form-action` limit, as browsers apply it to every redirect that follows.
    pub forms_redirect_on: bool,
}

/// A message shown above a page's content.
pub(crate) enum Notice<'a> {
    None,
    Ok(&'a str),
    Error(&'a str),
}

/// A whole page: the layout around `body` (already HTML).
pub(crate) fn page(status: StatusCode, title: &str, notice: Notice<'_>, body: &str) -> Response {
    page_with(status, title, notice, body, &Layout::default())
}

/// A whole page in the layout `layout` describes.
pub(crate) fn page_with(
    status: StatusCode,
    title: &str,
    notice: Notice<'_>,
    body: &str,
    layout: &Layout,
) -> Response {
    let notice = match notice {
        Notice::None => String::new(),
        Notice::Ok(m) => format!("<p class=\"ok\" role=\"status\">{}</p>", esc(m)),
        Notice::Error(m) => format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)),
    };
    let (body_attrs, script) = match layout.refresh_in {
        Some(s) => (
            format!(" data-refresh-in=\"{}\"", s.max(0)),
            format!("<script>{REFRESHER}</script>"),
        ),
        None => (String::new(), String::new()),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · Tessera</title><style>{STYLE}</style></head>\
         <body{body_attrs}><main{wide}><h1>{title}</h1>{notice}{body}</main>{script}</body></html>",
        title = esc(title),
        wide = if layout.wide { " class=\"wide\"" } else { "" },
    );
    let mut csp = String::from("default-src 'none'; style-src 'unsafe-inline'; ");
    if layout.refresh_in.is_some() {
        csp.push_str(&format!(
            "script-src {}; connect-src 'self'; ",
            refresher_source()
        ));
    }
    if !layout.forms_redirect_on {
        csp.push_str("form-action 'self'; ");
    }
    csp.push_str("frame-ancestors 'none'; base-uri 'none'");
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
    styled_form(action, fields, button, "")
}

/// [`form`] with a class on its button (`secondary`, `danger`).
pub(crate) fn styled_form(action: &str, fields: &str, button: &str, class: &str) -> String {
    let class = if class.is_empty() {
        String::new()
    } else {
        format!(" class=\"{}\"", esc(class))
    };
    format!(
        "<form method=\"post\" action=\"{}\">{fields}<button type=\"submit\"{class}>{}</button></form>",
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
    named_input(id, id, label, kind, attrs, hint)
}

/// [`input`] for a page with several forms, where one field name (say
/// `current_password`) appears more than once: each has an `id` of its own.
pub(crate) fn named_input(
    id: &str,
    name: &str,
    label: &str,
    kind: &str,
    attrs: &str,
    hint: Option<&str>,
) -> String {
    let (described, hint) = match hint {
        Some(h) => (
            format!(" aria-describedby=\"{id}-hint\""),
            format!("<p class=\"hint\" id=\"{id}-hint\">{}</p>", esc(h)),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "<label for=\"{id}\">{}</label><input id=\"{id}\" name=\"{name}\" type=\"{kind}\" {attrs}{described}>{hint}",
        esc(label)
    )
}

/// An API description as a sentence for the page, which shows the field it is
/// about right below: `new_password: is too common …` becomes `Too common …`.
pub(crate) fn for_people(description: &str) -> String {
    let field = |f: &str| !f.is_empty() && f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let text = match description.split_once(": ") {
        Some((f, rest)) if field(f) => rest.strip_prefix("is ").unwrap_or(rest),
        _ => description,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A use case's refusal as a page: the status the JSON API would answer,
/// `message` above `body` (the form again, say), and `Retry-After` when the
/// refusal says how long to wait.
pub(crate) fn refusal(
    e: &tessera_app::AppError,
    title: &str,
    message: &str,
    body: &str,
    layout: &Layout,
) -> Response {
    let status = crate::error::ApiError::from(e.clone()).status;
    let mut r = page_with(status, title, Notice::Error(message), body, layout);
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The signed-in visitor, by a live access cookie.
pub(crate) async fn signed_in(
    headers: &HeaderMap,
    state: &AppState,
) -> Option<tessera_app::Authenticated> {
    let token = cookies::read(headers, &state.cookies.access)?;
    state.authenticate_account(token).await.ok()
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

#[cfg(test)]
mod tests {
    use super::for_people;

    #[test]
    fn pages_show_api_descriptions_as_sentences() {
        assert_eq!(
            for_people("new_password: is too common; choose another"),
            "Too common; choose another"
        );
        assert_eq!(
            for_people("username: must be 3 to 32 characters"),
            "Must be 3 to 32 characters"
        );
        assert_eq!(
            for_people("this link has expired: ask again"),
            "This link has expired: ask again"
        );
        assert_eq!(for_people(""), "");
    }
}

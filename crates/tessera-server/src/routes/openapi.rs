//! The OpenAPI 3 document of the whole HTTP API (`GET /openapi.json`), generated
//! from the handlers' `#[utoipa::path]` attributes as the route table registers them.

use crate::tokens::UserView;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera",
        description = "Access and refresh tokens done right: a JSON API, an OAuth 2 / OpenID Connect surface and operations endpoints."
    ),
    tags(
        (name = "auth", description = "Register, log in, refresh, log out"),
        (name = "me", description = "The signed-in user's account and sessions"),
        (name = "oauth", description = "OAuth 2 and OpenID Connect"),
        (name = "meta", description = "Keys, the revocation feed, health, this document"),
    )
)]
pub struct ApiDoc;

/// Every error answer: a machine code and a human description. The description
/// never echoes a value that was sent.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// E.g. `invalid_request`, `invalid_token`, `invalid_grant`, `rate_limited`
    /// (each operation lists the codes it can answer).
    error: String,
    error_description: String,
}

/// `{"user": ...}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UserResponse {
    user: UserView,
}

/// One page of the revocation feed.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RevocationFeed {
    /// Pass as `since` to get the next page.
    #[schema(pattern = "^[0-9]+$")]
    cursor: String,
    revoked: Vec<RevokedSession>,
}

/// A revoked session and until when its access tokens may still be presented.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RevokedSession {
    #[schema(format = "uuid")]
    sid: String,
    /// Unix time.
    until: i64,
}

/// The document: every route of [`super::api`], the security schemes, and what the
/// layers around every route can answer.
pub fn document() -> Value {
    let mut doc = super::api().into_openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("An access token: `Authorization: Bearer <token>`"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "access_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "tessera_at",
            "The access cookie set at login (named `__Host-tessera_at` when the issuer is https \
             and cookies are Secure); a write it authenticates must come from a trusted origin",
        ))),
    );
    components.add_security_scheme(
        "refresh_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "tessera_rt",
            "The refresh cookie, sent only to `/v1/auth` (named `__Secure-tessera_rt` when the \
             issuer is https and cookies are Secure); it must come from a trusted origin",
        ))),
    );
    components.add_security_scheme(
        "client_basic",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "OAuth client credentials (`client_secret_basic`); `client_secret_post` and public clients send `client_id` in the form instead",
                ))
                .build(),
        ),
    );
    let mut doc = serde_json::to_value(&doc).expect("the document is JSON");
    login_needs_a_login(&mut doc);
    for (_, item) in doc["paths"].as_object_mut().into_iter().flatten() {
        for (_, op) in item.as_object_mut().into_iter().flatten() {
            if op.get("responses").is_some() {
                optional_body_is_absent_not_null(op);
                edge_responses(op);
            }
        }
    }
    doc
}

/// An optional JSON body (`Option<T>` in the handler) may be left out, but when
/// one is sent it must be an object: `null` is refused like any other non-object.
fn optional_body_is_absent_not_null(op: &mut Value) {
    let Some(body) = op.get_mut("requestBody") else {
        return;
    };
    if body["required"] == json!(true) {
        return;
    }
    for (_, media) in body["content"].as_object_mut().into_iter().flatten() {
        let schema = &mut media["schema"];
        if let Some(alternatives) = schema["oneOf"].as_array() {
            let not_null: Vec<Value> = alternatives
                .iter()
                .filter(|a| a["type"] != "null")
                .cloned()
                .collect();
            if let [only] = &not_null[..] {
                *schema = only.clone();
            }
        }
    }
}

/// `POST /v1/auth/login` takes its login from `login`, `email` or `username`: one
/// of them must be there.
fn login_needs_a_login(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let body = schemas["LoginBody"].take();
    // A null field counts as absent: each alternative needs a string.
    let one_of_them = ["login", "email", "username"]
        .map(|field| json!({"required": [field], "properties": {field: {"type": "string"}}}));
    schemas["LoginBody"] = json!({"allOf": [body, {"anyOf": one_of_them}]});
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// What the layers around every handler answer (body and header limits, the
/// request deadline), and the headers that always come with some statuses.
fn edge_responses(op: &mut Value) {
    let takes_body = op.get("requestBody").is_some();
    // Only access tokens: every 401 is an RFC 6750 challenge.
    let bearer_only = op["security"].as_array().is_some_and(|alternatives| {
        alternatives.iter().all(|a| {
            a.as_object().is_some_and(|a| {
                !a.is_empty() && a.keys().all(|k| k == "bearer" || k == "access_cookie")
            })
        })
    });
    let responses = op["responses"].as_object_mut().expect("responses");
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status)
            .or_insert_with(|| error_response(description));
    };
    if takes_body {
        add("408", "The request body was not sent in time");
    }
    add(
        "413",
        "`payload_too_large`: the body (or the announced `Content-Length`) exceeds `body_limit`",
    );
    add(
        "431",
        "`headers_too_large`: the request headers exceed 32 KiB",
    );
    add(
        "503",
        "`overloaded`: the request deadline passed, the password-hash pool is full, or the database is unavailable",
    );
    let header = |description: &str, schema: Value| json!({"description": description, "required": true, "schema": schema});
    for (status, response) in responses.iter_mut() {
        let headers = &mut response["headers"];
        match status.as_str() {
            "429" | "503" => {
                headers["Retry-After"] = header(
                    "Seconds to wait before retrying",
                    json!({"type": "integer", "minimum": 0}),
                );
            }
            "401" if bearer_only => {
                headers["WWW-Authenticate"] = header(
                    "An RFC 6750 challenge: `Bearer error=\"invalid_token\", error_description=\"...\"` (says when the token expired)",
                    json!({"type": "string", "pattern": "^Bearer "}),
                );
            }
            _ => {}
        }
        if headers.as_object().is_none_or(|h| h.is_empty()) {
            response.as_object_mut().map(|r| r.remove("headers"));
        }
    }
}

/// This document (OpenAPI 3.1).
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
pub async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| document().to_string()).clone();
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::document;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::sync::LazyLock;
    use tessera_core::validate;

    fn property(doc: &Value, schema: &str, field: &str) -> Value {
        let s = &doc["components"]["schemas"][schema];
        let props = match s.get("allOf") {
            Some(all) => &all[0]["properties"],
            None => &s["properties"],
        };
        props[field].clone()
    }

    /// The JSON Schema `pattern` (ECMA-262, unanchored search) as a Rust regex.
    fn pattern(doc: &Value, schema: &str, field: &str) -> regex::Regex {
        let p = property(doc, schema, field)["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{schema}.{field} has no pattern"))
            .to_string();
        regex::Regex::new(&p).unwrap()
    }

    fn length_ok(doc: &Value, schema: &str, field: &str, s: &str) -> bool {
        let p = property(doc, schema, field);
        let n = s.chars().count() as u64;
        p["minLength"].as_u64().is_none_or(|min| n >= min)
            && p["maxLength"].as_u64().is_none_or(|max| n <= max)
    }

    /// Characters around every edge of the rules: each kind of Unicode space,
    /// controls (some of them spaces too), letters of both cases, the allowed
    /// punctuation, and characters beyond ASCII.
    fn text() -> impl Strategy<Value = String> {
        let chars = prop::sample::select(vec![
            'a', 'z', 'A', 'Z', '0', '9', '_', '.', '-', ' ', '\t', '\n', '\r', '\u{b}', '\u{c}',
            '\u{0}', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}', '\u{a0}', '\u{1680}', '\u{2000}',
            '\u{200a}', '\u{200b}', '\u{2028}', '\u{202f}', '\u{3000}', '\u{feff}', 'é', 'ß', 'K',
            '@', ';', '~',
        ]);
        prop::collection::vec(chars, 0..40).prop_map(|v| v.into_iter().collect())
    }

    fn long_text() -> impl Strategy<Value = String> {
        (text(), 0usize..140, text()).prop_map(|(a, n, b)| format!("{a}{}{b}", "x".repeat(n)))
    }

    static DOC: LazyLock<Value> = LazyLock::new(document);
    static RULES: LazyLock<Vec<(&str, regex::Regex, regex::Regex)>> = LazyLock::new(|| {
        ["RegisterBody", "PatchBody"]
            .into_iter()
            .map(|s| {
                (
                    s,
                    pattern(&DOC, s, "username"),
                    pattern(&DOC, s, "fullname"),
                )
            })
            .collect()
    });

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The documented username rule accepts exactly what the server accepts.
        #[test]
        fn username_pattern_is_the_server_rule(s in text()) {
            for (schema, username, _) in RULES.iter() {
                prop_assert_eq!(
                    username.is_match(&s),
                    validate::username(&s).is_ok(),
                    "{} {:?}", schema, s
                );
            }
        }

        #[test]
        fn fullname_pattern_is_the_server_rule(s in long_text()) {
            for (schema, _, fullname) in RULES.iter() {
                prop_assert_eq!(
                    fullname.is_match(&s),
                    validate::fullname(&s).is_ok(),
                    "{} {:?}", schema, s
                );
            }
        }

        #[test]
        fn password_lengths_are_the_server_rule(s in long_text()) {
            prop_assert_eq!(
                length_ok(&DOC, "RegisterBody", "password", &s),
                validate::password(&s).is_ok()
            );
            prop_assert_eq!(
                length_ok(&DOC, "PasswordBody", "new_password", &s),
                validate::password(&s).is_ok()
            );
        }
    }

    #[test]
    fn email_is_documented_as_an_email_of_at_most_254() {
        let doc = document();
        for schema in ["RegisterBody", "EmailChangeBody", "AddressBody"] {
            let email = property(&doc, schema, "email");
            assert_eq!(email["format"], "email", "{schema}");
            assert_eq!(email["maxLength"], 254, "{schema}");
        }
        assert!(validate::email(&format!("a@{}.com", "b".repeat(248))).is_ok());
        assert!(validate::email(&format!("a@{}.com", "b".repeat(249))).is_err());
    }

    #[test]
    fn json_bodies_refuse_unknown_fields_and_forms_ignore_them() {
        let doc = document();
        for schema in [
            "RegisterBody",
            "LoginBody",
            "RefreshBody",
            "LogoutBody",
            "PatchBody",
            "PasswordBody",
            "DeleteBody",
            "EmailChangeBody",
            "ConfirmBody",
            "AddressBody",
            "ResetBody",
        ] {
            let s = &doc["components"]["schemas"][schema];
            let object = s.get("allOf").map_or(s, |all| &all[0]);
            assert_eq!(object["additionalProperties"], false, "{schema}");
        }
        for schema in ["TokenRequest", "TokenQuery"] {
            let s = &doc["components"]["schemas"][schema];
            assert_ne!(s["additionalProperties"], false, "{schema}");
        }
    }
}

//! `/openapi.json` describes what the server does: every answer an operation gives
//! is documented for it, JSON bodies are objects (never arrays) and their errors
//! name no Rust type, and the input rules the document states are the ones enforced.
//! (`.ci/run` adds a property-based fuzzer, `tests/interop/fuzz_api.sh`.)

use crate::oauth::add_client;
use crate::support::*;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::{Read, Write};

async fn document(s: &TestServer) -> Value {
    let r = s.http.get(s.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Every operation of the document: (method, path template, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.clone(), path.clone(), op.clone()));
        }
    }
    ops
}

fn schema_of<'a>(doc: &'a Value, op: &'a Value, media: &str) -> Option<&'a Value> {
    let s = op["requestBody"]["content"][media].get("schema")?;
    let name = s["$ref"].as_str()?.rsplit('/').next()?;
    let s = &doc["components"]["schemas"][name];
    Some(s.get("allOf").map_or(s, |all| &all[0]))
}

fn needs_bearer(op: &Value) -> bool {
    op["security"]
        .as_array()
        .is_some_and(|alts| alts.iter().any(|a| a.get("bearer").is_some()))
}

/// A description that names no Rust type and shows no serde internals.
fn assert_no_type_names(what: &str, description: &str) {
    for leak in ["struct ", "enum ", "Body", "Request", "::", "line "] {
        assert!(
            !description.contains(leak),
            "{what}: `{description}` contains `{leak}`"
        );
    }
}

/// One answer, checked against the operation's documentation: the status is
/// listed, an error is the JSON error body, and required headers are there.
fn check_documented(what: &str, op: &Value, status: u16, headers: &HeaderMap, body: &[u8]) {
    let documented = &op["responses"][status.to_string()];
    assert!(
        documented.is_object(),
        "{what}: {status} is not documented ({})",
        String::from_utf8_lossy(body)
    );
    for (name, header) in documented["headers"].as_object().into_iter().flatten() {
        if header["required"] == true {
            assert!(
                headers.contains_key(name.as_str()),
                "{what}: {status} without {name}"
            );
        }
    }
    if documented["content"]["application/json"]["schema"]["$ref"]
        == "#/components/schemas/ErrorBody"
    {
        let ct = headers.get("content-type").map(|v| v.to_str().unwrap());
        assert_eq!(ct, Some("application/json"), "{what}: {status}");
        let e: Value = serde_json::from_slice(body).unwrap();
        let fields = e.as_object().unwrap();
        assert_eq!(fields.len(), 2, "{what}: {e}");
        assert!(
            e["error"].is_string() && e["error_description"].is_string(),
            "{what}: {e}"
        );
        assert_no_type_names(what, e["error_description"].as_str().unwrap());
    } else if documented.get("content").is_none() {
        assert!(body.is_empty(), "{what}: {status} documents no body");
    }
}

/// A request with exactly the bytes given (fake lengths, `Expect`), on its own
/// connection: (status, headers, body).
fn raw(addr: &str, head: &str) -> (u16, HeaderMap, Vec<u8>) {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    c.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        headers.append(
            reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            v.trim().parse().unwrap(),
        );
    }
    (status, headers, out[split + 4..].to_vec())
}

async fn send(s: &TestServer, req: reqwest::RequestBuilder) -> (u16, HeaderMap, Vec<u8>) {
    let _ = s;
    // A redirect (the pages answer 303) is an answer of its own, documented as such.
    static NO_REDIRECTS: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    });
    let r = NO_REDIRECTS.execute(req.build().unwrap()).await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

/// Every JSON endpoint refuses anything but an object with 400 and a message
/// that names no Rust type; a refused request changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_are_objects_and_errors_name_no_types() {
    let s = TestServer::start().await;
    let doc = document(&s).await;
    let t = s.user("olga").await;
    let before: Value = s.get_auth("/v1/me", &t.access).await.json().await.unwrap();
    let not_objects = [
        json!([null, null, "name"]),
        json!(["olga@example.com", "olga", "correct horse battery"]),
        json!([]),
        json!(42),
        json!("olga"),
        json!(true),
        json!(null),
    ];
    let mut endpoints = 0;
    for (method, path, op) in operations(&doc) {
        let Some(schema) = schema_of(&doc, &op, "application/json") else {
            continue;
        };
        endpoints += 1;
        let what = format!("{method} {path}");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let request = |body: Vec<u8>| {
            let mut r = s
                .http
                .request(m.clone(), s.url(&path))
                .header("content-type", "application/json")
                .body(body);
            if needs_bearer(&op) {
                r = r.bearer_auth(&t.access);
            }
            r
        };
        let mut bodies: Vec<(Value, Option<&str>)> = not_objects
            .iter()
            .map(|b| (b.clone(), Some("the body must be a JSON object")))
            .collect();
        // Each field with a value of the wrong type (every field here takes a string
        // or one of a few strings, so numbers, lists and objects are all wrong).
        for field in schema["properties"].as_object().unwrap().keys() {
            for wrong in [
                json!(12345678),
                json!(["hunter22"]),
                json!({"a": "hunter22"}),
            ] {
                bodies.push((json!({ field: wrong }), None));
            }
        }
        bodies.push((json!({"not_a_field": "hunter22"}), None));
        for (body, expected) in bodies {
            let (status, headers, bytes) = send(&s, request(body.to_string().into_bytes())).await;
            let e: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(status, 400, "{what} {body}: {e}");
            assert_eq!(e["error"], "invalid_request", "{what} {body}: {e}");
            let d = e["error_description"].as_str().unwrap();
            assert_no_type_names(&format!("{what} {body}"), d);
            assert!(
                !d.contains("hunter22") && !d.contains("12345678"),
                "{what}: {d}"
            );
            if let Some(expected) = expected {
                assert_eq!(d, expected, "{what} {body}");
            }
            check_documented(&what, &op, status, &headers, &bytes);
        }
    }
    assert!(endpoints >= 6, "{endpoints} JSON endpoints");
    // Nothing changed, and the session is still live.
    let after: Value = s.get_auth("/v1/me", &t.access).await.json().await.unwrap();
    assert_eq!(before, after);
    s.login("olga").await;
}

/// The schema says which fields a body takes: one the endpoint does not know is
/// refused, so a typo (`"scop": "global"`) never silently does something else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_and_the_message_lists_the_known_ones() {
    let s = TestServer::start().await;
    let t = s.user("ines").await;
    let r = s
        .http
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&t.access)
        .json(&json!({"scop": "global"}))
        .send()
        .await
        .unwrap();
    let e = expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(
        e["error_description"],
        "the body has a field this endpoint does not take (it takes `scope` or `refresh_token`)"
    );
    assert_eq!(s.me_status(&t.access).await, StatusCode::OK);
    let r = s
        .post(
            "/v1/auth/register",
            json!({"email": "x@example.com", "username": "xavier", "password": PASSWORD, "password_confirmation": PASSWORD}),
        )
        .await;
    let e = expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(
        !e["error_description"]
            .as_str()
            .unwrap()
            .contains("password_confirmation")
    );
    let r = s
        .post(
            "/v1/auth/login",
            json!({"login": "ines", "password": 5, "delivery": "body"}),
        )
        .await;
    let e = expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(e["error_description"], "password: must be a string");
    let r = s
        .post(
            "/v1/auth/login",
            json!({"login": "ines", "password": PASSWORD, "delivery": "pigeon"}),
        )
        .await;
    let e = expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(
        e["error_description"],
        "delivery: must be one of `both`, `body`, `cookie`"
    );
}

/// A plausible request for each operation, so that success paths are reached too.
struct Valid<'a> {
    s: &'a TestServer,
    n: std::sync::atomic::AtomicUsize,
    secret: String,
}

impl Valid<'_> {
    fn fresh(&self) -> String {
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("valid{n}")
    }

    async fn request(&self, id: &str, method: &str, path: &str) -> reqwest::RequestBuilder {
        let s = self.s;
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let name = self.fresh();
        let url = |p: &str| s.url(p);
        let user = || async {
            s.register(&name).await;
            s.login(&name).await
        };
        match id {
            "register" => s.http.post(url(path)).json(&json!({
                "email": format!("{name}@example.com"), "username": name, "password": PASSWORD,
            })),
            "login" => {
                s.register(&name).await;
                s.http
                    .post(url(path))
                    .json(&json!({"login": name, "password": PASSWORD}))
            }
            "refresh" => {
                let t = user().await;
                s.http
                    .post(url(path))
                    .json(&json!({"refresh_token": t.refresh}))
            }
            "logout" => {
                let t = user().await;
                s.http
                    .post(url(path))
                    .bearer_auth(&t.access)
                    .json(&json!({"scope": "global"}))
            }
            "update_me" => {
                let t = user().await;
                let email = format!("new-{name}@example.com");
                s.http
                    .patch(url(path))
                    .bearer_auth(&t.access)
                    .json(&json!({"email": email}))
            }
            "change_password" => {
                let t = user().await;
                s.http.post(url(path)).bearer_auth(&t.access).json(
                    &json!({"current_password": PASSWORD, "new_password": "a new password 123"}),
                )
            }
            "revoke_session" => {
                let t = user().await;
                let other = s.login(&name).await;
                let p = path.replace("{id}", &other.session_id);
                s.http.delete(url(&p)).bearer_auth(&t.access)
            }
            "revocations" => s.http.get(url("/v1/revocations?since=0")),
            "oauth_token" => {
                s.register(&name).await;
                let (n, p) = (name.as_str(), PASSWORD);
                s.http.post(url(path)).form(&[
                    ("grant_type", "password"),
                    ("username", n),
                    ("password", p),
                    ("client_id", "tessera"),
                ])
            }
            "oauth_revoke" | "oauth_introspect" => {
                let t = user().await;
                s.http
                    .post(url(path))
                    .basic_auth("backend", Some(&self.secret))
                    .form(&[("token", t.access.as_str())])
            }
            _ if path.contains("/me") || path.contains("userinfo") => {
                let t = user().await;
                s.http.request(m, url(path)).bearer_auth(&t.access)
            }
            _ => s.http.request(m, url(path)),
        }
    }
}

/// Every operation, driven with good and bad requests of every kind, answers only
/// statuses its documentation lists, each error as the documented error body with
/// the documented headers (`Retry-After`, `WWW-Authenticate`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_documented() {
    let s = TestServer::start().await;
    let doc = document(&s).await;
    let secret = add_client(&s, "backend", true, &["refresh_token"], false)
        .await
        .unwrap();
    let valid = Valid {
        s: &s,
        n: Default::default(),
        secret,
    };
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut statuses = std::collections::BTreeSet::new();
    for (i, (method, path, op)) in operations(&doc).into_iter().enumerate() {
        // A user of its own: a logout or password change ends only its sessions.
        let t = s.user(&format!("vera{i}")).await;
        let id = op["operationId"].as_str().unwrap().to_string();
        let what = format!("{method} {path}");
        let concrete = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let plain = || s.http.request(m.clone(), s.url(&concrete));
        let requests = vec![
            plain(),
            plain().bearer_auth("not-a-token"),
            plain().basic_auth("nobody", Some("wrong")),
            plain()
                .bearer_auth(&t.access)
                .header("content-type", "application/json")
                .body("[1]"),
            plain()
                .bearer_auth(&t.access)
                .header("content-type", "text/plain")
                .body("x"),
            plain()
                .header("content-type", "application/x-www-form-urlencoded")
                .body("token=a&token=b&grant_type=password"),
            plain()
                .header("cookie", format!("tessera_at={}", t.access))
                .header("origin", "https://evil.example")
                .header("content-type", "application/json")
                .body("{}"),
            plain().header("x-big", "h".repeat(40 * 1024)),
            plain()
                .header("content-type", "application/json")
                .body(vec![b' '; 20 * 1024]),
            plain().bearer_auth(&t.access),
            valid.request(&id, &method, &path).await,
        ];
        for req in requests {
            let (status, headers, body) = send(&s, req).await;
            check_documented(&what, &op, status, &headers, &body);
            statuses.insert(status);
        }
        // A body announced over the limit is refused before it is sent.
        let head = format!(
            "{} {concrete} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
             content-type: application/json\r\nexpect: 100-continue\r\ncontent-length: 99999999\r\n\r\n",
            method.to_uppercase()
        );
        let (status, headers, body) = raw(&addr, &head);
        check_documented(
            &format!("{what} (announced body)"),
            &op,
            status,
            &headers,
            &body,
        );
        statuses.insert(status);
    }
    for expected in [200, 201, 204, 400, 401, 403, 404, 413, 415, 431] {
        assert!(
            statuses.contains(&expected),
            "never answered {expected}: {statuses:?}"
        );
    }
}

/// Where a limit can refuse a request, 429 (with `Retry-After`) is documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_answers_are_documented() {
    let one = || "1/1m".parse().unwrap();
    let s = TestServer::start_with(|c| {
        c.register_limit_ip = one();
        c.login_limit_account_ip = one();
        c.refresh_limit_ip = one();
    })
    .await;
    let doc = document(&s).await;
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    let operator = tessera_app::Caller {
        operator: true,
        ..Default::default()
    };
    for name in ["tina", "tom", "tess", "ted", "tara", "tia", "tod"] {
        s.state()
            .sign_up(
                &format!("{name}@example.com"),
                name,
                PASSWORD.into(),
                "",
                &operator,
            )
            .await
            .unwrap();
    }
    let tom = s.login("tom").await;
    let tess = s.login("tess").await;
    let ted = s.login("ted").await;
    let tia = s.login("tia").await;
    let tod = s.login("tod").await;
    let json = |m: Method, p: &str, body: Value| s.http.request(m, s.url(p)).json(&body);
    let cases: Vec<(&str, &str, Vec<reqwest::RequestBuilder>)> = vec![
        ("/v1/auth/register", "post", (0..2).map(|i| json(Method::POST, "/v1/auth/register",
            json!({"email": format!("new{i}@example.com"), "username": format!("new{i}"), "password": PASSWORD}))).collect()),
        ("/v1/auth/login", "post", (0..2).map(|_| json(Method::POST, "/v1/auth/login",
            json!({"login": "tina", "password": "not the password"}))).collect()),
        ("/v1/auth/refresh", "post", vec![
            json(Method::POST, "/v1/auth/refresh", json!({"refresh_token": tom.refresh})),
            json(Method::POST, "/v1/auth/refresh", json!({"refresh_token": tom.refresh})),
        ]),
        ("/v1/me", "patch", (0..2).map(|i| json(Method::PATCH, "/v1/me",
            json!({"username": format!("tess{i}")})).bearer_auth(&tess.access)).collect()),
        ("/v1/me/email", "post", (0..2).map(|i| json(Method::POST, "/v1/me/email",
            json!({"email": format!("tia{i}@example.com")})).bearer_auth(&tia.access)).collect()),
        ("/v1/me", "delete", (0..2).map(|_| json(Method::DELETE, "/v1/me",
            json!({"current_password": "not the password"})).bearer_auth(&tod.access)).collect()),
        ("/v1/me/password", "post", (0..2).map(|_| json(Method::POST, "/v1/me/password",
            json!({"current_password": "not the password", "new_password": "a new password 123"})).bearer_auth(&ted.access)).collect()),
        ("/oauth/token", "post", (0..2).map(|_| s.http.post(s.url("/oauth/token")).form(&[
            ("grant_type", "password"), ("username", "tara"), ("password", "not the password"), ("client_id", "tessera"),
        ])).collect()),
    ];
    for (path, method, requests) in cases {
        let op = op(path, method);
        let mut last = 0;
        for req in requests {
            let (status, headers, body) = send(&s, req).await;
            check_documented(&format!("{method} {path}"), &op, status, &headers, &body);
            last = status;
        }
        assert_eq!(last, 429, "{method} {path}");
    }
}

/// The documented input rules are the enforced ones, at their edges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_input_rules_hold_at_their_edges() {
    let s = TestServer::start().await;
    let t = s.user("edith").await;
    // `since`: decimal digits; beyond the largest cursor there is nothing newer.
    for (since, status) in [
        ("", 200),
        ("0", 200),
        ("99999999999999999999999", 200),
        ("+5", 400),
        ("-1", 400),
        ("1e3", 400),
        (" 7", 400),
    ] {
        let query = since.replace('+', "%2B").replace(' ', "%20");
        let r = s
            .http
            .get(s.url(&format!("/v1/revocations?since={query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "since={since:?}");
        let body: Value = r.json().await.unwrap();
        if status == 200 {
            assert!(
                body["cursor"]
                    .as_str()
                    .unwrap()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            );
        }
    }
    // A session id is a hyphenated UUID; other spellings (and undecodable paths)
    // name no session and answer JSON.
    let other = s.login("edith").await;
    let id = uuid::Uuid::parse_str(&other.session_id).unwrap();
    for spelled in [
        id.simple().to_string(),
        id.urn().to_string(),
        id.braced().to_string(),
        "%FF%FE".into(),
        "not-a-uuid".into(),
    ] {
        let r = s
            .http
            .delete(s.url(&format!("/v1/me/sessions/{spelled}")))
            .bearer_auth(&t.access)
            .send()
            .await
            .unwrap();
        expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert_eq!(s.me_status(&other.access).await, StatusCode::OK);
    let r = s
        .http
        .delete(s.url(&format!(
            "/v1/me/sessions/{}",
            id.hyphenated().to_string().to_uppercase()
        )))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.me_status(&other.access).await, StatusCode::UNAUTHORIZED);
    // `scope` at the token endpoint: space-separated (RFC 6749 §3.3), only
    // spaces mean none, and only the scopes Tessera knows, as written.
    s.register("sam").await;
    for (scope, ok) in [
        ("", true),
        ("   ", true),
        ("openid", true),
        ("openid  email ", true),
        ("\t", false),
        ("openid\temail", false),
        ("OPENID", false),
    ] {
        let r = s
            .http
            .post(s.url("/oauth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", "sam"),
                ("password", PASSWORD),
                ("client_id", "tessera"),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap();
        if ok {
            assert_eq!(r.status(), StatusCode::OK, "scope={scope:?}");
        } else {
            expect_error(r, StatusCode::BAD_REQUEST, "invalid_scope").await;
        }
    }
    // Usernames: upper case and surrounding spaces are accepted (and normalised),
    // exactly as the pattern says.
    let r = s
        .post(
            "/v1/auth/register",
            json!({"email": "kim@example.com", "username": "\u{a0} Kim.K ", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["username"], "kim.k");
}

/// The document names its security schemes correctly and every operation has a
/// meaningful id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_schemes_and_operation_ids() {
    let s = TestServer::start().await;
    let doc = document(&s).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["client_basic"]["scheme"], "basic");
    assert_eq!(schemes["access_cookie"]["in"], "cookie");
    assert_eq!(schemes["access_cookie"]["name"], "tessera_at");
    assert_eq!(schemes["refresh_cookie"]["name"], "tessera_rt");
    assert_eq!(doc["paths"]["/metrics"]["get"]["operationId"], "metrics");
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{method} {path}: {id:?}"
        );
        for alternative in op["security"].as_array().into_iter().flatten() {
            for name in alternative.as_object().unwrap().keys() {
                assert!(schemes.get(name).is_some(), "{method} {path}: {name}");
            }
        }
    }
    // What an access token protects says so; what a client authenticates to says so.
    let security = |p: &str, m: &str| doc["paths"][p][m]["security"].to_string();
    assert!(security("/v1/me", "get").contains("bearer"));
    assert!(security("/oauth/introspect", "post").contains("client_basic"));
    assert_eq!(security("/healthz", "get"), "null");
}

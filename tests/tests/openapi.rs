//! The OpenAPI document and the error shape, against the real collector:
//! the served document is valid OpenAPI 3.1 whose every `$ref` resolves;
//! every `/api/v1/` path written anywhere under collector/src/ is in it (so
//! a route added without documentation fails here) and every documented
//! operation is routed; and every kind of error answer, axum's own
//! included, is `{"error": "<stable code>", "message": "..."}`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use steward_tests::{Collector, http_exchange};

fn fetch_document(collector: &Collector) -> (String, Value) {
    let token = collector.create_token("docs-reader", "read");
    let (status, head, body) = http_exchange(
        collector.http_addr,
        "GET",
        "/api/v1/openapi.json",
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let value = serde_json::from_str(&body).expect("the document is JSON");
    (body, value)
}

/// Every `"$ref"` string anywhere in `value`.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(reference)) => found.push(reference.clone()),
                    _ => references(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|inner| references(inner, found)),
        _ => {}
    }
}

#[test]
fn the_served_document_is_valid_openapi_3_1_and_every_ref_resolves() {
    let collector = Collector::start();
    let (text, document) = fetch_document(&collector);

    let spec = oas3::from_json(&text).expect("a real OpenAPI parser accepts the document");
    let version = spec
        .validate_version()
        .expect("a supported OpenAPI version");
    assert_eq!((version.major, version.minor), (3, 1));
    assert_eq!(spec.info.title, "Steward collector API");
    assert_eq!(spec.info.version, env!("CARGO_PKG_VERSION"));

    let mut operations = 0;
    for (path, method, operation) in spec.operations() {
        let what = format!("{method} {path}");
        operations += 1;
        let parameters = operation.parameters(&spec).expect(&what);
        assert_eq!(
            parameters.len(),
            operation.parameters.len(),
            "{what}: a parameter $ref does not resolve"
        );
        for name in path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
        {
            assert!(
                parameters
                    .iter()
                    .any(|parameter| parameter.name == name && parameter.required == Some(true)),
                "{what}: path parameter {name} is not documented"
            );
        }
        if let Some(body) = operation.request_body(&spec).expect(&what) {
            for (media, content) in &body.content {
                if let Some(schema) = &content.schema {
                    schema
                        .resolve(&spec)
                        .unwrap_or_else(|error| panic!("{what}: request {media} schema: {error}"));
                }
            }
        }
        let declared = operation.responses.as_ref().map_or(0, |map| map.len());
        let responses = operation.responses(&spec);
        assert_eq!(
            responses.len(),
            declared,
            "{what}: a response $ref does not resolve"
        );
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{what}: no success response"
        );
        for (status, response) in &responses {
            for (media, content) in &response.content {
                if let Some(schema) = &content.schema {
                    schema
                        .resolve(&spec)
                        .unwrap_or_else(|error| panic!("{what} {status}: {media} schema: {error}"));
                }
            }
        }
    }
    assert!(operations >= 36, "only {operations} operations documented");

    // Every $ref anywhere (nested schemas included) points at something.
    let mut found = Vec::new();
    references(&document, &mut found);
    assert!(!found.is_empty());
    for reference in found {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference} is not local"));
        assert!(
            document.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }

    // Bearer tokens with scopes, and errors in one documented shape.
    let scheme = &document["components"]["securitySchemes"]["api_token"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let error = &document["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error", "message"]));
    let codes = &document["components"]["schemas"]["ErrorCode"]["enum"];
    for code in ["unknown_route", "invalid_query", "insufficient_scope"] {
        assert!(
            codes.as_array().unwrap().contains(&Value::from(code)),
            "{codes}"
        );
    }
    let paged = &document["paths"]["/api/v1/incidents"]["get"];
    assert!(
        paged["responses"]["200"]["headers"]["X-Next-Cursor"].is_object(),
        "{paged}"
    );
    let parameters: Vec<&str> = paged["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|parameter| parameter["name"].as_str())
        .collect();
    assert!(
        parameters.contains(&"limit") && parameters.contains(&"cursor"),
        "{parameters:?}"
    );

    // The document is behind the read-token check like every API route.
    let (status, _, body) = http_exchange(
        collector.http_addr,
        "GET",
        "/api/v1/openapi.json",
        None,
        None,
    );
    assert_eq!(status, 401, "{body}");
}

/// `/api/v1/...` string literals in every .rs file under `dir`, with
/// `{param}` segments written as `{}` (names may differ between a route
/// and a test's `format!`) and without a query string.
fn api_paths_in_source(dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("read collector/src") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            api_paths_in_source(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            for (start, _) in text.match_indices("\"/api/v1/") {
                let literal = &text[start + 1..];
                let Some(end) = literal.find('"') else {
                    continue;
                };
                let route = literal[..end].split('?').next().unwrap_or_default();
                // A bare prefix ("/api/v1/") is a check on paths, not a route.
                if route.trim_end_matches('/') != "/api/v1" {
                    found.insert(shape(route));
                }
            }
        }
    }
}

/// `/api/v1/incidents/{id}/ack` → `/api/v1/incidents/{}/ack`.
fn shape(route: &str) -> String {
    route
        .split('/')
        .map(|part| {
            if part.starts_with('{') && part.ends_with('}') {
                "{}"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_api_route_is_documented_and_every_documented_operation_is_routed() {
    let collector = Collector::start();
    let (_, document) = fetch_document(&collector);
    let paths = document["paths"].as_object().expect("paths");
    let documented: BTreeSet<String> = paths.keys().map(|path| shape(path)).collect();

    // A route registered anywhere under collector/src/ with `.route("/api/v1/…")`
    // or in a `routes!` handler without `#[utoipa::path]` is missing here.
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../collector/src");
    let mut in_source = BTreeSet::new();
    api_paths_in_source(&source, &mut in_source);
    assert!(in_source.len() >= 30, "found only {in_source:?}");
    let undocumented: Vec<_> = in_source.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "/api/v1 paths in collector/src/ missing from the OpenAPI document \
         (register them with utoipa_axum's `routes!` and `#[utoipa::path]`): {undocumented:?}"
    );

    // And the other way: each documented operation reaches a handler (with
    // an id that does not exist, so writes change nothing).
    let admin = collector.api_token();
    for (path, item) in paths {
        let concrete: String = path
            .split('/')
            .map(|part| if part.starts_with('{') { "0" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().expect("path item").keys() {
            let method = method.to_ascii_uppercase();
            let body = (method != "GET").then_some("{}");
            let (status, _, text) =
                http_exchange(collector.http_addr, &method, &concrete, Some(&admin), body);
            let what = format!("{method} {concrete}: {status} {text}");
            assert_ne!(status, 405, "{what}");
            assert!(status != 0 && status < 500, "{what}");
            if status >= 400 {
                let error: Value = serde_json::from_str(&text).expect(&what);
                assert_ne!(error["error"], "unknown_route", "{what}");
            }
        }
    }
}

/// Sends a request (with `content_type` if given) and returns the status,
/// the response head and the body parsed as the error shape.
fn error_answer(
    collector: &Collector,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, Value) {
    let (status, head, text) = http_exchange(collector.http_addr, method, path, token, body);
    let what = format!("{method} {path}: {status} {head}\n{text}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{what}"
    );
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {what}"));
    let keys: Vec<&String> = value.as_object().expect(&what).keys().collect();
    assert_eq!(keys, ["error", "message"], "{what}");
    assert!(
        value["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "{what}"
    );
    (status, head, value)
}

/// (method, path, token, body, expected status, expected code).
type ErrorCase<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    u16,
    &'a str,
);

#[test]
fn every_kind_of_error_is_json_with_a_stable_code() {
    let collector = Collector::start();
    let admin = collector.api_token();
    let read = collector.create_token("reader", "read");
    let write = collector.create_token("writer", "write");
    let cases: [ErrorCase; 16] = [
        (
            "GET",
            "/api/v1/no-such-route",
            Some(&admin),
            None,
            404,
            "unknown_route",
        ),
        (
            "GET",
            "/no/such/page",
            Some(&admin),
            None,
            404,
            "unknown_route",
        ),
        (
            "GET",
            "/api/v1/incidents/999999",
            Some(&admin),
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            "/api/v1/incidents?limit=many",
            Some(&admin),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            "/api/v1/incidents?cursor=zz",
            Some(&admin),
            None,
            400,
            "invalid_cursor",
        ),
        (
            "GET",
            "/api/v1/incidents?state=sleepy",
            Some(&admin),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/incidents/abc",
            Some(&admin),
            None,
            400,
            "invalid_path",
        ),
        (
            "POST",
            "/api/v1/incidents/ack",
            Some(&admin),
            None,
            400,
            "invalid_query",
        ),
        (
            "POST",
            "/api/v1/maintenance",
            Some(&admin),
            Some(r#"{"tags": ["#),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/api/v1/maintenance",
            Some(&admin),
            Some(r#"{"tags": 5}"#),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/api/v1/maintenance",
            Some(&admin),
            None,
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/api/v1/incidents/1/ack",
            Some(&admin),
            Some("not json"),
            400,
            "invalid_json",
        ),
        (
            "DELETE",
            "/api/v1/incidents",
            Some(&admin),
            None,
            405,
            "method_not_allowed",
        ),
        ("GET", "/api/v1/agents", None, None, 401, "unauthorized"),
        (
            "POST",
            "/api/v1/maintenance",
            Some(&read),
            Some("{}"),
            403,
            "insufficient_scope",
        ),
        (
            "GET",
            "/api/v1/tokens",
            Some(&write),
            None,
            403,
            "insufficient_scope",
        ),
    ];
    for (method, path, token, body, status, code) in cases {
        let (got, head, error) = error_answer(&collector, method, path, token, body);
        assert_eq!(
            (got, error["error"].as_str()),
            (status, Some(code)),
            "{method} {path}: {error}"
        );
        if status == 405 {
            assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");
        }
        if status == 401 {
            let head = head.to_ascii_lowercase();
            assert!(head.contains("www-authenticate: bearer"), "{head}");
        }
    }

    // A body just over the 2 MiB limit. Sent whole before reading, so the
    // collector has read all of it when it answers (closing on unread bytes
    // would reset the connection and lose the answer).
    let mut stream = TcpStream::connect(collector.http_addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let body = format!("{{\"reason\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let request = format!(
        "POST /api/v1/maintenance HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Authorization: Bearer {admin}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        collector.http_addr,
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").expect(&response);
    assert!(head.starts_with("HTTP/1.1 413"), "{response}");
    let error: Value = serde_json::from_str(body).expect(&response);
    assert_eq!(error["error"], "payload_too_large", "{response}");

    // Bad tokens from one address: 401 until the budget is spent, then 429.
    let rate_limited = (0..40).find_map(|_| {
        let (status, _, error) =
            error_answer(&collector, "GET", "/api/v1/agents", Some("stw_wrong"), None);
        assert!(status == 401 || status == 429, "{status} {error}");
        (status == 429).then_some(error)
    });
    let error = rate_limited.expect("429 after too many bad tokens");
    assert_eq!(error["error"], "rate_limited");
}

//! The OpenAPI 3.1 document of the HTTP API, served at
//! `GET /api/v1/openapi.json`.
//!
//! Generated from the handlers' `#[utoipa::path]` annotations: a route is
//! registered with `routes!` together with its documentation (see
//! `api::documented_routes`), so the two cannot drift. What every operation
//! shares is added here once: the bearer-token scheme, the scope an
//! operation needs (read for GET, write otherwise, unless the handler says
//! admin), and the error answers any authenticated route can give.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;

/// The name of the security scheme in the document.
pub const TOKEN_SCHEME: &str = "api_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Steward collector API",
        description = "The collector's HTTP API. Every route needs `Authorization: Bearer <token>`; \
GET needs the read scope, other methods write, token and agent administration admin. \
List endpoints page with `limit` and `cursor`: the body is a JSON array and, when more rows \
follow, the `X-Next-Cursor` response header holds the `cursor` of the next page. \
Every error is `{\"error\": \"<stable code>\", \"message\": \"...\"}` (schema `Error`).",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&SharedConventions),
    tags(
        (name = "overview", description = "The fleet at a glance, counted over every incident, agent and asset"),
        (name = "agents", description = "Enrolled agents, their inventory, packages and changes"),
        (name = "series", description = "Latest values and history of metric series"),
        (name = "incidents", description = "Incidents, rules, notifications and SLA figures"),
        (name = "oncall", description = "On-call schedules and maintenance windows"),
        (name = "assets", description = "The asset register and compliance findings"),
        (name = "problems", description = "Problem records grouping recurring incidents"),
        (name = "changes", description = "Change records and their statistics"),
        (name = "administration", description = "API tokens and agent revocation (admin scope)"),
        (name = "session", description = "Console sessions: a cookie instead of a bearer token"),
        (name = "meta", description = "This document"),
    ),
)]
pub struct ApiDoc;

/// Adds what every operation shares (see the module doc).
struct SharedConventions;

/// Error answers any authenticated operation can give, by status, with the
/// name of their reusable response and its description.
const SHARED_ERRORS: [(&str, &str, &str); 4] = [
    (
        "401",
        "Unauthorized",
        "`unauthorized`: no bearer token, or an invalid or revoked one.",
    ),
    (
        "403",
        "InsufficientScope",
        "`insufficient_scope`: the token's scope is below what this operation needs.",
    ),
    (
        "429",
        "RateLimited",
        "`rate_limited`: too many invalid tokens from this address; see `Retry-After`.",
    ),
    (
        "503",
        "Unavailable",
        "`busy` (too many requests in progress; see `Retry-After`), `timeout` (the request ran \
past `limits.http_request_timeout`) or `storage_unavailable`.",
    ),
];

impl Modify for SharedConventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.version = env!("CARGO_PKG_VERSION").to_string();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            TOKEN_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`steward-collector token create` or `POST /api/v1/tokens`). \
The requirement lists the scope the operation needs: read < write < admin.",
                    ))
                    .build(),
            ),
        );
        for (_, name, description) in SHARED_ERRORS {
            components.responses.insert(
                name.to_string(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Error")))
                                .build(),
                        )
                        .build(),
                ),
            );
        }
    }
}

/// Gives each operation its scope and the shared error answers. Runs on the
/// finished document (after `routes!` added the paths), not as a
/// [`Modify`], which sees only the paths known to the derive.
fn apply_shared_conventions(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            (&mut item.get, "read"),
            (&mut item.head, "read"),
            (&mut item.post, "write"),
            (&mut item.put, "write"),
            (&mut item.patch, "write"),
            (&mut item.delete, "write"),
        ];
        for (operation, scope) in operations {
            if let Some(operation) = operation {
                secure(operation, scope);
            }
        }
    }
}

fn secure(operation: &mut Operation, default_scope: &str) {
    let security = operation
        .security
        .get_or_insert_with(|| vec![SecurityRequirement::new(TOKEN_SCHEME, [default_scope])]);
    // `security(())` on a handler means open to all: no shared auth errors.
    if security
        .iter()
        .all(|requirement| requirement == &SecurityRequirement::default())
    {
        return;
    }
    for (status, name, _) in SHARED_ERRORS {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}

/// The finished document of the routes in `api::documented_routes`.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut openapi) = super::documented_routes().split_for_parts();
    apply_shared_conventions(&mut openapi);
    openapi
}

/// The document as served, built once.
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document().to_json().unwrap_or_else(|error| {
            // Only a non-string map key could fail here, and the document has none.
            tracing::error!(message = "Cannot serialise the OpenAPI document.", %error);
            String::from("{}")
        })
    })
}

/// `GET /api/v1/openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    operation_id = "openapi_document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object),
    ),
)]
pub async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn document_value() -> Value {
        serde_json::from_str(&document().to_json().unwrap()).unwrap()
    }

    /// Every operation of the document, as (method, path, operation).
    fn operations(document: &Value) -> Vec<(String, String, Value)> {
        let mut found = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                found.push((method.clone(), path.clone(), operation.clone()));
            }
        }
        found
    }

    #[test]
    fn every_operation_has_a_unique_id_a_tag_a_scope_and_coded_errors() {
        let document = document_value();
        if let Ok(path) = std::env::var("STEWARD_OPENAPI_DUMP") {
            std::fs::write(path, serde_json::to_string_pretty(&document).unwrap()).unwrap();
        }
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        let mut ids = BTreeSet::new();
        for (method, path, operation) in operations(&document) {
            let what = format!("{method} {path}");
            let id = operation["operationId"].as_str().expect(&what);
            assert!(ids.insert(id.to_string()), "{what}: operationId {id} twice");
            assert!(operation["tags"][0].is_string(), "{what}: no tag");
            // Open to all (the console login and logout): no scope, no auth errors.
            if operation["security"] == serde_json::json!([{}]) {
                assert_eq!(path, "/api/v1/session", "{what} is open to all");
                continue;
            }
            let scopes = &operation["security"][0][TOKEN_SCHEME];
            let expected: &[&str] = if path.starts_with("/api/v1/tokens")
                || path.ends_with("/revoke") && path.starts_with("/api/v1/agents")
            {
                &["admin"]
            } else if method == "get" {
                &["read"]
            } else {
                &["write"]
            };
            assert_eq!(scopes, &serde_json::json!(expected), "{what}");
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('2') {
                    continue;
                }
                let schema = match response.get("$ref") {
                    Some(reference) => {
                        let name = reference
                            .as_str()
                            .unwrap()
                            .trim_start_matches("#/components/responses/");
                        &document["components"]["responses"][name]["content"]["application/json"]["schema"]
                    }
                    None => &response["content"]["application/json"]["schema"],
                };
                assert_eq!(
                    schema["$ref"], "#/components/schemas/Error",
                    "{what} {status}"
                );
            }
            for status in ["401", "403", "429", "503"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{what}: no {status}"
                );
            }
        }
        assert!(ids.len() >= 36, "only {} operations", ids.len());
    }

    /// `schema` with `$ref`s to components and array items followed.
    fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.trim_start_matches("#/components/schemas/");
            return resolve(document, &document["components"]["schemas"][name]);
        }
        if schema["type"] == "array" {
            return resolve(document, &schema["items"]);
        }
        schema
    }

    /// An object the document says nothing about: `{}` or `type: object`
    /// with no properties, composition or value schema.
    fn is_bare_object(schema: &Value) -> bool {
        let described = [
            "properties",
            "allOf",
            "oneOf",
            "anyOf",
            "additionalProperties",
            "enum",
        ]
        .iter()
        .any(|key| schema.get(*key).is_some());
        let untyped_or_object = match &schema["type"] {
            Value::Null => true,
            Value::String(kind) => kind == "object",
            Value::Array(kinds) => kinds.iter().any(|kind| kind == "object"),
            _ => false,
        };
        untyped_or_object && !described
    }

    /// Every success body and request body is described field by field,
    /// except the document itself: a handler answering `serde_json::Value`
    /// built by hand documents as a bare `Object`, which is what issue #14
    /// removed.
    #[test]
    fn no_operation_but_the_document_answers_or_takes_a_bare_object() {
        let document = document_value();
        let mut bare = Vec::new();
        for (method, path, operation) in operations(&document) {
            if path == "/api/v1/openapi.json" {
                continue;
            }
            let mut bodies = vec![("request".to_string(), &operation["requestBody"])];
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('2') {
                    bodies.push((status.clone(), response));
                }
            }
            for (which, body) in bodies {
                let Some(contents) = body["content"].as_object() else {
                    continue;
                };
                for (media, content) in contents {
                    if is_bare_object(resolve(&document, &content["schema"])) {
                        bare.push(format!("{method} {path} {which} {media}"));
                    }
                }
            }
        }
        assert!(
            bare.is_empty(),
            "bodies documented as a bare object: {bare:#?}"
        );
    }

    /// No component schema hides a bare object in a field either.
    #[test]
    fn no_schema_has_a_bare_object_field() {
        let document = document_value();
        let mut bare = Vec::new();
        for (name, schema) in document["components"]["schemas"].as_object().unwrap() {
            let Some(properties) = schema["properties"].as_object() else {
                continue;
            };
            for (field, property) in properties {
                let mut property = resolve(&document, property);
                // `Option<T>` of a component: `oneOf: [null, {$ref}]`.
                if let Some(variants) = property["oneOf"].as_array()
                    && let Some(inner) = variants.iter().find(|variant| variant["type"] != "null")
                {
                    property = resolve(&document, inner);
                }
                if is_bare_object(property) {
                    bare.push(format!("{name}.{field}"));
                }
            }
        }
        assert!(
            bare.is_empty(),
            "fields documented as a bare object: {bare:#?}"
        );
    }

    #[test]
    fn the_error_schema_lists_every_stable_code() {
        let document = document_value();
        let codes = &document["components"]["schemas"]["ErrorCode"]["enum"];
        let expected: Vec<&str> = super::super::ErrorCode::ALL
            .iter()
            .map(|code| code.as_str())
            .collect();
        assert_eq!(codes, &serde_json::json!(expected));
    }
}

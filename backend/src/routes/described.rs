//! The API as it is routed, described: every route is added through [`ApiRouter`] together with its
//! description, so the router and the OpenAPI document (`GET /api/v1/openapi.json`) are made from the
//! same calls and cannot drift. Schemas come from the wire types (`shared` with its `schema`
//! feature, JSON Schema 2020-12 as OpenAPI 3.1 uses it); who may call what comes from the policy
//! table (`auth::policy`).

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::MethodRouter;
use axum::Router;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

use crate::state::AppState;

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn query_schema_of<T: JsonSchema>(_: &mut SchemaGenerator) -> Schema {
    // Inline, so each field becomes a query parameter with its own schema.
    SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
}

/// What a successful answer is.
#[derive(Clone, Copy)]
enum Answer {
    Json(u16, SchemaFn),
    Empty(u16),
    /// Another media type (CSV, an event stream), described in words.
    Media(u16, &'static str, &'static str),
}

/// One operation's description: what it does, what it takes, what it answers.
#[derive(Clone, Copy)]
pub struct Doc {
    summary: &'static str,
    body: Option<(SchemaFn, bool)>,
    /// Up to two query structs (a handler may read the query string twice).
    queries: [Option<SchemaFn>; 2],
    answer: Answer,
}

/// Starts an operation's description with its one-line summary. It answers 204 with no body unless
/// told otherwise.
pub fn doc(summary: &'static str) -> Doc {
    Doc {
        summary,
        body: None,
        queries: [None; 2],
        answer: Answer::Empty(204),
    }
}

impl Doc {
    /// The JSON body it takes.
    pub fn body<T: JsonSchema>(mut self) -> Self {
        self.body = Some((schema_of::<T>, true));
        self
    }

    /// The JSON body it takes when one is sent.
    pub fn optional_body<T: JsonSchema>(mut self) -> Self {
        self.body = Some((schema_of::<T>, false));
        self
    }

    /// The query string it takes, one parameter per field of `T`.
    pub fn query<T: JsonSchema>(mut self) -> Self {
        let free = self.queries.iter_mut().find(|q| q.is_none());
        *free.expect("at most two query structs") = Some(query_schema_of::<T>);
        self
    }

    /// It answers `status` with a JSON `T`.
    pub fn answers<T: JsonSchema>(mut self, status: u16) -> Self {
        self.answer = Answer::Json(status, schema_of::<T>);
        self
    }

    /// It answers `status` with no body.
    pub fn empty(mut self, status: u16) -> Self {
        self.answer = Answer::Empty(status);
        self
    }

    /// It answers `status` with another media type, described in words.
    pub fn media(mut self, status: u16, media_type: &'static str, what: &'static str) -> Self {
        self.answer = Answer::Media(status, media_type, what);
        self
    }
}

/// One routed operation.
pub struct Operation {
    pub method: Method,
    /// As routed, under `/api/v1` (`/executions/{id}`).
    pub path: &'static str,
    pub doc: Doc,
}

/// A router that keeps the description of every route it is given.
#[derive(Default)]
pub struct ApiRouter {
    router: Router<AppState>,
    operations: Vec<Operation>,
}

impl ApiRouter {
    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H, doc: Doc) -> Self {
        self.add(Method::GET, path, axum::routing::get(handler), doc)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H, doc: Doc) -> Self {
        self.add(Method::POST, path, axum::routing::post(handler), doc)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H, doc: Doc) -> Self {
        self.add(Method::PUT, path, axum::routing::put(handler), doc)
    }

    fn add(mut self, method: Method, path: &'static str, handler: MethodRouter<AppState>, doc: Doc) -> Self {
        // Every route is in the policy table, so none is served without a decision on who may call it
        // and which accounts it touches.
        assert!(
            crate::auth::policy::policy(&method, path).is_some(),
            "{method} {path} has no entry in auth::policy::policy"
        );
        // axum merges method routers of one path, so `get` and `post` on it make one route.
        self.router = self.router.route(path, handler);
        self.operations.push(Operation { method, path, doc });
        self
    }

    pub fn merge(mut self, other: ApiRouter) -> Self {
        self.router = self.router.merge(other.router);
        self.operations.extend(other.operations);
        self
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<Operation>) {
        (self.router, self.operations)
    }
}

/// The OpenAPI 3.1 document of `operations`.
pub fn openapi(operations: &[Operation]) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let error = generator.subschema_for::<shared::api::ErrorBody>();
    let mut paths = Map::new();
    for op in operations {
        let item = paths
            .entry(op.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects");
        item.insert(
            op.method.as_str().to_ascii_lowercase(),
            operation(op, &mut generator),
        );
    }
    let schemas: Map<String, Value> = generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "imds-console",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Move an EC2 fleet to IMDSv2 safely: runs of AWSSupport-ConfigureEC2Metadata, \
                the fleet's posture, rollout plans, approvals and the audit trail. Reads need the viewer \
                role, changes the operator role, users, tokens, webhooks and the permission check the \
                admin role (each operation's `x-required-role`). State-changing requests with the \
                session cookie must come from the console's own origin.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "servers": [{ "url": "/api/v1" }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "What went wrong: a code, a message, and for a validation error \
                        every bad field (which field, what is allowed).",
                    "content": { "application/json": { "schema": error } }
                }
            },
            "securitySchemes": {
                "session": {
                    "type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE,
                    "description": "The cookie POST /auth/login sets (`__Host-imds_session` over HTTPS)."
                },
                "token": {
                    "type": "http", "scheme": "bearer",
                    "description": "An API token (POST /tokens), for scripts."
                }
            }
        }
    })
}

fn operation(op: &Operation, generator: &mut SchemaGenerator) -> Value {
    let mut parameters: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    for query in op.doc.queries.into_iter().flatten() {
        parameters.extend(query_parameters(&query(generator)));
    }
    let policy = crate::auth::policy::policy(&op.method, op.path);
    let role = policy.and_then(|p| p.role);
    let account_rule = policy.map_or(crate::auth::policy::AccountRule::Unscoped, |p| p.accounts);
    let mut responses = Map::new();
    let (status, answer) = match op.doc.answer {
        Answer::Json(status, schema) => (
            status,
            json!({ "description": op.doc.summary, "content": { "application/json": { "schema": schema(generator) } } }),
        ),
        Answer::Empty(status) => (status, json!({ "description": op.doc.summary })),
        Answer::Media(status, media, what) => (
            status,
            json!({ "description": what, "content": { media: { "schema": { "type": "string" } } } }),
        ),
    };
    responses.insert(status.to_string(), answer);
    responses.insert(
        "default".into(),
        json!({ "$ref": "#/components/responses/Error" }),
    );
    let mut out = json!({
        "operationId": operation_id(&op.method, op.path),
        "summary": op.doc.summary,
        "tags": [tag(op.path)],
        "responses": responses,
        "security": match role {
            None => json!([]),
            Some(_) => json!([{ "session": [] }, { "token": [] }]),
        },
        "x-required-role": role.map_or("none", |r| r.as_str()),
        "x-account-rule": account_rule.as_str(),
    });
    if !parameters.is_empty() {
        out["parameters"] = Value::Array(parameters);
    }
    if let Some((body, required)) = op.doc.body {
        out["requestBody"] = json!({
            "required": required,
            "content": { "application/json": { "schema": body(generator) } }
        });
    }
    out
}

/// A query struct's fields as OpenAPI query parameters.
fn query_parameters(schema: &Schema) -> Vec<Value> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let mut parameter = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "schema": property,
            });
            if let Some(description) = property.get("description") {
                parameter["description"] = description.clone();
            }
            parameter
        })
        .collect()
}

/// `get_executions_id_stop`-like, unique per method and path.
fn operation_id(method: &Method, path: &str) -> String {
    let words: Vec<&str> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    format!("{}_{}", method.as_str().to_ascii_lowercase(), words.join("_"))
}

/// The first segment of the path groups operations (`executions`, `users`, `plans`).
fn tag(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or_default()
}

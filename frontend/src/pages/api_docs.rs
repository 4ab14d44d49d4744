//! API docs: the console's own OpenAPI document (`/api/v1/openapi.json`), readable. Operations are
//! grouped by resource with the role each needs; each opens to its parameters, body and answer, and
//! the wire types' schemas are listed below. The raw document is one click away, for code generators.

use leptos::prelude::*;
use serde_json::Value;

use crate::api;

/// `#/components/schemas/Name` as `Name`; an inline schema as its JSON type.
fn schema_name(schema: &Value) -> String {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference.rsplit('/').next().unwrap_or(reference).to_owned(),
        None => match schema.get("type") {
            Some(Value::String(t)) if t == "array" => format!("array of {}", schema_name(&schema["items"])),
            Some(Value::String(t)) => t.clone(),
            _ => "object".to_owned(),
        },
    }
}

/// The JSON schema of a request body or an answer's first media type.
fn content_schema(holder: &Value) -> Option<(String, String)> {
    let (media, content) = holder.get("content")?.as_object()?.iter().next()?;
    Some((media.clone(), schema_name(&content["schema"])))
}

#[component]
fn Operation(method: String, path: String, op: Value) -> impl IntoView {
    let summary = op["summary"].as_str().unwrap_or_default().to_owned();
    let role = op["x-required-role"].as_str().unwrap_or("none").to_owned();
    let parameters: Vec<(String, String, bool, String)> = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().to_owned(),
                        p["in"].as_str().unwrap_or_default().to_owned(),
                        p["required"].as_bool().unwrap_or(false),
                        p["description"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let body = op.get("requestBody").and_then(content_schema);
    let answers: Vec<(String, String)> = op["responses"]
        .as_object()
        .map(|rs| {
            rs.iter()
                .filter(|(status, _)| *status != "default")
                .map(|(status, r)| {
                    let what =
                        content_schema(r).map_or_else(|| "no body".to_owned(), |(m, s)| format!("{s} ({m})"));
                    (status.clone(), what)
                })
                .collect()
        })
        .unwrap_or_default();
    let badge = format!("method method-{}", method.to_ascii_lowercase());
    view! {
        <details class="api-op">
            <summary>
                <span class=badge>{method.to_ascii_uppercase()}</span>" "
                <code>{path}</code>" "<span>{summary}</span>" "
                <span class="help">{format!("role: {role}")}</span>
            </summary>
            {(!parameters.is_empty()).then(|| view! {
                <div class="table-scroll"><table>
                    <thead><tr><th scope="col">"Parameter"</th><th scope="col">"In"</th><th scope="col">"About"</th></tr></thead>
                    <tbody>{parameters.into_iter().map(|(name, place, required, about)| view! {
                        <tr><td><code>{name}</code>{required.then_some(" (required)")}</td><td>{place}</td><td>{about}</td></tr>
                    }).collect_view()}</tbody>
                </table></div>
            })}
            {body.map(|(media, schema)| view! { <p>"Body: "<code>{schema}</code>{format!(" ({media})")}</p> })}
            <ul>{answers.into_iter().map(|(status, what)| view! { <li>{format!("{status}: {what}")}</li> }).collect_view()}
                <li>"Otherwise: ErrorBody (a code, a message, and every bad field)"</li></ul>
        </details>
    }
}

#[component]
pub fn ApiDocsPage() -> impl IntoView {
    let document = LocalResource::new(|| api::get::<Value>("/openapi.json"));
    view! {
        <section class="card">
            <h1>"API"</h1>
            <p class="help">"Everything the console does is in its HTTP API under /api/v1: sign in with the session cookie, or send an API token (Admin page) as "<code>"Authorization: Bearer …"</code>". Reads need the viewer role, changes the operator role. "
                <a href="/api/v1/openapi.json" download="imds-console-openapi.json">"Download the OpenAPI 3.1 document"</a>" for a client generator."</p>
            {move || match document.get() {
                None => view! { <p role="status">"Loading the API description…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(doc)) => {
                    let mut by_tag: std::collections::BTreeMap<String, Vec<(String, String, Value)>> = Default::default();
                    for (path, item) in doc["paths"].as_object().cloned().unwrap_or_default() {
                        for (method, op) in item.as_object().cloned().unwrap_or_default() {
                            let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
                            by_tag.entry(tag).or_default().push((method, path.clone(), op));
                        }
                    }
                    let schemas: Vec<(String, String)> = doc["components"]["schemas"]
                        .as_object()
                        .map(|s| s.iter().map(|(n, v)| (n.clone(), serde_json::to_string_pretty(v).unwrap_or_default())).collect())
                        .unwrap_or_default();
                    let version = doc["info"]["version"].as_str().unwrap_or_default().to_owned();
                    view! {
                        <p class="help">{format!("Version {version}.")}</p>
                        <div data-testid="api-operations">
                            {by_tag.into_iter().map(|(tag, ops)| view! {
                                <h2>{tag}</h2>
                                {ops.into_iter().map(|(method, path, op)| view! { <Operation method path op/> }).collect_view()}
                            }).collect_view()}
                        </div>
                        <h2>"Types"</h2>
                        <div data-testid="api-schemas">
                            {schemas.into_iter().map(|(name, json)| view! {
                                <details class="api-op"><summary><code>{name}</code></summary><pre class="json">{json}</pre></details>
                            }).collect_view()}
                        </div>
                    }.into_any()
                }
            }}
        </section>
    }
}

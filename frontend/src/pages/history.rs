//! History: every run newest first, filtered by status, instance and requester, with cursor paging.
//! The filters live in the URL, so a filtered view is a link that survives a reload.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_query_map};
use shared::api::ExecutionSummary;

use crate::api::{self, enc, local_time};
use crate::components::status::StatusBadge;
use crate::live::use_live;

/// A table of runs, each linking to its detail page.
#[component]
pub fn ExecutionTable(rows: Vec<ExecutionSummary>) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p data-testid="history-empty">"No runs yet."</p> }.into_any();
    }
    view! {
        <table data-testid="history">
            <thead><tr>
                <th scope="col">"Execution"</th><th scope="col">"Status"</th><th scope="col">"Instance / targets"</th>
                <th scope="col">"Account / region"</th><th scope="col">"Requester"</th><th scope="col">"Started"</th><th scope="col">"Ended"</th>
            </tr></thead>
            <tbody>
                {rows.into_iter().map(|r| {
                    let href = format!("/executions/{}", r.execution_id);
                    let what = r.instance_id.clone().or(r.targets.clone()).unwrap_or_default();
                    let requester = r.requester.clone().unwrap_or_else(|| if r.started_here { "–".into() } else { "outside the console".into() });
                    let label = r.execution_id.clone();
                    view! {
                        <tr data-execution-id=r.execution_id.clone()>
                            <td class="mono"><A href=href>{label}</A></td>
                            <td><StatusBadge status=r.status.clone()/></td>
                            <td class="mono">{what}</td>
                            <td>{if r.account.is_empty() { r.region.clone() } else { format!("{} / {}", r.account, r.region) }}</td>
                            <td>{requester}</td>
                            <td>{local_time(r.start_time.as_deref())}</td>
                            <td>{local_time(r.end_time.as_deref())}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// `2026-11-26T14:30` in the viewer's time zone -> RFC 3339 (UTC); empty stays empty.
fn to_rfc3339(local: &str) -> String {
    if local.is_empty() {
        return String::new();
    }
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(local));
    if d.get_time().is_nan() {
        return String::new();
    }
    d.to_iso_string().as_string().unwrap_or_default()
}

/// RFC 3339 -> the `datetime-local` form in the viewer's time zone.
fn to_local_input(rfc3339: &str) -> String {
    if rfc3339.is_empty() {
        return String::new();
    }
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(rfc3339));
    if d.get_time().is_nan() {
        return String::new();
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        d.get_full_year(),
        d.get_month() + 1,
        d.get_date(),
        d.get_hours(),
        d.get_minutes()
    )
}

const STATUSES: &[&str] = &[
    "",
    "InProgress",
    "Success",
    "Failed",
    "Cancelled",
    "Cancelling",
    "TimedOut",
];

#[component]
pub fn HistoryPage() -> impl IntoView {
    let query = use_query_map();
    let live = use_live();
    let navigate = use_navigate();
    let q = move |k: &str| query.read().get(k).unwrap_or_default();

    let status = RwSignal::new(String::new());
    let instance = RwSignal::new(String::new());
    let requester = RwSignal::new(String::new());
    // datetime-local values (the viewer's time); the URL holds RFC 3339.
    let since = RwSignal::new(String::new());
    let until = RwSignal::new(String::new());
    // Keep the inputs in step with the URL (deep links, back button).
    Effect::new(move |_| {
        status.set(q("status"));
        instance.set(q("instance_id"));
        requester.set(q("requester"));
        since.set(to_local_input(&q("since")));
        until.set(to_local_input(&q("until")));
    });

    let page = LocalResource::new(move || {
        live.version.track();
        let mut parts = Vec::new();
        for key in ["status", "instance_id", "requester", "since", "until", "cursor"] {
            let v = q(key);
            if !v.is_empty() {
                parts.push(format!("{key}={}", enc(&v)));
            }
        }
        async move { api::history(&parts.join("&")).await }
    });

    let apply = {
        let navigate = navigate.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let mut parts = Vec::new();
            for (k, v) in [
                ("status", status.get()),
                ("instance_id", instance.get()),
                ("requester", requester.get()),
                ("since", to_rfc3339(&since.get())),
                ("until", to_rfc3339(&until.get())),
            ] {
                if !v.trim().is_empty() {
                    parts.push(format!("{k}={}", enc(v.trim())));
                }
            }
            navigate(&format!("/history?{}", parts.join("&")), Default::default());
        }
    };

    view! {
        <section class="card">
            <h1>"History"</h1>
            <form class="filters" on:submit=apply aria-label="History filters">
                <label for="f-status">"Status"
                    <select id="f-status" prop:value=move || status.get() on:change=move |ev| status.set(event_target_value(&ev))>
                        {STATUSES.iter().map(|s| view! { <option value=*s>{if s.is_empty() { "any" } else { s }}</option> }).collect_view()}
                    </select>
                </label>
                <label for="f-instance">"Instance ID"
                    <input id="f-instance" placeholder="i-…" prop:value=move || instance.get() on:input=move |ev| instance.set(event_target_value(&ev))/>
                </label>
                <label for="f-requester">"Requester"
                    <input id="f-requester" prop:value=move || requester.get() on:input=move |ev| requester.set(event_target_value(&ev))/>
                </label>
                <label for="f-since">"Started from"
                    <input id="f-since" type="datetime-local" prop:value=move || since.get() on:input=move |ev| since.set(event_target_value(&ev))/>
                </label>
                <label for="f-until">"Started before"
                    <input id="f-until" type="datetime-local" prop:value=move || until.get() on:input=move |ev| until.set(event_target_value(&ev))/>
                </label>
                <button type="submit" id="f-apply">"Apply filters"</button>
                <A href="/history">"Clear"</A>
            </form>
            {move || {
                // The audit export takes the same filters: every matching run, not only this page.
                let filters: Vec<String> = ["status", "instance_id", "requester", "since", "until"].iter()
                    .filter(|k| !q(k).is_empty()).map(|k| format!("&{k}={}", enc(&q(k)))).collect();
                let filters = filters.concat();
                view! {
                    <p class="help">"Export every run matching these filters, with its parameters, prior options and outputs: "
                        <a id="export-csv" rel="external" download href=format!("/api/v1/audit?format=csv{filters}")>"CSV"</a>" · "
                        <a id="export-json" rel="external" download="imds-console-audit.json" href=format!("/api/v1/audit?format=json{filters}")>"JSON"</a></p>
                }
            }}
            {move || match page.get() {
                None => view! { <p role="status">"Loading history…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(p)) => {
                    let next = p.next_cursor.clone();
                    let base: Vec<String> = ["status", "instance_id", "requester", "since", "until"].iter()
                        .filter(|k| !q(k).is_empty()).map(|k| format!("{k}={}", enc(&q(k)))).collect();
                    let newer = (!q("cursor").is_empty()).then(|| view! { <A href=format!("/history?{}", base.join("&"))>"Newest"</A> });
                    let older = next.map(|c| {
                        let mut parts = base.clone();
                        parts.push(format!("cursor={}", enc(&c)));
                        view! { <A href=format!("/history?{}", parts.join("&"))>"Older →"</A> }
                    });
                    view! {
                        <ExecutionTable rows=p.executions/>
                        <div class="pager">{newer}{older}</div>
                    }.into_any()
                }
            }}
        </section>
    }
}

//! Execution detail: parameters, status, times, outputs, the step timeline (live while it runs), a
//! rate-control parent's progress and children, and Stop.

use leptos::prelude::*;
use leptos::wasm_split::{wasm_split, SplitLoaderError};
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use shared::api::{ExecutionDetail, Progress};

use crate::api::{self, local_time};
use crate::components::modal::ConfirmModal;
use crate::components::on_demand::OnDemand;
use crate::components::status::StatusBadge;
use crate::live::use_live;
use crate::pages::history::ExecutionTable;

/// Share of `total`, as a percentage for SVG widths (attributes, which the CSP allows; inline styles it does not).
fn pct(n: u32, total: u32) -> f64 {
    if total == 0 {
        0.0
    } else {
        f64::from(n) * 100.0 / f64::from(total)
    }
}

#[component]
fn ProgressBar(p: Progress) -> impl IntoView {
    let text = format!(
        "{} of {} {}done: {} succeeded, {} failed, {} cancelled, {} running, {} waiting{}",
        p.succeeded + p.failed + p.cancelled,
        p.total,
        if p.unit == "locations" {
            "account-Regions "
        } else {
            ""
        },
        p.succeeded,
        p.failed,
        p.cancelled,
        p.running,
        p.waiting,
        if p.not_run > 0 {
            format!(", {} not run (the run ended first)", p.not_run)
        } else {
            String::new()
        }
    );
    view! {
        <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax=p.total
            aria-valuenow=p.succeeded + p.failed + p.cancelled aria-label="Rate control progress">
            <svg width="100%" height="100%" aria-hidden="true">{
                // One segment per state, laid end to end.
                let mut x = 0.0;
                [("p-ok", p.succeeded), ("p-bad", p.failed), ("p-cancel", p.cancelled), ("p-run", p.running)]
                    .into_iter()
                    .map(|(class, n)| {
                        let w = pct(n, p.total);
                        let seg = view! { <rect class=class x=format!("{x}%") y="0" width=format!("{w}%") height="100%"></rect> };
                        x += w;
                        seg
                    })
                    .collect_view()
            }</svg>
        </div>
        <p data-testid="progress-text">{text}</p>
    }
}

fn duration(start: Option<&str>, end: Option<&str>) -> String {
    let ms = |t: &str| js_sys::Date::new(&wasm_bindgen::JsValue::from_str(t)).get_time();
    match (start, end) {
        (Some(s), Some(e)) => format!("{:.1} s", (ms(e) - ms(s)) / 1000.0),
        (Some(_), None) => "running".into(),
        _ => "–".into(),
    }
}

#[component]
fn Detail(
    d: ExecutionDetail,
    on_stop: Callback<()>,
    stopping: Signal<bool>,
    on_revert: Callback<()>,
    reverting: Signal<bool>,
) -> impl IntoView {
    let s = d.summary.clone();
    // Viewers see no control they cannot use. Read reactively: after a full page load the session
    // may arrive after the run does.
    let session = crate::session::use_session();
    let stoppable = s.status.can_stop();
    let revertable = s.status.is_terminal() && !d.prior_options.is_empty() && d.rolled_back_by.is_empty();
    let can_stop = move || session.can_operate() && stoppable;
    let can_revert = move || session.can_operate() && revertable;
    let audit = {
        let override_reason = d
            .override_reason
            .clone()
            .map(|r| view! { <dt>"IMDSv1 check overridden"</dt><dd data-testid="override">{r}</dd> });
        let rollback_of = d.rollback_of.clone().map(
            |r| view! { <dt>"Rolls back"</dt><dd><A href=format!("/executions/{r}")>{r.clone()}</A></dd> },
        );
        let rolled_back = (!d.rolled_back_by.is_empty()).then(|| view! {
            <dt>"Rolled back by"</dt>
            <dd data-testid="rolled-back-by">{d.rolled_back_by.clone().into_iter().map(|r| { let label = r.clone(); view! { <A href=format!("/executions/{r}")>{label}</A>" " } }).collect_view()}</dd>
        });
        view! { {override_reason}{rollback_of}{rolled_back} }
    };
    let prior = (!d.prior_options.is_empty()).then(|| {
        let rows = d.prior_options.iter().map(|(id, m)| view! {
            <tr><td class="mono">{id.clone()}</td><td>{m.http_tokens.clone()}</td><td>{m.http_endpoint.clone()}</td><td>{m.http_put_response_hop_limit}</td></tr>
        }).collect_view();
        view! {
            <section class="card">
                <h2>"Options before this run"</h2>
                <table><thead><tr><th>"Instance"</th><th>"HttpTokens"</th><th>"Endpoint"</th><th>"Hop limit"</th></tr></thead><tbody>{rows}</tbody></table>
                <Show when=can_revert>
                    <p><button class="secondary" id="revert" disabled=move || reverting.get() on:click=move |_| on_revert.run(())>
                        "Revert: restore these options"
                    </button></p>
                </Show>
            </section>
        }
    });
    let params = d
        .parameters
        .iter()
        .map(|(k, v)| view! { <dt>{k.clone()}</dt><dd class="mono">{v.join(", ")}</dd> })
        .collect_view();
    let outputs = d
        .outputs
        .iter()
        .map(|(k, v)| view! { <tr><td>{k.clone()}</td><td class="mono">{v.join(", ")}</td></tr> })
        .collect_view();
    let parent = s
        .parent_execution_id
        .clone()
        .map(|p| view! { <dt>"Parent"</dt><dd><A href=format!("/executions/{p}")>{p.clone()}</A></dd> });
    let failure = d
        .failure_message
        .clone()
        .map(|m| view! { <div class="error-box" role="alert" data-testid="failure">{m}</div> });
    let rc = d.rate_control.clone().map(|rc| view! {
        <section class="card">
            <h2>"Rate control"</h2>
            <p>{format!("MaxConcurrency {} · MaxErrors {} · {} targets", rc.max_concurrency, rc.max_errors, rc.targets.len())}</p>
            <ProgressBar p=rc.progress.clone()/>
            <h3>"Child executions"</h3>
            <ExecutionTable rows=d.children.clone()/>
        </section>
    });
    let steps = d
        .steps
        .iter()
        .map(|st| {
            // Collapsed by default, as key/value pairs; a script's source has a toggle of its own, so
            // a step row stays as wide as its name and status.
            let inputs = (!st.inputs.is_empty()).then(|| {
                let pairs = st
                    .inputs
                    .iter()
                    .map(|(k, v)| {
                        let value = v.trim_matches('"').replace("\\n", "\n");
                        if k == "Script" || value.lines().count() > 3 {
                            view! { <dt>{k.clone()}</dt><dd><details class="source"><summary>"show source"</summary><pre>{value}</pre></details></dd> }.into_any()
                        } else {
                            view! { <dt>{k.clone()}</dt><dd class="mono">{value}</dd> }.into_any()
                        }
                    })
                    .collect_view();
                view! { <details class="step-io"><summary>{format!("{} input(s)", st.inputs.len())}</summary><dl class="kv">{pairs}</dl></details> }
            });
            let outputs = (!st.outputs.is_empty()).then(|| {
                let pairs = st
                    .outputs
                    .iter()
                    .map(|(k, v)| view! { <dt>{k.clone()}</dt><dd class="mono">{v.join(", ")}</dd> })
                    .collect_view();
                view! { <details class="step-io"><summary>{format!("{} output(s)", st.outputs.len())}</summary><dl class="kv">{pairs}</dl></details> }
            });
            let failure = st.failure_message.clone().map(|m| {
                format!(
                    "{m} ({} / {})",
                    st.failure_stage.clone().unwrap_or_default(),
                    st.failure_type.clone().unwrap_or_default()
                )
            });
            view! {
                <tr data-step=st.name.clone()>
                    <td class="mono">{st.name.clone()}</td>
                    <td class="mono">{st.action.clone()}</td>
                    <td><StatusBadge status=st.status.clone()/></td>
                    <td>{local_time(st.start_time.as_deref())}</td>
                    <td>{duration(st.start_time.as_deref(), st.end_time.as_deref())}</td>
                    <td>{inputs}</td>
                    <td>{outputs}</td>
                    <td>{failure}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="card">
            <h1>"Execution " <span class="mono">{s.execution_id.clone()}</span>" "
                <crate::components::copy::CopyButton text=s.execution_id.clone() id="copy-execution-id" label="Copy the execution ID"/></h1>
            <p>"Status: " <span data-testid="exec-status"><StatusBadge status=s.status.clone()/></span></p>
            {failure}
            <dl class="kv">
                <dt>"Document"</dt><dd>{s.document_name.clone()}</dd>
                <dt>"Account"</dt><dd data-testid="exec-account">{if s.account.is_empty() { "the console's own".to_owned() } else { s.account.clone() }}</dd>
                <dt>"Region"</dt><dd>{s.region.clone()}</dd>
                <dt>"Requester"</dt><dd>{s.requester.clone().unwrap_or_else(|| "outside the console".into())}</dd>
                {d.approved_by.clone().map(|a| view! { <dt>"Approved by"</dt><dd data-testid="exec-approved-by">{a}</dd> })}
                <dt>"Started"</dt><dd>{local_time(s.start_time.as_deref())}</dd>
                <dt>"Ended"</dt><dd>{local_time(s.end_time.as_deref())}</dd>
                {parent}
                {audit}
            </dl>
            <Show when=can_stop>
                <p><button class="danger" id="stop" disabled=move || stopping.get() on:click=move |_| on_stop.run(())>"Stop this run"</button></p>
            </Show>
        </section>
        <section class="card"><h2>"Parameters"</h2><dl class="kv">{params}</dl></section>
        {rc}
        {prior}
        <section class="card">
            <h2>"Steps"</h2>
            <div class="table-scroll">
            <table data-testid="steps">
                <thead><tr><th>"Step"</th><th>"Action"</th><th>"Status"</th><th>"Started"</th><th>"Duration"</th><th>"Inputs"</th><th>"Outputs"</th><th>"Failure"</th></tr></thead>
                <tbody>{steps}</tbody>
            </table>
            </div>
        </section>
        <section class="card"><h2>"Outputs"</h2>
            <div class="table-scroll"><table data-testid="outputs"><thead><tr><th scope="col">"Output"</th><th scope="col">"Value"</th></tr></thead><tbody>{outputs}</tbody></table></div>
        </section>
    }
}

#[component]
pub fn ExecutionDetailPage() -> impl IntoView {
    let params = use_params_map();
    let live = use_live();
    let id = move || params.read().get("id").unwrap_or_default();
    let detail = LocalResource::new(move || {
        live.version.track();
        let id = id();
        async move { api::execution(&id).await }
    });
    // Stop and Revert (their dialogs, the revert preview, the calls and their answers) are fetched
    // from their own WASM module the first time someone asks for either; most visits never do.
    let controls = RunControls {
        asking_stop: RwSignal::new(false),
        stopping: RwSignal::new(false),
        asking_revert: RwSignal::new(false),
        reverting: RwSignal::new(false),
    };
    let on_stop = Callback::new(move |()| controls.asking_stop.set(true));
    let on_revert = Callback::new(move |()| controls.asking_revert.set(true));
    view! {
        <OnDemand wanted=Signal::derive(move || controls.asking_stop.get() || controls.asking_revert.get()) loading="Loading…" part=move || {
            // Made again for another run (a link from this page to its rollback).
            let id = id();
            async move { run_controls_view(id, controls).await }
        }/>
        {move || match detail.get() {
            None => view! { <p role="status">"Loading the execution…"</p> }.into_any(),
            Some(Err(e)) => view! { <section class="card"><div class="error-box" role="alert" data-testid="detail-error">{e.explain()}</div></section> }.into_any(),
            Some(Ok(d)) => view! { <Detail d=d on_stop=on_stop stopping=controls.stopping.into() on_revert=on_revert reverting=controls.reverting.into()/> }.into_any(),
        }}
    }
}

/// What the page and its Stop and Revert dialogs share: whether each dialog is open, and whether
/// its call is under way (the page's buttons wait meanwhile).
#[derive(Clone, Copy)]
struct RunControls {
    asking_stop: RwSignal<bool>,
    stopping: RwSignal<bool>,
    asking_revert: RwSignal<bool>,
    reverting: RwSignal<bool>,
}

/// Stop and Revert, from their own WASM module. Stop says what stopping leaves done; the Revert
/// dialog previews exactly what a rollback would restore (read each time it opens, as things are
/// now), then starts it and says what started.
#[wasm_split(part_run_controls, wasm_split_path = ::leptos::wasm_split, fallible)]
fn run_controls_view(id: String, controls: RunControls) -> Result<AnyView, SplitLoaderError> {
    Ok(view! { <RunControlDialogs id=id controls=controls/> }.into_any())
}

#[component]
fn RunControlDialogs(id: String, controls: RunControls) -> impl IntoView {
    let id = StoredValue::new(id);
    let stop = Action::new_local(|id: &String| {
        let id = id.clone();
        async move { api::stop(&id).await }
    });
    Effect::new(move |_| controls.stopping.set(stop.pending().get()));
    let do_stop = Callback::new(move |()| {
        stop.dispatch(id.get_value());
    });
    let open = controls.asking_revert;
    let reverting = controls.reverting;
    let revert = Action::new_local(|id: &String| {
        let id = id.clone();
        async move { api::rollback(&id).await }
    });
    Effect::new(move |_| reverting.set(revert.pending().get()));
    let preview = LocalResource::new(move || {
        let open = open.get();
        let id = id.get_value();
        async move {
            if open {
                Some(api::rollback_preview(&id).await)
            } else {
                None
            }
        }
    });
    let ready = Signal::derive(move || matches!(preview.get(), Some(Some(Ok(_)))));
    let confirm = Callback::new(move |()| {
        revert.dispatch(id.get_value());
    });
    view! {
        <ConfirmModal open=controls.asking_stop title="Stop this run?" confirm_label="Stop run" on_confirm=do_stop>
            <p>{move || format!("SSM cancels {} and starts no more of its targets. Steps already done stay done: an instance already changed keeps its new options (Revert restores them).", id.get_value())}</p>
        </ConfirmModal>
        {move || stop.value().get().and_then(|r| r.err()).map(|e| view! { <div class="error-box" role="alert">{e.explain()}</div> })}
        <ConfirmModal open=open title="Revert this run?" confirm_label="Start the rollback" on_confirm=confirm
            confirm_disabled=Signal::derive(move || !ready.get())>
            {move || match preview.get().flatten() {
                None => view! { <p role="status">"Working out what the rollback would restore…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert" data-testid="revert-preview-error">{e.explain()}</div> }.into_any(),
                Some(Ok(p)) => view! {
                    <p>{format!("{} run(s) of the same runbook put {} instance(s) back as they were before this run:", p.runs, p.targets.len())}</p>
                    <div class="table-scroll">
                    <table data-testid="revert-preview">
                        <thead><tr><th>"Instance"</th><th>"Now"</th><th>"Restored to"</th></tr></thead>
                        <tbody>{p.targets.into_iter().map(|t| {
                            let fmt = |m: &shared::api::MetadataOptions| format!("tokens {} · endpoint {} · hop {}", m.http_tokens, m.http_endpoint, m.http_put_response_hop_limit);
                            view! { <tr data-instance-id=t.instance_id.clone()><td class="mono">{t.instance_id.clone()}</td><td>{fmt(&t.current)}</td><td>{fmt(&t.after)}</td></tr> }
                        }).collect_view()}</tbody>
                    </table>
                    </div>
                    {(!p.skipped.is_empty()).then(|| view! { <p class="help">{format!("Skipped (gone or terminated): {}", p.skipped.join(", "))}</p> })}
                    {(!p.notes.is_empty()).then(|| view! { <p class="help">{p.notes.join(" ")}</p> })}
                }.into_any(),
            }}
        </ConfirmModal>
        {move || revert.value().get().map(|r| match r {
            Ok(rb) => view! {
                <div class="ok-box" role="status" data-testid="reverted">"Rollback started: "
                    {rb.execution_ids.clone().into_iter().map(|e| { let label = e.clone(); view! { <A href=format!("/executions/{e}")>{label}</A>" " } }).collect_view()}
                    {rb.notes.join(" ")}
                </div>
            }.into_any(),
            Err(e) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
        })}
    }
}

//! Rollout plans: the list, a form to build one (waves by tag, each with a bake time), and a plan's
//! page, which previews it wave by wave, drives it (start, pause, resume with a reason, cancel) and
//! follows it as a timeline, live.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};
use shared::api::{OverrideInput, ParametersInput, TargetsInput};
use shared::plans::{
    HaltInput, PlanList, PlanPreview, PlanRequest, PlanStatus, PlanView, ResumeRequest, RollbackStatus,
    WaveInput, WaveStatus,
};

use crate::api;
use crate::components::modal::ConfirmModal;
use crate::live::use_live;
use crate::session::use_session;

fn plan_tone(s: PlanStatus) -> &'static str {
    match s {
        PlanStatus::Draft | PlanStatus::Paused => "status tone-waiting",
        PlanStatus::Running => "status tone-running",
        PlanStatus::Halted => "status tone-bad",
        PlanStatus::Cancelled => "status tone-stopped",
        PlanStatus::Completed => "status tone-ok",
    }
}

/// How a wave's rollback reads.
fn rollback_label(s: RollbackStatus) -> &'static str {
    match s {
        RollbackStatus::Waiting => "waiting for the wave's run to end",
        RollbackStatus::Running => "running",
        RollbackStatus::Held => "waiting for approval",
        RollbackStatus::Done => "done",
        RollbackStatus::Failed => "failed",
    }
}

fn wave_tone(s: WaveStatus) -> &'static str {
    match s {
        WaveStatus::Pending | WaveStatus::Held => "status tone-waiting",
        WaveStatus::Running | WaveStatus::Baking => "status tone-running",
        WaveStatus::Done => "status tone-ok",
        WaveStatus::Failed | WaveStatus::Halted => "status tone-bad",
        WaveStatus::Cancelled => "status tone-stopped",
    }
}

#[component]
pub fn PlansPage() -> impl IntoView {
    let session = use_session();
    let live = use_live();
    let plans = LocalResource::new(move || {
        live.version.track();
        api::get::<PlanList>("/plans")
    });
    view! {
        <section class="card">
            <h1>"Rollout plans"</h1>
            <p class="help">"A plan runs the runbook wave by wave (dev, then staging, then prod), waits out a bake time after each, and halts by itself when a wave's instances start refusing IMDSv1 calls."</p>
            {move || match plans.get() {
                None => view! { <p role="status">"Loading the plans…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(list)) if list.plans.is_empty() => view! { <p data-testid="plans-none">"No plan yet."</p> }.into_any(),
                Some(Ok(list)) => view! {
                    <div class="table-scroll"><table data-testid="plans">
                        <thead><tr><th scope="col">"Plan"</th><th scope="col">"Status"</th><th scope="col">"Waves done"</th><th scope="col">"Now"</th><th scope="col">"By"</th><th scope="col">"Created"</th></tr></thead>
                        <tbody>{list.plans.into_iter().map(|p| view! {
                            <tr data-plan-id=p.plan_id.clone()>
                                <td><A href=format!("/plans/{}", p.plan_id)>{p.name.clone()}</A></td>
                                <td><span class=plan_tone(p.status)>{p.status.as_str()}</span></td>
                                <td>{format!("{} of {}", p.waves_done, p.waves)}</td>
                                <td>{p.current.clone().unwrap_or_default()}</td>
                                <td>{p.requester.clone()}</td>
                                <td>{api::local_time(Some(&p.created_at))}</td>
                            </tr>
                        }).collect_view()}</tbody>
                    </table></div>
                }.into_any(),
            }}
        </section>
        {move || session.can_operate().then(|| view! { <NewPlan/> })}
    }
}

/// One wave of the form, as typed.
#[derive(Clone)]
struct WaveRow {
    name: RwSignal<String>,
    tag: RwSignal<String>,
    bake: RwSignal<String>,
}

impl WaveRow {
    fn new(name: &str, tag: &str, bake: &str) -> WaveRow {
        WaveRow {
            name: RwSignal::new(name.to_owned()),
            tag: RwSignal::new(tag.to_owned()),
            bake: RwSignal::new(bake.to_owned()),
        }
    }
}

#[component]
fn NewPlan() -> impl IntoView {
    let identity = crate::session::use_identity();
    let navigate = use_navigate();
    let name = RwSignal::new(String::new());
    let region = RwSignal::new(String::new());
    let concurrency = RwSignal::new("10".to_owned());
    let threshold = RwSignal::new("1".to_owned());
    let rollback = RwSignal::new(true);
    let alarm = RwSignal::new(String::new());
    let reason = RwSignal::new(String::new());
    let waves = RwSignal::new(vec![
        WaveRow::new("dev", "Env=dev", "60"),
        WaveRow::new("staging", "Env=staging", "60"),
        WaveRow::new("prod", "Env=prod", "0"),
    ]);
    let error: RwSignal<Option<String>> = RwSignal::new(None);
    let request = move || {
        let region = Some(region.get()).filter(|r| !r.is_empty()).or_else(|| {
            identity
                .get()
                .and_then(Result::ok)
                .and_then(|i| i.regions.first().cloned())
        });
        let reason = reason.get();
        PlanRequest {
            name: name.get(),
            waves: waves
                .get()
                .iter()
                .map(|w| {
                    let tag = w.tag.get();
                    let (key, value) = tag.split_once('=').unwrap_or((tag.as_str(), ""));
                    WaveInput {
                        name: w.name.get(),
                        account: None,
                        region: region.clone(),
                        targets: TargetsInput::Tag {
                            key: key.trim().to_owned(),
                            value: value.trim().to_owned(),
                        },
                        target_locations: None,
                        parameters: ParametersInput {
                            enforce_imdsv2: Some("required".into()),
                            ..ParametersInput::default()
                        },
                        max_concurrency: concurrency.get(),
                        max_errors: "0".into(),
                        bake_minutes: w.bake.get().trim().parse().unwrap_or(u32::MAX),
                        override_gate: (!reason.trim().is_empty()).then(|| OverrideInput {
                            reason: reason.clone(),
                        }),
                    }
                })
                .collect(),
            halt: HaltInput {
                rejected_calls: threshold.get().trim().parse().unwrap_or(0),
                rollback: rollback.get(),
                alarm_name: Some(alarm.get()).filter(|a| !a.trim().is_empty()),
            },
        }
    };
    let create = Action::new_local(move |req: &PlanRequest| {
        let req = req.clone();
        async move { api::post::<_, serde_json::Value>("/plans", &req).await }
    });
    Effect::new(move |_| match create.value().get() {
        Some(Ok(v)) => {
            if let Some(id) = v["plan_id"].as_str() {
                navigate(&format!("/plans/{id}"), Default::default());
            }
        }
        Some(Err(e)) => error.set(Some(e.explain())),
        None => {}
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = request();
        match req.validate() {
            Ok(()) => {
                error.set(None);
                create.dispatch(req);
            }
            Err(errs) => error.set(Some(
                errs.0
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    };
    view! {
        <section class="card">
            <h2>"New plan"</h2>
            <form on:submit=on_submit>
                <div class="filters">
                    <label>"Name "<input id="plan-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) placeholder="IMDSv2: dev → prod"/></label>
                    <label>"Region "<select id="plan-region" on:change=move |ev| region.set(event_target_value(&ev))>
                        {move || identity.get().and_then(Result::ok).map(|id| id.regions.into_iter().map(|r| {
                            let (value, chosen) = (r.clone(), r.clone());
                            view! { <option value=value selected=move || region.get() == chosen>{r}</option> }
                        }).collect_view())}
                    </select></label>
                    <label>"Instances at once "<input id="plan-concurrency" size="4" prop:value=move || concurrency.get() on:input=move |ev| concurrency.set(event_target_value(&ev))/></label>
                    <label>"Halt at refused IMDSv1 calls "<input id="plan-threshold" size="6" prop:value=move || threshold.get() on:input=move |ev| threshold.set(event_target_value(&ev))/></label>
                    <label>"CloudWatch alarm SSM stops a wave on (optional) "<input id="plan-alarm" size="20"
                        prop:value=move || alarm.get() on:input=move |ev| alarm.set(event_target_value(&ev))/></label>
                    <label><input type="checkbox" id="plan-rollback" prop:checked=move || rollback.get() on:change=move |ev| rollback.set(event_target_checked(&ev))/>" Roll a halted wave back"</label>
                </div>
                <div class="table-scroll"><table data-testid="plan-waves">
                    <thead><tr><th scope="col">"Wave"</th><th scope="col">"Targets (tag Key=value)"</th><th scope="col">"Bake (minutes)"</th><th scope="col"></th></tr></thead>
                    <tbody>{move || waves.get().into_iter().enumerate().map(|(i, w)| view! {
                        <tr>
                            <td><input class="wave-name" aria-label=format!("Wave {} name", i + 1) prop:value=move || w.name.get() on:input=move |ev| w.name.set(event_target_value(&ev))/></td>
                            <td><input class="wave-tag" aria-label=format!("Wave {} tag", i + 1) prop:value=move || w.tag.get() on:input=move |ev| w.tag.set(event_target_value(&ev))/></td>
                            <td><input class="wave-bake" size="5" aria-label=format!("Wave {} bake minutes", i + 1) prop:value=move || w.bake.get() on:input=move |ev| w.bake.set(event_target_value(&ev))/></td>
                            <td><button type="button" class="secondary" on:click=move |_| waves.update(|v| { if v.len() > 1 { v.remove(i); } })>"Remove"</button></td>
                        </tr>
                    }).collect_view()}</tbody>
                </table></div>
                <p><button type="button" class="secondary" id="add-wave" on:click=move |_| waves.update(|v| v.push(WaveRow::new("", "Env=", "0")))>"Add a wave"</button></p>
                <p><label>"Override reason for waves whose instances still call IMDSv1 (optional, recorded) "
                    <textarea id="plan-reason" rows="2" prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))></textarea></label></p>
                {move || error.get().map(|e| view! { <div class="error-box" role="alert" data-testid="plan-error">{e}</div> })}
                <button type="submit" id="create-plan">"Create plan"</button>
            </form>
        </section>
    }
}

#[component]
pub fn PlanPage() -> impl IntoView {
    let params = use_params_map();
    let live = use_live();
    let session = use_session();
    let id = move || params.read().get("id").unwrap_or_default();
    // A plan moves on the server between run events (bakes end, refusals are counted): while it runs,
    // the page reads it again every two seconds.
    let tick = RwSignal::new(0u32);
    let plan = LocalResource::new(move || {
        live.version.track();
        tick.track();
        let id = id();
        async move { api::get::<PlanView>(&format!("/plans/{id}")).await }
    });
    let handle = set_interval_with_handle(
        move || {
            // Also while a wave is being rolled back, whatever the plan's status.
            let running = plan
                .get_untracked()
                .and_then(Result::ok)
                .is_some_and(|p| p.status == PlanStatus::Running || p.waves.iter().any(|w| w.rolling_back()));
            if running {
                tick.update(|n| *n += 1);
            }
        },
        std::time::Duration::from_secs(2),
    )
    .ok();
    on_cleanup(move || {
        if let Some(h) = handle {
            h.clear();
        }
    });
    let act = Action::new_local(move |(action, reason): &(String, Option<String>)| {
        let (action, id) = (action.clone(), id());
        let body = ResumeRequest {
            override_reason: reason.clone(),
        };
        async move { api::post::<_, PlanView>(&format!("/plans/{id}/{action}"), &body).await }
    });
    Effect::new(move |_| {
        if act.value().get().is_some() {
            tick.update(|n| *n += 1);
        }
    });
    let preview_on = RwSignal::new(false);
    let preview = LocalResource::new(move || {
        let on = preview_on.get();
        let id = id();
        async move {
            if on {
                Some(api::post_action::<PlanPreview>(&format!("/plans/{id}/preview")).await)
            } else {
                None
            }
        }
    });
    let asking_cancel = RwSignal::new(false);
    let asking_rollback = RwSignal::new(false);
    let reason = RwSignal::new(String::new());
    view! {
        <ConfirmModal open=asking_rollback title="Roll this wave back?" confirm_label="Roll back"
            on_confirm=Callback::new(move |()| { act.dispatch(("rollback".into(), None)); })>
            <p>"The last wave that ran gets back the metadata options its instances had before it: IMDSv1 is allowed again where it was. If its run still goes, it is stopped first. Where a second person approved the wave, they approve the rollback too."</p>
        </ConfirmModal>
        <ConfirmModal open=asking_cancel title="Cancel this plan?" confirm_label="Cancel plan"
            on_confirm=Callback::new(move |()| { act.dispatch(("cancel".into(), None)); })>
            <p>"No further wave starts, and a wave running now is stopped in SSM. Instances already changed keep their new options (each wave's run can be reverted from its page)."</p>
        </ConfirmModal>
        {move || act.value().get().and_then(Result::err).map(|e| view! { <div class="error-box" role="alert" data-testid="plan-action-error">{e.explain()}</div> })}
        {move || match plan.get() {
            None => view! { <p role="status">"Loading the plan…"</p> }.into_any(),
            Some(Err(e)) => view! { <section class="card"><div class="error-box" role="alert">{e.explain()}</div></section> }.into_any(),
            Some(Ok(p)) => {
                let status = p.status;
                // The wave a rollback by hand would restore: the last one that ran, unless it is
                // being rolled back already.
                let rollback_wave = p
                    .waves
                    .iter()
                    .rev()
                    .find(|w| w.execution_id.is_some())
                    .filter(|w| !w.rolling_back())
                    .map(|w| w.name.clone())
                    .filter(|_| !matches!(status, PlanStatus::Draft | PlanStatus::Running));
                view! {
                    <section class="card">
                        <p><A href="/plans">"Plans"</A>" › "{p.name.clone()}</p>
                        <h1>{p.name.clone()}" "<span class=plan_tone(status) data-testid="plan-status">{status.as_str()}</span></h1>
                        <p class="help">{format!("By {}, created {}. Halts at {} refused IMDSv1 call(s){}.", p.requester, api::local_time(Some(&p.created_at)), p.halt.rejected_calls,
                            if p.halt.rollback { " and rolls the wave back" } else { "" })}</p>
                        {p.reason.clone().map(|r| view! { <div class="error-box" role="alert" data-testid="plan-reason">{r}</div> })}
                        // Read here, inside the page's reactive view: after a full page load the
                        // session arrives after the first render.
                        {session.can_operate().then(|| view! {
                            <p class="modal-actions">
                                <button class="secondary" id="plan-preview" on:click=move |_| preview_on.set(true)>"Preview"</button>" "
                                {(status == PlanStatus::Draft).then(|| view! { <button id="plan-start" on:click=move |_| { act.dispatch(("start".into(), None)); }>"Start"</button> })}
                                {(status == PlanStatus::Running).then(|| view! { <button class="secondary" id="plan-pause" on:click=move |_| { act.dispatch(("pause".into(), None)); }>"Pause"</button> })}
                                {matches!(status, PlanStatus::Paused | PlanStatus::Halted).then(|| view! {
                                    <label>"Reason (for a wave the readiness check holds) "<input id="resume-reason" prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/></label>
                                    <button id="plan-resume" on:click=move |_| { act.dispatch(("resume".into(), Some(reason.get()).filter(|r| !r.trim().is_empty()))); }>"Resume"</button>
                                })}" "
                                {(!status.is_final()).then(|| view! { <button class="danger" id="plan-cancel" on:click=move |_| asking_cancel.set(true)>"Cancel…"</button> })}" "
                                {rollback_wave.map(|name| view! { <button class="secondary" id="plan-rollback" on:click=move |_| asking_rollback.set(true)>{format!("Roll back wave {name}…")}</button> })}
                            </p>
                        })}
                        {move || preview.get().flatten().map(|r| match r {
                            Err(e) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                            Ok(pv) => view! {
                                <div class="table-scroll"><table data-testid="plan-preview">
                                    <thead><tr><th scope="col">"Wave"</th><th scope="col">"Instances"</th><th scope="col">"Would change"</th><th scope="col">"Readiness"</th></tr></thead>
                                    <tbody>{pv.waves.into_iter().map(|w| view! {
                                        <tr data-wave=w.name.clone()>
                                            <td>{w.name.clone()}</td><td>{w.targets}</td><td>{w.changes}</td>
                                            <td>{match (&w.error, w.blocked) {
                                                (Some(e), _) => e.clone(),
                                                (None, true) => format!("blocked: {} instance(s) still call IMDSv1", w.imdsv1_instances.len()),
                                                (None, false) if !w.imdsv1_instances.is_empty() => format!("overridden: {} instance(s) still call IMDSv1", w.imdsv1_instances.len()),
                                                (None, false) => "ready".to_owned(),
                                            }}</td>
                                        </tr>
                                    }).collect_view()}</tbody>
                                </table></div>
                            }.into_any(),
                        })}
                    </section>
                    <section class="card">
                        <h2>"Waves"</h2>
                        <ol class="timeline" data-testid="plan-timeline">{p.waves.into_iter().map(|w| {
                            let exec = w.execution_id.clone();
                            view! {
                                <li data-wave=w.name.clone() data-status=w.status.as_str()>
                                    <strong>{w.name.clone()}</strong>" "<span class=wave_tone(w.status)>{w.status.as_str()}</span>
                                    {exec.map(|e| { let label = e.clone(); view! { " · run "<A href=format!("/executions/{e}")>{label}</A> } })}
                                    <div class="help">{format!("bake {} min{}{}", w.bake_minutes,
                                        w.started_at.as_deref().map(|t| format!(" · started {}", api::local_time(Some(t)))).unwrap_or_default(),
                                        w.bake_until.as_deref().filter(|_| w.status == WaveStatus::Baking).map(|t| format!(" · baking until {}", api::local_time(Some(t)))).unwrap_or_default())}</div>
                                    {match (w.status, w.message.clone()) {
                                        // Waiting for a person is not an error: said plainly, with the way there.
                                        (WaveStatus::Held, m) => Some(view! {
                                            <div class="help" data-testid="wave-held">{m.unwrap_or_default()}" "<A href="/approvals">"Approvals"</A></div>
                                        }.into_any()),
                                        (_, Some(m)) => Some(view! { <div class="field-error">{m}</div> }.into_any()),
                                        (_, None) => None,
                                    }}
                                    {(!w.rejected.is_empty()).then(|| view! {
                                        <div data-testid="wave-rejected">{format!("Refused IMDSv1 calls: {}", w.rejected.iter().map(|r| format!("{} ({})", r.instance_id, r.imdsv1_calls)).collect::<Vec<_>>().join(", "))}</div>
                                    })}
                                    {w.rollback.clone().map(|r| view! {
                                        <div data-testid="wave-rollback" data-status=r.status.as_str()>
                                            <strong>{format!("Rollback {} ", rollback_label(r.status))}</strong>
                                            {format!("(asked by {}, {})", r.requested_by, api::local_time(Some(&r.requested_at)))}
                                            {r.message.clone().map(|m| view! { <div class="help">{m}</div> })}
                                            {(r.status == RollbackStatus::Held).then(|| view! { <A href="/approvals">"Approvals"</A> })}
                                        </div>
                                    })}
                                    {(!w.rollback_execution_ids.is_empty()).then(|| view! {
                                        <div>"Rollback runs: "{w.rollback_execution_ids.iter().map(|e| { let label = e.clone(); view! { <A href=format!("/executions/{e}")>{label}</A>" " } }).collect_view()}</div>
                                    })}
                                </li>
                            }
                        }).collect_view()}</ol>
                    </section>
                }.into_any()
            }
        }}
    }
}

//! Sources of new IMDSv1 instances: each account's metadata defaults, launch templates, Auto Scaling
//! groups and AMIs, with the instances they launched; a fix previewed in a dialog (what changes, who
//! launches from it, what enforcement would refuse), and the record of fixes with their revert.

use leptos::prelude::*;
use leptos::wasm_split::{wasm_split, SplitLoaderError};
use shared::sources::{
    SourceFixPreview, SourceFixRequest, SourceFixes, SourcePosture, SourceView, SourcesView,
};

use crate::api;
use crate::components::modal::ConfirmModal;
use crate::components::on_demand::OnDemand;
use crate::session::use_session;

fn posture_class(p: SourcePosture) -> &'static str {
    match p {
        SourcePosture::RequiresTokens => "status tone-ok",
        SourcePosture::AllowsImdsv1 => "status tone-stopped",
        SourcePosture::LaunchRefused => "status tone-bad",
    }
}

/// The path segment of a source ID (it holds colons, and a group name may hold anything).
fn segment(id: &str) -> String {
    js_sys::encode_uri_component(id).into()
}

#[component]
pub fn SourcesPage() -> impl IntoView {
    let session = use_session();
    // Bumped after a fix or a revert: the lists are read again.
    let changed = RwSignal::new(0u32);
    let data = LocalResource::new(move || {
        changed.track();
        api::get::<SourcesView>("/sources")
    });
    let fixes = LocalResource::new(move || {
        changed.track();
        api::get::<SourceFixes>("/sources/fixes")
    });
    let only_to_fix = RwSignal::new(true);
    let fixing: RwSignal<Option<SourceView>> = RwSignal::new(None);
    let outcome: RwSignal<Option<Result<String, String>>> = RwSignal::new(None);
    view! {
        <section class="card">
            <h1>"Sources of new IMDSv1 instances"</h1>
            <p class="help">"Enforcing today's instances is undone by tomorrow's launches. New instances take their launch template's metadata options, then the account's default for the region, then their AMI's. Fix the source once and every later launch requires IMDSv2."</p>
            {move || outcome.get().map(|o| match o {
                Ok(m) => view! { <div class="ok-box" role="status" data-testid="source-outcome">{m}</div> }.into_any(),
                Err(m) => view! { <div class="error-box" role="alert" data-testid="source-outcome">{m}</div> }.into_any(),
            })}
            <label><input type="checkbox" id="only-to-fix" prop:checked=move || only_to_fix.get()
                on:change=move |ev| only_to_fix.set(event_target_checked(&ev))/>" Only sources left to fix"</label>
            {move || match data.get() {
                None => view! { <p role="status">"Reading templates, groups, AMIs and account defaults…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(v)) => view! { <SourceTable view=v only_to_fix=only_to_fix can_fix=session.can_operate() fixing=fixing/> }.into_any(),
            }}
        </section>
        // The fix dialog (its preview, the fix and its answer), from its own WASM module when a
        // source is first chosen to fix.
        <OnDemand wanted=Signal::derive(move || fixing.get().is_some()) loading="Loading the fix…"
            part=move || async move { fix_dialog_view(fixing, changed, outcome).await }/>
        <section class="card">
            <h2>"Fixes"</h2>
            {move || match fixes.get() {
                None => view! { <p role="status">"Loading the fixes…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(f)) => view! { <FixTable fixes=f can_revert=session.can_operate() changed=changed outcome=outcome/> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn SourceTable(
    view: SourcesView,
    only_to_fix: RwSignal<bool>,
    can_fix: bool,
    fixing: RwSignal<Option<SourceView>>,
) -> impl IntoView {
    let unread: Vec<_> = view
        .places
        .iter()
        .filter(|p| p.error.is_some())
        .cloned()
        .collect();
    let sources = StoredValue::new(view.sources);
    view! {
        <p data-testid="to-fix">{format!("{} source(s) left to fix in {} account-region place(s).", view.to_fix, view.places.len())}</p>
        {(!unread.is_empty()).then(|| view! {
            <div class="error-box" role="alert" data-testid="sources-unread">
                {unread.into_iter().map(|p| view! {
                    <p>{format!("{} {}: {}{}", p.account, p.region, p.error.unwrap_or_default(),
                        p.as_of.map(|t| format!(" (showing the reading of {})", api::local_time(Some(&t)))).unwrap_or_default())}</p>
                }).collect_view()}
            </div>
        })}
        <div class="table-scroll">
        <table data-testid="sources">
            <thead><tr><th scope="col">"Source"</th><th scope="col">"Where"</th><th scope="col">"New instances"</th>
                <th scope="col">"Instances from it"</th><th scope="col">"Why"</th><th scope="col">"Action"</th></tr></thead>
            <tbody>{move || sources.with_value(|all| all.iter()
                .filter(|s| !only_to_fix.get() || s.posture != SourcePosture::RequiresTokens)
                .map(|s| {
                    let source = s.clone();
                    let action = if s.fixable && s.posture != SourcePosture::RequiresTokens && can_fix {
                        view! { <button class="secondary" data-testid="fix" on:click=move |_| fixing.set(Some(source.clone()))>"Fix…"</button> }.into_any()
                    } else {
                        view! { <span class="help">{s.advice.clone().unwrap_or_default()}</span> }.into_any()
                    };
                    view! {
                        <tr data-source-id=s.id.clone() data-kind=s.kind.as_str() data-name=s.name.clone()>
                            <td><div>{s.kind.label()}</div><div><strong>{s.name.clone()}</strong></div>
                                <div class="mono help">{s.resource_id.clone()}</div></td>
                            <td class="mono">{format!("{} {}", s.account, s.region)}</td>
                            <td><span class=posture_class(s.posture) data-testid="posture">{s.posture.label()}</span></td>
                            <td>{format!("{} ({} calling IMDSv1)", s.instances, s.imdsv1_instances)}
                                {(!s.related.is_empty()).then(|| view! { <div class="help">{format!("with {}", s.related.join(", "))}</div> })}</td>
                            <td class="help">{s.detail.clone()}</td>
                            <td>{action}</td>
                        </tr>
                    }
                }).collect_view())}</tbody>
        </table>
        </div>
    }
}

/// The fix dialog, from its own WASM module: what the fix changes, its options and the reason it
/// may need, then the fix and its answer.
#[wasm_split(part_fix_dialog, wasm_split_path = ::leptos::wasm_split, fallible)]
fn fix_dialog_view(
    fixing: RwSignal<Option<SourceView>>,
    changed: RwSignal<u32>,
    outcome: RwSignal<Option<Result<String, String>>>,
) -> Result<AnyView, SplitLoaderError> {
    Ok(view! { <FixDialog fixing=fixing changed=changed outcome=outcome/> }.into_any())
}

#[component]
fn FixDialog(
    fixing: RwSignal<Option<SourceView>>,
    changed: RwSignal<u32>,
    outcome: RwSignal<Option<Result<String, String>>>,
) -> impl IntoView {
    let open = RwSignal::new(false);
    let hop = RwSignal::new(String::new());
    let enforce = RwSignal::new(false);
    let reason = RwSignal::new(String::new());
    Effect::new(move |_| {
        if fixing.get().is_some() {
            hop.set(String::new());
            enforce.set(false);
            reason.set(String::new());
            open.set(true);
        }
    });
    Effect::new(move |_| {
        if !open.get() {
            fixing.set(None);
        }
    });
    let request = move || SourceFixRequest {
        hop_limit: hop.get().trim().parse().ok(),
        enforce_at_launch: enforce.get(),
        override_reason: Some(reason.get()).filter(|r| !r.trim().is_empty()),
    };
    let preview = LocalResource::new(move || {
        let source = fixing.get();
        let req = SourceFixRequest {
            override_reason: None,
            ..request()
        };
        async move {
            match source {
                Some(s) => Some(
                    api::post::<_, SourceFixPreview>(&format!("/sources/{}/preview", segment(&s.id)), &req)
                        .await,
                ),
                None => None,
            }
        }
    });
    let ready = Signal::derive(move || match preview.get().flatten() {
        Some(Ok(p)) => {
            !p.managed_by_policy
                && (!p.needs_override
                    || reason.get().trim().chars().count() >= shared::params::MIN_OVERRIDE_REASON)
        }
        _ => false,
    });
    let fix = Action::new_local(|(id, req): &(String, SourceFixRequest)| {
        let (id, req) = (id.clone(), req.clone());
        async move {
            api::post::<_, shared::sources::SourceFix>(&format!("/sources/{}/fix", segment(&id)), &req).await
        }
    });
    Effect::new(move |_| {
        if let Some(r) = fix.value().get() {
            outcome.set(Some(match r {
                Ok(f) => Ok(format!(
                    "Fixed {}: fix {} is recorded and can be reverted below.",
                    f.source_id, f.fix_id
                )),
                Err(e) => Err(e.explain()),
            }));
            changed.update(|n| *n += 1);
        }
    });
    let on_confirm = Callback::new(move |()| {
        if let Some(s) = fixing.get_untracked() {
            fix.dispatch((s.id.clone(), request()));
        }
    });
    let title = move || {
        fixing
            .get()
            .map(|s| format!("Fix {}: {}", s.kind.label(), s.name))
            .unwrap_or_default()
    };
    view! {
        <ConfirmModal open=open title=Signal::derive(title) confirm_label="Fix" on_confirm=on_confirm confirm_disabled=Signal::derive(move || !ready.get())>
            <p><label>"Hop limit of new instances (1-64; empty keeps it) "
                <input id="fix-hop" inputmode="numeric" size="4" prop:value=move || hop.get() on:input=move |ev| hop.set(event_target_value(&ev))/></label></p>
            {move || fixing.get().filter(|s| s.kind == shared::sources::SourceKind::AccountDefault).map(|_| view! {
                <p><label><input type="checkbox" id="fix-enforce" prop:checked=move || enforce.get()
                    on:change=move |ev| enforce.set(event_target_checked(&ev))/>
                    " Also refuse launches that do not require IMDSv2 (HttpTokensEnforced)"</label></p>
            })}
            {move || match preview.get().flatten() {
                None => view! { <p role="status">"Working out what the fix would change…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert" data-testid="fix-preview-error">{e.explain()}</div> }.into_any(),
                Some(Ok(p)) => view! { <FixPreview p=p reason=reason/> }.into_any(),
            }}
        </ConfirmModal>
    }
}

#[component]
fn FixPreview(p: SourceFixPreview, reason: RwSignal<String>) -> impl IntoView {
    let users = p.imdsv1_instances.len();
    view! {
        <div data-testid="fix-preview">
            {(p.fixes != p.source_id).then(|| view! { <p>{format!("The group launches from {}: the fix changes that template.", p.fixes)}</p> })}
            <ul>{p.changes.iter().map(|c| view! { <li>{c.clone()}</li> }).collect_view()}</ul>
            {(!p.groups.is_empty()).then(|| view! { <p>{format!("Groups launching from it: {}", p.groups.join(", "))}</p> })}
            {(!p.refused_after.is_empty()).then(|| view! {
                <div class="error-box" role="alert" data-testid="refused-after">
                    {format!("With launch-time enforcement, EC2 would refuse the launches of: {}. Fix them first, or leave enforcement off.", p.refused_after.join(", "))}
                </div>
            })}
            {p.warnings.iter().map(|w| view! {
                <div class="error-box" role="alert" data-testid="fix-warning">{w.clone()}</div>
            }).collect_view()}
            {p.policy_text.clone().map(|text| view! {
                <div class="error-box" role="alert">"A declarative policy of your organisation manages these defaults, so the console changes nothing here. Give this policy text to its administrators:"</div>
                <pre class="mono" data-testid="policy-text">{text}</pre>
            })}
            {(users > 0).then(|| view! {
                <p class="field-error">{format!("{users} instance(s) from this source still call IMDSv1: {}. Their replacements would refuse those calls.",
                    p.imdsv1_instances.iter().take(5).map(|u| format!("{} ({} calls)", u.instance_id, u.imdsv1_calls)).collect::<Vec<_>>().join(", "))}</p>
                <p><label>"Why it is safe to proceed (recorded with the fix) "
                    <textarea id="fix-reason" rows="2" prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))></textarea></label></p>
            })}
        </div>
    }
}

#[component]
fn FixTable(
    fixes: SourceFixes,
    can_revert: bool,
    changed: RwSignal<u32>,
    outcome: RwSignal<Option<Result<String, String>>>,
) -> impl IntoView {
    let asking: RwSignal<Option<String>> = RwSignal::new(None);
    let open = RwSignal::new(false);
    Effect::new(move |_| open.set(asking.get().is_some()));
    let revert = Action::new_local(|id: &String| {
        let id = id.clone();
        async move { api::post_action::<shared::sources::SourceFix>(&format!("/sources/fixes/{id}/revert")).await }
    });
    Effect::new(move |_| {
        if let Some(r) = revert.value().get() {
            outcome.set(Some(match r {
                // A template revert that could not undo everything says what stays changed.
                Ok(f) => match &f.error {
                    None => Ok(format!(
                        "Reverted fix {}: {} is as it was before.",
                        f.fix_id, f.source_id
                    )),
                    Some(left) => Err(format!("Reverted fix {}, but not everything: {left}", f.fix_id)),
                },
                Err(e) => Err(e.explain()),
            }));
            changed.update(|n| *n += 1);
        }
    });
    let on_confirm = Callback::new(move |()| {
        if let Some(id) = asking.get_untracked() {
            revert.dispatch(id);
        }
    });
    if fixes.fixes.is_empty() {
        return view! { <p data-testid="fixes-none">"No source has been fixed from this console yet."</p> }
            .into_any();
    }
    view! {
        <ConfirmModal open=open title="Revert this fix?" confirm_label="Revert" on_confirm=on_confirm>
            <p>"The source goes back to its state before the fix (the prior account default, or the prior default version of the template, with the fix's version deleted so groups on $Latest lose it too). New instances then allow IMDSv1 again. A template whose default someone changed since the fix is left as it is."</p>
        </ConfirmModal>
        <div class="table-scroll">
        <table data-testid="fixes">
            <thead><tr><th scope="col">"When"</th><th scope="col">"Source"</th><th scope="col">"By"</th>
                <th scope="col">"Reason"</th><th scope="col">"Status"</th><th scope="col">"Action"</th></tr></thead>
            <tbody>{fixes.fixes.into_iter().map(|f| {
                let id = f.fix_id.clone();
                let revertable = can_revert && f.status == "applied";
                view! {
                    <tr data-fix-id=f.fix_id.clone()>
                        <td>{api::local_time(Some(&f.created_at))}</td>
                        <td class="mono">{f.source_id.clone()}</td>
                        <td>{f.requester.clone()}</td>
                        <td>{f.override_reason.clone().unwrap_or_default()}</td>
                        <td data-testid="fix-status">{f.status.clone()}
                            {f.error.clone().map(|e| view! { <div class="field-error">{e}</div> })}
                            {f.reverted_by.clone().map(|w| view! { <div class="help">{format!("by {w}")}</div> })}</td>
                        <td>{revertable.then(|| view! {
                            <button class="secondary" data-testid="revert" on:click=move |_| asking.set(Some(id.clone()))>"Revert…"</button>
                        })}</td>
                    </tr>
                }
            }).collect_view()}</tbody>
        </table>
        </div>
    }
    .into_any()
}

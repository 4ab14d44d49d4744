//! Approvals: starts held for a second person, with why, who asked and what would run; another
//! operator or admin approves or rejects each with a comment. Decided ones are listed below.

use leptos::prelude::*;
use leptos_router::components::A;
use shared::approvals::{ApprovalList, ApprovalView, DecisionRequest};

use crate::api;
use crate::live::use_live;
use crate::session::use_session;

/// The start's parameters as the approver reads them: turning the endpoint off (and with it the
/// instance role's credentials) is said loudly, not as one more value.
fn parameters_line(start: &shared::StartPlan) -> AnyView {
    let p = &start.parameters;
    let endpoint_off = p.metadata_access.as_str() == "disabled";
    let places = start
        .target_locations
        .iter()
        .map(|l| l.places().len())
        .sum::<usize>();
    view! {
        <div data-testid="approval-parameters">
            {format!("EnforceIMDSv2 {} · MetadataAccess {} · hop limit {}{}", p.enforce_imdsv2.as_str(), p.metadata_access.as_str(),
                p.hop_limit.get(), if places > 0 { format!(" · {places} account-Region(s)") } else { String::new() })}
            {endpoint_off.then(|| view! {
                <div class="error-box" role="alert" data-testid="approval-endpoint-off">
                    "This turns the instance metadata endpoint off: software on these instances loses its instance role's credentials."
                </div>
            })}
        </div>
    }
    .into_any()
}

/// The requester's review, kept with the start: the first rows, riskiest first.
fn review_table(review: &[shared::api::PreviewTarget], count: usize) -> AnyView {
    const SHOWN: usize = 20;
    view! {
        <details data-testid="approval-review">
            <summary>{format!("What changes on each instance ({} shown of {count})", review.len().min(SHOWN))}</summary>
            <table>
                <thead><tr><th>"Instance"</th><th>"Changes"</th><th>"IMDSv1 calls"</th><th>"Warnings"</th></tr></thead>
                <tbody>{review.iter().take(SHOWN).map(|t| view! {
                    <tr><td class="mono">{t.instance_id.clone()}</td><td>{t.changes.join("; ")}</td>
                        <td>{t.imdsv1_calls.map_or("unknown".to_owned(), |c| c.to_string())}</td><td>{t.warnings.join("; ")}</td></tr>
                }).collect_view()}</tbody>
            </table>
        </details>
    }
    .into_any()
}

#[component]
pub fn ApprovalsPage() -> impl IntoView {
    let live = use_live();
    let session = use_session();
    let changed = RwSignal::new(0u32);
    let approvals = LocalResource::new(move || {
        live.version.track();
        changed.track();
        api::get::<ApprovalList>("/approvals?all=true")
    });
    let decide = Action::new_local(|(id, verb, comment): &(i64, &'static str, String)| {
        let (id, verb) = (*id, *verb);
        let body = DecisionRequest {
            comment: Some(comment.clone()).filter(|c| !c.trim().is_empty()),
        };
        async move { api::post::<_, ApprovalView>(&format!("/approvals/{id}/{verb}"), &body).await }
    });
    Effect::new(move |_| {
        if decide.value().get().is_some() {
            changed.update(|n| *n += 1);
        }
    });
    let me = move || session.me.get().map(|m| m.name).unwrap_or_default();
    view! {
        <section class="card">
            <h1>"Approvals"</h1>
            <p class="help">"Starts the approval policy holds for a second person (the policy is on the Admin page). Nothing is sent to AWS before an approval; the person who asked cannot approve their own."</p>
            {move || decide.value().get().map(|r| match r {
                Ok(a) => view! { <div class="ok-box" role="status" data-testid="decided">{format!("Approval {} {}.", a.approval_id, a.status)}
                    {a.execution_id.map(|e| { let label = e.clone(); view! { " Run "<A href=format!("/executions/{e}")>{label}</A> } })}</div> }.into_any(),
                Err(e) => view! { <div class="error-box" role="alert" data-testid="decided">{e.explain()}</div> }.into_any(),
            })}
            {move || match approvals.get() {
                None => view! { <p role="status">"Loading the approvals…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(list)) => {
                    let (pending, decided): (Vec<ApprovalView>, Vec<ApprovalView>) =
                        list.approvals.into_iter().partition(|a| a.status == "pending");
                    let can = session.can_operate();
                    view! {
                        <h2>"Waiting"</h2>
                        {if pending.is_empty() {
                            view! { <p data-testid="approvals-none">"Nothing is waiting for approval."</p> }.into_any()
                        } else {
                            view! { <div class="table-scroll"><table data-testid="approvals-pending">
                                <thead><tr><th scope="col">"Start"</th><th scope="col">"Why"</th><th scope="col">"Asked by"</th><th scope="col">"Expires"</th><th scope="col">"Decision"</th></tr></thead>
                                <tbody>{pending.into_iter().map(|a| {
                                    let comment = RwSignal::new(String::new());
                                    let id = a.approval_id;
                                    let own = a.requester == me();
                                    let what = a.instance_id.clone().or(a.targets.clone()).unwrap_or_default();
                                    view! {
                                        <tr data-approval-id=id.to_string()>
                                            <td><div class="mono">{what}</div>
                                                <div class="help">{format!("{} instance(s) · {}{}", a.instance_count,
                                                    if a.account.is_empty() { String::new() } else { format!("{} ", a.account) }, a.region)}</div>
                                                {a.override_reason.clone().map(|r| view! { <div class="help">{format!("Override: {r}")}</div> })}
                                                {a.plan_wave.clone().map(|w| view! { <div class="help">{w}</div> })}
                                                {a.start.clone().map(|s| parameters_line(&s))}
                                                {(!a.review.is_empty()).then(|| review_table(&a.review, a.instance_count))}</td>
                                            <td>{a.why.clone()}</td>
                                            <td>{a.requester.clone()}<div class="help">{api::local_time(Some(&a.created_at))}</div></td>
                                            <td>{api::local_time(Some(&a.expires_at))}</td>
                                            <td>{if !can {
                                                view! { <span class="help">"Operators and admins decide."</span> }.into_any()
                                            } else if own {
                                                view! { <span class="help">"You asked for it: someone else approves."</span> }.into_any()
                                            } else {
                                                view! {
                                                    <input class="approval-comment" aria-label=format!("Comment on approval {id}") placeholder="Comment"
                                                        prop:value=move || comment.get() on:input=move |ev| comment.set(event_target_value(&ev))/>" "
                                                    <button data-testid="approve" on:click=move |_| { decide.dispatch((id, "approve", comment.get_untracked())); }>"Approve"</button>" "
                                                    <button class="danger" data-testid="reject" on:click=move |_| { decide.dispatch((id, "reject", comment.get_untracked())); }>"Reject"</button>
                                                }.into_any()
                                            }}</td>
                                        </tr>
                                    }
                                }).collect_view()}</tbody>
                            </table></div> }.into_any()
                        }}
                        <h2>"Decided"</h2>
                        <div class="table-scroll"><table data-testid="approvals-decided">
                            <thead><tr><th scope="col">"Start"</th><th scope="col">"Why"</th><th scope="col">"Asked by"</th><th scope="col">"Decision"</th><th scope="col">"Run"</th></tr></thead>
                            <tbody>{decided.into_iter().map(|a| view! {
                                <tr data-approval-id=a.approval_id.to_string()>
                                    <td class="mono">{a.instance_id.clone().or(a.targets.clone()).unwrap_or_default()}</td>
                                    <td>{a.why.clone()}</td>
                                    <td>{a.requester.clone()}</td>
                                    <td data-testid="decision">{format!("{}{}", a.status, a.decided_by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default())}
                                        {a.comment.clone().map(|c| view! { <div class="help">{c}</div> })}</td>
                                    <td>{a.execution_id.clone().map(|e| { let label = e.clone(); view! { <A href=format!("/executions/{e}")>{label}</A> } })}</td>
                                </tr>
                            }).collect_view()}</tbody>
                        </table></div>
                    }.into_any()
                }
            }}
        </section>
    }
}

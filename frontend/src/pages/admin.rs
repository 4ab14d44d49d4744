//! Admin: users (add, disable, enable), API tokens (create, shown once; revoke), the sign-in log, a
//! filtered page at a time, and the AWS permission check (`imds-console doctor` on a page).

use leptos::prelude::*;
use leptos::wasm_split::{wasm_split, SplitLoaderError};
use shared::api::{CreateTokenRequest, CreateUserRequest, Role};

use crate::api;
use crate::components::on_demand::or_unavailable;

fn role_of(raw: &str) -> Role {
    Role::parse(raw).unwrap_or(Role::Viewer)
}

#[component]
pub fn AdminPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let users = LocalResource::new(move || {
        version.track();
        api::users()
    });
    let tokens = LocalResource::new(move || {
        version.track();
        api::tokens()
    });
    let (ev_kind, ev_user, ev_cursor) = (
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(None::<String>),
    );
    let events = LocalResource::new(move || {
        version.track();
        let mut query = vec![("kind", ev_kind.get()), ("user", ev_user.get())];
        if let Some(c) = ev_cursor.get() {
            query.push(("cursor", c));
        }
        let query = query
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", api::enc(&v)))
            .collect::<Vec<_>>()
            .join("&");
        async move { api::get::<shared::api::AuthEventPage>(&format!("/audit/auth?{query}")).await }
    });
    let (name, role, password, scope) = (
        RwSignal::new(String::new()),
        RwSignal::new("operator".to_owned()),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
    );
    let add = Action::new_local(|req: &CreateUserRequest| {
        let req = req.clone();
        async move { api::post_empty("/users", &req).await }
    });
    let disable = Action::new_local(|name: &String| {
        let name = name.clone();
        async move { api::act(&format!("/users/{name}/disable")).await }
    });
    let enable = Action::new_local(|name: &String| {
        let name = name.clone();
        async move { api::act(&format!("/users/{name}/enable")).await }
    });
    // Disabling asks first, naming the user (and saying so when it is the person's own account).
    let asking_disable = RwSignal::new(false);
    let to_disable = RwSignal::new(String::new());
    let do_disable = Callback::new(move |()| {
        disable.dispatch(to_disable.get_untracked());
    });
    let me = crate::session::use_session().me;
    let token_role = RwSignal::new(String::new());
    let (token_name, token_days) = (RwSignal::new(String::new()), RwSignal::new("90".to_owned()));
    let create = Action::new_local(|req: &CreateTokenRequest| {
        let req = req.clone();
        async move { api::create_token(&req).await }
    });
    let revoke = Action::new_local(|id: &i64| {
        let id = *id;
        async move { api::act(&format!("/tokens/{id}/revoke")).await }
    });
    // Read again after each change (not when the page opens: the first read is already under way).
    Effect::new(move |first: Option<()>| {
        add.value().track();
        disable.value().track();
        enable.value().track();
        create.value().track();
        revoke.value().track();
        if first.is_some() {
            version.update(|v| *v += 1);
        }
    });
    let add_user = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        add.dispatch(CreateUserRequest {
            name: name.get_untracked(),
            role: role_of(&role.get_untracked()),
            password: password.get_untracked(),
            accounts: {
                let ids = shared::split_list(&scope.get_untracked());
                (!ids.is_empty()).then_some(ids)
            },
        });
    };
    let create_token = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let r = token_role.get_untracked();
        // A token acts as its owner, so it is always the signed-in person's own.
        create.dispatch(CreateTokenRequest {
            user: me.get_untracked().map(|m| m.name).unwrap_or_default(),
            role: (!r.is_empty()).then(|| role_of(&r)),
            name: Some(token_name.get_untracked()),
            expires_in_days: token_days.get_untracked().parse().ok(),
        });
    };
    view! {
        <crate::components::modal::ConfirmModal open=asking_disable title="Disable this user?" confirm_label="Disable" on_confirm=do_disable>
            <p>{move || {
                let name = to_disable.get();
                let own = me.get().is_some_and(|m| m.name == name);
                format!(
                    "{name} is signed out at once, and their API tokens stop working.{}",
                    if own { " This is your own account: you will be signed out too." } else { "" }
                )
            }}</p>
        </crate::components::modal::ConfirmModal>
        <section class="card">
            <h1>"Users"</h1>
            {move || match users.get() {
                None => view! { <p role="status">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(list)) => view! {
                    <table data-testid="users">
                        <thead><tr><th>"Name"</th><th>"Role"</th><th>"Accounts"</th><th>"Status"</th><th>"Since"</th><th>"Action"</th></tr></thead>
                        <tbody>{list.into_iter().map(|u| {
                            let n = u.name.clone();
                            view! {
                                <tr data-user=u.name.clone()>
                                    <td>{u.name.clone()}</td><td>{u.role.as_str()}</td>
                                    <td>{u.accounts.clone().map_or_else(|| "all".to_owned(), |a| a.join(", "))}</td>
                                    <td>{if u.disabled { "disabled" } else { "enabled" }}</td><td>{api::local_time(Some(&u.created_at))}</td>
                                    <td>{if u.disabled {
                                        view! { <button class="secondary" on:click=move |_| { enable.dispatch(n.clone()); }>"Enable"</button> }.into_any()
                                    } else {
                                        view! { <button class="secondary" data-disable=n.clone() on:click=move |_| { to_disable.set(n.clone()); asking_disable.set(true); }>"Disable"</button> }.into_any()
                                    }}</td>
                                </tr>
                            }
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
            <h2>"Add a user"</h2>
            <form class="filters" on:submit=add_user aria-label="Add a user">
                <label for="new-user-name">"Name"<input id="new-user-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/></label>
                <label for="new-user-role">"Role"
                    <select id="new-user-role" prop:value=move || role.get() on:change=move |ev| role.set(event_target_value(&ev))>
                        <option value="viewer">"viewer (reads)"</option>
                        <option value="operator">"operator (starts, stops, rolls back)"</option>
                        <option value="admin">"admin (also users and tokens)"</option>
                    </select>
                </label>
                <label for="new-user-password">"Password (12+ characters)"
                    <input id="new-user-password" type="password" autocomplete="new-password" prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
                </label>
                <label for="new-user-accounts">"Accounts (optional)"
                    <input id="new-user-accounts" placeholder="every account; or IDs, comma-separated" prop:value=move || scope.get() on:input=move |ev| scope.set(event_target_value(&ev))/>
                </label>
                <button type="submit" id="add-user">"Add user"</button>
            </form>
            {move || disable.value().get().and_then(Result::err).map(|e| view! {
                <div class="error-box" role="alert" data-testid="disable-error">{e.explain()}</div>
            })}
            {move || add.value().get().map(|r| match r {
                Ok(()) => view! { <div class="ok-box" role="status" data-testid="user-added">"User added."</div> }.into_any(),
                Err(e) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
            })}
        </section>
        <section class="card">
            <h1>"API tokens"</h1>
            <form class="filters" on:submit=create_token aria-label="Create a token">
                <span class="help" data-testid="token-owner">{move || format!("Your own token, as {}", me.get().map(|m| m.name).unwrap_or_default())}</span>
                <label for="token-role">"Role"
                    <select id="token-role" on:change=move |ev| token_role.set(event_target_value(&ev))>
                        <option value="">"the user's role"</option>
                        <option value="viewer">"viewer"</option>
                        <option value="operator">"operator"</option>
                        <option value="admin">"admin"</option>
                    </select>
                </label>
                <label for="token-name">"Name"<input id="token-name" placeholder="CI pipeline" maxlength="64" prop:value=move || token_name.get() on:input=move |ev| token_name.set(event_target_value(&ev))/></label>
                <label for="token-days">"Expires"
                    <select id="token-days" prop:value=move || token_days.get() on:change=move |ev| token_days.set(event_target_value(&ev))>
                        <option value="7">"in 7 days"</option>
                        <option value="30">"in 30 days"</option>
                        <option value="90">"in 90 days"</option>
                        <option value="365">"in a year"</option>
                        <option value="never">"never (until revoked)"</option>
                    </select>
                </label>
                <button type="submit" id="create-token">"Create token"</button>
            </form>
            {move || create.value().get().map(|r| match r {
                Ok(t) => {
                    let until = t.expires_at.as_deref().map_or_else(|| "no expiry".to_owned(), |e| format!("expires {}", api::local_time(Some(e))));
                    view! {
                        <div class="ok-box" role="status">{format!("Token {} \"{}\" ({}, {until}), shown only now: ", t.id, t.name.clone().unwrap_or_default(), t.role.as_str())}
                            <code data-testid="new-token">{t.token.clone()}</code>" "
                            <crate::components::copy::CopyButton text=t.token.clone() id="copy-token" label="Copy the new token"/></div>
                    }.into_any()
                }
                Err(e) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
            })}
            {move || tokens.get().and_then(Result::ok).map(|list| view! {
                <table data-testid="tokens">
                    <thead><tr><th>"ID"</th><th>"Name"</th><th>"User"</th><th>"Role"</th><th>"Status"</th><th>"Expires"</th><th>"Last used"</th><th>"Action"</th></tr></thead>
                    <tbody>{list.into_iter().map(|t| {
                        let id = t.id;
                        view! {
                            <tr>
                                <td>{t.id}</td><td>{t.name.clone().unwrap_or_default()}</td><td>{t.user.clone()}</td><td>{t.role.as_str()}</td>
                                <td>{match (t.revoked, t.expired) { (true, _) => "revoked", (false, true) => "expired", _ => "active" }}</td>
                                <td>{t.expires_at.as_deref().map_or_else(|| "never".to_owned(), |e| api::local_time(Some(e)))}</td>
                                <td>{api::local_time(t.last_used_at.as_deref())}</td>
                                <td>{(!t.revoked).then(|| view! { <button class="secondary" on:click=move |_| { revoke.dispatch(id); }>"Revoke"</button> })}</td>
                            </tr>
                        }
                    }).collect_view()}</tbody>
                </table>
            })}
        </section>
        // The less-used tools are drawn, and their code fetched, when their section is first opened.
        <ExpandableCard id="admin-policy" title="Approval policy">
            <Suspense fallback=loading>{or_unavailable(approval_policy_view())}</Suspense>
        </ExpandableCard>
        <ExpandableCard id="admin-webhooks" title="Webhooks">
            <Suspense fallback=loading>{or_unavailable(webhooks_view())}</Suspense>
        </ExpandableCard>
        <ExpandableCard id="admin-permissions" title="AWS permissions">
            <Suspense fallback=loading>{or_unavailable(permission_check_view())}</Suspense>
        </ExpandableCard>
        <section class="card">
            <h1>"Sign-ins and account changes"</h1>
            <form class="filters" aria-label="Filter the log" on:submit=|ev: leptos::ev::SubmitEvent| ev.prevent_default()>
                <label for="ev-kind">"What"
                    <select id="ev-kind" on:change=move |ev| { ev_kind.set(event_target_value(&ev)); ev_cursor.set(None); }>
                        <option value="">"everything"</option>
                        {["login", "login-failed", "login-throttled", "sso-login", "logout", "change-refused", "run-stopped",
                          "token-used", "token-created", "token-revoked", "user-added", "user-disabled", "user-enabled",
                          "role-changed", "password-changed"]
                            .into_iter().map(|k| view! { <option value=k>{k}</option> }).collect_view()}
                    </select>
                </label>
                <label for="ev-user">"User"
                    <input id="ev-user" prop:value=move || ev_user.get()
                        on:change=move |ev| { ev_user.set(event_target_value(&ev)); ev_cursor.set(None); }/>
                </label>
            </form>
            {move || events.get().map(|r| match r {
                Err(e) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Ok(page) => {
                    let next = page.next_cursor.clone();
                    view! {
                        <table data-testid="auth-events">
                            <thead><tr><th>"When"</th><th>"What"</th><th>"Who"</th><th>"Subject"</th><th>"From"</th><th>"Times"</th></tr></thead>
                            <tbody>{page.events.into_iter().map(|e| view! {
                                <tr><td>{api::local_time(Some(&e.at))}</td><td>{e.kind}</td><td>{e.actor.unwrap_or_default()}</td>
                                    <td>{e.subject.unwrap_or_default()}</td><td>{e.address.unwrap_or_default()}</td><td>{e.count}</td></tr>
                            }).collect_view()}</tbody>
                        </table>
                        <div class="pager">
                            <button class="secondary" id="ev-newest" disabled=move || ev_cursor.get().is_none()
                                on:click=move |_| ev_cursor.set(None)>"Newest"</button>
                            <button class="secondary" id="ev-older" disabled=next.is_none()
                                on:click=move |_| ev_cursor.set(next.clone())>"Older →"</button>
                        </div>
                    }.into_any()
                }
            })}
        </section>
    }
}

fn loading() -> impl IntoView {
    view! { <p role="status">"Loading…"</p> }
}

/// A card whose body is drawn when it is first opened (CloudScape's expandable section), and then
/// kept, with what was typed into it, when it is closed again.
#[component]
fn ExpandableCard(id: &'static str, title: &'static str, children: ChildrenFn) -> impl IntoView {
    let opened = RwSignal::new(false);
    view! {
        <section class="card" id=id>
            <details class="expandable" on:toggle=move |_| if !opened.get_untracked() { opened.set(true) }>
                <summary><h2>{title}</h2></summary>
                {move || opened.get().then(|| children())}
            </details>
        </section>
    }
}

#[wasm_split(part_approval_policy, wasm_split_path = ::leptos::wasm_split, fallible)]
fn approval_policy_view() -> Result<AnyView, SplitLoaderError> {
    Ok(view! { <ApprovalPolicyForm/> }.into_any())
}

#[wasm_split(part_webhooks, wasm_split_path = ::leptos::wasm_split, fallible)]
fn webhooks_view() -> Result<AnyView, SplitLoaderError> {
    Ok(view! { <Webhooks/> }.into_any())
}

#[wasm_split(part_permission_check, wasm_split_path = ::leptos::wasm_split, fallible)]
fn permission_check_view() -> Result<AnyView, SplitLoaderError> {
    Ok(view! { <PermissionCheck/> }.into_any())
}

/// The permission check: what the console's AWS identity (and an AutomationAssumeRole) may do, run
/// on request because it makes a dozen AWS calls per region.
#[component]
fn PermissionCheck() -> impl IntoView {
    use shared::api::{CheckResult, PermissionReport};
    let role = RwSignal::new(String::new());
    let run = Action::new_local(|role: &String| {
        let query = if role.trim().is_empty() {
            String::new()
        } else {
            format!("?assume_role={}", api::enc(role.trim()))
        };
        async move { api::get::<PermissionReport>(&format!("/doctor{query}")).await }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        run.dispatch(role.get_untracked());
    };
    view! {
        <div>
            <p class="help">"Checks, without changing anything, that the console's identity (and the AutomationAssumeRole runs will use) may do each action the console and the runbook need: harmless calls, EC2's dry run, and IAM's policy simulator where allowed. The same check as "<code>"imds-console doctor"</code>"."</p>
            <form class="filters" on:submit=submit aria-label="Check AWS permissions">
                <label for="doctor-role">"AutomationAssumeRole (optional)"
                    <input id="doctor-role" placeholder="arn:aws:iam::123456789012:role/…" prop:value=move || role.get()
                        on:input=move |ev| role.set(event_target_value(&ev))/>
                </label>
                <button type="submit" id="run-doctor" disabled=move || run.pending().get()>"Check permissions"</button>
            </form>
            {move || run.pending().get().then(|| view! { <p role="status">"Checking…"</p> })}
            {move || run.value().get().map(|r| match r {
                Err(e) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Ok(report) => {
                    let denied = report.denied();
                    view! {
                        <p>"Identity: "<code>{report.identity.clone()}</code></p>
                        {if denied == 0 {
                            view! { <div class="ok-box" role="status" data-testid="doctor-ok">"Every checked action is allowed."</div> }.into_any()
                        } else {
                            view! { <div class="error-box" role="alert" data-testid="doctor-denied">{format!("{denied} action(s) denied; each row says what to change.")}</div> }.into_any()
                        }}
                        <div class="table-scroll">
                        <table data-testid="doctor">
                            <thead><tr><th>"Action"</th><th>"As"</th><th>"Region"</th><th>"Result"</th><th>"How"</th><th>"Fix or detail"</th></tr></thead>
                            <tbody>{report.checks.into_iter().map(|c| {
                                let (class, text) = match c.result {
                                    CheckResult::Allowed => ("status tone-ok", "allowed"),
                                    CheckResult::Denied => ("status tone-bad", "denied"),
                                    CheckResult::Unchecked => ("status tone-waiting", "unchecked"),
                                };
                                view! {
                                    <tr data-action=c.action.clone() data-result=text>
                                        <td><code>{c.action.clone()}</code></td><td>{c.principal.clone()}</td>
                                        <td>{c.region.clone().unwrap_or_else(|| "global".into())}</td>
                                        <td><span class=class>{text}</span></td><td>{c.method.clone()}</td>
                                        <td>{c.fix.clone().unwrap_or_else(|| if c.result == CheckResult::Allowed { String::new() } else { c.detail.clone() })}</td>
                                    </tr>
                                }
                            }).collect_view()}</tbody>
                        </table>
                        </div>
                    }.into_any()
                }
            })}
        </div>
    }
}

/// The approval policy: which starts (and plan waves) wait for a second person.
#[component]
fn ApprovalPolicyForm() -> impl IntoView {
    use shared::approvals::ApprovalPolicy;
    let tags = RwSignal::new(String::new());
    let more_than = RwSignal::new(String::new());
    let overrides = RwSignal::new(false);
    let hours = RwSignal::new("24".to_owned());
    let current = LocalResource::new(|| api::get::<ApprovalPolicy>("/approval-policy"));
    Effect::new(move |_| {
        if let Some(Ok(p)) = current.get() {
            tags.set(p.tags.join(", "));
            more_than.set(p.more_than_instances.map(|n| n.to_string()).unwrap_or_default());
            overrides.set(p.overrides);
            hours.set(p.expires_after_hours.to_string());
        }
    });
    let save = Action::new_local(|p: &ApprovalPolicy| {
        let p = p.clone();
        async move { api::put::<_, ApprovalPolicy>("/approval-policy", &p).await }
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        save.dispatch(ApprovalPolicy {
            tags: tags
                .get_untracked()
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            more_than_instances: more_than.get_untracked().trim().parse().ok(),
            overrides: overrides.get_untracked(),
            expires_after_hours: hours.get_untracked().trim().parse().unwrap_or(0),
        });
    };
    view! {
        <div>
            <p class="help">"Starts and plan waves matching any rule wait for a second operator or admin (Approvals page)."</p>
            <form on:submit=on_submit class="filters">
                <label>"Target tags (Key=value, comma-separated) "<input id="policy-tags" placeholder="Env=prod"
                    prop:value=move || tags.get() on:input=move |ev| tags.set(event_target_value(&ev))/></label>
                <label>"More than N instances "<input id="policy-more-than" size="5"
                    prop:value=move || more_than.get() on:input=move |ev| more_than.set(event_target_value(&ev))/></label>
                <label><input type="checkbox" id="policy-overrides" prop:checked=move || overrides.get()
                    on:change=move |ev| overrides.set(event_target_checked(&ev))/>" Overrides of the readiness check"</label>
                <label>"Expires after (hours) "<input id="policy-hours" size="4"
                    prop:value=move || hours.get() on:input=move |ev| hours.set(event_target_value(&ev))/></label>
                <button type="submit" id="policy-save">"Save policy"</button>
            </form>
            {move || save.value().get().map(|r| match r {
                Ok(_) => view! { <div class="ok-box" role="status" data-testid="policy-saved">"Saved."</div> }.into_any(),
                Err(e) => view! { <div class="error-box" role="alert" data-testid="policy-saved">{e.explain()}</div> }.into_any(),
            })}
        </div>
    }
}

/// Webhooks: add one (JSON or Slack), send it a test, delete it, and see its recent deliveries.
#[component]
fn Webhooks() -> impl IntoView {
    use shared::webhooks::{CreateWebhookRequest, WebhookFormat, WebhookList};
    let changed = RwSignal::new(0u32);
    let hooks = LocalResource::new(move || {
        changed.track();
        api::get::<WebhookList>("/webhooks")
    });
    let url = RwSignal::new(String::new());
    let slack = RwSignal::new(false);
    let add = Action::new_local(|req: &CreateWebhookRequest| {
        let req = req.clone();
        async move { api::post::<_, serde_json::Value>("/webhooks", &req).await }
    });
    let act = Action::new_local(|(id, what): &(i64, &'static str)| {
        let (id, what) = (*id, *what);
        async move { api::act(&format!("/webhooks/{id}/{what}")).await }
    });
    Effect::new(move |_| {
        if add.value().get().is_some_and(|r| r.is_ok()) {
            url.set(String::new());
        }
        if add.value().get().is_some() || act.value().get().is_some() {
            changed.update(|n| *n += 1);
        }
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        add.dispatch(CreateWebhookRequest {
            url: url.get_untracked(),
            format: if slack.get_untracked() {
                WebhookFormat::Slack
            } else {
                WebhookFormat::Json
            },
        });
    };
    view! {
        <div>
            <p class="help">"Runs and plan waves that start, end or fail, approvals needed, plans halted and new sources of IMDSv1 instances are posted here. A failed delivery is retried with a growing delay; runs never wait for it."</p>
            <form on:submit=on_submit class="filters">
                <label>"URL "<input id="webhook-url" size="40" placeholder="https://hooks.slack.com/services/…"
                    prop:value=move || url.get() on:input=move |ev| url.set(event_target_value(&ev))/></label>
                <label><input type="checkbox" id="webhook-slack" prop:checked=move || slack.get()
                    on:change=move |ev| slack.set(event_target_checked(&ev))/>" Slack message"</label>
                <button type="submit" id="webhook-add">"Add webhook"</button>
            </form>
            {move || add.value().get().and_then(Result::err).map(|e| view! { <div class="error-box" role="alert">{e.explain()}</div> })}
            <p><button class="secondary" id="webhooks-refresh" on:click=move |_| changed.update(|n| *n += 1)>"Refresh"</button></p>
            {move || match hooks.get() {
                None => view! { <p role="status">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(list)) if list.webhooks.is_empty() => view! { <p data-testid="webhooks-none">"No webhook yet."</p> }.into_any(),
                Some(Ok(list)) => list.webhooks.into_iter().map(|w| {
                    let id = w.webhook_id;
                    view! {
                        <div class="webhook" data-webhook-id=id.to_string()>
                            <p><strong class="mono">{w.url.clone()}</strong>{format!(" · {} · added by {}", if w.format == WebhookFormat::Slack { "Slack" } else { "JSON" }, w.created_by)}" "
                                <button class="secondary" data-testid="webhook-test" on:click=move |_| { act.dispatch((id, "test")); }>"Send test"</button>" "
                                <button class="danger" data-testid="webhook-delete" on:click=move |_| { act.dispatch((id, "delete")); }>"Delete"</button></p>
                            <div class="table-scroll"><table data-testid="deliveries">
                                <thead><tr><th scope="col">"Event"</th><th scope="col">"Status"</th><th scope="col">"Attempts"</th><th scope="col">"Last error"</th><th scope="col">"When"</th></tr></thead>
                                <tbody>{w.deliveries.into_iter().map(|d| view! {
                                    <tr data-delivery-id=d.delivery_id.to_string()>
                                        <td title=d.summary.clone()>{d.event.clone()}</td>
                                        <td data-testid="delivery-status">{d.status.clone()}</td>
                                        <td>{d.attempts}</td>
                                        <td>{d.last_error.clone().unwrap_or_default()}</td>
                                        <td>{api::local_time(Some(&d.created_at))}</td>
                                    </tr>
                                }).collect_view()}</tbody>
                            </table></div>
                        </div>
                    }
                }).collect_view().into_any(),
            }}
        </div>
    }
}

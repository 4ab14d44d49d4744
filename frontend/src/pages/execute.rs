//! Execute: collects the runbook's parameters (validated live with the shared rules, errors at each
//! field), shows what will change on each instance before anything starts, then starts the run.

use leptos::prelude::*;
use leptos::wasm_split::{wasm_split, SplitLoaderError};
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;
use shared::api::{ParametersInput, RateControlInput, StartExecutionRequest, TargetsInput};
use shared::ValidationErrors;
use wasm_bindgen::JsCast;

use crate::api;
use crate::components::on_demand::OnDemand;
use crate::live::use_live;
use crate::pages::history::ExecutionTable;

#[derive(Clone, Copy)]
struct Form {
    rate: RwSignal<bool>,
    instance_id: RwSignal<String>,
    enforce: RwSignal<String>,
    access: RwSignal<String>,
    hop: RwSignal<String>,
    role: RwSignal<String>,
    account: RwSignal<String>,
    region: RwSignal<String>,
    by_tag: RwSignal<bool>,
    target_ids: RwSignal<String>,
    tag_key: RwSignal<String>,
    tag_value: RwSignal<String>,
    /// Run the tag in these accounts and every managed Region, as one run (SSM's TargetLocations);
    /// empty for the one account and Region above.
    locations: RwSignal<Vec<String>>,
    regions: RwSignal<Vec<String>>,
    /// Account-Regions at once, and failed ones tolerated, in a run across accounts.
    location_concurrency: RwSignal<String>,
    location_errors: RwSignal<String>,
    max_concurrency: RwSignal<String>,
    max_errors: RwSignal<String>,
}

impl Form {
    fn request(&self) -> StartExecutionRequest {
        let opt = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let rate = self.rate.get();
        StartExecutionRequest {
            alarm_name: None,
            account: opt(self.account.get()),
            region: opt(self.region.get()),
            parameters: ParametersInput {
                instance_id: if rate {
                    None
                } else {
                    Some(self.instance_id.get().trim().to_owned())
                },
                enforce_imdsv2: Some(self.enforce.get()),
                metadata_access: Some(self.access.get()),
                hop_limit: Some(serde_json::Value::String(self.hop.get().trim().to_owned())),
                assume_role: opt(self.role.get()),
            },
            rate_control: rate.then(|| RateControlInput {
                targets: if self.by_tag.get() {
                    TargetsInput::Tag {
                        key: self.tag_key.get(),
                        value: self.tag_value.get(),
                    }
                } else {
                    TargetsInput::InstanceIds(shared::split_list(&self.target_ids.get()))
                },
                max_concurrency: self.max_concurrency.get(),
                max_errors: self.max_errors.get(),
            }),
            target_locations: (rate && self.by_tag.get() && !self.locations.get().is_empty()).then(|| {
                vec![shared::api::TargetLocationInput {
                    accounts: self.locations.get(),
                    regions: self.regions.get(),
                    target_location_max_concurrency: Some(self.location_concurrency.get()),
                    target_location_max_errors: Some(self.location_errors.get()),
                    ..Default::default()
                }]
            }),
            // Added by the confirmation step when the person gives a reason.
            override_gate: None,
        }
    }
}

/// What an edit of the form resets: the server's answer to the last try, and the review.
#[derive(Clone, Copy)]
struct Edits {
    server_errors: RwSignal<Option<ValidationErrors>>,
    confirming: RwSignal<bool>,
}

impl Edits {
    /// The input handler of a text field: stores its value and resets what the edit made stale.
    fn on_input(self, field: RwSignal<String>) -> impl Fn(leptos::ev::Event) {
        move |ev| {
            self.server_errors.set(None);
            self.confirming.set(false);
            field.set(event_target_value(&ev));
        }
    }
}

/// `aria-invalid` for the input of the fields whose names start with `prefix`, while their errors show.
fn invalid(
    errors: Memo<ValidationErrors>,
    show: Signal<bool>,
    prefix: &'static str,
) -> impl Fn() -> Option<&'static str> {
    move || (show.get() && errors.get().0.iter().any(|e| e.field.starts_with(prefix))).then_some("true")
}

/// Moves the keyboard focus to the first field the form marks invalid (after the page has drawn the
/// marks), so that a person using a screen reader or the keyboard lands on what to fix.
fn focus_first_invalid() {
    request_animation_frame(|| {
        let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
            return;
        };
        if let Ok(Some(el)) = doc.query_selector("form.run [aria-invalid='true']") {
            if let Ok(el) = el.dyn_into::<web_sys::HtmlElement>() {
                let _ = el.focus();
            }
        }
    });
}

/// Shows the errors of fields whose names start with `prefix`, tied to the input by `id`.
fn field_errors(
    errors: Memo<ValidationErrors>,
    show: Signal<bool>,
    prefix: &'static str,
    id: &'static str,
) -> impl IntoView {
    move || {
        if !show.get() {
            return None;
        }
        let msgs: Vec<String> = errors
            .get()
            .0
            .into_iter()
            .filter(|e| e.field.starts_with(prefix))
            .map(|e| e.message)
            .collect();
        (!msgs.is_empty())
            .then(|| view! { <div class="field-error" id=id role="alert">{msgs.join(" · ")}</div> })
    }
}

#[component]
pub fn ExecutePage() -> impl IntoView {
    let query = use_query_map();
    let live = use_live();
    let session = crate::session::use_session();
    let form = Form {
        rate: RwSignal::new(false),
        instance_id: RwSignal::new(String::new()),
        enforce: RwSignal::new("required".into()),
        access: RwSignal::new("enabled".into()),
        hop: RwSignal::new("0".into()),
        role: RwSignal::new(String::new()),
        account: RwSignal::new(String::new()),
        region: RwSignal::new(String::new()),
        by_tag: RwSignal::new(false),
        target_ids: RwSignal::new(String::new()),
        tag_key: RwSignal::new(String::new()),
        tag_value: RwSignal::new(String::new()),
        locations: RwSignal::new(Vec::new()),
        regions: RwSignal::new(Vec::new()),
        location_concurrency: RwSignal::new("1".into()),
        location_errors: RwSignal::new("0".into()),
        max_concurrency: RwSignal::new("10".into()),
        max_errors: RwSignal::new("0".into()),
    };

    let submitted = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let server_errors: RwSignal<Option<ValidationErrors>> = RwSignal::new(None);
    let request = Memo::new(move |_| form.request());
    let errors = Memo::new(move |_| {
        let mut e = request.get().validate().err().unwrap_or_default();
        if let Some(server) = server_errors.get() {
            e.0.extend(server.0);
        }
        e
    });
    let show_all = Signal::derive(move || submitted.get());
    let show_instance = Signal::derive(move || submitted.get() || !form.instance_id.get().is_empty());
    let show_always = Signal::derive(|| true);

    let identity = crate::session::use_identity();
    // Started from the Fleet page: with a selection, or with every instance matching a tag filter
    // (`tag`, with `locations` and `regions` when it spans several accounts or Regions).
    Effect::new(move |_| {
        let q = query.get();
        let list = |k: &str| q.get(k).map(|v| shared::split_list(&v)).unwrap_or_default();
        if let Some(t) = q.get("targets").filter(|t| !t.is_empty()) {
            form.rate.set(true);
            form.target_ids.set(t.replace(',', "\n"));
        }
        if let Some(i) = q.get("instance").filter(|i| !i.is_empty()) {
            form.rate.set(false);
            form.instance_id.set(i);
        }
        if let Some(r) = q.get("region").filter(|r| !r.is_empty()) {
            form.region.set(r);
        }
        if let Some(a) = q.get("account").filter(|a| !a.is_empty()) {
            form.account.set(a);
        }
        if let Some((key, value)) = q.get("tag").as_deref().and_then(|t| t.split_once('=')) {
            form.rate.set(true);
            form.by_tag.set(true);
            form.tag_key.set(key.to_owned());
            form.tag_value.set(value.to_owned());
            form.locations.set(list("locations"));
            form.regions.set(list("regions"));
        }
    });
    // Suggestions for the instance field, found by the server as one types (the fleet may be large),
    // and the instance the run's region follows: the typed one, or the first rate-control target.
    let lookup = Memo::new(move |_| {
        if form.rate.get() {
            shared::split_list(&form.target_ids.get())
                .into_iter()
                .next()
                .unwrap_or_default()
        } else {
            form.instance_id.get().trim().to_owned()
        }
    });
    let fleet = LocalResource::new(move || {
        let text = lookup.get();
        async move {
            api::get::<shared::api::InstanceChoices>(&format!("/instances?limit=20&q={}", api::enc(&text)))
                .await
        }
    });
    // The region follows the chosen instance, never a silent default.
    Effect::new(move |_| {
        let wanted = lookup.get();
        if let Some(Ok(list)) = fleet.get() {
            if let Some(i) = list.instances.iter().find(|i| i.instance_id == wanted) {
                if form.region.get_untracked() != i.region {
                    form.region.set(i.region.clone());
                }
                if form.account.get_untracked() != i.account {
                    form.account.set(i.account.clone());
                }
            }
        }
    });
    let started = RwSignal::new(0u32);
    let recent = LocalResource::new(move || {
        live.version.track();
        started.track();
        async move { api::history("limit=10").await }
    });

    // The review (the preview, the IMDSv1 gate, the start and its answer) comes from its own WASM
    // module the first time it is asked for, and stays: its answer outlives the review.
    let review_state = Review {
        request,
        confirming,
        server_errors,
        started,
    };

    let review = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        submitted.set(true);
        server_errors.set(None);
        if errors.get_untracked().is_empty() {
            confirming.set(true);
        } else {
            focus_first_invalid();
        }
    };
    let edits = Edits {
        server_errors,
        confirming,
    };
    let on_change = move |sig: RwSignal<String>| edits.on_input(sig);

    view! {
        <section class="card">
            <h1>"Execute AWSSupport-ConfigureEC2Metadata"</h1>
            {move || (session.me.get().is_some() && !session.can_operate()).then(|| view! {
                <p class="help" data-testid="viewer-note">"You are signed in as a viewer: you can look at runs and the fleet; starting runs needs the operator role."</p>
            })}
            <Show when=move || session.can_operate()>
            <form class="run" on:submit=review novalidate aria-label="Runbook parameters">
                <fieldset class="row">
                    <legend class="sr-only">"Execution mode"</legend>
                    <label>"Mode"</label>
                    <div>
                        <label><input type="radio" name="mode" id="mode-simple" prop:checked=move || !form.rate.get()
                            on:change=move |_| {
                                // Keep what was typed: a single target becomes the instance.
                                let targets = shared::split_list(&form.target_ids.get_untracked());
                                if form.instance_id.get_untracked().trim().is_empty() && targets.len() == 1 {
                                    form.instance_id.set(targets[0].clone());
                                }
                                form.rate.set(false);
                                confirming.set(false);
                            }/>" Simple execution (one instance)"</label>
                        " "
                        <label><input type="radio" name="mode" id="mode-rate" prop:checked=move || form.rate.get()
                            on:change=move |_| {
                                // Keep what was typed: the instance becomes the first target.
                                let typed = form.instance_id.get_untracked().trim().to_owned();
                                if !typed.is_empty() && form.target_ids.get_untracked().trim().is_empty() {
                                    form.target_ids.set(typed);
                                }
                                form.rate.set(true);
                                confirming.set(false);
                            }/>" Rate control (many instances)"</label>
                    </div>
                </fieldset>
                <div class="row">
                    <label for="account">"Account"</label>
                    <div>
                        <input id="account" inputmode="numeric" aria-invalid=invalid(errors, show_always, "account") aria-describedby="err-account"  placeholder="the console's own account" prop:value=move || form.account.get() on:input=on_change(form.account)/>
                        <div class="help">"Follows the chosen instance. In a member account the console acts through its member role."</div>
                        {field_errors(errors, show_always, "account", "err-account")}
                    </div>
                </div>
                <div class="row">
                    <label for="region">"Region"</label>
                    <div>
                        <select id="region" aria-invalid=invalid(errors, show_always, "region") aria-describedby="err-region" prop:value=move || form.region.get() on:change=on_change(form.region)>
                            <option value="">"default (first managed region)"</option>
                            // Each option says whether it is chosen: the regions arrive after the form's
                            // value may have been set (from a link, or the chosen instance).
                            {move || identity.get().and_then(Result::ok).map(|id| id.regions.into_iter()
                                .map(|r| {
                                    let this = r.clone();
                                    view! { <option value=r.clone() prop:selected=move || form.region.get() == this>{r.clone()}</option> }
                                }).collect_view())}
                        </select>
                        {field_errors(errors, show_always, "region", "err-region")}
                    </div>
                </div>
                <Show when=move || !form.rate.get()>
                    <div class="row">
                        <label for="instance-id">"InstanceId"</label>
                        <div>
                            <input id="instance-id" aria-invalid=invalid(errors, show_instance, "parameters.InstanceId") list="fleet-ids" autocomplete="off" placeholder="i-0123456789abcdef0"
                                aria-describedby="err-instance help-instance"
                                prop:value=move || form.instance_id.get() on:input=on_change(form.instance_id)/>
                            <datalist id="fleet-ids">
                                {move || fleet.get().and_then(Result::ok).map(|f| f.instances.into_iter().map(|i| {
                                    let label = format!("{} · {} · {}", i.name.clone().unwrap_or_default(), i.region, i.metadata.http_tokens);
                                    view! { <option value=i.instance_id.clone()>{label}</option> }
                                }).collect_view())}
                            </datalist>
                            <div class="help" id="help-instance">"The instance to configure. Pick one from the list or paste its ID."</div>
                            {field_errors(errors, show_instance, "parameters.InstanceId", "err-instance")}
                        </div>
                    </div>
                </Show>
                <OnDemand wanted=form.rate loading="Loading the rate-control fields…"
                    part=move || async move { rate_control_view(form, errors, show_all, edits).await }/>
                <div class="row">
                    <label for="enforce">"EnforceIMDSv2"</label>
                    <div>
                        <select id="enforce" prop:value=move || form.enforce.get() on:change=on_change(form.enforce)>
                            <option value="required">"required (IMDSv2 only)"</option>
                            <option value="optional">"optional (IMDSv1 and IMDSv2)"</option>
                        </select>
                        <div class="help">"required breaks every application that still uses IMDSv1; check the Fleet page's IMDSv1 column first. optional would allow IMDSv1 again."</div>
                        {field_errors(errors, show_always, "parameters.EnforceIMDSv2", "err-enforce")}
                    </div>
                </div>
                <div class="row">
                    <label for="access">"MetadataAccess"</label>
                    <div>
                        <select id="access" prop:value=move || form.access.get() on:change=on_change(form.access)>
                            <option value="enabled">"enabled"</option>
                            <option value="disabled">"disabled (turn the metadata endpoint off)"</option>
                        </select>
                        <div class="help">"disabled turns instance metadata off entirely and ignores the other fields."</div>
                    </div>
                </div>
                <div class="row">
                    <label for="hop">"HttpPutResponseHopLimit"</label>
                    <div>
                        <input id="hop" inputmode="numeric" aria-describedby="err-hop" aria-invalid=invalid(errors, show_always, "parameters.HttpPutResponseHopLimit") prop:value=move || form.hop.get() on:input=on_change(form.hop)/>
                        <div class="help">"0 keeps the current hop limit; 1 to 64 sets it. Containers (ECS, EKS) usually need 2."</div>
                        {field_errors(errors, show_always, "parameters.HttpPutResponseHopLimit", "err-hop")}
                    </div>
                </div>
                <div class="row">
                    <label for="role">"AutomationAssumeRole"</label>
                    <div>
                        <input id="role" aria-invalid=invalid(errors, show_always, "parameters.AutomationAssumeRole") aria-describedby="err-role" placeholder="arn:aws:iam::123456789012:role/… (optional)" prop:value=move || form.role.get() on:input=on_change(form.role)/>
                        <div class="help">"Optional. Without it, Automation uses the console server's own permissions."</div>
                        {field_errors(errors, show_always, "parameters.AutomationAssumeRole", "err-role")}
                    </div>
                </div>
                <div class="row"><span></span><div>
                    <button type="submit" id="review">"Review changes"</button>
                </div></div>
            </form>
            </Show>
            <OnDemand wanted=confirming loading="Loading the review…"
                part=move || async move { confirm_view(review_state).await }/>
        </section>
        <section class="card" data-testid="recent-runs">
            <h2>"Recent runs"</h2>
            {move || match recent.get() {
                None => view! { <p role="status">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(p)) => view! { <ExecutionTable rows=p.executions/> }.into_any(),
            }}
            <p><A href="/history">"All history →"</A></p>
        </section>
    }
}

/// The rate-control fields (targets by ID or tag, every account and Region, MaxConcurrency and
/// MaxErrors), fetched from their own WASM module when the mode is chosen: a run on one instance,
/// the page's first state, never needs them. The organisation's accounts are read once, when the
/// mode is first chosen, and kept while the page is open, however often the mode is switched.
#[wasm_split(part_rate_control, wasm_split_path = ::leptos::wasm_split, fallible)]
fn rate_control_view(
    form: Form,
    errors: Memo<ValidationErrors>,
    show_all: Signal<bool>,
    edits: Edits,
) -> Result<AnyView, SplitLoaderError> {
    let accounts = LocalResource::new(|| api::get::<shared::api::AccountList>("/accounts"));
    Ok(view! {
        <Show when=move || form.rate.get()>
            <RateControlFields form=form errors=errors show_all=show_all edits=edits accounts=accounts/>
        </Show>
    }
    .into_any())
}

type Accounts = LocalResource<Result<shared::api::AccountList, api::ClientError>>;

#[component]
fn RateControlFields(
    form: Form,
    errors: Memo<ValidationErrors>,
    show_all: Signal<bool>,
    edits: Edits,
    accounts: Accounts,
) -> impl IntoView {
    let show_always = Signal::derive(|| true);
    let identity = crate::session::use_identity();
    let confirming = edits.confirming;
    let on_change = move |sig: RwSignal<String>| edits.on_input(sig);
    view! {
                <div class="row">
                    <label>"Targets"</label>
                    <div>
                        <label><input type="radio" name="target-kind" id="targets-ids" prop:checked=move || !form.by_tag.get()
                            on:change=move |_| form.by_tag.set(false)/>" Instance IDs"</label>
                        " "
                        <label><input type="radio" name="target-kind" id="targets-tag" prop:checked=move || form.by_tag.get()
                            on:change=move |_| form.by_tag.set(true)/>" A tag"</label>
                    </div>
                </div>
                <Show when=move || !form.by_tag.get()>
                    <div class="row">
                        <label for="targets">"Instance IDs"</label>
                        <div>
                            <textarea id="targets" aria-invalid=invalid(errors, show_all, "rate_control.targets.instance_ids") aria-describedby="err-targets" rows="4" placeholder="i-0123… one per line, or separated by commas"
                                prop:value=move || form.target_ids.get() on:input=on_change(form.target_ids)></textarea>
                            {field_errors(errors, show_all, "rate_control.targets.instance_ids", "err-targets")}
                        </div>
                    </div>
                </Show>
                <Show when=move || form.by_tag.get()>
                    <div class="row">
                        <label for="all-accounts">"Accounts"</label>
                        <div>
                            <label><input type="checkbox" id="all-accounts" prop:checked=move || !form.locations.get().is_empty()
                                // Until the organisation's accounts are read there is nothing to choose.
                                disabled=move || accounts.get().is_none()
                                on:change=move |ev| {
                                    confirming.set(false);
                                    if event_target_checked(&ev) {
                                        let ids: Vec<String> = accounts.get().and_then(Result::ok)
                                            .map(|l| l.accounts.into_iter().filter(|a| a.reachable).map(|a| a.account_id).collect())
                                            .unwrap_or_default();
                                        let regions = identity.get().and_then(Result::ok).map(|i| i.regions).unwrap_or_default();
                                        form.regions.set(regions);
                                        form.locations.set(ids);
                                    } else {
                                        form.locations.set(Vec::new());
                                    }
                                }/>
                                " Every reachable account and Region, as one multi-account run"</label>
                            <div class="help" id="locations-help">{move || {
                                let n = form.locations.get().len();
                                if n == 0 { "Off: the account and Region above only.".to_owned() }
                                else { format!("{n} account(s) × {} Region(s); only those where the tag matches instances are sent (the review lists them). Each account needs the AWS-SystemsManager-AutomationExecutionRole.", form.regions.get().len()) }
                            }}</div>
                            <Show when=move || !form.locations.get().is_empty()>
                                <div class="inline-fields">
                                    <label for="location-concurrency">"Account-Regions at once "
                                        <input id="location-concurrency" size="4" aria-invalid=invalid(errors, show_always, "target_locations[0].target_location_max_concurrency")
                                            prop:value=move || form.location_concurrency.get() on:input=on_change(form.location_concurrency)/></label>
                                    " "
                                    <label for="location-errors">"Failed account-Regions tolerated "
                                        <input id="location-errors" size="4" aria-invalid=invalid(errors, show_always, "target_locations[0].target_location_max_errors")
                                            prop:value=move || form.location_errors.get() on:input=on_change(form.location_errors)/></label>
                                </div>
                                <div class="help">"A count or a percentage each; once more account-Regions fail than tolerated, SSM starts no new ones."</div>
                            </Show>
                            {field_errors(errors, show_always, "target_locations", "err-locations")}
                        </div>
                    </div>
                    <div class="row">
                        <label for="tag-key">"Tag key and value"</label>
                        <div>
                            <input id="tag-key" aria-invalid=invalid(errors, show_all, "rate_control.targets.tag") aria-describedby="err-tag" placeholder="Team" prop:value=move || form.tag_key.get() on:input=on_change(form.tag_key)/>
                            " = "
                            <input id="tag-value" aria-label="Tag value" placeholder="web" prop:value=move || form.tag_value.get() on:input=on_change(form.tag_value)/>
                            {field_errors(errors, show_all, "rate_control.targets.tag", "err-tag")}
                        </div>
                    </div>
                </Show>
                <div class="row">
                    <label for="max-concurrency">"MaxConcurrency"</label>
                    <div>
                        <input id="max-concurrency" aria-invalid=invalid(errors, show_always, "rate_control.max_concurrency") aria-describedby="err-max-concurrency" prop:value=move || form.max_concurrency.get() on:input=on_change(form.max_concurrency)/>
                        <div class="help">"How many instances at once: a count (10) or a percentage (25%)."</div>
                        {field_errors(errors, show_always, "rate_control.max_concurrency", "err-max-concurrency")}
                    </div>
                </div>
                <div class="row">
                    <label for="max-errors">"MaxErrors"</label>
                    <div>
                        <input id="max-errors" aria-invalid=invalid(errors, show_always, "rate_control.max_errors") aria-describedby="err-max-errors" prop:value=move || form.max_errors.get() on:input=on_change(form.max_errors)/>
                        <div class="help">"Failed instances tolerated before no new ones start: a count (0) or a percentage."</div>
                        {field_errors(errors, show_always, "rate_control.max_errors", "err-max-errors")}
                    </div>
                </div>
    }
}

/// What the review shares with the form: the request as typed, whether the review is open, the
/// server's field errors from a refused start, and a count of runs started (recent runs follow it).
#[derive(Clone, Copy)]
struct Review {
    request: Memo<StartExecutionRequest>,
    confirming: RwSignal<bool>,
    server_errors: RwSignal<Option<ValidationErrors>>,
    started: RwSignal<u32>,
}

/// Before anything starts: the server's preview of each target (options now and after, IMDSv1 calls,
/// warnings). When targets still use IMDSv1 the run needs a written reason, which is recorded with it.
/// Fetched from its own WASM module when the review is first asked for (filling in the form never
/// needs it), with the start and its answer.
#[wasm_split(part_confirm, wasm_split_path = ::leptos::wasm_split, fallible)]
fn confirm_view(review: Review) -> Result<AnyView, SplitLoaderError> {
    Ok(view! { <Confirm review=review/> }.into_any())
}

#[component]
fn Confirm(review: Review) -> impl IntoView {
    let Review {
        request,
        confirming,
        server_errors,
        started,
    } = review;
    let start = Action::new_local(|req: &StartExecutionRequest| {
        let req = req.clone();
        async move { api::start(&req).await }
    });
    Effect::new(move |_| {
        if let Some(result) = start.value().get() {
            // A start refused because the session ended keeps the review open under the sign-in
            // dialog: once signed in again, Start is one press away.
            if result.as_ref().is_err_and(api::ClientError::signed_out) {
                return;
            }
            confirming.set(false);
            match &result {
                Ok(_) => started.update(|n| *n += 1),
                Err(e) => server_errors.set(e.field_errors()),
            }
        }
    });
    let started_box = NodeRef::<leptos::html::Div>::new();
    Effect::new(move |_| {
        if let Some(answer) = started_box.get() {
            let _ = answer.focus();
        }
    });
    // Read only while the review is open; it is read again each time it opens.
    let preview_read = LocalResource::new(move || {
        let open = confirming.get();
        let req = request.get();
        async move {
            if open {
                Some(api::preview(&req).await)
            } else {
                None
            }
        }
    });
    let preview = move || preview_read.get().flatten();
    let reason = RwSignal::new(String::new());
    // A reason belongs to the run it was written for: closing the review forgets it.
    Effect::new(move |_| {
        if !confirming.get() {
            reason.set(String::new());
        }
    });
    let blocked = move || preview().and_then(Result::ok).is_some_and(|p| p.blocked);
    let reason_ok = move || reason.get().trim().chars().count() >= shared::params::MIN_OVERRIDE_REASON;
    // Start only after a successful preview in which something changes.
    let changes_something = move || {
        preview()
            .and_then(Result::ok)
            .is_some_and(|p| p.targets.iter().any(|t| !t.changes.is_empty()))
    };
    // The blocked instances can be left out of a run on several instances: the rest run without an
    // override, and the IMDSv1 users keep their settings until their software is fixed.
    let without_users = move || -> Option<(StartExecutionRequest, usize, usize)> {
        let p = preview().and_then(Result::ok)?;
        if !p.blocked {
            return None;
        }
        let mut req = request.get();
        // A list of instance IDs names instances of one account and Region: across accounts and
        // Regions there is no such start to offer (SSM would refuse it).
        if req.target_locations.is_some() {
            return None;
        }
        let rc = req.rate_control.as_mut()?;
        let users = |t: &shared::api::PreviewTarget| {
            t.imdsv1_calls.unwrap_or(0) > 0 && t.after.is_compliant() && !t.current.is_compliant()
        };
        let rest: Vec<String> = p
            .targets
            .iter()
            .filter(|t| !users(t) && !t.changes.is_empty())
            .map(|t| t.instance_id.clone())
            .collect();
        let skipped = p.targets.iter().filter(|t| users(t)).count();
        if rest.is_empty() || rest.len() > shared::params::MAX_TARGET_VALUES {
            return None;
        }
        let n = rest.len();
        rc.targets = TargetsInput::InstanceIds(rest);
        Some((req, n, skipped))
    };
    let fmt = |m: &shared::api::MetadataOptions| {
        format!(
            "tokens {} · endpoint {} · hop {}",
            m.http_tokens, m.http_endpoint, m.http_put_response_hop_limit
        )
    };
    view! {
        <Show when=move || confirming.get()>
        <div class="card" data-testid="confirm" role="region" aria-label="Confirm the run">
            <h2>"Confirm: what this run will do"</h2>
            {move || match preview() {
                None => view! { <p role="status">"Checking the targets and their IMDSv1 use…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(p)) => {
                    let n = p.targets.len();
                    let changing = p.targets.iter().filter(|t| !t.changes.is_empty()).count();
                    let users: Vec<String> = p.targets.iter().filter(|t| t.imdsv1_calls.unwrap_or(0) > 0 && t.after.is_compliant() && !t.current.is_compliant())
                        .map(|t| format!("{} ({} calls)", t.instance_id, t.imdsv1_calls.unwrap_or(0))).collect();
                    let gate = p.blocked.then(|| view! {
                        <div class="error-box" role="alert" data-testid="gate">
                            <strong>"IMDSv1 is still used on these instances; enforcing breaks the software making the calls: "</strong>
                            {users.join(", ")}
                            <p>"Update that software first. To go ahead anyway, say why (recorded with the run):"</p>
                            <label for="override-reason">"Reason for overriding the IMDSv1 check"</label>
                            <textarea id="override-reason" rows="2" prop:value=move || reason.get()
                                on:input=move |ev| reason.set(event_target_value(&ev))></textarea>
                        </div>
                    });
                    view! {
                        {gate}
                        <table>
                            <thead><tr><th>"Instance"</th><th>"Account · Region"</th><th>"State"</th><th>"Now"</th><th>"After"</th>
                                <th>{format!("IMDSv1 calls ({} d)", p.window_days)}</th><th>"Warnings"</th></tr></thead>
                            <tbody>
                            {p.targets.into_iter().map(|t| view! {
                                <tr data-instance-id=t.instance_id.clone()>
                                    <td class="mono">{t.instance_id.clone()}" "{t.name.clone().unwrap_or_default()}</td>
                                    <td class="mono">{format!("{} · {}", t.account, t.region)}</td>
                                    <td>{t.state.clone()}</td>
                                    <td>{fmt(&t.current)}</td>
                                    <td>{fmt(&t.after)}</td>
                                    <td>{t.imdsv1_calls.map_or("unknown".to_owned(), |c| c.to_string())}</td>
                                    <td>{t.warnings.join("; ")}</td>
                                </tr>
                            }).collect_view()}
                            </tbody>
                        </table>
                        <p>{format!("{changing} of {n} instance(s) will change.")}</p>
                        {(!p.places.is_empty()).then(|| view! {
                            <p data-testid="review-places">{format!("Sent to {} account-Region(s) where instances match: {}.", p.places.len(), p.places.join(", "))}
                                {(!p.places_left_out.is_empty()).then(|| format!(" {} without a matching instance are left out.", p.places_left_out.len()))}</p>
                        })}
                        {(changing == 0).then(|| view! {
                            <div class="warn-box" role="status" data-testid="nothing-to-change">"Nothing would change: every target already has these options. Change a parameter or the targets."</div>
                        })}
                    }.into_any()
                }
            }}
            {move || without_users().map(|(req, n, skipped)| view! {
                <button id="skip-users" class="secondary" disabled=move || start.pending().get()
                    on:click=move |_| { start.dispatch(req.clone()); }>
                    {format!("Skip the {skipped} instance(s) using IMDSv1 and run the other {n}")}
                </button>
                " "
            })}
            <button id="start" disabled=move || start.pending().get() || !changes_something() || (blocked() && !reason_ok())
                on:click=move |_| {
                    let mut req = request.get_untracked();
                    if blocked() {
                        req.override_gate = Some(shared::api::OverrideInput { reason: reason.get_untracked() });
                    }
                    start.dispatch(req);
                }>
                {move || if start.pending().get() { "Starting…" } else if blocked() { "Start anyway" } else { "Start run" }}
            </button>
        </div>
        </Show>
        {move || start.value().get().map(|r| match r {
            Ok(resp) => match resp.execution_id {
                Some(id) => view! {
                    // The focus follows the start to its answer (it would drop to the page's body
                    // with the review's button gone).
                    <div class="ok-box" role="status" data-testid="started" tabindex="-1" node_ref=started_box>"Started "
                        <A href=format!("/executions/{id}")>{id.clone()}</A>
                    </div>
                }.into_any(),
                None if resp.status == shared::RunStatus::AwaitingApproval => view! {
                    <div class="warn-box" role="status" data-testid="awaiting-approval" tabindex="-1" node_ref=started_box>
                        <strong>{format!("Awaiting approval (approval {}). ", resp.record_id)}</strong>
                        {resp.message.unwrap_or_default()}" "<A href="/approvals">"Approvals"</A>
                    </div>
                }.into_any(),
                None => view! {
                    <div class="warn-box" role="status" data-testid="queued" tabindex="-1" node_ref=started_box>
                        <strong>{format!("Queued (record {}). ", resp.record_id)}</strong>
                        {resp.message.unwrap_or_default()}
                    </div>
                }.into_any(),
            },
            Err(e) if e.signed_out() => ().into_any(),
            Err(e) => view! { <div class="error-box" role="alert" data-testid="start-error">{e.explain()}</div> }.into_any(),
        })}
    }
}

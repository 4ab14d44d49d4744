//! Fleet: the inventory a page at a time from the server (filters, sort and page live in the URL, so
//! a view can be shared and the back button works), the posture per region, account or tag, and
//! enforcing on a selection of one region.

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use shared::api::{FleetSummary, InstanceList};
use shared::fleet::Posture;
use std::collections::BTreeMap;

use crate::api::{self, enc};
use crate::components::status::PostureBadge;

/// The URL parameters that filter the fleet (the page and the summary both take them).
const FILTERS: &[&str] = &["q", "account", "region", "compliance", "state", "tag"];

/// The URL parameters the page keeps (the filters, then sort and page), in the order they are written.
const KEYS: &[&str] = &[
    "q",
    "account",
    "region",
    "compliance",
    "state",
    "tag",
    "sort",
    "desc",
    "cursor",
];

#[component]
pub fn FleetPage() -> impl IntoView {
    let query = use_query_map();
    let navigate = use_navigate();
    let q = move |k: &str| query.read().get(k).unwrap_or_default();
    let group_by = RwSignal::new("region".to_owned());

    // `k=v&...` of the URL's parameters among `keys`, with `changes` in place of their URL values.
    let params = move |keys: &[&str], changes: &[(&str, String)]| {
        keys.iter()
            .filter_map(|k| {
                let v = changes
                    .iter()
                    .find(|(c, _)| c == k)
                    .map_or_else(|| q(k), |(_, v)| v.clone());
                (!v.is_empty()).then(|| format!("{k}={}", enc(&v)))
            })
            .collect::<Vec<_>>()
            .join("&")
    };
    let page = LocalResource::new(move || {
        let query = params(KEYS, &[]);
        async move { api::get::<InstanceList>(&format!("/instances?{query}")).await }
    });
    // The summary takes the same filters (it neither sorts nor pages).
    let summary = LocalResource::new(move || {
        let query = params(FILTERS, &[]);
        let by = enc(&group_by.get());
        async move { api::get::<FleetSummary>(&format!("/fleet/summary?{query}&by={by}")).await }
    });

    // Goes to the same page with `changes` applied; any change of filter or sort starts at the first page.
    let set = {
        let navigate = navigate.clone();
        move |mut changes: Vec<(&'static str, String)>| {
            if !changes.iter().any(|(k, _)| *k == "cursor") {
                changes.push(("cursor", String::new()));
            }
            navigate(&format!("/fleet?{}", params(KEYS, &changes)), Default::default());
        }
    };

    // Selected instances and where they are (account, region): a run covers one of each.
    let selected: RwSignal<BTreeMap<String, (String, String)>> = RwSignal::new(BTreeMap::new());
    let regions_selected = move || {
        let mut r: Vec<(String, String)> = selected.get().values().cloned().collect();
        r.sort();
        r.dedup();
        r
    };
    // Every instance matching the filters (not only this page's), by the filters it was chosen with:
    // a change of filter ends it.
    let all_matching: RwSignal<Option<(String, usize)>> = RwSignal::new(None);
    let matching = move || {
        all_matching
            .get()
            .filter(|(f, _)| *f == params(FILTERS, &[]))
            .map(|(_, n)| n)
    };
    let matching_problem = RwSignal::new(None::<String>);
    // The managed accounts (those that cannot be read are shown with AWS's reason) and the console's
    // Regions: a run by tag spreads over the reachable ones.
    let identity = crate::session::use_identity();
    let accounts_read = LocalResource::new(|| api::get::<shared::api::AccountList>("/accounts"));
    let reach = move || {
        let accounts = accounts_read.get()?.map(|l| l.accounts);
        let regions = identity.get()?.map(|i| i.regions);
        Some(accounts.and_then(|a| regions.map(|r| (a, r))))
    };
    let reachable = move || {
        reach().and_then(Result::ok).map(|(accounts, regions)| {
            let ids: Vec<String> = accounts
                .into_iter()
                .filter(|a| a.reachable)
                .map(|a| a.account_id)
                .collect();
            (ids, regions)
        })
    };
    let enforce_matching = Callback::new({
        let navigate = navigate.clone();
        move |total: usize| {
            let tag = q("tag");
            // Filters a run by tag cannot express (posture, state, text): with one of them on, a run
            // by tag would reach every tagged instance, not only those shown, so it goes by ID.
            let by_tag = q("compliance").is_empty() && q("state").is_empty() && q("q").is_empty();
            if tag.contains('=') && by_tag {
                // One run by tag: SSM resolves the instances, in every account and Region the filter
                // allows (one run there, or one across them with TargetLocations).
                let Some((accounts, regions)) = reachable() else {
                    return matching_problem.set(Some(
                        "The accounts and Regions are still loading; try again in a moment.".into(),
                    ));
                };
                let accounts = if q("account").is_empty() {
                    accounts
                } else {
                    vec![q("account")]
                };
                let regions = if q("region").is_empty() {
                    regions
                } else {
                    vec![q("region")]
                };
                let url = match (accounts.as_slice(), regions.as_slice()) {
                    ([a], [r]) => format!("/execute?tag={}&account={a}&region={r}", enc(&tag)),
                    _ => format!(
                        "/execute?tag={}&locations={}&regions={}",
                        enc(&tag),
                        accounts.join(","),
                        regions.join(",")
                    ),
                };
                navigate(&url, Default::default());
                return;
            }
            if total > shared::params::MAX_TARGET_VALUES {
                matching_problem.set(Some(if tag.contains('=') {
                    "A run by tag would reach every instance with that tag, not only those shown: clear the compliance, state and text filters to enforce by tag, or narrow to at most 50 instances to enforce them by ID.".to_owned()
                } else {
                    format!(
                        "SSM takes at most {} instance IDs in one run. Filter by a tag (such as Team=web) to enforce all {total} as one run.",
                        shared::params::MAX_TARGET_VALUES
                    )
                }));
                return;
            }
            let navigate = navigate.clone();
            let query = params(FILTERS, &[]);
            leptos::task::spawn_local(async move {
                let list = match api::get::<InstanceList>(&format!("/instances?{query}&limit={total}")).await
                {
                    Ok(l) => l,
                    Err(e) => return matching_problem.set(Some(e.explain())),
                };
                let mut places: Vec<(&str, &str)> = list
                    .instances
                    .iter()
                    .map(|i| (i.account.as_str(), i.region.as_str()))
                    .collect();
                places.sort_unstable();
                places.dedup();
                let [(account, region)] = places.as_slice() else {
                    return matching_problem.set(Some(
                        "These instances are in several accounts or Regions: filter by one account and Region, or by a tag.".into(),
                    ));
                };
                let ids: Vec<&str> = list.instances.iter().map(|i| i.instance_id.as_str()).collect();
                navigate(
                    &format!(
                        "/execute?targets={}&region={region}&account={account}",
                        ids.join(",")
                    ),
                    Default::default(),
                );
            });
        }
    });
    let enforce = Callback::new({
        let navigate = navigate.clone();
        move |()| {
            let chosen = selected.get_untracked();
            let regions = regions_selected();
            let [(account, region)] = regions.as_slice() else {
                return;
            };
            let ids: Vec<&String> = chosen.keys().collect();
            let url = match ids.as_slice() {
                [] => return,
                [one] => format!("/execute?instance={one}&region={region}&account={account}"),
                many => format!(
                    "/execute?targets={}&region={region}&account={account}",
                    many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
                ),
            };
            navigate(&url, Default::default());
        }
    });

    let header = {
        let set = set.clone();
        move |col: &'static str, label: &'static str| {
            let set = set.clone();
            view! {
                <th scope="col" aria-sort=move || {
                    let sorted = if q("sort").is_empty() { "id".to_owned() } else { q("sort") };
                    match (sorted == col, q("desc") == "true") {
                        (true, true) => "descending",
                        (true, false) => "ascending",
                        _ => "none",
                    }
                }>
                    <button type="button" class="sort" on:click=move |_| {
                        let same = (if q("sort").is_empty() { "id".to_owned() } else { q("sort") }) == col;
                        let desc = same && q("desc") != "true";
                        set(vec![("sort", col.to_owned()), ("desc", if desc { "true".into() } else { String::new() })]);
                    }>{label}</button>
                </th>
            }
        }
    };

    let on_filter = {
        let set = set.clone();
        move |key: &'static str| {
            let set = set.clone();
            move |ev: leptos::ev::Event| set(vec![(key, event_target_value(&ev))])
        }
    };
    let set_for_pager = set.clone();

    // The search box filters as one types. It has its own signal, so that a URL arriving late never
    // overwrites newer keystrokes; the URL wins only when it changed from elsewhere (back button, link).
    let search = RwSignal::new(q("q"));
    let last_sent = StoredValue::new(q("q"));
    Effect::new(move |_| {
        let from_url = q("q");
        if from_url != last_sent.get_value() {
            last_sent.set_value(from_url.clone());
            search.set(from_url);
        }
    });
    let on_search = {
        let navigate = navigate.clone();
        move |ev: leptos::ev::Event| {
            let text = event_target_value(&ev);
            search.set(text.clone());
            last_sent.set_value(text.clone());
            let query = params(KEYS, &[("q", text), ("cursor", String::new())]);
            navigate(
                &format!("/fleet?{query}"),
                leptos_router::NavigateOptions {
                    replace: true,
                    ..Default::default()
                },
            );
        }
    };

    view! {
        <section class="card">
            <h1>"Fleet"</h1>
            <div class="filters">
                <label for="group-by">"Summary by"
                    <select id="group-by" on:change=move |ev| group_by.set(event_target_value(&ev))>
                        <option value="region">"region"</option>
                        <option value="account">"account"</option>
                        <option value="tag:Team">"tag Team"</option>
                        <option value="tag:Env">"tag Env"</option>
                    </select>
                </label>
            </div>
            {move || {
                let (accounts, _) = reach().and_then(Result::ok)?;
                let unread: Vec<_> = accounts.into_iter().filter(|a| !a.reachable).collect();
                (!unread.is_empty()).then(|| view! {
                    <div class="warn-box" role="status" data-testid="unreachable-accounts">
                        <strong>{format!("{} account(s) could not be read just now:", unread.len())}</strong>
                        <ul>{unread.into_iter().map(|a| {
                            let name = a.name.clone().map(|n| format!(" ({n})")).unwrap_or_default();
                            let kept = match (&a.as_of, a.instances) {
                                (Some(at), n) if n > 0 => format!(" Showing its {n} instance(s) as read {}.", api::local_time(Some(at))),
                                _ => " None of its instances are shown.".to_owned(),
                            };
                            view! { <li><span class="mono">{a.account_id.clone()}</span>{name}": "{a.reason.clone().unwrap_or_default()}{kept}</li> }
                        }).collect_view()}</ul>
                    </div>
                })
            }}
            {move || match summary.get() {
                None => view! { <p role="status">"Loading the fleet…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(s)) => {
                    let a = s.all.clone();
                    view! {
                        <p data-testid="fleet-summary"><strong>{format!("{} of {} instances compliant", a.compliant, a.total)}</strong>
                            {format!(" · {} broken since enforcement · {} still calling IMDSv1 · {} allowing IMDSv1 unused", a.broken, a.imdsv1_in_use, a.imdsv1_allowed)}</p>
                        <div class="summary-grid" data-testid="fleet-groups">
                            {s.groups.into_iter().map(|g| {
                                let c = g.counts;
                                view! {
                                    <div data-group=g.key.clone()>
                                        <div>{format!("{}: {} / {} compliant", g.key, c.compliant, c.total)}</div>
                                        <meter min="0" max=c.total value=c.compliant aria-label=format!("{}: {} of {} compliant", g.key, c.compliant, c.total)></meter>
                                        {(c.broken > 0).then(|| view! { <div class="tone-bad">{format!("{} broken since enforcement", c.broken)}</div> })}
                                    </div>
                                }
                            }).collect_view()}
                        </div>
                        <p class="help">{format!("Inventory as of {}. Export every instance matching the filters: ", api::local_time(s.as_of.as_deref()))}
                            <a id="export-csv" rel="external" download href=format!("/api/v1/instances?format=csv&{}", params(FILTERS, &[]))>"CSV"</a>" · "
                            <a id="export-json" rel="external" download="imds-console-fleet.json" href=format!("/api/v1/instances?format=json&{}", params(FILTERS, &[]))>"JSON"</a></p>
                    }.into_any()
                }
            }}
        </section>
        <section class="card">
            <div class="filters">
                <label for="fleet-filter">"Search"
                    <input id="fleet-filter" type="search" placeholder="ID, name, account, region or Tag=value" prop:value=move || search.get()
                        on:input=on_search/>
                </label>
                <label for="fleet-account">"Account"
                    <input id="fleet-account" inputmode="numeric" placeholder="any" prop:value=move || q("account") on:change=on_filter("account")/>
                </label>
                <label for="fleet-region">"Region"
                    <input id="fleet-region" placeholder="any" prop:value=move || q("region") on:change=on_filter("region")/>
                </label>
                <label for="fleet-compliance">"Posture"
                    <select id="fleet-compliance" prop:value=move || q("compliance") on:change=on_filter("compliance")>
                        <option value="">"all"</option>
                        <option value="noncompliant">"IMDSv1 allowed"</option>
                        <option value="imdsv1_in_use">"IMDSv1 in use"</option>
                        <option value="compliant">"compliant"</option>
                        <option value="broken">"broken since enforcement"</option>
                    </select>
                </label>
                <label for="fleet-tag">"Tag"
                    <input id="fleet-tag" placeholder="Team=web" prop:value=move || q("tag") on:change=on_filter("tag")/>
                </label>
            </div>
            <Show when=move || crate::session::use_session().can_operate()>
            <div class="filters">
                <button id="enforce-selected"
                    disabled=move || matching().is_none() && (selected.get().is_empty() || regions_selected().len() != 1)
                    on:click=move |_| match matching() { Some(n) => enforce_matching.run(n), None => enforce.run(()) }>
                    {move || match matching() {
                        Some(n) => format!("Enforce IMDSv2 on all {n} matching"),
                        None => format!("Enforce IMDSv2 on {} selected", selected.get().len()),
                    }}
                </button>
                {move || (matching().is_none() && regions_selected().len() > 1).then(|| view! {
                    <span class="field-error" role="alert">"A run covers one account and region: select instances of one account and region, or select all matching a tag."</span>
                })}
                {move || matching_problem.get().map(|m| view! { <span class="field-error" role="alert" data-testid="matching-problem">{m}</span> })}
                <button class="secondary" on:click=move |_| { selected.set(BTreeMap::new()); all_matching.set(None); matching_problem.set(None); }>"Clear selection"</button>
            </div>
            </Show>
            {move || match page.get() {
                None => view! { <p role="status">"Loading instances…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(list)) if list.total == 0 => view! {
                    <p data-testid="fleet-empty">"No instance matches these filters. "<a href="/fleet">"Clear the filters"</a></p>
                }.into_any(),
                Some(Ok(list)) => {
                    let on_page: Vec<(String, (String, String))> = list.instances.iter().map(|i| (i.instance_id.clone(), (i.account.clone(), i.region.clone()))).collect();
                    let all_on_page = {
                        let on_page = on_page.clone();
                        move || { let s = selected.get(); !on_page.is_empty() && on_page.iter().all(|(id, _)| s.contains_key(id)) }
                    };
                    let toggle_page = {
                        let on_page = on_page.clone();
                        let all_on_page = all_on_page.clone();
                        move |_| {
                            let select = !all_on_page();
                            selected.update(|s| for (id, place) in &on_page {
                                if select { s.insert(id.clone(), place.clone()); } else { s.remove(id); }
                            });
                        }
                    };
                    let start = q("cursor").parse::<usize>().unwrap_or(0);
                    let shown = list.instances.len();
                    let next = list.next_cursor.clone();
                    let prev = (start > 0).then(|| start.saturating_sub(shared::fleet::DEFAULT_PAGE).to_string());
                    let (set_prev, set_next) = (set_for_pager.clone(), set_for_pager.clone());
                    let total = list.total;
                    let banner = {
                        let all_on_page = all_on_page.clone();
                        move || {
                            let can = crate::session::use_session().can_operate();
                            if !can || total <= shown {
                                return None;
                            }
                            if let Some(n) = matching() {
                                let tag = q("tag");
                                // Says how far a run by tag reaches before one is started.
                                let spread = reachable().map(|(a, r)| {
                                    let a = if q("account").is_empty() { a.len() } else { 1 };
                                    let r = if q("region").is_empty() { r.len() } else { 1 };
                                    format!("{a} account(s) and {r} Region(s)")
                                }).unwrap_or_else(|| "the accounts and Regions of the filter".into());
                                let note = if tag.contains('=') {
                                    format!(" The run targets every instance tagged {tag} in {spread}; those already requiring tokens do not change.")
                                } else {
                                    String::new()
                                };
                                return Some(view! {
                                    <div class="info-box" role="status" data-testid="select-all">{format!("All {n} matching instances are selected.{note}")}</div>
                                }.into_any());
                            }
                            all_on_page().then(|| view! {
                                <div class="info-box" role="status" data-testid="select-all">
                                    {format!("All {shown} on this page are selected. ")}
                                    <button type="button" class="link" id="select-all-matching"
                                        on:click=move |_| { matching_problem.set(None); all_matching.set(Some((params(FILTERS, &[]), total))); }>
                                        {format!("Select all {total} matching")}</button>
                                </div>
                            }.into_any())
                        }
                    };
                    view! {
                        {banner}
                        <div class="table-scroll">
                        <table data-testid="fleet">
                            <thead><tr>
                                <th scope="col"><input type="checkbox" id="select-page" aria-label="Select every instance on this page"
                                    prop:checked=all_on_page on:change=toggle_page/></th>
                                {header("id", "Instance")}{header("account", "Account")}{header("region", "Region")}{header("name", "Name")}{header("state", "State")}
                                {header("tokens", "HttpTokens")}{header("endpoint", "Endpoint")}{header("hop", "Hop limit")}
                                {header("md_state", "Metadata state")}{header("compliant", "Posture")}{header("v1", "IMDSv1 calls (window)")}<th scope="col">"Tags"</th>
                            </tr></thead>
                            <tbody>
                                {list.instances.into_iter().map(|i| {
                                    let id = i.instance_id.clone();
                                    let id2 = id.clone();
                                    let place = (i.account.clone(), i.region.clone());
                                    let tags = i.tags.iter().filter(|(k, _)| *k != "Name" && !k.starts_with("aws:")).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
                                    let origin = shared::fleet::origin_text(&i);
                                    view! {
                                        <tr data-instance-id=id.clone()>
                                            <td><input type="checkbox" aria-label=format!("Select {id}") prop:checked=move || selected.get().contains_key(&id2)
                                                on:change={let id = id.clone(); move |_| selected.update(|s| { if s.remove(&id).is_none() { s.insert(id.clone(), place.clone()); } })}/></td>
                                            <td class="mono">{id.clone()}</td>
                                            <td class="mono">{i.account.clone()}</td>
                                            <td>{i.region.clone()}</td>
                                            <td>{i.name.clone().unwrap_or_default()}
                                                {(!origin.is_empty()).then(|| view! { <div class="help" data-testid="origin" title="Where it was launched from (see Sources)">{origin.clone()}</div> })}</td>
                                            <td>{i.state.clone()}</td>
                                            <td>{i.metadata.http_tokens.clone()}</td>
                                            <td>{i.metadata.http_endpoint.clone()}</td>
                                            <td>{i.metadata.http_put_response_hop_limit}</td>
                                            <td>{i.metadata.state.clone()}</td>
                                            <td><PostureBadge posture=Posture::of(&i)/></td>
                                            <td data-testid="v1">{shared::fleet::usage_text(&i)}</td>
                                            <td>{tags}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                        </div>
                        <div class="pager">
                            <button class="secondary" id="fleet-prev" disabled=prev.is_none()
                                on:click=move |_| if let Some(p) = prev.clone() { set_prev(vec![("cursor", if p == "0" { String::new() } else { p })]) }>"← Previous"</button>
                            <span data-testid="fleet-range">{format!("{}–{} of {}", start + 1, start + shown, list.total)}</span>
                            <button class="secondary" id="fleet-next" disabled=next.is_none()
                                on:click=move |_| if let Some(c) = next.clone() { set_next(vec![("cursor", c)]) }>"Next →"</button>
                        </div>
                    }.into_any()
                }
            }}
        </section>
    }
}

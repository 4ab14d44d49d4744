//! Fleet: every instance with its metadata options and compliance, a summary per region, filtering,
//! sorting, paging (so 10,000 instances stay responsive), and enforcing on a selection.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use shared::api::InstanceView;
use std::collections::{BTreeMap, BTreeSet};

use crate::api;
use crate::components::status::Compliance;

const PAGE: usize = 100;

#[component]
pub fn FleetPage() -> impl IntoView {
    let fleet = LocalResource::new(api::instances);
    let text = RwSignal::new(String::new());
    let compliance = RwSignal::new(String::new());
    let sort = RwSignal::new(("id".to_owned(), false));
    let page = RwSignal::new(0usize);
    let selected: RwSignal<BTreeSet<String>> = RwSignal::new(BTreeSet::new());
    let navigate = use_navigate();

    let filtered = Memo::new(move |_| {
        let Some(Ok(list)) = fleet.get() else {
            return Vec::new();
        };
        let text = text.get();
        let comp = compliance.get();
        let (col, desc) = sort.get();
        let mut rows: Vec<InstanceView> = list
            .instances
            .into_iter()
            .filter(|i| shared::fleet::matches(i, &text))
            .filter(|i| comp.is_empty() || (comp == "yes") == i.compliant)
            .collect();
        rows.sort_by_cached_key(|i| shared::fleet::sort_key(i, &col));
        if desc {
            rows.reverse();
        }
        rows
    });

    let header = move |col: &'static str, label: &'static str| {
        view! {
            <th scope="col" aria-sort=move || match sort.get() { (c, d) if c == col => if d { "descending" } else { "ascending" }, _ => "none" }>
                <button type="button" class="sort" on:click=move |_| sort.update(|(c, d)| { if c == col { *d = !*d } else { *c = col.to_owned(); *d = false } })>{label}</button>
            </th>
        }
    };

    let enforce = move |_| {
        let ids: Vec<String> = selected.get_untracked().into_iter().collect();
        let url = match ids.as_slice() {
            [] => return,
            [one] => format!("/execute?instance={one}"),
            many => format!("/execute?targets={}", many.join(",")),
        };
        navigate(&url, Default::default());
    };

    view! {
        <section class="card">
            <h1>"Fleet"</h1>
            {move || match fleet.get() {
                None => view! { <p role="status">"Loading the fleet…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(list)) => {
                    let mut per_region: BTreeMap<String, (usize, usize)> = BTreeMap::new();
                    for i in &list.instances {
                        let e = per_region.entry(i.region.clone()).or_default();
                        e.1 += 1;
                        if i.compliant { e.0 += 1; }
                    }
                    let total = list.instances.len();
                    let ok = list.instances.iter().filter(|i| i.compliant).count();
                    view! {
                        <p data-testid="fleet-summary"><strong>{format!("{ok} of {total} instances compliant")}</strong>" (IMDSv2 required, or metadata off)"</p>
                        <div class="summary-grid">
                            {per_region.into_iter().map(|(r, (ok, n))| view! {
                                <div>
                                    <div>{format!("{r}: {ok} / {n} compliant")}</div>
                                    <meter min="0" max=n value=ok aria-label=format!("{r}: {ok} of {n} compliant")></meter>
                                </div>
                            }).collect_view()}
                        </div>
                    }.into_any()
                }
            }}
        </section>
        <section class="card">
            <div class="filters">
                <label for="fleet-filter">"Filter"
                    <input id="fleet-filter" placeholder="ID, name, region or Tag=value" prop:value=move || text.get()
                        on:input=move |ev| { text.set(event_target_value(&ev)); page.set(0); }/>
                </label>
                <label for="fleet-compliance">"Compliance"
                    <select id="fleet-compliance" on:change=move |ev| { compliance.set(event_target_value(&ev)); page.set(0); }>
                        <option value="">"all"</option>
                        <option value="no">"IMDSv1 allowed"</option>
                        <option value="yes">"compliant"</option>
                    </select>
                </label>
                <button id="enforce-selected" disabled=move || selected.get().is_empty() on:click=enforce>
                    {move || format!("Enforce IMDSv2 on {} selected", selected.get().len())}
                </button>
                <button class="secondary" on:click=move |_| selected.update(|s| s.extend(filtered.get_untracked().into_iter().take(50).map(|i| i.instance_id)))>
                    "Select the first 50 shown"
                </button>
                <button class="secondary" on:click=move |_| selected.set(BTreeSet::new())>"Clear selection"</button>
            </div>
            <table data-testid="fleet">
                <thead><tr>
                    <th scope="col">"Select"</th>
                    {header("id", "Instance")}{header("region", "Region")}{header("name", "Name")}{header("state", "State")}
                    {header("tokens", "HttpTokens")}{header("endpoint", "Endpoint")}{header("hop", "Hop limit")}
                    {header("md_state", "Metadata state")}{header("compliant", "Compliance")}{header("v1", "IMDSv1 calls (window)")}<th scope="col">"Tags"</th>
                </tr></thead>
                <tbody>
                    {move || filtered.get().into_iter().skip(page.get() * PAGE).take(PAGE).map(|i| {
                        let id = i.instance_id.clone();
                        let id2 = id.clone();
                        let tags = i.tags.iter().filter(|(k, _)| *k != "Name").map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
                        view! {
                            <tr data-instance-id=id.clone()>
                                <td><input type="checkbox" aria-label=format!("Select {id}") prop:checked=move || selected.get().contains(&id2)
                                    on:change={let id = id.clone(); move |_| selected.update(|s| { if !s.remove(&id) { s.insert(id.clone()); } })}/></td>
                                <td class="mono">{id.clone()}</td>
                                <td>{i.region.clone()}</td>
                                <td>{i.name.clone().unwrap_or_default()}</td>
                                <td>{i.state.clone()}</td>
                                <td>{i.metadata.http_tokens.clone()}</td>
                                <td>{i.metadata.http_endpoint.clone()}</td>
                                <td>{i.metadata.http_put_response_hop_limit}</td>
                                <td>{i.metadata.state.clone()}</td>
                                <td><Compliance compliant=i.compliant/></td>
                                <td data-testid="v1">{shared::fleet::usage_text(&i)}</td>
                                <td>{tags}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <div class="pager">
                <button class="secondary" disabled=move || page.get() == 0 on:click=move |_| page.update(|p| *p = p.saturating_sub(1))>"← Previous"</button>
                <span>{move || { let n = filtered.get().len(); format!("Page {} of {} · {} shown", page.get() + 1, n.div_ceil(PAGE).max(1), n) }}</span>
                <button class="secondary" disabled=move || (page.get() + 1) * PAGE >= filtered.get().len() on:click=move |_| page.update(|p| *p += 1)>"Next →"</button>
            </div>
        </section>
    }
}

//! The home page: compliance now and day by day (an SVG drawn here, no chart library), per account and
//! region, the instances to look at (still calling IMDSv1, broken since enforcement), what changed
//! today, and the runs in flight, live.

use leptos::prelude::*;
use leptos_router::components::A;
use shared::api::{Dashboard, GroupCounts, PostureCounts, TrendPoint};

use crate::api;
use crate::live::use_live;
use crate::pages::history::ExecutionTable;

fn percent(c: &PostureCounts) -> f64 {
    if c.total == 0 {
        0.0
    } else {
        c.compliant as f64 * 100.0 / c.total as f64
    }
}

#[component]
pub fn DashboardPage() -> impl IntoView {
    let live = use_live();
    let data = LocalResource::new(move || {
        live.version.track();
        api::get::<Dashboard>("/dashboard")
    });
    view! {
        <section class="card">
            <h1>"IMDSv2 migration"</h1>
            {move || match data.get() {
                None => view! { <p role="status">"Loading the dashboard…"</p> }.into_any(),
                Some(Err(e)) => view! { <div class="error-box" role="alert">{e.explain()}</div> }.into_any(),
                Some(Ok(d)) => view! { <Overview d=d/> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn Overview(d: Dashboard) -> impl IntoView {
    let n = d.now.clone();
    let people = if d.today.people.is_empty() {
        String::new()
    } else {
        format!(" by {}", d.today.people.join(", "))
    };
    view! {
        <div class="summary-grid" data-testid="dashboard-now">
            <div class="stat"><div class="big tone-ok">{format!("{:.0}%", percent(&n))}</div>
                <div>{format!("compliant: {} of {} instances", n.compliant, n.total)}</div></div>
            <div class="stat"><div class="big tone-bad">{n.imdsv1_in_use}</div>
                <div><A href="/fleet?compliance=imdsv1_in_use">"still calling IMDSv1"</A>": enforcing would break them"</div></div>
            <div class="stat"><div class="big tone-bad" data-testid="broken-count">{n.broken}</div>
                <div><A href="/fleet?compliance=broken">"broken since enforcement"</A>": their software's IMDSv1 calls are refused"</div></div>
            <div class="stat"><div class="big">{n.imdsv1_allowed}</div>
                <div><A href="/fleet?compliance=imdsv1_allowed">"allowing IMDSv1, unused"</A>": safe to enforce"</div></div>
            <div class="stat"><div class="big" data-testid="approvals-pending">{d.approvals_pending}</div>
                <div><A href="/approvals">"waiting for approval"</A>": starts held for a second person"</div></div>
            <div class="stat"><div class="big tone-bad" data-testid="sources-to-fix">{d.sources_to_fix.map_or_else(|| "…".to_owned(), |n| n.to_string())}</div>
                <div><A href="/sources">"sources of new IMDSv1 instances"</A>": templates, groups, AMIs and account defaults to fix"</div></div>
        </div>
        <h2>"Compliance over time"</h2>
        <Trend points=d.trend/>
        <h2>"Today"</h2>
        <p data-testid="today">{format!("{} run(s) started on {} instance(s){people}.", d.today.runs, d.today.instances)}</p>
        <h2>"By account"</h2>
        <Breakdown groups=d.by_account testid="by-account"/>
        <h2>"By region"</h2>
        <Breakdown groups=d.by_region testid="by-region"/>
        <h2>"In flight"</h2>
        {if d.in_flight.is_empty() {
            view! { <p data-testid="in-flight-none">"No run is in progress. "<A href="/execute">"Start one"</A></p> }.into_any()
        } else {
            view! { <ExecutionTable rows=d.in_flight/> }.into_any()
        }}
        <p class="help">{format!("Inventory as of {}.", api::local_time(d.as_of.as_deref()))}</p>
    }
}

/// Compliant share per day as a line, with a point per day (its date and numbers on hover).
#[component]
fn Trend(points: Vec<TrendPoint>) -> impl IntoView {
    if points.is_empty() {
        return view! { <p data-testid="trend-empty">"The trend starts with the first inventory."</p> }
            .into_any();
    }
    let (w, h, pad) = (600.0, 160.0, 20.0);
    let n = points.len();
    let x = move |i: usize| {
        if n == 1 {
            w / 2.0
        } else {
            pad + (w - 2.0 * pad) * i as f64 / (n - 1) as f64
        }
    };
    let y = move |p: f64| h - pad - (h - 2.0 * pad) * p / 100.0;
    let line: String = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(percent(&p.counts))))
        .collect::<Vec<_>>()
        .join(" ");
    let first = points.first().map(|p| p.day.clone()).unwrap_or_default();
    let last = points.last().map(|p| p.day.clone()).unwrap_or_default();
    view! {
        <svg class="trend" data-testid="trend" viewBox=format!("0 0 {w} {h}") role="img"
            aria-label=format!("Compliant share per day from {first} to {last}")>
            <line x1=pad y1=y(100.0) x2=w - pad y2=y(100.0) class="grid"/>
            <line x1=pad y1=y(0.0) x2=w - pad y2=y(0.0) class="grid"/>
            <text x=2 y=y(100.0) + 4.0 class="axis">"100%"</text>
            <text x=2 y=y(0.0) + 4.0 class="axis">"0%"</text>
            <polyline points=line class="trend-line"/>
            {points.into_iter().enumerate().map(|(i, p)| {
                let pc = percent(&p.counts);
                view! {
                    <circle cx=x(i) cy=y(pc) r="4" class="trend-point" data-day=p.day.clone()>
                        <title>{format!("{}: {:.0}% compliant ({} of {}), {} broken", p.day, pc, p.counts.compliant, p.counts.total, p.counts.broken)}</title>
                    </circle>
                }
            }).collect_view()}
        </svg>
    }
    .into_any()
}

#[component]
fn Breakdown(groups: Vec<GroupCounts>, testid: &'static str) -> impl IntoView {
    view! {
        <div class="table-scroll">
        <table data-testid=testid>
            <thead><tr><th>"Group"</th><th>"Compliant"</th><th>"IMDSv1 in use"</th><th>"Broken"</th><th>"Total"</th></tr></thead>
            <tbody>{groups.into_iter().map(|g| {
                let c = g.counts;
                view! {
                    <tr data-group=g.key.clone()>
                        <td class="mono">{g.key.clone()}</td>
                        <td><meter min="0" max=c.total value=c.compliant aria-label=format!("{}: {} of {} compliant", g.key, c.compliant, c.total)></meter>
                            {format!(" {:.0}%", percent(&c))}</td>
                        <td>{c.imdsv1_in_use}</td><td>{c.broken}</td><td>{c.total}</td>
                    </tr>
                }
            }).collect_view()}</tbody>
        </table>
        </div>
    }
}

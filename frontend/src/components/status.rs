//! Status badges: the status as text, with a colour class as a second cue.

use leptos::prelude::*;

#[component]
pub fn StatusBadge(#[prop(into)] status: String) -> impl IntoView {
    let class = format!("status status-{status}");
    view! { <span class=class data-status=status.clone()>{status.clone()}</span> }
}

#[component]
pub fn Compliance(compliant: bool) -> impl IntoView {
    if compliant {
        view! { <span class="status status-compliant">"compliant"</span> }
    } else {
        view! { <span class="status status-noncompliant">"IMDSv1 allowed"</span> }
    }
}

//! Status badges: the status in words, with a colour and an icon (drawn by CSS) as second cues, and
//! SSM's own status string on hover.

use leptos::prelude::*;
use shared::{RunStatus, Tone};

#[component]
pub fn StatusBadge(#[prop(into)] status: RunStatus) -> impl IntoView {
    let tone = match status.tone() {
        Tone::Waiting => "waiting",
        Tone::Running => "running",
        Tone::Succeeded => "ok",
        Tone::Failed => "bad",
        Tone::Stopped => "stopped",
    };
    let class = format!("status tone-{tone}");
    view! {
        <span class=class data-status=status.as_str().to_owned() title=format!("SSM status: {status}")>
            {status.label().to_owned()}
        </span>
    }
}

#[component]
pub fn Compliance(compliant: bool) -> impl IntoView {
    if compliant {
        view! { <span class="status tone-ok">"compliant"</span> }
    } else {
        view! { <span class="status tone-bad">"IMDSv1 allowed"</span> }
    }
}

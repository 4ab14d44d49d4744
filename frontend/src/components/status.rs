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

/// Where an instance stands: compliant, broken since enforcement (IMDSv1 calls now refused), IMDSv1
/// in use, or IMDSv1 allowed.
#[component]
pub fn PostureBadge(posture: shared::fleet::Posture) -> impl IntoView {
    use shared::fleet::Posture;
    let tone = match posture {
        Posture::Compliant => "tone-ok",
        Posture::Broken | Posture::Imdsv1InUse => "tone-bad",
        Posture::Imdsv1Allowed => "tone-waiting",
    };
    view! { <span class=format!("status {tone}") data-posture=posture.as_str()>{posture.label()}</span> }
}

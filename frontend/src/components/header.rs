//! The header: mode (a clear SANDBOX banner), account, regions, navigation, connection state.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::{api, live::use_live};

#[component]
pub fn Header() -> impl IntoView {
    let identity = LocalResource::new(api::identity);
    let live = use_live();
    view! {
        <header class="top">
            <span class="brand">"imds-console"</span>
            <nav aria-label="Main">
                <A href="/execute">"Execute"</A>
                <A href="/history">"History"</A>
                <A href="/fleet">"Fleet"</A>
            </nav>
            {move || match identity.get() {
                None => view! { <span class="who">"Connecting…"</span> }.into_any(),
                Some(Ok(id)) => {
                    let banner = (id.mode == "sandbox").then(|| view! {
                        <span class="banner-sandbox" title="No AWS account is touched: a local emulator answers">"SANDBOX"</span>
                    });
                    view! {
                        {banner}
                        <span class="who" data-testid="identity">
                            {format!("Account {} · {} · regions {}", id.account, id.arn, id.regions.join(", "))}
                        </span>
                    }.into_any()
                }
                Some(Err(e)) => view! { <span class="who field-error">{e.explain()}</span> }.into_any(),
            }}
        </header>
        {move || (!live.connected.get()).then(|| view! {
            <div class="conn-lost" role="status">"Connection to the console server lost; reconnecting…"</div>
        })}
    }
}

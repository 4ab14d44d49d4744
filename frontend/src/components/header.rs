//! The header: mode (a clear SANDBOX banner), account, regions, navigation, who is signed in, and the
//! state of the live connection.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;
use shared::api::Role;

use crate::session::use_session;
use crate::{api, live::use_live};

#[component]
pub fn Header() -> impl IntoView {
    let session = use_session();
    let live = use_live();
    let navigate = use_navigate();
    let identity = crate::session::use_identity();
    let logout = move |_| {
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            let _ = api::logout().await;
            session.me.set(None);
            // Signing out of an ended session (its logout answered 401) is not signing in again.
            session.expired.set(false);
            navigate("/login", Default::default());
        });
    };
    view! {
        <header class="top">
            <span class="brand">"imds-console"</span>
            <nav aria-label="Main">
                <A href="/">"Dashboard"</A>
                {move || session.me.get().filter(|m| m.role >= Role::Operator).map(|_| view! { <A href="/execute">"Execute"</A> })}
                <A href="/history">"History"</A>
                <A href="/plans">"Plans"</A>
                <A href="/approvals">"Approvals"</A>
                <A href="/fleet">"Fleet"</A>
                <A href="/sources">"Sources"</A>
                {move || session.me.get().filter(|m| m.role == Role::Admin).map(|_| view! { <A href="/admin">"Admin"</A> })}
                <A href="/api-docs">"API"</A>
            </nav>
            {move || match identity.get() {
                None => None,
                Some(Ok(id)) => {
                    let banner = (id.mode == "sandbox").then(|| view! {
                        <span class="banner-sandbox" title="No AWS account is touched: a local emulator answers">"SANDBOX"</span>
                    });
                    Some(view! {
                        {banner}
                        <span class="who" data-testid="identity">
                            {format!("Account {} · {} · regions {}", id.account, id.arn, id.regions.join(", "))}
                        </span>
                    }.into_any())
                }
                Some(Err(e)) => Some(view! { <span class="who field-error">{e.explain()}</span> }.into_any()),
            }}
            {move || session.me.get().filter(|_| !session.expired.get()).map(|me| view! {
                <span class="who" data-testid="me">{format!("{} ({})", me.name, me.role.as_str())}</span>
                <button class="secondary" id="logout" on:click=logout.clone()>"Sign out"</button>
            })}
        </header>
        {move || (session.me.get().is_some() && !session.expired.get() && !live.connected.get()).then(|| view! {
            <div class="conn-lost" role="status">"Connection to the console server lost; reconnecting…"</div>
        })}
    }
}

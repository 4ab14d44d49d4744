//! The page for an unknown address.

use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <section class="card">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address. Go to " <A href="/execute">"Execute"</A> ", "
               <A href="/history">"History"</A> " or " <A href="/fleet">"Fleet"</A> "."</p>
        </section>
    }
}

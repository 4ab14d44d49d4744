//! Sign in with a built-in account; then back to where the person was going.

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use shared::api::LoginRequest;

use crate::api;
use crate::session::use_session;

#[component]
pub fn LoginPage() -> impl IntoView {
    let session = use_session();
    let query = use_query_map();
    let navigate = use_navigate();
    let user = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let login = Action::new_local(|req: &LoginRequest| {
        let req = req.clone();
        async move { api::login(&req).await }
    });
    Effect::new(move |_| {
        if let Some(Ok(me)) = login.value().get() {
            session.me.set(Some(me));
            let next = query
                .read_untracked()
                .get("next")
                .filter(|n| n.starts_with('/') && !n.starts_with("//"));
            navigate(&next.unwrap_or_else(|| "/execute".into()), Default::default());
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        login.dispatch(LoginRequest {
            username: user.get_untracked(),
            password: password.get_untracked(),
        });
    };
    view! {
        <section class="card login">
            <h1>"Sign in"</h1>
            <form on:submit=submit aria-label="Sign in">
                <div class="row-stack">
                    <label for="login-user">"User name"</label>
                    <input id="login-user" autocomplete="username" prop:value=move || user.get()
                        on:input=move |ev| user.set(event_target_value(&ev))/>
                </div>
                <div class="row-stack">
                    <label for="login-password">"Password"</label>
                    <input id="login-password" type="password" autocomplete="current-password" prop:value=move || password.get()
                        on:input=move |ev| password.set(event_target_value(&ev))/>
                </div>
                <button type="submit" id="login-submit" disabled=move || login.pending().get()>"Sign in"</button>
            </form>
            {move || login.value().get().and_then(Result::err).map(|e| view! {
                <div class="error-box" role="alert" data-testid="login-error">{e.explain()}</div>
            })}
            <p class="help">"On the very first start the server prints the admin's password to its log. \
               Behind a sign-on proxy you are signed in by the proxy."</p>
        </section>
    }
}

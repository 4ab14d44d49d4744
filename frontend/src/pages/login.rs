//! Sign in with a built-in account; then back to where the person was going. A generated first password
//! must be replaced first, on this page, before the session can do anything else.

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use shared::api::{ChangePasswordRequest, LoginRequest};

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
    let change = Action::new_local(|req: &ChangePasswordRequest| {
        let req = req.clone();
        async move { api::post::<_, shared::api::Me>("/auth/password", &req).await }
    });
    let (new_password, again) = (RwSignal::new(String::new()), RwSignal::new(String::new()));
    let must_change = move || {
        login
            .value()
            .get()
            .and_then(Result::ok)
            .is_some_and(|me| me.must_change_password)
            && !matches!(change.value().get(), Some(Ok(_)))
    };
    let signed_in = move || match (login.value().get(), change.value().get()) {
        (_, Some(Ok(me))) => Some(me),
        (Some(Ok(me)), _) if !me.must_change_password => Some(me),
        _ => None,
    };
    Effect::new(move |_| {
        if let Some(me) = signed_in() {
            session.me.set(Some(me));
            // Signed in again over a page whose session had ended: the page carries on.
            if session.expired.get_untracked() {
                session.expired.set(false);
                return;
            }
            let next = query
                .read_untracked()
                .get("next")
                .filter(|n| n.starts_with('/') && !n.starts_with("//"));
            navigate(&next.unwrap_or_else(|| "/execute".into()), Default::default());
        }
    });
    let submit_change = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        change.dispatch(ChangePasswordRequest {
            current_password: password.get_untracked(),
            new_password: new_password.get_untracked(),
        });
    };
    let mismatch = move || !again.get().is_empty() && again.get() != new_password.get();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        login.dispatch(LoginRequest {
            username: user.get_untracked(),
            password: password.get_untracked(),
        });
    };
    view! {
        <section class="card login">
            <Show when=move || !must_change() fallback=move || view! {
                <h1>"Choose a new password"</h1>
                <p>"This account's password was generated at the first start. Choose your own to continue; \
                    the file that held the generated one is deleted."</p>
                <form on:submit=submit_change aria-label="Choose a new password">
                    <div class="row-stack">
                        <label for="new-password">"New password (12+ characters)"</label>
                        <input id="new-password" type="password" autocomplete="new-password" prop:value=move || new_password.get()
                            on:input=move |ev| new_password.set(event_target_value(&ev))/>
                    </div>
                    <div class="row-stack">
                        <label for="new-password-again">"Again"</label>
                        <input id="new-password-again" type="password" autocomplete="new-password" prop:value=move || again.get()
                            on:input=move |ev| again.set(event_target_value(&ev))/>
                    </div>
                    {move || mismatch().then(|| view! { <p class="field-error" id="err-again">"The two passwords differ."</p> })}
                    <button type="submit" id="change-password"
                        disabled=move || change.pending().get() || mismatch() || again.get().is_empty()>"Set password"</button>
                </form>
                {move || change.value().get().and_then(Result::err).map(|e| view! {
                    <div class="error-box" role="alert" data-testid="change-error">{e.explain()}</div>
                })}
            }>
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
            <p class="help">"On the very first start the server writes the admin's password to the file \
               first-admin-password in its data directory. Behind a sign-on proxy you are signed in by the proxy."</p>
            </Show>
        </section>
    }
}

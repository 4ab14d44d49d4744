//! A confirmation dialog in the page (CloudScape's modal), instead of the browser's `confirm()`: it
//! says what will happen, names the thing, and offers Cancel first. main.js moves the focus into it,
//! keeps Tab inside, closes it on Escape (Cancel) and gives the focus back to what opened it.

use leptos::prelude::*;

#[component]
pub fn ConfirmModal(
    open: RwSignal<bool>,
    /// What the dialog asks; it may change while the dialog is open (e.g. the thing it names).
    #[prop(into)]
    title: Signal<String>,
    #[prop(into)] confirm_label: String,
    on_confirm: Callback<()>,
    /// While true, only Cancel can be pressed (the dialog is still finding out what would happen).
    #[prop(optional, into)]
    confirm_disabled: Signal<bool>,
    children: ChildrenFn,
) -> impl IntoView {
    let confirm_label = StoredValue::new(confirm_label);
    let children = StoredValue::new(children);
    view! {
        <Show when=move || open.get()>
            <div class="modal-backdrop">
                <div class="modal" role="dialog" aria-modal="true" aria-labelledby="modal-title" data-testid="modal" tabindex="-1">
                    <h2 id="modal-title">{move || title.get()}</h2>
                    <div>{children.with_value(|c| c())}</div>
                    <p class="modal-actions">
                        <button class="secondary" id="modal-cancel" on:click=move |_| open.set(false)>"Cancel"</button>
                        " "
                        <button class="danger" id="modal-confirm" disabled=move || confirm_disabled.get() on:click=move |_| {
                            open.set(false);
                            on_confirm.run(());
                        }>{confirm_label.get_value()}</button>
                    </p>
                </div>
            </div>
        </Show>
    }
}

//! A button that copies a value (an execution ID, a new token) to the clipboard and says whether the
//! browser let it.

use leptos::prelude::*;

#[component]
pub fn CopyButton(
    /// What to copy.
    #[prop(into)]
    text: String,
    /// The element ID (for tests and labels).
    #[prop(optional, into)]
    id: Option<String>,
    /// What the button copies, for screen readers ("Copy the execution ID").
    #[prop(into)]
    label: String,
) -> impl IntoView {
    // None: not copied yet; Some(false): the browser refused (the person copies it by hand).
    let copied = RwSignal::new(None::<bool>);
    let text = StoredValue::new(text);
    let copy = move |_| {
        let Some(w) = web_sys::window() else { return };
        let written =
            wasm_bindgen_futures::JsFuture::from(w.navigator().clipboard().write_text(&text.get_value()));
        leptos::task::spawn_local(async move { copied.set(Some(written.await.is_ok())) });
    };
    view! {
        <button type="button" class="secondary copy" id=id aria-label=label on:click=copy>
            {move || match copied.get() {
                Some(true) => "Copied",
                Some(false) => "Copy failed: select it and copy it",
                None => "Copy",
            }}
        </button>
    }
}

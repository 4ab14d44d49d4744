//! A part of a page that comes from its own WASM module (a fallible `#[wasm_split]` function) the
//! first time it is wanted, and stays from then on: a dialog, a review, fields of a mode the page
//! does not open in. A module that cannot be fetched shows [`Unavailable`] instead of trapping.

use std::future::Future;

use leptos::prelude::*;
use leptos::wasm_split::SplitLoaderError;

/// Said in place of a page or a part whose code could not be fetched (the loader has fetched it
/// again first), with the reload that fetches the console as the server now has it.
#[component]
pub fn Unavailable() -> impl IntoView {
    view! {
        <div class="error-box" role="alert" data-testid="code-unavailable">
            "This part of the console could not be fetched (the server down, the network failing, or \
             the console upgraded since this tab opened). "
            <button id="reload" on:click=|_| {
                let _ = window().location().reload();
            }>"Reload the page"</button>
        </div>
    }
}

/// The part its module's load gives, or [`Unavailable`] when the module cannot be fetched.
pub fn or_unavailable(
    load: impl Future<Output = Result<AnyView, SplitLoaderError>> + Send + 'static,
) -> Suspend<AnyView> {
    Suspend::new(async move { load.await.unwrap_or_else(|_| view! { <Unavailable/> }.into_any()) })
}

#[component]
pub fn OnDemand<F, Fut>(
    /// Becomes true when the part is first wanted; it is kept after, whatever this becomes.
    #[prop(into)]
    wanted: Signal<bool>,
    /// Said while its module loads.
    loading: &'static str,
    /// Loads the part (the split function's call); signals read before its `async` block make it
    /// again.
    part: F,
) -> impl IntoView
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AnyView, SplitLoaderError>> + Send + 'static,
{
    let part = StoredValue::new(part);
    let loaded = RwSignal::new(wanted.get_untracked());
    Effect::new(move |_| {
        if wanted.get() {
            loaded.set(true);
        }
    });
    view! {
        <Show when=move || loaded.get()>
            // A Transition, not a Suspense: the part's own reads (a preview read again as one types)
            // must not swap it for the fallback and take the focus from its fields.
            <Transition fallback=move || view! { <p role="status">{loading}</p> }>
                {move || or_unavailable(part.with_value(|load| load()))}
            </Transition>
        </Show>
    }
}

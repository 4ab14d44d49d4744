//! A part of a page that comes from its own WASM module (a `#[lazy]` function) the first time it is
//! wanted, and stays from then on: a dialog, a review, fields of a mode the page does not open in.

use std::future::Future;

use leptos::prelude::*;

#[component]
pub fn OnDemand<F, Fut>(
    /// Becomes true when the part is first wanted; it is kept after, whatever this becomes.
    #[prop(into)]
    wanted: Signal<bool>,
    /// Said while its module loads.
    loading: &'static str,
    /// Loads the part (the `#[lazy]` call); signals read before its `async` block make it again.
    part: F,
) -> impl IntoView
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = AnyView> + Send + 'static,
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
                {move || Suspend::new(part.with_value(|load| load()))}
            </Transition>
        </Show>
    }
}

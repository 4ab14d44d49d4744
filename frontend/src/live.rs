//! The live connection: one EventSource on `/api/v1/events` per tab. Each event bumps a version signal
//! that pages key their reads on; the connection state is shown in the header and recovers by itself.

use leptos::prelude::*;
use shared::api::ExecutionEvent;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

#[derive(Clone, Copy)]
pub struct Live {
    /// Bumped on every execution event.
    pub version: RwSignal<u64>,
    pub last: RwSignal<Option<ExecutionEvent>>,
    /// False while the server is unreachable.
    pub connected: RwSignal<bool>,
    /// The stream has opened once (a later opening is a reconnection).
    pub opened: RwSignal<bool>,
}

/// Makes the live signals available; `connect` opens the stream once someone is signed in.
pub fn provide() -> Live {
    let live = Live {
        version: RwSignal::new(0),
        last: RwSignal::new(None),
        connected: RwSignal::new(true),
        opened: RwSignal::new(false),
    };
    provide_context(live);
    live
}

/// Opens the event stream (it needs a signed-in session, so it waits for one).
///
/// Browsers keep at most six connections per host over HTTP/1.1, and a page kept in the back-forward
/// cache keeps its event stream open: after a few page loads in one tab, every fetch of the page in
/// view would wait for a free connection that never comes. So the stream is closed when the page is
/// hidden (`pagehide`) and opened again when it is shown.
///
/// The first stream starts after `events_seq`, the last event when the session was read, so that what
/// happens while the pages read their data arrives; a later one (after the page was hidden) reads
/// everything again when it opens instead.
pub fn connect(live: Live, events_seq: u64) {
    CURRENT.set(open(live, &format!("/api/v1/events?after={events_seq}")));
    let Some(window) = web_sys::window() else {
        return;
    };
    let on_hide = Closure::<dyn FnMut()>::new(move || {
        if let Some(source) = CURRENT.take() {
            source.close();
        }
    });
    let _ = window.add_event_listener_with_callback("pagehide", on_hide.as_ref().unchecked_ref());
    on_hide.forget();
    let on_show = Closure::<dyn FnMut()>::new(move || reopen(live));
    let _ = window.add_event_listener_with_callback("pageshow", on_show.as_ref().unchecked_ref());
    on_show.forget();
}

thread_local! {
    /// The open stream, if any (none while the page is hidden, or after the server refused it).
    static CURRENT: std::cell::Cell<Option<web_sys::EventSource>> = const { std::cell::Cell::new(None) };
}

/// Opens the stream again when none is open (the page shown again, or signed in again).
pub fn reopen(live: Live) {
    let source = CURRENT.take().or_else(|| open(live, "/api/v1/events"));
    CURRENT.set(source);
}

fn open(live: Live, url: &str) -> Option<web_sys::EventSource> {
    let Ok(source) = web_sys::EventSource::new(url) else {
        live.connected.set(false);
        return None;
    };
    let on_event = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
        if let Some(data) = ev.data().as_string() {
            live.last.set(serde_json::from_str(&data).ok());
        }
        live.version.update(|v| *v += 1);
    });
    let _ = source.add_event_listener_with_callback("execution", on_event.as_ref().unchecked_ref());
    let _ = source.add_event_listener_with_callback("resync", on_event.as_ref().unchecked_ref());
    on_event.forget();
    let on_open = Closure::<dyn FnMut()>::new(move || {
        // Whatever changed while the stream was down (an outage, a page kept hidden) was not pushed
        // to us: read everything again. Not at the first opening: the pages have just read it, and
        // the stream replays what happened since.
        if live.opened.get_untracked() {
            live.version.update(|v| *v += 1);
        }
        live.opened.set(true);
        live.connected.set(true);
    });
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    on_open.forget();
    // EventSource reconnects on its own; we only show that it is trying. It gives up when the
    // server refuses the stream (its session ended): then a call says why (a 401 marks the session
    // expired, and the stream opens again after the person signs in again).
    let this = source.clone();
    let on_error = Closure::<dyn FnMut()>::new(move || {
        live.connected.set(false);
        if this.ready_state() == web_sys::EventSource::CLOSED {
            drop(CURRENT.take());
            leptos::task::spawn_local(async {
                let _ = crate::api::me().await;
            });
        }
    });
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();
    Some(source)
}

pub fn use_live() -> Live {
    expect_context::<Live>()
}

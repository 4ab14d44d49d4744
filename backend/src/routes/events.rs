//! `GET /api/v1/events`: execution changes as Server-Sent Events, resumable with Last-Event-ID.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::time::Duration;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/events", get(events))
}

fn to_event(id: u64, ev: &shared::api::ExecutionEvent) -> Event {
    Event::default()
        .id(id.to_string())
        .event("execution")
        .json_data(ev)
        .unwrap_or_default()
}

async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (replay, rx) = state.events.subscribe(last);
    let replay = stream::iter(replay.into_iter().map(|(id, ev)| Ok(to_event(id, &ev))));
    let live = stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok((id, ev)) => Some((Ok(to_event(id, &ev)), rx)),
            // A slow client missed some events: tell it to reload everything.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                Some((Ok(Event::default().event("resync").data("{}")), rx))
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    });
    Sse::new(replay.chain(live)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

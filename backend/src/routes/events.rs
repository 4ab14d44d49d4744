//! `GET /api/v1/events`: execution changes as Server-Sent Events, resumable with Last-Event-ID.

use super::described::{doc, ApiRouter};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::time::Duration;

use crate::auth::AccountScope;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::default().get(
        "/events",
        events,
        doc("Live changes as server-sent events (Last-Event-ID resumes)")
            .query::<After>()
            .media(
                200,
                "text/event-stream",
                "One event per change of a run, plan, approval or the fleet",
            ),
    )
}

fn to_event(id: u64, ev: &shared::api::ExecutionEvent) -> Event {
    Event::default()
        .id(id.to_string())
        .event("execution")
        .json_data(ev)
        .unwrap_or_default()
}

/// While a stream is open, its caller is checked again whenever access may have changed (sign-out,
/// disable, role or password change, revoked token) and at least this often (sessions expire).
const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// The stream's state between events.
struct Feed {
    state: AppState,
    rx: tokio::sync::broadcast::Receiver<crate::state::Numbered>,
    access: tokio::sync::watch::Receiver<u64>,
    recheck: tokio::time::Interval,
    headers: HeaderMap,
    peer: Option<std::net::IpAddr>,
    /// Runs outside the caller's accounts are not theirs to follow.
    scope: AccountScope,
    _open: OpenStream,
}

/// Counts the stream among the open ones (`/metrics`) for as long as it lives.
struct OpenStream(AppState);

impl OpenStream {
    fn new(state: &AppState) -> OpenStream {
        state.metrics.sse_clients.inc();
        OpenStream(state.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.metrics.sse_clients.dec();
    }
}

impl Feed {
    /// The next thing to send, or None when the stream ends (closed hub, or the caller lost access).
    async fn next(&mut self) -> Option<Event> {
        loop {
            // Access that changed applies before the next event is judged, even when events were
            // already waiting (select! picks among ready branches at random).
            if self.access.has_changed().unwrap_or(true) {
                self.access.borrow_and_update();
                if !self.rescope().await {
                    return None;
                }
            }
            tokio::select! {
                biased;
                got = self.rx.recv() => return match got {
                    Ok((_, ev)) if !sees(&self.scope, &ev) => continue,
                    Ok((id, ev)) => Some(to_event(id, &ev)),
                    // A slow client missed some events: tell it to reload everything.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        Some(Event::default().event("resync").data("{}"))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
                },
                changed = self.access.changed() => {
                    if changed.is_err() || !self.rescope().await {
                        return None;
                    }
                }
                _ = self.recheck.tick() => {
                    if !self.rescope().await {
                        return None;
                    }
                }
            }
        }
    }

    /// Takes the caller's accounts as they are now (a changed role or account list applies to an open
    /// stream at once); false when they may no longer read.
    async fn rescope(&mut self) -> bool {
        match crate::auth::read_scope(&self.state, &self.headers, self.peer).await {
            Some(scope) => {
                self.scope = scope;
                true
            }
            None => false,
        }
    }
}

/// Whether a stream within `scope` shows an event: its run's account and, for a run across accounts,
/// every account it acts in.
fn sees(scope: &AccountScope, ev: &shared::api::ExecutionEvent) -> bool {
    scope.allows(&ev.account) && ev.accounts.iter().all(|a| scope.allows(a))
}

/// `?after=N`: start after event N (the number a session was read with).
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct After {
    after: Option<u64>,
}

async fn events(
    State(state): State<AppState>,
    super::ApiQuery(After { after }): super::ApiQuery<After>,
    req: axum::extract::Request,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let headers = req.headers().clone();
    let peer = crate::auth::peer(req.extensions());
    // The browser's own Last-Event-ID after a reconnection; at the first opening, `?after=` the
    // number it got with its session, so events while its pages were reading are not missed.
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or(after);
    let scope = req
        .extensions()
        .get::<AccountScope>()
        .cloned()
        .unwrap_or_default();
    let (replay, rx) = state.events.subscribe(last);
    let replay = replay.into_iter().filter(|(_, ev)| sees(&scope, ev));
    let replay = stream::iter(replay.map(|(id, ev)| Ok(to_event(id, &ev))).collect::<Vec<_>>());
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    recheck.reset();
    let open = OpenStream::new(&state);
    let feed = Feed {
        access: state.access_epoch.subscribe(),
        state,
        rx,
        recheck,
        headers,
        peer,
        scope,
        _open: open,
    };
    let live = stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Sse::new(replay.chain(live)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

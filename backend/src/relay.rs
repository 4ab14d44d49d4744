//! Live events between replicas: every execution change a replica publishes also goes out on a
//! PostgreSQL channel (`NOTIFY`), and every replica `LISTEN`s, so that a run started or watched on one
//! replica streams live to browsers connected to another. On SQLite there is one process and nothing
//! to relay.

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use shared::api::ExecutionEvent;
use tokio::sync::mpsc;

use crate::state::AppState;
use crate::store::db::PostgresTarget;

const CHANNEL: &str = "imds_console_events";
/// How long a lost listening connection waits before connecting again.
const RECONNECT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// What goes over the channel: the event, and which replica sent it (which ignores its own).
#[derive(Serialize, Deserialize)]
struct Relayed {
    origin: String,
    event: ExecutionEvent,
}

/// Relays this replica's events to the others and theirs to it, for as long as the process lives.
pub fn start(state: &AppState, target: &PostgresTarget) {
    let origin = uuid::Uuid::new_v4().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    state.events.relay_to(tx);
    tokio::spawn(send(state.clone(), origin.clone(), rx));
    tokio::spawn(listen(state.clone(), target.clone(), origin));
}

/// Sends this replica's events, in order, through the store's pool.
async fn send(state: AppState, origin: String, mut rx: mpsc::UnboundedReceiver<ExecutionEvent>) {
    while let Some(event) = rx.recv().await {
        let payload = serde_json::to_string(&Relayed {
            origin: origin.clone(),
            event,
        })
        .unwrap_or_default();
        if let Err(e) = state.store.notify(CHANNEL, &payload).await {
            tracing::warn!(error = %e, "could not relay a live event to the other replicas");
        }
    }
}

/// Listens on a connection of its own (a pooled one would drop the subscription when recycled), and
/// publishes the other replicas' events here.
async fn listen(state: AppState, target: PostgresTarget, origin: String) {
    loop {
        match target.connect().await {
            Ok((client, mut connection)) => {
                let (tx, mut notes) = mpsc::unbounded_channel();
                let pump = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let tokio_postgres::AsyncMessage::Notification(n) = message {
                            let _ = tx.send(n.payload().to_owned());
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        while let Some(payload) = notes.recv().await {
                            match serde_json::from_str::<Relayed>(&payload) {
                                Ok(r) if r.origin != origin => state.events.publish_here(r.event),
                                Ok(_) => {}
                                Err(e) => tracing::warn!(error = %e, "an unreadable relayed event"),
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot listen for other replicas' events"),
                }
                pump.abort();
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach PostgreSQL to hear other replicas' events"),
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

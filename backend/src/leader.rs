//! Leadership among replicas sharing one PostgreSQL database: exactly one of them, the leader, runs
//! the background work that calls AWS on its own (the watcher and its discovery, plan steps, held
//! starts' expiry, webhook deliveries, settling starts a dead replica left behind). Requests are
//! served by every replica.
//!
//! The leader holds a PostgreSQL session-level advisory lock on a connection of its own. When the
//! process dies, its connection closes and PostgreSQL releases the lock; another replica, asking every
//! [`CAMPAIGN_EVERY`], takes it within seconds. A leader that loses its connection stops leading at
//! once. A console on SQLite is one process and always leads.

use std::time::Duration;

use tokio::sync::watch;

use crate::store::db::PostgresTarget;

/// How often a follower asks for the lock, and a leader checks that its connection lives.
pub const CAMPAIGN_EVERY: Duration = Duration::from_secs(1);
/// A leader whose connection does not answer within this stops leading.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// The advisory lock's key: two 32-bit halves, the first naming this application, so that other
/// applications' advisory locks in the same database do not collide with it.
const LOCK_KEY: (i32, i32) = (0x0001_d5c0, 1);

/// Whether this replica leads now, and a way to wait for a change.
#[derive(Clone)]
pub enum Leadership {
    Always,
    Lease(watch::Receiver<bool>),
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        match self {
            Leadership::Always => true,
            Leadership::Lease(rx) => *rx.borrow(),
        }
    }

    /// Returns once this replica leads.
    pub async fn until_leader(&mut self) {
        if let Leadership::Lease(rx) = self {
            let _ = rx.wait_for(|leads| *leads).await;
        }
    }

    /// Returns once this replica has stopped leading (never, for [`Leadership::Always`]).
    pub async fn until_lost(&mut self) {
        match self {
            Leadership::Always => std::future::pending().await,
            Leadership::Lease(rx) => {
                let _ = rx.wait_for(|leads| !*leads).await;
            }
        }
    }
}

/// Starts campaigning for the lead on `url`'s database; the first answer (lead or not) is in before
/// this returns, so a lone replica leads from its first request.
pub async fn campaign(target: &PostgresTarget) -> Leadership {
    let mut target = target.clone();
    // A leader whose host vanished without closing its connection is noticed by the server's
    // keepalives; ours notice a vanished server.
    target
        .config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10));
    let (tx, mut rx) = watch::channel(None::<bool>);
    tokio::spawn(hold_the_lock(target, tx));
    // The first attempt's outcome (or a failure to connect, which is "not leading").
    let _ = rx.wait_for(Option::is_some).await;
    let (lease_tx, lease_rx) = watch::channel(rx.borrow().unwrap_or(false));
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let leads = rx.borrow().unwrap_or(false);
            lease_tx.send_if_modified(|now| std::mem::replace(now, leads) != leads);
        }
    });
    Leadership::Lease(lease_rx)
}

async fn hold_the_lock(target: PostgresTarget, tx: watch::Sender<Option<bool>>) {
    loop {
        match target.connect().await {
            Ok((client, connection)) => {
                let connection = tokio::spawn(connection);
                lead_while_connected(&client, &tx).await;
                connection.abort();
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach PostgreSQL to campaign for the lead"),
        }
        if tx.send_replace(Some(false)) == Some(true) {
            tracing::warn!("this replica stopped leading: its database connection was lost");
        }
        tokio::time::sleep(CAMPAIGN_EVERY).await;
    }
}

/// Asks for the lock until it is granted, then keeps checking the connection; returns when the
/// connection fails.
async fn lead_while_connected(client: &tokio_postgres::Client, tx: &watch::Sender<Option<bool>>) {
    loop {
        let asked = tokio::time::timeout(
            CHECK_TIMEOUT,
            client.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_KEY.0, &LOCK_KEY.1]),
        )
        .await;
        match asked {
            Ok(Ok(row)) if row.get::<_, bool>(0) => break,
            Ok(Ok(_)) => {
                tx.send_replace(Some(false));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "campaigning for the lead failed");
                return;
            }
            Err(_) => return,
        }
        tokio::time::sleep(CAMPAIGN_EVERY).await;
    }
    tracing::info!("this replica leads: it runs the watcher, plans and deliveries");
    tx.send_replace(Some(true));
    loop {
        tokio::time::sleep(CAMPAIGN_EVERY).await;
        let alive = tokio::time::timeout(CHECK_TIMEOUT, client.simple_query("SELECT 1")).await;
        if !matches!(alive, Ok(Ok(_))) {
            return;
        }
    }
}

//! `GET /api/v1/dashboard`: compliance now and day by day, per account and region, what changed
//! today and the runs in flight, within the caller's accounts. Reads the inventory snapshot and the
//! store only: no AWS call of its own (the sources' count comes from their shared cache, whose first
//! reading it starts in the background).

use super::described::{doc, ApiRouter};
use axum::extract::State;
use axum::{Extension, Json};
use shared::api::{Dashboard, Today, TrendPoint};

use crate::auth::AccountScope;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{RunRow, POSTURE_KEEP_DAYS};

pub fn router() -> ApiRouter {
    ApiRouter::default().get(
        "/dashboard",
        dashboard,
        doc("The home page: posture now and by day, today's changes, runs in flight")
            .answers::<Dashboard>(200),
    )
}

async fn dashboard(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
) -> Result<Json<Dashboard>, AppError> {
    let snap = crate::inventory::snapshot(&state).await?;
    let visible: Vec<&shared::api::InstanceView> = snap
        .instances
        .iter()
        .filter(|i| scope.allows(&i.account))
        .collect();
    let (now, by_account) = shared::fleet::summarise(visible.iter().copied(), "account").unwrap_or_default();
    let (_, by_region) = shared::fleet::summarise(visible.iter().copied(), "region").unwrap_or_default();
    // The trend is kept per account under its ID; runs record the console's own account as ''.
    let trend = state
        .store
        .posture_trend(
            &state.store.clock.day(POSTURE_KEEP_DAYS),
            scope.allowed.as_deref(),
        )
        .await?
        .into_iter()
        .map(|(day, counts)| TrendPoint { day, counts })
        .collect();
    let midnight = format!("{}T00:00:00.000Z", state.store.clock.day(0));
    let recorded = scope.as_recorded();
    let (runs, instances, people) = state
        .store
        .started_since(&midnight, recorded.as_deref(), scope.allowed.as_deref())
        .await?;
    let in_flight = state
        .store
        .in_flight()
        .await?
        .iter()
        .filter(|r| scope.allows_run(&r.account, r.span.as_deref()))
        .map(RunRow::summary)
        .collect();
    Ok(Json(Dashboard {
        now,
        by_account,
        by_region,
        trend,
        today: Today {
            runs,
            instances,
            people,
        },
        in_flight,
        as_of: Some(snap.as_of),
        sources_to_fix: crate::sources::to_fix_for_dashboard(&state, &scope).await,
        approvals_pending: crate::approvals::list(&state, &scope, true)
            .await?
            .approvals
            .len(),
    }))
}

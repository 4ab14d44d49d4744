//! The imds-console browser app: layout, routes and the live connection to the server.
//!
//! Pages live in `pages/`, reusable pieces in `components/`, the typed `/api/v1` client in `api`.
//! Every request has a loading and an error state; nothing here talks to AWS.

// Leptos components receive their props by value by design.
#![allow(clippy::needless_pass_by_value)]

pub mod api;
pub mod components;
pub mod live;
pub mod pages;
pub mod session;

use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

use components::header::Header;
use pages::{
    admin::AdminPage, dashboard::DashboardPage, detail::ExecutionDetailPage, execute::ExecutePage,
    fleet::FleetPage, history::HistoryPage, login::LoginPage, not_found::NotFound,
};

#[component]
pub fn App() -> impl IntoView {
    let live = live::provide();
    let session = session::provide();
    session::provide_identity(session);
    // The event stream needs a signed-in session: open it once there is one.
    let connected = StoredValue::new(false);
    Effect::new(move |_| {
        if let Some(me) = session.me.get() {
            if !connected.get_value() {
                connected.set_value(true);
                live::connect(live, me.events_seq);
            }
        }
    });
    view! {
        <Router>
            <session::RequireLogin/>
            <a class="skip-link" href="#main">"Skip to content"</a>
            <Header/>
            <main id="main" tabindex="-1">
                <Routes fallback=|| view! { <NotFound/> }>
                    <Route path=path!("/") view=DashboardPage/>
                    <Route path=path!("/execute") view=ExecutePage/>
                    <Route path=path!("/history") view=HistoryPage/>
                    <Route path=path!("/fleet") view=FleetPage/>
                    <Route path=path!("/sources") view=pages::sources::SourcesPage/>
                    <Route path=path!("/plans") view=pages::plans::PlansPage/>
                    <Route path=path!("/approvals") view=pages::approvals::ApprovalsPage/>
                    <Route path=path!("/plans/:id") view=pages::plans::PlanPage/>
                    <Route path=path!("/executions/:id") view=ExecutionDetailPage/>
                    <Route path=path!("/login") view=LoginPage/>
                    <Route path=path!("/admin") view=AdminPage/>
                </Routes>
            </main>
        </Router>
    }
}

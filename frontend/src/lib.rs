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

use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

use components::header::Header;
use pages::{
    detail::ExecutionDetailPage, execute::ExecutePage, fleet::FleetPage, history::HistoryPage,
    not_found::NotFound,
};

#[component]
pub fn App() -> impl IntoView {
    live::provide();
    view! {
        <Router>
            <Header/>
            <main>
                <Routes fallback=|| view! { <NotFound/> }>
                    <Route path=path!("/") view=ExecutePage/>
                    <Route path=path!("/execute") view=ExecutePage/>
                    <Route path=path!("/history") view=HistoryPage/>
                    <Route path=path!("/fleet") view=FleetPage/>
                    <Route path=path!("/executions/:id") view=ExecutionDetailPage/>
                </Routes>
            </main>
        </Router>
    }
}

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
use leptos_router::{lazy_route, path, Lazy, LazyRoute};

use components::header::Header;
use pages::not_found::NotFound;
use pages::{
    admin::AdminPage, api_docs::ApiDocsPage, approvals::ApprovalsPage, dashboard::DashboardPage,
    detail::ExecutionDetailPage, execute::ExecutePage, fleet::FleetPage, history::HistoryPage,
    login::LoginPage, plans::PlanPage, plans::PlansPage, sources::SourcesPage,
};

/// Makes each page a lazy route: its code is split into its own WASM chunk (x.sh runs the splitter
/// after the build), fetched when the router first needs it, so the first load of any page carries
/// the shell and that page, not every page.
macro_rules! lazy_pages {
    ($($route:ident => $page:ident),* $(,)?) => {$(
        struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                view! { <$page/> }.into_any()
            }
        }
    )*};
}

lazy_pages! {
    DashboardRoute => DashboardPage,
    ExecuteRoute => ExecutePage,
    HistoryRoute => HistoryPage,
    FleetRoute => FleetPage,
    SourcesRoute => SourcesPage,
    PlansRoute => PlansPage,
    ApprovalsRoute => ApprovalsPage,
    PlanRoute => PlanPage,
    ExecutionRoute => ExecutionDetailPage,
    LoginRoute => LoginPage,
    AdminRoute => AdminPage,
    ApiDocsRoute => ApiDocsPage,
}

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
                // No page is mounted for a visitor who is not signed in, except the sign-in page: a
                // page's lazily loaded code finishing after the redirect to /login would otherwise
                // show that page, refused, under the sign-in address.
                <session::SignedInOrLogin>
                <Routes fallback=|| view! { <NotFound/> }>
                    <Route path=path!("/") view={Lazy::<DashboardRoute>::new()}/>
                    <Route path=path!("/execute") view={Lazy::<ExecuteRoute>::new()}/>
                    <Route path=path!("/history") view={Lazy::<HistoryRoute>::new()}/>
                    <Route path=path!("/fleet") view={Lazy::<FleetRoute>::new()}/>
                    <Route path=path!("/sources") view={Lazy::<SourcesRoute>::new()}/>
                    <Route path=path!("/plans") view={Lazy::<PlansRoute>::new()}/>
                    <Route path=path!("/approvals") view={Lazy::<ApprovalsRoute>::new()}/>
                    <Route path=path!("/plans/:id") view={Lazy::<PlanRoute>::new()}/>
                    <Route path=path!("/executions/:id") view={Lazy::<ExecutionRoute>::new()}/>
                    <Route path=path!("/login") view={Lazy::<LoginRoute>::new()}/>
                    <Route path=path!("/admin") view={Lazy::<AdminRoute>::new()}/>
                    <Route path=path!("/api-docs") view={Lazy::<ApiDocsRoute>::new()}/>
                </Routes>
                </session::SignedInOrLogin>
            </main>
        </Router>
    }
}

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

use std::future::Future;
use std::pin::Pin;

use leptos::prelude::*;
use leptos::wasm_split::{wasm_split, SplitLoaderError};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{path, ChooseView};

use components::header::Header;
use components::on_demand::Unavailable;
use pages::not_found::NotFound;
use pages::{
    admin::AdminPage, api_docs::ApiDocsPage, approvals::ApprovalsPage, dashboard::DashboardPage,
    detail::ExecutionDetailPage, execute::ExecutePage, fleet::FleetPage, history::HistoryPage,
    login::LoginPage, plans::PlanPage, plans::PlansPage, sources::SourcesPage,
};

/// A page whose code is its own WASM module (x.sh runs the splitter after the build), fetched when
/// the router first needs it, so the first load of any page carries the shell and that page, not
/// every page. One type for every page (not one per page), so the router's code is there once.
#[derive(Clone, Copy)]
struct Page(fn() -> PageLoad);

/// The load of a page's module and its view.
type PageLoad = Pin<Box<dyn Future<Output = Result<AnyView, SplitLoaderError>>>>;

impl ChooseView for Page {
    /// The page, or, when its module cannot be fetched (the server down, the network failing, or
    /// the console upgraded since the tab opened, its old modules gone), a reload offered in its
    /// place. The loader fetches a module again before it fails; a failure is not kept, so coming
    /// back to the page fetches it anew. A module that failed must not trap the app (as an
    /// infallible split function does), which would leave every page of the tab dead.
    async fn choose(self) -> AnyView {
        (self.0)()
            .await
            .unwrap_or_else(|_| view! { <Unavailable/> }.into_any())
    }

    async fn preload(&self) {}
}

/// Each page's entry point in its own module, loaded fallibly (see [`Page`]).
macro_rules! pages {
    ($($module:ident: $load:ident => $page:ident),* $(,)?) => {$(
        #[wasm_split($module, wasm_split_path = ::leptos::wasm_split, fallible)]
        fn $load() -> Result<AnyView, SplitLoaderError> {
            Ok(view! { <$page/> }.into_any())
        }
    )*};
}

pages! {
    page_dashboard: dashboard => DashboardPage,
    page_execute: execute => ExecutePage,
    page_history: history => HistoryPage,
    page_fleet: fleet => FleetPage,
    page_sources: sources => SourcesPage,
    page_plans: plans => PlansPage,
    page_approvals: approvals => ApprovalsPage,
    page_plan: plan => PlanPage,
    page_execution: execution => ExecutionDetailPage,
    page_login: login => LoginPage,
    page_admin: admin => AdminPage,
    page_api_docs: api_docs => ApiDocsPage,
}

#[component]
pub fn App() -> impl IntoView {
    let live = live::provide();
    let session = session::provide();
    session::provide_identity(session);
    // The event stream needs a signed-in session: open it once there is one, and again after
    // signing in again (the server closed it when the session ended).
    let connected = StoredValue::new(false);
    Effect::new(move |_| {
        if let Some(me) = session.me.get() {
            if !connected.get_value() {
                connected.set_value(true);
                live::connect(live, me.events_seq);
            } else if !session.expired.get() {
                live::reopen(live);
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
                    <Route path=path!("/") view=Page(|| Box::pin(dashboard()))/>
                    <Route path=path!("/execute") view=Page(|| Box::pin(execute()))/>
                    <Route path=path!("/history") view=Page(|| Box::pin(history()))/>
                    <Route path=path!("/fleet") view=Page(|| Box::pin(fleet()))/>
                    <Route path=path!("/sources") view=Page(|| Box::pin(sources()))/>
                    <Route path=path!("/plans") view=Page(|| Box::pin(plans()))/>
                    <Route path=path!("/approvals") view=Page(|| Box::pin(approvals()))/>
                    <Route path=path!("/plans/:id") view=Page(|| Box::pin(plan()))/>
                    <Route path=path!("/executions/:id") view=Page(|| Box::pin(execution()))/>
                    <Route path=path!("/login") view=Page(|| Box::pin(login()))/>
                    <Route path=path!("/admin") view=Page(|| Box::pin(admin()))/>
                    <Route path=path!("/api-docs") view=Page(|| Box::pin(api_docs()))/>
                </Routes>
                </session::SignedInOrLogin>
            </main>
            // A session that ended while a page is open: the sign-in page in a dialog over it, so the
            // page and what was typed in it stay; the login page closes it once signed in again.
            {move || session.expired.get().then(|| view! {
                <div class="modal-backdrop">
                    <div class="modal" role="dialog" aria-modal="true" aria-labelledby="expired-title" data-testid="sign-in-again">
                        <h2 id="expired-title">"Your session has ended: sign in again to go on where you were"</h2>
                        {components::on_demand::or_unavailable(login())}
                    </div>
                </div>
            })}
        </Router>
    }
}

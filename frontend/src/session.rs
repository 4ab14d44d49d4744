//! Who is signed in: asked once at start (`/auth/me`), set by the login page, cleared by logout.
//! Pages that need a signed-in person send everyone else to `/login`. A session that ends while a
//! page is open (it expired, or was ended elsewhere) is marked `expired` by the first call the
//! server refuses with 401: the page stays as it is, with what was typed in it, under a sign-in
//! dialog, and carries on once the person has signed in again.

use leptos::prelude::*;
use leptos_router::hooks::{use_location, use_navigate};
use shared::api::{Me, Role};

use crate::api;

#[derive(Clone, Copy)]
pub struct Session {
    pub me: RwSignal<Option<Me>>,
    /// The first `/auth/me` has answered.
    pub checked: RwSignal<bool>,
    /// The server refused a call of the signed-in person's with 401: their session has ended.
    pub expired: RwSignal<bool>,
}

thread_local! {
    /// The session, for the API client, which marks it expired (it runs outside any component).
    static CURRENT: std::cell::Cell<Option<Session>> = const { std::cell::Cell::new(None) };
}

/// Marks the session expired, when someone was signed in (a 401 before that is the answer to a
/// visitor who has not signed in yet, or to a wrong password).
pub fn refused() {
    if let Some(session) = CURRENT.get() {
        if session.me.get_untracked().is_some() {
            session.expired.set(true);
        }
    }
}

impl Session {
    /// Whether the signed-in person may start, stop and roll back runs.
    pub fn can_operate(&self) -> bool {
        self.me.get().is_some_and(|m| m.role >= Role::Operator)
    }
}

pub fn provide() -> Session {
    let session = Session {
        me: RwSignal::new(None),
        checked: RwSignal::new(false),
        expired: RwSignal::new(false),
    };
    CURRENT.set(Some(session));
    provide_context(session);
    leptos::task::spawn_local(async move {
        // A session that must still replace a generated password counts as not signed in: the login
        // page asks for the new password after signing in again.
        session
            .me
            .set(api::me().await.ok().filter(|m| !m.must_change_password));
        session.checked.set(true);
    });
    session
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}

/// Sends a visitor who is not signed in to the login page, remembering where they were going.
#[component]
pub fn RequireLogin() -> impl IntoView {
    let session = use_session();
    let location = use_location();
    let navigate = use_navigate();
    Effect::new(move |_| {
        let path = location.pathname.get();
        if session.checked.get() && session.me.get().is_none() && path != "/login" {
            let search = location.search.get();
            let next = if search.is_empty() {
                path.clone()
            } else {
                format!("{path}?{}", search.trim_start_matches('?'))
            };
            navigate(&format!("/login?next={}", api::enc(&next)), Default::default());
        }
    });
}

/// Its children (the pages) once the session is known and someone is signed in, or on the sign-in
/// page itself; otherwise nothing while `RequireLogin` sends the visitor to sign in.
#[component]
pub fn SignedInOrLogin(children: ChildrenFn) -> impl IntoView {
    let session = use_session();
    let location = use_location();
    // A memo, so a navigation that keeps it true does not mount the pages again.
    let ready = Memo::new(move |_| {
        session.checked.get() && (session.me.get().is_some() || location.pathname.get() == "/login")
    });
    move || ready.get().then(|| children())
}

/// The console's identity (mode, account, ARN, Regions), read once per sign-in and shared by the
/// header and the pages that need it.
#[derive(Clone, Copy)]
pub struct ConsoleIdentity(LocalResource<Option<Result<shared::api::Identity, api::ClientError>>>);

impl ConsoleIdentity {
    /// None while it loads (or nobody is signed in).
    pub fn get(&self) -> Option<Result<shared::api::Identity, api::ClientError>> {
        self.0.get().flatten()
    }
}

/// Reads the identity whenever someone signs in (it needs a session) and shares it.
pub fn provide_identity(session: Session) {
    let identity = LocalResource::new(move || {
        let signed_in = session.me.get().is_some();
        async move {
            if signed_in {
                Some(api::identity().await)
            } else {
                None
            }
        }
    });
    provide_context(ConsoleIdentity(identity));
}

pub fn use_identity() -> ConsoleIdentity {
    expect_context::<ConsoleIdentity>()
}

//! The one policy table: for every routed operation (method and route template), the role it needs
//! and how the accounts it touches are found; and the account check itself, made on the same decoded,
//! typed values the handler acts on.
//!
//! Why it is built this way: an earlier check read the raw path and re-parsed the body as loose JSON,
//! while handlers got axum's percent-decoded `Path` and a typed body, so `%2D` in an ID or a field the
//! loose reading could not parse skipped the check. Now the check runs after routing, keyed by the
//! matched route template, on axum's own decoded path parameters; a body is parsed and validated once,
//! here, into the type the handler takes, and handed to the handler through [`ApiJson`], which refuses
//! to parse it a second time. A route cannot be added without an entry in [`policy`] (the router
//! panics at start-up), so a new route is never unchecked.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{Method, StatusCode};
use shared::api::{Role, StartExecutionRequest};
use shared::plans::PlanRequest;
use shared::StartPlan;
use std::sync::{Arc, Mutex};

use super::Identity;
use crate::error::AppError;
use crate::routes::ApiJson;
use crate::state::AppState;

/// How the accounts of a request are found, for identities limited to some accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountRule {
    /// Not about accounts (sign-in, users, tokens, health, webhooks, the permission check).
    Unscoped,
    /// A list: answered within the caller's accounts; the handler gets the scope to query with.
    Filter,
    /// A start or its preview: the validated body's account (the console's own when absent) and
    /// every account and organizational unit of its target locations.
    StartBody,
    /// A new plan: every wave's accounts, as [`AccountRule::StartBody`].
    PlanBody,
    /// A run named by the path's `id`: the account it was recorded in; one the console has not
    /// recorded is looked up in the console's own account.
    Run,
    /// A plan named by the path's `id`: every account of its waves.
    Plan,
    /// A held start named by the path's `id` (its record number).
    Approval,
    /// A source named by the path's `id`: the account in the source ID.
    Source,
    /// A source fix named by the path's `fix_id`: the account it was made in.
    SourceFix,
}

impl AccountRule {
    /// The name of the path parameter that names the object, for the rules that take one.
    fn id_param(self) -> Option<&'static str> {
        match self {
            AccountRule::Run | AccountRule::Plan | AccountRule::Approval | AccountRule::Source => Some("id"),
            AccountRule::SourceFix => Some("fix_id"),
            _ => None,
        }
    }

    /// How the rule is named in the API document (`x-account-rule`).
    pub fn as_str(self) -> &'static str {
        match self {
            AccountRule::Unscoped => "none",
            AccountRule::Filter => "filter",
            AccountRule::StartBody => "start-body",
            AccountRule::PlanBody => "plan-body",
            AccountRule::Run => "run",
            AccountRule::Plan => "plan",
            AccountRule::Approval => "approval",
            AccountRule::Source => "source",
            AccountRule::SourceFix => "source-fix",
        }
    }
}

/// What one operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// None: public.
    pub role: Option<Role>,
    pub accounts: AccountRule,
}

/// The policy of every operation, by method and route template as routed under `/api/v1`. None: not a
/// route (the router refuses to add a route without a policy).
pub fn policy(method: &Method, template: &str) -> Option<Policy> {
    use AccountRule::*;
    let (viewer, operator, admin) = (Some(Role::Viewer), Some(Role::Operator), Some(Role::Admin));
    // axum answers HEAD with the GET handler: it gets GET's policy, never a looser default.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let (role, accounts) = match (method, template) {
        ("GET", "/health") | ("POST", "/auth/login" | "/auth/logout") => (None, Unscoped),
        // Anyone signed in may read who they are and change their own password (the handler checks
        // the current one).
        ("GET", "/auth/me") | ("POST", "/auth/password") => (viewer, Unscoped),
        // Everyone makes their own API tokens (and only their own: the handler checks).
        ("POST", "/tokens") => (viewer, Unscoped),
        ("GET", "/identity" | "/openapi.json" | "/approval-policy") => (viewer, Unscoped),
        (
            "GET",
            "/instances" | "/fleet/summary" | "/accounts" | "/dashboard" | "/audit" | "/events"
            | "/executions" | "/sources" | "/sources/fixes" | "/plans" | "/approvals",
        ) => (viewer, Filter),
        ("GET", "/executions/{id}") => (viewer, Run),
        ("GET", "/plans/{id}") => (viewer, Plan),
        ("POST", "/executions" | "/executions/preview") => (operator, StartBody),
        (
            "POST",
            "/executions/{id}/stop" | "/executions/{id}/rollback" | "/executions/{id}/rollback/preview",
        ) => (operator, Run),
        ("POST", "/plans") => (operator, PlanBody),
        ("POST", "/plans/{id}/preview" | "/plans/{id}/{action}") => (operator, Plan),
        ("POST", "/approvals/{id}/{decision}") => (operator, Approval),
        ("POST", "/sources/{id}/preview" | "/sources/{id}/fix") => (operator, Source),
        ("POST", "/sources/fixes/{fix_id}/revert") => (operator, SourceFix),
        // Users, tokens, the sign-in trail, the permission check (a dozen AWS calls per Region, and
        // the account's permission layout), who must approve whom, and where the console sends what
        // happened: admins only.
        ("GET", "/users" | "/tokens" | "/audit/auth" | "/doctor" | "/webhooks") => (admin, Unscoped),
        (
            "POST",
            "/users"
            | "/users/{name}/disable"
            | "/users/{name}/enable"
            | "/users/{name}/role"
            | "/users/{name}/accounts"
            | "/users/{name}/password"
            | "/tokens/{id}/revoke"
            | "/webhooks"
            | "/webhooks/{id}/{action}",
        ) => (admin, Unscoped),
        ("PUT", "/approval-policy") => (admin, Unscoped),
        _ => return None,
    };
    Some(Policy { role, accounts })
}

/// The route template as the policy table spells it (a `'static` string, so a metrics label is one of
/// a closed set), if the table has a route of that template under any method.
pub fn route_template(template: &str) -> Option<&'static str> {
    ROUTES.iter().copied().find(|t| *t == template)
}

/// Every route template of the API, for [`route_template`]; a test checks it against the router.
const ROUTES: &[&str] = &[
    "/health",
    "/auth/login",
    "/auth/logout",
    "/auth/me",
    "/auth/password",
    "/identity",
    "/openapi.json",
    "/approval-policy",
    "/instances",
    "/fleet/summary",
    "/accounts",
    "/dashboard",
    "/audit",
    "/events",
    "/executions",
    "/sources",
    "/sources/fixes",
    "/plans",
    "/approvals",
    "/executions/{id}",
    "/plans/{id}",
    "/executions/preview",
    "/executions/{id}/stop",
    "/executions/{id}/rollback",
    "/executions/{id}/rollback/preview",
    "/plans/{id}/preview",
    "/plans/{id}/{action}",
    "/approvals/{id}/{decision}",
    "/sources/{id}/preview",
    "/sources/{id}/fix",
    "/sources/fixes/{fix_id}/revert",
    "/users",
    "/tokens",
    "/audit/auth",
    "/doctor",
    "/webhooks",
    "/users/{name}/disable",
    "/users/{name}/enable",
    "/users/{name}/role",
    "/users/{name}/accounts",
    "/users/{name}/password",
    "/tokens/{id}/revoke",
    "/webhooks/{id}/{action}",
];

/// The role a route needs, `None` for a public one, for the API document.
pub fn required_role(method: &Method, template: &str) -> Option<Role> {
    policy(method, template).and_then(|p| p.role)
}

/// The accounts a request may see, handed to read handlers (None: every account). The console's own
/// account is `hub`; runs record it as ''.
#[derive(Debug, Clone, Default)]
pub struct AccountScope {
    pub allowed: Option<Vec<String>>,
    pub hub: String,
}

impl AccountScope {
    pub fn allows(&self, account: &str) -> bool {
        let account = if account.is_empty() {
            self.hub.as_str()
        } else {
            account
        };
        self.allowed
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|a| a == account))
    }

    /// Whether a run recorded in `account`, acting across the accounts of `span`, is within the scope.
    pub fn allows_run(&self, account: &str, span: Option<&str>) -> bool {
        self.allows(account) && crate::store::span_within(span, self.allowed.as_deref())
    }

    /// The accounts as runs record them ('' for the hub), for store queries; None: every account.
    pub fn as_recorded(&self) -> Option<Vec<String>> {
        self.allowed.as_ref().map(|ids| {
            ids.iter()
                .map(|a| if *a == self.hub { String::new() } else { a.clone() })
                .collect()
        })
    }
}

/// The accounts a validated start acts in: its account (the console's own, `hub`, when absent), and
/// every account and organizational unit or root of its target locations (a unit is never one of a
/// limited identity's accounts, so naming one is refused: it could reach any account under it).
pub fn start_accounts(plan: &StartPlan, hub: &str) -> Vec<String> {
    let mut wanted = vec![plan
        .account
        .as_ref()
        .map_or_else(|| hub.to_owned(), |a| a.as_str().to_owned())];
    for loc in &plan.target_locations {
        wanted.extend(loc.accounts.iter().map(|a| a.as_str().to_owned()));
        wanted.extend(loc.units.iter().map(|u| u.as_str().to_owned()));
    }
    wanted
}

/// The accounts every wave of a plan acts in. A wave that does not validate (a stored plan from an
/// older version) counts with its accounts as written, so the check never sees fewer accounts than a
/// run could reach.
pub fn plan_accounts(plan: &PlanRequest, hub: &str) -> Vec<String> {
    (0..plan.waves.len())
        .flat_map(|i| {
            let start = plan.wave_start(i);
            match start.validate() {
                Ok(valid) => start_accounts(&valid, hub),
                Err(_) => raw_accounts(&start, hub),
            }
        })
        .collect()
}

fn raw_accounts(req: &StartExecutionRequest, hub: &str) -> Vec<String> {
    let mut wanted = vec![req
        .account
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| hub.to_owned())];
    for loc in req.target_locations.iter().flatten() {
        wanted.extend(loc.accounts.iter().cloned());
    }
    wanted
}

/// Whether a limited identity may see a plan: every account of its waves is theirs.
pub fn may_see_plan(scope: &AccountScope, plan: &shared::plans::PlanView) -> bool {
    scope.allowed.is_none()
        || plan_accounts(&plan.request, &scope.hub)
            .iter()
            .all(|a| scope.allows(a))
}

/// A body checked by the policy, waiting for the handler's [`ApiJson`]. In a shared cell because
/// request extensions must be `Clone` and the typed bodies need not be.
pub struct CheckedBody<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for CheckedBody<T> {
    fn clone(&self) -> Self {
        CheckedBody(self.0.clone())
    }
}

impl<T> CheckedBody<T> {
    fn new(value: T) -> Self {
        CheckedBody(Arc::new(Mutex::new(Some(value))))
    }

    /// The body, once.
    pub fn take(&self) -> Option<T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Marks a request whose body the policy consumed: the handler gets it from [`CheckedBody`] or not at
/// all, never by parsing it again.
#[derive(Clone, Copy)]
pub struct BodyConsumed;

/// The typed body of a body rule, parsed and validated as its handler would: a body the handler would
/// refuse is refused here, with the handler's own error, before any decision. The parsed body goes on
/// to the handler in the request's extensions.
async fn typed_body<T>(req: Request, state: &AppState) -> Result<(Request, T), AppError>
where
    T: serde::de::DeserializeOwned + Send + Sync + 'static,
    axum::Json<T>: FromRequest<AppState, Rejection = axum::extract::rejection::JsonRejection>,
{
    let (parts, body) = req.into_parts();
    let ApiJson(value) = ApiJson::<T>::from_request(Request::from_parts(parts.clone(), body), state).await?;
    let mut passed = Request::from_parts(parts, axum::body::Body::empty());
    passed.extensions_mut().insert(BodyConsumed);
    Ok((passed, value))
}

/// The account decision on one request: the accounts it touches, found by the route's rule on the
/// decoded path and the typed, validated body, must all be the caller's. A change outside them is
/// refused naming the account (403); a read of an object outside them is a 404, as for one that does
/// not exist; an object the console does not know is a 404 for a limited identity before anything is
/// asked of AWS. Gives back the request (its body, if the rule read it, in [`CheckedBody`]) and the
/// scope reads are answered within.
pub async fn check_accounts(
    state: &AppState,
    identity: &Identity,
    policy: Policy,
    req: Request,
) -> Result<(Request, AccountScope), AppError> {
    let rule = policy.accounts;
    let needed = policy.role.unwrap_or(Role::Viewer);
    let limited = identity.varies_by_account();
    let hub = if limited {
        crate::routes::identity::resolve(state).await?.account
    } else {
        String::new()
    };
    let scope = AccountScope {
        allowed: identity.accounts.clone(),
        hub: hub.clone(),
    };
    // Whether the identity holds the route's role in an account ('' is the console's own).
    let may = |account: &str| {
        !limited || identity.role_in(if account.is_empty() { &hub } else { account }) >= Some(needed)
    };
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    // The ID the path names, decoded, for the rules that take one.
    let mut named: Option<String> = None;
    let (mut req, wanted): (Request, Vec<String>) = match rule {
        AccountRule::Unscoped | AccountRule::Filter => (req, Vec::new()),
        AccountRule::StartBody => {
            let (mut req, body) = typed_body::<StartExecutionRequest>(req, state).await?;
            let plan = body.validate().map_err(AppError::Validation)?;
            let wanted = start_accounts(&plan, &hub);
            req.extensions_mut().insert(CheckedBody::new(body));
            (req, wanted)
        }
        AccountRule::PlanBody => {
            let (mut req, body) = typed_body::<PlanRequest>(req, state).await?;
            body.validate().map_err(AppError::Validation)?;
            let wanted = plan_accounts(&body, &hub);
            req.extensions_mut().insert(CheckedBody::new(body));
            (req, wanted)
        }
        AccountRule::Run
        | AccountRule::Plan
        | AccountRule::Approval
        | AccountRule::Source
        | AccountRule::SourceFix => {
            let (mut parts, body) = req.into_parts();
            // axum's own decoding of the path, the one the handler's `Path` gets.
            let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(&mut parts, state)
                .await
                .map_err(|e| AppError::NotFound(e.body_text()))?;
            let name = rule.id_param().expect("ID rules name their parameter");
            let id = params
                .into_iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .ok_or_else(|| AppError::internal(format!("route has no path parameter {name}")))?;
            let req = Request::from_parts(parts, body);
            named = Some(id.clone());
            if !limited {
                (req, Vec::new())
            } else {
                match accounts_of(state, rule, &id, &hub).await? {
                    Some(accounts) => (req, accounts),
                    // Unknown to this console: the handler's 404, decided here for limited identities
                    // so that nothing outside their accounts is reached on their behalf.
                    None => return Err(not_found(rule, &id)),
                }
            }
        }
    };
    if let Some(outside) = wanted.iter().find(|a| !may(a)) {
        // Outside the caller's accounts, an object does not exist for them: a read of it, or a change
        // to one they may not even see, is a 404, so neither its existence nor its accounts show.
        let unseen = named.is_some() && wanted.iter().any(|a| !scope.allows(a));
        if read || unseen {
            let id = named.as_deref().unwrap_or_default();
            // A caller who may look up unrecorded runs in the console's own account gets what such
            // a lookup of an unknown ID answers.
            if read && matches!(rule, AccountRule::Run) && scope.allows("") {
                return Err(crate::runs::hidden_run(state, id).await);
            }
            return Err(not_found(rule, id));
        }
        let outside = if outside.is_empty() { &hub } else { outside };
        let message = match identity.role_in(outside) {
            Some(role) => format!(
                "{} is a {} in account {outside}; this needs the {} role there",
                identity.name,
                role.as_str(),
                needed.as_str()
            ),
            None => format!(
                "{} may act in account(s) {} only; {outside} is not one of them",
                identity.name,
                acting_accounts(identity, needed).join(", ")
            ),
        };
        return Err(AppError::refused(
            StatusCode::FORBIDDEN,
            "AccountNotAllowed",
            message,
        ));
    }
    req.extensions_mut().insert(scope.clone());
    Ok((req, scope))
}

/// The accounts where a limited identity holds `role`, for a refusal's message.
fn acting_accounts(identity: &Identity, role: Role) -> Vec<String> {
    let mut out: Vec<String> = identity
        .grants
        .iter()
        .filter(|g| g.role >= role)
        .flat_map(|g| g.accounts.clone().unwrap_or_else(|| vec!["every account".into()]))
        .collect();
    out.dedup();
    out
}

/// The accounts of the object an ID rule names; None when the console does not know it.
async fn accounts_of(
    state: &AppState,
    rule: AccountRule,
    id: &str,
    hub: &str,
) -> Result<Option<Vec<String>>, AppError> {
    let one = |account: Option<String>| account.map(|a| vec![a]);
    Ok(match rule {
        AccountRule::Run => match state.store.by_execution_id(id).await? {
            Some(row) => Some(run_accounts(&row)),
            // A run the console did not record is looked up in its own account (`foreign_detail`).
            None => Some(vec![String::new()]),
        },
        AccountRule::Plan => state
            .store
            .plan(id)
            .await?
            .map(|plan| plan_accounts(&plan.request, hub)),
        AccountRule::Approval => match approval_id(id) {
            Some(n) => state.store.by_record_id(n).await?.map(|row| run_accounts(&row)),
            None => None,
        },
        AccountRule::Source => one(crate::sources::account_of_source(id)),
        AccountRule::SourceFix => one(state.store.source_fix(id).await?.map(|f| f.account)),
        AccountRule::Unscoped | AccountRule::Filter | AccountRule::StartBody | AccountRule::PlanBody => None,
    })
}

/// Every account a recorded run acts in: the account it was recorded in (a run across accounts: the
/// console's own, where its parent runs) and its span (every account and unit of its locations and
/// targets, kept with the record and copied to its children).
pub fn run_accounts(row: &crate::store::RunRow) -> Vec<String> {
    let mut all = vec![row.account.clone()];
    all.extend(crate::store::span_accounts(row.span.as_deref()));
    all
}

/// An approval's ID as its route takes it: the held run's record number.
pub fn approval_id(raw: &str) -> Option<i64> {
    raw.parse().ok()
}

fn not_found(rule: AccountRule, id: &str) -> AppError {
    AppError::NotFound(match rule {
        AccountRule::Run => format!("execution {id} was not started by this console"),
        AccountRule::Plan => format!("no plan {id}"),
        AccountRule::Approval => format!("no approval {id}"),
        AccountRule::Source => format!("no source {id}"),
        AccountRule::SourceFix => format!("no source fix {id}"),
        _ => format!("no {id}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_covers_reads_changes_and_accounts_by_route_template() {
        let of = |m: Method, t: &str| policy(&m, t).map(|p| (p.role, p.accounts));
        assert_eq!(of(Method::GET, "/health"), Some((None, AccountRule::Unscoped)));
        assert_eq!(
            of(Method::GET, "/executions"),
            Some((Some(Role::Viewer), AccountRule::Filter))
        );
        assert_eq!(
            of(Method::GET, "/executions/{id}"),
            Some((Some(Role::Viewer), AccountRule::Run))
        );
        assert_eq!(
            of(Method::POST, "/executions/preview"),
            Some((Some(Role::Operator), AccountRule::StartBody))
        );
        assert_eq!(
            of(Method::POST, "/executions/{id}/rollback"),
            Some((Some(Role::Operator), AccountRule::Run))
        );
        assert_eq!(
            of(Method::POST, "/approvals/{id}/{decision}"),
            Some((Some(Role::Operator), AccountRule::Approval))
        );
        assert_eq!(
            of(Method::POST, "/sources/fixes/{fix_id}/revert"),
            Some((Some(Role::Operator), AccountRule::SourceFix))
        );
        assert_eq!(
            of(Method::POST, "/tokens/{id}/revoke"),
            Some((Some(Role::Admin), AccountRule::Unscoped))
        );
        assert_eq!(of(Method::GET, "/doctor").map(|p| p.0), Some(Some(Role::Admin)));
        // Raw paths are not templates: nothing is decided on them.
        assert_eq!(of(Method::POST, "/executions/abc/stop"), None);
        assert_eq!(of(Method::DELETE, "/executions/{id}"), None);
    }

    #[test]
    fn every_routed_operation_has_a_policy_and_every_id_it_acts_on_a_rule() {
        let (_, operations) = crate::routes::described().into_parts();
        assert!(operations.len() >= 47, "{}", operations.len());
        for op in &operations {
            assert_eq!(
                route_template(op.path),
                Some(op.path),
                "{} is not in ROUTES, so its metrics would be labelled `other`",
                op.path
            );
            let p = policy(&op.method, op.path)
                .unwrap_or_else(|| panic!("{} {} has no policy", op.method, op.path));
            // Below admin, a route that names an object in its path decides on that object's account.
            let names_object = op.path.contains('{');
            if names_object && p.role.is_some_and(|r| r < Role::Admin) {
                assert!(
                    p.accounts
                        .id_param()
                        .is_some_and(|name| op.path.contains(&format!("{{{name}}}"))),
                    "{} {}: {:?} does not read its path's ID",
                    op.method,
                    op.path,
                    p.accounts
                );
            }
        }
    }

    #[test]
    fn a_start_acts_in_its_account_or_the_hub_and_every_location() {
        let req: StartExecutionRequest = serde_json::from_value(serde_json::json!({
            "parameters": {},
            "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}}, "max_concurrency": "1", "max_errors": "0"},
            "target_locations": [{"accounts": ["200000000002", "ou-abcd-12345678"], "regions": ["us-east-1"]}]
        }))
        .unwrap();
        let plan = req.validate().unwrap();
        assert_eq!(
            start_accounts(&plan, "123456789012"),
            ["123456789012", "200000000002", "ou-abcd-12345678"]
        );
    }
}

//! One module per route.

pub mod admin;
pub mod api_docs;
pub mod approvals;
pub mod dashboard;
pub mod detail;
pub mod execute;
pub mod fleet;
pub mod history;
pub mod login;
pub mod not_found;
pub mod plans;
pub mod sources;

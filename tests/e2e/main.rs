//! The end-to-end suites, one binary: the sandbox through the real AWS SDK clients, the console's HTTP
//! API against its embedded sandbox, and the built page in headless Chromium.

mod access;
mod alarms;
mod api;
mod approvals;
mod audit;
mod browser;
mod cross_account_steps;
mod fleet;
mod fleet_budget;
mod held_and_queued;
mod layers;
mod metrics;
mod openapi;
mod org_rollouts;
mod org_units;
mod plan_resume_and_places;
mod plans;
mod real_aws;
mod runbook_throttling;
mod safety;
mod sandbox_sdk;
mod sandbox_strict;
mod sandbox_strict_ec2_cw_sts;
mod sandbox_strict_other;
mod sandbox_strict_round2;
mod sandbox_strict_start;
mod scope;
mod security;
mod sources;
mod sources_as_aws;
mod store;
mod template_fix_copy;
mod trust;
mod unreadable_places;
mod webhooks;

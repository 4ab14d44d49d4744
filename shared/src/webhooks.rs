//! Webhooks: where the console tells other systems what happened (a generic JSON POST, or a Slack
//! incoming-webhook message), and the record of each delivery.

use serde::{Deserialize, Serialize};

use crate::params::ValidationErrors;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"event", "at", "summary", "data"}`.
    Json,
    /// Slack's incoming webhooks: `{"text"}`.
    Slack,
}

/// `POST /api/v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct CreateWebhookRequest {
    pub url: String,
    pub format: WebhookFormat,
}

impl CreateWebhookRequest {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let url = self.url.trim();
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        let host_ok = url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
            .is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace));
        if !scheme_ok || !host_ok || url.len() > 2048 {
            errors.push(
                "url",
                "an http:// or https:// URL with a host, such as https://hooks.slack.com/services/…",
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// One delivery attempt's outcome, as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeliveryView {
    pub delivery_id: i64,
    pub event: String,
    pub summary: String,
    /// pending (to be sent or retried), delivered, failed (gave up).
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WebhookView {
    pub webhook_id: i64,
    /// The URL with its path hidden after the host (Slack's carry a secret).
    pub url: String,
    pub format: WebhookFormat,
    pub created_by: String,
    pub created_at: String,
    /// The newest deliveries first.
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// What a webhook hears about.
pub const EVENTS: &[&str] = &[
    "run.started",
    "run.ended",
    "run.failed",
    "wave.started",
    "wave.ended",
    "wave.failed",
    "approval.needed",
    "plan.halted",
    "source.new",
    "test",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_needs_an_http_url_with_a_host() {
        let ok = CreateWebhookRequest {
            url: "https://hooks.slack.com/services/T0/B0/x".into(),
            format: WebhookFormat::Slack,
        };
        assert!(ok.validate().is_ok());
        for bad in ["hooks.slack.com/x", "ftp://x", "https:///path", "http://a b/"] {
            let r = CreateWebhookRequest {
                url: bad.into(),
                format: WebhookFormat::Json,
            };
            assert_eq!(r.validate().unwrap_err().0[0].field, "url", "{bad}");
        }
    }
}

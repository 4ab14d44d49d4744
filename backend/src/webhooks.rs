//! Webhooks: what happened (runs and waves started, ended or failed; approvals needed; plans halted;
//! new sources of IMDSv1 instances) told to other systems as a JSON POST or a Slack message.
//!
//! Telling is a row in the store, so a run never waits for a webhook, and a restart loses none: one
//! sender posts what is due, and retries a failure with a growing delay (2 s, 4 s, … up to 5 minutes,
//! [`ATTEMPTS`] times in all) before giving up. Every attempt is recorded for admins to see.

use serde_json::json;
use shared::webhooks::{CreateWebhookRequest, WebhookFormat, WebhookList, WebhookView};
use std::time::Duration;

use crate::error::AppError;
use crate::state::AppState;

/// Attempts per delivery before it is marked failed.
pub const ATTEMPTS: u32 = 8;

/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Something worth telling: its event name (see `shared::webhooks::EVENTS`), a line for people, and
/// the details for programs.
pub struct Notice {
    pub event: &'static str,
    pub summary: String,
    pub data: serde_json::Value,
}

/// Queues `notice` for every webhook. Never fails the caller: a store error is logged.
pub async fn notify(state: &AppState, notice: &Notice) {
    queue(state, notice, None).await;
}

/// Queues `notice` for one webhook (its test message).
pub async fn notify_one(state: &AppState, notice: &Notice, webhook_id: i64) {
    queue(state, notice, Some(webhook_id)).await;
}

/// Slack reads `&`, `<` and `>` as markup (`<!channel>`, `<https://…|Approve>`): names from plans,
/// waves and groups are text, so they are escaped as Slack asks.
fn slack_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn queue(state: &AppState, notice: &Notice, only: Option<i64>) {
    let at = {
        let t = aws_smithy_types::DateTime::from_millis(state.store.clock.now_ms());
        crate::aws::rfc3339(Some(&t)).unwrap_or_default()
    };
    let body_for = |format: &str| match format {
        "slack" => json!({ "text": format!("imds-console: {}", slack_text(&notice.summary)) }).to_string(),
        _ => json!({ "event": notice.event, "at": at, "summary": notice.summary, "data": notice.data })
            .to_string(),
    };
    if let Err(e) = state
        .store
        .queue_deliveries(
            notice.event,
            &notice.summary,
            state.store.clock.now_ms(),
            only,
            body_for,
        )
        .await
    {
        tracing::warn!(event = notice.event, error = %e, "could not queue webhook deliveries");
    }
}

fn format_name(f: WebhookFormat) -> &'static str {
    match f {
        WebhookFormat::Json => "json",
        WebhookFormat::Slack => "slack",
    }
}

/// The URL as admins see it: scheme, host and port as the URL parser reads them (the address the
/// console connects to, `\` read as `/`); Slack's paths carry the secret.
fn shown(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(u) => {
            let host = u.host_str().unwrap_or_default();
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path() == "/" && u.query().is_none() {
                ""
            } else {
                "/…"
            };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "…".to_owned(),
    }
}

pub async fn create(state: &AppState, req: &CreateWebhookRequest, who: &str) -> Result<i64, AppError> {
    req.validate().map_err(AppError::Validation)?;
    state
        .webhook_destinations
        .check_url(&req.url)
        .map_err(|m| AppError::field("url", m))?;
    let id = state
        .store
        .add_webhook(req.url.trim(), format_name(req.format), who)
        .await?;
    state
        .store
        .auth_event("webhook-added", Some(who), Some(&shown(&req.url)), None)
        .await?;
    Ok(id)
}

pub async fn delete(state: &AppState, id: i64, who: &str) -> Result<(), AppError> {
    if !state.store.delete_webhook(id).await? {
        return Err(AppError::NotFound(format!("no webhook {id}")));
    }
    state
        .store
        .auth_event("webhook-deleted", Some(who), Some(&id.to_string()), None)
        .await?;
    Ok(())
}

pub async fn list(state: &AppState) -> Result<WebhookList, AppError> {
    let mut webhooks = Vec::new();
    for (id, url, format, created_by, created_at) in state.store.webhooks().await? {
        webhooks.push(WebhookView {
            webhook_id: id,
            url: shown(&url),
            format: if format == "slack" {
                WebhookFormat::Slack
            } else {
                WebhookFormat::Json
            },
            created_by,
            created_at,
            deliveries: state.store.deliveries(id, 20).await?,
        });
    }
    Ok(WebhookList { webhooks })
}

/// The sender: posts due deliveries, forever.
pub async fn deliver(state: AppState) {
    let http = match state.webhook_destinations.client(POST_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for webhooks; none will be sent");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = state.store.clock.now_ms();
        let due = match state.store.due_deliveries(now, 50).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not read due webhook deliveries");
                continue;
            }
        };
        for (delivery, _webhook, url, body, attempts) in due {
            // Checked again at every delivery (a URL stored before the check existed, or an allowance
            // since removed); refused for good, not retried.
            if let Err(why) = state.webhook_destinations.check_url(&url) {
                if let Err(e) = state
                    .store
                    .record_attempt(delivery, false, Some(&why), None)
                    .await
                {
                    tracing::warn!(delivery, error = %e, "could not record a refused webhook delivery");
                }
                continue;
            }
            let sent = http
                .post(&url)
                .header("content-type", "application/json")
                .header("user-agent", "imds-console")
                .body(body)
                .send()
                .await;
            let error = match sent {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("HTTP {}", r.status())),
                Err(e) => Some(e.without_url().to_string()),
            };
            let attempt = attempts + 1;
            let retry_at = (error.is_some() && attempt < ATTEMPTS)
                .then(|| state.store.clock.now_ms() + backoff_ms(attempt));
            if let Err(e) = state
                .store
                .record_attempt(delivery, error.is_none(), error.as_deref(), retry_at)
                .await
            {
                tracing::warn!(delivery, error = %e, "could not record a webhook attempt");
            }
        }
    }
}

/// The delay after the `attempt`th failure: 2 s, 4 s, 8 s, … at most 5 minutes.
fn backoff_ms(attempt: u32) -> i64 {
    (2_000i64 << (attempt - 1).min(8)).min(300_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_markup_in_names_is_escaped() {
        assert_eq!(
            slack_text("plan <!channel> & <https://evil.example|Approve>"),
            "plan &lt;!channel&gt; &amp; &lt;https://evil.example|Approve&gt;"
        );
    }

    #[test]
    fn retries_back_off_and_urls_hide_their_secret_path() {
        assert_eq!(backoff_ms(1), 2_000);
        assert_eq!(backoff_ms(3), 8_000);
        assert_eq!(backoff_ms(20), 300_000);
        assert_eq!(
            shown("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(shown("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(
            shown("https://hooks.slack.com\\services\\T000\\B000\\SECRET"),
            "https://hooks.slack.com/…",
            "a backslash is a slash to the URL parser"
        );
    }
}

//! The delivery task: turns journaled incident changes into outbox rows
//! (routing), then delivers due rows with retries.
//!
//! Durability: an incident change and its journal entry commit together;
//! outbox rows are written together with the journal cursor; each outbox row
//! has a unique idempotency key `(incident, event, recipient)`. So a crash
//! anywhere loses no notification and queues none twice. A delivery cut off
//! by a crash mid-request is retried with the same `Idempotency-Key` header.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::config::{ChannelKind, NotifyConfig};
use super::payload::{self, MessageContext};
use super::routing::{RouteInput, route};
use super::{NotificationEvent, http, idempotency_key};
use crate::incidents::IncidentHandle;
use crate::store::{
    DeliveryAttempt, JournalEntry, NewNotification, Notification, Store, StoreError,
};
use crate::telemetry::Telemetry;

/// Attempts before a delivery is given up as failed.
const MAX_ATTEMPTS: i64 = 12;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the task looks for work when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_millis(500);

pub struct NotifyService {
    pub store: Arc<Store>,
    pub config: Arc<NotifyConfig>,
    /// Public URL of the HTTP API, for links in messages.
    pub base_url: String,
    pub telemetry: Arc<Telemetry>,
}

fn event_of(kind: &str) -> Option<NotificationEvent> {
    match kind {
        "opened" => Some(NotificationEvent::Opened),
        "acknowledged" => Some(NotificationEvent::Acknowledged),
        "resolved" => Some(NotificationEvent::Resolved),
        _ => None,
    }
}

/// Exponential backoff with jitter: about 1 s, 2 s, 4 s … up to 5 minutes.
fn backoff(attempts: i64) -> Duration {
    let base = Duration::from_secs(1u64 << attempts.clamp(0, 9) as u32).min(MAX_BACKOFF);
    base.mul_f64(0.75 + rand::random::<f64>() * 0.5)
}

impl NotifyService {
    pub async fn run(self, incidents: IncidentHandle, shutdown: CancellationToken) {
        let mut wake = incidents.subscribe();
        loop {
            if let Err(error) = self.route_journal().await {
                tracing::error!(message = "Cannot queue notifications.", %error);
            }
            if let Err(error) = self.deliver_due().await {
                tracing::error!(message = "Cannot read due notifications.", %error);
            }
            let until_next = match self.store.next_notification_due().await {
                Ok(Some(due)) => {
                    Duration::from_millis((due - steward_agent::now_ms()).clamp(0, 500) as u64)
                }
                _ => IDLE_POLL,
            };
            tokio::select! {
                // Any incident event may have journaled something to send.
                _ = wake.recv() => {}
                _ = tokio::time::sleep(until_next) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Routes every journal entry past the cursor into outbox rows.
    async fn route_journal(&self) -> Result<(), StoreError> {
        loop {
            let entries = self.store.unnotified_journal(200).await?;
            let Some(last) = entries.last().map(|entry| entry.position) else {
                return Ok(());
            };
            let mut queued = Vec::new();
            for entry in &entries {
                queued.extend(self.notifications_for(entry).await?);
            }
            let count = self
                .store
                .enqueue_notifications(queued, last, steward_agent::now_ms())
                .await?;
            tracing::debug!(message = "Queued notifications.", count, position = last);
        }
    }

    async fn notifications_for(
        &self,
        entry: &JournalEntry,
    ) -> Result<Vec<NewNotification>, StoreError> {
        let Some(event) = event_of(&entry.kind) else {
            return Ok(Vec::new());
        };
        let Some(incident) = self.store.incident(entry.incident_id).await? else {
            return Ok(Vec::new());
        };
        let decision = route(
            &RouteInput::from_record(&incident, Vec::new()),
            &self.config.routes,
            &self.config.channels,
        );
        if let Some(policy) = &decision.escalation {
            tracing::debug!(message = "Escalation policies are not applied yet; paging the route's channels.", %policy);
        }
        Ok(decision
            .channels
            .into_iter()
            .map(|channel| NewNotification {
                idempotency_key: idempotency_key(incident.id, event, &channel),
                incident_id: incident.id,
                event: event.as_str().to_string(),
                channel,
                due_ms: entry.ts_ms,
            })
            .collect())
    }

    async fn deliver_due(&self) -> Result<(), StoreError> {
        for notification in self
            .store
            .due_notifications(steward_agent::now_ms(), 50)
            .await?
        {
            let attempt = self.deliver(&notification).await;
            match attempt.state {
                "delivered" => Telemetry::add(&self.telemetry.notifications_sent, 1),
                "failed" => {
                    Telemetry::add(&self.telemetry.notifications_failed, 1);
                    tracing::warn!(
                        message = "Notification failed for good.",
                        key = %notification.idempotency_key,
                        error = attempt.error.as_deref().unwrap_or(""),
                    );
                }
                _ => Telemetry::add(&self.telemetry.notification_retries, 1),
            }
            self.store.record_delivery(attempt).await?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "deliver", skip_all, fields(key = %notification.idempotency_key, channel = %notification.channel))]
    async fn deliver(&self, notification: &Notification) -> DeliveryAttempt {
        let now = steward_agent::now_ms();
        let failed = |error: String| DeliveryAttempt {
            id: notification.id,
            ts_ms: now,
            status: None,
            error: Some(error),
            state: "failed",
            retry_at_ms: now,
        };
        let Some(channel) = self.config.channel(&notification.channel) else {
            return failed(format!(
                "channel {:?} is no longer configured",
                notification.channel
            ));
        };
        let incident = match self.store.incident(notification.incident_id).await {
            Ok(Some(incident)) => incident,
            Ok(None) => return failed("incident not found".into()),
            Err(error) => {
                return self.retry(notification, now, None, format!("store: {error}"), None);
            }
        };
        let Some(event) = event_of(&notification.event) else {
            return failed(format!("unknown event {:?}", notification.event));
        };
        let latest = self.store.latest_value(&crate::store::SeriesKey {
            agent_id: incident.agent_id.clone(),
            metric: incident.metric.clone(),
            labels: incident.labels.clone(),
        });
        let json = serde_json::to_value(crate::api::incidents::incident_view(
            incident.clone(),
            latest.map(|l| l.value),
        ))
        .unwrap_or(serde_json::Value::Null);
        let context = MessageContext {
            event,
            incident: &incident,
            incident_json: &json,
            base_url: &self.base_url,
            sent_at_ms: now,
        };
        let (url, body) = match &channel.kind {
            ChannelKind::Webhook { url, secret } => (
                url,
                payload::webhook(&context, secret.as_ref(), &notification.idempotency_key),
            ),
            ChannelKind::Alertmanager { url } => {
                (url, payload::alertmanager(&context, &channel.name))
            }
            ChannelKind::PagerDuty { url, routing_key } => {
                (url, payload::pagerduty(&context, routing_key))
            }
            ChannelKind::Slack { url } => (url, payload::slack(&context)),
            ChannelKind::Email(_) => return failed("email delivery is not implemented yet".into()),
        };
        let mut headers = body.headers.clone();
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("idempotency-key"))
        {
            headers.push((
                "Idempotency-Key".into(),
                notification.idempotency_key.clone(),
            ));
        }
        match http::post(url, body.content_type, &headers, body.body, REQUEST_TIMEOUT).await {
            Ok(outcome) if (200..300).contains(&outcome.status) => {
                tracing::info!(message = "Notification delivered.", status = outcome.status);
                DeliveryAttempt {
                    id: notification.id,
                    ts_ms: now,
                    status: Some(outcome.status),
                    error: None,
                    state: "delivered",
                    retry_at_ms: now,
                }
            }
            Ok(outcome) if outcome.status == 429 || outcome.status >= 500 => self.retry(
                notification,
                now,
                Some(outcome.status),
                format!("receiver answered {}", outcome.status),
                outcome.retry_after,
            ),
            // Other answers (4xx, 3xx) will not change on retry.
            Ok(outcome) => DeliveryAttempt {
                status: Some(outcome.status),
                ..failed(format!("receiver refused with {}", outcome.status))
            },
            Err(error) => self.retry(notification, now, None, error.to_string(), None),
        }
    }

    fn retry(
        &self,
        notification: &Notification,
        now: i64,
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    ) -> DeliveryAttempt {
        let attempts = notification.attempts + 1;
        let (state, delay) = if attempts >= MAX_ATTEMPTS {
            ("failed", Duration::ZERO)
        } else {
            (
                "pending",
                retry_after.map_or_else(|| backoff(attempts - 1), |after| after.min(MAX_BACKOFF)),
            )
        };
        tracing::warn!(message = "Notification attempt failed.", %error, attempts, retry_in_ms = delay.as_millis() as u64);
        DeliveryAttempt {
            id: notification.id,
            ts_ms: now,
            status,
            error: Some(error),
            state,
            retry_at_ms: now + delay.as_millis() as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(1250));
        assert!(backoff(3) >= Duration::from_secs(6));
        assert!(backoff(40) <= MAX_BACKOFF.mul_f64(1.25));
    }

    #[test]
    fn only_lifecycle_events_are_sent() {
        assert_eq!(event_of("opened"), Some(NotificationEvent::Opened));
        assert_eq!(event_of("resolved"), Some(NotificationEvent::Resolved));
        assert_eq!(event_of("note"), None);
    }
}

//! The bytes of a group message (storm summary, digest, `group_wait` batch,
//! grouped resolutions) for each channel type: one message listing many
//! incidents. Pure, like `payload`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Value, json};
use steward_core::text::rfc3339_ms;

use super::config::Secret;
use super::grouping::GroupedKind;
use super::payload::{
    self, EmailMessage, IDEMPOTENCY_HEADER, Payload, SIGNATURE_HEADER, alert_labels,
    pagerduty_severity, slack_escape, truncate,
};
use crate::domain::{IncidentRecord, Severity};

/// Hosts named in a message's headline.
pub const FIRST_HOSTS: usize = 10;

/// Everything a builder needs for one group message.
#[derive(Debug, Clone)]
pub struct GroupContext {
    pub kind: GroupedKind,
    pub group_key: String,
    /// The incidents listed (at most the first few hundred), in the order they were kept.
    pub incidents: Vec<IncidentRecord>,
    /// Their incidents-API JSON, same order.
    pub views: Vec<Value>,
    /// How many incidents the message covers (may exceed `incidents`).
    pub total: usize,
    /// Detail recorded when the message was queued (e.g. openings in the storm window).
    pub detail: Value,
    pub base_url: String,
    pub sent_at_ms: i64,
}

impl GroupContext {
    /// Distinct hosts, first seen first, at most [`FIRST_HOSTS`].
    pub fn first_hosts(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.incidents
            .iter()
            .map(|incident| incident.host.as_str())
            .filter(|host| seen.insert(*host))
            .take(FIRST_HOSTS)
            .collect()
    }

    fn worst(&self) -> Severity {
        self.incidents
            .iter()
            .map(|incident| incident.severity)
            .max()
            .unwrap_or(Severity::Info)
    }

    /// `Storm: 31 incidents (42 opened within 60s) on web-1, web-2, …`
    pub fn headline(&self) -> String {
        let hosts = self.first_hosts();
        let more = if self.total > hosts.len() {
            ", …"
        } else {
            ""
        };
        let on = format!("{}{more}", hosts.join(", "));
        match self.kind {
            GroupedKind::Storm => format!(
                "Alert storm: {} opened within {}s; {} more sent in this summary, then a digest; hosts {on}",
                self.detail["opened_in_window"], self.detail["window_seconds"], self.total
            ),
            GroupedKind::Digest => {
                format!("Alert storm digest: {} more incidents on {on}", self.total)
            }
            GroupedKind::Group => format!("{} incidents on {on}", self.total),
            GroupedKind::Resolved => format!("{} incidents resolved on {on}", self.total),
            GroupedKind::Escalation => format!(
                "Escalation (level {}): {} grouped incidents still unacknowledged on {on}",
                self.detail["level"], self.total
            ),
        }
    }

    fn resolved(&self) -> bool {
        self.kind == GroupedKind::Resolved
    }

    fn ui_url(&self) -> String {
        format!("{}/incidents", self.base_url.trim_end_matches('/'))
    }
}

/// `{version, event: "grouped", kind, group, count, hosts, headline, incidents, detail, sent_at}`.
pub fn webhook(ctx: &GroupContext, secret: Option<&Secret>, idempotency_key: &str) -> Payload {
    let body = json!({
        "version": "1",
        "event": "grouped",
        "kind": ctx.kind.as_str(),
        "group": ctx.group_key,
        "count": ctx.total,
        "hosts": ctx.first_hosts(),
        "headline": ctx.headline(),
        "incidents": ctx.views,
        "detail": ctx.detail,
        "sent_at": rfc3339_ms(ctx.sent_at_ms),
        "links": { "ui": ctx.ui_url() },
    });
    let mut payload = Payload::json(&body);
    if let Some(secret) = secret {
        payload.headers.push((
            SIGNATURE_HEADER.to_string(),
            payload::signature(secret.expose().as_bytes(), &payload.body),
        ));
    }
    payload
        .headers
        .push((IDEMPOTENCY_HEADER.to_string(), idempotency_key.to_string()));
    payload
}

/// Alertmanager v4 with one alert per incident, as Alertmanager itself groups.
pub fn alertmanager(ctx: &GroupContext, receiver: &str) -> Payload {
    let status = if ctx.resolved() { "resolved" } else { "firing" };
    let alerts: Vec<Value> = ctx
        .incidents
        .iter()
        .map(|incident| {
            json!({
                "status": status,
                "labels": alert_labels(incident),
                "annotations": { "summary": incident.summary },
                "startsAt": rfc3339_ms(incident.opened_at_ms),
                "endsAt": incident.resolved_at_ms.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339_ms),
                "generatorURL": format!("{}/{}", ctx.ui_url(), incident.id),
                "fingerprint": payload::fingerprint(&incident.dedup_key),
            })
        })
        .collect();
    Payload::json(&json!({
        "version": "4",
        "groupKey": ctx.group_key,
        "truncatedAlerts": ctx.total.saturating_sub(alerts.len()),
        "status": status,
        "receiver": receiver,
        "groupLabels": { "group": ctx.group_key },
        "commonLabels": {},
        "commonAnnotations": { "summary": ctx.headline() },
        "externalURL": ctx.base_url.trim_end_matches('/'),
        "alerts": alerts,
    }))
}

/// One PagerDuty alert for the whole group (dedup key `steward-group:{key}`).
pub fn pagerduty(ctx: &GroupContext, routing_key: &Secret) -> Payload {
    Payload::json(&json!({
        "routing_key": routing_key.expose(),
        "event_action": if ctx.resolved() { "resolve" } else { "trigger" },
        "dedup_key": format!("steward-group:{}", ctx.group_key),
        "payload": {
            "summary": truncate(&ctx.headline(), 1024),
            "source": ctx.first_hosts().first().copied().unwrap_or("steward"),
            "severity": pagerduty_severity(ctx.worst()),
            "timestamp": rfc3339_ms(ctx.sent_at_ms),
            "custom_details": { "count": ctx.total, "hosts": ctx.first_hosts(), "incidents": ctx.views },
        },
        "client": "Steward",
        "client_url": ctx.base_url.trim_end_matches('/'),
    }))
}

/// A Slack message: the headline, then one line per incident (first 20).
pub fn slack(ctx: &GroupContext) -> Payload {
    let mut text = slack_escape(&ctx.headline());
    for incident in ctx.incidents.iter().take(20) {
        let _ = write!(
            text,
            "\n• #{} {}: {}",
            incident.id,
            slack_escape(&incident.host),
            slack_escape(&incident.summary)
        );
    }
    Payload::json(&json!({ "text": text }))
}

pub fn email(ctx: &GroupContext) -> EmailMessage {
    let subject = format!(
        "[Steward] {} {}",
        ctx.worst().as_str().to_uppercase(),
        ctx.headline().replace(['\r', '\n'], " ")
    );
    let mut text = format!("{}\n\n", ctx.headline());
    for incident in &ctx.incidents {
        let _ = writeln!(
            text,
            "#{} {} [{}] {}",
            incident.id, incident.host, incident.severity, incident.summary
        );
    }
    if ctx.total > ctx.incidents.len() {
        let _ = writeln!(text, "… and {} more", ctx.total - ctx.incidents.len());
    }
    let _ = writeln!(text, "\nIncidents: {}", ctx.ui_url());
    EmailMessage { subject, text }
}

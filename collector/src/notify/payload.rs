//! The exact bytes each channel type is sent for one incident event.
//!
//! Builders are pure: the caller passes the incident, its incidents-API JSON,
//! the public base URL and the send time. They never fail: every body is
//! built from a `serde_json::Value`, whose `Display` cannot fail. Every
//! message carries the summary, host, value, severity and two links:
//! `{base_url}/incidents/{id}` (web UI) and `{base_url}/api/v1/incidents/{id}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ring::{digest, hmac};
use serde_json::{Value, json};
use steward_core::text::rfc3339_ms;

use super::NotificationEvent;
use super::config::Secret;
use crate::domain::{IncidentRecord, ProblemRecord, Severity};

/// Header carrying the webhook body's HMAC-SHA256, as `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Steward-Signature";
/// Header carrying [`super::idempotency_key`] so receivers can drop retries.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Alertmanager's "not ended yet" timestamp for firing alerts.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// PagerDuty rejects summaries longer than this.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;
/// Slack rejects header blocks longer than this.
const SLACK_HEADER_MAX: usize = 150;

/// Everything a builder needs to describe one event of one incident.
#[derive(Debug, Clone, Copy)]
pub struct MessageContext<'a> {
    pub event: NotificationEvent,
    pub incident: &'a IncidentRecord,
    /// The incident exactly as `GET /api/v1/incidents/{id}` returns it
    /// (`crate::domain::IncidentView`); embedded verbatim where a payload
    /// promises "the incidents-API JSON".
    pub incident_json: &'a Value,
    /// Public URL of the collector's HTTP side, without a trailing slash
    /// (one is trimmed if present).
    pub base_url: &'a str,
    pub sent_at_ms: i64,
    /// The problem the incident is linked to, if any; a known error's
    /// workaround is shown in every message.
    pub problem: Option<&'a ProblemRecord>,
}

impl MessageContext<'_> {
    /// Web UI page of the incident.
    pub fn ui_url(&self) -> String {
        format!(
            "{}/incidents/{}",
            self.base_url.trim_end_matches('/'),
            self.incident.id
        )
    }

    /// HTTP API resource of the incident.
    pub fn api_url(&self) -> String {
        format!(
            "{}/api/v1/incidents/{}",
            self.base_url.trim_end_matches('/'),
            self.incident.id
        )
    }

    /// `{id, reference, state, root_cause, workaround}` of the linked problem
    /// (`workaround` only once it is a known error).
    fn problem_json(&self) -> Value {
        match self.problem {
            None => Value::Null,
            Some(problem) => json!({
                "id": problem.id,
                "reference": problem.reference(),
                "state": problem.state,
                "title": problem.title,
                "root_cause": problem.root_cause,
                "workaround": problem.known_workaround(),
            }),
        }
    }

    /// `Known error P-7 workaround: …` for text messages.
    fn workaround_line(&self) -> Option<String> {
        let problem = self.problem?;
        let workaround = problem.known_workaround()?;
        Some(format!(
            "Known error {} workaround: {}",
            problem.reference(),
            workaround
        ))
    }

    fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    fn value_text(&self) -> String {
        format_value(self.incident.value)
    }

    /// `Opened`, `Acknowledged by bob`, `Escalated (level 2)`… for humans.
    fn event_title(&self) -> String {
        match self.event {
            NotificationEvent::Opened => "Opened".to_string(),
            NotificationEvent::Acknowledged => match &self.incident.acknowledged_by {
                Some(who) => format!("Acknowledged by {who}"),
                None => "Acknowledged".to_string(),
            },
            NotificationEvent::Resolved => "Resolved".to_string(),
            NotificationEvent::Escalated { level, .. } => {
                format!("Escalated (level {})", level + 1)
            }
        }
    }
}

/// An HTTP request body plus the headers that belong to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Extra headers besides `Content-Type`, in sending order.
    pub headers: Vec<(String, String)>,
}

impl Payload {
    pub(super) fn json(value: &Value) -> Self {
        Self {
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }
}

/// An email ready to be wrapped in MIME by the SMTP sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub subject: String,
    /// Plain text, `\n` line endings (the sender converts to CRLF).
    pub text: String,
}

/// The generic webhook: `{version, event, dedup_key, incident, sent_at}`.
/// With a `secret`, the body is signed (see [`signature`]).
pub fn webhook(
    ctx: &MessageContext<'_>,
    secret: Option<&Secret>,
    idempotency_key: &str,
) -> Payload {
    let mut body = json!({
        "version": "1",
        "event": ctx.event.as_str(),
        "dedup_key": ctx.incident.dedup_key,
        "incident": ctx.incident_json,
        "sent_at": rfc3339_ms(ctx.sent_at_ms),
        "links": { "ui": ctx.ui_url(), "api": ctx.api_url() },
    });
    if ctx.problem.is_some()
        && let Some(object) = body.as_object_mut()
    {
        object.insert("problem".into(), ctx.problem_json());
    }
    if let NotificationEvent::Escalated { level, round } = ctx.event
        && let Some(object) = body.as_object_mut()
    {
        object.insert(
            "escalation".into(),
            json!({ "level": level, "round": round }),
        );
    }
    let mut payload = Payload::json(&body);
    if let Some(secret) = secret {
        payload.headers.push((
            SIGNATURE_HEADER.to_string(),
            signature(secret.expose().as_bytes(), &payload.body),
        ));
    }
    payload
        .headers
        .push((IDEMPOTENCY_HEADER.to_string(), idempotency_key.to_string()));
    payload
}

/// `sha256=<lower-case hex HMAC-SHA256 of body under secret>`, GitHub-style.
/// Receivers recompute it over the raw body and compare in constant time.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

/// Alertmanager's webhook format (version 4), one alert per message, so any
/// receiver written for Alertmanager (e.g. a chat bridge) works unchanged.
/// `receiver` is the channel name.
pub fn alertmanager(ctx: &MessageContext<'_>, receiver: &str) -> Payload {
    let incident = ctx.incident;
    let status = if ctx.event == NotificationEvent::Resolved {
        "resolved"
    } else {
        "firing"
    };
    let labels = alert_labels(incident);
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".to_string(), incident.summary.clone());
    annotations.insert(
        "description".to_string(),
        format!(
            "{} on {} is {} (severity {}). {}",
            incident.metric,
            incident.host,
            ctx.value_text(),
            incident.severity,
            ctx.ui_url()
        ),
    );
    if let Some(runbook) = &incident.runbook {
        annotations.insert("runbook_url".to_string(), runbook.clone());
    }
    if let Some(line) = ctx.workaround_line() {
        annotations.insert("workaround".to_string(), line);
    }
    let ends_at = match (status, incident.resolved_at_ms) {
        ("resolved", Some(ms)) => rfc3339_ms(ms),
        ("resolved", None) => rfc3339_ms(ctx.sent_at_ms),
        _ => ZERO_TIME.to_string(),
    };
    // One alert per group, so the group is labelled by all of its labels, in
    // Alertmanager's own `{}:{name="value", ...}` group key notation.
    let group_key = format!(
        "{{}}:{{{}}}",
        labels
            .iter()
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let body = json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": ctx.base(),
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339_ms(incident.opened_at_ms),
            "endsAt": ends_at,
            "generatorURL": ctx.ui_url(),
            "fingerprint": fingerprint(&incident.dedup_key),
        }],
    });
    Payload::json(&body)
}

/// `alertname`=rule, `severity`, `instance`=host and `agent_id`, then the
/// incident's own labels; the four reserved names win over a label of the
/// same name so receivers can rely on them.
pub(super) fn alert_labels(incident: &IncidentRecord) -> BTreeMap<String, String> {
    let mut labels = incident.labels.clone();
    labels.insert("alertname".into(), incident.rule.clone());
    labels.insert("severity".into(), incident.severity.to_string());
    labels.insert("instance".into(), incident.host.clone());
    labels.insert("agent_id".into(), incident.agent_id.clone());
    labels
}

/// A stable 16-hex-digit fingerprint of a dedup key (first 8 bytes of its
/// SHA-256), the same for every event of the incident and across restarts.
pub fn fingerprint(dedup_key: &str) -> String {
    let digest = digest::digest(&digest::SHA256, dedup_key.as_bytes());
    hex::encode(&digest.as_ref()[..8])
}

/// PagerDuty Events API v2. The incident's dedup key is PagerDuty's, so
/// acknowledge/resolve close the alert the trigger opened. An escalation is
/// sent as another `trigger` (PagerDuty deduplicates it and runs its own
/// escalation). The payload and links are sent with every action; PagerDuty
/// uses them on `trigger` and ignores them otherwise.
pub fn pagerduty(ctx: &MessageContext<'_>, routing_key: &Secret) -> Payload {
    let incident = ctx.incident;
    let action = match ctx.event {
        NotificationEvent::Opened | NotificationEvent::Escalated { .. } => "trigger",
        NotificationEvent::Acknowledged => "acknowledge",
        NotificationEvent::Resolved => "resolve",
    };
    let mut body = json!({
        "routing_key": routing_key.expose(),
        "event_action": action,
        "dedup_key": incident.dedup_key,
        "payload": {
            "summary": truncate(&incident.summary, PAGERDUTY_SUMMARY_MAX),
            "source": incident.host,
            "severity": pagerduty_severity(incident.severity),
            "timestamp": rfc3339_ms(incident.opened_at_ms),
            "component": incident.metric,
            "group": incident.agent_id,
            "class": incident.rule,
            "custom_details": {
                "value": incident.value,
                "severity": incident.severity,
                "incident": ctx.incident_json,
            },
        },
        "client": "Steward",
        "client_url": ctx.base(),
        "links": [
            { "href": ctx.ui_url(), "text": "Incident in Steward" },
            { "href": ctx.api_url(), "text": "Incident API" },
        ],
    });
    if ctx.problem.is_some()
        && let Some(details) = body["payload"]["custom_details"].as_object_mut()
    {
        details.insert("problem".into(), ctx.problem_json());
    }
    Payload::json(&body)
}

/// Ours → PagerDuty's four levels. Unknown names page as `critical`: a
/// misclassified page is better than a lost one.
pub(super) fn pagerduty_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Major => "error",
        Severity::Minor | Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// Slack incoming webhook: a plain `text` fallback (notifications, old
/// clients) plus blocks: header, section with fields, context with links.
///
/// Hostnames, summaries, label values and names come from agents and
/// operators, so every mrkdwn text (and the top-level `text`, which Slack
/// parses the same way) escapes them with [`slack_escape`]: a host named
/// `<!channel>` must not ping everyone, nor a label forge a link. The only
/// links are the ones built here from the configured base URL. The header
/// is `plain_text`, which Slack never parses for mentions or links, so it
/// is sent as written.
pub fn slack(ctx: &MessageContext<'_>) -> Payload {
    let incident = ctx.incident;
    let emoji = slack_emoji(ctx.event, incident.severity);
    let title = format!(
        "{emoji} {} · {}: {}",
        ctx.event_title(),
        incident.severity.as_str().to_uppercase(),
        incident.summary
    );
    let links = format!(
        "<{}|Open in Steward> · <{}|API> · incident #{}",
        ctx.ui_url(),
        ctx.api_url(),
        incident.id
    );
    let mut body = json!({
        "text": slack_escape(&title),
        "blocks": [
            {
                "type": "header",
                "text": { "type": "plain_text", "text": truncate(&title, SLACK_HEADER_MAX), "emoji": true },
            },
            {
                "type": "section",
                "text": { "type": "mrkdwn", "text": slack_escape(&incident.summary) },
                "fields": [
                    { "type": "mrkdwn", "text": format!("*Host*\n{}", slack_escape(&incident.host)) },
                    { "type": "mrkdwn", "text": format!("*Severity*\n{}", slack_escape(incident.severity.as_str())) },
                    { "type": "mrkdwn", "text": format!("*Value*\n{}", ctx.value_text()) },
                    { "type": "mrkdwn", "text": format!("*Rule*\n{}", slack_escape(&incident.rule)) },
                ],
            },
            {
                "type": "context",
                "elements": [{ "type": "mrkdwn", "text": links }],
            },
        ],
    });
    if let Some(line) = ctx.workaround_line()
        && let Some(blocks) = body["blocks"].as_array_mut()
    {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": slack_escape(&line) },
        }));
    }
    Payload::json(&body)
}

/// Events other than opening get their own emoji so a channel scrolls
/// readably; openings show how bad it is.
fn slack_emoji(event: NotificationEvent, severity: Severity) -> &'static str {
    match event {
        NotificationEvent::Acknowledged => ":eyes:",
        NotificationEvent::Resolved => ":white_check_mark:",
        NotificationEvent::Escalated { .. } => ":rotating_light:",
        NotificationEvent::Opened => match severity {
            Severity::Critical => ":red_circle:",
            Severity::Major => ":large_orange_circle:",
            Severity::Minor => ":large_yellow_circle:",
            Severity::Warning => ":warning:",
            Severity::Info => ":information_source:",
        },
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
pub(super) fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Subject `[Steward] CRITICAL Opened: <summary>` and a plain text body.
pub fn email(ctx: &MessageContext<'_>) -> EmailMessage {
    let incident = ctx.incident;
    // Header injection guard: a summary is one line, but never trust that.
    let summary_line = incident.summary.replace(['\r', '\n'], " ");
    let subject = format!(
        "[Steward] {} {}: {}",
        incident.severity.as_str().to_uppercase(),
        ctx.event_title(),
        summary_line
    );
    let mut text = String::new();
    let _ = writeln!(text, "{}", incident.summary);
    let _ = writeln!(text);
    let _ = writeln!(text, "Event:    {}", ctx.event_title());
    let _ = writeln!(text, "Severity: {}", incident.severity);
    let _ = writeln!(text, "Host:     {}", incident.host);
    let _ = writeln!(text, "Rule:     {}", incident.rule);
    let _ = writeln!(text, "Metric:   {}", incident.metric);
    let _ = writeln!(text, "Value:    {}", ctx.value_text());
    let _ = writeln!(text, "State:    {}", incident.state);
    let _ = writeln!(text, "Opened:   {}", rfc3339_ms(incident.opened_at_ms));
    if let Some(runbook) = &incident.runbook {
        let _ = writeln!(text, "Runbook:  {runbook}");
    }
    if let Some(line) = ctx.workaround_line() {
        let _ = writeln!(text, "{line}");
    }
    let _ = writeln!(text);
    let _ = writeln!(text, "Incident: {}", ctx.ui_url());
    let _ = writeln!(text, "API:      {}", ctx.api_url());
    EmailMessage { subject, text }
}

fn format_value(value: Option<f64>) -> String {
    match value {
        Some(value) => value.to_string(),
        None => "n/a".to_string(),
    }
}

/// Cuts at a character boundary, marking the cut with `…`.
pub(super) fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::IncidentState;

    const OPENED_MS: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z
    const SENT_MS: i64 = 1_700_000_060_000;

    fn incident() -> IncidentRecord {
        IncidentRecord::example(OPENED_MS)
    }

    fn view() -> Value {
        json!({ "id": 42, "state": "open", "dedup_key": "disk_full|agent-1|disk.used_percent|mount=/" })
    }

    fn ctx<'a>(
        event: NotificationEvent,
        incident: &'a IncidentRecord,
        json: &'a Value,
    ) -> MessageContext<'a> {
        MessageContext {
            event,
            incident,
            incident_json: json,
            base_url: "https://steward.example.com/",
            sent_at_ms: SENT_MS,
            problem: None,
        }
    }

    fn body(payload: &Payload) -> Value {
        serde_json::from_slice(&payload.body).unwrap()
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn webhook_body_and_headers() {
        let (incident, json) = (incident(), view());
        let secret = Secret::new("s3cret");
        let payload = webhook(
            &ctx(NotificationEvent::Opened, &incident, &json),
            Some(&secret),
            "42:opened:hook",
        );
        assert_eq!(payload.content_type, "application/json");
        assert_eq!(
            body(&payload),
            json!({
                "version": "1",
                "event": "opened",
                "dedup_key": "disk_full|agent-1|disk.used_percent|mount=/",
                "incident": json,
                "sent_at": "2023-11-14T22:14:20.000Z",
                "links": {
                    "ui": "https://steward.example.com/incidents/42",
                    "api": "https://steward.example.com/api/v1/incidents/42",
                },
            })
        );
        // The signature is over the exact bytes sent; recompute it the way a
        // receiver would, with an independent HMAC verification.
        let (name, value) = &payload.headers[0];
        assert_eq!(name, SIGNATURE_HEADER);
        assert_eq!(value, &signature(b"s3cret", &payload.body));
        let tag = value.strip_prefix("sha256=").unwrap();
        let tag: Vec<u8> = (0..tag.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&tag[i..i + 2], 16).unwrap())
            .collect();
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"s3cret");
        assert!(hmac::verify(&key, &payload.body, &tag).is_ok());
        assert!(hmac::verify(&key, b"tampered", &tag).is_err());
        assert_eq!(
            payload.headers[1],
            (IDEMPOTENCY_HEADER.to_string(), "42:opened:hook".to_string())
        );
    }

    #[test]
    fn webhook_without_secret_is_unsigned_and_escalations_say_which_level() {
        let (incident, json) = (incident(), view());
        let payload = webhook(
            &ctx(
                NotificationEvent::Escalated { level: 1, round: 0 },
                &incident,
                &json,
            ),
            None,
            "k",
        );
        assert_eq!(
            payload.headers,
            vec![(IDEMPOTENCY_HEADER.to_string(), "k".to_string())]
        );
        let body = body(&payload);
        assert_eq!(body["event"], "escalated");
        assert_eq!(body["escalation"], json!({ "level": 1, "round": 0 }));
    }

    #[test]
    fn alertmanager_firing() {
        let (incident, json) = (incident(), view());
        let payload = alertmanager(&ctx(NotificationEvent::Opened, &incident, &json), "am");
        let labels = json!({
            "agent_id": "agent-1",
            "alertname": "disk_full",
            "instance": "web-1",
            "mount": "/",
            "severity": "critical",
        });
        let annotations = json!({
            "description": "disk.used_percent on web-1 is 97.5 (severity critical). https://steward.example.com/incidents/42",
            "runbook_url": "https://runbooks.example.com/disk",
            "summary": "disk_full on web-1: disk.used_percent is 97.5 (> 95)",
        });
        assert_eq!(
            body(&payload),
            json!({
                "version": "4",
                "groupKey": "{}:{agent_id=\"agent-1\", alertname=\"disk_full\", instance=\"web-1\", mount=\"/\", severity=\"critical\"}",
                "truncatedAlerts": 0,
                "status": "firing",
                "receiver": "am",
                "groupLabels": labels,
                "commonLabels": labels,
                "commonAnnotations": annotations,
                "externalURL": "https://steward.example.com",
                "alerts": [{
                    "status": "firing",
                    "labels": labels,
                    "annotations": annotations,
                    "startsAt": "2023-11-14T22:13:20.000Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "https://steward.example.com/incidents/42",
                    "fingerprint": fingerprint(&incident.dedup_key),
                }],
            })
        );
    }

    #[test]
    fn alertmanager_resolved_ends_at_resolution_and_reserved_labels_win() {
        let mut incident = incident();
        incident.state = IncidentState::Resolved;
        incident.resolved_at_ms = Some(OPENED_MS + 120_000);
        incident.runbook = None;
        incident.labels.insert("severity".into(), "spoofed".into());
        let json = view();
        let body = body(&alertmanager(
            &ctx(NotificationEvent::Resolved, &incident, &json),
            "am",
        ));
        assert_eq!(body["status"], "resolved");
        assert_eq!(body["alerts"][0]["status"], "resolved");
        assert_eq!(body["alerts"][0]["endsAt"], "2023-11-14T22:15:20.000Z");
        assert_eq!(body["alerts"][0]["labels"]["severity"], "critical");
        assert!(
            body["alerts"][0]["annotations"]
                .get("runbook_url")
                .is_none()
        );
    }

    #[test]
    fn fingerprint_is_stable_16_hex_and_distinguishes_keys() {
        let a = fingerprint("a|b");
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, fingerprint("a|b"));
        assert_ne!(a, fingerprint("a|c"));
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea");
    }

    #[test]
    fn pagerduty_trigger() {
        let (incident, json) = (incident(), view());
        let key = Secret::new("R0UT1NGKEY");
        let payload = pagerduty(&ctx(NotificationEvent::Opened, &incident, &json), &key);
        assert_eq!(
            body(&payload),
            json!({
                "routing_key": "R0UT1NGKEY",
                "event_action": "trigger",
                "dedup_key": "disk_full|agent-1|disk.used_percent|mount=/",
                "payload": {
                    "summary": "disk_full on web-1: disk.used_percent is 97.5 (> 95)",
                    "source": "web-1",
                    "severity": "critical",
                    "timestamp": "2023-11-14T22:13:20.000Z",
                    "component": "disk.used_percent",
                    "group": "agent-1",
                    "class": "disk_full",
                    "custom_details": { "value": 97.5, "severity": "critical", "incident": json },
                },
                "client": "Steward",
                "client_url": "https://steward.example.com",
                "links": [
                    { "href": "https://steward.example.com/incidents/42", "text": "Incident in Steward" },
                    { "href": "https://steward.example.com/api/v1/incidents/42", "text": "Incident API" },
                ],
            })
        );
    }

    #[test]
    fn pagerduty_actions_and_severities() {
        let json = view();
        let key = Secret::new("k");
        let cases = [
            (
                NotificationEvent::Opened,
                Severity::Major,
                "trigger",
                "error",
            ),
            (
                NotificationEvent::Acknowledged,
                Severity::Minor,
                "acknowledge",
                "warning",
            ),
            (
                NotificationEvent::Resolved,
                Severity::Warning,
                "resolve",
                "warning",
            ),
            (
                NotificationEvent::Escalated { level: 2, round: 1 },
                Severity::Info,
                "trigger",
                "info",
            ),
            (
                NotificationEvent::Opened,
                Severity::Critical,
                "trigger",
                "critical",
            ),
        ];
        for (event, ours, action, theirs) in cases {
            let mut incident = incident();
            incident.severity = ours;
            let body = body(&pagerduty(&ctx(event, &incident, &json), &key));
            assert_eq!(body["event_action"], action, "{event:?}");
            assert_eq!(body["payload"]["severity"], theirs, "{ours}");
        }
    }

    #[test]
    fn slack_message() {
        let mut incident = incident();
        incident.summary = "a < b & c".into();
        let json = view();
        let payload = slack(&ctx(NotificationEvent::Opened, &incident, &json));
        assert_eq!(
            body(&payload),
            json!({
                "text": ":red_circle: Opened · CRITICAL: a &lt; b &amp; c",
                "blocks": [
                    {
                        "type": "header",
                        "text": { "type": "plain_text", "text": ":red_circle: Opened · CRITICAL: a < b & c", "emoji": true },
                    },
                    {
                        "type": "section",
                        "text": { "type": "mrkdwn", "text": "a &lt; b &amp; c" },
                        "fields": [
                            { "type": "mrkdwn", "text": "*Host*\nweb-1" },
                            { "type": "mrkdwn", "text": "*Severity*\ncritical" },
                            { "type": "mrkdwn", "text": "*Value*\n97.5" },
                            { "type": "mrkdwn", "text": "*Rule*\ndisk_full" },
                        ],
                    },
                    {
                        "type": "context",
                        "elements": [{
                            "type": "mrkdwn",
                            "text": "<https://steward.example.com/incidents/42|Open in Steward> · <https://steward.example.com/api/v1/incidents/42|API> · incident #42",
                        }],
                    },
                ],
            })
        );
    }

    /// Regression: agent-supplied text in a Slack message cannot ping the
    /// channel (`<!channel>`) or forge a link (`<https://evil|click>`); the
    /// links Steward builds itself stay links.
    #[test]
    fn slack_escapes_hostile_host_labels_and_summary() {
        let mut incident = incident();
        incident.host = "<!channel>".into();
        incident
            .labels
            .insert("mount".into(), "<https://evil|click>".into());
        incident.summary = "disk_full on <!channel>: mount=<https://evil|click> & more".into();
        incident.acknowledged_by = Some("<@U123>".into());
        let json = view();
        let body = body(&slack(&ctx(
            NotificationEvent::Acknowledged,
            &incident,
            &json,
        )));
        assert_eq!(
            body["text"],
            ":eyes: Acknowledged by &lt;@U123&gt; · CRITICAL: disk_full on &lt;!channel&gt;: \
             mount=&lt;https://evil|click&gt; &amp; more"
        );
        assert_eq!(
            body["blocks"][1]["text"]["text"],
            "disk_full on &lt;!channel&gt;: mount=&lt;https://evil|click&gt; &amp; more"
        );
        assert_eq!(
            body["blocks"][1]["fields"][0]["text"],
            "*Host*\n&lt;!channel&gt;"
        );
        // No mrkdwn text and no fallback carries a raw control character
        // from the incident; the only `<…>` are the two links built here.
        let mut mrkdwn = vec![body["text"].as_str().unwrap()];
        mrkdwn.push(body["blocks"][1]["text"]["text"].as_str().unwrap());
        for field in body["blocks"][1]["fields"].as_array().unwrap() {
            mrkdwn.push(field["text"].as_str().unwrap());
        }
        for text in mrkdwn {
            assert!(!text.contains('<') && !text.contains('>'), "{text}");
        }
        assert_eq!(
            body["blocks"][2]["elements"][0]["text"],
            "<https://steward.example.com/incidents/42|Open in Steward> · \
             <https://steward.example.com/api/v1/incidents/42|API> · incident #42"
        );
        // The header is plain_text: Slack shows it verbatim and parses nothing in it.
        assert_eq!(body["blocks"][0]["text"]["type"], "plain_text");
    }

    #[test]
    fn slack_emoji_per_event_and_header_limit() {
        let mut incident = incident();
        incident.summary = "x".repeat(400);
        incident.acknowledged_by = Some("bob".into());
        let json = view();
        let body = body(&slack(&ctx(
            NotificationEvent::Acknowledged,
            &incident,
            &json,
        )));
        let header = body["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(header.starts_with(":eyes: Acknowledged by bob · CRITICAL: xxx"));
        assert_eq!(header.chars().count(), SLACK_HEADER_MAX);
        assert_eq!(
            slack_emoji(NotificationEvent::Resolved, Severity::Critical),
            ":white_check_mark:"
        );
        assert_eq!(
            slack_emoji(NotificationEvent::Opened, Severity::Warning),
            ":warning:"
        );
    }

    #[test]
    fn email_message() {
        let mut incident = incident();
        incident.summary = "disk full\r\nBcc: evil@example.com".into();
        incident.value = None;
        let json = view();
        let message = email(&ctx(
            NotificationEvent::Escalated { level: 0, round: 0 },
            &incident,
            &json,
        ));
        assert_eq!(
            message.subject,
            "[Steward] CRITICAL Escalated (level 1): disk full  Bcc: evil@example.com"
        );
        assert_eq!(
            message.text,
            "disk full\r\nBcc: evil@example.com\n\
             \n\
             Event:    Escalated (level 1)\n\
             Severity: critical\n\
             Host:     web-1\n\
             Rule:     disk_full\n\
             Metric:   disk.used_percent\n\
             Value:    n/a\n\
             State:    open\n\
             Opened:   2023-11-14T22:13:20.000Z\n\
             Runbook:  https://runbooks.example.com/disk\n\
             \n\
             Incident: https://steward.example.com/incidents/42\n\
             API:      https://steward.example.com/api/v1/incidents/42\n"
        );
    }
}

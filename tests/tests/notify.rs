//! End to end: incidents page real HTTP receivers on loopback through the
//! durable outbox — webhook (signed) and PagerDuty format — on open,
//! acknowledge and resolve; retries; kill -9 with a pending notification.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;

use serde_json::Value;
use steward_tests::{Collector, DEADLINE, Receiver, http_request, poll, port_check};

fn config(webhook: &Receiver, pagerduty: &Receiver) -> String {
    format!(
        r#"
[[rule]]
name = "port-down"
metric = "port.up"
op = "<"
threshold = 1
severity = "critical"
summary = "Port {{target}} on {{host}} is down"

[[channel]]
name = "ops-webhook"
type = "webhook"
url = "{webhook}"
secret = "0123456789abcdef"

[[channel]]
name = "pagerduty"
type = "pagerduty"
url = "{pagerduty}"
routing_key = "R0UTINGKEY0123456789012345678901"
"#,
        webhook = webhook.url("/hooks/steward"),
        pagerduty = pagerduty.url("/v2/enqueue"),
    )
}

/// Successful deliveries of one event to one receiver.
fn delivered(receiver: &Receiver, event: &str) -> Vec<Value> {
    receiver
        .requests()
        .into_iter()
        .filter(|request| request.status == 200)
        .map(|request| request.json())
        .filter(|body| body["event"] == event || body["event_action"] == event)
        .collect()
}

fn wait_delivered(receiver: &Receiver, event: &str, what: &str) -> Value {
    poll(DEADLINE, what, || {
        delivered(receiver, event).into_iter().next()
    })
}

#[test]
fn breach_pages_webhook_and_pagerduty_ack_and_resolve_follow() {
    let (webhook, pagerduty) = (Receiver::start(), Receiver::start());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Collector::start_with(|text| text.push_str(&config(&webhook, &pagerduty)));
    let _agent = collector.start_agent("web", |text| {
        text.push_str(&port_check(Some("web-1"), port))
    });
    collector.wait_port_up();
    drop(listener);

    let opened = wait_delivered(
        &webhook,
        "opened",
        "the webhook to receive the opened event",
    );
    assert_eq!(opened["incident"]["rule"], "port-down");
    assert_eq!(opened["incident"]["host"], "web-1");
    let dedup_key = opened["dedup_key"].as_str().unwrap().to_string();
    assert_eq!(opened["incident"]["dedup_key"], dedup_key.as_str());
    let request = webhook
        .requests()
        .into_iter()
        .find(|r| r.json()["event"] == "opened")
        .unwrap();
    let signature = request.header("x-steward-signature").unwrap();
    assert!(
        signature.starts_with("sha256=") && signature.len() == 71,
        "{signature}"
    );
    assert!(
        request
            .header("idempotency-key")
            .unwrap()
            .ends_with(":opened:ops-webhook")
    );

    let trigger = wait_delivered(&pagerduty, "trigger", "PagerDuty to receive a trigger");
    assert_eq!(trigger["dedup_key"], dedup_key.as_str());
    assert_eq!(trigger["routing_key"], "R0UTINGKEY0123456789012345678901");
    assert_eq!(trigger["payload"]["source"], "web-1");
    assert_eq!(trigger["payload"]["severity"], "critical");

    let id = opened["incident"]["id"].as_i64().unwrap();
    let token = collector.api_token();
    let (status, _) = http_request(
        collector.http_addr,
        "POST",
        &format!("/api/v1/incidents/{id}/ack"),
        Some(&token),
        Some(r#"{"by":"alice"}"#),
    );
    assert_eq!(status, 200);
    wait_delivered(
        &webhook,
        "acknowledged",
        "the webhook to receive the acknowledgement",
    );
    wait_delivered(
        &pagerduty,
        "acknowledge",
        "PagerDuty to receive an acknowledge",
    );

    let _listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    wait_delivered(
        &webhook,
        "resolved",
        "the webhook to receive the resolution",
    );
    let resolve = wait_delivered(&pagerduty, "resolve", "PagerDuty to receive a resolve");
    assert_eq!(resolve["dedup_key"], dedup_key.as_str());

    // Each event reached each receiver exactly once.
    for event in ["opened", "acknowledged", "resolved"] {
        assert_eq!(delivered(&webhook, event).len(), 1, "{event}");
    }
    // The receiver answers before the collector records the delivery: poll.
    poll(DEADLINE, "six deliveries to be counted", || {
        (collector.counter("steward_notifications_sent_total") >= 6).then_some(())
    });
    assert_eq!(collector.counter("steward_notifications_sent_total"), 6);
}

#[test]
fn failing_receiver_is_retried_until_one_delivery_succeeds() {
    let (webhook, pagerduty) = (Receiver::start(), Receiver::start());
    webhook.answer_with(&[500, 429]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Collector::start_with(|text| text.push_str(&config(&webhook, &pagerduty)));
    let _agent = collector.start_agent("web", |text| text.push_str(&port_check(None, port)));
    collector.wait_port_up();
    drop(listener);
    wait_delivered(
        &webhook,
        "opened",
        "the webhook delivery to succeed after a 500 and a 429",
    );
    let attempts: Vec<u16> = webhook
        .requests()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(attempts, [500, 429, 200]);
    // The receiver answers before the collector records the delivery: poll.
    let row = poll(DEADLINE, "the delivery to be recorded", || {
        let outbox = collector.get_json("/api/v1/notifications");
        outbox
            .as_array()?
            .iter()
            .find(|row| {
                row["channel"] == "ops-webhook"
                    && row["event"] == "opened"
                    && row["state"] == "delivered"
            })
            .cloned()
    });
    assert_eq!(row["attempts"], 3);
    assert!(collector.counter("steward_notification_retries_total") >= 2);
}

#[test]
fn refused_notification_is_not_retried_and_is_visible() {
    let (webhook, pagerduty) = (Receiver::start(), Receiver::start());
    webhook.answer_with(&[400]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Collector::start_with(|text| text.push_str(&config(&webhook, &pagerduty)));
    let _agent = collector.start_agent("web", |text| text.push_str(&port_check(None, port)));
    collector.wait_port_up();
    drop(listener);
    let failed = poll(DEADLINE, "the refused delivery to be marked failed", || {
        let failed = collector.get_json("/api/v1/notifications?state=failed");
        (failed.as_array()?.len() == 1).then_some(failed)
    });
    assert_eq!(failed[0]["channel"], "ops-webhook");
    assert_eq!(failed[0]["attempts"], 1);
    assert_eq!(collector.counter("steward_notifications_failed_total"), 1);
    wait_delivered(&pagerduty, "trigger", "the other channel to be unaffected");
    assert_eq!(webhook.requests().len(), 1, "a 400 is not retried");
}

#[test]
fn sigkill_with_a_pending_notification_delivers_it_after_restart_exactly_once() {
    let (webhook, pagerduty) = (Receiver::start(), Receiver::start());
    webhook.answer_with(&[503; 3]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut collector = Collector::start_with(|text| text.push_str(&config(&webhook, &pagerduty)));
    let _agent = collector.start_agent("web", |text| text.push_str(&port_check(None, port)));
    collector.wait_port_up();
    drop(listener);
    poll(
        DEADLINE,
        "a failed attempt, leaving the notification pending",
        || (!webhook.requests().is_empty()).then_some(()),
    );
    // PagerDuty's page must be recorded as delivered before the kill: a kill
    // between its 200 and that record would rightly send it again (delivery
    // is at-least-once; the Idempotency-Key lets receivers drop the repeat).
    poll(DEADLINE, "PagerDuty's page recorded as delivered", || {
        let delivered = collector.get_json("/api/v1/notifications?state=delivered");
        delivered
            .as_array()?
            .iter()
            .any(|row| row["channel"] == "pagerduty")
            .then_some(())
    });
    collector.process.kill9();
    collector.restart();
    wait_delivered(
        &webhook,
        "opened",
        "the pending notification to be delivered after the restart",
    );
    // Give a duplicate every chance to show up: wait for the resolution path too.
    let committed = collector.counter("steward_batches_committed_total");
    poll(DEADLINE, "more batches after the restart", || {
        (collector.counter("steward_batches_committed_total") >= committed + 3).then_some(())
    });
    assert_eq!(
        delivered(&webhook, "opened").len(),
        1,
        "exactly one successful delivery"
    );
    assert_eq!(delivered(&pagerduty, "trigger").len(), 1);
}

const ESCALATION: &str = r#"
[[person]]
name = "alice"
channels = ["ops-webhook"]

[[person]]
name = "bob"
channels = ["pagerduty"]

[[schedule]]
name = "primary"
time_zone = "Europe/Berlin"
rotation = "weekly"
handoff = "09:00"
start = "2026-01-05"
members = ["alice"]

[[escalation]]
name = "ops"
levels = [{ notify = ["person:bob"], after = "3s" }]
repeat = 2
repeat_after = "3s"

[[route]]
channels = ["ops-webhook"]
escalation = "ops"
"#;

#[test]
fn unacknowledged_incident_escalates_and_acknowledgement_stops_it() {
    let (webhook, pagerduty) = (Receiver::start(), Receiver::start());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Collector::start_with(|text| {
        text.push_str(&config(&webhook, &pagerduty));
        text.push_str(ESCALATION);
    });
    let oncall = collector.get_json("/api/v1/oncall");
    assert_eq!(oncall[0]["schedule"], "primary");
    assert_eq!(oncall[0]["now"]["person"], "alice");

    let _agent = collector.start_agent("web", |text| text.push_str(&port_check(None, port)));
    collector.wait_port_up();
    drop(listener);
    // Level 0 is the route's channel; the escalation pages bob after 3 s without an ack.
    let opened = wait_delivered(&webhook, "opened", "the route's channel to be paged");
    let escalated = wait_delivered(&pagerduty, "trigger", "the escalation to page bob");
    assert_eq!(escalated["dedup_key"], opened["dedup_key"]);
    // Bob is paged only after the 3 s timeout (less however late the first page was).
    let first_page = webhook
        .requests()
        .into_iter()
        .find(|r| r.status == 200)
        .unwrap()
        .at;
    let escalation = pagerduty
        .requests()
        .into_iter()
        .find(|r| r.status == 200)
        .unwrap()
        .at;
    assert!(escalation.duration_since(first_page) >= std::time::Duration::from_millis(1500));
    let outbox = collector.get_json("/api/v1/notifications");
    assert!(
        outbox
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row["event"] == "escalated.0.0" && row["channel"] == "pagerduty"),
        "{outbox}"
    );

    let id = opened["incident"]["id"].as_i64().unwrap();
    let (status, _) = http_request(
        collector.http_addr,
        "POST",
        &format!("/api/v1/incidents/{id}/ack"),
        Some(&collector.api_token()),
        Some(r#"{"by":"bob"}"#),
    );
    assert_eq!(status, 200);
    wait_delivered(&webhook, "acknowledged", "the acknowledgement to be sent");
    let pages = delivered(&pagerduty, "trigger").len();
    // Longer than `repeat_after`: a repeat round would have fired by now.
    let committed = collector.counter("steward_batches_committed_total");
    poll(DEADLINE, "five more seconds of checks", || {
        (collector.counter("steward_batches_committed_total") >= committed + 5).then_some(())
    });
    assert_eq!(
        delivered(&pagerduty, "trigger").len(),
        pages,
        "acknowledgement stops escalation"
    );
}

#[test]
fn maintenance_window_holds_pages_until_it_ends_and_resolution_is_always_sent() {
    let (webhook, pagerduty) = (Receiver::start(), Receiver::start());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Collector::start_with(|text| text.push_str(&config(&webhook, &pagerduty)));
    let _agent = collector.start_agent("db", |text| text.push_str(&port_check(Some("db-1"), port)));
    let asset = poll(DEADLINE, "the asset record", || {
        let assets = collector.get_json("/api/v1/assets");
        assets
            .as_array()?
            .iter()
            .find(|asset| asset["hostname"] == "db-1")
            .cloned()
    });
    collector.wait_port_up();
    let token = collector.api_token();
    let (status, body) = http_request(
        collector.http_addr,
        "POST",
        "/api/v1/maintenance",
        Some(&token),
        Some(&format!(
            r#"{{"assets": ["{}"], "duration": "1h", "change": "CHG-42", "reason": "database upgrade", "by": "alice"}}"#,
            asset["id"].as_str().unwrap()
        )),
    );
    assert_eq!(status, 201, "{body}");
    let window: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(window["active"], true);

    drop(listener);
    poll(DEADLINE, "the incident to be recorded", || {
        let incidents = collector.get_json("/api/v1/incidents?state=open");
        (incidents.as_array()?.len() == 1).then_some(())
    });
    poll(DEADLINE, "its notifications to be held", || {
        let held = collector.get_json("/api/v1/notifications?state=held");
        (held.as_array()?.len() == 2).then_some(())
    });
    assert!(
        webhook.requests().is_empty() && pagerduty.requests().is_empty(),
        "nothing pages during maintenance"
    );

    let (status, _) = http_request(
        collector.http_addr,
        "POST",
        &format!("/api/v1/maintenance/{}/end", window["id"]),
        Some(&token),
        Some("{}"),
    );
    assert_eq!(status, 200);
    wait_delivered(
        &webhook,
        "opened",
        "the held page to go out once the window ends",
    );
    wait_delivered(&pagerduty, "trigger", "PagerDuty too");

    let _listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    wait_delivered(&webhook, "resolved", "the resolution");
    assert_eq!(delivered(&webhook, "opened").len(), 1);
}

#[test]
fn breach_and_recovery_are_emailed_over_smtp() {
    let smtp = steward_tests::smtp::SmtpServer::start();
    smtp.fail_next(1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Collector::start_with(|text| {
        text.push_str(&format!(
            r#"
[[rule]]
name = "port-down"
metric = "port.up"
op = "<"
threshold = 1
severity = "major"
summary = "Port {{target}} on {{host}} is down"

[[channel]]
name = "ops-email"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
starttls = false
from = "steward@example.net"
to = ["oncall@example.net"]
"#,
            smtp_port = smtp.address.port()
        ))
    });
    let _agent = collector.start_agent("mail", |text| {
        text.push_str(&port_check(Some("mail-1"), port))
    });
    collector.wait_port_up();
    drop(listener);
    // The first attempt meets a 451 (transient) and is retried.
    let opened = poll(DEADLINE, "the incident email", || {
        smtp.messages().into_iter().next()
    });
    assert_eq!(opened.recipients, ["oncall@example.net"]);
    let subject = opened.header("subject").unwrap_or_default().to_string();
    assert!(
        subject.contains("mail-1") || opened.body().contains("mail-1"),
        "{}",
        opened.data
    );
    assert!(
        opened.body().contains(&format!("127.0.0.1:{port}")),
        "{}",
        opened.data
    );
    let _listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    poll(DEADLINE, "the resolution email", || {
        (smtp.messages().len() == 2).then_some(())
    });
    // The server has the message before the collector records the delivery.
    poll(DEADLINE, "both deliveries recorded", || {
        let outbox = collector.get_json("/api/v1/notifications?state=delivered");
        (outbox.as_array()?.len() == 2).then_some(())
    });
    poll(DEADLINE, "the 451 counted as a retry", || {
        (collector.counter("steward_notification_retries_total") >= 1).then_some(())
    });
}

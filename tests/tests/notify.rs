//! End to end: incidents page real HTTP receivers on loopback through the
//! durable outbox — webhook (signed) and PagerDuty format — on open,
//! acknowledge and resolve; retries; kill -9 with a pending notification.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;

use serde_json::Value;
use steward_tests::{Collector, DEADLINE, Receiver, http_request, poll};

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
        text.push_str(&format!(
            "hostname = \"web-1\"\n\n[[port]]\ntarget = \"127.0.0.1:{port}\"\ntimeout = \"1s\"\n"
        ));
    });
    poll(DEADLINE, "port.up = 1", || {
        let series = collector.get_json("/api/v1/series?metric=port.up");
        (series[0]["value"] == 1.0).then_some(())
    });
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
    assert_eq!(collector.counter("steward_notifications_sent_total"), 6);
}

#[test]
fn failing_receiver_is_retried_until_one_delivery_succeeds() {
    let (webhook, pagerduty) = (Receiver::start(), Receiver::start());
    webhook.answer_with(&[500, 429]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Collector::start_with(|text| text.push_str(&config(&webhook, &pagerduty)));
    let _agent = collector.start_agent("web", |text| {
        text.push_str(&format!(
            "\n[[port]]\ntarget = \"127.0.0.1:{port}\"\ntimeout = \"1s\"\n"
        ));
    });
    poll(DEADLINE, "port.up = 1", || {
        let series = collector.get_json("/api/v1/series?metric=port.up");
        (series[0]["value"] == 1.0).then_some(())
    });
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
    let outbox = collector.get_json("/api/v1/notifications");
    let row = outbox
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["channel"] == "ops-webhook" && row["event"] == "opened")
        .unwrap();
    assert_eq!(row["state"], "delivered");
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
    let _agent = collector.start_agent("web", |text| {
        text.push_str(&format!(
            "\n[[port]]\ntarget = \"127.0.0.1:{port}\"\ntimeout = \"1s\"\n"
        ));
    });
    poll(DEADLINE, "port.up = 1", || {
        let series = collector.get_json("/api/v1/series?metric=port.up");
        (series[0]["value"] == 1.0).then_some(())
    });
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
    let _agent = collector.start_agent("web", |text| {
        text.push_str(&format!(
            "\n[[port]]\ntarget = \"127.0.0.1:{port}\"\ntimeout = \"1s\"\n"
        ));
    });
    poll(DEADLINE, "port.up = 1", || {
        let series = collector.get_json("/api/v1/series?metric=port.up");
        (series[0]["value"] == 1.0).then_some(())
    });
    drop(listener);
    poll(
        DEADLINE,
        "a failed attempt, leaving the notification pending",
        || (!webhook.requests().is_empty()).then_some(()),
    );
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

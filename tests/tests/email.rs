//! Email delivery against a real SMTP server on loopback: what arrives, and
//! how refusals are classified for the outbox's retry decision.

use std::time::Duration;

use steward_collector::notify::email::{self, EmailError};
use steward_collector::notify::{EmailChannel, EmailMessage};
use steward_tests::smtp::SmtpServer;

const TIMEOUT: Duration = Duration::from_secs(30);

fn channel(server: &SmtpServer) -> EmailChannel {
    EmailChannel {
        smtp_host: server.address.ip().to_string(),
        smtp_port: server.address.port(),
        starttls: false,
        from: "Steward <steward@example.com>".to_string(),
        to: vec!["ops@example.com".to_string(), "dba@example.com".to_string()],
        username: None,
        password_file: None,
    }
}

fn message() -> EmailMessage {
    EmailMessage {
        subject: "[Steward] CRITICAL Opened: disk / is 97% full".to_string(),
        text: "disk / is 97% full\n\nHost:     db-1\n.leading dot survives\n".to_string(),
    }
}

#[tokio::test]
async fn message_arrives_with_subject_recipients_and_body() {
    let server = SmtpServer::start();
    email::send(
        &channel(&server),
        &message(),
        &[
            "alice@example.com".to_string(),
            "ops@example.com".to_string(),
        ],
        TIMEOUT,
    )
    .await
    .expect("delivered");

    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let received = &messages[0];
    assert_eq!(received.from, "steward@example.com");
    assert_eq!(
        received.recipients,
        ["ops@example.com", "dba@example.com", "alice@example.com"],
        "channel recipients, then extra ones, without duplicates"
    );
    assert_eq!(
        received.header("Subject").as_deref(),
        Some("[Steward] CRITICAL Opened: disk / is 97% full")
    );
    let to = received.header("To").expect("To header");
    for address in ["ops@example.com", "dba@example.com", "alice@example.com"] {
        assert!(to.contains(address), "To: {to}");
    }
    assert!(received.header("Message-ID").is_some());
    // lettre ends DATA with CRLF.CRLF even after a final CRLF, which adds
    // an empty last line; only the lines themselves matter.
    assert_eq!(
        received.body().trim_end_matches("\r\n"),
        "disk / is 97% full\r\n\r\nHost:     db-1\r\n.leading dot survives"
    );
}

#[tokio::test]
async fn idempotency_key_is_a_header_and_fixes_the_message_id() {
    let server = SmtpServer::start();
    let key = "42:opened:channel:ops-email";
    for _ in 0..2 {
        email::send_with_idempotency_key(&channel(&server), &message(), &[], key, TIMEOUT)
            .await
            .expect("delivered");
    }
    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    for received in &messages {
        assert_eq!(
            received.header("X-Steward-Idempotency-Key").as_deref(),
            Some(key)
        );
    }
    assert_eq!(
        messages[0].header("Message-ID"),
        messages[1].header("Message-ID"),
        "a retry keeps its Message-ID"
    );
}

#[tokio::test]
async fn a_451_is_transient_and_the_retry_gets_through() {
    let server = SmtpServer::start();
    server.fail_next(1);
    let error: EmailError = email::send(&channel(&server), &message(), &[], TIMEOUT)
        .await
        .expect_err("451 refuses the first attempt");
    assert!(!error.is_permanent(), "{error}");
    assert_eq!(error.smtp_code(), Some(451));
    assert!(server.messages().is_empty());

    email::send(&channel(&server), &message(), &[], TIMEOUT)
        .await
        .expect("the retry is delivered");
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn a_550_is_permanent() {
    let server = SmtpServer::start();
    server.fail_next_with(550, 1);
    let error = email::send(&channel(&server), &message(), &[], TIMEOUT)
        .await
        .expect_err("550 refuses");
    assert!(error.is_permanent(), "{error}");
    assert_eq!(error.smtp_code(), Some(550));
    assert!(server.messages().is_empty());
}

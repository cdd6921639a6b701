//! SMTP delivery of alert emails.
//!
//! One call to [`send`] opens one SMTP connection, submits one message to all
//! recipients and closes it: alert mail is rare, so a connection pool would
//! only hold idle sockets open against the relay. The outbox decides about
//! retries; this module only says whether a failure is worth one (see
//! [`EmailError::is_permanent`]).
//!
//! Security: with `starttls = true` (the default) STARTTLS is *required*, not
//! opportunistic, so a man in the middle cannot strip it and read the SMTP
//! password. The server certificate is verified by rustls (ring provider)
//! against the operating system's trust store. The password is read from `password_file` at send time, so a
//! rotated secret takes effect without a restart, and it never appears in
//! logs or errors.

use std::path::Path;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::config::EmailChannel;
use super::payload::EmailMessage;

/// The header that carries [`super::idempotency_key`], so a receiving
/// system (or a human reading headers) can recognise a retried message.
pub const IDEMPOTENCY_HEADER: &str = "X-Steward-Idempotency-Key";

/// Why an email was not delivered, split by what the caller should do next.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// Worth retrying later: the server could not be reached, timed out, hit
    /// a TLS or network failure, or answered with a 4xx reply (greylisting,
    /// mailbox busy, rate limits). Also used when the password file cannot be
    /// read, since an operator fixing or rotating it makes the retry succeed.
    #[error("email delivery failed temporarily{}: {reason}", code_suffix(*.code))]
    Transient {
        /// The SMTP reply code, when the server sent one.
        code: Option<u16>,
        reason: String,
    },
    /// Retrying will not help: a 5xx reply (unknown mailbox, relaying denied,
    /// authentication rejected), an address that does not parse, or a server
    /// that lacks something the configuration requires (such as STARTTLS).
    #[error("email delivery failed permanently{}: {reason}", code_suffix(*.code))]
    Permanent {
        /// The SMTP reply code, when the server sent one.
        code: Option<u16>,
        reason: String,
    },
}

impl EmailError {
    /// True when a retry cannot succeed without a configuration change.
    pub fn is_permanent(&self) -> bool {
        matches!(self, EmailError::Permanent { .. })
    }

    /// The SMTP reply code that caused the failure, if the server sent one.
    pub fn smtp_code(&self) -> Option<u16> {
        match self {
            EmailError::Transient { code, .. } | EmailError::Permanent { code, .. } => *code,
        }
    }

    fn transient(reason: impl Into<String>) -> Self {
        EmailError::Transient {
            code: None,
            reason: reason.into(),
        }
    }

    fn permanent(reason: impl Into<String>) -> Self {
        EmailError::Permanent {
            code: None,
            reason: reason.into(),
        }
    }

    /// Sorts an SMTP reply code by its first digit (RFC 5321 §4.2.1): 4xx is
    /// a transient negative completion, 5xx a permanent one. Anything else in
    /// an error position is a confused server, so give it another chance.
    fn from_reply(code: u16, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        if (500..600).contains(&code) {
            EmailError::Permanent {
                code: Some(code),
                reason,
            }
        } else {
            EmailError::Transient {
                code: Some(code),
                reason,
            }
        }
    }
}

fn code_suffix(code: Option<u16>) -> String {
    code.map(|code| format!(" (SMTP {code})"))
        .unwrap_or_default()
}

/// Maps lettre's error onto transient/permanent.
///
/// Reply codes decide when there is one. Without a code, lettre's "client"
/// errors are capability or configuration mismatches (STARTTLS or an auth
/// mechanism missing, non-ASCII addresses without SMTPUTF8) that a retry
/// would only repeat; connection, network, timeout, TLS and parse failures
/// are treated as passing trouble.
fn classify(error: &lettre::transport::smtp::Error) -> EmailError {
    let reason = error.to_string();
    match error.status() {
        Some(code) => EmailError::from_reply(u16::from(code), reason),
        None if error.is_client() => EmailError::permanent(reason),
        None => EmailError::transient(reason),
    }
}

/// Sends `message` through `channel`'s SMTP server to `channel.to` plus
/// `extra_recipients` (duplicates removed), within `timeout` overall.
///
/// The Message-ID is random; use [`send_with_idempotency_key`] to make it
/// stable across retries.
pub async fn send(
    channel: &EmailChannel,
    message: &EmailMessage,
    extra_recipients: &[String],
    timeout: Duration,
) -> Result<(), EmailError> {
    deliver(channel, message, extra_recipients, None, timeout).await
}

/// Like [`send`], and also stamps the [`IDEMPOTENCY_HEADER`] header with
/// `idempotency_key` and derives the Message-ID from it, so every retry of
/// one delivery carries the same Message-ID and mail clients that see a
/// duplicate (a retry after a lost "250 OK") can fold it away.
pub async fn send_with_idempotency_key(
    channel: &EmailChannel,
    message: &EmailMessage,
    extra_recipients: &[String],
    idempotency_key: &str,
    timeout: Duration,
) -> Result<(), EmailError> {
    deliver(
        channel,
        message,
        extra_recipients,
        Some(idempotency_key),
        timeout,
    )
    .await
}

async fn deliver(
    channel: &EmailChannel,
    message: &EmailMessage,
    extra_recipients: &[String],
    idempotency_key: Option<&str>,
    timeout: Duration,
) -> Result<(), EmailError> {
    let email = build_message(channel, message, extra_recipients, idempotency_key)?;
    let transport = transport(channel, timeout).await?;
    match tokio::time::timeout(timeout, transport.send(email)).await {
        Ok(Ok(_response)) => {
            tracing::debug!(
                host = %channel.smtp_host,
                port = channel.smtp_port,
                "Email accepted by the SMTP server."
            );
            Ok(())
        }
        Ok(Err(error)) => Err(classify(&error)),
        Err(_elapsed) => Err(EmailError::transient(format!(
            "no answer from {}:{} within {timeout:?}",
            channel.smtp_host, channel.smtp_port
        ))),
    }
}

/// The MIME message: plain text, one `To` header listing every recipient.
fn build_message(
    channel: &EmailChannel,
    message: &EmailMessage,
    extra_recipients: &[String],
    idempotency_key: Option<&str>,
) -> Result<Message, EmailError> {
    let from = parse_mailbox("from", &channel.from)?;
    let mut recipients: Vec<&str> = Vec::new();
    for address in channel.to.iter().chain(extra_recipients) {
        let address = address.trim();
        if !recipients.contains(&address) {
            recipients.push(address);
        }
    }
    if recipients.is_empty() {
        return Err(EmailError::permanent("no recipients"));
    }
    let message_id = idempotency_key.map(|key| stable_message_id(key, &from));
    let mut builder = Message::builder()
        .from(from)
        // The payload already strips line breaks; lettre also encodes the
        // header, so a stray CR/LF cannot inject headers either way.
        .subject(message.subject.clone())
        .message_id(message_id)
        .header(ContentType::TEXT_PLAIN);
    for address in recipients {
        builder = builder.to(parse_mailbox("to", address)?);
    }
    if let Some(key) = idempotency_key {
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(IDEMPOTENCY_HEADER),
            key.replace(['\r', '\n'], " "),
        ));
    }
    // lettre converts the body's `\n` line endings to CRLF.
    builder
        .body(message.text.clone())
        .map_err(|error| EmailError::permanent(format!("cannot build the message: {error}")))
}

fn parse_mailbox(field: &str, address: &str) -> Result<Mailbox, EmailError> {
    address.parse().map_err(|error| {
        EmailError::permanent(format!("invalid {field} address {address:?}: {error}"))
    })
}

/// `<sha256(key)[..16 bytes] hex@domain-of-from>`: the same key always gives
/// the same id, and the hash keeps recipient addresses out of it.
fn stable_message_id(key: &str, from: &Mailbox) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hex = hex::encode(&digest.as_ref()[..16]);
    format!("<{hex}.steward@{}>", from.email.domain())
}

/// An SMTP client for `channel`: STARTTLS required or plain, with
/// credentials when a username and password file are configured.
async fn transport(
    channel: &EmailChannel,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailError> {
    let tls = if channel.starttls {
        Tls::Required(tls_parameters(&channel.smtp_host)?)
    } else {
        Tls::None
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&channel.smtp_host)
        .port(channel.smtp_port)
        .tls(tls)
        // Per SMTP command; `deliver` bounds the whole exchange as well.
        .timeout(Some(timeout));
    if let (Some(username), Some(path)) = (&channel.username, &channel.password_file) {
        let password = read_password(path).await?;
        builder = builder.credentials(Credentials::new(username.clone(), password));
    }
    Ok(builder.build())
}

/// The password file's content without surrounding whitespace (a trailing
/// newline from `echo` is not part of the password).
async fn read_password(path: &Path) -> Result<String, EmailError> {
    let text = tokio::fs::read_to_string(path).await.map_err(|error| {
        EmailError::transient(format!(
            "cannot read SMTP password file {}: {error}",
            path.display()
        ))
    })?;
    let password = text.trim();
    if password.is_empty() {
        return Err(EmailError::transient(format!(
            "SMTP password file {} is empty",
            path.display()
        )));
    }
    Ok(password.to_string())
}

/// TLS settings that verify `host`'s certificate against the system roots.
///
/// `CertificateStore::Default` with lettre's `rustls-native-certs` feature
/// reads the operating system's trust store (honouring `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`) on every connection, so CA updates apply without a restart.
fn tls_parameters(host: &str) -> Result<TlsParameters, EmailError> {
    TlsParameters::builder(host.to_string())
        .certificate_store(CertificateStore::Default)
        .build_rustls()
        .map_err(|error| EmailError::permanent(format!("cannot set up TLS for {host}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn channel(port: u16) -> EmailChannel {
        EmailChannel {
            smtp_host: "127.0.0.1".to_string(),
            smtp_port: port,
            starttls: false,
            from: "Steward <steward@example.com>".to_string(),
            to: vec!["ops@example.com".to_string()],
            username: None,
            password_file: None,
        }
    }

    fn message() -> EmailMessage {
        EmailMessage {
            subject: "[Steward] CRITICAL Opened: disk full".to_string(),
            text: "disk full\n".to_string(),
        }
    }

    /// A server that greets with `greeting` (one SMTP reply line, or nothing
    /// when empty) and then holds the connection open.
    async fn greeter(greeting: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if !greeting.is_empty() {
                        let _ = stream.write_all(greeting.as_bytes()).await;
                    }
                    let mut sink = [0u8; 512];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        port
    }

    #[test]
    fn reply_codes_split_on_the_first_digit() {
        for (code, permanent) in [
            (421, false),
            (450, false),
            (451, false),
            (452, false),
            (500, true),
            (535, true),
            (550, true),
            (554, true),
        ] {
            let error = EmailError::from_reply(code, "reply");
            assert_eq!(error.is_permanent(), permanent, "code {code}");
            assert_eq!(error.smtp_code(), Some(code));
            assert!(error.to_string().contains(&format!("SMTP {code}")));
        }
    }

    #[tokio::test]
    async fn refused_connection_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        let error = send(&channel(port), &message(), &[], Duration::from_secs(5))
            .await
            .expect_err("nothing listens");
        assert!(!error.is_permanent(), "{error}");
        assert_eq!(error.smtp_code(), None);
    }

    #[tokio::test]
    async fn silent_server_times_out_as_transient() {
        let port = greeter("").await;
        let error = send(&channel(port), &message(), &[], Duration::from_millis(300))
            .await
            .expect_err("no greeting");
        assert!(!error.is_permanent(), "{error}");
    }

    #[tokio::test]
    async fn greeting_reply_codes_are_classified() {
        let busy = greeter("421 4.3.2 try later\r\n").await;
        let error = send(&channel(busy), &message(), &[], Duration::from_secs(5))
            .await
            .expect_err("421 greeting");
        assert!(!error.is_permanent(), "{error}");
        assert_eq!(error.smtp_code(), Some(421));

        let closed = greeter("554 5.7.1 no service\r\n").await;
        let error = send(&channel(closed), &message(), &[], Duration::from_secs(5))
            .await
            .expect_err("554 greeting");
        assert!(error.is_permanent(), "{error}");
        assert_eq!(error.smtp_code(), Some(554));
    }

    #[tokio::test]
    async fn missing_starttls_is_permanent() {
        // The server speaks SMTP but offers no STARTTLS; with TLS required,
        // lettre must refuse to continue in plain text.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"220 test\r\n").await;
                let mut line = [0u8; 512];
                let _ = stream.read(&mut line).await;
                let _ = stream.write_all(b"250 test\r\n").await;
                while matches!(stream.read(&mut line).await, Ok(n) if n > 0) {}
            }
        });
        let mut tls_channel = channel(port);
        tls_channel.starttls = true;
        tls_channel.smtp_host = "localhost".to_string();
        match send(&tls_channel, &message(), &[], Duration::from_secs(5)).await {
            Err(error) => assert!(error.is_permanent(), "{error}"),
            Ok(()) => panic!("sent without STARTTLS"),
        }
    }

    #[tokio::test]
    async fn bad_addresses_are_permanent_without_connecting() {
        let mut bad_to = channel(9);
        bad_to.to = vec!["not an address".to_string()];
        let error = send(&bad_to, &message(), &[], Duration::from_secs(5))
            .await
            .expect_err("bad recipient");
        assert!(error.is_permanent(), "{error}");

        let mut bad_from = channel(9);
        bad_from.from = "steward".to_string();
        let error = send(&bad_from, &message(), &[], Duration::from_secs(5))
            .await
            .expect_err("bad sender");
        assert!(error.is_permanent(), "{error}");
    }

    #[tokio::test]
    async fn unreadable_password_file_is_transient_and_keeps_the_secret_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut with_auth = channel(9);
        with_auth.username = Some("steward".to_string());
        with_auth.password_file = Some(dir.path().join("missing"));
        let error = send(&with_auth, &message(), &[], Duration::from_secs(5))
            .await
            .expect_err("no password file");
        assert!(!error.is_permanent(), "{error}");
        assert!(error.to_string().contains("password file"), "{error}");
    }

    #[test]
    fn message_has_headers_recipients_and_crlf_body() {
        let built = build_message(
            &channel(25),
            &message(),
            &[
                "alice@example.com".to_string(),
                "ops@example.com".to_string(),
            ],
            Some("7:opened:email:alice@example.com"),
        )
        .expect("message builds");
        let envelope = built.envelope();
        let to: Vec<String> = envelope.to().iter().map(ToString::to_string).collect();
        assert_eq!(to, ["ops@example.com", "alice@example.com"]);
        let text = String::from_utf8(built.formatted()).expect("ASCII message");
        assert!(text.contains("Subject: [Steward] CRITICAL Opened: disk full\r\n"));
        assert!(text.contains("X-Steward-Idempotency-Key: 7:opened:email:alice@example.com\r\n"));
        assert!(text.contains("Message-ID: <"));
        assert!(text.contains(".steward@example.com>\r\n"));
        assert!(text.contains("\r\n\r\ndisk full\r\n"));
    }

    #[test]
    fn message_id_is_stable_per_key() {
        let from: Mailbox = "steward@example.com".parse().expect("mailbox");
        let first = stable_message_id("7:opened:pd", &from);
        assert_eq!(first, stable_message_id("7:opened:pd", &from));
        assert_ne!(first, stable_message_id("7:resolved:pd", &from));
        assert!(!first.contains("pd"));
    }

    #[test]
    fn tls_parameters_build_from_the_system_store() {
        // An empty store (no CA bundle installed) still builds; the handshake
        // would then fail, as a transient TLS error.
        assert!(tls_parameters("smtp.example.com").is_ok());
    }
}

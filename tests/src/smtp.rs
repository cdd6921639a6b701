//! A tiny real SMTP server for tests: plain text on 127.0.0.1, one thread per
//! connection, records every accepted message and can be told to refuse the
//! next `MAIL FROM`s with a chosen reply code (451 to exercise retries, 550
//! for a permanent refusal). Stops accepting when dropped.
//!
//! It speaks just enough RFC 5321 for a real client such as lettre: greeting,
//! `EHLO`/`HELO`, `MAIL FROM`, `RCPT TO`, `DATA`, `RSET`, `NOOP`, `QUIT`. It
//! never advertises `STARTTLS` or `AUTH`, so clients must be configured for
//! plain SMTP (`starttls = false`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One message the server accepted (answered `250` after `DATA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpMessage {
    /// The `MAIL FROM` address, without angle brackets.
    pub from: String,
    /// The `RCPT TO` addresses, without angle brackets, in order.
    pub recipients: Vec<String>,
    /// Headers and body as sent (CRLF line endings, dot-stuffing undone,
    /// without the terminating `.` line).
    pub data: String,
}

impl SmtpMessage {
    /// The value of the first header called `name` (case-insensitive),
    /// with folded continuation lines joined.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(current) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    current.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim_start().to_string());
            }
        }
        value.map(|value| value.trim_end().to_string())
    }

    /// Everything after the blank line that ends the headers.
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }
}

/// State shared between the test and the connection threads.
#[derive(Default)]
struct Shared {
    messages: Mutex<Vec<SmtpMessage>>,
    /// Reply codes for the next `MAIL FROM`s, consumed one per command.
    failures: Mutex<VecDeque<u16>>,
}

/// A running SMTP server; see the module docs.
pub struct SmtpServer {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl SmtpServer {
    /// Listens on a free loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind SMTP server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking SMTP listener");
        let address = listener.local_addr().expect("SMTP server address");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (state, halt) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let state = Arc::clone(&state);
                        std::thread::spawn(move || {
                            // A client hanging up mid-session is not a test failure.
                            let _ = session(stream, &state);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            address,
            shared,
            stop,
        }
    }

    /// The messages accepted so far, oldest first.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        self.shared
            .messages
            .lock()
            .expect("SMTP message log")
            .clone()
    }

    /// Answers the next `n` `MAIL FROM` commands with `451` (transient).
    pub fn fail_next(&self, n: usize) {
        self.fail_next_with(451, n);
    }

    /// Answers the next `n` `MAIL FROM` commands with `code` (a 4xx or 5xx).
    pub fn fail_next_with(&self, code: u16, n: usize) {
        self.shared
            .failures
            .lock()
            .expect("SMTP failure plan")
            .extend(std::iter::repeat_n(code, n));
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A message being assembled between `MAIL FROM` and the end of `DATA`.
#[derive(Default)]
struct Transaction {
    from: Option<String>,
    recipients: Vec<String>,
}

fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut reply = |text: &str| writer.write_all(format!("{text}\r\n").as_bytes());
    reply("220 steward-test ESMTP ready")?;
    let mut transaction = Transaction::default();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                reply("250-steward-test\r\n250-8BITMIME\r\n250-SIZE 10485760\r\n250 SMTPUTF8")?
            }
            "HELO" => reply("250 steward-test")?,
            "MAIL" => {
                let planned = shared
                    .failures
                    .lock()
                    .ok()
                    .and_then(|mut plan| plan.pop_front());
                match planned {
                    Some(code) => reply(&format!("{code} refused by test plan"))?,
                    None => {
                        transaction = Transaction {
                            from: Some(address_of(command)),
                            recipients: Vec::new(),
                        };
                        reply("250 OK")?;
                    }
                }
            }
            "RCPT" if transaction.from.is_some() => {
                transaction.recipients.push(address_of(command));
                reply("250 OK")?;
            }
            "RCPT" => reply("503 MAIL first")?,
            "DATA" if transaction.recipients.is_empty() => reply("503 RCPT first")?,
            "DATA" => {
                reply("354 end with <CRLF>.<CRLF>")?;
                let data = read_data(&mut reader)?;
                let done = std::mem::take(&mut transaction);
                if let Ok(mut messages) = shared.messages.lock() {
                    messages.push(SmtpMessage {
                        from: done.from.unwrap_or_default(),
                        recipients: done.recipients,
                        data,
                    });
                }
                reply("250 OK queued")?;
            }
            "RSET" => {
                transaction = Transaction::default();
                reply("250 OK")?;
            }
            "NOOP" => reply("250 OK")?,
            "QUIT" => {
                reply("221 bye")?;
                return Ok(());
            }
            _ => reply("502 command not implemented")?,
        }
    }
}

/// Reads `DATA` lines until the lone `.`, undoing dot-stuffing.
fn read_data(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == ".\r\n" || line == ".\n" {
            return Ok(data);
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
    }
}

/// `MAIL FROM:<a@b> SIZE=12` → `a@b`.
fn address_of(command: &str) -> String {
    let rest = command.split_once(':').map_or("", |(_, rest)| rest);
    let rest = rest.trim_start();
    match rest
        .strip_prefix('<')
        .and_then(|inner| inner.split_once('>'))
    {
        Some((address, _)) => address.to_string(),
        None => rest.split_whitespace().next().unwrap_or("").to_string(),
    }
}

//! Text hygiene and formatting shared by both programs.
//!
//! Strings that come from agents (host names, labels, serials, package
//! names) end up in logs, terminals, spreadsheets and chat messages; control
//! characters in them could forge log lines or move a terminal's cursor.

use std::borrow::Cow;

/// `text` without control characters (C0, DEL, C1); tabs and newlines become
/// spaces so a value stays on one line. Borrows when nothing changes.
pub fn strip_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .filter_map(|c| match c {
                '\t' | '\n' | '\r' => Some(' '),
                c if c.is_control() => None,
                c => Some(c),
            })
            .collect(),
    )
}

/// RFC 3339 UTC text of a Unix millisecond timestamp,
/// e.g. `2024-01-02T03:04:05.678Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// An error and its causes, `outer: inner: root`: the top-level messages of
/// tonic and reqwest ("transport error", "error sending request") alone do
/// not say what went wrong. A cause already ending the text is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    #[test]
    fn error_chain_names_every_cause_once() {
        let root = Layer {
            text: "connection refused",
            source: None,
        };
        let middle = Layer {
            text: "tcp connect error: connection refused",
            source: Some(Box::new(root)),
        };
        let top = Layer {
            text: "transport error",
            source: Some(Box::new(middle)),
        };
        assert_eq!(
            error_chain(&top),
            "transport error: tcp connect error: connection refused"
        );
    }

    #[test]
    fn control_characters_are_removed_and_line_breaks_flattened() {
        assert!(matches!(strip_control("web-01"), Cow::Borrowed("web-01")));
        assert_eq!(strip_control("a\x1b[2Jb"), "a[2Jb");
        assert_eq!(strip_control("line1\nline2\r\tx"), "line1 line2  x");
        assert_eq!(strip_control("nul\0del\x7fc1\u{85}"), "nuldelc1");
        assert_eq!(strip_control("Grüße ✓"), "Grüße ✓");
    }

    #[test]
    fn rfc3339_has_milliseconds_and_z() {
        assert_eq!(rfc3339_ms(1_704_164_645_678), "2024-01-02T03:04:05.678Z");
        assert_eq!(rfc3339_ms(-5), "1970-01-01T00:00:00.000Z");
    }
}

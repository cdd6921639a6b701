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

#[cfg(test)]
mod tests {
    use super::*;

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

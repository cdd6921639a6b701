//! Debian version ordering, exactly as dpkg's `verrevcmp` defines it
//! (deb-version(7)): `[epoch:]upstream[-revision]`, compared part by part,
//! alternating non-digit runs (where `~` sorts before everything, even the end
//! of the string, and letters before other symbols) and numeric runs.
//!
//! Pure and allocation-free; it never fails, because a malformed version in a
//! third-party repository must not stop the scan — dpkg's own ordering of
//! such strings is used instead.

use std::cmp::Ordering;

/// Compares two Debian package versions.
pub fn compare_debian_versions(a: &str, b: &str) -> Ordering {
    let (epoch_a, upstream_a, revision_a) = split(a);
    let (epoch_b, upstream_b, revision_b) = split(b);
    compare_digits(epoch_a, epoch_b)
        .then_with(|| verrevcmp(upstream_a.as_bytes(), upstream_b.as_bytes()))
        .then_with(|| verrevcmp(revision_a.as_bytes(), revision_b.as_bytes()))
}

/// Splits into (epoch, upstream, revision). The epoch is what precedes the
/// first `:` when that is all digits; the revision follows the last `-`.
fn split(version: &str) -> (&str, &str, &str) {
    let version = version.trim();
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch, rest)
        }
        _ => ("0", version),
    };
    let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
    (epoch, upstream, revision)
}

/// dpkg's character weight in non-digit runs: `~` lowest, then the end of the
/// run, then letters, then everything else.
fn weight(byte: Option<u8>) -> i32 {
    match byte {
        None => 0,
        Some(b) if b.is_ascii_digit() => 0,
        Some(b'~') => -1,
        Some(b) if b.is_ascii_alphabetic() => i32::from(b),
        Some(b) => i32::from(b) + 256,
    }
}

fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let is_digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        // Non-digit run. Both sides advance together: they only continue
        // while the weights are equal, so they stay in step.
        while (i < a.len() && !is_digit(a, i)) || (j < b.len() && !is_digit(b, j)) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        // Numeric run, compared by value without parsing (no overflow).
        let start_a = i;
        while is_digit(a, i) {
            i += 1;
        }
        let start_b = j;
        while is_digit(b, j) {
            j += 1;
        }
        let order = compare_digits(
            std::str::from_utf8(&a[start_a..i]).unwrap_or("0"),
            std::str::from_utf8(&b[start_b..j]).unwrap_or("0"),
        );
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// Compares two runs of ASCII digits by numeric value, any length.
fn compare_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn orders_versions_like_dpkg() {
        // Cases from deb-version(7), dpkg's t-version tests, and pairs seen
        // in this host's `apt-get -s upgrade` output.
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.1", "1.0", Greater),
            ("2.30", "2.4", Greater),
            ("1.002", "1.2", Equal),
            ("0:1.0", "1.0", Equal),
            ("1.0-0", "1.0", Equal),
            ("1:0.1", "2.0", Greater),
            ("2:1.0", "10:0.1", Less),
            ("1.0-1", "1.0-2", Less),
            ("1.0-10", "1.0-9", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0b", Less),
            ("1.0+", "1.0a", Greater),
            ("1.0.", "1.0+", Greater),
            // The tilde rule: before everything, even the end of the string.
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~~", "1.0~~a", Less),
            ("1.0~~a", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0~beta", "1.0~~", Greater),
            ("1.0-1~bpo1", "1.0-1", Less),
            // Real Debian 12 upgrades.
            ("3.0.11-1~deb12u1", "3.0.11-1~deb12u2", Less),
            ("1:4.13+dfsg1-1+deb12u1", "1:4.13+dfsg1-1+deb12u2", Less),
            ("17.0.15+6-1~deb12u1", "17.0.19+10-1~deb12u2", Less),
            ("2.14-2", "2.14-2+deb12u1", Less),
            ("5.2.15-2+b8", "5.2.15-2+b13", Less),
            ("12.4+deb12u11", "12.4+deb12u14", Less),
            ("2024a-0+deb12u1", "2025b-0+deb12u1", Less),
            // Hyphens in the upstream part: the revision is after the last.
            ("1.2-3-4", "1.2-3-5", Less),
            ("1.2-4-1", "1.2-3-5", Greater),
            // Numbers longer than any integer type.
            ("20240101000000000000000", "20240101000000000000001", Less),
            // An epoch that is not a number is part of the upstream version.
            ("a:1", "a:1", Equal),
            ("", "0", Equal),
            ("", "1", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_debian_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_debian_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn sorting_is_a_total_order_on_a_mixed_list() {
        let mut versions = vec![
            "1.0", "1:0.5", "1.0~rc1", "0.9", "1.0-1", "1.0+b1", "1.0~~", "1.0a",
        ];
        versions.sort_by(|a, b| compare_debian_versions(a, b));
        assert_eq!(
            versions,
            [
                "0.9", "1.0~~", "1.0~rc1", "1.0", "1.0-1", "1.0a", "1.0+b1", "1:0.5"
            ]
        );
    }
}

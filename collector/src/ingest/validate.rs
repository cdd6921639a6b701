//! Validation of incoming samples, and the one place agent text is cleaned.
//!
//! Invalid samples are dropped and counted; the rest of their batch is
//! still stored, so one bad value cannot make an agent resend the same
//! batch forever. Free text from an agent (host name, version, facts, label
//! values, inventory names) goes through [`clean`] on arrival, before
//! anything logs or stores it; identifiers with a grammar (metric names,
//! label keys, the agent id) are refused instead, so two different names
//! never become one by cleaning.

use std::borrow::Cow;

use steward_core::text::strip_control;
use steward_proto::v1 as pb;

use crate::store::{Labels, SampleRecord};

pub const MAX_METRIC_NAME: usize = 200;

/// Bounds on one sample's labels (`[limits]` in collector.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleLimits {
    pub max_labels: usize,
    pub max_label_key_bytes: usize,
    pub max_label_value_bytes: usize,
}

impl Default for SampleLimits {
    fn default() -> Self {
        Self {
            max_labels: 32,
            max_label_key_bytes: 100,
            max_label_value_bytes: 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SampleProblem {
    #[error("metric name is empty, too long or not dotted lower-case")]
    MetricName,
    #[error("more labels than limits.max_labels_per_sample")]
    TooManyLabels,
    #[error("label key or value longer than its limit")]
    LabelTooLong,
    #[error("label key is empty or malformed")]
    Label,
    #[error("value is not a finite number")]
    Value,
    #[error("timestamp is not positive or too far in the future")]
    Timestamp,
}

/// `text` without control characters: tabs and line breaks become spaces,
/// the rest go (`steward_core::text::strip_control`). Control characters
/// from an agent could forge log lines or drive the terminal of whoever
/// reads them. Reuses the string when it is already clean.
pub fn clean(text: String) -> String {
    match strip_control(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cleaned) => cleaned,
    }
}

/// The hello with its free text cleaned; the agent id and token are left
/// exactly as sent (the id is checked by the caller, the token compared).
pub fn clean_hello(hello: pb::Hello) -> pb::Hello {
    pb::Hello {
        agent_version: clean(hello.agent_version),
        hostname: clean(hello.hostname),
        inventory: hello.inventory.map(|inventory| pb::Inventory {
            facts: inventory
                .facts
                .into_iter()
                .map(|(key, value)| (clean(key), clean(value)))
                .collect(),
            ..inventory
        }),
        ..hello
    }
}

pub fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_METRIC_NAME
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'.'
        })
        && !name.starts_with('.')
        && !name.ends_with('.')
}

fn is_label_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// How far ahead of the collector's clock a sample may be stamped. Beyond
/// it the sample is refused: one far-future value would otherwise pin the
/// series' latest value forever.
pub const MAX_CLOCK_SKEW_MS: i64 = 3_600_000;

impl SampleProblem {
    /// Refused by a configured limit, rather than malformed.
    pub fn is_limit(self) -> bool {
        matches!(self, Self::TooManyLabels | Self::LabelTooLong)
    }
}

pub fn to_record(
    sample: pb::Sample,
    now_ms: i64,
    limits: &SampleLimits,
) -> Result<SampleRecord, SampleProblem> {
    if !is_metric_name(&sample.metric) {
        return Err(SampleProblem::MetricName);
    }
    if sample.labels.len() > limits.max_labels {
        return Err(SampleProblem::TooManyLabels);
    }
    if !sample.value.is_finite() {
        return Err(SampleProblem::Value);
    }
    if sample.timestamp_ms <= 0 || sample.timestamp_ms > now_ms + MAX_CLOCK_SKEW_MS {
        return Err(SampleProblem::Timestamp);
    }
    let mut labels = Labels::new();
    for label in sample.labels {
        // The key's grammar already excludes control characters.
        if !is_label_key(&label.key) {
            return Err(SampleProblem::Label);
        }
        let value = clean(label.value);
        if label.key.len() > limits.max_label_key_bytes
            || value.len() > limits.max_label_value_bytes
        {
            return Err(SampleProblem::LabelTooLong);
        }
        labels.insert(label.key, value);
    }
    Ok(SampleRecord {
        metric: sample.metric,
        labels,
        value: sample.value,
        timestamp_ms: sample.timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn sample(metric: &str, key: &str, value: f64, timestamp_ms: i64) -> pb::Sample {
        pb::Sample {
            metric: metric.into(),
            labels: vec![pb::Label {
                key: key.into(),
                value: "v".into(),
            }],
            value,
            timestamp_ms,
        }
    }

    #[test]
    fn accepts_and_rejects_by_rule() {
        let cases = [
            (sample("cpu.usage_percent", "cpu", 1.0, 1), None),
            (sample("", "cpu", 1.0, 1), Some(SampleProblem::MetricName)),
            (
                sample("CPU", "cpu", 1.0, 1),
                Some(SampleProblem::MetricName),
            ),
            (
                sample("cpu.", "cpu", 1.0, 1),
                Some(SampleProblem::MetricName),
            ),
            (sample("cpu", "bad key", 1.0, 1), Some(SampleProblem::Label)),
            (sample("cpu", "", 1.0, 1), Some(SampleProblem::Label)),
            (
                sample("cpu", "cpu", f64::NAN, 1),
                Some(SampleProblem::Value),
            ),
            (
                sample("cpu", "cpu", f64::INFINITY, 1),
                Some(SampleProblem::Value),
            ),
            (sample("cpu", "cpu", 1.0, 0), Some(SampleProblem::Timestamp)),
            (
                sample("cpu", "cpu", 1.0, NOW + MAX_CLOCK_SKEW_MS + 1),
                Some(SampleProblem::Timestamp),
            ),
            (sample("cpu", "cpu", 1.0, NOW + MAX_CLOCK_SKEW_MS), None),
        ];
        for (input, expected) in cases {
            let shown = format!("{input:?}");
            assert_eq!(
                to_record(input, NOW, &SampleLimits::default()).err(),
                expected,
                "{shown}"
            );
        }
    }

    #[test]
    fn label_values_lose_control_characters_while_names_are_still_checked() {
        let mut hostile = sample("disk.used_percent", "mount", 1.0, 1);
        hostile.labels[0].value = "a\x1b[2Jb\n".into();
        let limits = SampleLimits::default();
        let record = to_record(hostile, NOW, &limits).unwrap();
        assert_eq!(record.labels["mount"], "a[2Jb ");

        let bad_key = sample("disk.used_percent", "mo\x1bunt", 1.0, 1);
        assert_eq!(
            to_record(bad_key, NOW, &limits).err(),
            Some(SampleProblem::Label)
        );
        let bad_metric = sample("disk.used\npercent", "mount", 1.0, 1);
        assert_eq!(
            to_record(bad_metric, NOW, &limits).err(),
            Some(SampleProblem::MetricName)
        );
        let mut too_long = sample("disk.used_percent", "mount", 1.0, 1);
        too_long.labels[0].value = "x".repeat(limits.max_label_value_bytes + 1);
        assert_eq!(
            to_record(too_long, NOW, &limits).err(),
            Some(SampleProblem::LabelTooLong)
        );
    }

    #[test]
    fn label_limits_come_from_the_config() {
        let limits = SampleLimits {
            max_labels: 2,
            max_label_key_bytes: 4,
            max_label_value_bytes: 3,
        };
        let with = |labels: &[(&str, &str)]| pb::Sample {
            metric: "net.rx_bytes".into(),
            labels: labels
                .iter()
                .map(|(key, value)| pb::Label {
                    key: (*key).into(),
                    value: (*value).into(),
                })
                .collect(),
            value: 1.0,
            timestamp_ms: 1,
        };
        let cases = [
            (with(&[("a", "1"), ("b", "2")]), None),
            (
                with(&[("a", "1"), ("b", "2"), ("c", "3")]),
                Some(SampleProblem::TooManyLabels),
            ),
            (with(&[("abcd", "123")]), None),
            (with(&[("abcde", "1")]), Some(SampleProblem::LabelTooLong)),
            (with(&[("a", "1234")]), Some(SampleProblem::LabelTooLong)),
            (with(&[("a b", "1")]), Some(SampleProblem::Label)),
        ];
        for (input, expected) in cases {
            let shown = format!("{input:?}");
            let problem = to_record(input, NOW, &limits).err();
            assert_eq!(problem, expected, "{shown}");
            assert_eq!(
                problem.is_some_and(SampleProblem::is_limit),
                matches!(
                    expected,
                    Some(SampleProblem::TooManyLabels | SampleProblem::LabelTooLong)
                )
            );
        }
    }

    #[test]
    fn hello_text_loses_control_characters_but_id_and_token_are_untouched() {
        let hello = pb::Hello {
            agent_id: "agent-1".into(),
            agent_version: "0.1.0\x1b]0;pwned\x07".into(),
            hostname: "web-01\r\nFAKE LOG LINE".into(),
            token: "token\twith-tab".into(),
            epoch: 3,
            inventory: Some(pb::Inventory {
                facts: [("serial\x1b".to_string(), "SN\u{9b}1".to_string())].into(),
                ..Default::default()
            }),
        };
        let hello = clean_hello(hello);
        assert_eq!(hello.agent_version, "0.1.0]0;pwned");
        assert_eq!(hello.hostname, "web-01  FAKE LOG LINE");
        assert_eq!(hello.token, "token\twith-tab");
        assert_eq!((hello.agent_id.as_str(), hello.epoch), ("agent-1", 3));
        let facts = hello.inventory.unwrap().facts;
        assert_eq!(facts.get("serial").map(String::as_str), Some("SN1"));
    }
}

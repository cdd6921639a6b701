//! Validation of incoming samples. Invalid samples are dropped and counted;
//! the rest of their batch is still stored, so one bad value cannot make an
//! agent resend the same batch forever.

use steward_proto::v1 as pb;

use crate::store::{Labels, SampleRecord};

pub const MAX_METRIC_NAME: usize = 200;
pub const MAX_LABELS: usize = 32;
pub const MAX_LABEL_KEY: usize = 100;
pub const MAX_LABEL_VALUE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SampleProblem {
    #[error("metric name is empty, too long or not dotted lower-case")]
    MetricName,
    #[error("too many labels")]
    TooManyLabels,
    #[error("label key or value is empty, too long or malformed")]
    Label,
    #[error("value is not a finite number")]
    Value,
    #[error("timestamp is not positive or too far in the future")]
    Timestamp,
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
        && key.len() <= MAX_LABEL_KEY
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// How far ahead of the collector's clock a sample may be stamped. Beyond
/// it the sample is refused: one far-future value would otherwise pin the
/// series' latest value forever.
pub const MAX_CLOCK_SKEW_MS: i64 = 3_600_000;

pub fn to_record(sample: pb::Sample, now_ms: i64) -> Result<SampleRecord, SampleProblem> {
    if !is_metric_name(&sample.metric) {
        return Err(SampleProblem::MetricName);
    }
    if sample.labels.len() > MAX_LABELS {
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
        if !is_label_key(&label.key) || label.value.len() > MAX_LABEL_VALUE {
            return Err(SampleProblem::Label);
        }
        labels.insert(label.key, label.value);
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
            assert_eq!(to_record(input, NOW).err(), expected, "{shown}");
        }
    }
}

//! Incident summaries: `{placeholder}` templates rendered when an incident opens.
//!
//! Built-in placeholders: `{host}`, `{agent}`, `{rule}`, `{metric}`,
//! `{value}`, `{op}`, `{threshold}`, `{severity}`, `{labels}` (all labels as
//! `k=v, k=v`) and, for `absent` rules, `{silence}` (`3m 10s`). Any other
//! `{name}` is the series label `name`. Built-ins win over a label of the
//! same name, so a template means the same thing whatever labels arrive.
//! A placeholder with no value is left as written (`{mount}`), which shows
//! the operator what was missing instead of silently dropping it.

use std::time::Duration;

use super::{Labels, Op, Severity};

/// What a summary can mention. Borrowed so rendering allocates only the result.
#[derive(Debug, Clone, Copy)]
pub struct SummaryContext<'a> {
    pub rule: &'a str,
    pub metric: &'a str,
    pub agent_id: &'a str,
    /// Display name of the host; the caller's name for the agent, else the
    /// `host` label, else the agent id.
    pub host: &'a str,
    pub labels: &'a Labels,
    pub severity: Severity,
    pub value: Option<f64>,
    pub op: Option<Op>,
    pub threshold: Option<f64>,
    pub silence_ms: Option<i64>,
}

/// Renders `template`; never fails (see the module docs for unknown names).
pub fn render(template: &str, context: &SummaryContext<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if is_placeholder_name(&after[..close]) => {
                let name = &after[..close];
                match lookup(name, context) {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks a template at config time: every `{` must start a well-formed
/// placeholder, so a typo such as `{mount` is caught before it reaches a pager.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("unclosed `{{` in {template:?}"));
        };
        let name = &after[..close];
        if !is_placeholder_name(name) {
            return Err(format!(
                "`{{{name}}}` is not a placeholder (letters, digits, `_` and `.` only)"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

fn is_placeholder_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'.')
}

fn lookup(name: &str, context: &SummaryContext<'_>) -> Option<String> {
    let text = match name {
        "host" => context.host.to_string(),
        "agent" => context.agent_id.to_string(),
        "rule" => context.rule.to_string(),
        "metric" => context.metric.to_string(),
        "severity" => context.severity.as_str().to_string(),
        "value" => format_value(context.value?),
        "op" => context.op?.as_str().to_string(),
        "threshold" => format_value(context.threshold?),
        "silence" => {
            let millis = u64::try_from(context.silence_ms?).unwrap_or(0);
            // Whole seconds: "3m 10s" pages better than "3m 10s 412ms".
            humantime::format_duration(Duration::from_secs(millis / 1000)).to_string()
        }
        "labels" => context
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(", "),
        label => context.labels.get(label)?.clone(),
    };
    Some(text)
}

/// A value as a person reads it: `90`, `91.5`, `91.23`, not `91.23456789`.
/// Small magnitudes keep full precision so `0.0004` does not print as `0`.
pub fn format_value(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    if value.abs() < 0.01 {
        return value.to_string();
    }
    let fixed = format!("{value:.2}");
    fixed
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context<'a>(labels: &'a Labels) -> SummaryContext<'a> {
        SummaryContext {
            rule: "disk-almost-full",
            metric: "disk.used_percent",
            agent_id: "a1",
            host: "web-1",
            labels,
            severity: Severity::Critical,
            value: Some(93.456),
            op: Some(Op::Gt),
            threshold: Some(90.0),
            silence_ms: Some(190_400),
        }
    }

    #[test]
    fn renders_builtins_labels_and_leaves_unknowns() {
        let labels = Labels::from([
            ("mount".to_string(), "/".to_string()),
            ("value".to_string(), "shadowed".to_string()),
        ]);
        let cases = [
            (
                "Disk {mount} on {host} at {value}%",
                "Disk / on web-1 at 93.46%",
            ),
            (
                "{rule}/{metric} {op} {threshold} [{severity}] {agent}",
                "disk-almost-full/disk.used_percent > 90 [critical] a1",
            ),
            ("{labels}", "mount=/, value=shadowed"),
            ("silent for {silence}", "silent for 3m 10s"),
            ("{nosuchlabel} stays", "{nosuchlabel} stays"),
            ("braces { alone } and {", "braces { alone } and {"),
            ("", ""),
        ];
        for (template, expected) in cases {
            assert_eq!(render(template, &context(&labels)), expected, "{template}");
        }
    }

    #[test]
    fn missing_values_leave_placeholders() {
        let labels = Labels::new();
        let mut context = context(&labels);
        context.value = None;
        context.op = None;
        assert_eq!(render("{value} {op}", &context), "{value} {op}");
    }

    #[test]
    fn values_format_for_people() {
        let cases = [
            (90.0, "90"),
            (91.5, "91.5"),
            (91.23456, "91.23"),
            (-3.0, "-3"),
            (0.0004, "0.0004"),
            (1e20, "100000000000000000000"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_value(value), expected, "{value}");
        }
    }

    #[test]
    fn template_check_catches_typos() {
        assert!(check_template("Disk {mount} on {host}").is_ok());
        assert!(check_template("no placeholders").is_ok());
        assert!(check_template("Disk {mount on {host}").is_err());
        assert!(check_template("Disk {mount").is_err());
        assert!(check_template("empty {}").is_err());
    }
}

//! Human views of the API's JSON: pure functions of the documents and the
//! current time, so they are tested without a collector. A field the
//! collector does not send shows as `-`, never as an error: an older or
//! newer collector still gets a readable table.

use serde_json::Value;

use crate::table::{Table, key_values};

/// Text of a field: strings as they are, numbers and booleans printed,
/// null or absent as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::String(text) if !text.is_empty() => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => if *flag { "yes" } else { "no" }.into(),
        Value::Array(items) if !items.is_empty() => {
            items.iter().map(text).collect::<Vec<_>>().join(", ")
        }
        _ => "-".into(),
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 field.
fn time_ms(value: &Value) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(value.as_str()?).ok()?;
    let elapsed = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(elapsed.as_millis()).ok()
}

/// `42s`, `5m`, `3h12m`, `4d2h`: the two largest units, like kubectl's AGE.
pub fn compact_duration(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m"),
        (0, _, 0) => format!("{hours}h"),
        (0, _, _) => format!("{hours}h{minutes}m"),
        (_, 0, _) => format!("{days}d"),
        _ => format!("{days}d{hours}h"),
    }
}

fn age(value: &Value, now_ms: i64) -> String {
    time_ms(value).map_or_else(|| "-".into(), |at| compact_duration(now_ms - at))
}

/// What is left of the SLA that applies now: the acknowledgement deadline
/// while open, the resolution deadline once acknowledged.
fn sla_remaining(incident: &Value, now_ms: i64) -> String {
    let state = incident["state"].as_str().unwrap_or("");
    if state == "resolved" {
        return "-".into();
    }
    if incident["sla_breached"] == Value::Bool(true) {
        return "breached".into();
    }
    let (what, due) = if incident["acknowledged_at"].is_string() {
        ("resolve", &incident["resolve_due_at"])
    } else {
        ("ack", &incident["ack_due_at"])
    };
    match time_ms(due) {
        Some(due) if due > now_ms => format!("{what} in {}", compact_duration(due - now_ms)),
        Some(_) => format!("{what} overdue"),
        None => "-".into(),
    }
}

fn nothing(what: &str) -> String {
    format!("No {what}.\n")
}

pub fn incidents(items: &[Value], now_ms: i64) -> String {
    let mut table = Table::new(&[
        "ID", "SEVERITY", "STATE", "HOST", "RULE", "AGE", "SLA", "SUMMARY",
    ]);
    for incident in items {
        table.push(vec![
            text(&incident["id"]),
            text(&incident["severity"]),
            text(&incident["state"]),
            text(&incident["host"]),
            text(&incident["rule"]),
            age(&incident["opened_at"], now_ms),
            sla_remaining(incident, now_ms),
            text(&incident["summary"]),
        ]);
    }
    if table.is_empty() {
        return nothing("incidents");
    }
    table.render()
}

/// One incident after an action: a line saying what it is now.
pub fn incident_line(verb: &str, incident: &Value) -> String {
    format!(
        "{verb} incident {} ({} on {}); state {}.\n",
        text(&incident["id"]),
        text(&incident["rule"]),
        text(&incident["host"]),
        text(&incident["state"]),
    )
}

/// Incident detail: fields, then the timeline.
pub fn incident(incident: &Value, now_ms: i64) -> String {
    let mut out = key_values(&[
        ("ID", text(&incident["id"])),
        ("Rule", text(&incident["rule"])),
        ("Severity", text(&incident["severity"])),
        ("State", text(&incident["state"])),
        ("Host", text(&incident["host"])),
        ("Agent", text(&incident["agent_id"])),
        ("Metric", text(&incident["metric"])),
        ("Summary", text(&incident["summary"])),
        ("Value", text(&incident["value"])),
        ("Last value", text(&incident["last_value"])),
        (
            "Opened",
            format!(
                "{} ({} ago)",
                text(&incident["opened_at"]),
                age(&incident["opened_at"], now_ms)
            ),
        ),
        ("Acknowledged", text(&incident["acknowledged_at"])),
        ("Acknowledged by", text(&incident["acknowledged_by"])),
        ("Resolved", text(&incident["resolved_at"])),
        ("Resolved by", text(&incident["resolved_by"])),
        ("SLA", sla_remaining(incident, now_ms)),
        ("Runbook", text(&incident["runbook"])),
    ]);
    if let Some(timeline) = incident["timeline"]
        .as_array()
        .filter(|lines| !lines.is_empty())
    {
        out.push('\n');
        let mut table = Table::new(&["AT", "KIND", "ACTOR", "DETAIL"]);
        for entry in timeline {
            table.push(vec![
                text(&entry["at"]),
                text(&entry["kind"]),
                text(&entry["actor"]),
                text(&entry["detail"]),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

fn patches(asset: &Value) -> String {
    let patch = &asset["patch"];
    match (patch["pending"].as_u64(), patch["security"].as_u64()) {
        (Some(pending), Some(security)) => format!("{pending} ({security} security)"),
        (Some(pending), None) => pending.to_string(),
        _ => "-".into(),
    }
}

pub fn assets(items: &[Value], now_ms: i64) -> String {
    let mut table = Table::new(&["ID", "HOST", "STATUS", "OS", "PATCHES", "LAST SEEN", "TAGS"]);
    for asset in items {
        table.push(vec![
            text(&asset["id"]),
            text(&asset["hostname"]),
            text(&asset["status"]),
            text(&asset["os"]),
            patches(asset),
            age(&asset["last_seen"], now_ms),
            text(&asset["tags"]),
        ]);
    }
    if table.is_empty() {
        return nothing("assets");
    }
    table.render()
}

fn bytes(value: &Value) -> String {
    match value.as_u64() {
        Some(bytes) => format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64),
        None => "-".into(),
    }
}

pub fn asset(asset: &Value, now_ms: i64) -> String {
    let patch = &asset["patch"];
    let findings = asset["findings"]
        .as_array()
        .map(|findings| {
            findings
                .iter()
                .map(|finding| format!("{}: {}", text(&finding["check"]), text(&finding["detail"])))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    let agents = asset["agent_ids"].clone();
    key_values(&[
        ("ID", text(&asset["id"])),
        ("Hostname", text(&asset["hostname"])),
        ("FQDN", text(&asset["fqdn"])),
        ("Status", text(&asset["status"])),
        ("Connected", text(&asset["connected"])),
        (
            "Last seen",
            format!(
                "{} ({} ago)",
                text(&asset["last_seen"]),
                age(&asset["last_seen"], now_ms)
            ),
        ),
        ("First seen", text(&asset["first_seen"])),
        ("OS", text(&asset["os"])),
        ("Kernel", text(&asset["kernel"])),
        ("Arch", text(&asset["arch"])),
        (
            "CPU",
            format!(
                "{} ({} cores, {} threads)",
                text(&asset["cpu_model"]),
                text(&asset["cpu_cores"]),
                text(&asset["cpu_threads"])
            ),
        ),
        ("Memory", bytes(&asset["memory_total_bytes"])),
        ("Vendor", text(&asset["vendor"])),
        ("Model", text(&asset["model"])),
        ("Serial", text(&asset["serial"])),
        ("IPs", text(&asset["ips"])),
        ("MACs", text(&asset["macs"])),
        ("Patches", patches(asset)),
        ("Reboot required", text(&patch["reboot_required"])),
        ("Running kernel", text(&patch["running_kernel"])),
        ("Packages", text(&asset["package_count"])),
        ("Tags", text(&asset["tags"])),
        ("Role", text(&asset["role"])),
        ("Criticality", text(&asset["criticality"])),
        ("Owner", text(&asset["owner"])),
        ("Location", text(&asset["location"])),
        ("Warranty end", text(&asset["warranty_end"])),
        ("Notes", text(&asset["notes"])),
        ("Agents", text(&agents)),
        ("Findings", findings),
    ])
}

pub fn agents(items: &[Value], now_ms: i64) -> String {
    let mut table = Table::new(&["ID", "HOST", "CONNECTED", "VERSION", "LAST SEEN"]);
    for agent in items {
        table.push(vec![
            text(&agent["id"]),
            text(&agent["hostname"]),
            text(&agent["connected"]),
            text(&agent["version"]),
            age(&agent["last_seen"], now_ms),
        ]);
    }
    if table.is_empty() {
        return nothing("agents");
    }
    table.render()
}

pub fn oncall(schedules: &[Value]) -> String {
    let mut table = Table::new(&["SCHEDULE", "NOW", "UNTIL", "NEXT", "FROM"]);
    for schedule in schedules {
        table.push(vec![
            text(&schedule["schedule"]),
            text(&schedule["now"]["person"]),
            text(&schedule["now"]["until"]),
            text(&schedule["next"]["person"]),
            text(&schedule["next"]["from"]),
        ]);
    }
    if table.is_empty() {
        return nothing("on-call schedules");
    }
    table.render()
}

pub fn maintenance(windows: &[Value]) -> String {
    let mut table = Table::new(&[
        "ID", "TARGETS", "STARTS", "ENDS", "ACTIVE", "CHANGE", "REASON",
    ]);
    for window in windows {
        table.push(vec![
            text(&window["id"]),
            targets(window),
            text(&window["starts_at"]),
            text(&window["ends_at"]),
            text(&window["active"]),
            text(&window["change"]),
            text(&window["reason"]),
        ]);
    }
    if table.is_empty() {
        return nothing("maintenance windows");
    }
    table.render()
}

fn targets(window: &Value) -> String {
    let tags = window["tags"].as_array().into_iter().flatten();
    let assets = window["assets"].as_array().into_iter().flatten();
    let targets: Vec<String> = tags
        .map(|tag| format!("tag:{}", text(tag)))
        .chain(assets.map(|asset| format!("asset:{}", text(asset))))
        .collect();
    if targets.is_empty() {
        "-".into()
    } else {
        targets.join(", ")
    }
}

pub fn maintenance_created(window: &Value) -> String {
    format!(
        "Created maintenance window {} for {} from {} to {}.\n",
        text(&window["id"]),
        targets(window),
        text(&window["starts_at"]),
        text(&window["ends_at"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_764_669_600_000; // 2025-12-02T10:00:00Z

    #[test]
    fn durations_are_compact() {
        for (ms, shown) in [
            (0, "0s"),
            (59_000, "59s"),
            (60_000, "1m"),
            (3_600_000, "1h"),
            (3_660_000, "1h1m"),
            (86_400_000, "1d"),
            (90_000_000, "1d1h"),
            (-5, "0s"),
        ] {
            assert_eq!(compact_duration(ms), shown, "{ms}");
        }
    }

    #[test]
    fn incident_rows_show_age_and_the_sla_that_applies() {
        let open = json!({
            "id": 7, "severity": "critical", "state": "open", "host": "web-1",
            "rule": "port-down", "opened_at": "2025-12-02T09:58:00Z",
            "ack_due_at": "2025-12-02T10:08:00Z", "resolve_due_at": "2025-12-02T10:58:00Z",
            "sla_breached": false, "summary": "Port down",
        });
        let mut acknowledged = open.clone();
        acknowledged["id"] = json!(8);
        acknowledged["state"] = json!("acknowledged");
        acknowledged["acknowledged_at"] = json!("2025-12-02T09:59:00Z");
        let mut breached = open.clone();
        breached["id"] = json!(9);
        breached["sla_breached"] = json!(true);
        let text = incidents(&[open, acknowledged, breached], NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID  SEVERITY  STATE"), "{text}");
        assert!(
            lines[1].contains(" 2m ") && lines[1].contains("ack in 8m"),
            "{text}"
        );
        assert!(lines[2].contains("resolve in 58m"), "{text}");
        assert!(lines[3].contains("breached"), "{text}");
        assert_eq!(incidents(&[], NOW), "No incidents.\n");
    }

    #[test]
    fn asset_rows_show_patches_and_missing_fields_as_dashes() {
        let text = assets(
            &[json!({"id": "a1", "hostname": "web-1", "status": "active",
                     "patch": {"pending": 3, "security": 1}, "tags": ["web"]})],
            NOW,
        );
        assert!(
            text.lines().nth(1).unwrap().contains("3 (1 security)"),
            "{text}"
        );
        assert!(text.contains("  -  "), "{text}");
    }
}

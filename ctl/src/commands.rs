//! Each subcommand: the request(s) it makes and what it prints. The JSON
//! printed with `--json` is the collector's own (lists: every page joined
//! into one array); the human text comes from [`views`](crate::views).

use serde_json::{Value, json};

use crate::cli::{Command, Maintenance, NewWindow};
use crate::client::ApiClient;
use crate::error::CtlError;
use crate::views;

/// What a command produced, in both forms.
#[derive(Debug)]
pub struct Output {
    pub json: Value,
    pub human: String,
}

fn filters<'a>(pairs: &'a [(&'a str, &'a Option<String>)]) -> Vec<(&'a str, &'a str)> {
    pairs
        .iter()
        .filter_map(|(name, value)| value.as_deref().map(|value| (*name, value)))
        .collect()
}

pub async fn execute(
    command: &Command,
    client: &ApiClient,
    now_ms: i64,
) -> Result<Output, CtlError> {
    Ok(match command {
        Command::Incidents {
            state,
            severity,
            agent,
            host,
        } => {
            let items = client
                .get_all(
                    &["incidents"],
                    &filters(&[
                        ("state", state),
                        ("severity", severity),
                        ("agent", agent),
                        ("host", host),
                    ]),
                )
                .await?;
            Output {
                human: views::incidents(&items, now_ms),
                json: Value::Array(items),
            }
        }
        Command::Incident { id } => {
            let incident = client.get(&["incidents", &id.to_string()]).await?;
            Output {
                human: views::incident(&incident, now_ms),
                json: incident,
            }
        }
        Command::Ack { id, note } => {
            let body = match note {
                Some(note) => json!({ "note": note }),
                None => json!({}),
            };
            let incident = client
                .post(&["incidents", &id.to_string(), "ack"], &body)
                .await?;
            Output {
                human: views::incident_line("Acknowledged", &incident),
                json: incident,
            }
        }
        Command::Resolve { id } => {
            let incident = client
                .post(&["incidents", &id.to_string(), "resolve"], &json!({}))
                .await?;
            Output {
                human: views::incident_line("Resolved", &incident),
                json: incident,
            }
        }
        Command::Note { id, text } => {
            if text.trim().is_empty() {
                return Err(CtlError::Usage("a note needs some text".into()));
            }
            let incident = client
                .post(
                    &["incidents", &id.to_string(), "notes"],
                    &json!({ "text": text }),
                )
                .await?;
            Output {
                human: views::incident_line("Noted on", &incident),
                json: incident,
            }
        }
        Command::Assets { status, tag, query } => {
            let items = client
                .get_all(
                    &["assets"],
                    &filters(&[("status", status), ("tag", tag), ("q", query)]),
                )
                .await?;
            Output {
                human: views::assets(&items, now_ms),
                json: Value::Array(items),
            }
        }
        Command::Asset { id } => {
            let asset = client.get(&["assets", id]).await?;
            Output {
                human: views::asset(&asset, now_ms),
                json: asset,
            }
        }
        Command::Agents => {
            let items = client.get_all(&["agents"], &[]).await?;
            Output {
                human: views::agents(&items, now_ms),
                json: Value::Array(items),
            }
        }
        Command::Oncall => {
            let schedules = client.get(&["oncall"]).await?;
            let list = schedules.as_array().cloned().unwrap_or_default();
            Output {
                human: views::oncall(&list),
                json: schedules,
            }
        }
        Command::Maintenance(Maintenance::Create(window)) => {
            let created = client.post(&["maintenance"], &window_body(window)).await?;
            Output {
                human: views::maintenance_created(&created),
                json: created,
            }
        }
        Command::Maintenance(Maintenance::List) => {
            let items = client.get_all(&["maintenance"], &[]).await?;
            Output {
                human: views::maintenance(&items),
                json: Value::Array(items),
            }
        }
        Command::Maintenance(Maintenance::End { id }) => {
            let ended = client
                .post(&["maintenance", &id.to_string(), "end"], &json!({}))
                .await?;
            Output {
                human: format!("Ended maintenance window {id}.\n"),
                json: ended,
            }
        }
    })
}

/// The body of `POST /api/v1/maintenance` (see the collector's `api/oncall.rs`).
fn window_body(window: &NewWindow) -> Value {
    let mut body = serde_json::Map::new();
    let mut set = |key: &str, value: Value| {
        if !value.is_null() {
            body.insert(key.to_string(), value);
        }
    };
    set("tags", json!(window.tag));
    set("assets", json!(window.asset));
    set("starts_at", json!(window.start));
    set("ends_at", json!(window.until));
    set("duration", json!(window.duration));
    set("reason", json!(window.reason));
    set("change", json!(window.change));
    set("change_id", json!(window.change_id));
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_body_carries_only_what_was_given() {
        let window = NewWindow {
            tag: vec!["web".into()],
            asset: vec![],
            duration: Some("2h".into()),
            until: None,
            start: None,
            reason: Some("kernel patching".into()),
            change: Some("CHG-42".into()),
            change_id: None,
        };
        assert_eq!(
            window_body(&window),
            json!({"tags": ["web"], "assets": [], "duration": "2h",
                   "reason": "kernel patching", "change": "CHG-42"})
        );
    }
}

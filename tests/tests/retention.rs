//! End to end: an agent silent for longer than `[retention] silent_agents`
//! is forgotten: its row goes, and the incident its silence opened resolves,
//! so invented or decommissioned agent ids do not page forever.
#![allow(clippy::unwrap_used)]

use steward_tests::{Collector, DEADLINE, poll};

const CONFIG: &str = r#"
[retention]
every = "1s"
silent_agents = "6s"

[[rule]]
name = "host-silent"
kind = "absent"
metric = "agent.up"
for = "2s"
severity = "major"
"#;

#[test]
fn a_silent_agent_is_forgotten_and_its_absence_incident_resolves() {
    let collector = Collector::start_with(|text| text.push_str(CONFIG));
    let mut agent = collector.start_agent("gone", |_| {});
    let agent_id = poll(DEADLINE, "the agent to register", || {
        let agents = collector.get_json("/api/v1/agents");
        Some(agents.as_array()?.first()?["id"].as_str()?.to_string())
    });
    // Absence is noticed only for agents whose data the rules have seen.
    poll(DEADLINE, "a committed batch", || {
        let series = collector.get_json(&format!("/api/v1/series?agent={agent_id}"));
        (!series.as_array()?.is_empty()).then_some(())
    });
    agent.kill9();

    let incident = poll(DEADLINE, "the silence to open an incident", || {
        let open = collector.get_json("/api/v1/incidents?state=open");
        open.as_array()?
            .iter()
            .find(|incident| incident["rule"] == "host-silent")
            .cloned()
    });
    assert_eq!(incident["agent_id"], agent_id.as_str());

    let id = incident["id"].as_i64().unwrap();
    let resolved = poll(DEADLINE, "retention to forget the agent", || {
        let incident = collector.get_json(&format!("/api/v1/incidents/{id}"));
        (incident["state"] == "resolved").then_some(incident)
    });
    assert_eq!(resolved["resolve_reason"], "agent_forgotten", "{resolved}");
    let agents = collector.get_json("/api/v1/agents");
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .all(|agent| agent["id"] != agent_id.as_str()),
        "{agents}"
    );
}

//! End to end: asset records follow what agents report — created from
//! inventory, kept across a rename, marked stale when the agent goes quiet,
//! edited and retired by an operator.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use steward_tests::{Collector, DEADLINE, http_exchange, http_request, poll};

fn assets(collector: &Collector, query: &str) -> Vec<Value> {
    collector
        .get_json(&format!("/api/v1/assets{query}"))
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn asset_follows_inventory_survives_rename_goes_stale_and_is_edited() {
    let collector = Collector::start_with(|text| {
        text.push_str("\n[assets]\nstale_after = \"3s\"\nmissing_after = \"1h\"\n")
    });
    let mut agent =
        collector.start_agent("laptop", |text| text.push_str("hostname = \"desk-1\"\n"));

    let asset = poll(
        DEADLINE,
        "an asset created from the agent's inventory",
        || {
            assets(&collector, "")
                .into_iter()
                .find(|asset| asset["hostname"] == "desk-1")
        },
    );
    let id = asset["id"].as_str().unwrap().to_string();
    assert_eq!(asset["status"], "active");
    assert!(
        asset["os"].is_string() && asset["kernel"].is_string(),
        "{asset}"
    );
    assert!(asset["memory_total_bytes"].as_u64().unwrap() > 0);
    assert!(asset["last_seen"].is_string());
    assert!(asset["patch"].is_object());
    let patch = poll(DEADLINE, "the patch level on the asset", || {
        let asset = collector.get_json(&format!("/api/v1/assets/{id}"));
        (!asset["patch"]["pending"].is_null()).then(|| asset["patch"].clone())
    });
    assert!(patch["pending"].as_u64().is_some(), "{patch}");

    // Same agent (same state directory), new host name: same asset, one rename event.
    agent.kill9();
    let _agent = collector.start_agent("laptop", |text| text.push_str("hostname = \"desk-2\"\n"));
    poll(DEADLINE, "the asset to take the new host name", || {
        let asset = collector.get_json(&format!("/api/v1/assets/{id}"));
        (asset["hostname"] == "desk-2").then_some(())
    });
    assert_eq!(
        assets(&collector, "").len(),
        1,
        "a rename must not create a second asset"
    );
    let history = collector.get_json(&format!("/api/v1/assets/{id}/history"));
    let renames: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["field"] == "hostname" && event["source"] == "agent")
        .collect();
    assert_eq!(renames.len(), 1, "{history}");
    assert_eq!(renames[0]["before"], "desk-1");
    assert_eq!(renames[0]["after"], "desk-2");

    // Filters and export.
    assert_eq!(assets(&collector, "?q=desk-2").len(), 1);
    assert_eq!(assets(&collector, "?status=retired").len(), 0);
    let (status, csv) = collector.get("/api/v1/assets/export?format=csv");
    assert_eq!(status, 200);
    assert!(csv.starts_with("id,hostname,status"), "{csv}");
    assert!(csv.contains(&id));

    // Operator edit: needs the token, validates, records history.
    let token = collector.api_token();
    let path = format!("/api/v1/assets/{id}");
    let (status, _) = http_request(
        collector.http_addr,
        "PATCH",
        &path,
        None,
        Some(r#"{"owner":"bob"}"#),
    );
    assert_eq!(status, 401);
    let (status, body) = http_request(
        collector.http_addr,
        "PATCH",
        &path,
        Some(&token),
        Some(
            r#"{"owner":"bob","location":"HQ 2.14","tags":["laptop"],"warranty_end":"2027-13-01"}"#,
        ),
    );
    assert_eq!(status, 400, "an invalid date is refused: {body}");
    let (status, body) = http_request(
        collector.http_addr,
        "PATCH",
        &path,
        Some(&token),
        Some(
            r#"{"by":"helpdesk","owner":"bob","location":"HQ 2.14","tags":["laptop"],"warranty_end":"2027-12-31"}"#,
        ),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_request(
        collector.http_addr,
        "PATCH",
        &path,
        Some(&token),
        Some(r#"{"status":"disposed"}"#),
    );
    assert_eq!(
        status, 409,
        "disposing an active asset skips retirement: {body}"
    );

    // The agent stops: the asset goes stale after the configured period.
    drop(_agent);
    poll(DEADLINE, "the asset to go stale", || {
        let asset = collector.get_json(&format!("/api/v1/assets/{id}"));
        (asset["status"] == "stale").then_some(())
    });
    let history = collector.get_json(&format!("/api/v1/assets/{id}/history"));
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["field"] == "status"
                && event["after"] == "stale"
                && event["source"] == "system"),
        "{history}"
    );
    // Paged one event at a time, the history is the same, in the same order
    // (a sweep may have added a newer event at the front meanwhile).
    let (paged, pages) = collector.get_all_pages(&format!("/api/v1/assets/{id}/history"), 1);
    let unpaged = history.as_array().unwrap();
    assert!(paged.ends_with(unpaged), "{paged:?}\nvs\n{unpaged:?}");
    assert!(pages >= paged.len(), "one event a page");
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["field"] == "owner" && event["source"] == "operator"),
        "{history}"
    );
    let asset = collector.get_json(&format!("/api/v1/assets/{id}"));
    assert_eq!(asset["owner"], "bob");
    assert_eq!(asset["tags"], serde_json::json!(["laptop"]));
}

#[test]
fn reinstalled_agent_on_the_same_hardware_continues_the_asset_and_can_be_split_and_merged() {
    let collector = Collector::start();
    let _first = collector.start_agent("first", |text| text.push_str("hostname = \"srv-1\"\n"));
    let asset = poll(DEADLINE, "the first agent's asset", || {
        assets(&collector, "")
            .into_iter()
            .find(|asset| asset["hostname"] == "srv-1")
    });
    let id = asset["id"].as_str().unwrap().to_string();
    let first_agent = asset["agent_ids"][0].as_str().unwrap().to_string();

    // A second agent with a fresh identity on this same machine (same
    // machine-id and MACs): a reinstall, so the same asset continues.
    let _second = collector.start_agent("second", |text| text.push_str("hostname = \"srv-1b\"\n"));
    let asset = poll(DEADLINE, "the second agent to join the asset", || {
        let asset = collector.get_json(&format!("/api/v1/assets/{id}"));
        (asset["agent_ids"].as_array()?.len() == 2).then_some(asset)
    });
    assert_eq!(assets(&collector, "").len(), 1, "{asset}");
    let second_agent = asset["agent_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent.as_str().unwrap().to_string())
        .find(|agent| *agent != first_agent)
        .unwrap();
    let links = asset["agents"].as_array().unwrap();
    assert!(
        links
            .iter()
            .all(|link| link["confidence"].as_f64().unwrap() > 0.0),
        "{asset}"
    );

    // Split the second agent out, then merge it back: both recorded.
    let token = collector.api_token();
    let (status, body) = http_request(
        collector.http_addr,
        "POST",
        &format!("/api/v1/assets/{id}/split"),
        Some(&token),
        Some(&format!(
            r#"{{"agent_id": "{second_agent}", "by": "helpdesk"}}"#
        )),
    );
    assert_eq!(status, 200, "{body}");
    let all = assets(&collector, "");
    assert_eq!(all.len(), 2);
    // Paged by host name (what the console lists), one asset a page.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, head, body) = http_exchange(
            collector.http_addr,
            "GET",
            &format!("/api/v1/assets?order=hostname&limit=1{cursor}"),
            Some(&token),
            None,
        );
        assert_eq!(status, 200, "{body}");
        let page: Vec<Value> = serde_json::from_str(&body).unwrap();
        assert!(page.len() <= 1, "{body}");
        paged.extend(page);
        let next = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-next-cursor")
                .then(|| value.trim().to_string())
        });
        match next {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let key = |asset: &Value| {
        (
            asset["hostname"].as_str().unwrap_or("").to_string(),
            asset["id"].as_str().unwrap().to_string(),
        )
    };
    let keys: Vec<_> = paged.iter().map(key).collect();
    let mut sorted: Vec<_> = all.iter().map(key).collect();
    sorted.sort();
    assert_eq!(keys, sorted, "every asset once, by host name then id");
    let (status, _, body) = http_exchange(
        collector.http_addr,
        "GET",
        "/api/v1/assets?order=size",
        Some(&token),
        None,
    );
    assert_eq!(status, 400, "{body}");
    let other = all.iter().find(|asset| asset["id"] != id.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = http_request(
        collector.http_addr,
        "POST",
        &format!("/api/v1/assets/{id}/merge"),
        Some(&token),
        Some(&format!(r#"{{"from": "{other}", "by": "helpdesk"}}"#)),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(assets(&collector, "").len(), 1);
    let history = collector.get_json(&format!("/api/v1/assets/{id}/history"));
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"split") && kinds.contains(&"merged"),
        "{kinds:?}"
    );
    let (status, _) = http_request(
        collector.http_addr,
        "POST",
        &format!("/api/v1/assets/{id}/merge"),
        Some(&token),
        Some(&format!(r#"{{"from": "{id}"}}"#)),
    );
    assert_eq!(status, 409, "an asset cannot absorb itself");

    // A machine bought in 2010 is due for replacement: the compliance view says so.
    let (status, body) = http_request(
        collector.http_addr,
        "PATCH",
        &format!("/api/v1/assets/{id}"),
        Some(&token),
        Some(r#"{"purchase_date": "2010-01-01"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let due = collector.get_json("/api/v1/compliance?check=due_for_replacement");
    let ids: Vec<&str> = due
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()], "{due}");
    for item in collector.get_json("/api/v1/compliance").as_array().unwrap() {
        assert!(
            !item["findings"].as_array().unwrap().is_empty(),
            "only assets with findings: {item}"
        );
    }
}

#[test]
fn retiring_an_asset_resolves_and_silences_its_incidents_and_reactivating_restores_them() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Collector::start_with(|text| {
        text.push_str("\n[[rule]]\nname = \"port-down\"\nmetric = \"port.up\"\nop = \"<\"\nthreshold = 1\nseverity = \"major\"\n")
    });
    let _agent = collector.start_agent("old", |text| {
        text.push_str(&steward_tests::port_check(Some("old-1"), port))
    });
    collector.wait_port_up();
    let asset = poll(DEADLINE, "the asset", || {
        assets(&collector, "")
            .into_iter()
            .find(|asset| asset["hostname"] == "old-1")
    });
    let path = format!("/api/v1/assets/{}", asset["id"].as_str().unwrap());
    drop(listener);
    poll(DEADLINE, "the port-down incident", || {
        let open = collector.get_json("/api/v1/incidents?state=open");
        (open.as_array()?.len() == 1).then_some(())
    });

    let token = collector.api_token();
    let (status, body) = http_request(
        collector.http_addr,
        "PATCH",
        &path,
        Some(&token),
        Some(r#"{"status": "retired"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let resolved = poll(DEADLINE, "retirement to resolve the incident", || {
        let resolved = collector.get_json("/api/v1/incidents?state=resolved");
        resolved.as_array()?.first().cloned()
    });
    assert_eq!(resolved["resolve_reason"], "agent_forgotten");
    let committed = collector.counter("steward_batches_committed_total");
    poll(DEADLINE, "more failing checks while retired", || {
        (collector.counter("steward_batches_committed_total") >= committed + 3).then_some(())
    });
    assert!(
        collector
            .get_json("/api/v1/incidents?state=open")
            .as_array()
            .unwrap()
            .is_empty(),
        "a retired asset does not page"
    );

    // Back into service the way ITAM expects: retired -> in stock -> active.
    for status in ["in_stock", "active"] {
        let body = format!(r#"{{"status": "{status}"}}"#);
        let (code, response) = http_request(
            collector.http_addr,
            "PATCH",
            &path,
            Some(&token),
            Some(&body),
        );
        assert_eq!(code, 200, "{response}");
    }
    poll(
        DEADLINE,
        "a new incident once the asset is back in service",
        || {
            let open = collector.get_json("/api/v1/incidents?state=open");
            (open.as_array()?.len() == 1).then_some(())
        },
    );
}

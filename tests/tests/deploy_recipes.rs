//! The container and Kubernetes recipes under deploy/ hold together: every
//! YAML document parses, names and selectors match, the ports agree with the
//! collector's defaults and the Containerfile, every ConfigMap, Secret and
//! volume claim a pod uses exists or is documented, and the configs embedded
//! in the ConfigMaps load with the real config loaders. The collector is the
//! two-replica topology on a shared PostgreSQL database: 2 replicas, a rolling
//! update that keeps one ready, a PodDisruptionBudget and a preferred
//! anti-affinity selecting its pods, no volume claim, and `[storage]` reading
//! the database URL from the mounted Secret steward-postgres.
//!
//! No image is built and no cluster or database is contacted (none exists here).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every document of every manifest in `deploy/kubernetes/` (the `*.yaml`
/// files but `kustomization.yaml`), with its file name.
fn documents() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .filter(|path| !path.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let mut out = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{name} does not parse: {error}"));
            if !value.is_null() {
                out.push((name.clone(), value));
            }
        }
    }
    out
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path)?.as_str()
}

fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(*key))
}

fn seq<'a>(value: &'a Value, path: &[&str]) -> Vec<&'a Value> {
    at(value, path)
        .and_then(Value::as_sequence)
        .map(|items| items.iter().collect())
        .unwrap_or_default()
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_mapping)
        .map(|map| {
            map.iter()
                .map(|(key, value)| {
                    (
                        key.as_str().unwrap().to_string(),
                        value.as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The resources, keyed by (kind, name).
fn resources() -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (file, document) in documents() {
        let kind = str_at(&document, &["kind"])
            .unwrap_or_else(|| panic!("{file}: a document without kind"))
            .to_string();
        assert!(
            str_at(&document, &["apiVersion"]).is_some(),
            "{file}: {kind} without apiVersion"
        );
        let name = str_at(&document, &["metadata", "name"])
            .unwrap_or_else(|| panic!("{file}: {kind} without metadata.name"))
            .to_string();
        assert!(
            out.insert((kind.clone(), name.clone()), document).is_none(),
            "{kind} {name} defined twice"
        );
    }
    out
}

fn get<'a>(resources: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    resources
        .get(&(kind.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("{kind} {name} is missing from deploy/kubernetes/"))
}

/// `containerPort` by port name, over a pod template's containers.
fn container_ports(workload: &Value) -> BTreeMap<String, u64> {
    seq(workload, &["spec", "template", "spec", "containers"])
        .into_iter()
        .flat_map(|container| seq(container, &["ports"]))
        .map(|port| {
            (
                str_at(port, &["name"]).unwrap().to_string(),
                at(port, &["containerPort"]).unwrap().as_u64().unwrap(),
            )
        })
        .collect()
}

/// Ports in the Containerfile's `EXPOSE` lines.
fn exposed_ports() -> BTreeSet<u16> {
    let text = std::fs::read_to_string(repo().join("deploy/container/Containerfile")).unwrap();
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("EXPOSE "))
        .flat_map(|ports| ports.split_whitespace())
        .map(|port| port.trim_end_matches("/tcp").parse().unwrap())
        .collect()
}

/// The collector's default ports: those `deploy/collector.toml` listens on.
fn default_collector_ports() -> BTreeSet<u16> {
    let text = std::fs::read_to_string(repo().join("deploy/collector.toml")).unwrap();
    ["grpc_listen", "http_listen"]
        .iter()
        .map(|key| {
            let line = text
                .lines()
                .find(|line| line.trim_start().starts_with(key))
                .unwrap();
            let address = line.split('"').nth(1).unwrap();
            address.rsplit_once(':').unwrap().1.parse().unwrap()
        })
        .collect()
}

#[test]
fn every_document_parses_and_lives_in_the_steward_namespace() {
    let resources = resources();
    let kustomization =
        std::fs::read_to_string(repo().join("deploy/kubernetes/kustomization.yaml")).unwrap();
    let kustomization: Value = serde_yaml_ng::from_str(&kustomization).unwrap();
    assert_eq!(str_at(&kustomization, &["namespace"]), Some("steward"));
    let listed: BTreeSet<&str> = seq(&kustomization, &["resources"])
        .into_iter()
        .map(|item| item.as_str().unwrap())
        .collect();
    let files: BTreeSet<String> = documents().into_iter().map(|(file, _)| file).collect();
    assert_eq!(
        listed,
        files.iter().map(String::as_str).collect(),
        "kustomization.yaml lists every manifest"
    );
    get(&resources, "Namespace", "steward");
    for ((kind, name), document) in &resources {
        if kind == "Namespace" {
            continue;
        }
        let labels = string_map(at(document, &["metadata", "labels"]));
        assert_eq!(
            labels.get("app.kubernetes.io/part-of").map(String::as_str),
            Some("steward"),
            "{kind} {name}"
        );
    }
}

#[test]
fn selectors_match_their_pods_and_the_service_reaches_the_collector() {
    let resources = resources();
    for (kind, name) in [
        ("Deployment", "steward-collector"),
        ("DaemonSet", "steward-agent"),
    ] {
        let workload = get(&resources, kind, name);
        let selector = string_map(at(workload, &["spec", "selector", "matchLabels"]));
        let labels = string_map(at(workload, &["spec", "template", "metadata", "labels"]));
        assert!(!selector.is_empty(), "{kind} {name}");
        for (key, value) in &selector {
            assert_eq!(labels.get(key), Some(value), "{kind} {name} selects {key}");
        }
    }
    let deployment = get(&resources, "Deployment", "steward-collector");

    let service = get(&resources, "Service", "steward-collector");
    let selector = string_map(at(service, &["spec", "selector"]));
    let pod_labels = string_map(at(deployment, &["spec", "template", "metadata", "labels"]));
    for (key, value) in &selector {
        assert_eq!(pod_labels.get(key), Some(value), "Service selects {key}");
    }
    let ports = container_ports(deployment);
    for port in seq(service, &["spec", "ports"]) {
        let target = str_at(port, &["targetPort"]).unwrap();
        let container_port = ports.get(target).unwrap_or_else(|| {
            panic!("Service targets port {target}, which the pod does not name")
        });
        assert_eq!(
            at(port, &["port"]).unwrap().as_u64(),
            Some(*container_port),
            "Service port {target}"
        );
    }
    // Probes ask /healthz (no token) on the named HTTP port.
    let container = &seq(deployment, &["spec", "template", "spec", "containers"])[0];
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(
            str_at(container, &[probe, "httpGet", "path"]),
            Some("/healthz"),
            "{probe}"
        );
        assert_eq!(
            str_at(container, &[probe, "httpGet", "port"]),
            Some("http"),
            "{probe}"
        );
    }
}

/// Whether `selector` (a `matchLabels` map) selects pods labelled `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

#[test]
fn two_collectors_share_postgresql_and_survive_rollouts_and_drains() {
    let resources = resources();
    let deployment = get(&resources, "Deployment", "steward-collector");
    let pod_labels = string_map(at(deployment, &["spec", "template", "metadata", "labels"]));
    // Two collectors on the shared database.
    assert_eq!(
        at(deployment, &["spec", "replicas"]).and_then(Value::as_u64),
        Some(2)
    );
    // A rollout starts the new pod before it stops an old one.
    assert_eq!(
        str_at(deployment, &["spec", "strategy", "type"]),
        Some("RollingUpdate")
    );
    let rolling = at(deployment, &["spec", "strategy", "rollingUpdate"]).unwrap();
    assert_eq!(
        at(rolling, &["maxUnavailable"]).and_then(Value::as_u64),
        Some(0),
        "a rollout must keep both collectors until the new one is ready"
    );
    assert!(
        at(rolling, &["maxSurge"])
            .and_then(Value::as_u64)
            .is_some_and(|surge| surge >= 1),
        "maxUnavailable 0 needs a surge pod"
    );

    // Drains evict one collector at a time.
    let budgets: Vec<&Value> = resources
        .iter()
        .filter(|((kind, _), _)| kind == "PodDisruptionBudget")
        .map(|(_, budget)| budget)
        .filter(|budget| {
            selects(
                &string_map(at(budget, &["spec", "selector", "matchLabels"])),
                &pod_labels,
            )
        })
        .collect();
    assert_eq!(
        budgets.len(),
        1,
        "one PodDisruptionBudget selects the collector pods"
    );
    assert_eq!(str_at(budgets[0], &["apiVersion"]), Some("policy/v1"));
    assert_eq!(
        at(budgets[0], &["spec", "minAvailable"]).and_then(Value::as_u64),
        Some(1)
    );
    assert!(at(budgets[0], &["spec", "maxUnavailable"]).is_none());

    // The two pods preferably on different nodes (preferred: a one-node
    // cluster still runs both).
    let spec = at(deployment, &["spec", "template", "spec"]).unwrap();
    let terms = seq(
        spec,
        &[
            "affinity",
            "podAntiAffinity",
            "preferredDuringSchedulingIgnoredDuringExecution",
        ],
    );
    assert!(
        terms.iter().any(|term| {
            str_at(term, &["podAffinityTerm", "topologyKey"]) == Some("kubernetes.io/hostname")
                && selects(
                    &string_map(at(
                        term,
                        &["podAffinityTerm", "labelSelector", "matchLabels"],
                    )),
                    &pod_labels,
                )
        }),
        "no preferred anti-affinity of the collector pods per node: {terms:?}"
    );
    assert!(
        at(
            spec,
            &[
                "affinity",
                "podAntiAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]
        )
        .is_none(),
        "required anti-affinity would leave the second pod pending on one node"
    );

    // No local state: no claim at all, no volume but config and secrets,
    // and the root filesystem stays read-only.
    let claims: Vec<_> = resources
        .keys()
        .filter(|(kind, _)| kind == "PersistentVolumeClaim")
        .collect();
    assert!(claims.is_empty(), "{claims:?}");
    for volume in seq(spec, &["volumes"]) {
        assert!(
            at(volume, &["secret"]).is_some() || at(volume, &["configMap"]).is_some(),
            "the collector mounts more than config and secrets: {volume:?}"
        );
    }
    let container = &seq(spec, &["containers"])[0];
    assert_eq!(
        at(container, &["securityContext", "readOnlyRootFilesystem"]).and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        at(spec, &["securityContext", "runAsNonRoot"]).and_then(Value::as_bool),
        Some(true)
    );
}

#[test]
fn ports_agree_with_the_collector_defaults_and_the_containerfile() {
    let resources = resources();
    let defaults = default_collector_ports();
    assert_eq!(defaults, BTreeSet::from([7443, 7080]));
    assert_eq!(exposed_ports(), defaults, "Containerfile EXPOSE");
    let ports: BTreeSet<u16> = container_ports(get(&resources, "Deployment", "steward-collector"))
        .values()
        .map(|port| *port as u16)
        .collect();
    assert_eq!(ports, defaults, "the collector pod's containerPorts");
    let text = std::fs::read_to_string(repo().join("deploy/container/Containerfile")).unwrap();
    for needed in [
        "USER 10001",
        "VOLUME [\"/var/lib/steward\"]",
        "/healthz",
        "AS agent",
        "AS collector",
    ] {
        assert!(text.contains(needed), "Containerfile lacks {needed:?}");
    }
    // The collector stage is the last, so a plain build produces it.
    let last_stage = text
        .lines()
        .rfind(|line| line.starts_with("FROM "))
        .unwrap();
    assert!(last_stage.ends_with("AS collector"), "{last_stage}");
}

#[test]
fn every_config_map_secret_and_claim_a_pod_uses_exists_or_is_documented() {
    let resources = resources();
    let doc = std::fs::read_to_string(repo().join("docs/deploy-kubernetes.md")).unwrap();
    for (kind, name) in [
        ("Deployment", "steward-collector"),
        ("DaemonSet", "steward-agent"),
    ] {
        let workload = get(&resources, kind, name);
        let spec = at(workload, &["spec", "template", "spec"]).unwrap();
        let volumes: BTreeSet<&str> = seq(spec, &["volumes"])
            .into_iter()
            .map(|volume| str_at(volume, &["name"]).unwrap())
            .collect();
        for container in seq(spec, &["containers"]) {
            for mount in seq(container, &["volumeMounts"]) {
                let volume = str_at(mount, &["name"]).unwrap();
                assert!(
                    volumes.contains(volume),
                    "{name} mounts undefined volume {volume}"
                );
            }
        }
        for volume in seq(spec, &["volumes"]) {
            if let Some(map) = str_at(volume, &["configMap", "name"]) {
                let defined = resources.contains_key(&("ConfigMap".into(), map.into()));
                assert!(
                    defined || doc.contains(&format!("configmap {map}")),
                    "ConfigMap {map} is neither defined nor created in docs/deploy-kubernetes.md"
                );
            }
            if let Some(secret) = str_at(volume, &["secret", "secretName"]) {
                assert!(
                    doc.contains(&format!("secret generic {secret}")),
                    "Secret {secret} is not created in docs/deploy-kubernetes.md"
                );
            }
            if let Some(claim) = str_at(volume, &["persistentVolumeClaim", "claimName"]) {
                get(&resources, "PersistentVolumeClaim", claim);
            }
        }
    }
}

#[test]
fn the_agent_daemonset_sees_the_host_read_only_and_may_only_ping() {
    let resources = resources();
    let daemonset = get(&resources, "DaemonSet", "steward-agent");
    let spec = at(daemonset, &["spec", "template", "spec"]).unwrap();
    assert_eq!(at(spec, &["hostPID"]).and_then(Value::as_bool), Some(true));
    assert_eq!(
        at(spec, &["hostNetwork"]).and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        str_at(spec, &["dnsPolicy"]),
        Some("ClusterFirstWithHostNet")
    );
    let container = &seq(spec, &["containers"])[0];
    let security = at(container, &["securityContext"]).unwrap();
    let added: Vec<&str> = seq(security, &["capabilities", "add"])
        .into_iter()
        .map(|cap| cap.as_str().unwrap())
        .collect();
    assert_eq!(added, ["NET_RAW"]);
    let dropped: Vec<&str> = seq(security, &["capabilities", "drop"])
        .into_iter()
        .map(|cap| cap.as_str().unwrap())
        .collect();
    assert_eq!(dropped, ["ALL"]);
    assert_eq!(
        at(security, &["allowPrivilegeEscalation"]).and_then(Value::as_bool),
        Some(false)
    );
    let host_volumes: BTreeSet<&str> = seq(spec, &["volumes"])
        .into_iter()
        .filter(|volume| at(volume, &["hostPath"]).is_some())
        .map(|volume| str_at(volume, &["name"]).unwrap())
        .collect();
    assert!(host_volumes.contains("host-root"), "{host_volumes:?}");
    for mount in seq(container, &["volumeMounts"]) {
        let volume = str_at(mount, &["name"]).unwrap();
        // Only the agent's own state directory on the node is writable.
        if host_volumes.contains(volume) && volume != "state" {
            assert_eq!(
                at(mount, &["readOnly"]).and_then(Value::as_bool),
                Some(true),
                "host mount {volume} must be read-only"
            );
        }
    }
}

/// The text of `key` in ConfigMap `name`.
fn config_map_entry(
    resources: &BTreeMap<(String, String), Value>,
    name: &str,
    key: &str,
) -> String {
    str_at(get(resources, "ConfigMap", name), &["data", key])
        .unwrap_or_else(|| panic!("ConfigMap {name} has no {key}"))
        .to_string()
}

/// What a stand-in file holds unless given: passes as a token.
const STAND_IN: &str = "0123456789abcdef0123456789\n";

/// Writes `text` into a temp dir, its absolute paths pointing there, beside
/// stand-ins (path, content) for the files it names.
fn stage(name: &str, text: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let text = text
        .replace("/etc/steward/", &format!("{root}/"))
        .replace("/var/lib/", &format!("{root}/"));
    for (file, content) in files {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A stand-in for the URL in Secret steward-postgres (no server is contacted).
const POSTGRES_URL: &str = "postgres://steward:s3cret@db.example.net:5432/steward?sslmode=require";

#[test]
fn the_embedded_configs_load_and_agree_on_the_collector_address() {
    let resources = resources();
    let collector_toml = config_map_entry(&resources, "steward-collector", "collector.toml");
    let (_dir, path) = stage(
        "collector.toml",
        &collector_toml,
        &[
            ("tls/server.pem", STAND_IN),
            ("tls/server.key", STAND_IN),
            ("tls/ca.pem", STAND_IN),
            ("tls/ca.key", STAND_IN),
            ("agent-token/token", STAND_IN),
            ("postgres/url", &format!("{POSTGRES_URL}\n")),
        ],
    );
    let collector = steward_collector::CollectorConfig::load(&path)
        .unwrap_or_else(|error| panic!("collector.toml in the ConfigMap: {error}"));
    let ports = BTreeSet::from([collector.grpc_listen.port(), collector.http_listen.port()]);
    assert_eq!(ports, default_collector_ports());
    assert!(
        collector.http_tls.is_some(),
        "the API is served over HTTPS in the cluster"
    );

    // The shared database, its URL read from where Secret steward-postgres
    // (key url) is mounted; no SQLite file.
    let postgres = collector
        .postgres
        .as_ref()
        .expect("[storage] names PostgreSQL, not SQLite");
    assert_eq!(
        postgres.url, POSTGRES_URL,
        "the URL read from postgres_file"
    );
    assert_eq!(collector.sqlite_path, PathBuf::new());
    // `instance` unset: the hostname, in a pod its (unique) name.
    assert!(
        !collector_toml
            .lines()
            .any(|line| line.trim_start().starts_with("instance")),
        "a fixed instance would be shared by both replicas"
    );
    let deployment = get(&resources, "Deployment", "steward-collector");
    let spec = at(deployment, &["spec", "template", "spec"]).unwrap();
    let volume = seq(spec, &["volumes"])
        .into_iter()
        .find(|volume| str_at(volume, &["secret", "secretName"]) == Some("steward-postgres"))
        .expect("no volume of Secret steward-postgres");
    // The whole Secret, so key url (and an optional ca.pem) keep their names.
    assert!(at(volume, &["secret", "items"]).is_none());
    let volume_name = str_at(volume, &["name"]).unwrap();
    let container = &seq(spec, &["containers"])[0];
    let mount = seq(container, &["volumeMounts"])
        .into_iter()
        .find(|mount| str_at(mount, &["name"]) == Some(volume_name))
        .and_then(|mount| str_at(mount, &["mountPath"]))
        .expect("Secret steward-postgres is not mounted");
    assert!(
        collector_toml.contains(&format!("postgres_file = \"{mount}/url\"")),
        "postgres_file does not name key url of the Secret mounted at {mount}"
    );
    let doc = std::fs::read_to_string(repo().join("docs/deploy-kubernetes.md")).unwrap();
    assert!(
        doc.contains("create secret generic steward-postgres \\\n  --from-file=url="),
        "docs/deploy-kubernetes.md does not create key url of Secret steward-postgres"
    );

    let agent_toml = config_map_entry(&resources, "steward-agent", "agent.toml");
    let (_dir, path) = stage(
        "agent.toml",
        &agent_toml,
        &[("ca/ca.pem", STAND_IN), ("agent-token/token", STAND_IN)],
    );
    let agent = steward_agent::AgentConfig::load(&path)
        .unwrap_or_else(|error| panic!("agent.toml in the ConfigMap: {error}"));
    let service = get(&resources, "Service", "steward-collector");
    let grpc_port = seq(service, &["spec", "ports"])
        .into_iter()
        .find(|port| str_at(port, &["name"]) == Some("grpc"))
        .and_then(|port| at(port, &["port"])?.as_u64())
        .unwrap();
    let urls: Vec<&str> = agent
        .collectors
        .iter()
        .map(|collector| collector.url.as_str())
        .collect();
    assert_eq!(
        urls,
        [format!("https://steward-collector.steward.svc:{grpc_port}")],
        "agents reach the collector through its Service"
    );
}

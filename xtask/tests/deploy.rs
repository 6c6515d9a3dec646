//! Static checks of the deployment files, since no cluster or Docker
//! daemon runs where the tests do: every manifest in `deploy/kubernetes/`
//! parses and names itself; the probes, port and variables the Deployment
//! and the Dockerfile use are those the binary serves and reads; the shutdown
//! fits in the pod's grace period; the policy shipped is the stock one.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// Every manifest, by file name.
fn manifests() -> Vec<(String, Yaml)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
        for doc in docs {
            found.push((name.clone(), doc));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn kind<'a>(manifests: &'a [(String, Yaml)], kind: &str) -> &'a Yaml {
    manifests
        .iter()
        .find(|(_, doc)| doc["kind"].as_str() == Some(kind))
        .map(|(_, doc)| doc)
        .unwrap_or_else(|| panic!("no {kind} manifest"))
}

/// The routes the router serves, as written in `host/src/http/mod.rs`.
fn served(route: &str) -> bool {
    read("host/src/http/mod.rs").contains(&format!(".route(\"{route}\""))
}

/// Whether the binary reads the environment variable `name`.
fn read_by_binary(name: &str) -> bool {
    read("host/src/config.rs").contains(&format!("env = \"{name}\""))
}

#[test]
fn every_manifest_parses_and_names_itself() {
    let manifests = manifests();
    assert!(manifests.len() >= 6, "{} manifests", manifests.len());
    for (file, doc) in &manifests {
        for key in ["apiVersion", "kind"] {
            assert!(doc[key].as_str().is_some(), "{file}: no {key}");
        }
        assert!(
            doc["metadata"]["name"].as_str().is_some(),
            "{file}: no metadata.name"
        );
    }
}

#[test]
fn the_deployment_probes_and_ports_are_what_the_binary_serves() {
    let manifests = manifests();
    let deployment = kind(&manifests, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = pod["containers"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some("wasmgate"))
        .expect("a container named wasmgate");

    let port = &container["ports"][0];
    assert_eq!(port["name"].as_str(), Some("http"));
    let port_number = port["containerPort"].as_i64().unwrap();
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ] {
        let http = &container[probe]["httpGet"];
        assert_eq!(http["path"].as_str(), Some(path), "{probe}");
        assert_eq!(http["port"].as_str(), Some("http"), "{probe}");
        assert!(served(path), "{path} is not a route of the binary");
    }

    // Every variable the container sets is one the binary (or a library
    // it uses) reads, and the listener is on the named port.
    let mut shutdown_grace = 0;
    for var in container["env"].as_vec().unwrap() {
        let name = var["name"].as_str().unwrap();
        let known = read_by_binary(name)
            || [
                "DATABASE_URL",
                "BETTER_AUTH_SECRET",
                "OPENAI_API_KEY",
                "RUST_LOG",
            ]
            .contains(&name);
        assert!(known, "the binary does not read {name}");
        let value = var["value"].as_str().unwrap_or_default();
        if name == "WASMGATE_LISTEN" {
            assert_eq!(value, format!("0.0.0.0:{port_number}"));
        }
        if name == "WASMGATE_SHUTDOWN_GRACE_SECS" {
            shutdown_grace = value.parse::<i64>().unwrap();
        }
    }
    assert!(shutdown_grace > 0, "the shutdown grace is set");
    let pre_stop: i64 = container["lifecycle"]["preStop"]["exec"]["command"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(
        grace > pre_stop + shutdown_grace,
        "the pod's {grace} s must cover the {pre_stop} s pause and the {shutdown_grace} s drain"
    );

    // The Dockerfile's listener is the same port.
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains(&format!("WASMGATE_LISTEN=0.0.0.0:{port_number}")));
    assert!(dockerfile.contains(&format!("EXPOSE {port_number}")));
}

#[test]
fn the_service_budget_and_autoscaler_point_at_the_deployment() {
    let manifests = manifests();
    let deployment = kind(&manifests, "Deployment");
    let name = deployment["metadata"]["name"].as_str().unwrap();
    let labels = &deployment["spec"]["selector"]["matchLabels"];

    let service = kind(&manifests, "Service");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"].as_str(),
        Some("http")
    );
    let budget = kind(&manifests, "PodDisruptionBudget");
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], labels);
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap();
    assert!(budget["spec"]["minAvailable"].as_i64().unwrap() < replicas);
    let autoscaler = kind(&manifests, "HorizontalPodAutoscaler");
    assert_eq!(
        autoscaler["spec"]["scaleTargetRef"]["name"].as_str(),
        Some(name)
    );
    assert_eq!(
        autoscaler["spec"]["scaleTargetRef"]["kind"].as_str(),
        Some("Deployment")
    );
}

#[test]
fn the_policy_shipped_is_the_stock_policy() {
    let manifests = manifests();
    let config = kind(&manifests, "ConfigMap");
    assert_eq!(
        config["data"]["policy.toml"].as_str(),
        Some(read("plugins/policy.toml").as_str())
    );
}

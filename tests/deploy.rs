//! The Grafana dashboards of deploy/ parse, use the provisioned datasource,
//! and query only metrics that exist: the service's own (its /metrics text)
//! and Envoy's (deploy/grafana/envoy-metrics.txt, from a real Envoy's scrape).
//! A renamed metric breaks this test, not a dashboard nobody looks at.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use accounts::metrics::Metrics;
use serde_json::Value;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
const DATASOURCE_UID: &str = "prometheus";
/// Series Prometheus makes itself for every target.
const PROMETHEUS_BUILTIN: &[&str] = &["up"];

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = Path::new(DEPLOY).join("grafana/dashboards");
    let mut found: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .expect("deploy/grafana/dashboards exists")
        .map(|entry| entry.expect("readable directory").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable dashboard");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            (path, json)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(found.len() >= 2, "the service and the Envoy dashboards");
    found
}

/// Every metric family the service can export, as its /metrics text names
/// them. Label-vector families appear only once they have a child, so each
/// gets one here.
fn service_metrics() -> BTreeSet<String> {
    let metrics = Metrics::new();
    metrics
        .http_requests
        .with_label_values(&["/ping", "GET", "200"])
        .inc();
    metrics
        .http_request_duration
        .with_label_values(&["/ping", "GET"])
        .observe(0.001);
    metrics.pool_connections.with_label_values(&["idle"]).set(1);
    metrics
        .engine
        .commands
        .with_label_values(&["deposit", "applied"])
        .inc();
    let mut names = BTreeSet::new();
    for line in metrics.encode().lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.to_owned());
        }
    }
    names
}

fn envoy_metrics() -> BTreeSet<String> {
    let path = Path::new(DEPLOY).join("grafana/envoy-metrics.txt");
    std::fs::read_to_string(path)
        .expect("deploy/grafana/envoy-metrics.txt exists")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The grouping modifiers: followed by a label list, not by `(`.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// The other keywords, and the aggregation operators (which may be followed
/// by a grouping clause rather than `(`).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// The metric names a PromQL expression reads: identifiers that are not
/// functions (followed by `(`), keywords or aggregations, label names (inside `{…}` or a
/// grouping clause), strings, numbers, durations or Grafana `$variables`.
fn metric_names(expression: &str) -> Vec<String> {
    let characters: Vec<char> = expression.chars().collect();
    let mut names = Vec::new();
    let mut index = 0;
    let mut skip_group = false;
    while index < characters.len() {
        let character = characters[index];
        match character {
            '"' | '\'' | '`' => {
                index += 1;
                while index < characters.len() && characters[index] != character {
                    index += if characters[index] == '\\' { 2 } else { 1 };
                }
                index += 1;
            }
            '{' | '[' => {
                let close = if character == '{' { '}' } else { ']' };
                while index < characters.len() && characters[index] != close {
                    index += 1;
                }
                index += 1;
            }
            '(' if skip_group => {
                while index < characters.len() && characters[index] != ')' {
                    index += 1;
                }
                skip_group = false;
                index += 1;
            }
            '$' | '0'..='9' | '.' => {
                index += 1;
                while index < characters.len()
                    && (characters[index].is_ascii_alphanumeric() || characters[index] == '_')
                {
                    index += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = index;
                while index < characters.len()
                    && (characters[index].is_ascii_alphanumeric()
                        || characters[index] == '_'
                        || characters[index] == ':')
                {
                    index += 1;
                }
                let word: String = characters[start..index].iter().collect();
                let next = characters[index..].iter().find(|c| !c.is_whitespace());
                if GROUPING.contains(&word.as_str()) {
                    skip_group = true;
                } else if !KEYWORDS.contains(&word.as_str()) && next != Some(&'(') {
                    names.push(word);
                }
            }
            _ => index += 1,
        }
    }
    names
}

#[test]
fn the_expression_scanner_finds_metrics_only() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le, route) (rate(accounts_http_request_duration_seconds_bucket{route=~"/api.*", status!="5xx"}[$__rate_interval])))"#
        ),
        ["accounts_http_request_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names("sum(rate(a_total[5m])) / on (instance) group_left b_total offset 1m"),
        ["a_total", "b_total"]
    );
}

#[test]
fn dashboards_use_the_provisioned_datasource_and_existing_metrics() {
    let datasources = std::fs::read_to_string(
        Path::new(DEPLOY).join("grafana/provisioning/datasources/prometheus.yml"),
    )
    .expect("the datasource is provisioned");
    assert!(
        datasources
            .lines()
            .any(|line| line.trim() == format!("uid: {DATASOURCE_UID}")),
        "the provisioned datasource has uid {DATASOURCE_UID}"
    );
    let known: BTreeSet<String> = service_metrics()
        .into_iter()
        .chain(envoy_metrics())
        .chain(PROMETHEUS_BUILTIN.iter().map(|s| s.to_string()))
        .collect();
    let mut used = BTreeSet::new();
    for (path, dashboard) in dashboards() {
        let name = path.display();
        assert!(dashboard["uid"].is_string(), "{name}: a uid");
        assert!(dashboard["title"].is_string(), "{name}: a title");
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{name}: panels");
        let mut ids = BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().expect("every panel has a title");
            assert!(ids.insert(panel["id"].as_u64()), "{name}: panel ids unique");
            assert_eq!(
                panel["datasource"]["uid"], DATASOURCE_UID,
                "{name}: {title}: datasource"
            );
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}: {title}: queries");
            for target in targets {
                let expression = target["expr"].as_str().expect("a PromQL expr");
                let metrics = metric_names(expression);
                assert!(!metrics.is_empty(), "{name}: {title}: {expression}");
                for metric in metrics {
                    assert!(
                        known.contains(&metric),
                        "{name}: panel {title:?} queries {metric}, which neither the service nor Envoy exports"
                    );
                    used.insert(metric);
                }
            }
        }
    }
    // What the issue asks the dashboards to show.
    for required in [
        "accounts_http_requests_total",
        "accounts_http_request_duration_seconds_bucket",
        "accounts_conflicts_total",
        "accounts_retries_total",
        "accounts_events_appended_total",
        "accounts_db_pool_connections",
        "envoy_cluster_membership_healthy",
        "envoy_cluster_upstream_rq_retry",
        "envoy_http_downstream_rq_xx",
    ] {
        assert!(used.contains(required), "no panel shows {required}");
    }
}

fn deploy_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(DEPLOY).join(path))
        .unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// Service names of the compose file: the two-space-indented keys under
/// `services:` (the schema itself is checked by `just check-deploy`).
fn compose_services(compose: &str) -> BTreeSet<String> {
    compose
        .lines()
        .skip_while(|line| *line != "services:")
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with(' '))
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with([' ', '#']))
        .filter_map(|line| line.split_once(':'))
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// The pieces of the compose topology name each other: files it mounts
/// exist, Prometheus scrapes and Envoy routes to services it defines, and
/// Grafana's provisioning reads where the dashboards are mounted.
#[test]
fn the_compose_topology_is_wired_together() {
    let compose = deploy_file("docker-compose.yml");
    let services = compose_services(&compose);
    for service in [
        "postgres",
        "accounts-1",
        "accounts-2",
        "envoy",
        "prometheus",
        "grafana",
    ] {
        assert!(
            services.contains(service),
            "compose defines {service}: {services:?}"
        );
    }
    for line in compose.lines() {
        if let Some(mount) = line.trim().strip_prefix("- ./") {
            let source = mount.split(':').next().expect("source:target");
            assert!(
                Path::new(DEPLOY).join(source).exists(),
                "compose mounts deploy/{source}, which does not exist"
            );
        }
    }
    let prometheus = deploy_file("prometheus/prometheus.yml");
    let targets: Vec<&str> = prometheus
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- targets: "))
        .flat_map(|list| list.trim_matches(['[', ']']).split(','))
        .map(|target| target.trim().trim_matches('"'))
        .collect();
    for expected in ["accounts-1:8080", "accounts-2:8080", "envoy:9901"] {
        assert!(
            targets.contains(&expected),
            "Prometheus scrapes {expected}: {targets:?}"
        );
    }
    for target in targets {
        let host = target.split(':').next().expect("host:port");
        assert!(
            services.contains(host),
            "Prometheus scrapes {host}, not a compose service"
        );
    }
    let envoy = deploy_file("envoy/envoy.yaml");
    let upstreams: Vec<&str> = envoy
        .lines()
        .filter_map(|line| line.split("socket_address: { address: ").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .filter(|host| *host != "0.0.0.0")
        .collect();
    assert_eq!(upstreams, ["accounts-1", "accounts-2"], "Envoy's endpoints");
    let provisioning = deploy_file("grafana/provisioning/dashboards/dashboards.yml");
    assert!(provisioning.contains("path: /var/lib/grafana/dashboards"));
    assert!(compose.contains("./grafana/dashboards:/var/lib/grafana/dashboards:ro"));
}

/// The highly available compose topology names only what exists: the files
/// it mounts and builds from, and Prometheus's, HAProxy's and Patroni's
/// targets are services it defines (Patroni and HAProxy on every node).
#[test]
fn the_ha_compose_topology_is_wired_together() {
    let compose = deploy_file("docker-compose.ha.yml");
    let services = compose_services(&compose);
    let nodes = ["patroni-1", "patroni-2", "patroni-3"];
    let members = ["etcd-1", "etcd-2", "etcd-3"];
    for service in nodes.iter().chain(&members).chain(&[
        "haproxy",
        "accounts-1",
        "accounts-2",
        "envoy",
        "prometheus",
    ]) {
        assert!(
            services.contains(*service),
            "the HA compose defines {service}: {services:?}"
        );
    }
    for line in compose.lines() {
        let line = line.trim();
        if let Some(mount) = line.strip_prefix("- ./") {
            let source = mount.split(':').next().expect("source:target");
            assert!(
                Path::new(DEPLOY).join(source).exists(),
                "the HA compose mounts deploy/{source}, which does not exist"
            );
        }
        if let Some(dockerfile) = line.strip_prefix("dockerfile: ") {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dockerfile);
            assert!(path.exists(), "the HA compose builds from {dockerfile}");
        }
    }
    let host = |target: &str| target.split(':').next().expect("host:port").to_owned();
    let prometheus = deploy_file("ha/prometheus.yml");
    let scraped: BTreeSet<String> = prometheus
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- targets: "))
        .flat_map(|list| list.trim_matches(['[', ']']).split(','))
        .map(|target| host(target.trim().trim_matches('"')))
        .collect();
    for scraped_host in &scraped {
        assert!(
            services.contains(scraped_host),
            "Prometheus scrapes {scraped_host}"
        );
    }
    for expected in nodes.iter().chain(&["haproxy", "accounts-1", "envoy"]) {
        assert!(scraped.contains(*expected), "Prometheus scrapes {expected}");
    }
    let haproxy = deploy_file("ha/haproxy.cfg");
    let backends: Vec<String> = haproxy
        .lines()
        .filter_map(|line| line.trim().strip_prefix("server "))
        .map(|rest| host(rest.split_whitespace().nth(1).expect("server name address")))
        .collect();
    assert_eq!(backends, nodes, "HAProxy sends to every Patroni node");
    assert!(haproxy.contains("option httpchk GET /primary"));
    assert!(haproxy.contains("on-marked-down shutdown-sessions"));
    let patroni = deploy_file("ha/patroni.yml");
    let etcd_hosts = patroni
        .lines()
        .skip_while(|line| *line != "etcd3:")
        .find_map(|line| line.trim().strip_prefix("hosts: "))
        .expect("Patroni's etcd3 hosts");
    let etcd_hosts: Vec<String> = etcd_hosts.split(',').map(host).collect();
    assert_eq!(etcd_hosts, members, "Patroni reaches every etcd member");
    assert!(patroni.contains("synchronous_mode: true"));
}

/// The end-to-end tests run the deploy kit's Envoy policy itself: rendering
/// it for loopback moves every compose address (the render panics on one it
/// does not find) and leaves the rest of the file as it is.
#[test]
fn the_e2e_envoy_config_is_the_deploy_one_on_loopback() {
    use testkit::envoy::{self, LoopbackPorts};
    let ports = LoopbackPorts {
        admin: 19901,
        listen: 18080,
        upstreams: [18081, 18082],
    };
    let rendered = envoy::render_for_loopback(envoy::DEPLOY_CONFIG, ports);
    for compose in [
        "0.0.0.0",
        "accounts-1",
        "accounts-2",
        "value: 9901 ",
        "value: 8080 ",
    ] {
        assert!(!rendered.contains(compose), "{compose} left in {rendered}");
    }
    for port in [19901, 18080, 18081, 18082] {
        let address = format!("address: 127.0.0.1, port_value: {port} }}");
        assert_eq!(rendered.matches(&address).count(), 1, "{address}");
    }
    let changed = envoy::DEPLOY_CONFIG
        .lines()
        .zip(rendered.lines())
        .filter(|(deploy, test)| deploy != test)
        .count();
    assert_eq!(changed, 4, "only the four address lines differ");
}

/// The shipped binary does not carry the simulation's `--cfg tokio_unstable`
/// (`.cargo/config.toml`): every build of profile dist sets RUSTFLAGS empty,
/// which replaces the configured flags.
#[test]
fn the_shipped_build_clears_tokio_unstable() {
    let root = env!("CARGO_MANIFEST_DIR");
    let config = std::fs::read_to_string(format!("{root}/.cargo/config.toml")).unwrap();
    assert!(
        config.contains("tokio_unstable"),
        "the development builds keep it"
    );
    for (file, build) in [
        (
            "deploy/Dockerfile",
            "RUSTFLAGS='' cargo build --profile dist",
        ),
        ("bench/bench.py", "\"RUSTFLAGS\": \"\""),
        ("README.md", "RUSTFLAGS='' cargo build --profile dist"),
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        assert!(
            text.contains(build),
            "{file} builds profile dist with `{build}`"
        );
        let dist_builds =
            text.matches("--profile\", \"dist").count() + text.matches("--profile dist").count();
        assert_eq!(dist_builds, 1, "{file}: one build of profile dist");
    }
}

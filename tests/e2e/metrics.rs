//! What operators see: the real Prometheus (Debian's) scrapes a controller
//! Pod of the local cluster during an issuance and the series come back
//! through its HTTP API; `promtool` checks the exposition and the chart's
//! alert rules (unit-tested on synthetic series); every dashboard and
//! alert expression evaluates on that Prometheus; the probes answer.

use crate::common;

use std::net::{IpAddr, SocketAddr};

use certwright_testcluster::deploy;
use certwright_testcluster::process::Process;
use common::env::Env;
use common::{http_exchange, tool};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_charts_alert_rules_pass_promtool_and_their_unit_tests() {
    let check = std::process::Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(repo("charts/certwright/files/prometheus-rules.yaml"))
        .output()
        .expect("promtool");
    let said = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(
        check.status.success() && said.contains("9 rules found"),
        "{said}"
    );
    let test = std::process::Command::new(tool("promtool"))
        .args(["test", "rules", "prometheus-rules.test.yaml"])
        .current_dir(repo("tests/fixtures"))
        .output()
        .expect("promtool");
    let said =
        String::from_utf8_lossy(&test.stdout).into_owned() + &String::from_utf8_lossy(&test.stderr);
    assert!(test.status.success() && said.contains("SUCCESS"), "{said}");
}

/// Every PromQL expression of the dashboard and the alert rules.
fn expressions() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("charts/certwright/files/dashboard.json"))
            .expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut out: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    let rules: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo("charts/certwright/files/prometheus-rules.yaml"))
            .expect("rules"),
    )
    .expect("the rules are YAML");
    for group in rules["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            out.extend(rule["expr"].as_str().map(str::to_string));
        }
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus in the node's network namespace, on its loopback.
struct Prom {
    node: std::sync::Arc<certwright_testcluster::netns::Netns>,
    addr: SocketAddr,
    _process: Process,
    dir: std::path::PathBuf,
}

impl Prom {
    fn start(env: &Env, target: SocketAddr) -> Prom {
        let dir =
            std::env::temp_dir().join(format!("certwright-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: certwright\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("config");
        let addr: SocketAddr = "127.0.0.1:19090".parse().expect("addr");
        let mut command = std::process::Command::new(tool("prometheus"));
        command
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        let node = env.cluster.node().clone();
        node.enter(&mut command);
        let log = env.cluster.log_dir().join("prometheus.log");
        let process = Process::spawn("prometheus", command, &log).expect("start prometheus");
        Prom {
            node,
            addr,
            _process: process,
            dir,
        }
    }

    /// The result of an instant query, or Prometheus' error.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let stream = self
            .node
            .connect(self.addr)
            .await
            .map_err(|e| format!("connecting to prometheus: {e}"))?;
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (_, body) = http_exchange(stream, "localhost", &path).await?;
        let answer: Value =
            serde_json::from_str(&body).map_err(|e| format!("not JSON ({e}): {body}"))?;
        if answer["status"] != "success" {
            return Err(format!("{expr}: {}", answer["error"]));
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The single value of `expr`, once it has one.
    async fn value(&self, env: &Env, expr: &str) -> f64 {
        env.wait(&format!("prometheus to answer {expr}"), 60, || async {
            let result = self.query(expr).await.ok()?;
            let v = result.first()?["value"][1].as_str()?.parse::<f64>().ok()?;
            Some(v)
        })
        .await
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The names promtool's linter flags that keep cert-manager's names (its
/// counters have no `_total`, its clock gauge says `gauge`), which existing
/// dashboards and alerts use.
const CERT_MANAGER_NAMES: [&str; 4] = [
    "certmanager_clock_time_seconds_gauge",
    "certmanager_http_acme_client_request_count",
    "certmanager_controller_sync_call_count",
    "certmanager_controller_sync_error_count",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_controller_pod_through_an_issuance() {
    let env = Env::start(|_| {}, &[]).await;
    let pod = env
        .wait("the controller Pod's IP", 60, || async {
            let pods = Api::<Pod>::namespaced(env.client.clone(), deploy::NAMESPACE)
                .list(&ListParams::default().labels(deploy::APP_LABEL))
                .await
                .ok()?;
            let ip = pods.items.first()?.status.as_ref()?.pod_ip.clone()?;
            ip.parse::<IpAddr>().ok()
        })
        .await;
    let metrics = SocketAddr::new(pod, 9402);
    let prom = Prom::start(&env, metrics);
    assert_eq!(prom.value(&env, r#"up{job="certwright"}"#).await, 1.0);

    env.namespace("apps").await;
    env.certificate(
        "apps",
        "metrics",
        json!({"secretName": "metrics-tls", "dnsNames": ["metrics.example.test"]}),
    )
    .await;
    let cert = env.certificate_ready("apps", "metrics", 1).await;
    let not_after = cert
        .status
        .as_ref()
        .and_then(|s| s.not_after.as_ref())
        .expect("notAfter")
        .0
        .as_second() as f64;
    let ours = r#"name="metrics",namespace="apps",issuer_name="pebble",issuer_kind="ClusterIssuer",issuer_group="cert-manager.io""#;
    assert_eq!(
        prom.value(
            &env,
            &format!(r#"certmanager_certificate_ready_status{{{ours},condition="True"}} == 1"#)
        )
        .await,
        1.0
    );
    assert_eq!(
        prom.value(
            &env,
            &format!("certmanager_certificate_expiration_timestamp_seconds{{{ours}}} > 0")
        )
        .await,
        not_after
    );
    assert_eq!(
        prom.value(
            &env,
            &format!("certmanager_certificate_not_after_timestamp_seconds{{{ours}}} > 0")
        )
        .await,
        not_after
    );
    assert!(
        prom.value(
            &env,
            r#"certmanager_clusterissuer_ready_status{name="pebble",condition="True"}"#
        )
        .await
            == 1.0
    );
    assert!(
        prom.value(
            &env,
            r#"sum(certmanager_http_acme_client_request_count{action="new_order",status="201"})"#
        )
        .await
            >= 1.0
    );
    assert!(
        prom.value(
            &env,
            r#"sum(certmanager_controller_sync_call_count{controller="challenges"})"#
        )
        .await
            >= 1.0
    );
    for stage in certwright::metrics::STAGES {
        assert!(
            prom.value(
                &env,
                &format!(r#"certwright_stage_duration_seconds_count{{stage="{stage}"}} > 0"#)
            )
            .await
                >= 1.0,
            "stage {stage}"
        );
    }
    assert!(
        prom.value(
            &env,
            "certwright_certificate_time_to_ready_seconds_count > 0"
        )
        .await
            >= 1.0
    );
    assert!(
        prom.value(&env, r#"certwright_self_check_total{result="passed"}"#)
            .await
            >= 2.0
    );
    assert!(
        prom.value(&env, r#"certwright_solver_requests_total{result="served"}"#)
            .await
            >= 1.0
    );
    assert!(
        prom.value(
            &env,
            r#"sum(certwright_kube_api_requests_total{verb="watch"})"#
        )
        .await
            >= 1.0
    );
    assert_eq!(prom.value(&env, "certwright_leader").await, 1.0);
    assert!(prom.value(&env, "process_resident_memory_bytes").await > 1e6);

    // Every dashboard panel and alert evaluates (an invalid expression is
    // Prometheus' 400, not an empty panel).
    for expr in expressions() {
        prom.query(&expr).await.expect("a valid expression");
    }

    // The exposition, as promtool's linter reads it.
    let node = env.cluster.node().clone();
    let stream = node.connect(metrics).await.expect("connect to /metrics");
    let (status, text) = http_exchange(stream, "certwright", "/metrics")
        .await
        .expect("scrape");
    assert_eq!(status, 200);
    assert!(
        !text.contains("metrics.example.test")
            || text.contains("certmanager_certificate_challenge_status"),
        "no domain outside cert-manager's challenge series"
    );
    let mut lint = std::process::Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    {
        use std::io::Write;
        lint.stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    let out = lint.wait_with_output().expect("promtool");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let unexpected: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !CERT_MANAGER_NAMES.iter().any(|n| l.starts_with(n)))
        .collect();
    assert!(unexpected.is_empty(), "promtool check metrics: {said}");

    for (path, want) in [("/livez", 200), ("/readyz", 200), ("/nothing", 404)] {
        let stream = node
            .connect(SocketAddr::new(pod, 9403))
            .await
            .expect("connect to the probes");
        let (status, body) = http_exchange(stream, "certwright", path)
            .await
            .expect("probe");
        assert_eq!(status, want, "{path}: {body}");
    }
}

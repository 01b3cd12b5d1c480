//! Issuance benchmark, side by side in one run: N certificates (one name
//! each) through certwright's controller running as a Pod in the local
//! cluster against pebble, once per solver mode (shared, pod, sidecar);
//! then, certwright stopped, through cert-manager v1.21 itself (its own
//! controller and solver Pods, with its defaults) on the same cluster; and
//! the same orders with bare instant-acme, the same HTTP client
//! (TCP_NODELAY) and the same polling: the floor no controller can beat.
//! Both controllers run on cert-manager's CRDs (as after a migration).
//! Reports time-to-Ready p50/p95, the ratio to the floor, API requests and
//! writes per certificate made by the controller's ServiceAccount (from
//! kube-apiserver's audit log), the controller's CPU seconds over the batch
//! and its peak memory, with certwright's time from a Challenge appearing
//! to the CA being asked. Everything runs inside the local cluster's node
//! namespace.
//!
//! Run: `cargo bench --bench issuance` (`BENCH_SIZES=1,10` to change N;
//! `BENCH_SIZES=1,100,1000` is the full set; `BENCH_FLOOR_ONLY=1` for
//! pebble alone under N concurrent orders; `BENCH_SKIP=cert-manager` or
//! `BENCH_SKIP=certwright` leaves one side out, `BENCH_SKIP=pod,sidecar`
//! certwright's modes; `BENCH_BREAKDOWN=1` prints each controller's API
//! requests by verb and resource, and certwright's stages and self-checks;
//! `BENCH_CONTROLLER_ARGS="--concurrent-reconciles=64"` adds flags to
//! certwright's controller; `BENCH_BASELINE_BINARY=path` first runs the
//! same batches with that binary, an earlier build, as "before" rows).

#[path = "../support/cluster.rs"]
mod cluster;
#[path = "../../tests/common/mod.rs"]
mod common;
mod controllers;
mod floor;
#[path = "../support/proc.rs"]
mod proc;
mod stages;
#[path = "../support/svg.rs"]
mod svg;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use certwright::solver::server::{self, Tokens};
use certwright_testcluster::cert_manager;
use certwright_testcluster::cluster::{LocalCluster, NODE_IP};
use certwright_testcluster::deploy;
use certwright_testcluster::pebble::Pebble;
use controllers::Subject;
use kube::api::{Api, PostParams};
use serde_json::json;

/// The controller's ACME poll interval, and the floor's first delay
/// (both double from 50 ms).
const POLL_MS: u64 = 100;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(
        &PostParams::default(),
        &serde_json::from_value(value).expect("object"),
    )
    .await
    .expect("create");
}

struct Row {
    who: &'static str,
    n: usize,
    p50: f64,
    p95: f64,
    total: f64,
    requests: Option<f64>,
    writes: Option<f64>,
    /// p50 from a Challenge appearing to the CA being asked to validate it.
    to_ca: Option<f64>,
    /// The controller's CPU seconds over the batch.
    cpu: Option<f64>,
    /// The controller's peak resident memory so far.
    rss_mib: Option<f64>,
    /// Every certificate's time to Ready, ms, sorted.
    times: Vec<f64>,
}

/// certwright's controller process (the image's binary run as `controller`).
const CERTWRIGHT_PROCESS: &str = " controller --solver-service=";

/// certwright's solver modes measured, with the ClusterIssuer each uses.
const MODES: [(Subject, &str); 3] = [
    (certwright("certwright shared mode", "pebble"), "shared"),
    (certwright("certwright pod mode", "pebble-pod"), "pod"),
    (
        certwright("certwright sidecar mode", "pebble-sidecar"),
        "sidecar",
    ),
];

/// The same, run by `BENCH_BASELINE_BINARY` (the sidecar beside Traefik
/// stays the built binary's).
const BASELINE_MODES: [(Subject, &str); 3] = [
    (
        certwright("before: certwright shared mode", "pebble"),
        "shared",
    ),
    (
        certwright("before: certwright pod mode", "pebble-pod"),
        "pod",
    ),
    (
        certwright("before: certwright sidecar mode", "pebble-sidecar"),
        "sidecar",
    ),
];

/// certwright's flags in the bench: the self-check through the ingress
/// router, the bench's poll interval, and `BENCH_CONTROLLER_ARGS`.
fn controller_flags(router: std::net::SocketAddr) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--http01-self-check-address",
        &router.to_string(),
        "--acme-poll-interval-ms",
        &POLL_MS.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // BENCH_CONTROLLER_ARGS: more of certwright's flags, space-separated.
    flags.extend(
        std::env::var("BENCH_CONTROLLER_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string),
    );
    flags
}

const fn certwright(who: &'static str, issuer: &'static str) -> Subject {
    Subject {
        who,
        issuer,
        user: deploy::CONTROLLER_USER,
        process: CERTWRIGHT_PROCESS,
        says_when_asked: true,
    }
}

/// cert-manager with its defaults (its solver Pods per Challenge).
const CERT_MANAGER: Subject = Subject {
    who: "cert-manager v1.21",
    issuer: "pebble-cm",
    user: cert_manager::CONTROLLER_USER,
    process: "cert-manager-controller --v=",
    says_when_asked: false,
};

fn main() {
    certwright::install_crypto_provider();
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    cluster::run_in_node(|cluster| run(cluster, sizes));
}

/// The sidecar mode's parts: the chart's sidecar RBAC for Traefik's
/// ServiceAccount (rendered by helm) and the sidecar container in its Pod.
async fn sidecar(cluster: &LocalCluster, client: &kube::Client) {
    let objects = common::helm_template(common::SIDECAR_RBAC_VALUES);
    for object in objects {
        deploy::apply(client, object).await.expect("sidecar RBAC");
    }
    cluster
        .add_ingress_sidecar("ghcr.io/certwright/certwright:dev")
        .await
        .expect("the sidecar beside Traefik");
}

/// A ClusterIssuer `name` at `pebble` with `annotations`.
async fn cluster_issuer(
    client: &kube::Client,
    cluster: &LocalCluster,
    pebble: &Pebble,
    name: &str,
    annotations: serde_json::Value,
) {
    let ca = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        pebble.tls_ca_pem.as_bytes(),
    );
    deploy::apply(client, json!({
        "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"acme": {"server": pebble.directory_url, "caBundle": ca, "privateKeySecretRef": {"name": format!("{name}-account")},
                 "solvers": [{"http01": {"ingress": {"ingressClassName": cluster.ingress_class()}}}]}}}))
    .await
    .expect("cluster issuer");
}

/// Deletes the batches' namespaces and the ClusterIssuers, and waits until
/// they are gone.
async fn clear(client: &kube::Client) {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{DeleteParams, ListParams};
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ours = |list: Vec<Namespace>| -> Vec<String> {
        list.into_iter()
            .filter_map(|n| n.metadata.name)
            .filter(|n| n.starts_with("bench-"))
            .collect()
    };
    let listed = namespaces.list(&ListParams::default()).await.expect("list");
    for name in ours(listed.items) {
        let _ = namespaces.delete(&name, &DeleteParams::background()).await;
    }
    let _ = Api::<certwright::api::ClusterIssuer>::all(client.clone())
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ours(
        namespaces
            .list(&ListParams::default())
            .await
            .expect("list")
            .items,
    )
    .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the batches' namespaces were not deleted within 2 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Says a row as soon as it is measured (a long run shows its progress).
fn noted(row: Row) -> Row {
    println!(
        "measured: {} n={}: p50 {:.0} ms, p95 {:.0} ms, total {:.0} ms",
        row.who, row.n, row.p50, row.p95, row.total
    );
    row
}

fn skipped(side: &str) -> bool {
    std::env::var("BENCH_SKIP").is_ok_and(|s| s.split(',').any(|s| s.trim() == side))
}

async fn run(cluster: &'static LocalCluster, sizes: Vec<usize>) {
    let router = cluster.ingress_node_addr();
    let pebble = Pebble::start(cluster.pebble_options())
        .await
        .expect("pebble");
    let client = cluster.control_plane().client();
    let settings = cert_manager::Settings {
        dns: pebble.dns_address.clone(),
        extra_args: Vec::new(),
    };
    cert_manager::install_crds(&client, &settings)
        .await
        .expect("cert-manager's CRDs");
    deploy::owners_mapped(&client).await.expect("owners mapped");

    // The floor: the same client and a token server reached the same way.
    let account = common::pebble_account(&pebble).await;
    let tokens: Tokens = Arc::new(RwLock::new(HashMap::new()));
    let listener = std::net::TcpListener::bind((NODE_IP, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    tokio::spawn(server::serve((NODE_IP, port).into(), tokens.clone()));
    let mut all_hosts: Vec<String> = sizes
        .iter()
        .enumerate()
        .flat_map(|(b, n)| (0..*n).map(move |i| format!("f{b}-{i}.example.test")))
        .collect();
    all_hosts.push("fw-0.example.test".into());
    floor::floor_routes(&client, cluster.ingress_class(), &all_hosts, port).await;
    floor::floor_routed(cluster, &tokens, "fw-0.example.test").await;
    // Warm up (account lookups, first connections) with one certificate.
    let _ = floor::floor(&account, &tokens, 1, "w").await;
    let mut rows = Vec::new();
    for (b, n) in sizes.iter().enumerate() {
        rows.push(noted(
            floor::floor(&account, &tokens, *n, &b.to_string()).await,
        ));
    }
    // BENCH_FLOOR_ONLY: pebble alone under N concurrent orders (no controller).
    let floor_only = std::env::var_os("BENCH_FLOOR_ONLY").is_some();

    if !floor_only && !skipped("certwright") {
        let mut runs = vec![("dev", MODES)];
        if std::env::var_os("BENCH_BASELINE_BINARY").is_some() {
            runs.insert(0, ("baseline", BASELINE_MODES));
        }
        let mut sidecar_added = false;
        for (tag, modes) in runs {
            let flags = controller_flags(router);
            deploy::controller_tagged(&client, tag, &flags)
                .await
                .expect("controller");
            for (subject, mode) in modes {
                cluster_issuer(
                    &client,
                    cluster,
                    &pebble,
                    subject.issuer,
                    // pebble is a private CA on this machine: the Let's
                    // Encrypt-sized request ceiling would be what is measured.
                    json!({"certwright.io/http01-solver-mode": mode,
                        (certwright::acme::ceiling::ANNOTATION): "10000"}),
                )
                .await;
            }
            if !sidecar_added {
                sidecar(cluster, &client).await;
                sidecar_added = true;
            }
            for (m, (subject, mode)) in modes.iter().enumerate() {
                if skipped(mode) {
                    continue;
                }
                let _ = controllers::batch(cluster, 1, &format!("w{tag}{m}"), *subject).await;
            }
            for (b, n) in sizes.iter().enumerate() {
                for (m, (subject, mode)) in modes.iter().enumerate() {
                    if skipped(mode) {
                        continue;
                    }
                    rows.push(noted(
                        controllers::batch(cluster, *n, &format!("{b}{tag}{m}"), *subject).await,
                    ));
                }
            }
            // The next controller (or cert-manager) starts on an empty
            // cluster, not on the last one's work.
            clear(&client).await;
            deploy::remove_controller(&client)
                .await
                .expect("certwright stopped");
        }
    }
    if !floor_only && !skipped("cert-manager") {
        cert_manager::install(&client, &settings)
            .await
            .expect("cert-manager installed");
        cluster_issuer(&client, cluster, &pebble, CERT_MANAGER.issuer, json!({})).await;
        let _ = controllers::batch(cluster, 1, "wcm", CERT_MANAGER).await;
        for (b, n) in sizes.iter().enumerate() {
            rows.push(noted(
                controllers::batch(cluster, *n, &format!("{b}cm"), CERT_MANAGER).await,
            ));
        }
        cert_manager::stop(&client)
            .await
            .expect("cert-manager stopped");
    }
    report(&rows, &sizes);
}

/// The table, by size, the floor first; with `BENCH_OUT=DIR`, also
/// written to DIR/issuance.md with a plot of the time-to-Ready
/// distributions at each size (DIR/issuance-N.svg).
fn report(rows: &[Row], sizes: &[usize]) {
    let mut table = String::new();
    table.push_str("| | n | p50 ms | p95 ms | total ms | p50/floor | API req/cert | writes/cert | chal→CA p50 ms | controller CPU s | peak RSS MiB |\n");
    table.push_str(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let opt = |v: Option<f64>, digits: usize| {
        v.map(|v| format!("{v:.digits$}"))
            .unwrap_or_else(|| "-".into())
    };
    for n in sizes {
        let of_size: Vec<&Row> = rows.iter().filter(|r| r.n == *n).collect();
        let floor_p50 = of_size
            .iter()
            .find(|r| r.requests.is_none())
            .map_or(f64::NAN, |r| r.p50);
        for row in of_size {
            table.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.2}x | {} | {} | {} | {} | {} |\n",
                row.who,
                row.n,
                row.p50,
                row.p95,
                row.total,
                row.p50 / floor_p50,
                opt(row.requests, 1),
                opt(row.writes, 1),
                opt(row.to_ca, 0),
                opt(row.cpu, 1),
                opt(row.rss_mib, 1),
            ));
        }
    }
    let heading = format!(
        "issuance against pebble, one name per certificate, controllers as Pods (certwright polls every {POLL_MS} ms; cert-manager with its defaults; inf: not every certificate Ready within the batch's deadline, the larger of 10 minutes and 2 s a certificate)"
    );
    println!("\n{heading}\n\n{table}");
    if let Ok(dir) = std::env::var("BENCH_OUT") {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).expect("BENCH_OUT");
        std::fs::write(dir.join("issuance.md"), format!("{heading}\n\n{table}"))
            .expect("write issuance.md");
        for n in sizes {
            let series: Vec<(String, Vec<f64>)> = rows
                .iter()
                .filter(|r| r.n == *n)
                .map(|r| {
                    (
                        r.who.to_string(),
                        r.times
                            .iter()
                            .filter(|t| t.is_finite())
                            .map(|t| t / 1000.0)
                            .collect(),
                    )
                })
                .collect();
            let plot = svg::strips(
                &format!(
                    "time to Ready, {n} certificates at once (dots: certificates; bar: median)"
                ),
                "seconds",
                &series,
            );
            std::fs::write(dir.join(format!("issuance-{n}.svg")), plot).expect("write svg");
        }
    }
    println!("CPU seconds since the cluster started (whole run, start-up included):");
    for (who, pattern) in [
        ("kube-apiserver", controllers::API_SERVER),
        ("etcd", "etcd --name=local"),
        (
            "kube-controller-manager",
            "kube-controller-manager --kubeconfig",
        ),
        ("pebble", "pebble -config"),
        ("traefik", "traefik --entryPoints"),
        ("kubelet, proxies, floor", "deps/issuance-"),
    ] {
        println!("  {who:<26} {:>7.1}", proc::cpu_seconds(pattern));
    }
}

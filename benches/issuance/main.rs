//! Issuance benchmark: N certificates (1, then 100) through certwright's
//! controller running as a Pod in the local cluster, against pebble; and in
//! the same run the same orders with bare instant-acme, the same HTTP
//! client (TCP_NODELAY) and the same polling: the floor no controller can
//! beat. Reports time-to-Ready p50/p95, the ratio to the floor, API
//! requests and writes per certificate made by the controller's
//! ServiceAccount (from kube-apiserver's audit log), and the controller's
//! peak memory, for each solver mode (shared, pod, sidecar), with the time
//! from a Challenge appearing to the CA being asked. Everything runs
//! inside the local cluster's node namespace.
//!
//! Run: `cargo bench --bench issuance` (`BENCH_SIZES=1,10` to change N;
//! `BENCH_FLOOR_ONLY=1` for pebble alone under N concurrent orders).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use certwright::api::Certificate;
use certwright::api::meta::ConditionStatus;
use certwright::solver::server::{self, Presented, Tokens};
use certwright_testcluster::cluster::audit::AuditLog;
use certwright_testcluster::cluster::{LocalCluster, NODE_IP};
use certwright_testcluster::deploy;
use certwright_testcluster::pebble::Pebble;
use futures_util::StreamExt;
use instant_acme::{Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
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

/// Routes every floor name to an in-process token server.
async fn floor_routes(client: &kube::Client, class: &str, hosts: &[String], port: u16) {
    let ns = "floor";
    let _ = Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
        )
        .await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    if services
        .get_opt("floor-solver")
        .await
        .ok()
        .flatten()
        .is_none()
    {
        create(
            &services,
            json!({"metadata": {"name": "floor-solver"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}}),
        )
        .await;
        create(&Api::<EndpointSlice>::namespaced(client.clone(), ns), json!({
            "metadata": {"name": "floor-solver", "labels": {"kubernetes.io/service-name": "floor-solver"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": [NODE_IP.to_string()], "conditions": {"ready": true}}]}))
        .await;
    }
    let rules: Vec<serde_json::Value> = hosts
        .iter()
        .map(|h| json!({"host": h, "http": {"paths": [{"path": "/.well-known/acme-challenge/", "pathType": "Prefix",
            "backend": {"service": {"name": "floor-solver", "port": {"number": 80}}}}]}}))
        .collect();
    create(
        &Api::<Ingress>::namespaced(client.clone(), ns),
        json!({"metadata": {"generateName": "floor-"}, "spec": {"ingressClassName": class, "rules": rules}}),
    )
    .await;
}

/// Waits until the ingress at `ingress` routes the floor's hosts (Traefik
/// applies a new Ingress a moment after the watch delivers it): a probe
/// token for `host` passes the controller's own self-check through it.
async fn floor_routed(cluster: &LocalCluster, tokens: &Tokens, host: &str) {
    let ingress = cluster.ingress_node_addr();
    let (token, key) = ("floor-probe", "floor-probe.ok");
    tokens.write().expect("lock").insert(
        token.into(),
        Presented {
            domain: host.into(),
            key_authorization: key.into(),
        },
    );
    let probe = certwright::solver::check::Probe {
        via: Some(ingress.to_string()),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(why) = certwright::solver::check::reachable(&probe, host, token, key).await {
        if Instant::now() > deadline {
            let log = cluster.ingress_log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "the ingress did not route {host} to the floor's token server within 30 s: {why}\nTraefik's log (tail):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One certificate the bare way; returns the time from `start` to the chain.
/// Fails loudly instead of hanging when a floor step never finishes.
async fn step<T>(what: &str, host: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(60), f).await {
        Ok(v) => v,
        Err(_) => panic!("floor: {what} for {host} did not finish within 60 s"),
    }
}

async fn floor_one(account: Account, tokens: Tokens, host: String, start: Instant) -> f64 {
    let ids = [Identifier::Dns(host.clone())];
    let mut order = step("newOrder", &host, account.new_order(&NewOrder::new(&ids)))
        .await
        .expect("new order");
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.expect("authz");
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let mut challenge = authz.challenge(ChallengeType::Http01).expect("http-01");
        tokens.write().expect("lock").insert(
            challenge.token.clone(),
            Presented {
                domain: host.clone(),
                key_authorization: challenge.key_authorization().as_str().to_string(),
            },
        );
        step("challenge ready", &host, challenge.set_ready())
            .await
            .expect("ready");
    }
    // The controller's polling: from 50 ms, doubling, at most POLL_MS.
    let mut delay = Duration::from_millis(50);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = step("order refresh", &host, order.refresh())
            .await
            .expect("refresh");
        match state.status {
            instant_acme::OrderStatus::Ready => break,
            instant_acme::OrderStatus::Pending | instant_acme::OrderStatus::Processing => {}
            other => panic!("floor order for {host} is {other:?}: {:?}", state.error),
        }
        assert!(
            Instant::now() < deadline,
            "floor order for {host} never got ready"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(POLL_MS));
    }
    let key = rcgen::KeyPair::generate().expect("key");
    let csr = rcgen::CertificateParams::new(vec![host.clone()])
        .expect("params")
        .serialize_request(&key)
        .expect("csr");
    order.finalize_csr(csr.der()).await.expect("finalize");
    let mut delay = Duration::from_millis(50);
    while order.certificate().await.expect("certificate").is_none() {
        assert!(
            Instant::now() < deadline,
            "floor certificate for {host} never came"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(POLL_MS));
    }
    start.elapsed().as_secs_f64() * 1000.0
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
}

/// The solver modes measured, with the ClusterIssuer each uses.
const MODES: [(&str, &str, &str); 3] = [
    ("certwright shared mode", "pebble", "shared"),
    ("certwright pod mode", "pebble-pod", "pod"),
    ("certwright sidecar mode", "pebble-sidecar", "sidecar"),
];

async fn floor(account: &Account, tokens: &Tokens, n: usize, batch: &str) -> Row {
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(floor_one(
                account.clone(),
                tokens.clone(),
                format!("f{batch}-{i}.example.test"),
                start,
            ))
        })
        .collect();
    let mut times = Vec::new();
    for t in tasks {
        times.push(t.await.expect("task"));
    }
    let total = start.elapsed().as_secs_f64() * 1000.0;
    times.sort_by(f64::total_cmp);
    Row {
        who: "floor: bare instant-acme",
        n,
        p50: percentile(&times, 50.0),
        p95: percentile(&times, 95.0),
        total,
        requests: None,
        writes: None,
        to_ca: None,
    }
}

/// By Challenge name: when it was first seen and when the CA was asked
/// (milliseconds since the batch started).
type ChallengeTimes = Arc<RwLock<HashMap<String, (f64, Option<f64>)>>>;

/// When each Challenge in `ns` was first seen and when its reason first
/// said the CA had been asked (the controller writes that just before it
/// accepts the challenge), until the task is dropped.
fn watch_challenges(
    client: kube::Client,
    ns: &str,
    start: Instant,
) -> (tokio::task::JoinHandle<()>, ChallengeTimes) {
    let seen: ChallengeTimes = Arc::default();
    let api: Api<certwright::api::Challenge> = Api::namespaced(client, ns);
    let table = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let Ok(watcher::Event::Apply(ch) | watcher::Event::InitApply(ch)) = event else {
                continue;
            };
            let now = start.elapsed().as_secs_f64() * 1000.0;
            let name = ch.metadata.name.clone().unwrap_or_default();
            let asked = ch
                .status
                .as_ref()
                .and_then(|s| s.reason.as_deref())
                .is_some_and(|r| {
                    r.starts_with("Accepted the challenge") || r.starts_with("Successfully")
                });
            let mut table = table.write().expect("lock");
            let entry = table.entry(name).or_insert((now, None));
            if asked && entry.1.is_none() {
                entry.1 = Some(now);
            }
        }
    });
    (task, seen)
}

async fn controller(
    cluster: &LocalCluster,
    n: usize,
    batch: &str,
    (who, issuer, _): (&'static str, &str, &str),
) -> Row {
    let client = cluster.control_plane().client();
    let audit = AuditLog::new(&cluster.control_plane().audit_log());
    let ns = format!("bench-{batch}");
    create(
        &Api::<Namespace>::all(client.clone()),
        json!({"metadata": {"name": ns}}),
    )
    .await;
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let mut events = watcher(certs.clone(), watcher::Config::default()).boxed();
    // Wait for the watch to be established before starting the clock.
    while let Some(e) = events.next().await {
        if matches!(e, Ok(watcher::Event::InitDone)) {
            break;
        }
    }
    let mark = audit.mark();
    let start = Instant::now();
    let (challenge_watch, challenges) = watch_challenges(client.clone(), &ns, start);
    for i in 0..n {
        create(&certs, json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": format!("c{i}")},
            "spec": {"secretName": format!("c{i}-tls"), "dnsNames": [format!("c{batch}-{i}.example.test")],
                     "privateKey": {"algorithm": "ECDSA", "size": 256},
                     "issuerRef": {"name": issuer, "kind": "ClusterIssuer"}}}))
        .await;
    }
    let mut ready: HashMap<String, f64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while ready.len() < n && Instant::now() < deadline {
        let Ok(Some(Ok(event))) = tokio::time::timeout(Duration::from_secs(5), events.next()).await
        else {
            continue;
        };
        if let watcher::Event::Apply(cert) = event {
            let is_ready = cert
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
                });
            if is_ready {
                let name = cert.metadata.name.clone().unwrap_or_default();
                ready
                    .entry(name)
                    .or_insert(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let total = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(ready.len(), n, "every Certificate went Ready");
    // Let cleanup (temporary Secrets, Challenges, solver resources) finish
    // so its requests count too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = audit.by_user(mark, deploy::CONTROLLER_USER);
    let writes = log.iter().filter(|r| r.is_write()).count();
    if std::env::var("BENCH_BREAKDOWN").is_ok() {
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for r in &log {
            let what = format!(
                "{} {}{}",
                r.verb,
                r.resource,
                if r.subresource.is_empty() {
                    String::new()
                } else {
                    format!("/{}", r.subresource)
                }
            );
            *by.entry(what).or_default() += 1;
        }
        let mut sorted: Vec<_> = by.into_iter().collect();
        sorted.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        for (what, count) in sorted {
            println!("  {:>7.2}/cert  {what}", count as f64 / n as f64);
        }
    }
    challenge_watch.abort();
    let mut to_ca: Vec<f64> = challenges
        .read()
        .expect("lock")
        .values()
        .filter_map(|(seen, asked)| asked.map(|a| a - seen))
        .collect();
    to_ca.sort_by(f64::total_cmp);
    let mut times: Vec<f64> = ready.into_values().collect();
    times.sort_by(f64::total_cmp);
    Row {
        to_ca: Some(percentile(&to_ca, 50.0)),
        who,
        n,
        p50: percentile(&times, 50.0),
        p95: percentile(&times, 95.0),
        total,
        requests: Some(log.len() as f64 / n as f64),
        writes: Some(writes as f64 / n as f64),
    }
}

/// CPU seconds (user + system) so far of the processes whose command line
/// contains `pattern`, from /proc.
fn cpu_seconds(pattern: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .contains(pattern)
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name: utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
            .sum();
        total += ticks / tick;
    }
    total
}

/// Peak resident memory of the controller process, from /proc.
fn controller_peak_rss_kib(binary: &str) -> Option<u64> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().map(String::as_str) == Some(binary)
            && args.get(1).map(String::as_str) == Some("controller")
        {
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            return status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
        }
    }
    None
}

fn main() {
    certwright::install_crypto_provider();
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let binary = env!("CARGO_BIN_EXE_certwright");
    let cluster = LocalCluster::shared(binary.as_ref());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The clients, pebble and the floor's token server all live in the node.
    runtime.block_on(cluster.in_node(run(cluster, sizes, binary)));
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

async fn run(cluster: &'static LocalCluster, sizes: Vec<usize>, binary: &'static str) {
    let router = cluster.ingress_node_addr();
    let pebble = Pebble::start(cluster.pebble_options())
        .await
        .expect("pebble");
    let client = cluster.control_plane().client();
    deploy::install_crds(&client, std::path::Path::new(binary))
        .await
        .expect("crds");
    let flags: Vec<String> = [
        "--http01-self-check-address",
        &router.to_string(),
        "--acme-poll-interval-ms",
        &POLL_MS.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    deploy::controller(&client, &flags)
        .await
        .expect("controller");
    let ca = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        pebble.tls_ca_pem.as_bytes(),
    );
    for (_, issuer, mode) in MODES {
        create(&Api::<certwright::api::ClusterIssuer>::all(client.clone()), json!({
            "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
            "metadata": {"name": issuer, "annotations": {"certwright.io/http01-solver-mode": mode}},
            "spec": {"acme": {"server": pebble.directory_url, "caBundle": ca, "privateKeySecretRef": {"name": format!("{issuer}-account")},
                     "solvers": [{"http01": {"ingress": {"ingressClassName": cluster.ingress_class()}}}]}}}))
        .await;
    }
    sidecar(cluster, &client).await;

    // The floor: the same client and a token server reached the same way.
    let trust = certwright::acme::http::Trust::Bundle(pebble.tls_ca_pem.clone().into_bytes());
    let (account, _) =
        Account::builder_with_http(certwright::acme::http::client(&trust).expect("client"))
            .create(
                &NewAccount {
                    contact: &[],
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                pebble.directory_url.clone(),
                None,
            )
            .await
            .expect("account");
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
    floor_routes(&client, cluster.ingress_class(), &all_hosts, port).await;
    floor_routed(cluster, &tokens, "fw-0.example.test").await;
    // BENCH_FLOOR_ONLY: pebble alone under N concurrent orders (no controller).
    let floor_only = std::env::var_os("BENCH_FLOOR_ONLY").is_some();
    // Warm up both paths (account lookups, first connections) with one certificate each.
    let _ = floor(&account, &tokens, 1, "w").await;
    if !floor_only {
        for (m, mode) in MODES.iter().enumerate() {
            let _ = controller(cluster, 1, &format!("w{m}"), *mode).await;
        }
    }

    let mut rows = Vec::new();
    for (b, n) in sizes.iter().enumerate() {
        let batch = b.to_string();
        rows.push(floor(&account, &tokens, *n, &batch).await);
        if !floor_only {
            for (m, mode) in MODES.iter().enumerate() {
                rows.push(controller(cluster, *n, &format!("{batch}m{m}"), *mode).await);
            }
        }
    }
    println!(
        "\nissuance against pebble, one name per certificate, controller as a Pod (poll {POLL_MS} ms)\n"
    );
    println!(
        "{:<26} {:>5} {:>9} {:>9} {:>10} {:>9} {:>13} {:>15} {:>14}",
        "",
        "n",
        "p50 ms",
        "p95 ms",
        "total ms",
        "p50/floor",
        "API req/cert",
        "API writes/cert",
        "chal→CA p50 ms"
    );
    let mut floor_p50 = f64::NAN;
    for row in &rows {
        if row.requests.is_none() {
            floor_p50 = row.p50;
        }
        let ratio = if row.requests.is_some() {
            format!("{:.2}x", row.p50 / floor_p50)
        } else {
            "1.00x".into()
        };
        let per = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<26} {:>5} {:>9.1} {:>9.1} {:>10.1} {:>9} {:>13} {:>15} {:>14}",
            row.who,
            row.n,
            row.p50,
            row.p95,
            row.total,
            ratio,
            per(row.requests),
            per(row.writes),
            per(row.to_ca)
        );
    }
    println!("\nCPU seconds since the cluster started (whole run, start-up included):");
    for (who, pattern) in [
        ("kube-apiserver", "kube-apiserver --etcd-servers"),
        ("etcd", "etcd --name=local"),
        (
            "kube-controller-manager",
            "kube-controller-manager --kubeconfig",
        ),
        (
            "certwright controller",
            " controller --http01-self-check-address",
        ),
        ("pebble", "pebble -config"),
        ("traefik", "traefik --entryPoints"),
        ("kubelet, proxies, floor", "deps/issuance-"),
    ] {
        println!("  {who:<26} {:>7.1}", cpu_seconds(pattern));
    }
    if let Some(kib) = controller_peak_rss_kib(binary) {
        println!("\ncontroller peak RSS: {:.1} MiB", kib as f64 / 1024.0);
    }
}

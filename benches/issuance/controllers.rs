//! A controller under measurement (certwright in a solver mode, or
//! cert-manager): N Certificates created at once, the time each takes to go
//! Ready, the controller's API requests (kube-apiserver's audit log, its
//! ServiceAccount's user), its CPU seconds over the batch and its peak
//! memory (from /proc: the controller Pod is a process on this machine).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use certwright::api::Certificate;
use certwright::api::meta::ConditionStatus;
use certwright_testcluster::cluster::LocalCluster;
use certwright_testcluster::cluster::audit::AuditLog;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::watcher;
use serde_json::json;

use super::proc::{cpu_seconds, memory_kib};
use super::{Row, create, percentile};

/// What is measured: a row's label, the ClusterIssuer its Certificates
/// name, the user its requests carry, a pattern of its process's command
/// line, and whether its Challenges say when the CA was asked (certwright's
/// do; cert-manager's reason says nothing between its self-check and
/// "Successfully authorized domain").
#[derive(Clone, Copy, Debug)]
pub struct Subject {
    pub who: &'static str,
    pub issuer: &'static str,
    pub user: &'static str,
    pub process: &'static str,
    pub says_when_asked: bool,
}

/// kube-apiserver's process, by its command line.
pub const API_SERVER: &str = "kube-apiserver --etcd-servers";

/// By Challenge name: when it was first seen and when the CA was asked
/// (milliseconds since the batch started).
type ChallengeTimes = Arc<RwLock<HashMap<String, (f64, Option<f64>)>>>;

/// When each Challenge in `ns` was first seen and when certwright's reason
/// first said the CA had been asked (it writes that just before it accepts
/// the challenge, and "Successfully …" once valid), until the task is
/// dropped.
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

/// Issues `n` Certificates (one name each) through `subject` and measures.
pub async fn batch(cluster: &LocalCluster, n: usize, batch: &str, subject: Subject) -> Row {
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
    let breakdown = std::env::var("BENCH_BREAKDOWN").is_ok();
    let stages_before = if breakdown && subject.says_when_asked {
        Some(super::stages::scrape(&client).await)
    } else {
        None
    };
    let mark = audit.mark();
    let cpu_before = cpu_seconds(subject.process);
    let api_cpu_before = cpu_seconds(API_SERVER);
    let start = Instant::now();
    let (challenge_watch, challenges) = watch_challenges(client.clone(), &ns, start);
    for i in 0..n {
        create(&certs, json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": format!("c{i}")},
            "spec": {"secretName": format!("c{i}-tls"), "dnsNames": [format!("c{batch}-{i}.example.test")],
                     "privateKey": {"algorithm": "ECDSA", "size": 256},
                     "issuerRef": {"name": subject.issuer, "kind": "ClusterIssuer"}}}))
        .await;
    }
    let mut ready: HashMap<String, f64> = HashMap::new();
    // Ten minutes, or two seconds a certificate for large batches.
    let deadline = Instant::now() + Duration::from_secs(600.max(2 * n as u64));
    while ready.len() < n && Instant::now() < deadline {
        let Ok(Some(Ok(event))) = tokio::time::timeout(Duration::from_secs(5), events.next()).await
        else {
            continue;
        };
        // A watch restarted under load lists again (InitApply): count those.
        if let watcher::Event::Apply(cert) | watcher::Event::InitApply(cert) = event {
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
    if ready.len() < n {
        println!(
            "{}: only {} of {n} Certificates went Ready within {:.0} s",
            subject.who,
            ready.len(),
            total / 1000.0
        );
    }
    // Let cleanup (temporary Secrets, Challenges, solver resources) finish
    // so its requests and CPU count too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_seconds(subject.process) - cpu_before;
    let api_cpu = cpu_seconds(API_SERVER) - api_cpu_before;
    let log = audit.by_user(mark, subject.user);
    let writes = log.iter().filter(|r| r.is_write()).count();
    if breakdown {
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for r in &log {
            let sub = if r.subresource.is_empty() {
                String::new()
            } else {
                format!("/{}", r.subresource)
            };
            *by.entry(format!("{} {}{sub}", r.verb, r.resource))
                .or_default() += 1;
        }
        let mut sorted: Vec<_> = by.into_iter().collect();
        sorted.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        println!(
            "{} n={n}: kube-apiserver {api_cpu:.1} CPU s over the batch; requests:",
            subject.who
        );
        for (what, count) in sorted {
            println!("  {:>7.2}/cert  {what}", count as f64 / n as f64);
        }
        if let Some(before) = &stages_before {
            super::stages::report(before, &super::stages::scrape(&client).await, n);
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
    // A certificate never Ready counts as infinitely late.
    let mut times: Vec<f64> = ready.into_values().collect();
    times.resize(n, f64::INFINITY);
    times.sort_by(f64::total_cmp);
    Row {
        to_ca: subject.says_when_asked.then(|| percentile(&to_ca, 50.0)),
        who: subject.who,
        n,
        p50: percentile(&times, 50.0),
        p95: percentile(&times, 95.0),
        total,
        requests: Some(log.len() as f64 / n as f64),
        writes: Some(writes as f64 / n as f64),
        cpu: Some(cpu),
        rss_mib: memory_kib(subject.process, "VmHWM").map(|k| k as f64 / 1024.0),
        times,
    }
}

//! Chaos: Certificates issue while the controller is killed at random
//! moments (seeded: `CHAOS_SEED` replays a run, `CHAOS_FULL=1` runs the
//! long batch), while its API connection fails, lags and loses its
//! watches, and while the API server and then etcd restart. After each:
//! every Certificate Ready and issued once, one finalized order per
//! request, nothing temporary left, and no Secret deleted or turned back.
//! A binary of its own: it restarts its cluster's control plane.

#[path = "../common/mod.rs"]
mod common;

mod batch;

use std::collections::BTreeMap;
use std::time::Duration;

use batch::{Batch, Rng, full};
use certwright_testcluster::cluster::api_proxy::ApiFault;
use certwright_testcluster::cluster::audit::AuditLog;
use certwright_testcluster::deploy;
use common::env::Env;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

/// SIGKILLs the controller `kills` times, at random moments: deleted with
/// no grace, the kubelet kills its process at once. Returns how many kills
/// came before every Certificate of `batch` was Ready.
async fn kill_controller(env: &Env, rng: &mut Rng, kills: usize, batch: &Batch) -> usize {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), deploy::NAMESPACE);
    let mut before_ready = 0;
    for _ in 0..kills {
        let pod = env
            .wait("a controller Pod", 60, || async {
                deploy::controller_pods(&env.client).await.pop()
            })
            .await;
        tokio::time::sleep(rng.millis(200, 2500)).await;
        if batch.ready(env).await < batch.names.len() {
            before_ready += 1;
        }
        let _ = pods
            .delete(
                &pod,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await;
    }
    before_ready
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_kills_in_shared_and_pod_mode_lose_and_double_nothing() {
    let (count, kills) = if full() { (15, 20) } else { (5, 5) };
    let mut rng = Rng::seeded(41);
    let env = Env::start(|_| {}, &[]).await;
    env.pod_issuer("pods").await;
    let mut requests = 0;
    for (ns, issuer) in [("chaos-shared", "pebble"), ("chaos-pods", "pods")] {
        let batch = Batch::create(&env, ns, issuer, count).await;
        let early = kill_controller(&env, &mut rng, kills, &batch).await;
        let made = batch.converged(&env, 240).await;
        eprintln!(
            "chaos: {ns}: {count} Certificates, {kills} kills ({early} before all were Ready), {made} requests"
        );
        requests += made;
    }
    assert_eq!(
        env.proxy.count("POST", "/finalize-order/"),
        requests,
        "one finalized order per CertificateRequest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_latency_and_cut_watches_for_30s_only_delay_issuance() {
    let count = if full() { 30 } else { 10 };
    // The lease as the chart sets it, not the tests' 4 s renew deadline: a
    // read and a write of the Lease at 2 s each would never make that.
    let lease = [
        "--leader-election-lease-duration",
        "30s",
        "--leader-election-renew-deadline",
        "20s",
        "--leader-election-retry-period",
        "2s",
    ];
    let env = Env::start(|_| {}, &lease).await;
    let faults = env.cluster.api_faults();
    let audit = AuditLog::new(&env.cluster.control_plane().audit_log());
    let mark = audit.mark();
    let injected = faults.injected();
    let shaky = [
        ("GET", "/certificates", 500, None),
        ("PATCH", "/certificates/", 500, None),
        ("POST", "/secrets", 429, Some(1)),
        ("POST", "/certificaterequests", 500, None),
        ("PATCH", "/orders/", 409, None),
        ("PATCH", "/challenges/", 500, None),
    ];
    for (method, path, status, retry_after) in shaky {
        faults.add(ApiFault {
            method: Some(method.into()),
            path_contains: path.into(),
            user_agent_contains: None,
            // Each list refused waits out the watcher's backoff: two.
            remaining: if method == "GET" { 2 } else { 5 },
            status,
            retry_after,
        });
    }
    faults.set_latency(Duration::from_secs(2));
    let batch = Batch::create(&env, "chaos-api", "pebble", count).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        faults.cut_watches();
    }
    faults.set_latency(Duration::ZERO);
    let answered: Vec<(String, usize)> = shaky
        .iter()
        .map(|(method, path, _, _)| (format!("{method} {path}"), faults.answered(path)))
        .collect();
    for (_, path, _, _) in shaky {
        faults.remove(path);
    }
    eprintln!(
        "chaos: faults answered under faults: {answered:?}, {} in all",
        faults.injected() - injected
    );
    let made = batch.converged(&env, 240).await;
    let kinds = answered.iter().filter(|(_, n)| *n > 0).count();
    assert!(kinds >= 3, "the faults met the controller: {answered:?}");
    assert_eq!(
        env.proxy.count("POST", "/finalize-order/"),
        made,
        "one finalized order per CertificateRequest"
    );
    // No watch relisted in a loop: each resource's lists, over the 30 s of
    // faults and the convergence, stay within what the watchers' backoff
    // (0.8 s doubling to 30 s) allows for six cuts and the faults.
    // The watches list the whole cluster; a list in one namespace is a
    // point read (a Challenge asked for before it is cleaned up), not one.
    let mut lists: BTreeMap<String, usize> = BTreeMap::new();
    for r in audit.by_user(mark, deploy::CONTROLLER_USER) {
        if r.verb == "list" && r.namespace.is_empty() {
            *lists.entry(r.resource).or_default() += 1;
        }
    }
    eprintln!("chaos: lists per resource under faults: {lists:?}");
    for (resource, n) in &lists {
        assert!(*n <= 30, "{resource} was listed {n} times: a relist loop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_and_then_etcd_restart_mid_batch() {
    let count = if full() { 15 } else { 5 };
    let mut rng = Rng::seeded(4141);
    let env = Env::start(|_| {}, &[]).await;
    let plane = env.cluster.control_plane();
    let first = Batch::create(&env, "chaos-apiserver", "pebble", count).await;
    tokio::time::sleep(rng.millis(200, 2000)).await;
    plane
        .restart_apiserver(&env.client)
        .await
        .expect("kube-apiserver restarts");
    let second = Batch::create(&env, "chaos-etcd", "pebble", count).await;
    tokio::time::sleep(rng.millis(200, 2000)).await;
    plane
        .restart_etcd(&env.client)
        .await
        .expect("etcd restarts");
    let made = first.converged(&env, 240).await + second.converged(&env, 240).await;
    assert_eq!(
        env.proxy.count("POST", "/finalize-order/"),
        made,
        "one finalized order per CertificateRequest"
    );
}

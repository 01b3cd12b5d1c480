//! certwright's image, built by buildah from `dockerfiles/Dockerfile`,
//! installed by its chart on the real node (containerd, runc, the kubelet,
//! kube-proxy): what only a real node enforces, checked from the kernel's
//! side. The container runs as UID 65532 with no capability and a
//! read-only root, inside the memory limit its cgroup holds; `kubectl logs`
//! and `exec` reach it; a renewal window's time zone is read from the
//! image's zoneinfo; `/readyz` takes the Pod out of its Services'
//! endpoints while the token watch is cut, and back after; a `kill -9`
//! restarts the container, which finishes the Order already placed; and a
//! limit too small is an OOMKill.

use crate::common;

use std::process::Command;
use std::sync::Arc;

use certwright::api::{Certificate, Order};
use certwright_testcluster::cluster::api_proxy::ApiFault;
use certwright_testcluster::deploy;
use certwright_testcluster::node::{self, RealNode};
use common::env::Env;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use serde_json::json;

const MIB: u64 = 1 << 20;

async fn real_node() -> Arc<RealNode> {
    let cluster = common::local_cluster().await;
    cluster
        .real_node(&crate::image::image_binary())
        .await
        .expect("the real node")
}

/// The chart's values for the real node, with a memory limit.
fn chart(memory_limit: &str) -> Vec<String> {
    let mut values = deploy::real_node_values();
    values.extend([
        "--set".into(),
        format!("resources.limits.memory={memory_limit}"),
        "--set".into(),
        format!("resources.requests.memory={memory_limit}"),
        "--set".into(),
        "global.logFormat=json".into(),
    ]);
    values
}

/// The controller Pod on the real node, once it is Ready.
async fn ready_pod(env: &Env, restarts: i32) -> Pod {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), deploy::NAMESPACE);
    env.wait(
        &format!("the controller Ready on the real node after {restarts} restarts"),
        120,
        || async {
            let listed = pods
                .list(&ListParams::default().labels(deploy::APP_LABEL))
                .await
                .ok()?;
            listed.items.into_iter().find(|pod| {
                let on_node =
                    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node::NODE_NAME);
                let status = pod.status.as_ref();
                let ready = status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                on_node && ready && restart_count(pod) >= restarts
            })
        },
    )
    .await
}

fn container_status_opt(pod: &Pod) -> Option<ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

fn container_status(pod: &Pod) -> ContainerStatus {
    container_status_opt(pod).expect("a container status")
}

fn restart_count(pod: &Pod) -> i32 {
    container_status_opt(pod).map_or(0, |c| c.restart_count)
}

/// The container's main process, as the kernel sees it.
fn main_process(node: &RealNode, pod: &Pod) -> i32 {
    let id = container_status(pod).container_id.expect("a container id");
    node.main_process(&id)
        .expect("the container's main process")
}

/// A `/proc/<pid>/status` field.
fn proc_status(pid: i32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the process's status")
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn kubectl(env: &Env, args: &[&str]) -> (bool, String) {
    let out = Command::new(common::tool("kubectl"))
        .arg("--kubeconfig")
        .arg(env.cluster.kubeconfig())
        .args(args)
        .output()
        .expect("kubectl runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Whether the Pod's address is a ready endpoint of the solver Service.
async fn in_solver_endpoints(env: &Env, pod: &Pod) -> bool {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    let slices: Api<EndpointSlice> = Api::namespaced(env.client.clone(), deploy::NAMESPACE);
    let listed = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=certwright-solver"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    listed.iter().flat_map(|s| &s.endpoints).any(|e| {
        e.addresses.contains(&ip) && e.conditions.as_ref().and_then(|c| c.ready) == Some(true)
    })
}

/// The Orders of Certificate `resumed`: name and ACME URL.
async fn resumed_orders(orders: &Api<Order>) -> Vec<(Option<String>, Option<String>)> {
    orders
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|o| {
            o.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("resumed-"))
        })
        .map(|o| (o.metadata.name, o.status.and_then(|s| s.url)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_restricted_on_a_real_node_and_survives_a_kill() {
    let node = real_node().await;
    let env = Env::start_with_chart(
        |_| {},
        &["--token-watch-grace-seconds", "2"],
        &chart("256Mi"),
    )
    .await;
    let pod = ready_pod(&env, 0).await;
    let name = pod.metadata.name.clone().expect("a name");

    // The securityContext and the limit, as the kernel enforces them.
    let pid = main_process(&node, &pod);
    assert_eq!(proc_status(pid, "Uid"), "65532\t65532\t65532\t65532");
    assert_eq!(proc_status(pid, "Gid"), "65532\t65532\t65532\t65532");
    assert_eq!(
        proc_status(pid, "CapEff"),
        "0000000000000000",
        "no capability"
    );
    assert_eq!(
        proc_status(pid, "CapBnd"),
        "0000000000000000",
        "all dropped"
    );
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("the root mount");
    assert!(
        root.split_whitespace()
            .nth(5)
            .is_some_and(|o| o.split(',').any(|o| o == "ro")),
        "a read-only root: {root}"
    );
    assert_eq!(node.memory_limit_of(pid), Some(256 * MIB));

    // kubectl logs (JSON, one object per line) and exec reach it.
    let (ok, logs) = kubectl(&env, &["logs", "-n", deploy::NAMESPACE, &name]);
    assert!(ok, "kubectl logs: {logs}");
    let first = logs.lines().next().expect("a log line");
    let line: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("a JSON log line ({e}): {first}"));
    assert!(line.get("level").is_some(), "{line}");
    let (ok, version) = kubectl(
        &env,
        &[
            "exec",
            "-n",
            deploy::NAMESPACE,
            &name,
            "--",
            "/usr/local/bin/certwright",
            "--version",
        ],
    );
    assert!(
        ok && version.starts_with("certwright "),
        "kubectl exec: {version}"
    );

    // A renewal window in a time zone, read from the image's zoneinfo:
    // 09:17 in Tokyo is 00:17 UTC.
    env.namespace("real-node").await;
    env.certificate(
        "real-node",
        "tokyo",
        json!({"secretName": "tokyo-tls", "dnsNames": ["tokyo.real-node.test"],
               "renewal": {"windows": [{"cron": "17 9 * * *", "timezone": "Asia/Tokyo", "windowDuration": "1m"}]}}),
    )
    .await;
    let cert = env.certificate_ready("real-node", "tokyo", 1).await;
    let at = cert
        .status
        .and_then(|s| s.renewal_time)
        .expect("a renewal time")
        .0
        .to_string();
    assert!(
        at.contains("T00:17:") || at.ends_with("T00:18:00Z"),
        "inside the Tokyo window: {at}"
    );

    // Cut the token watch: every Challenge request fails for a while. The
    // Pod leaves the solver Service's endpoints, and comes back with the
    // watch.
    assert!(
        in_solver_endpoints(&env, &pod).await,
        "a ready endpoint first"
    );
    let faults = env.cluster.api_faults();
    faults.add(ApiFault {
        method: Some("GET".into()),
        path_contains: "/challenges".into(),
        user_agent_contains: None,
        remaining: usize::MAX,
        status: 500,
        retry_after: None,
    });
    faults.cut_watches();
    let cut = std::time::Instant::now();
    env.wait("the Pod out of the solver endpoints", 60, || async {
        (!in_solver_endpoints(&env, &pod).await).then_some(())
    })
    .await;
    let out_after = cut.elapsed();
    let answered = faults.remove("/challenges");
    let per_second = answered as f64 / out_after.as_secs_f64();
    eprintln!(
        "the cut: {answered} Challenge requests failed in {out_after:?} until the Pod left the endpoints"
    );
    assert!(
        per_second < 2.0,
        "{answered} Challenge requests failed in {out_after:?}: the watches retried without pause"
    );
    env.wait("the Pod back in the solver endpoints", 60, || async {
        in_solver_endpoints(&env, &pod).await.then_some(())
    })
    .await;

    // kill -9 mid-issuance: the CA refuses validation, so the Order stays
    // placed and pending; the container restarts and finishes that Order.
    env.ca_refuses_validation();
    env.certificate(
        "real-node",
        "resumed",
        json!({"secretName": "resumed-tls", "dnsNames": ["resumed.real-node.test"]}),
    )
    .await;
    let orders: Api<Order> = Api::namespaced(env.client.clone(), "real-node");
    let placed = env
        .wait("the Order placed and refused once", 60, || async {
            let (name, url) = resumed_orders(&orders).await.into_iter().next()?;
            let placed = (name?, url?);
            env.proxy
                .seen()
                .iter()
                .any(|s| s.injected)
                .then_some(placed)
        })
        .await;
    let id = container_status(&pod).container_id.expect("a container id");
    node.kill_container(&id).expect("kill -9");
    let restarted = ready_pod(&env, 1).await;
    assert_eq!(restarted.metadata.name, pod.metadata.name, "the same Pod");
    let terminated = container_status(&restarted)
        .last_state
        .and_then(|s| s.terminated)
        .expect("the killed run's state");
    assert_eq!(terminated.exit_code, 137, "{terminated:?}");
    env.proxy.clear_faults();
    env.certificate_ready("real-node", "resumed", 1).await;
    let after = resumed_orders(&orders).await;
    assert_eq!(
        after,
        [(Some(placed.0), Some(placed.1))],
        "the Order placed before the kill, and no other"
    );
    let certificates: Api<Certificate> = Api::namespaced(env.client.clone(), "real-node");
    assert!(certificates.get("resumed").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    real_node().await;
    // At rest the controller ran within 12 MiB here; 8 MiB with ten
    // certificates to issue at once is less than it needs.
    let env = Env::start_with_chart(|_| {}, &[], &chart("8Mi")).await;
    env.namespace("oom").await;
    for n in 0..10 {
        env.certificate(
            "oom",
            &format!("c{n}"),
            json!({"secretName": format!("c{n}-tls"), "dnsNames": [format!("c{n}.oom.test")]}),
        )
        .await;
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), deploy::NAMESPACE);
    let terminated = env
        .wait("the controller OOMKilled", 120, || async {
            let listed = pods
                .list(&ListParams::default().labels(deploy::APP_LABEL))
                .await
                .ok()?;
            listed.items.iter().find_map(|pod| {
                let status = container_status_opt(pod)?;
                let last = status.last_state.and_then(|s| s.terminated);
                let now = status.state.and_then(|s| s.terminated);
                last.or(now)
                    .filter(|t| t.reason.as_deref() == Some("OOMKilled"))
            })
        })
        .await;
    assert_eq!(terminated.exit_code, 137, "{terminated:?}");
}

//! The process kubelet: an ordinary client of the real API server, as the
//! Node `local` (`system:node:local`, so the Node authorizer and
//! NodeRestriction apply). It registers the Node, renews its Lease, binds
//! unscheduled Pods to it (as the scheduler would; those tolerating the
//! real node's taint are left to kube-scheduler), and runs Pods whose
//! images it knows (certwright's, Traefik's) through [`super::pod_runner`],
//! and finishes a Pod's deletion once its processes are gone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Binding, Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::pod_runner::{Slots, kill_all, supervise, terminate_all};
use super::{NODE_IP, NODE_NAME, Shared};
use crate::control_plane::client_for;

/// A Pod's log file.
pub fn log_path(dir: &Path, namespace: &str, name: &str) -> PathBuf {
    dir.join(format!("pod-{namespace}-{name}.log"))
}

struct Running {
    uid: String,
    task: tokio::task::JoinHandle<()>,
    /// The container processes, killed when the Pod goes.
    processes: Slots,
}

fn running() -> &'static Mutex<HashMap<(String, String), Running>> {
    static RUNNING: std::sync::OnceLock<Mutex<HashMap<(String, String), Running>>> =
        std::sync::OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

/// Kills every Pod process (the cluster is stopping).
pub fn stop_all() {
    let all: Vec<Running> = running()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .map(|(_, r)| r)
        .collect();
    for pod in all {
        pod.task.abort();
        kill_all(&pod.processes);
    }
}

fn stop(key: &(String, String)) {
    let pod = running()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
    if let Some(pod) = pod {
        pod.task.abort();
        kill_all(&pod.processes);
    }
}

/// The time now, as the API writes it in Pod and Node status.
pub(super) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Registers the Node, waits for the node lifecycle controller to lift
/// the not-ready taint, then runs the kubelet's loops.
pub async fn start(shared: Arc<Shared>) -> Result<(), String> {
    let plane = &shared.plane;
    let node_user = plane
        .ca()
        .client(&format!("system:node:{NODE_NAME}"), &["system:nodes"])?;
    let client = client_for(plane.url(), plane.ca_pem(), &node_user)?;
    let scheduler = plane.ca().client("system:kube-scheduler", &[])?;
    let scheduler = client_for(plane.url(), plane.ca_pem(), &scheduler)?;
    register(&client).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let node = nodes.get(NODE_NAME).await.map_err(|e| e.to_string())?;
        let tainted = node
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == "node.kubernetes.io/not-ready");
        if !tainted {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the node lifecycle controller kept the not-ready taint for 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::spawn(heartbeat(client.clone()));
    tokio::spawn(bind_loop(scheduler));
    tokio::spawn(pod_loop(shared.clone(), client));
    Ok(())
}

fn node_status() -> Value {
    let t = now();
    json!({"status": {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "the local kubelet is posting ready status",
             "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "lastHeartbeatTime": t, "lastTransitionTime": t}],
        "addresses": [{"type": "InternalIP", "address": NODE_IP.to_string()}, {"type": "Hostname", "address": NODE_NAME}],
        "capacity": {"cpu": "2", "memory": "24Gi", "pods": "250"},
        "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "250"},
        "nodeInfo": {"machineID": "local", "systemUUID": "local", "bootID": "local", "kernelVersion": "local",
            "osImage": "certwright local cluster", "containerRuntimeVersion": "process://local",
            "kubeletVersion": crate::tools::kubernetes_version(), "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": std::env::consts::ARCH}}})
}

async fn register(client: &kube::Client) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME,
        "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": std::env::consts::ARCH}}});
    match nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(node).map_err(|e| e.to_string())?,
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(format!("registering Node {NODE_NAME}: {e}")),
    }
    nodes
        .patch_status(
            NODE_NAME,
            &PatchParams::default(),
            &Patch::Merge(node_status()),
        )
        .await
        .map_err(|e| format!("writing Node {NODE_NAME} status: {e}"))?;
    renew_lease(client).await
}

async fn renew_lease(client: &kube::Client) -> Result<(), String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": NODE_NAME},
        "spec": {"holderIdentity": NODE_NAME, "leaseDurationSeconds": 40,
                 "renewTime": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()}});
    leases
        .patch(
            NODE_NAME,
            &PatchParams::apply("kubelet").force(),
            &Patch::Apply(lease),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("renewing the node Lease: {e}"))
}

/// Renews the Lease every 10 s and the Node's status every minute.
async fn heartbeat(client: kube::Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut ticks = 0u32;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let _ = renew_lease(&client).await;
        ticks += 1;
        if ticks.is_multiple_of(6) {
            let _ = nodes
                .patch_status(
                    NODE_NAME,
                    &PatchParams::default(),
                    &Patch::Merge(node_status()),
                )
                .await;
        }
    }
}

/// Binds every Pod without a node to this one (the scheduler's job).
async fn bind_loop(client: kube::Client) {
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields("spec.nodeName=");
    let mut stream = watcher(pods, config).boxed();
    while let Some(event) = stream.next().await {
        let pods = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => vec![pod],
            _ => continue,
        };
        for pod in pods {
            // The real node's Pods are kube-scheduler's to place.
            if tolerates_real_node(&pod) {
                continue;
            }
            let (Some(ns), Some(name)) = (pod.metadata.namespace, pod.metadata.name) else {
                continue;
            };
            let binding: Binding = match serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}}))
            {
                Ok(b) => b,
                Err(_) => continue,
            };
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let _ = api
                .create_subresource::<_, Value>("binding", &name, &PostParams::default(), &binding)
                .await;
        }
    }
}

fn tolerates_real_node(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .is_some_and(|t| {
            t.iter()
                .any(|t| t.key.as_deref() == Some(crate::node::TAINT))
        })
}

/// Watches the Pods bound to this node and keeps their processes in step.
async fn pod_loop(shared: Arc<Shared>, client: kube::Client) {
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={NODE_NAME}"));
    let mut stream = watcher(pods, config).boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                sync(&shared, &client, pod)
            }
            Ok(watcher::Event::Delete(pod)) => {
                stop(&key(&pod));
            }
            _ => {}
        }
    }
}

/// A Pod's namespace and name.
pub(super) fn key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

fn sync(shared: &Arc<Shared>, client: &kube::Client, pod: Pod) {
    let key = key(&pod);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        let stopping = running()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        // A kubelet's graceful termination: SIGTERM, the Pod's grace
        // period (at most 10 s here), then SIGKILL.
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or(pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .clamp(0, 10);
        let grace = std::time::Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        let api: Api<Pod> = Api::namespaced(client.clone(), &key.0);
        let name = key.1.clone();
        tokio::spawn(async move {
            if let Some(pod) = stopping {
                // The processes first (taken out of their slots, so the
                // supervisor does not restart them), then the supervisor
                // and with it the sandbox: a process shutting down
                // cleanly still has its network.
                let slots = pod.processes;
                let _ = tokio::task::spawn_blocking(move || terminate_all(&slots, grace)).await;
                pod.task.abort();
            }
            // The processes are gone: finish the delete, as a kubelet does.
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            let _ = api.delete(&name, &dp).await;
        });
        return;
    }
    {
        let mut all = running().lock().unwrap_or_else(|e| e.into_inner());
        match all.get(&key) {
            Some(r) if r.uid == uid => return,
            Some(_) => {
                drop(all);
                stop(&key);
                all = running().lock().unwrap_or_else(|e| e.into_inner());
            }
            None => {}
        }
        let processes = Slots::default();
        let task = tokio::spawn(supervise(
            shared.clone(),
            client.clone(),
            pod,
            processes.clone(),
        ));
        all.insert(
            key,
            Running {
                uid,
                task,
                processes,
            },
        );
    }
}

pub(super) async fn write_status(client: &kube::Client, pod: &Pod, status: Value) {
    let (ns, name) = key(pod);
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let patch = json!({"status": status});
    for _ in 0..5 {
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

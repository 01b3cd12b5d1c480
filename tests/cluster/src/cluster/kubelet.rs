//! The process kubelet: an ordinary client of the real API server, as the
//! Node `local` (`system:node:local`, so the Node authorizer and
//! NodeRestriction apply). It registers the Node, renews its Lease, binds
//! unscheduled Pods to it (as the scheduler would), and runs Pods whose
//! image it knows (certwright's, Traefik's) as processes of the built
//! binaries in a sandbox of their own: network namespace, Pod IP, and the
//! volumes ServiceAccount admission adds (a token bound to the Pod, the
//! cluster CA, the namespace) at their mountPath. It writes `pods/status`
//! (IP, phase, Ready after the readiness probe, restarts), restarts per
//! restartPolicy, and finishes a Pod's deletion once its process is gone.
//! Pods of other images stay Pending with a reason saying why.

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

use super::sandbox::{self, Sandbox};
use super::volumes::{field_ref, renew_tokens, volumes};
use super::{KUBERNETES_SERVICE_IP, NODE_IP, NODE_NAME, Shared};
use crate::control_plane::client_for;
use crate::process::Process;

/// A Pod's log file.
pub fn log_path(dir: &Path, namespace: &str, name: &str) -> PathBuf {
    dir.join(format!("pod-{namespace}-{name}.log"))
}

struct Running {
    uid: String,
    task: tokio::task::JoinHandle<()>,
    /// The container process, killed when the Pod goes.
    process: Arc<Mutex<Option<Process>>>,
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
        if let Some(mut p) = pod.process.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.kill();
        }
    }
}

fn stop(key: &(String, String)) {
    let pod = running()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
    if let Some(pod) = pod {
        pod.task.abort();
        if let Some(mut p) = pod.process.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.kill();
        }
    }
}

fn now() -> String {
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
        stop(&key);
        // The process is gone: finish the delete, as a kubelet does.
        let api: Api<Pod> = Api::namespaced(client.clone(), &key.0);
        let name = key.1.clone();
        tokio::spawn(async move {
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
        let process = Arc::new(Mutex::new(None));
        let task = tokio::spawn(supervise(
            shared.clone(),
            client.clone(),
            pod,
            process.clone(),
        ));
        all.insert(key, Running { uid, task, process });
    }
}

async fn write_status(client: &kube::Client, pod: &Pod, status: Value) {
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

fn container(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::Container> {
    pod.spec.as_ref()?.containers.first()
}

/// A Pod that this kubelet cannot run: Pending, saying why.
async fn refuse(client: &kube::Client, pod: &Pod, reason: &str, message: &str) {
    let name = container(pod).map(|c| c.name.clone()).unwrap_or_default();
    let image = container(pod)
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    write_status(
        client,
        pod,
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
               "containerStatuses": [{"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0,
                   "state": {"waiting": {"reason": reason, "message": message}}}]}),
    )
    .await;
}

fn command(binary: &Path, pod: &Pod, ip: &str, home: &Path) -> std::process::Command {
    let c = container(pod);
    // The image's entrypoint is the binary itself: drop command[0], keep the rest.
    let mut args: Vec<String> = c
        .and_then(|c| c.command.clone())
        .unwrap_or_default()
        .into_iter()
        .skip(1)
        .collect();
    args.extend(c.and_then(|c| c.args.clone()).unwrap_or_default());
    let mut command = std::process::Command::new(binary);
    command
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("KUBERNETES_SERVICE_HOST", KUBERNETES_SERVICE_IP.to_string())
        .env("KUBERNETES_SERVICE_PORT", "443")
        .env("HOSTNAME", pod.metadata.name.clone().unwrap_or_default());
    for env in c.and_then(|c| c.env.clone()).unwrap_or_default() {
        let value = match env.value_from.and_then(|v| v.field_ref) {
            Some(f) => field_ref(pod, ip, &f.field_path),
            None => env.value.unwrap_or_default(),
        };
        command.env(env.name, value);
    }
    command
}

async fn probe(pod: &Pod, ip: &str) -> bool {
    let Some(c) = container(pod) else {
        return false;
    };
    let Some(http) = c.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()) else {
        return true;
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let port = match &http.port {
        IntOrString::Int(p) => *p as u16,
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port as u16)
            .unwrap_or(0),
    };
    let path = http.path.clone().unwrap_or_else(|| "/".into());
    let Ok(Ok(mut stream)) = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect((ip, port)),
    )
    .await
    else {
        return false;
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut head)).await,
        Ok(Ok(_))
    ) && head.starts_with(b"HTTP/1.")
        && (head[9] == b'2' || head[9] == b'3')
}

fn container_status(pod: &Pod, ready: bool, restarts: u32, state: Value) -> Value {
    let c = container(pod);
    json!([{"name": c.map(|c| c.name.clone()), "image": c.and_then(|c| c.image.clone()),
            "imageID": "", "containerID": "process://local", "ready": ready, "started": true,
            "restartCount": restarts, "state": state}])
}

/// Runs one Pod until it is deleted (or exits for good).
async fn supervise(
    shared: Arc<Shared>,
    client: kube::Client,
    pod: Pod,
    slot: Arc<Mutex<Option<Process>>>,
) {
    let image = container(&pod)
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let Some(binary) = shared.options.binary_for(&image).map(Path::to_path_buf) else {
        let known: Vec<&str> = shared
            .options
            .images
            .iter()
            .map(|(p, _)| p.as_str())
            .collect();
        refuse(
            &client,
            &pod,
            "ImageNotRunnable",
            &format!(
                "the local cluster runs only images of {known:?} (as processes of the built binaries)"
            ),
        )
        .await;
        return;
    };
    let (ns, name) = key(&pod);
    let pod_dir = shared.dir.join(format!(
        "pod-{ns}-{name}-{}",
        pod.metadata.uid.clone().unwrap_or_default()
    ));
    let sandbox = match Sandbox::create(&shared.node, &shared.dir) {
        Ok(s) => s,
        Err(e) => return refuse(&client, &pod, "SandboxFailed", &e).await,
    };
    let (mounts, lifetime) = match volumes(&client, &pod, &pod_dir).await {
        Ok(v) => v,
        Err(e) => return refuse(&client, &pod, "CreateContainerConfigError", &e).await,
    };
    if let Some(seconds) = lifetime {
        tokio::spawn(renew_tokens(
            client.clone(),
            pod.clone(),
            pod_dir.clone(),
            seconds,
        ));
    }
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let ip = sandbox.ip.clone();
    let log = log_path(&shared.dir, &ns, &name);
    let mut restarts = 0u32;
    loop {
        let started = now();
        let mut cmd = command(&binary, &pod, &ip, &pod_dir);
        if let Err(e) = sandbox::enter(&mut cmd, &sandbox.netns, &mounts) {
            return refuse(&client, &pod, "CreateContainerError", &e).await;
        }
        let process = match Process::spawn_appending(&name, cmd, &log) {
            Ok(p) => p,
            Err(e) => return refuse(&client, &pod, "StartError", e.as_str()).await,
        };
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(process);
        write_status(
            &client,
            &pod,
            json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": NODE_IP.to_string(),
                   "hostIPs": [{"ip": NODE_IP.to_string()}], "startTime": started,
                   "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
                                  {"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
                   "containerStatuses": container_status(&pod, false, restarts, json!({"running": {"startedAt": started}}))}),
        )
        .await;
        let mut ready = false;
        let exit = loop {
            if !ready && probe(&pod, &ip).await {
                ready = true;
                write_status(
                    &client,
                    &pod,
                    json!({"conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
                           "containerStatuses": container_status(&pod, true, restarts, json!({"running": {"startedAt": started}}))}),
                )
                .await;
            }
            let exited = slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .and_then(|p| p.exited());
            if let Some(status) = exited {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(if ready { 200 } else { 50 })).await;
        };
        let code = exit.code().unwrap_or(137);
        let terminated = json!({"terminated": {"exitCode": code, "startedAt": started, "finishedAt": now(),
            "reason": if code == 0 { "Completed" } else { "Error" }}});
        let restart = policy == "Always" || (policy == "OnFailure" && code != 0);
        if !restart {
            let phase = if code == 0 { "Succeeded" } else { "Failed" };
            write_status(
                &client,
                &pod,
                json!({"phase": phase, "conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
                       "containerStatuses": container_status(&pod, false, restarts, terminated)}),
            )
            .await;
            return;
        }
        restarts += 1;
        write_status(
            &client,
            &pod,
            json!({"conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
                   "containerStatuses": container_status(&pod, false, restarts, json!({"waiting": {"reason": "CrashLoopBackOff"}}))}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200 * u64::from(restarts.min(10)))).await;
    }
}

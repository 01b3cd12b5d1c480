//! The pod runner ("kubelet"): Pods whose image matches certwright's run as
//! local processes of the freshly built binary, each on its own loopback
//! address, with the Pod's command, args and env (downward API
//! `status.podIP`, `metadata.name`, `metadata.namespace` resolved, and
//! `KUBECONFIG` injected so the process reaches the emulator as a real Pod
//! reaches its API server). Status (podIP, phase, Ready after the HTTP
//! readiness probe passes) is written back; restartPolicy is honoured;
//! output is kept as the Pod's log; deletion kills the process. Pods of other
//! images stay Pending.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::Shared;
use crate::apiserver::store::{EventType, Filter, now_rfc3339};

/// A running Pod process.
struct Running {
    uid: String,
    child: Arc<tokio::sync::Mutex<Option<Child>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct Kubelet {
    pods: Mutex<HashMap<(String, String), Running>>,
}

impl Kubelet {
    pub fn log_path(shared: &Shared, namespace: &str, name: &str) -> PathBuf {
        shared.dir.join(format!("pod-{namespace}-{name}.log"))
    }

    fn stop(&self, key: &(String, String)) {
        if let Some(running) = self
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
        {
            running.task.abort();
            if let Ok(mut child) = running.child.try_lock()
                && let Some(c) = child.as_mut()
            {
                let _ = c.start_kill();
            }
        }
    }

    pub fn stop_all(&self) {
        let keys: Vec<_> = self
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for key in keys {
            self.stop(&key);
        }
    }
}

/// Runs the kubelet until the cluster stops.
pub async fn run(shared: Arc<Shared>) {
    let Some(pods) = shared.api.store().resource("", "v1", "pods") else {
        return;
    };
    let mut events = shared.api.store().subscribe();
    let (initial, _) = shared.api.store().list(&pods, &Filter::default());
    for pod in initial {
        sync(&shared, &pod, false);
    }
    loop {
        match events.recv().await {
            Ok(event) if event.group.is_empty() && event.plural == "pods" => {
                sync(
                    &shared,
                    &event.object,
                    event.event_type == EventType::Deleted,
                );
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                let (all, _) = shared.api.store().list(&pods, &Filter::default());
                for pod in all {
                    sync(&shared, &pod, false);
                }
            }
            Err(_) => return,
        }
    }
}

fn sync(shared: &Arc<Shared>, pod: &Value, deleted: bool) {
    let meta = &pod["metadata"];
    let key = (
        meta["namespace"].as_str().unwrap_or("").to_string(),
        meta["name"].as_str().unwrap_or("").to_string(),
    );
    let uid = meta["uid"].as_str().unwrap_or("").to_string();
    if deleted || !meta["deletionTimestamp"].is_null() {
        shared.kubelet.stop(&key);
        return;
    }
    let known = shared
        .kubelet
        .pods
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .map(|r| r.uid.clone());
    match known {
        Some(u) if u == uid => return,
        Some(_) => shared.kubelet.stop(&key),
        None => {}
    }
    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap_or("");
    if !image.contains(&shared.options.image_pattern) {
        if pod["status"]["phase"].is_null() {
            write_status(
                shared,
                &key,
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}),
            );
        }
        return;
    }
    let ip = shared.allocate_ip(super::Block::Pods);
    let child = Arc::new(tokio::sync::Mutex::new(None));
    let task = tokio::spawn(supervise(
        shared.clone(),
        key.clone(),
        pod.clone(),
        ip,
        child.clone(),
    ));
    shared
        .kubelet
        .pods
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, Running { uid, child, task });
}

fn write_status(shared: &Shared, key: &(String, String), status: Value) {
    let Some(pods) = shared.api.store().resource("", "v1", "pods") else {
        return;
    };
    let _ = shared
        .api
        .store()
        .patch(&pods, &key.0, &key.1, Some("status"), "kubelet", |o| {
            crate::apiserver::patch::merge_patch(o, &json!({"status": status}));
            Ok(())
        });
}

fn field_ref(pod: &Value, ip: &str, path: &str) -> String {
    match path {
        "status.podIP" | "status.hostIP" => ip.to_string(),
        "metadata.name" => pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
        "metadata.namespace" => pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        "metadata.uid" => pod["metadata"]["uid"].as_str().unwrap_or("").to_string(),
        "spec.nodeName" => "local".to_string(),
        "spec.serviceAccountName" => pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        _ => String::new(),
    }
}

fn spawn_container(shared: &Shared, pod: &Value, ip: &str) -> std::io::Result<Child> {
    let container = &pod["spec"]["containers"][0];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    // The image's entrypoint is certwright itself: drop command[0], keep the rest.
    let mut args: Vec<String> = strings(&container["command"]).into_iter().skip(1).collect();
    args.extend(strings(&container["args"]));
    let mut command = Command::new(&shared.options.binary);
    command
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", &shared.kubeconfig);
    for env in container["env"].as_array().into_iter().flatten() {
        let name = env["name"].as_str().unwrap_or("");
        let value = match env["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some(path) => field_ref(pod, ip, path),
            None => env["value"].as_str().unwrap_or("").to_string(),
        };
        command.env(name, value);
    }
    let (namespace, name) = (
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or(""),
    );
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Kubelet::log_path(shared, namespace, name))?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
}

async fn probe(pod: &Value, ip: &str) -> bool {
    let probe = &pod["spec"]["containers"][0]["readinessProbe"]["httpGet"];
    let Some(port) = probe["port"].as_u64().or_else(|| {
        let name = probe["port"].as_str()?;
        pod["spec"]["containers"][0]["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)?["containerPort"]
            .as_u64()
    }) else {
        return probe.is_null();
    };
    let path = probe["path"].as_str().unwrap_or("/");
    let Ok(mut stream) = tokio::net::TcpStream::connect((ip, port as u16)).await else {
        return false;
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

async fn supervise(
    shared: Arc<Shared>,
    key: (String, String),
    pod: Value,
    ip: String,
    slot: Arc<tokio::sync::Mutex<Option<Child>>>,
) {
    let policy = pod["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_string();
    let mut restarts = 0u32;
    loop {
        let started = now_rfc3339();
        let child = match spawn_container(&shared, &pod, &ip) {
            Ok(c) => c,
            Err(e) => {
                write_status(
                    &shared,
                    &key,
                    json!({"phase": "Failed", "reason": "StartError", "message": e.to_string()}),
                );
                return;
            }
        };
        *slot.lock().await = Some(child);
        write_status(
            &shared,
            &key,
            json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1", "startTime": started,
                   "conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
                   "containerStatuses": [{"name": pod["spec"]["containers"][0]["name"], "ready": false, "restartCount": restarts,
                                          "state": {"running": {"startedAt": started}}}]}),
        );
        let mut ready = false;
        let exit = loop {
            if !ready && probe(&pod, &ip).await {
                ready = true;
                write_status(
                    &shared,
                    &key,
                    json!({"conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
                           "containerStatuses": [{"name": pod["spec"]["containers"][0]["name"], "ready": true, "restartCount": restarts,
                                                  "state": {"running": {"startedAt": started}}}]}),
                );
            }
            let mut guard = slot.lock().await;
            if let Some(child) = guard.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                break status;
            }
            drop(guard);
            tokio::time::sleep(Duration::from_millis(if ready { 200 } else { 50 })).await;
        };
        let code = exit.code().unwrap_or(-1);
        let restart = policy == "Always" || (policy == "OnFailure" && code != 0);
        if !restart {
            let phase = if code == 0 { "Succeeded" } else { "Failed" };
            write_status(
                &shared,
                &key,
                json!({"phase": phase, "conditions": [{"type": "Ready", "status": "False"}]}),
            );
            return;
        }
        restarts += 1;
        write_status(
            &shared,
            &key,
            json!({"conditions": [{"type": "Ready", "status": "False"}]}),
        );
        tokio::time::sleep(Duration::from_millis(200 * u64::from(restarts.min(10)))).await;
    }
}

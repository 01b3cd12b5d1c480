//! Running one Pod for the process kubelet: every container is a process
//! of the binary its image maps to, all in the Pod's sandbox (one network
//! namespace and Pod IP, so containers reach each other on localhost, as
//! in a real Pod), each with its own volumes at their mountPaths. It writes
//! `pods/status` (IP, phase, each container's state, Ready once every
//! readiness probe passes, restarts) and restarts containers per
//! restartPolicy. Pods of images it cannot run stay Pending with a reason.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use super::kubelet::{key, log_path, now, write_status};
use super::sandbox::{self, Mount, Sandbox};
use super::volumes::{field_ref, renew_tokens, volumes};
use super::{KUBERNETES_SERVICE_IP, NODE_IP, Shared};
use crate::process::Process;

/// The processes of a Pod's containers, by container index.
pub type Slots = Arc<Mutex<Vec<Option<Process>>>>;

/// Stops every process in `slots` as a kubelet deletes a Pod: SIGTERM,
/// up to `grace` to exit, then SIGKILL (at once for no grace). Blocks.
pub fn terminate_all(slots: &Slots, grace: std::time::Duration) {
    let mut taken: Vec<Process> = slots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter_mut()
        .filter_map(Option::take)
        .collect();
    if !grace.is_zero() {
        for p in &taken {
            p.signal_term();
        }
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline && !taken.iter_mut().all(|p| p.exited().is_some()) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for mut p in taken {
        p.kill();
    }
}

/// Kills every process in `slots`.
pub fn kill_all(slots: &Slots) {
    for slot in slots.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
        if let Some(mut p) = slot.take() {
            p.kill();
        }
    }
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
}

/// A Pod that this kubelet cannot run: Pending, saying why.
async fn refuse(client: &kube::Client, pod: &Pod, reason: &str, message: &str) {
    let statuses: Vec<Value> = containers(pod)
        .iter()
        .map(|c| {
            json!({"name": c.name, "image": c.image, "imageID": "", "ready": false, "restartCount": 0,
                   "state": {"waiting": {"reason": reason, "message": message}}})
        })
        .collect();
    write_status(
        client,
        pod,
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
               "containerStatuses": statuses}),
    )
    .await;
}

fn command(
    binary: &Path,
    pod: &Pod,
    c: &Container,
    ip: &str,
    home: &Path,
) -> std::process::Command {
    // The container's environment, each value expanded against the ones
    // before it, as the kubelet does.
    let mut env: Vec<(String, String)> = Vec::new();
    for var in c.env.clone().unwrap_or_default() {
        let value = match var.value_from.and_then(|v| v.field_ref) {
            Some(f) => field_ref(pod, ip, &f.field_path),
            None => expand(&var.value.unwrap_or_default(), &env),
        };
        env.push((var.name, value));
    }
    // The image's entrypoint is the binary itself: drop command[0], keep the
    // rest; `$(VAR)` in command and args is the container's variable.
    let mut args: Vec<String> = c
        .command
        .clone()
        .unwrap_or_default()
        .into_iter()
        .skip(1)
        .collect();
    args.extend(c.args.clone().unwrap_or_default());
    let mut command = std::process::Command::new(binary);
    command
        .args(args.iter().map(|a| expand(a, &env)))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("KUBERNETES_SERVICE_HOST", KUBERNETES_SERVICE_IP.to_string())
        .env("KUBERNETES_SERVICE_PORT", "443")
        .env("HOSTNAME", pod.metadata.name.clone().unwrap_or_default())
        .envs(env);
    command
}

/// Kubernetes' variable expansion in a container's command, args and env
/// values: `$(NAME)` becomes the variable's value when `env` defines it and
/// stays as written otherwise; `$$` is a literal `$`.
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after
            .strip_prefix('(')
            .and_then(|inner| inner.split_once(')'))
        {
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Whether `c`'s readiness probe passes (no probe: ready once started).
async fn probe(c: &Container, ip: &str) -> bool {
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

/// What the kubelet knows of one container.
struct State {
    ready: bool,
    restarts: u32,
    started: String,
    /// Its final exit code, once it will not be restarted.
    done: Option<i32>,
    /// When a container that exited may start again.
    restart_at: Option<Instant>,
}

impl State {
    fn json(&self, c: &Container) -> Value {
        let state = match (self.done, self.restart_at) {
            (Some(code), _) => json!({"terminated": {"exitCode": code, "startedAt": self.started,
                "finishedAt": now(), "reason": if code == 0 { "Completed" } else { "Error" }}}),
            (None, Some(_)) => json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            (None, None) => json!({"running": {"startedAt": self.started}}),
        };
        json!({"name": c.name, "image": c.image, "imageID": "", "containerID": "process://local",
               "ready": self.ready, "started": self.done.is_none() && self.restart_at.is_none(),
               "restartCount": self.restarts, "state": state})
    }
}

fn pod_status(pod: &Pod, states: &[State]) -> Value {
    let ready = states.iter().all(|s| s.ready);
    let flag = if ready { "True" } else { "False" };
    let statuses: Vec<Value> = containers(pod)
        .iter()
        .zip(states)
        .map(|(c, s)| s.json(c))
        .collect();
    json!({"conditions": [{"type": "Ready", "status": flag}, {"type": "ContainersReady", "status": flag}],
           "containerStatuses": statuses})
}

/// Runs one Pod until it is deleted (or all its containers exit for good).
pub async fn supervise(shared: Arc<Shared>, client: kube::Client, pod: Pod, slots: Slots) {
    let specs: Vec<Container> = containers(&pod).to_vec();
    let mut binaries: Vec<PathBuf> = Vec::new();
    for c in &specs {
        let image = c.image.clone().unwrap_or_default();
        let Some(binary) = shared.options.binary_for(&image) else {
            let known: Vec<&str> = shared
                .options
                .images
                .iter()
                .map(|(p, _)| p.as_str())
                .collect();
            let message = format!(
                "the local cluster runs only images of {known:?} (as processes of the built binaries); container {:?} has {image:?}",
                c.name
            );
            return refuse(&client, &pod, "ImageNotRunnable", &message).await;
        };
        binaries.push(binary.to_path_buf());
    }
    let (ns, name) = key(&pod);
    let pod_dir = shared.dir.join(format!(
        "pod-{ns}-{name}-{}",
        pod.metadata.uid.clone().unwrap_or_default()
    ));
    let sandbox = match Sandbox::create(&shared.node, &shared.dir) {
        Ok(s) => s,
        Err(e) => return refuse(&client, &pod, "SandboxFailed", &e).await,
    };
    let mut mounts: Vec<Vec<Mount>> = Vec::new();
    for index in 0..specs.len() {
        let (m, lifetime) = match volumes(&client, &pod, &pod_dir, index).await {
            Ok(v) => v,
            Err(e) => return refuse(&client, &pod, "CreateContainerConfigError", &e).await,
        };
        if let Some(seconds) = lifetime {
            tokio::spawn(renew_tokens(
                client.clone(),
                pod.clone(),
                pod_dir.clone(),
                seconds,
                index,
            ));
        }
        mounts.push(m);
    }
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let ip = sandbox.ip.clone();
    let log = log_path(&shared.dir, &ns, &name);
    let start = |index: usize| -> Result<Process, String> {
        let mut cmd = command(&binaries[index], &pod, &specs[index], &ip, &pod_dir);
        sandbox::enter(&mut cmd, &sandbox.netns, &mounts[index])?;
        Process::spawn_appending(&format!("{name}/{}", specs[index].name), cmd, &log)
    };
    *slots.lock().unwrap_or_else(|e| e.into_inner()) = specs.iter().map(|_| None).collect();
    let mut states = Vec::new();
    for index in 0..specs.len() {
        match start(index) {
            Ok(p) => slots.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(p),
            Err(e) => {
                kill_all(&slots);
                return refuse(&client, &pod, "StartError", &e).await;
            }
        }
        states.push(State {
            ready: false,
            restarts: 0,
            started: now(),
            done: None,
            restart_at: None,
        });
    }
    let mut status = pod_status(&pod, &states);
    for (k, v) in json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "hostIP": NODE_IP.to_string(), "hostIPs": [{"ip": NODE_IP.to_string()}], "startTime": now()})
    .as_object()
    .into_iter()
    .flatten()
    {
        status[k] = v.clone();
    }
    status["conditions"]
        .as_array_mut()
        .into_iter()
        .for_each(|c| {
            c.extend([
                json!({"type": "PodScheduled", "status": "True"}),
                json!({"type": "Initialized", "status": "True"}),
            ])
        });
    write_status(&client, &pod, status).await;
    loop {
        let mut changed = false;
        for (index, state) in states.iter_mut().enumerate() {
            if state.done.is_some() {
                continue;
            }
            if let Some(at) = state.restart_at {
                if Instant::now() >= at {
                    match start(index) {
                        Ok(p) => {
                            slots.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(p);
                            state.restart_at = None;
                            state.started = now();
                        }
                        Err(_) => state.restart_at = Some(Instant::now() + Duration::from_secs(1)),
                    }
                    changed = true;
                }
                continue;
            }
            if !state.ready && probe(&specs[index], &ip).await {
                state.ready = true;
                changed = true;
            }
            let exited = slots.lock().unwrap_or_else(|e| e.into_inner())[index]
                .as_mut()
                .and_then(|p| p.exited());
            if let Some(exit) = exited {
                let code = exit.code().unwrap_or(137);
                state.ready = false;
                changed = true;
                slots.lock().unwrap_or_else(|e| e.into_inner())[index] = None;
                if policy == "Always" || (policy == "OnFailure" && code != 0) {
                    state.restarts += 1;
                    state.restart_at = Some(
                        Instant::now()
                            + Duration::from_millis(200 * u64::from(state.restarts.min(10))),
                    );
                } else {
                    state.done = Some(code);
                }
            }
        }
        if states.iter().all(|s| s.done.is_some()) {
            let phase = if states.iter().all(|s| s.done == Some(0)) {
                "Succeeded"
            } else {
                "Failed"
            };
            let mut status = pod_status(&pod, &states);
            status["phase"] = json!(phase);
            write_status(&client, &pod, status).await;
            return;
        }
        if changed {
            write_status(&client, &pod, pod_status(&pod, &states)).await;
        }
        let all_ready = states.iter().all(|s| s.ready);
        tokio::time::sleep(Duration::from_millis(if all_ready { 200 } else { 50 })).await;
    }
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn variables_expand_as_the_kubelet_expands_them() {
        let env = vec![
            ("POD_NAMESPACE".to_string(), "cert-manager".to_string()),
            ("A".to_string(), "1".to_string()),
        ];
        assert_eq!(
            expand("--cluster-resource-namespace=$(POD_NAMESPACE)", &env),
            "--cluster-resource-namespace=cert-manager"
        );
        assert_eq!(expand("$(A)$(A)-$(MISSING)", &env), "11-$(MISSING)");
        assert_eq!(expand("$$(A) costs $5 $", &env), "$(A) costs $5 $");
        assert_eq!(expand("$(unclosed", &env), "$(unclosed");
    }
}

//! A real node beside the control plane: containerd 1.6 with runc and the
//! CNI bridge, the kubelet, kube-proxy (nftables) and kube-scheduler, all
//! from Debian's packages and the pinned Kubernetes build. It runs Pods of
//! images built by a real OCI builder ([`images`]), with their
//! securityContext, probes, memory limits, logs and exec enforced by the
//! real parts.
//!
//! Layout (`docs/development.md` draws it):
//! - **Network.** The node has a network namespace of its own, joined to
//!   the control plane's by a veth pair (10.245.255.1 ↔ [`REAL_NODE_IP`]);
//!   its Pods hang on bridge `cw1` in [`POD_CIDR`]. Pods reach the API
//!   server through the `kubernetes` Service, which leads to the
//!   fault-injecting proxy, as on the process kubelet.
//! - **Mounts.** containerd, the kubelet and kube-proxy share one private
//!   mount namespace, with tmpfs over `/run`, `/var/lib` and `/var/log`
//!   (where they write outside their configured roots) and plain files
//!   bound over the `/proc/sys` tunables the kubelet would set machine-wide.
//!   Nothing reaches the host. They are started with `setns`, never `ip
//!   netns exec` (which gives each its own mount namespace, and hides the
//!   kubelet's volume mounts from containerd).
//! - **Teardown.** Every daemon and Pod is below one cgroup
//!   ([`cgroup`]); the mount namespace's holder kills it when the run dies,
//!   and the next start kills one left by a run that could not.
//! - **Scheduling.** The node is tainted [`TAINT`]: only Pods that tolerate
//!   it (and select it) run here; kube-scheduler places them, and the
//!   process kubelet leaves them alone.
//! - **No cluster DNS.** Pods get an empty resolv.conf: everything the
//!   tests need is addressed by IP.

pub mod cgroup;
mod config;
pub mod images;

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use serde_json::json;

use crate::cluster::{API_PROXY_PORT, APISERVER_PORT, NODE_IP, Shared};
use crate::control_plane::kubeconfig;
use crate::netns::Netns;
use crate::process::Process;
use crate::tools::{kubernetes_version, tool};
use cgroup::NodeCgroup;

/// The Node's name.
pub const NODE_NAME: &str = "real";
/// The node's address (its end of the link to the control plane).
pub const REAL_NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 245, 255, 2);
/// The control plane's end of that link.
const LINK_IP: Ipv4Addr = Ipv4Addr::new(10, 245, 255, 1);
/// The node's Pod addresses.
pub const POD_CIDR: &str = "10.245.0.0/17";
const POD_GATEWAY: &str = "10.245.0.1";
/// Everything of the node's: Pods and the link (routed nowhere on the host).
pub const RANGE: &str = "10.245.0.0/16";
/// The taint that keeps other Pods off the node.
pub const TAINT: &str = "certwright.test/real-node";
/// containerd's sandbox image.
pub const PAUSE_IMAGE: &str = "certwright.test/pause:1";
/// The kubelet's writes to these machine-wide tunables land in plain files.
const TUNABLES: &[&str] = &[
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// The scheduling a Pod needs to run on the real node (for a chart's
/// `nodeSelector` and `tolerations`).
pub fn placement() -> (serde_json::Value, serde_json::Value) {
    (
        json!({"kubernetes.io/hostname": NODE_NAME}),
        json!([{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}]),
    )
}

/// A running real node. Dropping it tears everything down.
pub struct RealNode {
    dir: PathBuf,
    // Dropped in this order: the daemons, then whatever their cgroup still
    // holds (shims, containers), then the namespaces.
    daemons: Vec<Process>,
    cgroup: NodeCgroup,
    _mounts: Process,
    _netns: Arc<Netns>,
}

impl std::fmt::Debug for RealNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RealNode({})", self.dir.display())
    }
}

impl RealNode {
    /// Starts the node (and kube-scheduler) beside `shared`'s control plane,
    /// with certwright's image from `certwright_binary` tagged `tag`. Run
    /// it on the cluster's node runtime.
    pub async fn start(
        shared: &Arc<Shared>,
        certwright_binary: &Path,
        tag: &str,
    ) -> Result<Self, String> {
        cgroup::remove_stale();
        let dir = shared.dir.join("real-node");
        std::fs::create_dir_all(dir.join("cni")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir.join("tunables")).map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        // The images first: they need nothing else, and take the longest.
        let (archives, built) = {
            let (dir, binary, tag) = (
                dir.clone(),
                certwright_binary.to_path_buf(),
                tag.to_string(),
            );
            tokio::task::spawn_blocking(move || {
                let t = std::time::Instant::now();
                let archives = vec![
                    images::pause(&dir)?,
                    images::certwright(&dir, &binary, &tag)?,
                ];
                Ok::<_, String>((archives, t.elapsed()))
            })
            .await
            .map_err(|e| e.to_string())??
        };
        let netns = Netns::new("real-node", &dir)?;
        link(&shared.node, &netns)?;
        let cgroup = NodeCgroup::create()?;
        write_files(shared, &dir, &cgroup)?;
        let mounts = mount_namespace(&dir, &netns, &cgroup).await?;
        let mnt = std::fs::File::open(format!("/proc/{}/ns/mnt", mounts.id()))
            .map_err(|e| format!("opening the node's mount namespace: {e}"))?;
        let socket = dir.join("containerd.sock");
        let k8s = format!("k8s-{}", kubernetes_version());
        let on_node = |name: &str, program: PathBuf, args: Vec<String>| {
            let mut command = Command::new(program);
            command.args(args);
            join_node(&mut command, &cgroup, &mnt);
            netns.enter(&mut command);
            Process::spawn(name, command, &dir.join(format!("{name}.log")))
        };
        let mut daemons = vec![on_node(
            "containerd",
            "containerd".into(),
            vec![format!(
                "--config={}",
                dir.join("containerd.toml").display()
            )],
        )?];
        wait_for(
            "containerd's socket",
            Duration::from_secs(20),
            &mut daemons,
            || socket.exists(),
        )
        .await?;
        for archive in &archives {
            images::import(&socket, archive)?;
        }
        daemons.push(on_node(
            "kubelet",
            tool(&k8s, "kubelet")?,
            vec![
                format!("--config={}", dir.join("kubelet.yaml").display()),
                format!("--kubeconfig={}", dir.join("kubelet.kubeconfig").display()),
                format!("--hostname-override={NODE_NAME}"),
                format!("--node-ip={REAL_NODE_IP}"),
                "--v=1".into(),
            ],
        )?);
        daemons.push(on_node(
            "kube-proxy",
            tool(&k8s, "kube-proxy")?,
            vec![format!(
                "--config={}",
                dir.join("kube-proxy.yaml").display()
            )],
        )?);
        // The scheduler is the control plane's: in its namespace, below the
        // node's cgroup only for the teardown.
        let mut scheduler = Command::new(tool(&k8s, "kube-scheduler")?);
        scheduler.arg(format!(
            "--config={}",
            dir.join("kube-scheduler.yaml").display()
        ));
        join_node(&mut scheduler, &cgroup, &mnt);
        shared.node.enter(&mut scheduler);
        daemons.push(Process::spawn(
            "kube-scheduler",
            scheduler,
            &dir.join("kube-scheduler.log"),
        )?);
        kubernetes_endpoints(&shared.admin()).await?;
        let nodes: Api<Node> = Api::all(shared.admin());
        wait_ready(&nodes, &mut daemons).await?;
        eprintln!(
            "real node: Ready {:.1} s after the start ({:.1} s of it building images)",
            started.elapsed().as_secs_f64(),
            built.as_secs_f64()
        );
        Ok(Self {
            dir,
            daemons,
            cgroup,
            _mounts: mounts,
            _netns: netns,
        })
    }

    /// Where the node's daemons log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A container's main process (`containerd://<id>`, as its Pod's
    /// status says): the lowest pid in its cgroup.
    pub fn main_process(&self, container_id: &str) -> Result<i32, String> {
        let id = container_id.rsplit("//").next().unwrap_or(container_id);
        self.cgroup
            .processes_of(id)
            .into_iter()
            .min()
            .ok_or_else(|| format!("no process in the cgroup of {container_id}"))
    }

    /// SIGKILLs a container's [main process](Self::main_process), as the
    /// kernel's OOM killer or a crash would end it; says which.
    pub fn kill_container(&self, container_id: &str) -> Result<i32, String> {
        let pid = self.main_process(container_id)?;
        // SAFETY: kill(2) on a process of the node's own cgroup.
        match unsafe { libc::kill(pid, libc::SIGKILL) } {
            0 => Ok(pid),
            _ => Err(format!(
                "kill -9 {pid}: {}",
                std::io::Error::last_os_error()
            )),
        }
    }

    /// The memory limit the kernel enforces on the cgroup of `pid`.
    pub fn memory_limit_of(&self, pid: i32) -> Option<u64> {
        self.cgroup.memory_limit_of(pid)
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.daemons.clear();
        self.cgroup.kill_and_remove();
    }
}

/// Joins the veth link between the control plane's namespace and the
/// node's, and routes the node's range over it.
fn link(control_plane: &Netns, node: &Netns) -> Result<(), String> {
    let pid = node.pid().to_string();
    control_plane.ip(&[
        "link", "add", "cwr0", "type", "veth", "peer", "name", "cwr1", "netns", &pid,
    ])?;
    control_plane.ip(&["addr", "add", &format!("{LINK_IP}/30"), "dev", "cwr0"])?;
    control_plane.ip(&["link", "set", "cwr0", "up"])?;
    control_plane.ip(&["route", "add", POD_CIDR, "via", &REAL_NODE_IP.to_string()])?;
    node.ip(&["addr", "add", &format!("{REAL_NODE_IP}/30"), "dev", "cwr1"])?;
    node.ip(&["link", "set", "cwr1", "up"])?;
    node.ip(&["route", "add", "default", "via", &LINK_IP.to_string()])?;
    for ns in [control_plane, node] {
        sysctl(ns, "net/ipv4/ip_forward", "1")?;
    }
    Ok(())
}

/// Writes `value` to `/proc/sys/<key>` as seen from `ns` (a per-namespace
/// tunable).
fn sysctl(ns: &Netns, key: &str, value: &str) -> Result<(), String> {
    let mut command = Command::new("sh");
    command.args(["-c", &format!("echo {value} > /proc/sys/{key}")]);
    ns.enter(&mut command);
    let status = command.status().map_err(|e| e.to_string())?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("setting {key} in the node's namespace failed"))
}

/// The node's certificates, kubeconfigs and configuration files.
fn write_files(shared: &Shared, dir: &Path, cgroup: &NodeCgroup) -> Result<(), String> {
    let plane = &shared.plane;
    let server = format!("https://{NODE_IP}:{APISERVER_PORT}");
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("writing {name}: {e}"))
    };
    let ca = plane.ca();
    for (file, user, groups) in [
        (
            "kubelet",
            format!("system:node:{NODE_NAME}"),
            vec!["system:nodes"],
        ),
        ("kube-proxy", "system:kube-proxy".to_string(), vec![]),
        (
            "kube-scheduler",
            "system:kube-scheduler".to_string(),
            vec![],
        ),
    ] {
        let pair = ca.client(&user, &groups)?;
        write(
            &format!("{file}.kubeconfig"),
            &kubeconfig(&server, plane.ca_pem(), &pair, "default"),
        )?;
    }
    let socket = dir.join("containerd.sock");
    write("ca.crt", plane.ca_pem())?;
    write("resolv.conf", "")?;
    write("containerd.toml", &config::containerd(dir, &socket))?;
    write("cni/10-certwright.conflist", &config::cni())?;
    write(
        "kubelet.yaml",
        &config::kubelet(dir, &socket, &cgroup.pods_root()),
    )?;
    write("kube-proxy.yaml", &config::kube_proxy(dir))?;
    write("kube-scheduler.yaml", &config::kube_scheduler(dir))
}

/// The node's mount namespace, held by a shell that mounts the tmpfs and
/// binds the tunables, then waits; when the run dies it gets SIGTERM and
/// kills the node's cgroup.
async fn mount_namespace(
    dir: &Path,
    netns: &Netns,
    cgroup: &NodeCgroup,
) -> Result<Process, String> {
    let marker = dir.join("mounted");
    let mut binds = String::new();
    for key in TUNABLES {
        let copy = dir.join("tunables").join(key.replace('/', "."));
        binds += &format!(
            "cat /proc/sys/{key} > {copy} && mount --bind {copy} /proc/sys/{key}\n",
            copy = copy.display()
        );
    }
    let script = format!(
        "set -e
for d in /run /var/lib /var/log; do mount -t tmpfs -o mode=0755 certwright-node $d; done
{binds}touch {marker}
set +e
trap '{kill}; exit 0' TERM INT HUP
while :; do sleep 1 & wait $!; done
",
        marker = marker.display(),
        kill = cgroup.kill_script(),
    );
    let mut command = Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    netns.enter(&mut command);
    let mut holder = Process::spawn_guardian(
        "the node's mount namespace",
        command,
        &dir.join("mounts.log"),
    )?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        if let Some(failure) = holder.failure() {
            return Err(failure);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the node's mounts were not made in 10 s: {}",
                holder.log()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(holder)
}

/// Makes `command` join the node's cgroup and mount namespace before it
/// execs.
fn join_node(command: &mut Command, cgroup: &NodeCgroup, mnt: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let procs: Vec<CString> = cgroup
        .daemon_procs()
        .iter()
        .filter_map(|p| CString::new(p.as_os_str().as_encoded_bytes()).ok())
        .collect();
    let mnt = mnt.as_raw_fd();
    // SAFETY: open, write, close and setns are async-signal-safe; the
    // strings were made before the fork and the descriptor outlives it.
    unsafe {
        command.pre_exec(move || {
            for path in &procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setns(mnt, libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The `kubernetes` Service's endpoint: the fault-injecting proxy, so
/// faults reach the node's Pods as they reach the process kubelet's. (The
/// API server writes none itself: `--endpoint-reconciler-type=none`.)
async fn kubernetes_endpoints(client: &kube::Client) -> Result<(), String> {
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {
            "kubernetes.io/service-name": "kubernetes",
            "endpointslice.kubernetes.io/managed-by": "certwright-testcluster"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [NODE_IP.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": API_PROXY_PORT, "protocol": "TCP"}],
    });
    crate::deploy::apply(client, slice).await
}

async fn wait_for(
    what: &str,
    limit: Duration,
    daemons: &mut [Process],
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        if let Some(failure) = daemons.iter_mut().find_map(Process::failure) {
            return Err(failure);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("waited {} s for {what}", limit.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits until the Node is Ready and the not-ready taint is gone.
async fn wait_ready(nodes: &Api<Node>, daemons: &mut [Process]) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(node) = nodes.get(NODE_NAME).await {
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let tainted = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key.starts_with("node.kubernetes.io/")));
            if ready && !tainted {
                return Ok(());
            }
        }
        if let Some(failure) = daemons.iter_mut().find_map(Process::failure) {
            return Err(failure);
        }
        if tokio::time::Instant::now() > deadline {
            let kubelet = daemons.iter().find(|d| d.name() == "kubelet");
            return Err(format!(
                "the real node was not Ready in 90 s; the kubelet's log ends:\n{}",
                kubelet.map(|k| k.log_tail(30)).unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

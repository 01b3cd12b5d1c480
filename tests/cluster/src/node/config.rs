//! The real node's configuration files: containerd's, the CNI network's,
//! the kubelet's, kube-proxy's and kube-scheduler's. Everything they write
//! outside these files goes to the node's own tmpfs mounts (`/run`,
//! `/var/lib`, `/var/log` in its mount namespace).

use std::path::Path;

use super::{NODE_NAME, PAUSE_IMAGE, POD_CIDR, POD_GATEWAY, REAL_NODE_IP, TAINT};

/// containerd 1.6 (config version 2): the CRI plugin with runc, the CNI
/// network below, and the pause image of our own as the sandbox.
/// `restrict_oom_score_adj`: our machines give root no CAP_SYS_RESOURCE,
/// and runc refused every sandbox asking for -998 ("can't get final
/// child's PID from pipe: EOF"). The `opt` plugin would write `/opt`.
pub fn containerd(dir: &Path, socket: &Path) -> String {
    format!(
        r#"version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
        socket = socket.display(),
        cni = dir.join("cni").display(),
    )
}

/// The Pod network: a bridge on the node holding the gateway, addresses
/// from the node's Pod range, and hairpin so a Pod reaches itself through
/// a Service.
pub fn cni() -> String {
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "certwright-node", "plugins": [
  {{"type": "bridge", "bridge": "cw1", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{POD_CIDR}", "gateway": "{POD_GATEWAY}"}}]],
            "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
]}}
"#
    )
}

/// The kubelet. Requests from the API server (logs, exec) are
/// authenticated by the cluster CA's client certificate and then allowed:
/// the kubelet listens only inside the run's own namespaces. No image is
/// ever collected and nothing evicted on disk use (the images are imported
/// once, and there is no registry to pull them again).
/// `podLogsDir` is the field's name (`podLogsDirectory` is silently
/// ignored).
/// The `cgroupfs` driver serves cgroup v1 and v2 alike.
pub fn kubelet(dir: &Path, socket: &Path, cgroup_root: &str) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {REAL_NODE_IP}
port: 10250
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: "{ca}"}}
authorization: {{mode: AlwaysAllow}}
cgroupDriver: cgroupfs
cgroupRoot: "{cgroup_root}"
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
containerRuntimeEndpoint: "unix://{socket}"
failSwapOn: false
protectKernelDefaults: false
podLogsDir: /var/log/pods
resolvConf: "{resolv}"
clusterDomain: cluster.local
maxPods: 250
podCIDR: {POD_CIDR}
registerNode: true
registerWithTaints:
- {{key: {TAINT}, value: "true", effect: NoSchedule}}
nodeStatusUpdateFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 20s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 24h
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}}
serializeImagePulls: false
shutdownGracePeriod: 0s
containerLogMaxSize: 10Mi
"#,
        ca = dir.join("ca.crt").display(),
        socket = socket.display(),
        resolv = dir.join("resolv.conf").display(),
    )
}

/// kube-proxy in nftables mode. It masquerades all Service traffic, so a
/// reply always comes back through the node (a Pod calling itself through
/// its own Service included), and leaves the machine-wide conntrack
/// tunables alone.
pub fn kube_proxy(dir: &Path) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: "{kubeconfig}"}}
mode: nftables
hostnameOverride: {NODE_NAME}
bindAddress: {REAL_NODE_IP}
healthzBindAddress: "{REAL_NODE_IP}:10256"
metricsBindAddress: "{REAL_NODE_IP}:10249"
clusterCIDR: {POD_CIDR}
nftables:
  masqueradeAll: true
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
"#,
        kubeconfig = dir.join("kube-proxy.kubeconfig").display(),
    )
}

/// kube-scheduler: one replica, no election.
pub fn kube_scheduler(dir: &Path) -> String {
    format!(
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection: {{kubeconfig: "{kubeconfig}"}}
leaderElection: {{leaderElect: false}}
"#,
        kubeconfig = dir.join("kube-scheduler.kubeconfig").display(),
    )
}

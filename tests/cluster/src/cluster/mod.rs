//! The local cluster: the real control plane in a node network namespace
//! of the run's own, with a process kubelet (Pods of certwright's and
//! Traefik's images run as processes in Pod namespaces on a bridge), a
//! Service proxy on the cluster IPs, Traefik as the ingress controller, and
//! a fault-injecting proxy in front of kube-apiserver that Pods reach
//! through the `kubernetes` Service. Nothing is added to the host's
//! namespace but `unreachable` routes for the Pod and Service ranges (a
//! safety net); tests and kubectl reach the cluster through forwarders on
//! 127.0.0.1. Pebble validates HTTP-01 as Let's Encrypt validates a real
//! cluster: DNS → ingress Service → Traefik → solver Service → Pod.

pub mod api_proxy;
pub mod audit;
pub mod ingress;
pub mod kubelet;
pub mod pod_runner;
pub mod sandbox;
pub mod services;
pub mod volumes;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::control_plane::{self, ControlPlane};
use crate::netns::Netns;
use crate::process::remove_stale_dirs;

/// The node's address: the bridge the Pods hang on, where the API server,
/// pebble and the proxies listen.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
/// Pod addresses come from here (the node has the first).
pub const POD_CIDR: &str = "10.244.0.0/16";
/// Service cluster IPs; the first is the `kubernetes` Service.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// kube-apiserver's port on the node.
pub const APISERVER_PORT: u16 = 6443;
/// The fault-injecting proxy's port (behind the `kubernetes` Service).
pub const API_PROXY_PORT: u16 = 6444;
pub use ingress::{INGRESS_IP, INGRESS_PORT};
/// The Node's name.
pub const NODE_NAME: &str = "local";
const BRIDGE: &str = "cw0";

/// The image whose Pods run our DNS-01 webhook solver (tests/tools/cert-manager).
pub const DNS_WEBHOOK_IMAGE: &str = "example.test/bind-dns-webhook";

/// What the local cluster runs.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Which binary runs a Pod: the first whose pattern its first
    /// container's image contains (the image's entrypoint is the binary).
    pub images: Vec<(String, PathBuf)>,
    /// The IngressClass Traefik serves.
    pub ingress_class: String,
    /// Whether the cluster starts with certwright's CRDs (`certwright
    /// crds`); without them, a test installs cert-manager's.
    pub certwright_crds: bool,
}

impl ClusterOptions {
    /// Pods of certwright's image run `binary`; Traefik's image and the DNS
    /// webhook's run what `scripts/install-tools` built.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        let mut images = vec![("certwright".to_string(), binary.into())];
        if let Ok(traefik) = crate::tools::traefik_tool() {
            images.push((traefik_image(), traefik));
        }
        if let Ok(webhook) = crate::tools::cert_manager_tool("dns-webhook") {
            images.push((DNS_WEBHOOK_IMAGE.to_string(), webhook));
        }
        // cert-manager's own images (its chart's and its solver Pods').
        for (image, tool) in crate::cert_manager::IMAGES {
            if let Ok(binary) = crate::tools::cert_manager_tool(tool) {
                images.push((image.to_string(), binary));
            }
        }
        Self {
            images,
            ingress_class: "certwright-test".into(),
            certwright_crds: true,
        }
    }

    /// The binary that runs `image`, if any.
    pub fn binary_for(&self, image: &str) -> Option<&Path> {
        self.images
            .iter()
            .find(|(pattern, _)| image.contains(pattern.as_str()))
            .map(|(_, binary)| binary.as_path())
    }
}

/// The image name of the Traefik Deployment.
fn traefik_image() -> String {
    format!("traefik:{}", crate::tools::traefik_version())
}

/// What the cluster's parts share.
pub struct Shared {
    pub options: ClusterOptions,
    pub dir: PathBuf,
    pub node: Arc<Netns>,
    pub plane: ControlPlane,
    pub api_proxy: api_proxy::Faults,
}

impl Shared {
    /// An admin client, from the node's namespace.
    pub fn admin(&self) -> kube::Client {
        self.plane.client()
    }
}

/// A running local cluster. Its parts run on a runtime whose threads live
/// in the node's namespace; dropping it stops everything.
pub struct LocalCluster {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    api_forward: SocketAddr,
    ingress_forward: SocketAddr,
    kubeconfig: PathBuf,
    routes: SafetyRoutes,
    /// The real node, once a test asked for it.
    real_node: tokio::sync::OnceCell<Arc<crate::node::RealNode>>,
}

/// `unreachable` routes in this process's namespace for the cluster's
/// ranges, removed on drop.
struct SafetyRoutes(Vec<&'static str>);

impl Drop for SafetyRoutes {
    fn drop(&mut self) {
        remove_safety_routes(&self.0);
    }
}

/// Refuses ranges the machine already routes somewhere, then routes them
/// nowhere, so a cluster address dialled from the host fails at once.
fn add_safety_routes() -> Result<Vec<&'static str>, String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map_err(|e| format!("running ip route: {e} (install iproute2)"))?;
    let table = String::from_utf8_lossy(&out.stdout);
    let mut added = Vec::new();
    for range in [POD_CIDR, SERVICE_CIDR, crate::node::RANGE] {
        let prefix = range.split('.').take(2).collect::<Vec<_>>().join(".") + ".";
        if let Some(line) = table
            .lines()
            .find(|l| l.contains(&prefix) && !l.starts_with("unreachable"))
        {
            return Err(format!(
                "this machine already routes {range} ({line}); the local cluster needs it to itself"
            ));
        }
        let status = std::process::Command::new("ip")
            .args(["route", "replace", "unreachable", range])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!(
                "ip route replace unreachable {range} failed (root is needed)"
            ));
        }
        added.push(range);
    }
    Ok(added)
}

fn remove_safety_routes(routes: &[&str]) {
    for range in routes {
        let _ = std::process::Command::new("ip")
            .args(["route", "del", "unreachable", range])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Builds the node network: a bridge holding the node address, and the
/// Service range as local addresses (so the Service proxy can bind any).
fn node_network(node: &Netns) -> Result<(), String> {
    // A fixed MAC: a bridge otherwise takes the lowest MAC of its ports,
    // so removing a Pod's veth can change it, and every Pod then answers
    // the node at a stale ARP entry for ~45 s (seen when Traefik's Pod was
    // replaced: the new Pod was Ready yet unreachable).
    node.ip(&[
        "link",
        "add",
        BRIDGE,
        "address",
        "02:63:77:00:00:01",
        "type",
        "bridge",
    ])?;
    node.ip(&["addr", "add", &format!("{NODE_IP}/16"), "dev", BRIDGE])?;
    node.ip(&["link", "set", BRIDGE, "up"])?;
    node.ip(&["route", "add", "local", SERVICE_CIDR, "dev", "lo"])
}

/// Forwards connections to `listener` (this process's namespace) to
/// `target` (dialled from the runtime's, the node's).
async fn forward(listener: tokio::net::TcpListener, target: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = outbound.set_nodelay(true);
                let _ = inbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// A cache of every `K`, kept by a watch on the current runtime.
pub(crate) fn reflect<K>(api: Api<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .for_each(|_| futures_util::future::ready(()));
    tokio::spawn(stream);
    store
}

/// Runs `future` on a thread of `runtime` (in the node) and waits for it.
fn on_node<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    future: impl Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    runtime
        .block_on(runtime.spawn(future))
        .map_err(|e| format!("starting the cluster: {e}"))?
}

fn loopback_listener() -> Result<tokio::net::TcpListener, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())
}

impl LocalCluster {
    /// Starts everything (tens of seconds: the API server's start on two cores).
    pub fn start(options: ClusterOptions) -> Result<Self, String> {
        if options.binary_for(&traefik_image()).is_none() {
            crate::tools::traefik_tool()?;
        }
        let root = std::env::temp_dir().join("certwright-cluster");
        remove_stale_dirs(&root);
        let dir = root.join(format!("{}-0", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let routes = SafetyRoutes(add_safety_routes()?);
        Self::start_in(options, dir, routes)
    }

    fn start_in(
        options: ClusterOptions,
        dir: PathBuf,
        routes: SafetyRoutes,
    ) -> Result<Self, String> {
        let node = Netns::new("node", &dir)?;
        node_network(&node)?;
        let fd = node.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("local-cluster")
            .enable_all()
            .on_thread_start(move || {
                if let Err(e) = fd.join_current_thread() {
                    eprintln!("local cluster: a runtime thread could not join the node: {e}");
                }
            })
            .build()
            .map_err(|e| format!("starting the node runtime: {e}"))?;
        let entered = runtime.enter();
        let api_listener = loopback_listener()?;
        let ingress_listener = loopback_listener()?;
        let api_forward = api_listener.local_addr().map_err(|e| e.to_string())?;
        let ingress_forward = ingress_listener.local_addr().map_err(|e| e.to_string())?;
        drop(entered);
        let plane_options = control_plane::Options {
            address: IpAddr::V4(NODE_IP),
            port: APISERVER_PORT,
            extra_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            service_cidr: SERVICE_CIDR.into(),
            kubernetes_service_ip: IpAddr::V4(KUBERNETES_SERVICE_IP),
            netns: Some(node.clone()),
        };
        // Spawned, not run by block_on: only the runtime's threads are in the node.
        let node_for_plane = node.clone();
        let dir_for_plane = dir.clone();
        let shared = on_node(&runtime, async move {
            let (node, dir) = (node_for_plane, dir_for_plane);
            let plane = ControlPlane::start(plane_options).await?;
            // Now, not when a test asks: admission maps new kinds only at
            // its next 30 s reset (see deploy::owners_mapped), and the rest
            // of the start overlaps that wait.
            if let Some(binary) = options.binary_for("certwright")
                && options.certwright_crds
            {
                crate::deploy::apply_crds(&plane.client(), binary).await?;
            }
            let api_proxy = api_proxy::Faults::default();
            Ok::<_, String>(Arc::new(Shared {
                options,
                dir,
                node,
                plane,
                api_proxy,
            }))
        })?;
        let server = format!("https://{api_forward}");
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            control_plane::kubeconfig(
                &server,
                shared.plane.ca_pem(),
                shared.plane.admin(),
                "default",
            ),
        )
        .map_err(|e| format!("writing the kubeconfig: {e}"))?;
        runtime.spawn(forward(
            api_listener,
            SocketAddr::new(NODE_IP.into(), APISERVER_PORT),
        ));
        runtime.spawn(forward(
            ingress_listener,
            SocketAddr::new(INGRESS_IP.into(), INGRESS_PORT),
        ));
        let parts = shared.clone();
        on_node(&runtime, async move {
            let shared = parts;
            let proxy = api_proxy::start(shared.clone()).await?;
            tokio::spawn(proxy);
            tokio::spawn(services::run(shared.clone()));
            kubelet::start(shared.clone()).await?;
            ingress::start(shared.clone(), &traefik_image()).await
        })?;
        Ok(Self {
            shared,
            runtime: Some(runtime),
            api_forward,
            ingress_forward,
            kubeconfig,
            routes,
            real_node: tokio::sync::OnceCell::new(),
        })
    }

    /// One cluster for the whole test binary (started on first use). Its
    /// processes die with the test process; what it leaves on disk and in
    /// the routing table is removed at exit, or by the next start.
    pub fn shared(binary: &Path) -> &'static LocalCluster {
        Self::shared_with(ClusterOptions::new(binary))
    }

    /// [`Self::shared`] started with `options` (the first call's count).
    pub fn shared_with(options: ClusterOptions) -> &'static LocalCluster {
        static SHARED: OnceLock<Result<LocalCluster, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            let cluster = std::thread::spawn(move || LocalCluster::start(options))
                .join()
                .unwrap_or_else(|_| Err("starting the local cluster panicked".into()))?;
            at_exit(cluster.shared.dir.clone(), cluster.routes.0.clone());
            control_plane::remove_at_exit(cluster.shared.plane.dir());
            Ok(cluster)
        });
        match started {
            Ok(cluster) => cluster,
            Err(e) => panic!("the local cluster did not start: {e}"),
        }
    }

    /// An admin client (through the forwarder), on the caller's runtime.
    pub fn client(&self) -> kube::Client {
        self.shared
            .plane
            .client_via(&format!("https://{}", self.api_forward))
    }

    /// The admin kubeconfig, for kubectl (server: the forwarder on 127.0.0.1).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::copy(&self.kubeconfig, path).map(|_| ())
    }

    /// The API server as seen from this process.
    pub fn api_url(&self) -> String {
        format!("https://{}", self.api_forward)
    }

    pub fn control_plane(&self) -> &ControlPlane {
        &self.shared.plane
    }

    /// Faults to inject in front of kube-apiserver (what Pods see).
    pub fn api_faults(&self) -> &api_proxy::Faults {
        &self.shared.api_proxy
    }

    /// The ingress (Traefik's Service) as reached from this process (a
    /// forwarder).
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress_forward
    }

    /// The ingress inside the cluster: Traefik's Service (give it to pebble
    /// and to the controller's self-check).
    pub fn ingress_node_addr(&self) -> SocketAddr {
        SocketAddr::new(INGRESS_IP.into(), INGRESS_PORT)
    }

    /// The ingress's HTTPS port inside the cluster (Traefik serving each
    /// Ingress's `spec.tls` Secrets by SNI).
    pub fn ingress_tls_node_addr(&self) -> SocketAddr {
        SocketAddr::new(INGRESS_IP.into(), ingress::INGRESS_TLS_PORT)
    }

    /// pebble as the cluster runs it: on the node, resolving every name to
    /// the ingress and validating HTTP-01 on its port.
    pub fn pebble_options(&self) -> crate::pebble::PebbleOptions {
        crate::pebble::PebbleOptions {
            http_port: INGRESS_PORT,
            dns_ipv4: INGRESS_IP.to_string(),
            address: NODE_IP.into(),
            netns: Some(self.shared.node.clone()),
            ..Default::default()
        }
    }

    pub fn ingress_class(&self) -> &str {
        &self.shared.options.ingress_class
    }

    /// The node's network namespace.
    pub fn node(&self) -> &Arc<Netns> {
        &self.shared.node
    }

    /// Runs `future` on the node's runtime (its sockets are the node's) and
    /// waits for it from any runtime.
    pub async fn in_node<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("the node runtime runs");
        match runtime.spawn(future).await {
            Ok(out) => out,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// The real node (started on first use, with certwright's image from
    /// `certwright_binary` tagged `dev`).
    pub async fn real_node(
        &self,
        certwright_binary: &Path,
    ) -> Result<Arc<crate::node::RealNode>, String> {
        let shared = self.shared.clone();
        let binary = certwright_binary.to_path_buf();
        let runtime = self
            .runtime
            .as_ref()
            .expect("the node runtime runs")
            .handle()
            .clone();
        self.real_node
            .get_or_try_init(|| async move {
                let node = runtime
                    .spawn(
                        async move { crate::node::RealNode::start(&shared, &binary, "dev").await },
                    )
                    .await
                    .map_err(|e| format!("starting the real node: {e}"))??;
                // Never dropped (the cluster is shared): when the run exits,
                // the node's daemons die with it and its holder kills the
                // node's cgroup.
                Ok::<_, String>(Arc::new(node))
            })
            .await
            .cloned()
    }

    /// Where Pod logs (`pod-<namespace>-<name>.log`) are written.
    pub fn log_dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Adds certwright's sidecar solver (the image `image`) to Traefik's
    /// Pod and routes `/.well-known/acme-challenge/` to it on localhost;
    /// Traefik's ServiceAccount (`traefik/traefik`) needs the sidecar RBAC.
    pub async fn add_ingress_sidecar(&self, image: &str) -> Result<(), String> {
        let shared = self.shared.clone();
        let image = image.to_string();
        self.in_node(async move {
            let class = shared.options.ingress_class.clone();
            ingress::add_sidecar(&shared, &image, &class).await
        })
        .await
    }

    /// Traefik's output so far: its log and one access log line per request.
    pub fn ingress_log(&self) -> String {
        ingress::log(&self.shared.dir)
    }

    /// A Pod's output so far (all its containers' runs).
    pub fn pod_log(&self, namespace: &str, name: &str) -> String {
        std::fs::read_to_string(kubelet::log_path(&self.shared.dir, namespace, name))
            .unwrap_or_default()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        kubelet::stop_all();
        if std::thread::panicking() {
            eprintln!("local cluster: logs kept in {}", self.shared.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.shared.dir);
            // Tasks may still hold the control plane; its processes die with us.
            let _ = std::fs::remove_dir_all(self.shared.plane.dir());
        }
    }
}

/// Removes the shared cluster's routes (and, through the control plane's
/// exit hook, its directory) when the process exits normally: statics are
/// never dropped, and children die with the process.
fn at_exit(dir: PathBuf, routes: Vec<&'static str>) {
    static ROUTES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    extern "C" fn cleanup() {
        kubelet::stop_all();
        remove_safety_routes(&ROUTES.lock().unwrap_or_else(|e| e.into_inner()));
    }
    control_plane::remove_at_exit(&dir);
    *ROUTES.lock().unwrap_or_else(|e| e.into_inner()) = routes;
    // SAFETY: registers a plain function with no captured state.
    unsafe { libc::atexit(cleanup) };
}

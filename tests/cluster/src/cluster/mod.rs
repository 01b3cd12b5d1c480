//! The local cluster: the API emulator plus a pod runner, Deployments, Service endpoints
//! and proxies, and an ingress router, on loopback addresses of their own,
//! so that pebble validates HTTP-01 as Let's Encrypt validates a real
//! cluster: DNS → ingress → Service → Pod.

pub mod deployments;
pub mod kubelet;
pub mod network;
pub mod router;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::apiserver::{ApiServer, Options};

/// What the local cluster runs.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Pods whose first container image contains this run as processes.
    pub image_pattern: String,
    /// The certwright binary those Pods run.
    pub binary: PathBuf,
    /// The ingress router's class (and IngressClass name).
    pub ingress_class: String,
    /// The router's port; 0 picks a free one.
    pub router_port: u16,
}

impl ClusterOptions {
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            image_pattern: "certwright".into(),
            binary: binary.into(),
            ingress_class: "certwright-test".into(),
            router_port: 0,
        }
    }
}

/// Address blocks inside the environment's 127.X.0.0/16.
#[derive(Clone, Copy, Debug)]
pub enum Block {
    Pods = 1,
    Services = 2,
}

/// What the cluster's parts share.
pub struct Shared {
    pub api: ApiServer,
    pub options: ClusterOptions,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub router_ip: String,
    prefix: u8,
    next: [AtomicU32; 3],
    pub kubelet: kubelet::Kubelet,
    pub proxies: network::Proxies,
}

impl Shared {
    /// A fresh loopback address in `block` (127.X.block.n).
    pub fn allocate_ip(&self, block: Block) -> String {
        let n = self.next[block as usize].fetch_add(1, Ordering::SeqCst) + 1;
        format!(
            "127.{}.{}.{}",
            self.prefix,
            block as u32 * 16 + n / 250,
            n % 250 + 1
        )
    }
}

/// A running local cluster; everything stops when it is dropped.
pub struct LocalCluster {
    shared: Arc<Shared>,
    router_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

static ENVIRONMENTS: AtomicU32 = AtomicU32::new(0);

impl LocalCluster {
    pub async fn start(options: ClusterOptions) -> Result<Self, String> {
        let seq = ENVIRONMENTS.fetch_add(1, Ordering::SeqCst);
        let prefix = (100 + (std::process::id() * 7 + seq) % 150) as u8;
        let dir =
            std::env::temp_dir().join(format!("certwright-cluster-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let api = ApiServer::start(Options::default())
            .await
            .map_err(|e| format!("starting the API server: {e}"))?;
        let kubeconfig = dir.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig)
            .map_err(|e| format!("writing the kubeconfig: {e}"))?;
        let router_ip = format!("127.{prefix}.0.1");
        let listener = tokio::net::TcpListener::bind((router_ip.as_str(), options.router_port))
            .await
            .map_err(|e| {
                format!(
                    "binding the ingress router on {router_ip}:{}: {e}",
                    options.router_port
                )
            })?;
        let router_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            api,
            options: options.clone(),
            dir,
            kubeconfig,
            router_ip,
            prefix,
            next: Default::default(),
            kubelet: kubelet::Kubelet::default(),
            proxies: network::Proxies::default(),
        });
        let class = serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": options.ingress_class}, "spec": {"controller": "certwright.io/testcluster-router"}});
        if let Some(rt) = shared
            .api
            .store()
            .resource("networking.k8s.io", "v1", "ingressclasses")
        {
            shared
                .api
                .store()
                .create(&rt, "", class, "testcluster")
                .map_err(|e| e.message)?;
        }
        let tasks = vec![
            tokio::spawn(kubelet::run(shared.clone())),
            tokio::spawn(deployments::run(shared.clone())),
            tokio::spawn(network::run(shared.clone())),
            tokio::spawn(router::run(shared.clone(), listener)),
        ];
        Ok(Self {
            shared,
            router_addr,
            tasks,
        })
    }

    pub fn api(&self) -> &ApiServer {
        &self.shared.api
    }

    pub fn client(&self) -> kube::Client {
        self.shared.api.client()
    }

    /// Where HTTP for every name arrives (give it to pebble).
    pub fn router_addr(&self) -> SocketAddr {
        self.router_addr
    }

    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.shared.kubeconfig
    }

    pub fn ingress_class(&self) -> &str {
        &self.shared.options.ingress_class
    }

    /// A Pod's output so far.
    /// Where Pod logs (`pod-<namespace>-<name>.log`) are written.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.shared.dir
    }

    pub fn pod_log(&self, namespace: &str, name: &str) -> String {
        std::fs::read_to_string(kubelet::Kubelet::log_path(&self.shared, namespace, name))
            .unwrap_or_default()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.kubelet.stop_all();
        self.shared.proxies.stop_all();
        if std::thread::panicking() {
            eprintln!(
                "local cluster: Pod logs kept in {}",
                self.shared.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.shared.dir);
        }
    }
}

//! The real Kubernetes control plane for the local cluster: etcd,
//! kube-apiserver and kube-controller-manager, built from their published
//! Go modules by `scripts/install-tools` (pinned in `tests/tools/*/go.mod`)
//! and started here with certificates generated per run, RBAC and Node
//! authorization, the default admission plugins and
//! OwnerReferencesPermissionEnforcement (as OpenShift runs it: setting
//! blockOwnerDeletion needs update on the owner's finalizers), the aggregation layer's
//! front proxy and a Metadata-level audit log. Everything stops when the
//! [`ControlPlane`] is dropped, or with the process that started it.

pub mod pki;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use rustls::pki_types::pem::PemObject;

use crate::netns::Netns;
use crate::process::{Process, remove_stale_dirs};
use crate::tools::{etcd_version, kubernetes_version, tool};
use pki::{Files, Pair};

/// Where the control plane listens, and what it serves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address etcd and kube-apiserver bind and advertise.
    pub address: IpAddr,
    /// kube-apiserver's secure port (0: a free one).
    pub port: u16,
    /// More addresses the serving certificate names (a forwarder, a node address).
    pub extra_ips: Vec<IpAddr>,
    /// `--service-cluster-ip-range`; its first address is the `kubernetes` Service.
    pub service_cidr: String,
    /// The first address of that range.
    pub kubernetes_service_ip: IpAddr,
    /// The network namespace the processes run in (this process's when `None`).
    pub netns: Option<Arc<Netns>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            extra_ips: Vec::new(),
            service_cidr: "10.96.0.0/16".into(),
            kubernetes_service_ip: IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1)),
            netns: None,
        }
    }
}

/// How to start one of the control plane's processes again: its program
/// and flags, its log (appended to), and the namespace it runs in.
struct Recipe {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    netns: Option<Arc<Netns>>,
}

impl Recipe {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if let Some(ns) = &self.netns {
            ns.enter(&mut command);
        }
        command
    }

    fn spawn(&self) -> Result<Process, String> {
        Process::spawn_appending(self.name, self.command(), &self.log)
    }
}

/// A running control plane.
pub struct ControlPlane {
    // Field order is stop order: the controller manager, the API server, etcd.
    controller_manager: Process,
    /// Restartable (the chaos suite's restarts): behind locks.
    apiserver: std::sync::Mutex<Process>,
    etcd: std::sync::Mutex<Process>,
    apiserver_recipe: Recipe,
    etcd_recipe: Recipe,
    dir: PathBuf,
    url: String,
    kubeconfig: PathBuf,
    ca_pem: String,
    ca: pki::Ca,
    admin: Pair,
}

static STARTED: AtomicU32 = AtomicU32::new(0);

fn lock(process: &std::sync::Mutex<Process>) -> std::sync::MutexGuard<'_, Process> {
    process.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kills the process and starts it again from its recipe.
fn restart(process: &std::sync::Mutex<Process>, recipe: &Recipe) -> Result<(), String> {
    let mut running = lock(process);
    running.kill();
    *running = recipe.spawn()?;
    Ok(())
}

fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A kubeconfig for `server` with a client certificate.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &Pair, namespace: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: certwright-test\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: user\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: certwright-test\n  context:\n    cluster: certwright-test\n    user: user\n    namespace: {namespace}\ncurrent-context: certwright-test\n",
        b64(ca_pem),
        b64(&user.cert_pem),
        b64(&user.key_pem)
    )
}

/// A `kube` client for `server` that trusts `ca_pem` and presents `user`.
pub fn client_for(server: &str, ca_pem: &str, user: &Pair) -> Result<kube::Client, String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut config = kube::Config::new(server.parse().map_err(|e| format!("{server}: {e}"))?);
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| format!("the cluster CA: {e}"))?;
    config.root_cert = Some(vec![ca.to_vec()]);
    config.auth_info = serde_json::from_value(serde_json::json!({
        "client-certificate-data": b64(&user.cert_pem),
        "client-key-data": b64(&user.key_pem),
    }))
    .map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
";

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits
    /// until the API is ready and the controllers have created the
    /// `default` ServiceAccount (tens of seconds on two busy cores).
    pub async fn start(options: Options) -> Result<Self, String> {
        let k8s = format!("k8s-{}", kubernetes_version());
        let apiserver_bin = tool(&k8s, "kube-apiserver")?;
        let kcm_bin = tool(&k8s, "kube-controller-manager")?;
        let etcd_bin = tool(&format!("etcd-{}", etcd_version()), "etcd")?;

        let root = std::env::temp_dir().join("certwright-control-plane");
        remove_stale_dirs(&root);
        let dir = root.join(format!(
            "{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;

        let ip = options.address;
        let mut ips = vec![
            ip,
            options.kubernetes_service_ip,
            Ipv4Addr::LOCALHOST.into(),
        ];
        ips.extend(options.extra_ips.iter().copied());
        let dns: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .map(String::from)
        .to_vec();
        let files = Files::write(&dir, &dns, &ips)?;
        files.text("audit-policy.yaml", AUDIT_POLICY)?;
        let p = |name: &str| files.path(name).to_string_lossy().into_owned();

        let ports = crate::netns::free_ports(ip, 3)
            .map_err(|e| format!("finding free ports on {ip}: {e}"))?;
        let (etcd_client, etcd_peer) = (ports[0], ports[1]);
        let port = match options.port {
            0 => ports[2],
            p => p,
        };
        let etcd_recipe = Recipe {
            name: "etcd",
            program: etcd_bin.clone(),
            args: vec![
                "--name=local".into(),
                format!("--data-dir={}", p("etcd")),
                format!("--listen-client-urls=http://{}:{etcd_client}", host(ip)),
                format!("--advertise-client-urls=http://{}:{etcd_client}", host(ip)),
                format!("--listen-peer-urls=http://{}:{etcd_peer}", host(ip)),
                format!(
                    "--initial-advertise-peer-urls=http://{}:{etcd_peer}",
                    host(ip)
                ),
                format!("--initial-cluster=local=http://{}:{etcd_peer}", host(ip)),
                "--listen-metrics-urls=".into(),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
            log: files.path("etcd.log"),
            netns: options.netns.clone(),
        };
        let enter = |command: &mut Command| {
            if let Some(ns) = &options.netns {
                ns.enter(command);
            }
        };
        let mut etcd = Process::spawn("etcd", etcd_recipe.command(), &etcd_recipe.log)?;

        let apiserver_recipe = Recipe {
            name: "kube-apiserver",
            program: apiserver_bin.clone(),
            args: vec![
                format!("--etcd-servers=http://{}:{etcd_client}", host(ip)),
                format!("--bind-address={ip}"),
                format!("--advertise-address={ip}"),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", p("generated")),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-cluster-ip-range={}", options.service_cidr),
                "--authorization-mode=Node,RBAC".into(),
                "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement"
                    .into(),
                "--endpoint-reconciler-type=none".into(),
                format!("--kubelet-client-certificate={}", p("kubelet-client.crt")),
                format!("--kubelet-client-key={}", p("kubelet-client.key")),
                "--kubelet-preferred-address-types=InternalIP".into(),
                "--allow-privileged=true".into(),
                format!("--requestheader-client-ca-file={}", p("front-proxy-ca.crt")),
                "--requestheader-allowed-names=front-proxy-client".into(),
                "--requestheader-username-headers=X-Remote-User".into(),
                "--requestheader-group-headers=X-Remote-Group".into(),
                "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
                format!("--proxy-client-cert-file={}", p("front-proxy-client.crt")),
                format!("--proxy-client-key-file={}", p("front-proxy-client.key")),
                format!("--audit-policy-file={}", p("audit-policy.yaml")),
                format!("--audit-log-path={}", p("audit.log")),
                "--audit-log-format=json".into(),
                // Never rotated (0 would mean lumberjack's 100 MB): readers
                // count requests from an offset into this one file, and a
                // batch of 1,000 certificates writes more than 100 MB.
                "--audit-log-maxsize=1000000".into(),
                "--profiling=false".into(),
            ],
            log: files.path("kube-apiserver.log"),
            netns: options.netns.clone(),
        };
        let mut apiserver = Process::spawn(
            "kube-apiserver",
            apiserver_recipe.command(),
            &apiserver_recipe.log,
        )?;

        let url = format!("https://{}:{port}", host(ip));
        let admin = files.ca.client("certwright-admin", &["system:masters"])?;
        let admin_kubeconfig = kubeconfig(&url, &files.ca.pair.cert_pem, &admin, "default");
        let kubeconfig_path = files.path("admin.kubeconfig");
        files.text("admin.kubeconfig", &admin_kubeconfig)?;
        let client = client_for(&url, &files.ca.pair.cert_pem, &admin)?;
        wait_ready(&client, &mut [&mut etcd, &mut apiserver]).await?;

        let kcm_user = files.ca.client("system:kube-controller-manager", &[])?;
        files.text(
            "controller-manager.kubeconfig",
            &kubeconfig(&url, &files.ca.pair.cert_pem, &kcm_user, "default"),
        )?;
        let mut kcm = Command::new(&kcm_bin);
        kcm.args([
            &format!("--kubeconfig={}", p("controller-manager.kubeconfig")),
            "--controllers=*",
            "--use-service-account-credentials=true",
            &format!("--service-account-private-key-file={}", p("sa.key")),
            &format!("--root-ca-file={}", p("ca.crt")),
            &format!("--cluster-signing-cert-file={}", p("ca.crt")),
            &format!("--cluster-signing-key-file={}", p("ca.key")),
            &format!("--service-cluster-ip-range={}", options.service_cidr),
            "--leader-elect=false",
            "--secure-port=0",
            "--node-monitor-grace-period=20s",
        ]);
        enter(&mut kcm);
        let mut controller_manager = Process::spawn(
            "kube-controller-manager",
            kcm,
            &files.path("kube-controller-manager.log"),
        )?;
        wait_for_default_service_account(
            &client,
            &mut [&mut etcd, &mut apiserver, &mut controller_manager],
        )
        .await?;
        Ok(Self {
            controller_manager,
            apiserver: std::sync::Mutex::new(apiserver),
            etcd: std::sync::Mutex::new(etcd),
            apiserver_recipe,
            etcd_recipe,
            url,
            kubeconfig: kubeconfig_path,
            ca_pem: files.ca.pair.cert_pem.clone(),
            ca: files.ca,
            admin,
            dir,
        })
    }

    /// `https://address:port` of kube-apiserver.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin kubeconfig (`system:masters`), for kubectl.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Copies the admin kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::copy(&self.kubeconfig, path).map(|_| ())
    }

    /// PEM of the cluster CA (it signs the serving certificate).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The cluster CA, to sign client certificates for other users.
    pub fn ca(&self) -> &pki::Ca {
        &self.ca
    }

    /// Where its certificates, logs and data live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's audit log (one JSON event a line).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// A `kube` client as the cluster admin, on the current runtime.
    pub fn client(&self) -> kube::Client {
        self.client_via(&self.url)
    }

    /// The same through another address of the API server (a forwarder).
    pub fn client_via(&self, server: &str) -> kube::Client {
        client_for(server, &self.ca_pem, &self.admin).expect("a client for the local API server")
    }

    /// The admin's certificate, for kubeconfigs naming another address.
    pub fn admin(&self) -> &Pair {
        &self.admin
    }

    /// Kills kube-apiserver (SIGKILL) and starts it again with the same
    /// flags, etcd and so every object kept; returns once `client` (one
    /// that reaches it from the caller's network) finds it ready.
    pub async fn restart_apiserver(&self, client: &kube::Client) -> Result<(), String> {
        restart(&self.apiserver, &self.apiserver_recipe)?;
        self.wait_ready_again(client, &self.apiserver).await
    }

    /// Kills etcd (SIGKILL) and starts it again on the same data; returns
    /// once kube-apiserver answers ready again.
    pub async fn restart_etcd(&self, client: &kube::Client) -> Result<(), String> {
        restart(&self.etcd, &self.etcd_recipe)?;
        self.wait_ready_again(client, &self.etcd).await
    }

    async fn wait_ready_again(
        &self,
        client: &kube::Client,
        restarted: &std::sync::Mutex<Process>,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            let last = match client.request_text(request).await {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if let Some(failure) = lock(restarted).failure() {
                return Err(failure);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "not ready within 120 s after a restart (last answer: {last}):\n{}",
                    self.logs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The control plane's logs, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- kube-apiserver\n{}\n--- kube-controller-manager\n{}\n--- etcd\n{}",
            lock(&self.apiserver).log_tail(30),
            self.controller_manager.log_tail(30),
            lock(&self.etcd).log_tail(10)
        )
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.controller_manager.kill();
        lock(&self.apiserver).kill();
        lock(&self.etcd).kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls until `check` answers, failing early when one of `processes` exits.
async fn wait_until<F, Fut>(
    what: &str,
    secs: u64,
    processes: &mut [&mut Process],
    mut check: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let last = match check().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        for process in processes.iter_mut() {
            if let Some(failure) = process.failure() {
                return Err(failure);
            }
        }
        if tokio::time::Instant::now() > deadline {
            let logs: Vec<String> = processes.iter().map(|p| p.log_tail(20)).collect();
            return Err(format!(
                "{what} within {secs} s (last answer: {last})\n{}",
                logs.join("\n---\n")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_ready(client: &kube::Client, processes: &mut [&mut Process]) -> Result<(), String> {
    wait_until(
        "kube-apiserver did not become ready",
        180,
        processes,
        || async {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            client
                .request_text(request)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await
}

async fn wait_for_default_service_account(
    client: &kube::Client,
    processes: &mut [&mut Process],
) -> Result<(), String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    wait_until(
        "kube-controller-manager did not create the default ServiceAccount",
        120,
        processes,
        || async {
            accounts
                .get("default")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await
}

/// One control plane for the whole test binary, started on first use on a
/// thread of its own. Its processes die with the test process; its
/// directory is removed at exit (or, after a SIGKILL, by the next start).
pub fn shared() -> Result<&'static ControlPlane, String> {
    static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let started = std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?
                    .block_on(ControlPlane::start(Options::default()))
            })
            .join()
            .unwrap_or_else(|_| Err("starting the control plane panicked".into()))?;
            remove_at_exit(&started.dir);
            Ok(started)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Removes `dir` when the process exits normally (statics are never dropped).
pub(crate) fn remove_at_exit(dir: &Path) {
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    extern "C" fn cleanup() {
        for dir in DIRS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let mut dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner());
    if dirs.is_empty() {
        // SAFETY: registers a plain function with no captured state.
        unsafe { libc::atexit(cleanup) };
    }
    dirs.push(dir.to_path_buf());
}

//! A Kubernetes API server emulator speaking the real REST protocol on
//! loopback, for the real `kube` client and `kubectl`: see `store` for the
//! semantics, `http` for the protocol.

mod admission;
pub mod apply;
mod discovery;
pub mod error;
pub mod events;
pub mod fields;
mod gc;
pub mod hooks;
pub mod http;
mod ids;
pub mod patch;
pub mod registry;
pub mod selector;
pub mod store;
pub mod table;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::oneshot;

pub use store::Store;

/// Settings of an emulator instance.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch events kept for replay; older resourceVersions get 410 Gone.
    pub history_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
        }
    }
}

/// A running emulator on a free loopback port; stops when dropped.
pub struct ApiServer {
    addr: SocketAddr,
    shared: Arc<http::Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl ApiServer {
    /// Binds 127.0.0.1 on a free port and serves in the background of the
    /// current tokio runtime.
    pub async fn start(options: Options) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(http::Shared {
            store: Store::new(options.history_limit),
            hooks: hooks::Hooks::default(),
            address: addr.to_string(),
        });
        let app = http::router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                eprintln!("api emulator stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Request log and fault injection.
    pub fn hooks(&self) -> &hooks::Hooks {
        &self.shared.hooks
    }

    /// A `kube` client for this server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        let url = self.url().parse().expect("the emulator URL parses");
        let config = kube::Config::new(url);
        kube::Client::try_from(config).expect("a kube client for the emulator")
    }

    /// Writes a kubeconfig for `kubectl` and in-cluster-less controllers.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: certwright\n  cluster:\n    server: {}\nusers:\n- name: certwright\n  user: {{}}\ncontexts:\n- name: certwright\n  context:\n    cluster: certwright\n    user: certwright\n    namespace: default\ncurrent-context: certwright\n",
            self.url()
        );
        std::fs::write(path, text)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

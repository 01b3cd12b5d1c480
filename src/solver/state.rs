//! What the solver modes remember while the Challenge controller runs:
//! the per-namespace solver Services of the shared mode and the solver
//! Pods of the pod mode.

use super::check::SelfCheckFailure;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};

use super::settings::SolverSettings;

/// The solver modes' client, settings and memory.
pub struct Solvers {
    pub client: kube::Client,
    pub settings: SolverSettings,
    /// Held while the shared solver's Service and slice are applied in a
    /// namespace, so a batch of Challenges there applies them once.
    pub applying: tokio::sync::Mutex<()>,
    /// Cluster IPs of the per-namespace solver Services, by namespace.
    service_ips: Mutex<HashMap<String, IpAddr>>,
    /// Solver Pods (pod mode) as last seen, filled by the Challenge
    /// controller's watch on them.
    pods: Store<Pod>,
    pods_writer: Mutex<Option<Writer<Pod>>>,
}

impl Solvers {
    pub fn new(client: kube::Client, settings: SolverSettings) -> Self {
        let (pods, writer) = kube::runtime::reflector::store();
        Self {
            client,
            settings,
            applying: tokio::sync::Mutex::new(()),
            service_ips: Mutex::default(),
            pods,
            pods_writer: Mutex::new(Some(writer)),
        }
    }

    /// Remembers the cluster IP of a namespace's solver Service.
    pub fn note_service(&self, namespace: &str, service: &Service) {
        let ip = service
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        if let Some(ip) = ip {
            self.service_ips
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(namespace.to_string(), ip);
        }
    }

    /// The remembered cluster IP of a namespace's solver Service.
    pub fn service_ip(&self, namespace: &str) -> Option<IpAddr> {
        self.service_ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .copied()
    }

    /// Forgets it (the Service is being deleted).
    pub fn forget_service(&self, namespace: &str) {
        self.service_ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(namespace);
    }

    /// The writer of the solver Pod store, once (for the watch that fills it).
    pub fn take_pods_writer(&self) -> Option<Writer<Pod>> {
        self.pods_writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn pod(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<Pod>> {
        self.pods.get(&ObjectRef::new(name).within(namespace))
    }

    /// Whether a solver Pod of that name is known.
    pub fn has_pod(&self, namespace: &str, name: &str) -> bool {
        self.pod(namespace, name).is_some()
    }

    /// Where a ready solver Pod answers, or why it cannot be asked yet.
    pub fn pod_address(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<SocketAddr>, SelfCheckFailure> {
        let Some(pod) = self.pod(namespace, name) else {
            return Err(SelfCheckFailure::SolverMissing(format!(
                "the solver Pod {namespace}/{name} does not exist (yet)"
            )));
        };
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let ip = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        match (ready, ip) {
            (true, Some(ip)) => Ok(Some(SocketAddr::new(ip, super::settings::SOLVER_PORT))),
            _ => {
                let why = status
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .and_then(|c| c.state.as_ref())
                    .and_then(|s| s.waiting.as_ref())
                    .map(|w| {
                        format!(
                            ": {} {}",
                            w.reason.clone().unwrap_or_default(),
                            w.message.clone().unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                Err(SelfCheckFailure::SolverNotReady(format!(
                    "the solver Pod {namespace}/{name} is not ready yet{}",
                    why.trim_end()
                )))
            }
        }
    }
}

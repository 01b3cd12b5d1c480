//! What every controller shares: the API client, the controller's settings
//! and the caches that save round trips (ACME accounts, retry counters).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};

use crate::acme::session::{Accounts, IssuerStores};
use crate::api::Challenge;
use crate::controllers::challenges::schedule::InFlight;
pub use crate::runtime::settings::Settings;

/// Shared by every reconcile.
pub struct Context {
    pub client: kube::Client,
    /// What the command line set.
    pub settings: Settings,
    /// Where events go (published off the reconcile path).
    pub events: crate::runtime::events::Events,
    /// The runs of failures of the Orders and Challenges that the CA
    /// retry policy governs.
    pub retries: crate::acme::retry::Retries,
    /// New orders the CAs' refusals hold back (rate limits, pauses).
    pub holds: crate::acme::limits::Holds,
    /// What was spent of the CAs' published limits.
    pub ledger: crate::acme::budgets::Ledger,
    /// The CAs' renewal suggestions, by certificate.
    pub renewal_info: crate::controllers::certificates::ari::Cache,
    /// Challenges being worked on, by DNS name.
    in_flight: Mutex<InFlight>,
    /// Challenges to reconcile now: they waited for a place or a name
    /// that has been released.
    wake: tokio::sync::mpsc::UnboundedSender<ObjectRef<Challenge>>,
    woken: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<ObjectRef<Challenge>>>>,
    /// Held while the shared solver's Service and slice are applied in a
    /// namespace, so a batch of Challenges there applies them once.
    pub solver_applying: tokio::sync::Mutex<()>,
    /// Set when the controller stops: no reconcile starts after it, and
    /// those under way finish (a new order placed is written down).
    stop: tokio::sync::watch::Sender<bool>,
    /// ACME accounts, loaded once per issuer account.
    pub accounts: Accounts,
    /// Issuers as last seen (filled by `acme::session::watch_issuer_stores`).
    pub issuer_stores: IssuerStores,
    /// Consecutive transient failures per object (by uid).
    attempts: Mutex<HashMap<String, u32>>,
    /// The resourceVersion of our last write per object (by uid), to tell
    /// when the watch cache has not caught up with it yet.
    written: Mutex<HashMap<String, String>>,
    /// Consecutive self-check passes per Challenge (by uid).
    passes: Mutex<HashMap<String, u32>>,
    /// When each Challenge waiting out `waitInsteadOfSelfCheck` was first
    /// seen presented (by uid; the wait starts over after a restart).
    presented: Mutex<HashMap<String, std::time::Instant>>,
    /// Cluster IPs of the per-namespace solver Services, by namespace.
    solver_ips: Mutex<HashMap<String, IpAddr>>,
    /// Solver Pods (pod mode) as last seen, filled by the Challenge
    /// controller's watch on them.
    solver_pods: Store<Pod>,
    solver_pods_writer: Mutex<Option<Writer<Pod>>>,
    /// The caches more than one controller reads.
    pub stores: crate::runtime::stores::Stores,
    /// The temporary key Secrets as last seen, filled by the Certificate
    /// controller's watch on them (replaced when it starts again).
    next_keys: Mutex<Option<Store<Secret>>>,
}

impl Context {
    /// Stops the controllers gracefully: no new reconcile starts; those
    /// under way finish.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Completes once [`Context::stop`] was called (for
    /// `Controller::graceful_shutdown_on`).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }

    /// A context with default settings.
    pub fn new(client: kube::Client, cluster_resource_namespace: impl Into<String>) -> Self {
        Self::with_settings(client, Settings::new(cluster_resource_namespace))
    }

    /// A context with these settings.
    pub fn with_settings(client: kube::Client, settings: Settings) -> Self {
        let (solver_pods, writer) = kube::runtime::reflector::store();
        let (wake, woken) = tokio::sync::mpsc::unbounded_channel();
        Self {
            events: crate::runtime::events::Events::new(client.clone()),
            client,
            settings,
            retries: Default::default(),
            holds: Default::default(),
            ledger: Default::default(),
            renewal_info: Default::default(),
            in_flight: Mutex::default(),
            wake,
            woken: Mutex::new(Some(woken)),
            solver_applying: tokio::sync::Mutex::new(()),
            stop: tokio::sync::watch::Sender::new(false),
            accounts: Accounts::default(),
            issuer_stores: IssuerStores::default(),
            attempts: Mutex::default(),
            written: Mutex::default(),
            passes: Mutex::default(),
            presented: Mutex::default(),
            solver_ips: Mutex::default(),
            solver_pods,
            solver_pods_writer: Mutex::new(Some(writer)),
            stores: Default::default(),
            next_keys: Mutex::default(),
        }
    }

    /// Keeps `store` as the cache of temporary key Secrets.
    pub fn set_next_keys(&self, store: Store<Secret>) {
        *self.next_keys.lock().unwrap_or_else(|e| e.into_inner()) = Some(store);
    }

    /// The cache of temporary key Secrets, once it has listed them all.
    pub fn next_keys(&self) -> Option<Store<Secret>> {
        use futures_util::FutureExt;
        let store = self
            .next_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))).then_some(store)
    }

    /// The Challenges in flight.
    pub fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases what Challenge `uid` holds and wakes those waiting for it.
    pub fn release_challenge(&self, uid: &str) {
        for name in self.in_flight().release(uid) {
            if let Some((ns, name)) = name.split_once('/') {
                let _ = self.wake.send(ObjectRef::new(name).within(ns));
            }
        }
    }

    /// The Challenges to wake, as a stream (once: the receiver is taken).
    pub fn take_woken(
        &self,
    ) -> Option<impl futures_util::Stream<Item = ObjectRef<Challenge>> + Send + 'static> {
        let rx = self
            .woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|r| (r, rx))
        }))
    }

    /// Counts one more transient failure of `uid`; returns the count.
    pub fn failed_again(&self, uid: &str) -> u32 {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(uid.to_string()).or_insert(0);
        *n += 1;
        *n
    }

    /// How long to wait after one more failed reconcile of `uid` in a row
    /// (an API call failed): 2 s, 4 s, 8 s, … up to 5 minutes, so a
    /// lasting failure does not retry every 2 s for ever.
    pub fn reconcile_failed(&self, uid: &str) -> Duration {
        let n = self.failed_again(&format!("{uid}/reconcile"));
        Duration::from_secs((1u64 << n.min(9)).min(300))
    }

    /// Runs one reconcile of `controller` on the object `uid` (named
    /// `object` in logs); a success forgets its failed reconciles, and a
    /// panic is its error (see [`crate::runtime::reconcile_error::guard`]).
    pub async fn tracked<E: From<crate::runtime::reconcile_error::Panicked>>(
        &self,
        controller: &'static str,
        (uid, object): (String, String),
        reconcile: impl std::future::Future<Output = Result<kube::runtime::controller::Action, E>>,
    ) -> Result<kube::runtime::controller::Action, E> {
        let result = crate::runtime::reconcile_error::guard(controller, object, reconcile).await;
        if result.is_ok() {
            self.attempts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&format!("{uid}/reconcile"));
        }
        result
    }

    /// Notes the resourceVersion our last write of `uid` produced.
    pub fn wrote(&self, uid: &str, resource_version: Option<String>) {
        let mut map = self.written.lock().unwrap_or_else(|e| e.into_inner());
        match resource_version {
            Some(rv) => map.insert(uid.to_string(), rv),
            None => map.remove(uid),
        };
    }

    /// Whether a cached copy of `uid` at `resource_version` may predate
    /// our last write of it (then read it from the API server instead).
    pub fn behind(&self, uid: &str, resource_version: Option<&str>) -> bool {
        let map = self.written.lock().unwrap_or_else(|e| e.into_inner());
        map.get(uid)
            .is_some_and(|rv| Some(rv.as_str()) != resource_version)
    }

    /// Forgets the failures counted under `uid` after a success.
    pub fn succeeded(&self, uid: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    /// What the ACME side reads issuers and accounts with.
    pub fn acme(&self) -> crate::acme::session::Sources<'_> {
        crate::acme::session::Sources {
            client: &self.client,
            stores: &self.issuer_stores,
            accounts: &self.accounts,
            cluster_resource_namespace: &self.settings.cluster_resource_namespace,
        }
    }

    /// How much of `wait` is left since `uid` was first seen presented;
    /// None once it has passed (and the record is dropped).
    pub fn still_to_wait(&self, uid: &str, wait: Duration) -> Option<Duration> {
        let mut map = self.presented.lock().unwrap_or_else(|e| e.into_inner());
        let since = *map
            .entry(uid.to_string())
            .or_insert_with(std::time::Instant::now);
        let left = wait.checked_sub(since.elapsed()).filter(|d| !d.is_zero());
        if left.is_none() {
            map.remove(uid);
        }
        left
    }

    /// Counts one more self-check pass of `uid`; returns the count.
    pub fn passed(&self, uid: &str) -> u32 {
        let mut map = self.passes.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(uid.to_string()).or_insert(0);
        *n += 1;
        *n
    }

    /// Forgets the self-check passes of `uid` (a check failed, or it is done).
    pub fn reset_passes(&self, uid: &str) {
        self.passes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    /// Remembers the cluster IP of a namespace's solver Service.
    pub fn note_solver_service(&self, namespace: &str, service: &Service) {
        let ip = service
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        if let Some(ip) = ip {
            self.solver_ips
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(namespace.to_string(), ip);
        }
    }

    /// The remembered cluster IP of a namespace's solver Service.
    pub fn solver_service_ip(&self, namespace: &str) -> Option<IpAddr> {
        self.solver_ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .copied()
    }

    /// Forgets it (the Service is being deleted).
    pub fn forget_solver_service(&self, namespace: &str) {
        self.solver_ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(namespace);
    }

    /// The controllers' caches once they have all listed.
    pub async fn caches(&self) -> crate::metrics::Caches {
        let certificates = self.stores.certificates.listed().await;
        let challenges = self.stores.challenges.listed().await;
        let (issuers, cluster_issuers) = self.issuer_stores.stores();
        self.issuer_stores.ready().await;
        crate::metrics::Caches {
            certificates,
            challenges,
            issuers,
            cluster_issuers,
        }
    }

    /// The writer of the solver Pod store, once (for the watch that fills it).
    pub fn take_solver_pods_writer(&self) -> Option<Writer<Pod>> {
        self.solver_pods_writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn solver_pod(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<Pod>> {
        self.solver_pods
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// Whether a solver Pod of that name is known.
    pub fn has_solver_pod(&self, namespace: &str, name: &str) -> bool {
        self.solver_pod(namespace, name).is_some()
    }

    /// Where a ready solver Pod answers, or why it cannot be asked yet.
    pub fn solver_pod_address(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<SocketAddr>, String> {
        let Some(pod) = self.solver_pod(namespace, name) else {
            return Err(format!(
                "the solver Pod {namespace}/{name} does not exist (yet)"
            ));
        };
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let ip = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        match (ready, ip) {
            (true, Some(ip)) => Ok(Some(SocketAddr::new(
                ip,
                crate::solver::settings::SOLVER_PORT,
            ))),
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
                Err(format!(
                    "the solver Pod {namespace}/{name} is not ready yet{}",
                    why.trim_end()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failed_reconciles_back_off_until_one_succeeds() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let ctx = Context::new(kube::Client::try_from(config).expect("client"), "ns");
        let waits: Vec<u64> = (0..10)
            .map(|_| ctx.reconcile_failed("c").as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        let ok: Result<kube::runtime::controller::Action, crate::runtime::reconcile_error::Error> =
            ctx.tracked("certificates", ("c".into(), "ns/c".into()), async {
                Ok(kube::runtime::controller::Action::await_change())
            })
            .await;
        assert!(ok.is_ok());
        assert_eq!(
            ctx.reconcile_failed("c").as_secs(),
            2,
            "a success starts over"
        );
    }
}

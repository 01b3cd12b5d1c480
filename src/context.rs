//! What every controller shares: the API client, the controller's settings
//! and the caches that save round trips (ACME accounts, retry counters).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::acme::session::{Accounts, IssuerStores};
use crate::certificates::backoff::Backoff;
use crate::challenges::schedule::InFlight;

/// How the shared HTTP-01 solver is reached.
#[derive(Clone, Debug)]
pub struct SolverSettings {
    /// certwright's own namespace, where the chart's solver Service lives.
    pub namespace: String,
    /// The chart's solver Service (selects certwright's Pods), also the
    /// name of the per-namespace mirror Services.
    pub service: String,
    /// Port the solver server listens on in every replica.
    pub port: u16,
    /// Where the self-check sends its request (with the challenge's Host
    /// header) instead of resolving the domain: for clusters without
    /// hairpin NAT, the ingress controller's in-cluster address.
    pub self_check_address: Option<String>,
}

impl Default for SolverSettings {
    fn default() -> Self {
        Self {
            namespace: "certwright".into(),
            service: "certwright-solver".into(),
            port: 8089,
            self_check_address: None,
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: kube::Client,
    /// Where ClusterIssuers' Secrets (account keys) live.
    pub cluster_resource_namespace: String,
    /// Retry bounds for failed issuances and transient ACME errors.
    pub backoff: Backoff,
    /// How often an order or authorization still in progress is polled
    /// when the CA gives no Retry-After.
    pub poll_interval: Duration,
    pub solver: SolverSettings,
    /// Longest wait before asking a CA's renewal information again.
    pub ari_poll_max: Duration,
    /// The CAs' renewal suggestions, by certificate.
    pub renewal_info: crate::certificates::ari::Cache,
    /// Most Challenges worked on at once.
    pub max_challenges: usize,
    /// Most reconciles at once per controller.
    pub concurrency: u16,
    /// Challenges being worked on, by DNS name.
    in_flight: Mutex<InFlight>,
    /// Whether the final Secret is owned by its Certificate.
    pub certificate_owner_ref: bool,
    /// ACME accounts, loaded once per issuer account.
    pub accounts: Accounts,
    /// Issuers as last seen (filled by `acme::session::watch_issuers`).
    pub issuer_stores: IssuerStores,
    /// Consecutive transient failures per object (by uid).
    attempts: Mutex<HashMap<String, u32>>,
    /// The resourceVersion of our last write per object (by uid), to tell
    /// when the watch cache has not caught up with it yet.
    written: Mutex<HashMap<String, String>>,
}

impl Context {
    /// A context with default settings.
    pub fn new(client: kube::Client, cluster_resource_namespace: impl Into<String>) -> Self {
        Self {
            client,
            cluster_resource_namespace: cluster_resource_namespace.into(),
            backoff: Backoff::default(),
            poll_interval: Duration::from_secs(1),
            solver: SolverSettings::default(),
            certificate_owner_ref: false,
            ari_poll_max: Duration::from_secs(6 * 3600),
            renewal_info: Default::default(),
            max_challenges: 60,
            concurrency: 0,
            in_flight: Mutex::default(),
            accounts: Accounts::default(),
            issuer_stores: IssuerStores::default(),
            attempts: Mutex::default(),
            written: Mutex::default(),
        }
    }

    /// How every controller runs (its concurrency).
    pub fn controller_config(&self) -> kube::runtime::controller::Config {
        kube::runtime::controller::Config::default().concurrency(self.concurrency)
    }

    /// The Challenges in flight.
    pub fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more transient failure of `uid`; returns the count.
    pub fn failed_again(&self, uid: &str) -> u32 {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(uid.to_string()).or_insert(0);
        *n += 1;
        *n
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

    /// Forgets the failures of `uid` after a success.
    pub fn succeeded(&self, uid: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }
}

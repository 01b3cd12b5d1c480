//! What every controller shares: the API client, the controller's settings
//! and the caches that save round trips (ACME accounts, retry counters).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::acme::session::{Accounts, IssuerStores};
pub use crate::runtime::settings::Settings;

/// A controller's context: the shared one, and the controller's own state.
pub struct Scoped<S> {
    pub shared: std::sync::Arc<Context>,
    pub state: S,
}

impl<S> std::ops::Deref for Scoped<S> {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.shared
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: kube::Client,
    /// What the command line set.
    pub settings: Settings,
    /// Where events go (published off the reconcile path).
    pub events: crate::runtime::events::Events,
    /// The runs of failures of the Orders and Challenges that the CA
    /// retry policy governs.
    pub retries: crate::acme::retries::Retries,
    /// New orders the CAs' refusals hold back (rate limits, pauses).
    pub holds: crate::acme::limits::Holds,
    /// What was spent of the CAs' published limits.
    pub ledger: crate::acme::budgets::Ledger,
    /// Set when the controller stops: no reconcile starts after it, and
    /// those under way finish (a new order placed is written down).
    stop: tokio::sync::watch::Sender<bool>,
    /// ACME accounts, loaded once per issuer account.
    pub accounts: Accounts,
    /// Issuers as last seen (filled by `acme::session::watch_issuer_stores`).
    pub issuer_stores: IssuerStores,
    /// Failed reconciles in a row per object (by uid), for the error
    /// policies' backoff; a success forgets them.
    pub reconcile_failures: crate::runtime::counts::Counts,
    /// The resourceVersion of our last write per object (by uid), to tell
    /// when the watch cache has not caught up with it yet.
    written: Mutex<HashMap<String, String>>,
    /// The caches more than one controller reads.
    pub stores: crate::runtime::stores::Stores,
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
        Self {
            events: crate::runtime::events::Events::new(client.clone()),
            client,
            settings,
            retries: Default::default(),
            holds: Default::default(),
            ledger: Default::default(),
            stop: tokio::sync::watch::Sender::new(false),
            accounts: Accounts::default(),
            issuer_stores: IssuerStores::default(),
            reconcile_failures: Default::default(),
            written: Mutex::default(),
            stores: Default::default(),
        }
    }

    /// How long to wait after one more failed reconcile of `uid` in a row
    /// (an API call failed): 2 s, 4 s, 8 s, … up to 5 minutes, so a
    /// lasting failure does not retry every 2 s for ever.
    pub fn reconcile_failed(&self, uid: &str) -> Duration {
        let n = self.reconcile_failures.bump(uid);
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
            self.reconcile_failures.forget(&uid);
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

    /// Whether `resource_version` of `uid` is our last write of it.
    pub fn is_own_write(&self, uid: &str, resource_version: Option<&str>) -> bool {
        let map = self.written.lock().unwrap_or_else(|e| e.into_inner());
        resource_version.is_some_and(|rv| map.get(uid).is_some_and(|w| w == rv))
    }

    /// Whether a cached copy of `uid` at `resource_version` may predate
    /// our last write of it (then read it from the API server instead).
    pub fn behind(&self, uid: &str, resource_version: Option<&str>) -> bool {
        let map = self.written.lock().unwrap_or_else(|e| e.into_inner());
        map.get(uid)
            .is_some_and(|rv| Some(rv.as_str()) != resource_version)
    }

    /// What `acme::kept` keeps of this term, and where.
    pub fn kept(&self) -> crate::acme::kept::Kept<'_> {
        crate::acme::kept::Kept {
            client: &self.client,
            namespace: &self.settings.cluster_resource_namespace,
            holds: &self.holds,
            ledger: &self.ledger,
        }
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

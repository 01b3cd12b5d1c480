//! The caches more than one controller reads (Certificates, Challenges),
//! made with the context, before any controller starts. The controller
//! that watches a kind fills its cache ([`crate::runtime::watch::trimmed_into`]);
//! the others, the metrics and the readiness probe read it, and wait for
//! its first list instead of polling for it to exist.

use std::sync::{Arc, Mutex};

use kube::runtime::reflector::{self, Store, store::Writer};

use crate::api::{Certificate, Challenge};

/// The shared caches.
#[derive(Default)]
pub struct Stores {
    /// Filled by the Certificate controller's watch.
    pub certificates: Shared<Certificate>,
    /// Filled by the Challenge controller's watch.
    pub challenges: Shared<Challenge>,
}

/// One shared cache, the writer that fills it (taken once, by the watch),
/// and whether it has listed everything once. (Not the store's
/// `wait_until_ready`: kube-runtime 5 wakes only the last of several
/// concurrent waiters there, and the others wait forever.)
pub struct Shared<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    pub store: Store<K>,
    writer: Mutex<Option<Writer<K>>>,
    listed: Arc<tokio::sync::watch::Sender<bool>>,
}

impl<K> Default for Shared<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    fn default() -> Self {
        let (store, writer) = reflector::store();
        Self {
            store,
            writer: Mutex::new(Some(writer)),
            listed: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

impl<K> Shared<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// The writer, for the one watch that fills the cache.
    pub fn take_writer(&self) -> Option<Writer<K>> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// What that watch signals its full lists on.
    pub fn listed_signal(&self) -> Arc<tokio::sync::watch::Sender<bool>> {
        self.listed.clone()
    }

    /// Whether the cache has listed everything once.
    pub fn is_listed(&self) -> bool {
        *self.listed.borrow()
    }

    /// The cache once it has listed everything (any number may wait).
    pub async fn listed(&self) -> Store<K> {
        let mut rx = self.listed.subscribe();
        let _ = rx.wait_for(|l| *l).await;
        self.store.clone()
    }
}

//! What the Certificate controllers remember between reconciles: the
//! temporary key Secrets' cache and the CAs' renewal suggestions.

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::Store;

use crate::runtime::context::Scoped;

/// The controllers' context: the shared one and their own state.
pub type Ctx = Scoped<State>;

/// The Certificate controllers' own memory.
pub struct State {
    /// The temporary key Secrets as last seen, filled by the controller's
    /// watch on them.
    pub next_keys: Store<Secret>,
    /// The CAs' renewal suggestions, by certificate.
    pub renewal_info: super::renewal::ari::Cache,
}

impl State {
    /// The cache of temporary key Secrets, once it has listed them all.
    pub fn next_keys(&self) -> Option<Store<Secret>> {
        use futures_util::FutureExt;
        let store = self.next_keys.clone();
        matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))).then_some(store)
    }

    /// A temporary key Secret from the cache (its key never changes once
    /// written), or None when the cache is not ready or lacks it.
    pub fn cached_key(&self, namespace: &str, name: &str) -> Option<Secret> {
        let store = self.next_keys()?;
        let found = store.get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))?;
        Some(Secret::clone(&found))
    }
}

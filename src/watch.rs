//! The watches behind the controllers' caches, trimmed: an object's
//! managedFields (who wrote which field, often larger than its spec) is
//! dropped before it is cached, as no controller reads it there. With
//! 10,000 Certificates this is most of what the cache holds.

use std::fmt::Debug;
use std::hash::Hash;

use futures_util::Stream;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// A cache of the objects `api` lists, and the stream of objects applied
/// to it (for `Controller::for_stream`), both without managedFields.
pub fn trimmed<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects();
    (reader, stream)
}

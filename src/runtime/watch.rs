//! The watches behind the controllers, made lighter:
//! - [`trimmed`]: an object's managedFields (who wrote which field, often
//!   larger than its spec) is dropped before it is cached, as no
//!   controller reads it there. With 10,000 Certificates this is most of
//!   what the cache holds.
//! - [`changes`]: a watch of objects written often (a request's status is
//!   patched five times in an issuance) wakes the controller only when
//!   what it reads of them changed.
//! - [`Wake`]: a controller's own objects wake it on every change, or on
//!   every change but its own status writes ([`not_status`]), so that a
//!   write that records progress does not wake the object it was written
//!   on before its next step is due.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};

use futures_util::future::Either;
use futures_util::{Stream, StreamExt, future};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// What wakes a controller of its own objects.
pub enum Wake<K> {
    /// Every change.
    OnEveryChange,
    /// A change of what [`not_status`] reads, or of the status by someone
    /// else: the predicate says whether a version is the controller's own
    /// write (a status another manager writes is acted on).
    ExceptOwnStatus(Box<dyn Fn(&K) -> bool + Send>),
}

impl<K> Wake<K> {
    fn filter<S>(self, events: S) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
    where
        K: Resource + Send + 'static,
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    {
        match self {
            Wake::OnEveryChange => Either::Left(events.applied_objects()),
            Wake::ExceptOwnStatus(own) => {
                Either::Right(changes_or(events, not_status, move |o| !own(o)))
            }
        }
    }
}

/// What someone besides the controller changes of an object: its spec
/// (generation), labels, annotations and finalizers (its owners and
/// deletion are always read). Status writes, the controller's own, pass
/// unseen.
pub fn not_status<K: Resource>(o: &K) -> serde_json::Value {
    let meta = o.meta();
    serde_json::json!([
        meta.generation,
        meta.labels,
        meta.annotations,
        meta.finalizers
    ])
}

/// A cache of the objects `api` lists, and the stream of objects applied
/// to it that `wake` passes (for `Controller::for_stream`), both without
/// managedFields.
pub fn trimmed<K>(
    api: Api<K>,
    config: watcher::Config,
    wake: Wake<K>,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, events) = cached(api, config);
    (reader, wake.filter(events))
}

/// The stream of objects `api` lists, without managedFields, each applied
/// to the shared cache first (one made before the controller, see
/// [`crate::runtime::stores`]), which is marked listed after each full list;
/// `wake` says which of them are passed on.
pub fn trimmed_into<K>(
    shared: &crate::runtime::stores::Shared<K>,
    api: Api<K>,
    config: watcher::Config,
    wake: Wake<K>,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = match shared.take_writer() {
        Some(writer) => (shared.store.clone(), writer),
        // Taken already (a second run on one context): a cache of its own.
        None => reflector::store(),
    };
    let listed = shared.listed_signal();
    let events = watcher(api, config)
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                listed.send_replace(true);
            }
        });
    (reader, wake.filter(events))
}

/// A cache of the objects `api` lists, without managedFields, and the
/// watch events behind it (each applied to the cache before it is passed on).
pub fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let events = watcher(api, config)
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer);
    (reader, events)
}

/// The objects of `events` whose owners, deletion or `fingerprint` (what
/// else the controller reads of them) differ from the last seen, and every
/// deleted object: the trigger stream for `Controller::owns_stream`. A
/// relist passes on only the objects that changed while the watch was down.
pub fn changes<K, S>(
    events: S,
    fingerprint: fn(&K) -> serde_json::Value,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    changes_or(events, fingerprint, |_| false)
}

/// Like [`changes`], also passing every applied version `also` picks.
fn changes_or<K, S>(
    events: S,
    fingerprint: fn(&K) -> serde_json::Value,
    also: impl Fn(&K) -> bool + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let mut seen = Seen::default();
    events.filter_map(move |event| future::ready(seen.pass(event, fingerprint, &also)))
}

/// The fingerprints last seen, by uid; a relist builds a fresh table, so
/// objects deleted while the watch was down are forgotten.
#[derive(Default)]
struct Seen {
    prints: HashMap<String, u64>,
    relisted: Option<HashMap<String, u64>>,
}

impl Seen {
    fn pass<K: Resource>(
        &mut self,
        event: Result<watcher::Event<K>, watcher::Error>,
        fingerprint: fn(&K) -> serde_json::Value,
        also: &dyn Fn(&K) -> bool,
    ) -> Option<Result<K, watcher::Error>> {
        let print = |o: &K| {
            let mut hasher = std::hash::DefaultHasher::new();
            let meta = o.meta();
            let identity = serde_json::json!([meta.owner_references, meta.deletion_timestamp]);
            (identity.to_string(), fingerprint(o).to_string()).hash(&mut hasher);
            hasher.finish()
        };
        let key = |o: &K| o.uid().unwrap_or_else(|| o.name_any());
        match event {
            Err(e) => Some(Err(e)),
            Ok(watcher::Event::Init) => {
                self.relisted = Some(HashMap::new());
                None
            }
            Ok(watcher::Event::InitApply(o)) => {
                let (key, print) = (key(&o), print(&o));
                let changed = self.prints.get(&key) != Some(&print);
                self.relisted
                    .get_or_insert_with(HashMap::new)
                    .insert(key, print);
                changed.then_some(Ok(o))
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(relisted) = self.relisted.take() {
                    self.prints = relisted;
                }
                None
            }
            Ok(watcher::Event::Apply(o)) => {
                let print = print(&o);
                let before = self.prints.insert(key(&o), print);
                (before != Some(print) || also(&o)).then_some(Ok(o))
            }
            Ok(watcher::Event::Delete(o)) => {
                self.prints.remove(&key(&o));
                Some(Ok(o))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    fn map(uid: &str, value: &str, noise: &str) -> ConfigMap {
        serde_json::from_value(
            json!({"metadata": {"name": uid, "uid": uid, "resourceVersion": noise},
            "data": {"read": value, "unread": noise}}),
        )
        .expect("config map")
    }

    fn read(m: &ConfigMap) -> serde_json::Value {
        json!(m.data.as_ref().and_then(|d| d.get("read")))
    }

    fn passed(seen: &mut Seen, event: watcher::Event<ConfigMap>) -> Option<String> {
        seen.pass(Ok(event), read, &|_| false)
            .map(|o| o.expect("object").name_any())
    }

    #[test]
    fn only_changes_in_what_is_read_and_deletions_pass() {
        use watcher::Event::*;
        let mut seen = Seen::default();
        assert_eq!(
            passed(&mut seen, Apply(map("a", "1", "x"))).as_deref(),
            Some("a"),
            "new"
        );
        assert_eq!(
            passed(&mut seen, Apply(map("a", "1", "y"))),
            None,
            "only unread fields changed"
        );
        assert_eq!(
            passed(&mut seen, Apply(map("a", "2", "y"))).as_deref(),
            Some("a")
        );
        assert_eq!(
            passed(&mut seen, Delete(map("a", "2", "y"))).as_deref(),
            Some("a")
        );
        assert_eq!(
            passed(&mut seen, Apply(map("a", "2", "z"))).as_deref(),
            Some("a"),
            "made again"
        );
    }

    #[test]
    fn a_write_not_our_own_passes_though_what_is_read_stands() {
        use watcher::Event::*;
        let mut seen = Seen::default();
        let ours = |m: &ConfigMap| m.metadata.resource_version.as_deref() == Some("ours");
        let not_ours = |m: &ConfigMap| !ours(m);
        let mut pass = |event| {
            seen.pass(Ok(event), read, &not_ours)
                .map(|o| o.expect("object").name_any())
        };
        assert!(pass(Apply(map("a", "1", "x"))).is_some(), "new");
        assert_eq!(pass(Apply(map("a", "1", "ours"))), None, "our own write");
        assert_eq!(
            pass(Apply(map("a", "1", "theirs"))).as_deref(),
            Some("a"),
            "someone else's"
        );
    }

    #[test]
    fn a_relist_passes_what_changed_meanwhile_and_forgets_what_went() {
        use watcher::Event::*;
        let mut seen = Seen::default();
        passed(&mut seen, Apply(map("a", "1", "x")));
        passed(&mut seen, Apply(map("b", "1", "x")));
        passed(&mut seen, Init);
        assert_eq!(passed(&mut seen, InitApply(map("a", "1", "y"))), None);
        passed(&mut seen, InitDone);
        assert!(
            !seen.prints.contains_key("b"),
            "b was deleted while the watch was down"
        );
        passed(&mut seen, Init);
        assert_eq!(
            passed(&mut seen, InitApply(map("a", "3", "y"))).as_deref(),
            Some("a")
        );
        passed(&mut seen, InitDone);
        assert!(seen.relisted.is_none());
    }
}

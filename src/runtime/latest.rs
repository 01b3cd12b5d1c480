//! The objects as our own last writes returned them, for a pass that a
//! timer starts before the watch has delivered those writes: the cache
//! would hand it a copy from before them, and the pass would redo a step
//! it has done (present a token again, clean it up twice).
//!
//! Resource versions are compared only for equality, as the API asks: a
//! cached copy at a version one of our writes started from, or returned
//! and wrote over again, is known to be behind; any other version is news
//! from someone else, and the cache is used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::{Resource, ResourceExt};

/// Most versions remembered as behind, per object (one pass writes at most
/// a few times).
const MOST_BEHIND: usize = 8;
/// Most objects remembered; past that the memory starts over (it only
/// spares a pass a step done twice).
const MOST_OBJECTS: usize = 20_000;

struct Entry<K> {
    behind: Vec<String>,
    object: Arc<K>,
}

/// The latest object per uid, as our writes returned it.
pub struct Latest<K> {
    entries: Mutex<HashMap<String, Entry<K>>>,
}

impl<K> Default for Latest<K> {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
        }
    }
}

impl<K: Resource> Latest<K> {
    /// Records that a write to `before` returned `after`.
    pub fn wrote(&self, before: &K, mut after: K) {
        after.managed_fields_mut().clear();
        let Some(uid) = after.uid() else { return };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MOST_OBJECTS && !entries.contains_key(&uid) {
            entries.clear();
        }
        let mut behind = Vec::new();
        if let Some(earlier) = entries.remove(&uid) {
            behind = earlier.behind;
            behind.extend(earlier.object.resource_version());
        }
        behind.extend(before.resource_version());
        behind.dedup();
        behind.retain(|rv| Some(rv) != after.resource_version().as_ref());
        if behind.len() > MOST_BEHIND {
            behind.drain(..behind.len() - MOST_BEHIND);
        }
        entries.insert(
            uid,
            Entry {
                behind,
                object: Arc::new(after),
            },
        );
    }

    /// The freshest copy of `cached` known: our last write's when the cache
    /// is behind it, else the cache's (and the memory of it goes).
    pub fn pick(&self, cached: Arc<K>) -> Arc<K> {
        let Some(uid) = cached.uid() else {
            return cached;
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = entries.get(&uid) else {
            return cached;
        };
        match cached.resource_version() {
            Some(rv) if entry.behind.contains(&rv) => entry.object.clone(),
            _ => {
                entries.remove(&uid);
                cached
            }
        }
    }

    /// Whether `object` is at a version one of our writes made.
    pub fn is_ours(&self, object: &K) -> bool {
        let (Some(uid), Some(rv)) = (object.uid(), object.resource_version()) else {
            return false;
        };
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&uid).is_some_and(|e| {
            e.object.resource_version().as_ref() == Some(&rv) || e.behind.contains(&rv)
        })
    }

    /// Forgets `uid`.
    pub fn forget(&self, uid: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    fn map(rv: &str, value: &str) -> ConfigMap {
        serde_json::from_value(
            json!({"metadata": {"name": "m", "uid": "u", "resourceVersion": rv},
            "data": {"v": value}}),
        )
        .expect("config map")
    }

    fn value(m: &ConfigMap) -> &str {
        m.data.as_ref().and_then(|d| d.get("v")).map_or("", |v| v)
    }

    #[test]
    fn a_cache_behind_our_writes_gives_way_to_them() {
        let latest = Latest::default();
        let cached = map("1", "a");
        latest.wrote(&cached, map("2", "b"));
        latest.wrote(&cached, map("3", "c"));
        assert!(latest.is_ours(&map("3", "c")) && latest.is_ours(&map("2", "b")));
        assert!(!latest.is_ours(&map("9", "z")));
        assert_eq!(value(&latest.pick(Arc::new(map("1", "a")))), "c");
        assert_eq!(value(&latest.pick(Arc::new(map("2", "b")))), "c");
        assert_eq!(value(&latest.pick(Arc::new(map("3", "c")))), "c");
        assert_eq!(
            value(&latest.pick(Arc::new(map("1", "a")))),
            "a",
            "once the cache caught up, the memory is gone"
        );
    }

    #[test]
    fn news_from_someone_else_wins() {
        let latest = Latest::default();
        latest.wrote(&map("1", "a"), map("2", "b"));
        assert_eq!(value(&latest.pick(Arc::new(map("4", "d")))), "d");
        latest.wrote(&map("4", "d"), map("5", "e"));
        latest.forget("u");
        assert_eq!(value(&latest.pick(Arc::new(map("4", "d")))), "d");
    }
}

//! Garbage collection as kube-controller-manager does it, run inline after
//! each deletion: dependents of a deleted owner (ownerReferences), orphaning,
//! foreground deletion and terminating namespaces.

use serde_json::{Value, json};

use super::store::{
    EventType, ObjectKey, Propagation, State, Store, finalizers, meta, meta_mut, type_of,
};

impl Store {
    pub(super) fn dependents(&self, state: &State, owner_uid: &str) -> Vec<ObjectKey> {
        state
            .objects
            .iter()
            .filter(|(_, o)| {
                meta(o)["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub(super) fn has_dependents(&self, state: &State, owner_uid: &str) -> bool {
        !self.dependents(state, owner_uid).is_empty()
    }

    pub(super) fn uid_exists(state: &State, uid: &str) -> bool {
        state.objects.values().any(|o| meta(o)["uid"] == uid)
    }

    /// Background garbage collection: a dependent whose owners are all gone
    /// is deleted; one that still has an owner loses the dangling reference.
    pub(super) fn collect_garbage(&self, state: &mut State, owner_uid: &str) {
        for key in self.dependents(state, owner_uid) {
            let Some(dep) = state.objects.get(&key).cloned() else {
                continue;
            };
            let refs = meta(&dep)["ownerReferences"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let alive: Vec<Value> = refs
                .into_iter()
                .filter(|r| {
                    r["uid"] != owner_uid
                        && Self::uid_exists(state, r["uid"].as_str().unwrap_or(""))
                })
                .collect();
            if alive.is_empty() {
                self.delete_key(state, &key, Propagation::Background);
            } else {
                let mut updated = dep;
                meta_mut(&mut updated).insert("ownerReferences".into(), json!(alive));
                let rt = type_of(state, &key);
                self.commit(state, key, updated, EventType::Modified, &rt);
            }
        }
    }

    pub(super) fn orphan_dependents(&self, state: &mut State, owner_uid: &str) {
        for key in self.dependents(state, owner_uid) {
            let Some(mut dep) = state.objects.get(&key).cloned() else {
                continue;
            };
            let refs: Vec<Value> = meta(&dep)["ownerReferences"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r["uid"] != owner_uid)
                .collect();
            let m = meta_mut(&mut dep);
            if refs.is_empty() {
                m.remove("ownerReferences");
            } else {
                m.insert("ownerReferences".into(), json!(refs));
            }
            let rt = type_of(state, &key);
            self.commit(state, key, dep, EventType::Modified, &rt);
        }
    }

    /// Drops the `foregroundDeletion` finalizer of an owner whose dependents are gone.
    pub(super) fn finish_foreground(&self, state: &mut State, owner_uid: &str) {
        if self.has_dependents(state, owner_uid) {
            return;
        }
        let Some(key) = state
            .objects
            .iter()
            .find(|(_, o)| meta(o)["uid"] == owner_uid)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        let Some(mut owner) = state.objects.get(&key).cloned() else {
            return;
        };
        let rest: Vec<String> = finalizers(&owner)
            .into_iter()
            .filter(|f| f != "foregroundDeletion")
            .collect();
        if rest.len() == finalizers(&owner).len() {
            return;
        }
        if rest.is_empty() {
            self.remove(state, &key);
        } else {
            meta_mut(&mut owner).insert("finalizers".into(), json!(rest));
            let rt = type_of(state, &key);
            self.commit(state, key, owner, EventType::Modified, &rt);
        }
    }

    /// Removes a terminating namespace once nothing is left in it.
    pub(super) fn finish_namespace(&self, state: &mut State, namespace: &str) {
        let key = (
            String::new(),
            "namespaces".to_string(),
            String::new(),
            namespace.to_string(),
        );
        let terminating = state.objects.get(&key).is_some_and(|ns| {
            !meta(ns)["deletionTimestamp"].is_null() && finalizers(ns).is_empty()
        });
        if terminating && !state.objects.keys().any(|k| k.2 == namespace) {
            self.remove(state, &key);
        }
    }
}

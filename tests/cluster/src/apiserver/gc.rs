//! Deletion: finalizers and deletionTimestamp, then garbage collection as
//! kube-controller-manager does it, run inline after each deletion:
//! dependents of a deleted owner (ownerReferences), orphaning, foreground
//! deletion, terminating namespaces and the instances of a deleted CRD.

use serde_json::{Value, json};

use super::error::ApiError;
use super::ids::now_rfc3339;
use super::registry::ResourceType;
use super::store::{
    EventType, ObjectKey, Propagation, State, Store, finalizers, meta, meta_mut, object_key,
    type_of, with_api_version,
};

impl Store {
    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let key = object_key(rt, namespace, name);
        self.delete_key(&mut state, &key, propagation)
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }
    pub(super) fn delete_key(
        &self,
        state: &mut State,
        key: &ObjectKey,
        propagation: Propagation,
    ) -> Option<Value> {
        let old = state.objects.get(key).cloned()?;
        let rt = type_of(state, key);
        if !meta(&old)["deletionTimestamp"].is_null() {
            return Some(old);
        }
        let uid = meta(&old)["uid"].as_str().unwrap_or("").to_string();
        if propagation == Propagation::Orphan {
            self.orphan_dependents(state, &uid);
        }
        let is_namespace = key.0.is_empty() && key.1 == "namespaces";
        let mut fins = finalizers(&old);
        if propagation == Propagation::Foreground && self.has_dependents(state, &uid) {
            fins.push("foregroundDeletion".into());
        }
        if fins.is_empty() && !is_namespace {
            return Some(self.remove(state, key));
        }
        let mut marked = old;
        {
            let m = meta_mut(&mut marked);
            m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            m.insert("finalizers".into(), json!(fins));
            if fins.is_empty() {
                m.remove("finalizers");
            }
        }
        if is_namespace {
            marked["status"] = json!({"phase": "Terminating"});
        }
        let stored = self.commit(state, key.clone(), marked, EventType::Modified, &rt);
        if propagation == Propagation::Foreground {
            for dep in self.dependents(state, &uid) {
                self.delete_key(state, &dep, Propagation::Foreground);
            }
            self.finish_foreground(state, &uid);
        }
        if is_namespace {
            let inside: Vec<ObjectKey> = state
                .objects
                .keys()
                .filter(|k| k.2 == key.3)
                .cloned()
                .collect();
            for k in inside {
                self.delete_key(state, &k, Propagation::Background);
            }
            self.finish_namespace(state, &key.3);
        }
        state.objects.get(key).cloned().or(Some(stored))
    }
    /// Removes an object for good, then collects what depended on it.
    pub(super) fn remove(&self, state: &mut State, key: &ObjectKey) -> Value {
        let Some(mut object) = state.objects.remove(key) else {
            return Value::Null;
        };
        let rt = type_of(state, key);
        state.rv += 1;
        meta_mut(&mut object).insert("resourceVersion".into(), json!(state.rv.to_string()));
        let object = with_api_version(&object, &rt);
        self.emit(state, EventType::Deleted, key, object.clone(), None);
        if key.0 == "apiextensions.k8s.io" && key.1 == "customresourcedefinitions" {
            let group = object["spec"]["group"].as_str().unwrap_or("").to_string();
            let plural = object["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or("")
                .to_string();
            state.registry.unregister_crd(&group, &plural);
            let instances: Vec<ObjectKey> = state
                .objects
                .keys()
                .filter(|k| k.0 == group && k.1 == plural)
                .cloned()
                .collect();
            for k in instances {
                self.remove(state, &k);
            }
        }
        let uid = meta(&object)["uid"].as_str().unwrap_or("").to_string();
        self.collect_garbage(state, &uid);
        // Owners waiting in foreground deletion may be done now.
        for owner in meta(&object)["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            self.finish_foreground(state, owner["uid"].as_str().unwrap_or(""));
        }
        if !key.2.is_empty() {
            self.finish_namespace(state, &key.2);
        }
        object
    }
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

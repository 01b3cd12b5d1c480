//! The object store and the semantics a controller depends on: one strictly
//! increasing resourceVersion, uid and creationTimestamp, generation bumps
//! on spec changes, status subresources, optimistic concurrency, finalizers
//! and deletionTimestamp, ownerReference garbage collection, namespace
//! deletion, CRD registration and schema validation, and a bounded event
//! history that watches replay from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::admission::validate;
use super::apply::{Writer, apply, record_update};
use super::error::ApiError;
use super::fields::Ctx;
pub use super::ids::now_rfc3339;
use super::ids::{make_uid, random_suffix};
use super::registry::{Registry, ResourceType};
use super::selector::{FieldSelector, LabelSelector};

/// (group, plural, namespace, name); namespace is empty for cluster-scoped objects.
pub type ObjectKey = (String, String, String, String);

/// The objects of one type (in one namespace, when given), found by range
/// in the key order instead of by scanning everything stored.
fn of_type<'a>(
    objects: &'a BTreeMap<ObjectKey, Value>,
    rt: &ResourceType,
    namespace: Option<&str>,
) -> impl Iterator<Item = (&'a ObjectKey, &'a Value)> {
    let (group, plural) = (rt.group.clone(), rt.plural.clone());
    let ns = namespace.map(str::to_string);
    let start = (
        group.clone(),
        plural.clone(),
        ns.clone().unwrap_or_default(),
        String::new(),
    );
    objects.range(start..).take_while(move |((g, p, n, _), _)| {
        *g == group && *p == plural && ns.as_ref().is_none_or(|ns| ns == n)
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub rv: u64,
    pub event_type: EventType,
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub object: Value,
    /// The object before a MODIFIED change, so filtered watches can turn a
    /// change into ADDED or DELETED when the object enters or leaves the filter.
    pub previous: Option<Value>,
}

/// How a write's field ownership is recorded in managedFields.
#[derive(Clone, Copy, Debug)]
pub enum Ownership<'a> {
    /// An ordinary write (create, update, patch) by this field manager.
    Update(&'a str),
    /// Server-side apply already computed managedFields.
    Computed,
}

/// Schema context of a resource type for field ownership.
fn ctx_of(rt: &ResourceType) -> Ctx<'_> {
    Ctx {
        schema: rt.validator.as_deref().map(|v| v.schema()),
    }
}

/// The storage key of a named object of `rt`.
pub(super) fn object_key(rt: &ResourceType, namespace: &str, name: &str) -> ObjectKey {
    (
        rt.group.clone(),
        rt.plural.clone(),
        namespace.to_string(),
        name.to_string(),
    )
}

/// Live watch events.
pub type EventReceiver = broadcast::Receiver<Arc<WatchEvent>>;

/// How dependents are treated when their owner is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// What a list or watch is restricted to.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, namespace: &str, object: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

pub(super) struct State {
    pub(super) rv: u64,
    pub(super) uid_seq: u64,
    pub(super) registry: Registry,
    pub(super) objects: BTreeMap<ObjectKey, Value>,
    pub(super) history: VecDeque<Arc<WatchEvent>>,
}

/// The emulator's whole state. Cheap to share behind an `Arc`.
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    /// Bumped to end every open watch.
    closer: tokio::sync::watch::Sender<u64>,
    history_limit: usize,
}

pub(super) fn meta(object: &Value) -> &Value {
    &object["metadata"]
}

pub(super) fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

pub(super) fn finalizers(object: &Value) -> Vec<String> {
    meta(object)["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything but type, metadata and status: what `generation` tracks.
fn spec_part(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.as_object_mut() {
        for k in ["apiVersion", "kind", "metadata", "status"] {
            m.remove(k);
        }
    }
    v
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (events, _) = broadcast::channel(4096);
        let store = Self {
            state: Mutex::new(State {
                rv: 0,
                uid_seq: 0,
                registry: Registry::with_builtins(),
                objects: BTreeMap::new(),
                history: VecDeque::new(),
            }),
            events,
            closer: tokio::sync::watch::Sender::new(0),
            history_limit,
        };
        for ns in ["default", "kube-system", "kube-public"] {
            let ns_type = store
                .resource("", "v1", "namespaces")
                .expect("namespaces are built in");
            let _ = store.create(
                &ns_type,
                "",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                "kube-apiserver",
            );
        }
        store
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in the emulator; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.lock().registry.get(group, version, plural).cloned()
    }

    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.events.subscribe()
    }

    /// Events after `rv` still in the history, and a receiver for later ones,
    /// taken atomically; `Err` when `rv` is older than the history (410 Gone).
    pub fn watch_from(&self, rv: u64) -> Result<(Vec<Arc<WatchEvent>>, EventReceiver), ApiError> {
        let state = self.lock();
        let rx = self.events.subscribe();
        let oldest = state.history.front().map(|e| e.rv).unwrap_or(state.rv + 1);
        if rv + 1 < oldest && rv < state.rv {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                oldest - 1
            )));
        }
        Ok((
            state
                .history
                .iter()
                .filter(|e| e.rv > rv)
                .cloned()
                .collect(),
            rx,
        ))
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let state = self.lock();
        let key = object_key(rt, namespace, name);
        state
            .objects
            .get(&key)
            .map(|o| with_api_version(o, rt))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// Matching objects, and the resourceVersion the list is consistent with.
    pub fn list(&self, rt: &ResourceType, filter: &Filter) -> (Vec<Value>, u64) {
        let state = self.lock();
        let items = of_type(&state.objects, rt, filter.namespace.as_deref())
            .filter(|((_, _, ns, _), o)| filter.matches(ns, o))
            .map(|(_, o)| with_api_version(o, rt))
            .collect();
        (items, state.rv)
    }

    pub fn create(
        &self,
        rt: &ResourceType,
        namespace: &str,
        object: Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        self.create_locked(
            &mut state,
            rt,
            namespace,
            object,
            Ownership::Update(manager),
        )
    }

    fn create_locked(
        &self,
        state: &mut State,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
        ownership: Ownership<'_>,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        check_kind(rt, &object)?;
        let body_ns = meta(&object)["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if rt.namespaced {
            if !body_ns.is_empty() && body_ns != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let ns_key = (
                String::new(),
                "namespaces".to_string(),
                String::new(),
                namespace.to_string(),
            );
            match state.objects.get(&ns_key) {
                None => return Err(ApiError::not_found("", "namespaces", namespace)),
                Some(ns) if !meta(ns)["deletionTimestamp"].is_null() => {
                    return Err(ApiError {
                        code: 403,
                        reason: "Forbidden",
                        message: format!(
                            "unable to create new content in namespace {namespace} because it is being terminated"
                        ),
                        details: Value::Null,
                    });
                }
                Some(_) => {}
            }
        }
        let name = match meta(&object)["name"].as_str().filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => match meta(&object)["generateName"].as_str() {
                Some(prefix) => format!("{prefix}{}", random_suffix(state.uid_seq + state.rv)),
                None => {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        "",
                        &rt.group,
                        vec![(
                            "FieldValueRequired".into(),
                            "metadata.name".into(),
                            "metadata.name: Required value: name or generateName is required"
                                .into(),
                        )],
                    ));
                }
            },
        };
        let key = (
            rt.group.clone(),
            rt.plural.clone(),
            if rt.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name.clone(),
        );
        if state.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        if rt.status && rt.validator.is_some() {
            // Custom resources with a status subresource ignore status on create.
            object.as_object_mut().map(|o| o.remove("status"));
        }
        state.uid_seq += 1;
        let uid = make_uid(state.uid_seq);
        {
            let m = meta_mut(&mut object);
            m.insert("name".into(), json!(name));
            if rt.namespaced {
                m.insert("namespace".into(), json!(namespace));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(uid));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            m.insert("generation".into(), json!(1));
            for server_set in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
                "selfLink",
            ] {
                m.remove(server_set);
            }
        }
        let mut object = validate(rt, object, None)?;
        if rt.group.is_empty() && rt.plural == "namespaces" {
            object["status"] = json!({"phase": "Active"});
        }
        if let Ownership::Update(manager) = ownership {
            meta_mut(&mut object).remove("managedFields");
            let api_version = rt.api_version();
            let writer = Writer {
                manager,
                api_version: &api_version,
                subresource: None,
            };
            record_update(&Value::Null, &mut object, writer, ctx_of(rt));
        }
        if rt.plural == "customresourcedefinitions" && rt.group == "apiextensions.k8s.io" {
            state.registry.register_crd(&object).map_err(|e| {
                ApiError::invalid(
                    &rt.kind,
                    &name,
                    &rt.group,
                    vec![("FieldValueInvalid".into(), "spec".into(), e)],
                )
            })?;
        }
        Ok(self.commit(state, key, object, EventType::Added, rt))
    }

    /// PUT of the main resource (`subresource` None) or of `/status`.
    pub fn update(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        object: Value,
        subresource: Option<&str>,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        self.replace(
            &mut state,
            rt,
            namespace,
            name,
            object,
            subresource,
            Ownership::Update(manager),
        )
    }

    /// Applies `change` to the current object, then stores it as an update.
    /// The resourceVersion is checked only if `change` sets one.
    pub fn patch(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        manager: &str,
        change: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let key = object_key(rt, namespace, name);
        let current = state
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        // The current resourceVersion stays in the document, so a JSON patch
        // may test it as a precondition; one the patch changes is checked.
        let mut patched = with_api_version(&current, rt);
        change(&mut patched)?;
        if meta(&patched)["resourceVersion"].is_null() {
            let rv = meta(&current)["resourceVersion"].clone();
            meta_mut(&mut patched).insert("resourceVersion".into(), rv);
        }
        self.replace(
            &mut state,
            rt,
            namespace,
            name,
            patched,
            subresource,
            Ownership::Update(manager),
        )
    }

    /// Server-side apply of `applied` by `manager`; creates the object if
    /// it does not exist.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        applied: Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        check_kind(rt, &applied)?;
        let api_version = rt.api_version();
        let writer = Writer {
            manager,
            api_version: &api_version,
            subresource,
        };
        let key = object_key(rt, namespace, name);
        match state.objects.get(&key).map(|c| with_api_version(c, rt)) {
            None if subresource.is_some() => Err(ApiError::not_found(&rt.group, &rt.plural, name)),
            None => {
                let mut object = apply(&Value::Null, &applied, writer, force, ctx_of(rt))?;
                meta_mut(&mut object).insert("name".into(), json!(name));
                self.create_locked(&mut state, rt, namespace, object, Ownership::Computed)
            }
            Some(current) => {
                let mut merged = apply(&current, &applied, writer, force, ctx_of(rt))?;
                if meta(&applied)["resourceVersion"].is_null() {
                    let rv = meta(&current)["resourceVersion"].clone();
                    meta_mut(&mut merged).insert("resourceVersion".into(), rv);
                }
                self.replace(
                    &mut state,
                    rt,
                    namespace,
                    name,
                    merged,
                    subresource,
                    Ownership::Computed,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn replace(
        &self,
        state: &mut State,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        mut object: Value,
        subresource: Option<&str>,
        ownership: Ownership<'_>,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        check_kind(rt, &object)?;
        if subresource == Some("status") && !rt.status {
            return Err(ApiError::not_found(
                &rt.group,
                &format!("{}/status", rt.plural),
                name,
            ));
        }
        let key = object_key(rt, namespace, name);
        let old = state
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        if let Some(body_name) = meta(&object)["name"].as_str()
            && body_name != name
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        if let Some(rv) = meta(&object)["resourceVersion"].as_str()
            && Some(rv) != meta(&old)["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let incoming_fields = meta(&object)["managedFields"].clone();
        if subresource == Some("status") {
            // Only status changes through /status.
            let status = object.get("status").cloned();
            object = old.clone();
            match status {
                Some(s) => object["status"] = s,
                None => {
                    object.as_object_mut().map(|o| o.remove("status"));
                }
            }
        } else if rt.status {
            // The main resource ignores status when there is a subresource for it.
            match old.get("status") {
                Some(s) => object["status"] = s.clone(),
                None => {
                    object.as_object_mut().map(|o| o.remove("status"));
                }
            }
        }
        let deleting = !meta(&old)["deletionTimestamp"].is_null();
        if deleting {
            let before = finalizers(&old);
            if finalizers(&object).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    &rt.kind,
                    name,
                    &rt.group,
                    vec![(
                        "FieldValueForbidden".into(),
                        "metadata.finalizers".into(),
                        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted".into(),
                    )],
                ));
            }
        }
        {
            let old_meta = meta(&old).clone();
            let m = meta_mut(&mut object);
            for kept in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(kept) {
                    Some(v) => m.insert(kept.into(), v.clone()),
                    None => m.remove(kept),
                };
            }
            m.remove("resourceVersion");
        }
        if spec_part(&object) != spec_part(&old) {
            let generation = meta(&old)["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut object).insert("generation".into(), json!(generation));
        }
        let mut object = validate(rt, object, Some(&old))?;
        let comparable = |o: &Value| {
            let mut o = strip_api(o);
            meta_mut(&mut o).remove("resourceVersion");
            meta_mut(&mut o).remove("managedFields");
            o
        };
        // A client may set managedFields itself (kubectl does when it moves
        // client-side-applied objects to server-side apply): then they are
        // taken as given.
        let explicit_fields = matches!(ownership, Ownership::Update(_))
            && !incoming_fields.is_null()
            && incoming_fields != meta(&old)["managedFields"];
        if comparable(&object) == comparable(&old) && !explicit_fields {
            return Ok(with_api_version(&old, rt));
        }
        match ownership {
            Ownership::Computed => {
                meta_mut(&mut object).insert("managedFields".into(), incoming_fields);
            }
            Ownership::Update(_) if explicit_fields => {
                meta_mut(&mut object).insert("managedFields".into(), incoming_fields);
            }
            Ownership::Update(manager) => {
                match meta(&old).get("managedFields") {
                    Some(mf) => meta_mut(&mut object).insert("managedFields".into(), mf.clone()),
                    None => meta_mut(&mut object).remove("managedFields"),
                };
                let api_version = rt.api_version();
                let writer = Writer {
                    manager,
                    api_version: &api_version,
                    subresource,
                };
                record_update(&old, &mut object, writer, ctx_of(rt));
            }
        }
        if rt.plural == "customresourcedefinitions" && rt.group == "apiextensions.k8s.io" {
            state.registry.register_crd(&object).map_err(|e| {
                ApiError::invalid(
                    &rt.kind,
                    name,
                    &rt.group,
                    vec![("FieldValueInvalid".into(), "spec".into(), e)],
                )
            })?;
        }
        let stored = self.commit(state, key.clone(), object, EventType::Modified, rt);
        if deleting && finalizers(&stored).is_empty() {
            return Ok(self.remove(state, &key));
        }
        Ok(stored)
    }

    pub(super) fn commit(
        &self,
        state: &mut State,
        key: ObjectKey,
        mut object: Value,
        event_type: EventType,
        rt: &ResourceType,
    ) -> Value {
        state.rv += 1;
        meta_mut(&mut object).insert("resourceVersion".into(), json!(state.rv.to_string()));
        let stored = strip_api(&object);
        let previous = state
            .objects
            .insert(key.clone(), stored)
            .map(|p| with_api_version(&p, rt));
        let object = with_api_version(&object, rt);
        self.emit(state, event_type, &key, object.clone(), previous);
        object
    }

    pub(super) fn emit(
        &self,
        state: &mut State,
        event_type: EventType,
        key: &ObjectKey,
        object: Value,
        previous: Option<Value>,
    ) {
        let event = Arc::new(WatchEvent {
            previous,
            rv: state.rv,
            event_type,
            group: key.0.clone(),
            plural: key.1.clone(),
            namespace: key.2.clone(),
            object,
        });
        state.history.push_back(event.clone());
        while state.history.len() > self.history_limit {
            state.history.pop_front();
        }
        // No receiver is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    /// A receiver that changes when every open watch must end.
    pub fn watch_closer(&self) -> tokio::sync::watch::Receiver<u64> {
        self.closer.subscribe()
    }

    /// Ends every open watch; clients reconnect from their last version.
    pub fn close_watches(&self) {
        self.closer.send_modify(|n| *n += 1);
    }

    /// Forgets all history: watches from any earlier version get 410 Gone.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.history.clear();
    }
}

/// The resource type of a stored key (any served version of it).
pub(super) fn type_of(state: &State, key: &ObjectKey) -> ResourceType {
    state
        .registry
        .all()
        .find(|t| t.group == key.0 && t.plural == key.1)
        .cloned()
        .unwrap_or_else(|| ResourceType {
            group: key.0.clone(),
            version: "v1".into(),
            kind: String::new(),
            plural: key.1.clone(),
            singular: String::new(),
            namespaced: !key.2.is_empty(),
            short_names: Vec::new(),
            categories: Vec::new(),
            status: false,
            validator: None,
            printer_columns: Vec::new(),
        })
}

pub(super) fn strip_api(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// The stored object as served at `rt`'s version.
pub(super) fn with_api_version(object: &Value, rt: &ResourceType) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(rt.api_version()));
    out.insert("kind".into(), json!(rt.kind));
    if let Some(m) = object.as_object() {
        for (k, v) in m {
            if k != "apiVersion" && k != "kind" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn check_kind(rt: &ResourceType, object: &Value) -> Result<(), ApiError> {
    if let Some(kind) = object["kind"].as_str()
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the body is a {kind}, but the request is for {}",
            rt.plural
        )));
    }
    Ok(())
}

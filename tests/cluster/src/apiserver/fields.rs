//! Field sets for server-side apply: which leaves of an object a manager
//! owns, in Kubernetes' FieldsV1 encoding (`f:name`, `k:{"type":"Ready"}`,
//! `v:"value"`, `.` for a list-map item itself), and the list semantics they
//! depend on: from the CRD schema (`x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`), or for built-in kinds and metadata from the
//! strategic-merge keys Kubernetes declares.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Elem {
    /// A key of an object.
    Field(String),
    /// The item of a list-map with these key values (compact JSON object).
    Key(String),
    /// A member of a set list (compact JSON value).
    Value(String),
}

pub type Path = Vec<Elem>;
pub type FieldSet = BTreeSet<Path>;

/// How a list merges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// Schema context while walking an object: a CRD schema node, or none for
/// built-in kinds (and for metadata, which CRD schemas do not describe).
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub schema: Option<&'a Value>,
}

impl<'a> Ctx<'a> {
    pub fn child(self, key: &str) -> Ctx<'a> {
        let schema = self.schema.and_then(|s| {
            s["properties"]
                .get(key)
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
        });
        Ctx { schema }
    }

    pub fn items(self) -> Ctx<'a> {
        Ctx {
            schema: self.schema.and_then(|s| s.get("items")),
        }
    }

    fn atomic_map(self) -> bool {
        self.schema
            .is_some_and(|s| s["x-kubernetes-map-type"] == "atomic")
    }

    /// The list kind of field `name` whose schema node is `self`.
    pub fn list_kind(self, name: &str) -> ListKind {
        if let Some(s) = self.schema {
            return match s["x-kubernetes-list-type"].as_str() {
                Some("map") => ListKind::Map(
                    s["x-kubernetes-list-map-keys"]
                        .as_array()
                        .map(|k| {
                            k.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                Some("set") => ListKind::Set,
                _ => ListKind::Atomic,
            };
        }
        builtin_list_kind(name)
    }
}

/// Merge keys of the built-in lists the emulator's clients write.
pub fn builtin_list_kind(name: &str) -> ListKind {
    let keys: &[&str] = match name {
        "conditions" => &["type"],
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => &["name"],
        "volumeMounts" => &["mountPath"],
        // Container ports merge by containerPort, Service ports by port;
        // only the keys an item has are used.
        "ports" => &["containerPort", "port", "protocol"],
        "ownerReferences" => &["uid"],
        "finalizers" => return ListKind::Set,
        _ => return ListKind::Atomic,
    };
    ListKind::Map(keys.iter().map(|k| k.to_string()).collect())
}

/// The key values that identify a list-map item, as compact JSON.
pub fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m).to_string()
}

/// Every owned leaf of `value` (list-map items count as nodes of their own).
pub fn field_set(value: &Value, ctx: Ctx<'_>) -> FieldSet {
    let mut out = FieldSet::new();
    walk(value, ctx, &mut Vec::new(), &mut out, "");
    out
}

fn walk(value: &Value, ctx: Ctx<'_>, path: &mut Path, out: &mut FieldSet, name: &str) {
    match value {
        Value::Object(map) if !map.is_empty() && !ctx.atomic_map() => {
            for (k, v) in map {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if path.len() == 1
                    && path[0] == Elem::Field("metadata".into())
                    && is_server_metadata(k)
                {
                    continue;
                }
                let child = if path.is_empty() && k == "metadata" {
                    Ctx { schema: None }
                } else {
                    ctx.child(k)
                };
                path.push(Elem::Field(k.clone()));
                walk(v, child, path, out, k);
                path.pop();
            }
        }
        Value::Array(items) => match ctx.list_kind(name) {
            ListKind::Atomic => {
                out.insert(path.clone());
            }
            ListKind::Set => {
                for item in items {
                    let mut p = path.clone();
                    p.push(Elem::Value(item.to_string()));
                    out.insert(p);
                }
            }
            ListKind::Map(keys) => {
                for item in items {
                    path.push(Elem::Key(item_key(item, &keys)));
                    out.insert(path.clone());
                    walk(item, ctx.items(), path, out, "");
                    path.pop();
                }
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Metadata the server owns: never part of a manager's field set.
pub fn is_server_metadata(key: &str) -> bool {
    matches!(
        key,
        "name"
            | "namespace"
            | "uid"
            | "resourceVersion"
            | "generation"
            | "creationTimestamp"
            | "deletionTimestamp"
            | "deletionGracePeriodSeconds"
            | "managedFields"
            | "selfLink"
            | "generateName"
    )
}

/// The value at `path`, if any.
pub fn get<'a>(value: &'a Value, path: &[Elem]) -> Option<&'a Value> {
    let mut v = value;
    for e in path {
        v = match e {
            Elem::Field(k) => v.get(k)?,
            Elem::Key(key) => {
                let keys: Map<String, Value> = serde_json::from_str(key).ok()?;
                v.as_array()?
                    .iter()
                    .find(|item| keys.iter().all(|(k, kv)| item.get(k) == Some(kv)))?
            }
            Elem::Value(member) => {
                let want: Value = serde_json::from_str(member).ok()?;
                v.as_array()?.iter().find(|m| **m == want)?
            }
        };
    }
    Some(v)
}

/// Removes the field at `path` (and what is below it).
pub fn remove(value: &mut Value, path: &[Elem]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut v = value;
    for e in parents {
        v = match e {
            Elem::Field(k) => match v.get_mut(k) {
                Some(next) => next,
                None => return,
            },
            Elem::Key(key) => {
                let Ok(keys) = serde_json::from_str::<Map<String, Value>>(key) else {
                    return;
                };
                let Some(list) = v.as_array_mut() else { return };
                match list
                    .iter_mut()
                    .find(|item| keys.iter().all(|(k, kv)| item.get(k) == Some(kv)))
                {
                    Some(next) => next,
                    None => return,
                }
            }
            Elem::Value(_) => return,
        };
    }
    match last {
        Elem::Field(k) => {
            if let Some(m) = v.as_object_mut() {
                m.remove(k);
            }
        }
        Elem::Key(key) => {
            let Ok(keys) = serde_json::from_str::<Map<String, Value>>(key) else {
                return;
            };
            if let Some(list) = v.as_array_mut() {
                list.retain(|item| !keys.iter().all(|(k, kv)| item.get(k) == Some(kv)));
            }
        }
        Elem::Value(member) => {
            let Ok(want) = serde_json::from_str::<Value>(member) else {
                return;
            };
            if let Some(list) = v.as_array_mut() {
                list.retain(|m| *m != want);
            }
        }
    }
}

/// Merges an applied configuration into `target`: objects field by field,
/// list-maps item by key, sets by member, everything else replaced.
pub fn merge(target: &mut Value, applied: &Value, ctx: Ctx<'_>, name: &str) {
    match (target.is_object(), applied) {
        (true, Value::Object(fields)) if !ctx.atomic_map() => {
            let Value::Object(map) = target else { return };
            for (k, v) in fields {
                let child = if name.is_empty() && k == "metadata" {
                    Ctx { schema: None }
                } else {
                    ctx.child(k)
                };
                match map.get_mut(k) {
                    Some(existing) => merge(existing, v, child, k),
                    None => {
                        map.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (_, Value::Array(items)) if target.is_array() => match ctx.list_kind(name) {
            ListKind::Atomic => *target = applied.clone(),
            ListKind::Set => {
                let Value::Array(list) = target else { return };
                for item in items {
                    if !list.contains(item) {
                        list.push(item.clone());
                    }
                }
            }
            ListKind::Map(keys) => {
                let Value::Array(list) = target else { return };
                for item in items {
                    let key = item_key(item, &keys);
                    match list.iter_mut().find(|i| item_key(i, &keys) == key) {
                        Some(existing) => merge(existing, item, ctx.items(), ""),
                        None => list.push(item.clone()),
                    }
                }
            }
        },
        _ => *target = applied.clone(),
    }
}

fn encode_elem(e: &Elem) -> String {
    match e {
        Elem::Field(k) => format!("f:{k}"),
        Elem::Key(k) => format!("k:{k}"),
        Elem::Value(v) => format!("v:{v}"),
    }
}

/// FieldsV1 JSON of a field set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = json!({});
    for path in set {
        let mut node = &mut root;
        for e in path {
            node = node
                .as_object_mut()
                .expect("fields nodes are objects")
                .entry(encode_elem(e))
                .or_insert_with(|| json!({}));
        }
        if matches!(path.last(), Some(Elem::Key(_))) {
            node.as_object_mut()
                .expect("object")
                .insert(".".into(), json!({}));
        }
    }
    root
}

/// The field set of a FieldsV1 document.
pub fn from_fields_v1(fields: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn rec(node: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(map) = node.as_object() else { return };
        if map.is_empty() && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, v) in map {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            let elem = if let Some(f) = k.strip_prefix("f:") {
                Elem::Field(f.to_string())
            } else if let Some(key) = k.strip_prefix("k:") {
                Elem::Key(key.to_string())
            } else if let Some(member) = k.strip_prefix("v:") {
                Elem::Value(member.to_string())
            } else {
                continue;
            };
            path.push(elem);
            rec(v, path, out);
            path.pop();
        }
    }
    rec(fields, &mut Vec::new(), &mut out);
    out
}

/// A path for conflict messages: `.spec.replicas`, `.status.conditions[type="Ready"]`.
pub fn display(path: &[Elem]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            Elem::Field(k) => {
                s.push('.');
                s.push_str(k);
            }
            Elem::Key(k) => {
                let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            Elem::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_through_fields_v1() {
        let obj = json!({"apiVersion": "v1", "kind": "X",
            "metadata": {"name": "n", "labels": {"a": "b"}, "finalizers": ["f"]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let set = field_set(&obj, Ctx { schema: None });
        let encoded = to_fields_v1(&set);
        assert_eq!(
            encoded,
            json!({"f:metadata": {"f:labels": {"f:a": {}}, "f:finalizers": {"v:\"f\"": {}}},
                   "f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}}}})
        );
        assert_eq!(from_fields_v1(&encoded), set);
    }

    #[test]
    fn merge_respects_list_semantics() {
        let mut target =
            json!({"status": {"conditions": [{"type": "A", "status": "True"}], "hosts": ["x"]}});
        merge(
            &mut target,
            &json!({"status": {"conditions": [{"type": "B", "status": "False"}], "hosts": ["y"]}}),
            Ctx { schema: None },
            "",
        );
        assert_eq!(
            target,
            json!({"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}], "hosts": ["y"]}})
        );
        let path = vec![
            Elem::Field("status".into()),
            Elem::Field("conditions".into()),
            Elem::Key("{\"type\":\"A\"}".into()),
        ];
        assert_eq!(
            get(&target, &path).map(|v| v["status"].clone()),
            Some(json!("True"))
        );
        remove(&mut target, &path);
        assert_eq!(
            target["status"]["conditions"],
            json!([{"type": "B", "status": "False"}])
        );
        assert_eq!(display(&path), ".status.conditions[type=\"A\"]");
    }
}

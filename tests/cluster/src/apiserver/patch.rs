//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902, with Kubernetes'
//! rule that `test` of `null` passes on a missing path, which kube-runtime's
//! finalizer helper relies on).

use serde_json::Value;

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let Value::Object(map) = target else { return };
            for (k, v) in fields {
                if v.is_null() {
                    map.remove(k);
                } else {
                    merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Strategic merge patch for built-in kinds: like a merge patch, but lists
/// with a merge key (containers, env, volumes, conditions, ownerReferences...)
/// merge item by key and `finalizers` by member, and the directives kubectl
/// sends are honoured: `$patch: replace|delete`, `$retainKeys`,
/// `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>` (order only).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if fields.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = patch.clone();
        replacement.as_object_mut().map(|m| m.remove("$patch"));
        *target = replacement;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(map) = target else { return };
    for (k, v) in fields {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(gone)) = (map.get_mut(field), v.as_array()) {
                list.retain(|item| !gone.contains(item));
            }
            continue;
        }
        match v {
            Value::Null => {
                map.remove(k);
            }
            Value::Object(inner)
                if inner.get("$patch").and_then(Value::as_str) == Some("delete") =>
            {
                map.remove(k);
            }
            Value::Array(items) => match (super::fields::builtin_list_kind(k), map.get_mut(k)) {
                (super::fields::ListKind::Map(keys), Some(Value::Array(list))) => {
                    for item in items {
                        let key = super::fields::item_key(item, &keys);
                        let pos = list
                            .iter()
                            .position(|i| super::fields::item_key(i, &keys) == key);
                        match (item.get("$patch").and_then(Value::as_str), pos) {
                            (Some("delete"), Some(p)) => {
                                list.remove(p);
                            }
                            (Some("delete"), None) => {}
                            (_, Some(p)) => strategic_merge_patch(&mut list[p], item),
                            (_, None) => {
                                let mut fresh = Value::Null;
                                strategic_merge_patch(&mut fresh, item);
                                list.push(fresh);
                            }
                        }
                    }
                }
                (super::fields::ListKind::Set, Some(Value::Array(list))) => {
                    for item in items {
                        if !list.contains(item) {
                            list.push(item.clone());
                        }
                    }
                }
                _ => {
                    map.insert(k.clone(), v.clone());
                }
            },
            _ => strategic_merge_patch(map.entry(k.clone()).or_insert(Value::Null), v),
        }
    }
    if let Some(Value::Array(keep)) = fields.get("$retainKeys") {
        map.retain(|k, _| keep.iter().any(|r| r == k));
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {pointer:?}"))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn resolve<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, t| match v {
        Value::Object(m) => m.get(t),
        Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    path: &[String],
    pointer: &str,
) -> Result<&'a mut Value, String> {
    let mut v = doc;
    for t in &path[..path.len() - 1] {
        v = match v {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("path {pointer:?} does not exist"))?;
    }
    Ok(v)
}

fn add(doc: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    let path = tokens(pointer)?;
    let Some(last) = path.last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, &path, pointer)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("bad array index in {pointer:?}"))?
            };
            if i > a.len() {
                return Err(format!("array index out of range in {pointer:?}"));
            }
            a.insert(i, value);
        }
        _ => return Err(format!("path {pointer:?} does not name a container")),
    }
    Ok(())
}

fn remove(doc: &mut Value, pointer: &str) -> Result<Value, String> {
    let path = tokens(pointer)?;
    let last = path.last().ok_or("cannot remove the whole document")?;
    match parent_mut(doc, &path, pointer)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("path {pointer:?} does not exist")),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .map_err(|_| format!("bad array index in {pointer:?}"))?;
            if i >= a.len() {
                return Err(format!("array index out of range in {pointer:?}"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("path {pointer:?} does not exist")),
    }
}

/// Applies an RFC 6902 patch; on error the document is left unchanged.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    let mut work = doc.clone();
    for op in ops {
        let name = op["op"].as_str().ok_or("operation without \"op\"")?;
        let path = op["path"].as_str().ok_or("operation without \"path\"")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("{name} without \"value\""))
        };
        match name {
            "add" => add(&mut work, path, value()?)?,
            "remove" => {
                remove(&mut work, path)?;
            }
            "replace" => {
                remove(&mut work, path)?;
                add(&mut work, path, value()?)?;
            }
            "move" | "copy" => {
                let from = op["from"].as_str().ok_or("move/copy without \"from\"")?;
                let moved = if name == "move" {
                    remove(&mut work, from)?
                } else {
                    resolve(&work, &tokens(from)?)
                        .cloned()
                        .ok_or_else(|| format!("path {from:?} does not exist"))?
                };
                add(&mut work, path, moved)?;
            }
            "test" => {
                let want = value()?;
                match resolve(&work, &tokens(path)?) {
                    Some(found) if *found == want => {}
                    None if want.is_null() => {}
                    found => {
                        return Err(format!(
                            "testing value {path} failed: expected {want}, found {}",
                            found
                                .map(Value::to_string)
                                .unwrap_or_else(|| "nothing".into())
                        ));
                    }
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    *doc = work;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386_examples() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn strategic_merge_patch_merges_lists_by_key_and_honours_directives() {
        let mut pod = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}},
            "spec": {"containers": [{"name": "app", "image": "v1", "env": [{"name": "A", "value": "1"}]},
                                    {"name": "side", "image": "s1"}],
                     "args": ["--one"]}});
        strategic_merge_patch(
            &mut pod,
            &json!({"metadata": {"finalizers": ["b"], "labels": {"y": null}},
                "spec": {"$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
                         "containers": [{"name": "app", "image": "v2", "env": [{"name": "B", "value": "2"}]},
                                        {"name": "side", "$patch": "delete"},
                                        {"name": "new", "image": "n1"}],
                         "args": ["--two"]}}),
        );
        assert_eq!(
            pod,
            json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}},
                "spec": {"containers": [{"name": "app", "image": "v2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                                        {"name": "new", "image": "n1"}],
                         "args": ["--two"]}})
        );
        strategic_merge_patch(
            &mut pod,
            &json!({"spec": {"$patch": "replace", "args": []}}),
        );
        assert_eq!(pod["spec"], json!({"args": []}));
    }

    #[test]
    fn json_patch_operations() {
        let mut doc = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"x": 1}});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/metadata/finalizers/1", "value": "b"},
                {"op": "remove", "path": "/metadata/finalizers/1"},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "c"},
                {"op": "replace", "path": "/spec/x", "value": 2},
                {"op": "copy", "from": "/spec/x", "path": "/spec/y"},
                {"op": "move", "from": "/spec/y", "path": "/spec/z"},
                {"op": "add", "path": "/metadata/labels", "value": {"a~b/c": "1"}},
                {"op": "remove", "path": "/metadata/labels/a~0b~1c"}
            ]),
        )
        .expect("patch applies");
        assert_eq!(
            doc,
            json!({"metadata": {"finalizers": ["a", "c"], "labels": {}}, "spec": {"x": 2, "z": 2}})
        );
    }

    #[test]
    fn test_of_null_passes_on_a_missing_path_and_failures_leave_the_doc_alone() {
        let mut doc = json!({"metadata": {}});
        json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]),
        )
        .expect("kube's finalizer patch applies");
        assert_eq!(doc, json!({"metadata": {"finalizers": ["f"]}}));
        let before = doc.clone();
        let err = json_patch(
            &mut doc,
            &json!([{"op": "remove", "path": "/metadata/finalizers/0"},
                    {"op": "test", "path": "/metadata/finalizers/0", "value": "f"}]),
        )
        .expect_err("second op fails");
        assert!(err.contains("testing value"), "{err}");
        assert_eq!(doc, before);
    }
}

//! Field ownership: `metadata.managedFields` kept per manager, operation
//! and subresource; server-side apply (merge, removal of fields a manager
//! stopped applying, 409 on conflicts unless forced) and ownership
//! transfer on ordinary updates.

use serde_json::{Value, json};

use super::error::ApiError;
use super::fields::{self, Ctx, FieldSet, Path};
use super::ids::now_rfc3339;

#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

fn entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or("").to_string(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
                    time: e["time"].as_str().unwrap_or("").to_string(),
                    subresource: e["subresource"].as_str().map(String::from),
                    fields: fields::from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write(object: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": fields::to_fields_v1(&e.fields)});
            if let Some(s) = e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if let Some(m) = object["metadata"].as_object_mut() {
        if list.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(list));
        }
    }
}

fn is(entry: &Entry, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
    entry.manager == manager
        && entry.operation == operation
        && entry.subresource.as_deref() == subresource
}

fn owned_elsewhere(entries: &[Entry], skip: usize, path: &Path) -> bool {
    entries
        .iter()
        .enumerate()
        .any(|(i, e)| i != skip && e.fields.iter().any(|p| p.starts_with(path)))
}

/// Who writes, and how.
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
}

/// Server-side apply of `applied` onto `current` (`Value::Null` when the
/// object does not exist yet). Returns the object to store, managedFields
/// included.
pub fn apply(
    current: &Value,
    applied: &Value,
    writer: Writer<'_>,
    force: bool,
    ctx: Ctx<'_>,
) -> Result<Value, ApiError> {
    let mut list = entries(current);
    let new_set = fields::field_set(applied, ctx);
    let mine = list
        .iter()
        .position(|e| is(e, writer.manager, "Apply", writer.subresource));
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for (i, entry) in list.iter_mut().enumerate() {
        if Some(i) == mine {
            continue;
        }
        let contested: Vec<Path> = entry
            .fields
            .intersection(&new_set)
            .filter(|p| {
                !matches!(p.last(), Some(fields::Elem::Key(_)))
                    && fields::get(current, p) != fields::get(applied, p)
            })
            .cloned()
            .collect();
        if force {
            for p in &contested {
                entry.fields.remove(p);
            }
        } else {
            conflicts.extend(contested.into_iter().map(|p| (entry.manager.clone(), p)));
        }
    }
    if !conflicts.is_empty() {
        let described: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": {}", fields::display(p)))
            .collect();
        return Err(ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                described.join("; ")
            ),
            details: json!({"causes": conflicts.iter().map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": fields::display(p)})).collect::<Vec<_>>()}),
        });
    }
    let mut result = if current.is_null() {
        json!({})
    } else {
        current.clone()
    };
    if let Some(i) = mine {
        // Fields this manager applied before but no longer does go away,
        // unless someone else owns them too.
        for path in list[i].fields.difference(&new_set) {
            if !owned_elsewhere(&list, i, path) {
                fields::remove(&mut result, path);
            }
        }
    }
    fields::merge(&mut result, applied, ctx, "");
    let entry = Entry {
        manager: writer.manager.to_string(),
        operation: "Apply".into(),
        api_version: writer.api_version.to_string(),
        time: now_rfc3339(),
        subresource: writer.subresource.map(String::from),
        fields: new_set,
    };
    match mine {
        Some(i) => list[i] = entry,
        None => list.push(entry),
    }
    write(&mut result, list);
    Ok(result)
}

/// Records an ordinary write (create, update, patch): the fields it set or
/// changed become the writer's, and leave every other manager.
pub fn record_update(old: &Value, new: &mut Value, writer: Writer<'_>, ctx: Ctx<'_>) {
    let mut list = entries(old);
    let old_set = fields::field_set(old, ctx);
    let new_set = fields::field_set(new, ctx);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| !old_set.contains(*p) || fields::get(old, p) != fields::get(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    for entry in &mut list {
        let own = is(entry, writer.manager, "Update", writer.subresource);
        entry
            .fields
            .retain(|p| !removed.contains(p) && (own || !changed.contains(p)));
    }
    if !changed.is_empty() {
        match list
            .iter_mut()
            .find(|e| is(e, writer.manager, "Update", writer.subresource))
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now_rfc3339();
            }
            None => list.push(Entry {
                manager: writer.manager.to_string(),
                operation: "Update".into(),
                api_version: writer.api_version.to_string(),
                time: now_rfc3339(),
                subresource: writer.subresource.map(String::from),
                fields: changed,
            }),
        }
    }
    write(new, list);
}

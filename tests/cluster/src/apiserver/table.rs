//! `Table` responses for `kubectl get`: custom resources get their CRD's
//! `additionalPrinterColumns` (JSONPath, priorities, dates as ages); the
//! built-in kinds users look at get columns like kube-apiserver's printers;
//! everything else gets Name and Age.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::registry::ResourceType;

/// A column and how to compute its cell.
struct Column {
    name: String,
    type_: String,
    description: String,
    priority: i64,
    cell: Cell,
}

enum Cell {
    Path(String),
    Age,
    Count(&'static str),
    Hosts,
    Addresses,
}

fn builtin_columns(rt: &ResourceType) -> Vec<Column> {
    let col = |name: &str, type_: &str, cell: Cell| Column {
        name: name.into(),
        type_: type_.into(),
        description: String::new(),
        priority: 0,
        cell,
    };
    let path = |p: &str| Cell::Path(p.into());
    let mut cols = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "secrets") => vec![
            col("Type", "string", path(".type")),
            col("Data", "string", Cell::Count("data")),
        ],
        ("", "configmaps") => vec![col("Data", "string", Cell::Count("data"))],
        ("", "namespaces") => vec![col("Status", "string", path(".status.phase"))],
        ("", "pods") => vec![
            col("Status", "string", path(".status.phase")),
            col("IP", "string", path(".status.podIP")),
        ],
        ("", "services") => vec![
            col("Type", "string", path(".spec.type")),
            col("Cluster-IP", "string", path(".spec.clusterIP")),
        ],
        ("networking.k8s.io", "ingresses") => vec![
            col("Class", "string", path(".spec.ingressClassName")),
            col("Hosts", "string", Cell::Hosts),
            col("Address", "string", Cell::Addresses),
        ],
        ("coordination.k8s.io", "leases") => {
            vec![col("Holder", "string", path(".spec.holderIdentity"))]
        }
        ("", "events") => vec![
            col("Type", "string", path(".type")),
            col("Reason", "string", path(".reason")),
            col("Message", "string", path(".message")),
        ],
        _ => Vec::new(),
    };
    cols.push(col("Age", "string", Cell::Age));
    cols
}

fn columns(rt: &ResourceType) -> Vec<Column> {
    let mut cols = vec![Column {
        name: "Name".into(),
        type_: "string".into(),
        description: "Name must be unique within a namespace.".into(),
        priority: 0,
        cell: Cell::Path(".metadata.name".into()),
    }];
    if rt.printer_columns.is_empty() {
        cols.extend(builtin_columns(rt));
        return cols;
    }
    for c in &rt.printer_columns {
        let type_ = c["type"].as_str().unwrap_or("string").to_string();
        let json_path = c["jsonPath"].as_str().unwrap_or("").to_string();
        cols.push(Column {
            name: c["name"].as_str().unwrap_or("").to_string(),
            description: c["description"].as_str().unwrap_or("").to_string(),
            priority: c["priority"].as_i64().unwrap_or(0),
            cell: if type_ == "date" {
                Cell::Path(format!("date:{json_path}"))
            } else {
                Cell::Path(json_path)
            },
            type_: if type_ == "date" {
                "string".into()
            } else {
                type_
            },
        });
    }
    cols
}

/// A Table of `objects` as served to `kubectl get`.
pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    resource_version: Option<String>,
    include_object: &str,
) -> Value {
    let cols = columns(rt);
    let definitions: Vec<Value> = cols
        .iter()
        .map(|c| {
            let format = if c.name == "Name" { "name" } else { "" };
            json!({"name": c.name, "type": c.type_, "format": format, "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| cell(&c.cell, o)).collect();
            let object = match include_object {
                "Object" => o.clone(),
                "None" => Value::Null,
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": definitions, "rows": rows})
}

fn cell(cell: &Cell, object: &Value) -> Value {
    match cell {
        Cell::Path(p) => match p.strip_prefix("date:") {
            Some(path) => first(json_path(object, path))
                .and_then(|v| v.as_str().map(age))
                .map(Value::from)
                .unwrap_or(Value::Null),
            None => first(json_path(object, p)).cloned().unwrap_or(Value::Null),
        },
        Cell::Age => object["metadata"]["creationTimestamp"]
            .as_str()
            .map(age)
            .map(Value::from)
            .unwrap_or(Value::Null),
        Cell::Count(field) => json!(object[*field].as_object().map(|m| m.len()).unwrap_or(0)),
        Cell::Hosts => {
            let hosts: Vec<&str> = object["spec"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["host"].as_str())
                .collect();
            json!(if hosts.is_empty() {
                "*".to_string()
            } else {
                hosts.join(",")
            })
        }
        Cell::Addresses => {
            let ips: Vec<&str> = object["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
                .collect();
            json!(ips.join(","))
        }
    }
}

fn first(values: Vec<&Value>) -> Option<&Value> {
    values.into_iter().next()
}

/// The JSONPath subset printer columns use: `.a.b`, `[n]`, `[*]` and
/// `[?(@.key == "value")]` (also `!=`).
pub fn json_path<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current = vec![root];
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            current = current.into_iter().filter_map(|v| v.get(key)).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Vec::new();
            };
            let inner = r[..end].trim();
            rest = &r[end + 1..];
            current = if inner == "*" {
                current
                    .into_iter()
                    .flat_map(|v| v.as_array().into_iter().flatten())
                    .collect()
            } else if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')'))
            {
                let (lhs, negate, rhs) = match filter.split_once("!=") {
                    Some((l, r)) => (l, true, r),
                    None => match filter.split_once("==") {
                        Some((l, r)) => (l, false, r),
                        None => return Vec::new(),
                    },
                };
                let key = lhs.trim().trim_start_matches("@.");
                let want = rhs.trim().trim_matches(|c| c == '"' || c == '\'');
                current
                    .into_iter()
                    .flat_map(|v| v.as_array().into_iter().flatten())
                    .filter(|item| {
                        let found = match &item[key] {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (found == want) != negate
                    })
                    .collect()
            } else if let Ok(i) = inner.parse::<usize>() {
                current.into_iter().filter_map(|v| v.get(i)).collect()
            } else {
                return Vec::new();
            };
        } else {
            return Vec::new();
        }
    }
    current
}

fn parse_rfc3339_secs(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    if b.len() < 19 {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Age of a timestamp the way kubectl prints it (`42s`, `5m3s`, `3h`, `2d4h`).
pub fn age(timestamp: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match parse_rfc3339_secs(timestamp) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

/// Kubernetes' `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (minutes, hours, days) = (secs / 60, secs / 3600, secs / 86_400);
    if secs < 120 {
        format!("{secs}s")
    } else if minutes < 10 {
        if secs % 60 == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{}s", secs % 60)
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        if minutes % 60 == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{}m", minutes % 60)
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        if hours % 24 == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{}h", hours % 24)
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        format!("{}y{}d", days / 365, days % 365)
    } else {
        format!("{}y", days / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_subset() {
        let o = json!({"spec": {"secretName": "s"}, "status": {"conditions": [{"type": "Issuing", "status": "False"}, {"type": "Ready", "status": "True", "message": "ok"}]}});
        assert_eq!(json_path(&o, ".spec.secretName"), [&json!("s")]);
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type == \"Ready\")].status"),
            [&json!("True")]
        );
        assert_eq!(
            json_path(&o, "{.status.conditions[?(@.type!=\"Ready\")].type}"),
            [&json!("Issuing")]
        );
        assert_eq!(
            json_path(&o, ".status.conditions[1].message"),
            [&json!("ok")]
        );
        assert_eq!(json_path(&o, ".status.conditions[*].type").len(), 2);
        assert!(json_path(&o, ".status.missing").is_empty());
    }

    #[test]
    fn human_durations_like_kubectl() {
        for (secs, want) in [
            (5, "5s"),
            (119, "119s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (20 * 3600, "20h"),
            (3 * 86_400 + 3600, "3d1h"),
            (30 * 86_400, "30d"),
            (800 * 86_400, "2y70d"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn timestamps_parse_to_epoch_seconds() {
        assert_eq!(parse_rfc3339_secs("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(
            parse_rfc3339_secs("2000-03-01T00:00:00Z"),
            Some(951_868_800)
        );
    }
}

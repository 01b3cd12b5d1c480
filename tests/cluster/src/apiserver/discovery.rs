//! Discovery: `/version`, `/api`, `/apis` and the resource lists of each
//! group/version, as kubectl and kube read them.

use serde_json::{Value, json};

use super::http::Shared;
use super::registry::Registry;

/// Version and discovery documents, or None for resource paths.
pub(super) fn discovery(shared: &Shared, segments: &[&str]) -> Option<Value> {
    let registry = shared.store.registry();
    match segments {
        ["version"] => Some(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "certwright-testcluster",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64"
        })),
        ["healthz"] | ["livez"] | ["readyz"] => Some(json!("ok")),
        ["api"] => Some(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.address}]
        })),
        ["apis"] => {
            let mut groups: Vec<(String, Vec<String>)> = Vec::new();
            for t in registry.all().filter(|t| !t.group.is_empty()) {
                match groups.iter_mut().find(|(g, _)| *g == t.group) {
                    Some((_, versions)) if !versions.contains(&t.version) => {
                        versions.push(t.version.clone())
                    }
                    Some(_) => {}
                    None => groups.push((t.group.clone(), vec![t.version.clone()])),
                }
            }
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(g, versions)| {
                    let list: Vec<Value> = versions
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": list, "preferredVersion": list[0]})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["api", version] => Some(resource_list(&registry, "", version)),
        ["apis", group, version] => {
            let list = resource_list(&registry, group, version);
            if list["resources"].as_array().is_some_and(|r| r.is_empty()) {
                None
            } else {
                Some(list)
            }
        }
        _ => None,
    }
}

fn resource_list(registry: &Registry, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for t in registry
        .all()
        .filter(|t| t.group == group && t.version == version)
    {
        resources.push(json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": t.short_names, "categories": t.categories,
        }));
        if t.status {
            resources.push(json!({
                "name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": t.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

//! Deployments, well enough for a chart's Deployment to run: each one keeps
//! `replicas` (default 1) Pods of its current template, owned by it and
//! labelled `pod-template-hash`; Pods of an older template are replaced;
//! status counts replicas and ready replicas.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::{Value, json};

use super::Shared;
use crate::apiserver::store::{Filter, Propagation};

fn template_hash(template: &Value) -> String {
    let mut h = DefaultHasher::new();
    template.to_string().hash(&mut h);
    format!("{:x}", h.finish() & 0xff_ffff_ffff)
}

fn reconcile(shared: &Shared) {
    let store = shared.api.store();
    let (Some(deployments), Some(pods)) = (
        store.resource("apps", "v1", "deployments"),
        store.resource("", "v1", "pods"),
    ) else {
        return;
    };
    let (all, _) = store.list(&deployments, &Filter::default());
    let (all_pods, _) = store.list(&pods, &Filter::default());
    for d in all {
        if !d["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let ns = d["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = d["metadata"]["name"].as_str().unwrap_or("").to_string();
        let uid = d["metadata"]["uid"].clone();
        let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        let hash = template_hash(&d["spec"]["template"]);
        let owned: Vec<&Value> = all_pods
            .iter()
            .filter(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|o| o["uid"] == uid))
            })
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let (current, stale): (Vec<&Value>, Vec<&Value>) = owned
            .into_iter()
            .partition(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str());
        for p in stale.iter().chain(current.iter().skip(replicas)) {
            let _ = store.delete(
                &pods,
                &ns,
                p["metadata"]["name"].as_str().unwrap_or(""),
                Propagation::Background,
            );
        }
        for _ in current.len()..replicas {
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": d["spec"]["template"]["metadata"].clone(),
                "spec": d["spec"]["template"]["spec"].clone()});
            if !pod["metadata"].is_object() {
                pod["metadata"] = json!({});
            }
            pod["metadata"]["generateName"] = json!(format!("{name}-{hash}-"));
            pod["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
            let _ = store.create(&pods, &ns, pod, "deployment-controller");
        }
        let ready = current
            .iter()
            .take(replicas)
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        let status = json!({"observedGeneration": d["metadata"]["generation"], "replicas": replicas,
            "updatedReplicas": replicas, "readyReplicas": ready, "availableReplicas": ready});
        if d["status"] != status {
            let _ = store.patch(
                &deployments,
                &ns,
                &name,
                Some("status"),
                "deployment-controller",
                |o| {
                    o["status"] = status.clone();
                    Ok(())
                },
            );
        }
    }
}

/// Keeps Deployments' Pods in step.
pub async fn run(shared: Arc<Shared>) {
    let mut events = shared.api.store().subscribe();
    reconcile(&shared);
    loop {
        match events.recv().await {
            Ok(e) if e.plural == "deployments" || (e.group.is_empty() && e.plural == "pods") => {
                reconcile(&shared)
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => reconcile(&shared),
            Err(_) => return,
        }
    }
}

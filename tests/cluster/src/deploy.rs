//! certwright installed in the local cluster as the chart installs it in a
//! real one: its CRDs, its namespace, a ServiceAccount bound to a
//! ClusterRole of just the rules it needs, the solver Service selecting its
//! Pods, and a Deployment running `certwright controller` (the Pods are
//! processes of the built binary, with the ServiceAccount's token and no
//! other credentials).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// certwright's namespace in the local cluster.
pub const NAMESPACE: &str = "certwright";
/// Label selecting the controller Pods.
pub const APP_LABEL: &str = "app.kubernetes.io/name=certwright";
/// The user the controller's requests carry (its ServiceAccount).
pub const CONTROLLER_USER: &str = "system:serviceaccount:certwright:certwright";

const MANAGER: &str = "certwright-testcluster";

/// What the controller may do: its own kinds, the Secrets it writes, the
/// solver Pods, Services, EndpointSlices and Ingresses, and events.
fn cluster_role() -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "certwright-controller"},
        "rules": [
            {"apiGroups": ["cert-manager.io"],
             "resources": ["certificates", "certificaterequests", "issuers", "clusterissuers"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["cert-manager.io"],
             "resources": ["certificates/status", "certificaterequests/status", "issuers/status", "clusterissuers/status"],
             "verbs": ["get", "update", "patch"]},
            {"apiGroups": ["acme.cert-manager.io"], "resources": ["orders", "challenges"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["acme.cert-manager.io"], "resources": ["orders/status", "challenges/status", "challenges/finalizers"],
             "verbs": ["get", "update", "patch"]},
            {"apiGroups": [""], "resources": ["secrets", "services", "pods"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]})
}

/// Server-side applies `object` (any kind) as the test cluster.
pub async fn apply(client: &kube::Client, object: Value) -> Result<(), String> {
    let (group, version) = match object["apiVersion"]
        .as_str()
        .unwrap_or("v1")
        .split_once('/')
    {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            object["apiVersion"].as_str().unwrap_or("v1").to_string(),
        ),
    };
    let kind = object["kind"].as_str().unwrap_or("").to_string();
    let plural = match kind.as_str() {
        "Ingress" => "ingresses".to_string(),
        k if k.ends_with('s') => format!("{}es", k.to_lowercase()),
        k => format!("{}s", k.to_lowercase()),
    };
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&group, &version, &kind), &plural);
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("applying {kind} {name}: {e}"))
}

/// Applies certwright's CRDs (from `certwright crds`) and waits until the
/// API server serves them.
pub async fn install_crds(client: &kube::Client, binary: &std::path::Path) -> Result<(), String> {
    let crds = std::process::Command::new(binary)
        .args(["crds", "-o", "json"])
        .output()
        .map_err(|e| format!("running certwright crds: {e}"))?;
    let list: Value = serde_json::from_slice(&crds.stdout)
        .map_err(|e| format!("certwright crds printed no JSON: {e}"))?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in list["items"].as_array().into_iter().flatten() {
        let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(crd),
        )
        .await
        .map_err(|e| format!("applying CRD {name}: {e}"))?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let established = api
                .get(&name)
                .await
                .ok()
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("CRD {name} was not established within 30 s"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Deploys the controller with `extra_args` after `controller`: the
/// namespace, its ServiceAccount and RBAC, the solver Service and a
/// one-replica Deployment. A controller deployed before is replaced.
pub async fn controller(client: &kube::Client, extra_args: &[String]) -> Result<(), String> {
    remove_controller(client).await?;
    apply(
        client,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .await?;
    apply(client, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "certwright", "namespace": NAMESPACE}})).await?;
    apply(client, cluster_role()).await?;
    apply(client, json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "certwright-controller"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "certwright-controller"},
        "subjects": [{"kind": "ServiceAccount", "name": "certwright", "namespace": NAMESPACE}]})).await?;
    apply(client, json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "certwright-solver", "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": "certwright"}},
        "spec": {"selector": {"app.kubernetes.io/name": "certwright"},
                 "ports": [{"name": "http", "port": 8089, "targetPort": "http"}]}})).await?;
    let mut args = vec!["controller".to_string()];
    args.extend(extra_args.iter().cloned());
    apply(client, json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "certwright", "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": "certwright"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "certwright"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "certwright"}},
                "spec": {"serviceAccountName": "certwright",
                    "containers": [{"name": "certwright", "image": "ghcr.io/certwright/certwright:dev",
                    "command": ["/certwright"], "args": args,
                    "ports": [{"name": "http", "containerPort": 8089},
                              {"name": "http-metrics", "containerPort": 9402},
                              {"name": "http-healthz", "containerPort": 9403}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9403}, "periodSeconds": 1},
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "RUST_LOG", "value": "info,certwright=debug"}]}]}}}})).await
}

/// Deletes the controller's Deployment and waits until its Pods are gone.
pub async fn remove_controller(client: &kube::Client) -> Result<(), String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    match deployments
        .delete("certwright", &DeleteParams::foreground())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(format!("deleting the controller Deployment: {e}")),
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !controller_pods(client).await.is_empty()
        || deployments
            .get_opt("certwright")
            .await
            .ok()
            .flatten()
            .is_some()
    {
        if tokio::time::Instant::now() > deadline {
            return Err("the old controller's Pods were still there after 60 s".into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The controller Pods' names.
pub async fn controller_pods(client: &kube::Client) -> Vec<String> {
    Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default().labels(APP_LABEL))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect()
        })
        .unwrap_or_default()
}

/// The controller Pods that are Ready (and not being deleted), by name.
pub async fn ready_controller_pods(client: &kube::Client) -> Vec<String> {
    let listed = Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default().labels(APP_LABEL))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    listed
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// Scales the controller's Deployment to `replicas`.
pub async fn scale(client: &kube::Client, replicas: i32) -> Result<(), String> {
    Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .patch(
            "certwright",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("scaling the controller to {replicas}: {e}"))
}

//! certwright installed in the local cluster as the chart installs it in a
//! real one: its CRDs, its namespace, the solver Service selecting its
//! Pods, and a Deployment running `certwright controller` (the Pods are
//! processes of the built binary).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::cluster::LocalCluster;

/// certwright's namespace in the local cluster.
pub const NAMESPACE: &str = "certwright";
/// Label selecting the controller Pods.
pub const APP_LABEL: &str = "app.kubernetes.io/name=certwright";

/// Creates certwright's CRDs (from `certwright crds`) in the cluster.
pub fn install_crds(cluster: &LocalCluster, binary: &std::path::Path) -> Result<(), String> {
    let crds = std::process::Command::new(binary)
        .args(["crds", "-o", "json"])
        .output()
        .map_err(|e| format!("running certwright crds: {e}"))?;
    let list: serde_json::Value = serde_json::from_slice(&crds.stdout)
        .map_err(|e| format!("certwright crds printed no JSON: {e}"))?;
    let rt = cluster
        .api()
        .store()
        .resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or("no CRD resource")?;
    for crd in list["items"].as_array().into_iter().flatten() {
        cluster
            .api()
            .store()
            .create(&rt, "", crd.clone(), "certwright-testcluster")
            .map_err(|e| e.message)?;
    }
    Ok(())
}

/// Deploys the controller with `extra_args` after `controller`: the
/// namespace, the solver Service and a one-replica Deployment.
pub async fn controller(client: &kube::Client, extra_args: &[String]) -> Result<(), String> {
    let pp = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"metadata": {"name": NAMESPACE}});
    match namespaces
        .create(&pp, &serde_json::from_value(ns).map_err(|e| e.to_string())?)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(format!("creating namespace {NAMESPACE}: {e}")),
    }
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let svc = json!({"metadata": {"name": "certwright-solver", "labels": {"app.kubernetes.io/name": "certwright"}},
        "spec": {"selector": {"app.kubernetes.io/name": "certwright"},
                 "ports": [{"name": "http", "port": 8089, "targetPort": "http"}]}});
    services
        .create(
            &pp,
            &serde_json::from_value(svc).map_err(|e| e.to_string())?,
        )
        .await
        .map_err(|e| format!("creating the solver Service: {e}"))?;
    let mut args = vec!["controller".to_string()];
    args.extend(extra_args.iter().cloned());
    let deployment = json!({"metadata": {"name": "certwright", "labels": {"app.kubernetes.io/name": "certwright"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "certwright"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "certwright"}},
                "spec": {"containers": [{"name": "certwright", "image": "ghcr.io/certwright/certwright:dev",
                    "command": ["/certwright"], "args": args,
                    "ports": [{"name": "http", "containerPort": 8089}],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "RUST_LOG", "value": "info,certwright=debug"}]}]}}}});
    Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .create(
            &pp,
            &serde_json::from_value(deployment).map_err(|e| e.to_string())?,
        )
        .await
        .map_err(|e| format!("creating the Deployment: {e}"))?;
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

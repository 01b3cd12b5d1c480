//! The cluster's ingress controller: Traefik v3 (built by
//! `scripts/install-tools`, run by the process kubelet as the Pod of a
//! Deployment), installed as a user installs it: its own namespace and
//! ServiceAccount, a ClusterRole of what its Kubernetes Ingress provider
//! reads (Ingresses, IngressClasses, Services, EndpointSlices, Secrets)
//! and writes (`ingresses/status`), the IngressClass it serves, and a
//! Service on a fixed cluster IP in front of its port 80. Every test name
//! resolves to that IP for pebble, and the controller's self-check dials
//! it: both reach a token as Let's Encrypt reaches a real cluster's.
//! Traefik decides class, host and path matching by its own rules, and
//! writes that IP into the status of every Ingress it serves.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use serde_json::json;

use super::Shared;
use crate::deploy::apply;

/// Traefik's namespace.
pub const NAMESPACE: &str = "traefik";
/// The Service in front of Traefik: a fixed cluster IP, so pebble's DNS
/// and the self-check flag can name it before Traefik runs.
pub const INGRESS_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 80);
/// Plain HTTP, as HTTP-01 wants.
pub const INGRESS_PORT: u16 = 80;
/// HTTPS: every Ingress's routes, with the certificates of its `spec.tls`
/// Secrets chosen by SNI.
pub const INGRESS_TLS_PORT: u16 = 443;
/// Traefik's ping entry point (its readiness probe).
const PING_PORT: u16 = 8080;
/// The controller name Traefik's provider looks for on IngressClasses.
const CONTROLLER: &str = "traefik.io/ingress-controller";

/// Traefik's flags: plain HTTP on `web`, HTTPS on `websecure` (every
/// router there with TLS), the Kubernetes Ingress provider limited to `class`,
/// Ingress status from `INGRESS_IP`, no calls home (this network has no
/// outside), and a short provider throttle (its default, 2 s, would add up
/// to 2 s to every new route). Dynamic configuration comes from the
/// `traefik-dynamic` ConfigMap too: every request through `web` retries
/// another endpoint when one cannot be reached (dialled for at most 1 s),
/// as an ingress controller in front of several replicas should (a killed
/// Pod stays in the endpoints for a few seconds; ingress-nginx retries the
/// next upstream by default, Traefik needs the retry middleware).
pub fn args(class: &str) -> Vec<String> {
    [
        format!("--entryPoints.web.address=:{INGRESS_PORT}"),
        format!("--entryPoints.websecure.address=:{INGRESS_TLS_PORT}"),
        "--entryPoints.websecure.http.tls=true".into(),
        format!("--entryPoints.traefik.address=:{PING_PORT}"),
        "--ping=true".into(),
        "--providers.kubernetesIngress=true".into(),
        format!("--providers.kubernetesIngress.ingressClass={class}"),
        format!("--providers.kubernetesIngress.ingressEndpoint.ip={INGRESS_IP}"),
        "--providers.providersThrottleDuration=100ms".into(),
        format!("--providers.file.directory={DYNAMIC_DIR}"),
        "--entryPoints.web.http.middlewares=retry@file".into(),
        "--serversTransport.forwardingTimeouts.dialTimeout=1s".into(),
        "--global.checkNewVersion=false".into(),
        "--global.sendAnonymousUsage=false".into(),
        "--log.level=INFO".into(),
        "--accessLog=true".into(),
    ]
    .into()
}

fn cluster_role() -> serde_json::Value {
    let read = json!(["get", "list", "watch"]);
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "traefik-ingress-controller"},
        "rules": [
            {"apiGroups": [""], "resources": ["services", "secrets", "nodes"], "verbs": read},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"], "verbs": read},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update"]}]})
}

/// Traefik's output so far (its Pod's log in the cluster's directory `dir`):
/// its own log and an access log line per request.
pub fn log(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&format!("pod-{NAMESPACE}-traefik-")) && name.ends_with(".log")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

/// Installs Traefik as the controller of IngressClass `class` and waits
/// until its Pod is ready (answers `/ping`).
pub async fn start(shared: Arc<Shared>, image: &str) -> Result<(), String> {
    let client = shared.admin();
    let class = shared.options.ingress_class.clone();
    let labels = json!({"app.kubernetes.io/name": "traefik"});
    apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .await?;
    apply(
        &client,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "traefik", "namespace": NAMESPACE}}),
    )
    .await?;
    apply(&client, cluster_role()).await?;
    apply(&client, json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "traefik-ingress-controller"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "traefik-ingress-controller"},
        "subjects": [{"kind": "ServiceAccount", "name": "traefik", "namespace": NAMESPACE}]})).await?;
    apply(
        &client,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": class}, "spec": {"controller": CONTROLLER}}),
    )
    .await?;
    apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "traefik", "namespace": NAMESPACE, "labels": labels},
        "spec": {"clusterIP": INGRESS_IP.to_string(), "selector": labels,
                 "ports": [{"name": "web", "port": INGRESS_PORT, "targetPort": "web"},
                           {"name": "websecure", "port": INGRESS_TLS_PORT, "targetPort": "websecure"}]}}),
    )
    .await?;
    apply(&client, dynamic_config(None)).await?;
    apply(&client, deployment(image, &class, None)).await?;
    wait_ready(&shared, &client, 1).await
}

/// Traefik's Deployment; with `sidecar` (certwright's image) a second
/// container runs `certwright solver --watch` on localhost:8089 and a file
/// provider route sends every `/.well-known/acme-challenge/` request no
/// Ingress routes to it (priority 1: per-challenge Ingress rules win).
fn deployment(image: &str, class: &str, sidecar: Option<&str>) -> serde_json::Value {
    let labels = json!({"app.kubernetes.io/name": "traefik"});
    let args = args(class);
    let mut traefik = json!({"name": "traefik", "image": image,
        "ports": [{"name": "web", "containerPort": INGRESS_PORT},
                  {"name": "websecure", "containerPort": INGRESS_TLS_PORT},
                  {"name": "ping", "containerPort": PING_PORT}],
        "readinessProbe": {"httpGet": {"path": "/ping", "port": "ping"}}});
    traefik["volumeMounts"] = json!([{"name": "dynamic", "mountPath": DYNAMIC_DIR}]);
    let mut spec = json!({"serviceAccountName": "traefik",
        "volumes": [{"name": "dynamic", "configMap": {"name": "traefik-dynamic"}}]});
    if let Some(certwright) = sidecar {
        spec["containers"] = json!([traefik, {"name": "acme-solver", "image": certwright,
            "args": ["solver", "--watch", "--listen-address", "127.0.0.1", "--listen-port", SIDECAR_PORT.to_string()],
            "env": [{"name": "RUST_LOG", "value": "info"}]}]);
    } else {
        spec["containers"] = json!([traefik]);
    }
    spec["containers"][0]["args"] = json!(args);
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "traefik", "namespace": NAMESPACE, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec}}})
}

/// Where the `traefik-dynamic` ConfigMap is mounted (the file provider's directory).
const DYNAMIC_DIR: &str = "/run/traefik-dynamic";
/// The file provider's route to the sidecar.
const SIDECAR_ROUTE: &str = "acme-sidecar.yaml";

/// The `traefik-dynamic` ConfigMap: the retry middleware, and with
/// `sidecar_route` the route to the sidecar.
fn dynamic_config(sidecar_route: Option<String>) -> serde_json::Value {
    let mut data = json!({"retry.yaml": "http:\n  middlewares:\n    retry:\n      retry:\n        attempts: 4\n"});
    if let Some(route) = sidecar_route {
        data[SIDECAR_ROUTE] = json!(route);
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "traefik-dynamic", "namespace": NAMESPACE},
        "data": data})
}
/// Where the sidecar listens, on the Pod's localhost.
pub const SIDECAR_PORT: u16 = 8089;

/// Runs certwright's sidecar solver (`image`) beside Traefik, as a user of
/// the sidecar mode does: the ConfigMap with the route to it, and Traefik's
/// Deployment with the second container. Waits for the new Pod. Traefik's
/// ServiceAccount needs the chart's sidecar RBAC.
pub async fn add_sidecar(shared: &Shared, image: &str, class: &str) -> Result<(), String> {
    let client = shared.admin();
    let route = format!(
        "http:\n  routers:\n    acme-sidecar:\n      rule: \"PathPrefix(`/.well-known/acme-challenge/`)\"\n      priority: 1\n      entryPoints: [web]\n      service: acme-sidecar\n  services:\n    acme-sidecar:\n      loadBalancer:\n        servers:\n          - url: \"http://127.0.0.1:{SIDECAR_PORT}\"\n"
    );
    apply(&client, dynamic_config(Some(route))).await?;
    apply(
        &client,
        deployment(&super::traefik_image(), class, Some(image)),
    )
    .await?;
    wait_ready(shared, &client, 2).await
}

/// Waits until exactly one Traefik Pod (of `containers` containers) is
/// ready and no other is left.
async fn wait_ready(
    shared: &Shared,
    client: &kube::Client,
    containers: usize,
) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready_ip = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=traefik"))
            .await
            .ok()
            .filter(|l| l.items.len() == 1)
            .and_then(|l| l.items.into_iter().next())
            .filter(|p| {
                p.spec.as_ref().map(|s| s.containers.len()) == Some(containers)
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .and_then(|p| p.status.and_then(|s| s.pod_ip));
        // After a rollout the Service must lead to the new Pod only: the
        // Service proxy dials whatever the EndpointSlices list.
        let endpoints: Vec<String> = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=traefik"))
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .flat_map(|s| s.endpoints)
                    .flat_map(|e| e.addresses)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(ip) = ready_ip
            && endpoints == [ip]
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let log = log(&shared.dir);
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            return Err(format!(
                "Traefik was not ready within 60 s; the end of its log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

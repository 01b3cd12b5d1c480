//! The pod solver mode (cert-manager's): per Challenge a solver Pod
//! running `certwright solver --token … --key … --domain …`, a Service in
//! front of it and an Ingress routing the token to that Service, all owned
//! by the Challenge and labelled as cert-manager labels them. The Pod
//! passes the `restricted` Pod Security Standard and mounts no
//! ServiceAccount token; `podTemplate` merges as cert-manager merges it.

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch};
use serde_json::{Value, json};

use super::ingress::{self, labels, owner, resource_name};
pub use super::settings::PodResources;
use super::{SOLVER_PORT, apply_params, ignore_missing};
use crate::api::Challenge;
use crate::api::http01::{Http01IngressSolver, SolverServiceType};
use crate::solver::settings::SolverSettings;
use crate::solver::state::Solvers;

/// Merges `extra` into the object `base`, key by key (one level).
fn merge(base: &mut Value, extra: Value) {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        for (k, v) in extra {
            base.insert(k, v);
        }
    }
}

/// The solver Pod of `ch`.
pub fn pod(ch: &Challenge, solver: &Http01IngressSolver, settings: &SolverSettings) -> Value {
    let name = resource_name(&ch.name_any());
    let resources = &settings.pod_resources;
    let mut resources = json!({
        "requests": {"cpu": resources.request_cpu, "memory": resources.request_memory},
        "limits": {"cpu": resources.limit_cpu, "memory": resources.limit_memory}});
    let mut metadata_labels = json!({});
    let mut annotations = json!({"sidecar.istio.io/inject": "false"});
    let mut spec = json!({
        "restartPolicy": "OnFailure",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
    });
    if let Some(template) = &solver.pod_template {
        if let Some(meta) = &template.metadata {
            merge(&mut metadata_labels, json!(meta.labels));
            merge(&mut annotations, json!(meta.annotations));
        }
        if let Some(t) = &template.spec {
            merge(&mut spec["nodeSelector"], json!(t.node_selector));
            for (key, value) in [
                ("affinity", json!(t.affinity)),
                ("tolerations", json!(t.tolerations)),
                ("priorityClassName", json!(t.priority_class_name)),
                ("serviceAccountName", json!(t.service_account_name)),
                ("imagePullSecrets", json!(t.image_pull_secrets)),
            ] {
                if !value.is_null() {
                    spec[key] = value;
                }
            }
            if let Some(sc) = &t.security_context {
                merge(&mut spec["securityContext"], json!(sc));
            }
            if let Some(r) = &t.resources {
                if let Some(requests) = &r.requests {
                    merge(&mut resources["requests"], json!(requests));
                }
                if let Some(limits) = &r.limits {
                    merge(&mut resources["limits"], json!(limits));
                }
            }
        }
    }
    // Ours last: the Service selects the Pod by them.
    merge(&mut metadata_labels, json!(labels(ch)));
    spec["containers"] = json!([{
        "name": "acmesolver",
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["solver", "--listen-port", SOLVER_PORT.to_string(),
                 "--domain", ch.spec.dns_name.trim_end_matches('.'),
                 "--token", ch.spec.token, "--key", ch.spec.key],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": SOLVER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                           "periodSeconds": 1, "failureThreshold": 3},
        "resources": resources,
        "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                            "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }]);
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ch.namespace(), "labels": metadata_labels,
                     "annotations": annotations, "ownerReferences": [owner(ch)]},
        "spec": spec})
}

/// The Service in front of the solver Pod: `serviceType` (NodePort unless
/// asked for ClusterIP, as cert-manager), port 8089.
pub fn service(ch: &Challenge, solver: &Http01IngressSolver) -> Value {
    let kind = match solver.service_type.unwrap_or(SolverServiceType::NodePort) {
        SolverServiceType::NodePort => "NodePort",
        SolverServiceType::ClusterIP => "ClusterIP",
    };
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": resource_name(&ch.name_any()), "namespace": ch.namespace(),
                     "labels": labels(ch), "annotations": {"auth.istio.io/8089": "NONE"},
                     "ownerReferences": [owner(ch)]},
        "spec": {"type": kind, "selector": labels(ch),
                 "ports": [{"name": "http", "port": SOLVER_PORT, "targetPort": SOLVER_PORT, "protocol": "TCP"}]}})
}

/// A refusal the user must fix (admission, quota, validation), as opposed
/// to a failure to retry.
fn refused(what: &str, e: kube::Error) -> Result<Result<(), String>, kube::Error> {
    match e {
        kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422) => Ok(Err(format!(
            "the API server refused the solver {what}: {}",
            s.message
        ))),
        e => Err(e),
    }
}

/// Creates (or restores) the Pod, Service and Ingress.
pub async fn present(solvers: &Solvers, ch: &Challenge) -> Result<Result<(), String>, kube::Error> {
    let solver = match ingress::solver(ch) {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let ns = ch.namespace().unwrap_or_default();
    let name = resource_name(&ch.name_any());
    let settings = &solvers.settings;
    let pods: Api<Pod> = Api::namespaced(solvers.client.clone(), &ns);
    if let Err(e) = pods
        .patch(
            &name,
            &apply_params(),
            &Patch::Apply(pod(ch, solver, settings)),
        )
        .await
    {
        return refused("Pod", e);
    }
    let services: Api<Service> = Api::namespaced(solvers.client.clone(), &ns);
    if let Err(e) = services
        .patch(&name, &apply_params(), &Patch::Apply(service(ch, solver)))
        .await
    {
        return refused("Service", e);
    }
    ingress::present(&solvers.client, ch, &name, SOLVER_PORT, settings.path_type).await
}

/// Deletes the Pod and Service (the Ingress goes with [`ingress::cleanup`]).
pub async fn cleanup(solvers: &Solvers, ch: &Challenge) -> Result<(), kube::Error> {
    let ns = ch.namespace().unwrap_or_default();
    let name = resource_name(&ch.name_any());
    ignore_missing(
        Api::<Pod>::namespaced(solvers.client.clone(), &ns)
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await,
    )?;
    ignore_missing(
        Api::<Service>::namespaced(solvers.client.clone(), &ns)
            .delete(&name, &DeleteParams::default())
            .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::tests::challenge;

    #[test]
    fn the_pod_is_restricted_and_runs_the_solver_for_the_token() {
        let ch = challenge(json!({"http01": {"ingress": {}}}));
        let solver = ingress::solver(&ch).expect("solver");
        let p = pod(&ch, solver, &SolverSettings::default());
        let spec = &p["spec"];
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(spec["enableServiceLinks"], false);
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        let c = &spec["containers"][0];
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(
            c["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(
            c["args"],
            json!([
                "solver",
                "--listen-port",
                "8089",
                "--domain",
                "app.example.com",
                "--token",
                "tok",
                "--key",
                "tok.thumb"
            ])
        );
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["resources"]["limits"]["memory"], "64Mi");
        assert_eq!(p["metadata"]["labels"], json!(labels(&ch)));
        let s = service(&ch, solver);
        assert_eq!(s["spec"]["type"], "NodePort");
        assert_eq!(s["spec"]["selector"], p["metadata"]["labels"]);
    }

    #[test]
    fn the_pod_template_merges_as_cert_manager_merges_it() {
        let ch = challenge(
            json!({"http01": {"ingress": {"serviceType": "ClusterIP", "podTemplate": {
            "metadata": {"labels": {"team": "a", "acme.cert-manager.io/http01-solver": "no"}, "annotations": {"x": "y"}},
            "spec": {"nodeSelector": {"zone": "a"}, "tolerations": [{"key": "k", "operator": "Exists"}],
                     "priorityClassName": "high", "serviceAccountName": "solver",
                     "imagePullSecrets": [{"name": "pull"}], "securityContext": {"runAsUser": 1000},
                     "resources": {"limits": {"memory": "128Mi"}}}}}}}),
        );
        let solver = ingress::solver(&ch).expect("solver");
        let p = pod(&ch, solver, &SolverSettings::default());
        assert_eq!(p["metadata"]["labels"]["team"], "a");
        assert_eq!(
            p["metadata"]["labels"]["acme.cert-manager.io/http01-solver"], "true",
            "ours win"
        );
        assert_eq!(p["metadata"]["annotations"]["x"], "y");
        assert_eq!(
            p["spec"]["nodeSelector"],
            json!({"kubernetes.io/os": "linux", "zone": "a"})
        );
        assert_eq!(p["spec"]["tolerations"][0]["key"], "k");
        assert_eq!(p["spec"]["priorityClassName"], "high");
        assert_eq!(p["spec"]["serviceAccountName"], "solver");
        assert_eq!(p["spec"]["imagePullSecrets"][0]["name"], "pull");
        assert_eq!(p["spec"]["securityContext"]["runAsUser"], 1000);
        assert_eq!(p["spec"]["securityContext"]["runAsNonRoot"], true);
        let r = &p["spec"]["containers"][0]["resources"];
        assert_eq!(
            (r["limits"]["memory"].as_str(), r["limits"]["cpu"].as_str()),
            (Some("128Mi"), Some("100m"))
        );
        assert_eq!(service(&ch, solver)["spec"]["type"], "ClusterIP");
    }
}

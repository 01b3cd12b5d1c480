//! A cert-manager DNS-01 webhook solver deployed as third-party ones are:
//! our `dns-webhook` (tests/tools/cert-manager, over cert-manager's
//! webhook library) as a Deployment behind a Service, registered as the
//! APIService `v1alpha1.<GROUP>` that the real API server aggregates, with
//! the RBAC a webhook chart grants (delegated authentication and
//! authorization for itself, `create` on its solver for the ACME
//! controller's ServiceAccount). It writes the TXT records into the test
//! BIND with RFC 2136.

use certwright_testcluster::cluster::{DNS_WEBHOOK_IMAGE, NODE_IP};
use certwright_testcluster::control_plane::pki::Ca;
use certwright_testcluster::deploy::{self, NAMESPACE};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use super::super::env::{Env, OWNED};

/// The API group the webhook serves and its one solver.
pub const GROUP: &str = "acme.dns-webhook.test";
pub const SOLVER: &str = "bind";
const NS: &str = "dns-webhook";
const NAME: &str = "bind-dns-webhook";

pub fn apiservice_api(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService");
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

/// The solver `config` an Issuer gives the webhook: BIND on the node,
/// the TSIG key `certwright` from the Secret `secret` (entry `value`).
pub fn config(secret: &str) -> Value {
    json!({"nameserver": format!("{NODE_IP}:53"), "tsigKeyName": "certwright",
           "tsigAlgorithm": "HMACSHA256", "tsigSecretName": secret, "tsigSecretKey": "value"})
}

/// The role that lets the ACME controller call `resource` of the group.
fn domain_solver(resource: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": "bind-dns-webhook:domain-solver"},
           "rules": [{"apiGroups": [GROUP], "resources": [resource], "verbs": ["create"]}]})
}

/// Deploys the webhook and waits until the API server reports its
/// APIService Available.
pub async fn install(env: &Env) {
    let ca = Ca::new("dns-webhook test CA").expect("CA");
    let serving = ca
        .server(NAME, &[format!("{NAME}.{NS}.svc")], &[])
        .expect("serving certificate");
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let labels = json!({"app": NAME});
    let objects = [
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": NS, "labels": {OWNED: "true"}}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": NAME, "namespace": NS}}),
        // Delegated authentication and authorization, as every aggregated API server.
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "bind-dns-webhook:auth-delegator"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
               "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NS}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "bind-dns-webhook:auth-reader", "namespace": "kube-system"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "extension-apiserver-authentication-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NS}]}),
        // It reads the TSIG Secrets the Issuers name.
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "bind-dns-webhook:secret-reader"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "bind-dns-webhook:secret-reader"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bind-dns-webhook:secret-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NS}]}),
        // The ACME controller may call the solver (a webhook chart's
        // domain-solver role, given to certwright's ServiceAccount).
        domain_solver("*"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "bind-dns-webhook:domain-solver"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bind-dns-webhook:domain-solver"},
               "subjects": [{"kind": "ServiceAccount", "name": "certwright", "namespace": NAMESPACE}]}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": format!("{NAME}-tls"), "namespace": NS},
               "stringData": {"tls.crt": serving.cert_pem, "tls.key": serving.key_pem}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": NAME, "namespace": NS},
               "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                   "spec": {"serviceAccountName": NAME,
                     "containers": [{"name": "webhook", "image": format!("{DNS_WEBHOOK_IMAGE}:test"),
                       "args": ["--secure-port=443", "--tls-cert-file=/var/run/tls/tls.crt",
                                "--tls-private-key-file=/var/run/tls/tls.key", "-v=2"],
                       "env": [{"name": "GROUP_NAME", "value": GROUP}],
                       "ports": [{"name": "https", "containerPort": 443}],
                       "volumeMounts": [{"name": "tls", "mountPath": "/var/run/tls"}]}],
                     "volumes": [{"name": "tls", "secret": {"secretName": format!("{NAME}-tls")}}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": NAME, "namespace": NS},
               "spec": {"selector": labels,
                        "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}}),
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
               "metadata": {"name": format!("v1alpha1.{GROUP}"), "labels": {OWNED: "true"}},
               "spec": {"group": GROUP, "version": "v1alpha1",
                        "service": {"name": NAME, "namespace": NS, "port": 443},
                        "caBundle": b64(&ca.pair.cert_pem),
                        "groupPriorityMinimum": 1000, "versionPriority": 15}}),
    ];
    for object in objects {
        deploy::apply(&env.client, object).await.expect("applied");
    }
    let api = apiservice_api(&env.client);
    let name = format!("v1alpha1.{GROUP}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let status = api
            .get(&name)
            .await
            .map(|s| s.data["status"].clone())
            .unwrap_or_default();
        let available = status["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Available" && c["status"] == "True")
        });
        if available {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let pods = Api::<Pod>::namespaced(env.client.clone(), NS)
                .list(&Default::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let logs: Vec<String> = pods
                .iter()
                .map(|p| {
                    let pod = p.metadata.name.clone().unwrap_or_default();
                    format!("{pod}: {:?}\n{}", p.status, env.cluster.pod_log(NS, &pod))
                })
                .collect();
            panic!(
                "the webhook's APIService is not Available: {status}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

//! Least privilege, proven: one walk through every controller path (issue,
//! renew, fail, leader hand-over, the shared, pod, edit-in-place and
//! sidecar solvers, an Issuer and a ClusterIssuer, the ingress-shim, cleanup)
//! under the chart's RBAC on the real API server, then the audit log of the
//! controller's user (and the sidecar's) set against the chart's grants. A request the grants
//! refused fails the test, and so does a granted rule nothing used, unless
//! it is listed below with the reason the walk cannot use it.

use crate::common;

use std::collections::BTreeSet;

use certwright::api::{Certificate, CertificateRequest};
use certwright_testcluster::cluster::audit::AuditLog;
use certwright_testcluster::deploy;
use common::env::{Env, controller_args};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

/// (API group, resource[/subresource], verb).
type Rule = (String, String, String);

/// Grants no walk uses, and why each stays.
const UNUSED_BY_DESIGN: &[(&str, &str, &str, &str)] = &[
    (
        "cert-manager.io",
        "certificates/finalizers",
        "update",
        "checked by OwnerReferencesPermissionEnforcement when a Secret or CertificateRequest names its Certificate with blockOwnerDeletion: an authorization check, not a request",
    ),
    (
        "cert-manager.io",
        "certificaterequests/finalizers",
        "update",
        "as above, for an Order owned by its CertificateRequest",
    ),
    (
        "acme.cert-manager.io",
        "orders/finalizers",
        "update",
        "as above, for a Challenge owned by its Order",
    ),
    (
        "acme.cert-manager.io",
        "challenges/finalizers",
        "update",
        "as above, for the solver's Pods, Services and Ingresses owned by their Challenge",
    ),
    (
        "networking.k8s.io",
        "ingresses/finalizers",
        "update",
        "as above, for a Certificate the ingress-shim made, owned by its Ingress",
    ),
    (
        "acme.cert-manager.io",
        "orders",
        "delete",
        "an Order of the expected name that another CertificateRequest owns (left by an earlier one) is removed so a fresh one is made",
    ),
    (
        "",
        "services",
        "get",
        "a controller restarted with a Challenge already presented reads the shared solver Service's address back (tests/e2e/failures.rs kills one mid-order)",
    ),
    (
        "cert-manager.io",
        "clusterissuers",
        "get",
        "read directly when the cache has not yet seen a ClusterIssuer created a moment before its Certificate (a race the walk only sometimes loses)",
    ),
    (
        "cert-manager.io",
        "issuers",
        "get",
        "as above, for an Issuer",
    ),
    (
        "events.k8s.io",
        "events",
        "patch",
        "an event repeated within minutes is patched (its series count) rather than created again; the walk may not repeat one",
    ),
];

/// Every (group, resource, verb) the chart's roles named `roles` grant,
/// rendered with `values`.
fn grants(values: &[&str], roles: &[&str]) -> BTreeSet<Rule> {
    let values: Vec<String> = values.iter().map(|s| s.to_string()).collect();
    let objects = deploy::render_chart(&values).expect("render the chart");
    let mut rules = BTreeSet::new();
    for role in objects.iter().filter(|o| {
        matches!(o["kind"].as_str(), Some("ClusterRole" | "Role"))
            && roles.iter().any(|r| o["metadata"]["name"] == *r)
    }) {
        for rule in role["rules"].as_array().into_iter().flatten() {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        rules.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    assert!(!rules.is_empty(), "{roles:?} rendered");
    rules
}

fn rule_of(r: &certwright_testcluster::cluster::audit::Request) -> Rule {
    let resource = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    (r.group.clone(), resource, r.verb.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_controller_path_runs_under_the_charts_rbac_and_uses_every_grant() {
    let extra = ["--ari-poll-max-seconds", "1"];
    let env = Env::start(|_| {}, &extra).await;
    let ns = "walk";
    env.namespace(ns).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ns);

    // Budgets kept for the CA, so what was spent is kept in the API.
    Api::<certwright::api::ClusterIssuer>::all(env.client.clone())
        .patch(
            "pebble",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations":
                {(certwright::acme::budgets::ANNOTATION): "newOrders=1000/1h"}}})),
        )
        .await
        .expect("budgets on");

    // Issue (shared mode: an Ingress and the selector-less solver Service).
    env.certificate(
        ns,
        "shared",
        json!({"secretName": "shared-tls", "dnsNames": ["shared.walk.test"]}),
    )
    .await;
    env.certificate_ready(ns, "shared", 1).await;

    // Renew: the CA's renewal window moved into the past.
    let leaf = common::leaf_pem(&secrets.get("shared-tls").await.expect("secret"));
    let now = common::unix_now();
    let past = common::ari_window(now - 7200, now - 3600);
    env.cluster
        .in_node(env.pebble.set_renewal_info(&leaf, &past))
        .await
        .expect("move the window");
    env.certificate_ready(ns, "shared", 2).await;

    // Fail: a profile the CA does not offer.
    env.cluster_issuer_with("nosuch", json!({"profile": "nosuch"}))
        .await;
    env.certificate(
        ns,
        "failing",
        json!({"secretName": "failing-tls", "dnsNames": ["failing.walk.test"],
               "issuerRef": {"name": "nosuch", "kind": "ClusterIssuer"}}),
    )
    .await;
    env.issuing_failure(ns, "failing").await;

    // Leader hand-over: two replicas, the leader stopped.
    deploy::scale(&env.client, 2).await.expect("scale");
    let leader = env
        .wait("two ready replicas, one leading", 90, || async {
            let ready = deploy::ready_controller_pods(&env.client).await;
            let (holder, _) = common::lease_holder(&env.client).await?;
            (ready.len() == 2 && ready.contains(&holder)).then_some(holder)
        })
        .await;
    Api::<Pod>::namespaced(env.client.clone(), deploy::NAMESPACE)
        .delete(&leader, &DeleteParams::default())
        .await
        .expect("stop the leader");
    env.wait("the other replica to lead", 60, || async {
        common::lease_holder(&env.client)
            .await
            .filter(|(h, _)| *h != leader)
            .map(|_| ())
    })
    .await;

    // The new leader issues where the old one left the shared solver's
    // Service.
    env.certificate(
        ns,
        "handed-over",
        json!({"secretName": "handed-over-tls", "dnsNames": ["handed-over.walk.test"]}),
    )
    .await;
    env.certificate_ready(ns, "handed-over", 1).await;

    // Pod mode: a solver Pod and Service per Challenge.
    let mut args = controller_args(env.cluster);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--http01-solver-mode".into(), "pod".into()]);
    deploy::controller(&env.client, &args)
        .await
        .expect("redeploy in pod mode");
    env.certificate(
        ns,
        "pod",
        json!({"secretName": "pod-tls", "dnsNames": ["pod.walk.test"]}),
    )
    .await;
    env.certificate_ready(ns, "pod", 1).await;

    // A namespaced Issuer whose solver edits the user's Ingress in place.
    env.issuer_with(
        ns,
        "inplace",
        json!({"solvers": [{"http01": {"ingress": {"name": "site"}}}]}),
    )
    .await;
    let site = [
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "site", "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "site", "namespace": ns},
            "spec": {"ingressClassName": env.cluster.ingress_class(), "rules": [
                {"host": "site.walk.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "site", "port": {"number": 80}}}}]}}]}}),
    ];
    for object in site {
        deploy::apply(&env.client, object)
            .await
            .expect("the user's site");
    }
    env.certificate(
        ns,
        "site",
        json!({"secretName": "site-tls", "dnsNames": ["site.walk.test"],
               "issuerRef": {"name": "inplace", "kind": "Issuer"}}),
    )
    .await;
    env.certificate_ready(ns, "site", 1).await;

    // Sidecar mode: the chart's sidecar RBAC for Traefik's ServiceAccount,
    // and the solver beside Traefik (the controller creates nothing).
    env.sidecar_issuer("sidecar").await;
    env.certificate(
        ns,
        "side",
        json!({"secretName": "side-tls", "dnsNames": ["side.walk.test"],
               "issuerRef": {"name": "sidecar", "kind": "ClusterIssuer"}}),
    )
    .await;
    env.certificate_ready(ns, "side", 1).await;

    // The ingress-shim: an annotated Ingress gets its Certificate
    // (create), a changed host is followed (update), a removed TLS entry
    // takes its Certificate away (delete).
    let shimmed = |hosts: &[&str]| {
        let tls: Vec<serde_json::Value> = hosts
            .iter()
            .map(|h| json!({"secretName": "shim-tls", "hosts": [h]}))
            .collect();
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "shim", "namespace": ns,
                "annotations": {"cert-manager.io/cluster-issuer": "pebble"}},
            "spec": {"ingressClassName": env.cluster.ingress_class(), "tls": tls, "rules": [
                {"host": "shim.walk.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "site", "port": {"number": 80}}}}]}}]}})
    };
    let certificates: Api<Certificate> = Api::namespaced(env.client.clone(), ns);
    deploy::apply(&env.client, shimmed(&["shim.walk.test"]))
        .await
        .expect("annotated Ingress");
    env.certificate_ready(ns, "shim-tls", 1).await;
    deploy::apply(&env.client, shimmed(&["shim2.walk.test"]))
        .await
        .expect("changed host");
    env.wait("the shim to follow the host", 30, || async {
        let cert = certificates.get("shim-tls").await.ok()?;
        (cert.spec.dns_names? == ["shim2.walk.test"]).then_some(())
    })
    .await;
    deploy::apply(&env.client, shimmed(&[]))
        .await
        .expect("TLS entry removed");
    env.wait("the shim's Certificate to be deleted", 30, || async {
        certificates
            .get_opt("shim-tls")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // Cleanup: deleted Certificates take their requests with them, and
    // their Secrets stay.
    for name in ["shared", "handed-over", "pod", "failing", "site", "side"] {
        certificates
            .delete(name, &DeleteParams::foreground())
            .await
            .expect("delete");
    }
    let requests: Api<CertificateRequest> = Api::namespaced(env.client.clone(), ns);
    env.wait(
        "the CertificateRequests to go with their Certificates",
        60,
        || async {
            requests
                .list(&ListParams::default())
                .await
                .ok()
                .filter(|l| l.items.is_empty())
                .map(|_| ())
        },
    )
    .await;
    for name in ["shared-tls", "pod-tls"] {
        assert!(
            secrets.get_opt(name).await.expect("get").is_some(),
            "{name}"
        );
    }

    // The walk's requests against the grants.
    let audit = AuditLog::new(&env.cluster.control_plane().audit_log());
    let requests = audit.by_user(env.audit_from, deploy::CONTROLLER_USER);
    // A namespace an earlier suite left terminating refuses creates with a
    // 403 of its own: not RBAC's.
    let refused: BTreeSet<String> = requests
        .iter()
        .filter(|r| r.status == 403 && !r.message.contains("because it is being terminated"))
        .map(|r| format!("{:?} {}/{}: {}", rule_of(r), r.namespace, r.name, r.message))
        .collect();
    assert!(
        refused.is_empty(),
        "the chart's RBAC refused requests the controller needs:\n{}",
        refused.into_iter().collect::<Vec<_>>().join("\n")
    );
    // A server-side apply that creates its object (201) needs create as well.
    let used: BTreeSet<Rule> = requests
        .iter()
        .flat_map(|r| {
            let rule = rule_of(r);
            let created = (r.verb == "patch" && r.status == 201)
                .then(|| (rule.0.clone(), rule.1.clone(), "create".to_string()));
            std::iter::once(rule).chain(created)
        })
        .collect();
    let granted = grants(
        &["--set", "crds.enabled=false"],
        &[
            "certwright-controller",
            "certwright-leader-election",
            "certwright-acme-limits",
        ],
    );
    // Requests without a resource (discovery, /version) are every user's.
    let not_granted: Vec<&Rule> = used
        .iter()
        .filter(|rule| !rule.1.is_empty() && !granted.contains(*rule))
        .collect();
    assert!(
        not_granted.is_empty(),
        "used but not granted (and not refused?): {not_granted:?}"
    );
    let excused: BTreeSet<Rule> = UNUSED_BY_DESIGN
        .iter()
        .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    let unused: Vec<String> = granted
        .difference(&used)
        .filter(|rule| !excused.contains(*rule))
        .map(|(g, r, v)| format!("{g:?} {r} {v}"))
        .collect();
    assert!(
        unused.is_empty(),
        "granted but never used by the walk (remove the grant, or list it with its reason):\n{}\nused: {used:#?}",
        unused.join("\n")
    );

    // The sidecar runs under Traefik's ServiceAccount; Traefik itself never
    // reads cert-manager's kinds, so those requests are the sidecar's.
    let sidecar: Vec<_> = audit
        .by_user(env.audit_from, "system:serviceaccount:traefik:traefik")
        .into_iter()
        .filter(|r| r.group.ends_with("cert-manager.io"))
        .collect();
    let sidecar_refused: Vec<String> = sidecar
        .iter()
        .filter(|r| r.status == 403)
        .map(|r| format!("{:?}: {}", rule_of(r), r.message))
        .collect();
    assert!(
        sidecar_refused.is_empty(),
        "the sidecar RBAC refused: {sidecar_refused:?}"
    );
    let sidecar_used: BTreeSet<Rule> = sidecar.iter().map(rule_of).collect();
    let sidecar_granted = grants(common::SIDECAR_RBAC_VALUES, &["certwright-sidecar"]);
    let sidecar_unused: Vec<&Rule> = sidecar_granted.difference(&sidecar_used).collect();
    assert!(
        sidecar_unused.is_empty(),
        "the sidecar RBAC grants what the sidecar never used: {sidecar_unused:?}; used: {sidecar_used:?}"
    );
}

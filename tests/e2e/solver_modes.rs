//! The HTTP-01 solver modes in the local cluster, with real pebble
//! validating through Traefik: pod mode (a solver Pod per Challenge that
//! the real PodSecurity admission must accept under `restricted`), an
//! existing Ingress edited in place (its other rules untouched before,
//! during and after), the sidecar mode beside Traefik, and a mode changed
//! while a Challenge is at work (it keeps the mode it was presented in).

use crate::common;

use common::env::Env;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const SOLVER: &str = "acme.cert-manager.io/http01-solver=true";

async fn solver_objects(env: &Env, ns: &str) -> (Vec<Pod>, Vec<Service>, Vec<Ingress>) {
    let by_label = ListParams::default().labels(SOLVER);
    let pods = Api::<Pod>::namespaced(env.client.clone(), ns)
        .list(&by_label)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let services = Api::<Service>::namespaced(env.client.clone(), ns)
        .list(&by_label)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let ingresses = Api::<Ingress>::namespaced(env.client.clone(), ns)
        .list(&by_label)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    (pods, services, ingresses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_mode_runs_a_restricted_solver_pod_that_pebble_reaches_and_removes_it_after() {
    let env = Env::start(|_| {}, &[]).await;
    env.pod_issuer("pods").await;
    env.namespace_labelled(
        "restricted",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    env.certificate(
        "restricted",
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["pod.example.test"],
               "issuerRef": {"name": "pods", "kind": "ClusterIssuer"}}),
    )
    .await;

    // The solver Pod is admitted under `restricted` and runs; deleting it
    // while its Challenge lives brings it back.
    let first = env
        .wait("a running solver Pod", 60, || async {
            let (pods, services, ingresses) = solver_objects(&env, "restricted").await;
            let pod = pods
                .into_iter()
                .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))?;
            (!services.is_empty() && !ingresses.is_empty()).then_some((pod, services, ingresses))
        })
        .await;
    let (pod, services, ingresses) = first;
    let owner = &pod.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Challenge", Some(true))
    );
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    for key in [
        "acme.cert-manager.io/http-domain",
        "acme.cert-manager.io/http-token",
    ] {
        assert!(labels.contains_key(key), "{key} in {labels:?}");
    }
    let spec = pod.spec.clone().expect("spec");
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.enable_service_links, Some(false));
    let volumes = spec.volumes.unwrap_or_default();
    assert!(
        volumes.is_empty(),
        "no ServiceAccount token mounted: {volumes:?}"
    );
    assert_eq!(
        services[0].spec.as_ref().and_then(|s| s.type_.as_deref()),
        Some("NodePort")
    );
    let backend = ingresses[0]
        .spec
        .as_ref()
        .and_then(|s| s.rules.as_ref())
        .expect("rules")[0]
        .http
        .as_ref()
        .expect("http")
        .paths[0]
        .backend
        .service
        .as_ref()
        .map(|s| s.name.clone());
    assert_eq!(
        backend, services[0].metadata.name,
        "the Ingress routes to the solver Service"
    );
    let name = pod.metadata.name.clone().expect("name");
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "restricted");
    let _ = pods
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await;

    let cert = env.certificate_ready("restricted", "web", 1).await;
    assert_eq!(cert.status.and_then(|s| s.revision), Some(1));
    let log = env.cluster.pod_log("restricted", &name);
    assert!(
        log.contains("served key authorization"),
        "pebble's request reached the solver Pod:\n{log}"
    );

    env.wait("every solver resource gone", 60, || async {
        let (pods, services, ingresses) = solver_objects(&env, "restricted").await;
        (pods.is_empty() && services.is_empty() && ingresses.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_ingress_is_edited_in_place_and_left_as_the_user_had_it() {
    let env = Env::start(|_| {}, &[]).await;
    env.cluster_issuer_with(
        "inplace",
        json!({"solvers": [{"http01": {"ingress": {"name": "site"}}}]}),
    )
    .await;
    env.namespace("edit").await;
    let services: Api<Service> = Api::namespaced(env.client.clone(), "edit");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "site"},
                "spec": {"ports": [{"name": "http", "port": 80}]}}))
            .expect("service"),
        )
        .await
        .expect("site service");
    let ingresses: Api<Ingress> = Api::namespaced(env.client.clone(), "edit");
    let user: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "site", "annotations": {"team": "web"}},
        "spec": {"ingressClassName": env.cluster.ingress_class(), "rules": [
            {"host": "site.example.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "site", "port": {"number": 80}}}}]}}]}}))
    .expect("ingress");
    ingresses
        .create(&PostParams::default(), &user)
        .await
        .expect("user ingress");
    env.certificate(
        "edit",
        "site",
        json!({"secretName": "site-tls", "dnsNames": ["site.example.test"],
               "issuerRef": {"name": "inplace", "kind": "ClusterIssuer"}}),
    )
    .await;

    // During: the user's rule first and unchanged, ours after it.
    let during = env
        .wait("the challenge rule in the user's Ingress", 60, || async {
            let ing = ingresses.get("site").await.ok()?;
            let rules = ing.spec.as_ref()?.rules.clone()?;
            (rules.len() == 2).then_some(rules)
        })
        .await;
    let original = user.spec.clone().and_then(|s| s.rules).expect("rules");
    assert_eq!(during[0], original[0], "the user's rule is untouched");
    let ours = &during[1].http.as_ref().expect("http").paths[0];
    assert!(
        ours.path
            .as_deref()
            .is_some_and(|p| p.starts_with("/.well-known/acme-challenge/"))
    );
    assert_eq!(ours.path_type, "Exact");
    // A concurrent edit by the user survives.
    ingresses
        .patch(
            "site",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"edited": "during"}}})),
        )
        .await
        .expect("user edit");

    env.certificate_ready("edit", "site", 1).await;
    let after = env
        .wait("the challenge rule removed again", 60, || async {
            let ing = ingresses.get("site").await.ok()?;
            let rules = ing.spec.as_ref()?.rules.clone()?;
            (rules.len() == 1).then_some(ing)
        })
        .await;
    assert_eq!(
        after.spec.as_ref().and_then(|s| s.rules.clone()),
        Some(original)
    );
    let labels = after.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("edited").map(String::as_str), Some("during"));
    let annotations = after.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("team").map(String::as_str), Some("web"));
    assert!(
        after.metadata.owner_references.is_none(),
        "the user's Ingress is not taken over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_mode_is_served_beside_traefik_and_the_controller_creates_nothing() {
    let env = Env::start(|_| {}, &[]).await;
    // The chart's sidecar RBAC for Traefik's ServiceAccount, then the
    // sidecar container in Traefik's Pod.
    env.sidecar_issuer("sidecar").await;
    env.namespace("side").await;
    env.certificate(
        "side",
        "web",
        json!({"secretName": "side-tls", "dnsNames": ["side.example.test"],
               "issuerRef": {"name": "sidecar", "kind": "ClusterIssuer"}}),
    )
    .await;
    let api: Api<certwright::api::Certificate> = Api::namespaced(env.client.clone(), "side");
    env.wait("the sidecar-mode Certificate to be Ready", 60, || async {
        let (pods, services, ingresses) = solver_objects(&env, "side").await;
        assert!(
            pods.is_empty() && services.is_empty() && ingresses.is_empty(),
            "sidecar mode creates no solver resources"
        );
        let cert = api.get("web").await.ok()?;
        let ready = cert.status?.conditions?.into_iter().any(|c| {
            c.type_ == "Ready" && c.status == certwright::api::meta::ConditionStatus::True
        });
        ready.then_some(())
    })
    .await;
    let all_ingresses = Api::<Ingress>::namespaced(env.client.clone(), "side")
        .list(&ListParams::default())
        .await
        .expect("ingresses");
    assert!(all_ingresses.items.is_empty());
    let traefik = Api::<Pod>::namespaced(env.client.clone(), "traefik")
        .list(&ListParams::default().labels("app.kubernetes.io/name=traefik"))
        .await
        .expect("traefik pods");
    let name = traefik.items[0].metadata.name.clone().expect("name");
    let log = env.cluster.pod_log("traefik", &name);
    assert!(
        log.contains("served key authorization") && log.contains("side.example.test"),
        "the sidecar served pebble's request:\n{}",
        log.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
}

/// An issuer switched from shared to pod mode while its Challenge is at
/// work: the Challenge keeps the mode it was presented in (recorded on
/// it), is issued that way, and cleanup removes what was presented; no
/// solver Pod is ever made, and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mode_changed_mid_challenge_applies_to_the_next_one_and_leaves_nothing() {
    use certwright::api::ClusterIssuer;
    let env = Env::start(|_| {}, &[]).await;
    let mark = certwright_testcluster::cluster::audit::AuditLog::new(
        &env.cluster.control_plane().audit_log(),
    )
    .mark();
    env.cluster_issuer("switch").await;
    env.ca_refuses_validation();
    env.namespace("switch").await;
    env.certificate(
        "switch",
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["web.switch.test"],
               "issuerRef": {"name": "switch", "kind": "ClusterIssuer"}}),
    )
    .await;
    let recorded = env
        .challenge_refused_once("switch")
        .await
        .metadata
        .annotations
        .and_then(|a| a.get(certwright::solver::PRESENTED_MODE).cloned())
        .unwrap_or_default();
    assert_eq!(recorded, "shared");
    Api::<ClusterIssuer>::all(env.client.clone())
        .patch(
            "switch",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations":
                {(certwright::solver::MODE_ANNOTATION): "pod"}}})),
        )
        .await
        .expect("switch to pod mode");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    env.proxy.clear_faults();
    env.certificate_ready("switch", "web", 1).await;
    env.wait("nothing of the solver left", 60, || async {
        let (pods, services, ingresses) = solver_objects(&env, "switch").await;
        let shared = Api::<Service>::namespaced(env.client.clone(), "switch")
            .get_opt("certwright-solver")
            .await
            .ok()?;
        (pods.is_empty() && services.is_empty() && ingresses.is_empty() && shared.is_none())
            .then_some(())
    })
    .await;
    let audit = certwright_testcluster::cluster::audit::AuditLog::new(
        &env.cluster.control_plane().audit_log(),
    );
    let pods: Vec<_> = audit
        .by_user(mark, certwright_testcluster::deploy::CONTROLLER_USER)
        .into_iter()
        .filter(|r| r.resource == "pods" && r.namespace == "switch" && r.is_write())
        .collect();
    assert!(pods.is_empty(), "no solver Pod was ever made: {pods:?}");
}

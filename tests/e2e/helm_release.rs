//! The chart as users install it: `helm install`, `helm upgrade` and
//! `helm uninstall` with the real helm against the local cluster's real API
//! server, hooks included (the post-install check runs as a Job), and what
//! `crds.keep` leaves behind.

use crate::common;

use std::process::Command;
use std::time::Duration;

use certwright::api::Certificate;
use certwright_testcluster::cluster::LocalCluster;
use certwright_testcluster::cluster::audit::AuditLog;
use certwright_testcluster::deploy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const NAMESPACE: &str = "certwright-helm";

/// Runs helm against the cluster; returns stdout, or fails with what helm said.
fn helm(cluster: &LocalCluster, args: &[&str]) -> String {
    let out = Command::new(certwright_testcluster::tools::on_path("helm").expect("helm"))
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("HELM_CACHE_HOME", cluster.log_dir().join("helm-cache"))
        .env("HELM_CONFIG_HOME", cluster.log_dir().join("helm-config"))
        .env("HELM_DATA_HOME", cluster.log_dir().join("helm-data"))
        .args(args)
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm install` or `helm upgrade` of release `name` with `set` values,
/// waiting for the Deployment and the hooks: the image the kubelet maps to
/// the built binary.
fn install(cluster: &LocalCluster, verb: &str, name: &str, ns: &str, set: &[&str]) -> String {
    let chart = deploy::chart_dir();
    let mut args = vec![
        verb,
        name,
        chart.to_str().expect("chart path"),
        "--namespace",
        ns,
        "--wait",
        "--timeout",
        "3m",
        "--set",
        "image.tag=dev",
    ];
    if verb == "install" {
        args.push("--create-namespace");
    }
    for value in set {
        args.extend(["--set", value]);
    }
    helm(cluster, &args)
}

async fn ready_replicas(client: &kube::Client, ns: &str, name: &str) -> Option<i32> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()??
        .status?
        .ready_replicas
}

async fn crd_names(client: &kube::Client) -> Vec<String> {
    Api::<CustomResourceDefinition>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list CRDs")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n.ends_with("cert-manager.io"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_upgrades_and_uninstalls_the_chart_on_the_real_api_server() {
    let (cluster, _turn) = common::env::exclusive().await;
    let client = cluster.client();
    let audit = AuditLog::new(&cluster.control_plane().audit_log());
    let mark = audit.mark();
    // A fresh cluster for helm: without the CRDs the local cluster applies
    // at its start (helm would refuse objects it does not own).
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    // Each CRD's storage answers a list first: one deleted while the API
    // server still initializes its storage waits on "storage is
    // (re)initializing" for minutes.
    for crd in crds.list(&ListParams::default()).await.expect("CRDs").items {
        let Some(version) = crd.spec.versions.iter().find(|v| v.storage) else {
            continue;
        };
        let resource = kube::api::ApiResource {
            group: crd.spec.group.clone(),
            version: version.name.clone(),
            api_version: format!("{}/{}", crd.spec.group, version.name),
            kind: crd.spec.names.kind.clone(),
            plural: crd.spec.names.plural.clone(),
        };
        let objects: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
        common::eventually_within("the CRD's storage to answer", 60, || {
            let objects = objects.clone();
            async move {
                objects
                    .list(&ListParams::default().limit(1))
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
    }
    for name in crd_names(&client).await {
        crds.delete(&name, &Default::default())
            .await
            .expect("delete a CRD");
    }
    // The API server's CRD cleanup finalizer can take longer than 30 s on a
    // busy machine (seen once in a full run of the suite).
    common::eventually_within("the pre-applied CRDs to go", 120, || {
        let client = client.clone();
        async move { crd_names(&client).await.is_empty().then_some(()) }
    })
    .await;

    // Install: CRDs, RBAC, Services, the Deployment, and the post-install
    // check, which helm waits for.
    let notes = install(cluster, "install", "certwright", NAMESPACE, &[]);
    assert!(
        notes.contains(
            "app.kubernetes.io/instance=certwright,app.kubernetes.io/component=controller"
        ),
        "NOTES name the controller Pods' selector:\n{notes}"
    );
    assert_eq!(crd_names(&client).await.len(), 6);
    assert_eq!(
        ready_replicas(&client, NAMESPACE, "certwright").await,
        Some(1)
    );
    let check_user = format!("system:serviceaccount:{NAMESPACE}:certwright-startupapicheck");
    let checked = audit.by_user(mark, &check_user);
    assert!(
        checked
            .iter()
            .any(|r| r.group == "cert-manager.io" && r.verb == "list" && r.status == 200),
        "the post-install check listed certwright's kinds under its own ServiceAccount: {checked:?}"
    );
    // Every attempt's Pod log (a first attempt may have run before the
    // CRDs were established, and been retried).
    let prefix = format!("pod-{NAMESPACE}-certwright-startupapicheck-");
    let check_logs: Vec<(String, String)> = std::fs::read_dir(cluster.log_dir())
        .expect("log dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), text)
        })
        .collect();
    assert!(
        check_logs.iter().any(|(_, log)| {
            log.contains("the API server serves cert-manager.io/v1 and acme.cert-manager.io/v1")
        }),
        "the check's Pod logs: {check_logs:#?}"
    );
    let controller_user = format!("system:serviceaccount:{NAMESPACE}:certwright");
    common::eventually("the chart's controller to use the API server", || {
        let audit = audit.clone();
        let user = controller_user.clone();
        async move {
            audit
                .by_user(mark, &user)
                .iter()
                .any(|r| r.resource == "certificates" && r.verb == "watch")
                .then_some(())
        }
    })
    .await;

    // A Certificate of the user's, which uninstalling with crds.keep must keep.
    common::namespace(&client, "helm-apps").await;
    let certificates: Api<Certificate> = Api::namespaced(client.clone(), "helm-apps");
    certificates
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                "metadata": {"name": "kept", "namespace": "helm-apps"},
                "spec": {"secretName": "kept-tls", "dnsNames": ["kept.example.test"],
                    "issuerRef": {"name": "nobody", "kind": "ClusterIssuer"}}}))
            .expect("certificate"),
        )
        .await
        .expect("create the Certificate");

    // Upgrade: a changed value reaches the running Deployment.
    install(
        cluster,
        "upgrade",
        "certwright",
        NAMESPACE,
        &["replicaCount=2"],
    );
    assert_eq!(
        ready_replicas(&client, NAMESPACE, "certwright").await,
        Some(2)
    );
    let history = helm(
        cluster,
        &["history", "certwright", "-n", NAMESPACE, "-o", "json"],
    );
    let history: serde_json::Value = serde_json::from_str(&history).expect("history JSON");
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    assert_eq!(history[1]["status"], "deployed", "{history}");

    // A second release beside the first: its names are its own, nothing collides.
    install(
        cluster,
        "install",
        "edge",
        "certwright-edge",
        &[
            "crds.enabled=false",
            "replicaCount=0",
            "startupapicheck.enabled=false",
        ],
    );
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for name in ["certwright-controller", "edge-certwright-controller"] {
        assert!(roles.get_opt(name).await.expect("get").is_some(), "{name}");
    }
    helm(
        cluster,
        &["uninstall", "edge", "-n", "certwright-edge", "--wait"],
    );
    assert!(
        roles
            .get_opt("edge-certwright-controller")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        roles
            .get_opt("certwright-controller")
            .await
            .expect("get")
            .is_some()
    );

    // Uninstall with crds.keep (the default): the CRDs and every
    // Certificate stay; everything else of the release goes.
    helm(
        cluster,
        &["uninstall", "certwright", "-n", NAMESPACE, "--wait"],
    );
    assert_eq!(crd_names(&client).await.len(), 6, "crds.keep kept the CRDs");
    assert!(certificates.get_opt("kept").await.expect("get").is_some());
    assert!(
        roles
            .get_opt("certwright-controller")
            .await
            .expect("get")
            .is_none()
    );
    common::eventually("the controller Deployment to go", || {
        let client = client.clone();
        async move {
            ready_replicas(&client, NAMESPACE, "certwright")
                .await
                .is_none()
                .then_some(())
        }
    })
    .await;

    // Installed again with crds.keep=false, helm adopts the kept CRDs, and
    // uninstalling then removes them with every Certificate.
    install(
        cluster,
        "install",
        "certwright",
        NAMESPACE,
        &["crds.keep=false", "startupapicheck.enabled=false"],
    );
    helm(
        cluster,
        &["uninstall", "certwright", "-n", NAMESPACE, "--wait"],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !crd_names(&client).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "without crds.keep the CRDs go with the release: {:?}",
            crd_names(&client).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

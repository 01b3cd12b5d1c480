//! certwright running as a Pod in the local cluster, with pebble resolving
//! every name to the ingress (Traefik): the whole product, end to end. One
//! cluster serves the test binary; tests that deploy a controller take
//! turns, and each turn first removes what the last one made (its
//! namespaces, ClusterIssuers and controller).

use std::time::Duration;

use certwright::api::{Certificate, ClusterIssuer};
use certwright_testcluster::acme_proxy::AcmeProxy;
use certwright_testcluster::cluster::LocalCluster;
use certwright_testcluster::deploy;
use certwright_testcluster::pebble::{Pebble, PebbleOptions};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::json;

pub struct Env {
    pub cluster: &'static LocalCluster,
    pub pebble: Pebble,
    /// Between the controller and pebble: faults are injected here.
    pub proxy: AcmeProxy,
    pub client: kube::Client,
    /// Where the audit log stood when this turn's controller was deployed
    /// (after the last turn's was gone): its requests come after it.
    pub audit_from: u64,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// The local cluster's turns: one test at a time deploys a controller or
/// changes what the whole cluster sees.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A turn on the local cluster for a test that sets it up itself (the
/// chart's release, the image's namespace): what the last turn made is
/// removed first, its controller and cluster-wide RBAC too.
pub async fn exclusive() -> (&'static LocalCluster, tokio::sync::MutexGuard<'static, ()>) {
    let cluster = super::local_cluster().await;
    let turn = TURN.lock().await;
    let client = cluster.client();
    clean_up(&client).await;
    deploy::remove_all(&client)
        .await
        .expect("the last turn's controller and its cluster-wide objects removed");
    (cluster, turn)
}

/// Label on the namespaces a test makes, so the next turn removes them.
pub const OWNED: &str = "certwright.test/env";

/// The controller's flags for tests: self-check through the ingress, fast polls.
pub fn controller_args(cluster: &LocalCluster) -> Vec<String> {
    vec![
        "--http01-self-check-address".into(),
        cluster.ingress_node_addr().to_string(),
        "--acme-poll-interval-ms".into(),
        "100".into(),
        "--backoff-min-seconds".into(),
        "2".into(),
        "--transient-backoff-max-seconds".into(),
        "2".into(),
        // Tests that hold the CA down for a while do not want the Order
        // to give up meanwhile (tests/e2e/ca/faults.rs sets its own limit).
        "--acme-max-transient-failures".into(),
        "1000".into(),
    ]
}

impl Env {
    /// Starts the cluster, pebble (changed by `pebble`), the CRDs and the
    /// controller (with `extra` flags), and a ClusterIssuer `pebble`.
    pub async fn start(pebble: impl FnOnce(&mut PebbleOptions), extra: &[&str]) -> Env {
        Self::start_with_chart(pebble, extra, &[]).await
    }

    /// As [`Env::start`], with more `helm template` arguments for the
    /// controller's chart (`deploy::real_node_values()` runs it on the real
    /// node).
    pub async fn start_with_chart(
        pebble: impl FnOnce(&mut PebbleOptions),
        extra: &[&str],
        chart: &[String],
    ) -> Env {
        certwright::install_crypto_provider();
        let binary = env!("CARGO_BIN_EXE_certwright");
        let cluster = super::local_cluster().await;
        let turn = TURN.lock().await;
        let client = cluster.client();
        deploy::install_crds(&client, std::path::Path::new(binary))
            .await
            .expect("crds");
        clean_up(&client).await;
        let mut options = cluster.pebble_options();
        pebble(&mut options);
        let pebble = cluster
            .in_node(Pebble::start(options))
            .await
            .expect("pebble");
        let proxy = cluster
            .in_node(AcmeProxy::start(&pebble))
            .await
            .expect("proxy");
        // Flags in `extra` replace the defaults of the same name.
        let defaults = controller_args(cluster);
        let mut args: Vec<String> = defaults
            .chunks(2)
            .filter(|pair| !extra.contains(&pair[0].as_str()))
            .flatten()
            .cloned()
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        deploy::remove_controller(&client)
            .await
            .expect("the last turn's controller removed");
        forget_the_last_controller(&client).await;
        let audit_from = certwright_testcluster::cluster::audit::AuditLog::new(
            &cluster.control_plane().audit_log(),
        )
        .mark();
        deploy::controller_with_values(&client, "dev", &args, chart)
            .await
            .expect("controller");
        let env = Env {
            cluster,
            pebble,
            proxy,
            client,
            audit_from,
            _turn: turn,
        };
        env.cluster_issuer("pebble").await;
        env
    }

    pub async fn cluster_issuer(&self, name: &str) {
        self.cluster_issuer_with(name, json!({})).await;
    }

    /// A ClusterIssuer like `pebble` with `extra` merged into `spec.acme`.
    pub async fn cluster_issuer_with(&self, name: &str, extra: serde_json::Value) {
        self.cluster_issuer_annotated(name, json!({}), extra).await;
    }

    /// A ClusterIssuer like `pebble` with `annotations` and `extra` merged
    /// into `spec.acme`.
    pub async fn cluster_issuer_annotated(
        &self,
        name: &str,
        annotations: serde_json::Value,
        extra: serde_json::Value,
    ) {
        let issuer = json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"acme": self.acme_spec(name, extra)}});
        Api::<ClusterIssuer>::all(self.client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(issuer).expect("issuer"),
            )
            .await
            .expect("create issuer");
    }

    /// An Issuer in `ns` like the ClusterIssuer `pebble`, with `extra`
    /// merged into `spec.acme`.
    pub async fn issuer_with(&self, ns: &str, name: &str, extra: serde_json::Value) {
        let issuer = json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"acme": self.acme_spec(name, extra)}});
        deploy::apply(&self.client, issuer).await.expect("issuer");
    }

    /// An ACME issuer's spec for this turn's pebble (account key Secret
    /// `<name>-account`, HTTP-01 through the cluster's ingress class), with
    /// `extra` merged in.
    fn acme_spec(&self, name: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut acme = json!({"server": self.proxy.directory_url, "email": "ops@example.test",
            "caBundle": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, self.pebble.tls_ca_pem.as_bytes()),
            "privateKeySecretRef": {"name": format!("{name}-account")},
            "solvers": [{"http01": {"ingress": {"ingressClassName": self.cluster.ingress_class()}}}]});
        for (k, v) in extra.as_object().into_iter().flatten() {
            acme[k] = v.clone();
        }
        acme
    }

    /// A ClusterIssuer like `pebble` in pod mode (a solver Pod per Challenge).
    pub async fn pod_issuer(&self, name: &str) {
        self.cluster_issuer_annotated(
            name,
            json!({"certwright.io/http01-solver-mode": "pod"}),
            json!({}),
        )
        .await;
    }

    /// certwright's sidecar solver beside Traefik, under the chart's sidecar
    /// RBAC for Traefik's ServiceAccount, and a ClusterIssuer `name` in
    /// sidecar mode.
    pub async fn sidecar_issuer(&self, name: &str) {
        let rbac = super::helm_template(super::SIDECAR_RBAC_VALUES);
        let kinds: Vec<&str> = rbac.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(kinds, ["ClusterRole", "ClusterRoleBinding"]);
        for object in rbac {
            deploy::apply(&self.client, object)
                .await
                .expect("apply the chart's sidecar RBAC");
        }
        self.cluster
            .add_ingress_sidecar("ghcr.io/certwright/certwright:dev")
            .await
            .expect("the sidecar beside Traefik");
        self.cluster_issuer_annotated(
            name,
            json!({"certwright.io/http01-solver-mode": "sidecar"}),
            json!({}),
        )
        .await;
    }

    pub async fn namespace(&self, name: &str) {
        self.namespace_labelled(name, json!({})).await;
    }

    /// A namespace of this turn with `labels` besides the turn's own.
    pub async fn namespace_labelled(&self, name: &str, labels: serde_json::Value) {
        let mut ns = json!({"metadata": {"name": name, "labels": labels}});
        ns["metadata"]["labels"][OWNED] = json!("true");
        let _ = Api::<Namespace>::all(self.client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(ns).expect("ns"),
            )
            .await;
    }

    /// Creates a Certificate from `spec` (issuerRef defaults to the ClusterIssuer).
    pub async fn certificate(&self, ns: &str, name: &str, mut spec: serde_json::Value) {
        if spec.get("issuerRef").is_none() {
            spec["issuerRef"] = json!({"name": "pebble", "kind": "ClusterIssuer"});
        }
        let cert = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": name, "namespace": ns}, "spec": spec});
        Api::<Certificate>::namespaced(self.client.clone(), ns)
            .create(
                &PostParams::default(),
                &serde_json::from_value(cert).expect("certificate"),
            )
            .await
            .expect("create certificate");
    }

    /// The (reason, message) of the events in `ns` whose fields match
    /// `selector` (e.g. `involvedObject.kind=Order`).
    pub async fn events(&self, ns: &str, selector: &str) -> Vec<(String, String)> {
        Api::<k8s_openapi::api::core::v1::Event>::namespaced(self.client.clone(), ns)
            .list(&kube::api::ListParams::default().fields(selector))
            .await
            .expect("events")
            .items
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }

    /// Every controller Pod's log, for failure messages.
    pub async fn logs(&self) -> String {
        let mut out = String::new();
        for pod in deploy::controller_pods(&self.client).await {
            out.push_str(&format!("--- {pod}\n"));
            let mut log = self.cluster.pod_log(deploy::NAMESPACE, &pod);
            if log.is_empty() {
                // A real node's Pod: its log is the kubelet's to serve.
                log = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(
                    self.client.clone(),
                    deploy::NAMESPACE,
                )
                .logs(&pod, &Default::default())
                .await
                .unwrap_or_default();
            }
            out.push_str(&log);
        }
        out
    }

    /// Waits up to `secs` for `check`; on timeout fails with the controller's log.
    pub async fn wait<T, F, Fut>(&self, what: &str, secs: u64, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                let logs = self.logs().await;
                let tail: String = logs
                    .lines()
                    .rev()
                    .take(80)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                let challenges = self
                    .summary::<certwright::api::Challenge>(|c| format!("{:?}", c.status))
                    .await;
                let slices = self
                    .summary::<k8s_openapi::api::discovery::v1::EndpointSlice>(|s| {
                        let endpoints: Vec<_> = s
                            .endpoints
                            .iter()
                            .map(|e| (&e.addresses, e.conditions.as_ref().and_then(|c| c.ready)))
                            .collect();
                        format!("{endpoints:?}")
                    })
                    .await;
                panic!(
                    "timed out waiting for {what}\nchallenges:\n{challenges}\nendpoint slices:\n{slices}\ncontroller log (tail):\n{tail}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One line per object of kind `K` in every namespace: its name and `show`.
    async fn summary<K>(&self, show: impl Fn(&K) -> String) -> String
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        Api::<K>::all(self.client.clone())
            .list(&Default::default())
            .await
            .map(|l| {
                l.items
                    .iter()
                    .map(|o| {
                        let meta = o.meta();
                        format!(
                            "{}/{}: {}",
                            meta.namespace.as_deref().unwrap_or(""),
                            meta.name.as_deref().unwrap_or(""),
                            show(o)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// The CA answers every challenge acceptance with a 503 until
    /// `proxy.clear_faults()`: an issuance stops with its Order placed and
    /// its token presented.
    /// The Challenge in `ns` once presented and refused by the CA once
    /// (after [`Env::ca_refuses_validation`]).
    pub async fn challenge_refused_once(&self, ns: &str) -> certwright::api::Challenge {
        let challenges: Api<certwright::api::Challenge> = Api::namespaced(self.client.clone(), ns);
        self.wait("the Challenge presented and refused once", 60, || async {
            let ch = challenges
                .list(&Default::default())
                .await
                .ok()?
                .items
                .pop()?;
            let presented = ch.status.as_ref()?.presented == Some(true);
            let refused = self.proxy.seen().iter().any(|s| s.injected);
            (presented && refused).then_some(ch)
        })
        .await
    }

    /// Each Order in `ns`: its name and reason.
    pub async fn order_reasons(&self, ns: &str) -> Vec<(Option<String>, Option<String>)> {
        Api::<certwright::api::Order>::namespaced(self.client.clone(), ns)
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .map(|o| (o.metadata.name, o.status.and_then(|s| s.reason)))
            .collect()
    }

    pub fn ca_refuses_validation(&self) {
        self.proxy.fail_next(
            "POST",
            "/chalZ/",
            10_000,
            503,
            "urn:ietf:params:acme:error:serverInternal",
            "the CA is having a moment",
        );
    }

    /// The CA answers the next authorization fetch with the seed's 404
    /// "No such authorization".
    pub fn lose_next_authorization(&self) {
        self.proxy.fail_next(
            "POST",
            "/authZ/",
            1,
            404,
            "urn:ietf:params:acme:error:malformed",
            "No such authorization",
        );
    }

    /// Waits for the Certificate to fail (Issuing=False, reason Failed);
    /// returns the condition's message.
    pub async fn issuing_failure(&self, ns: &str, name: &str) -> String {
        let api: Api<Certificate> = Api::namespaced(self.client.clone(), ns);
        self.wait(&format!("Certificate {ns}/{name} to fail"), 60, || {
            let api = api.clone();
            async move {
                let status = api.get(name).await.ok()?.status?;
                status
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == "Issuing" && c.reason.as_deref() == Some("Failed"))?
                    .message
            }
        })
        .await
    }

    /// The Certificate once its Ready condition is `status` with a revision
    /// of at least `revision`.
    pub async fn certificate_ready(&self, ns: &str, name: &str, revision: i64) -> Certificate {
        let api: Api<Certificate> = Api::namespaced(self.client.clone(), ns);
        self.wait(
            &format!("Certificate {ns}/{name} Ready at revision {revision}"),
            60,
            || {
                let api = api.clone();
                async move {
                    let cert = api.get(name).await.ok()?;
                    let status = cert.status.as_ref()?;
                    let ready = is_ready(&cert);
                    (ready && status.revision.unwrap_or(0) >= revision).then_some(cert)
                }
            },
        )
        .await
    }
}

/// Whether the Certificate's Ready condition is True.
pub fn is_ready(cert: &Certificate) -> bool {
    cert.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == certwright::api::meta::ConditionStatus::True)
    })
}

/// Deletes what the last turn's controller kept in its namespace (its
/// leader Lease, its kept CA limits), so each turn's controller starts as
/// a fresh install does.
async fn forget_the_last_controller(client: &kube::Client) {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{DeleteParams, ListParams};
    let leases: Api<Lease> = Api::namespaced(client.clone(), deploy::NAMESPACE);
    let _ = leases
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), deploy::NAMESPACE);
    for map in maps
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        if let Some(name) = map.metadata.name.filter(|n| n != "kube-root-ca.crt") {
            let _ = maps.delete(&name, &DeleteParams::default()).await;
        }
    }
}

/// Removes what an earlier turn made: its namespaces (while its controller
/// still runs, so Challenge finalizers are honoured) and ClusterIssuers.
async fn clean_up(client: &kube::Client) {
    use certwright::api::Challenge;
    use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let owned = ListParams::default().labels(&format!("{OWNED}=true"));
    // APIServices first: one whose Service is gone would fail discovery,
    // and with it the namespace deletions below.
    let _ = super::dns::webhook::apiservice_api(client)
        .delete_collection(&DeleteParams::default(), &owned)
        .await;
    let names: Vec<String> = namespaces
        .list(&owned)
        .await
        .expect("list namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for name in &names {
        let _ = namespaces.delete(name, &DeleteParams::background()).await;
    }
    let _ = Api::<ClusterIssuer>::all(client.clone())
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut stripped = false;
    while !namespaces
        .list(&owned)
        .await
        .map(|l| l.items.is_empty())
        .unwrap_or(false)
    {
        if !stripped && tokio::time::Instant::now() + Duration::from_secs(40) > deadline {
            // A controller that died mid-test cannot finish its Challenges.
            for name in &names {
                let api: Api<Challenge> = Api::namespaced(client.clone(), name);
                for c in api
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                {
                    if let Some(n) = c.metadata.name {
                        let _ = api
                            .patch(
                                &n,
                                &PatchParams::default(),
                                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                            )
                            .await;
                    }
                }
            }
            stripped = true;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the last test's namespaces {names:?} were not deleted within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! certwright running as a Pod in the local cluster, with pebble resolving
//! every name to the ingress router: the whole product, end to end.

use std::time::Duration;

use certwright::api::{Certificate, ClusterIssuer};
use certwright_testcluster::acme_proxy::AcmeProxy;
use certwright_testcluster::cluster::{ClusterOptions, LocalCluster};
use certwright_testcluster::deploy;
use certwright_testcluster::pebble::{Pebble, PebbleOptions};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::json;

pub struct Env {
    pub cluster: LocalCluster,
    pub pebble: Pebble,
    /// Between the controller and pebble: faults are injected here.
    pub proxy: AcmeProxy,
    pub client: kube::Client,
}

/// The controller's flags for tests: self-check through the router, fast polls.
pub fn controller_args(cluster: &LocalCluster) -> Vec<String> {
    vec![
        "--http01-self-check-address".into(),
        cluster.router_addr().to_string(),
        "--acme-poll-interval-ms".into(),
        "100".into(),
        "--backoff-min-seconds".into(),
        "2".into(),
        "--transient-backoff-max-seconds".into(),
        "2".into(),
    ]
}

impl Env {
    /// Starts the cluster, pebble (changed by `pebble`), the CRDs and the
    /// controller (with `extra` flags), and a ClusterIssuer `pebble`.
    pub async fn start(pebble: impl FnOnce(&mut PebbleOptions), extra: &[&str]) -> Env {
        certwright::install_crypto_provider();
        let binary = env!("CARGO_BIN_EXE_certwright");
        let cluster = LocalCluster::start(ClusterOptions::new(binary))
            .await
            .expect("cluster");
        let router = cluster.router_addr();
        let mut options = PebbleOptions {
            http_port: router.port(),
            dns_ipv4: router.ip().to_string(),
            ..PebbleOptions::default()
        };
        pebble(&mut options);
        let pebble = Pebble::start(options).await.expect("pebble");
        let proxy = AcmeProxy::start(&pebble).await.expect("proxy");
        deploy::install_crds(&cluster, std::path::Path::new(binary)).expect("crds");
        let client = cluster.client();
        // Flags in `extra` replace the defaults of the same name.
        let defaults = controller_args(&cluster);
        let mut args: Vec<String> = defaults
            .chunks(2)
            .filter(|pair| !extra.contains(&pair[0].as_str()))
            .flatten()
            .cloned()
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        deploy::controller(&client, &args)
            .await
            .expect("controller");
        let env = Env {
            cluster,
            pebble,
            proxy,
            client,
        };
        env.cluster_issuer("pebble").await;
        env
    }

    pub async fn cluster_issuer(&self, name: &str) {
        self.cluster_issuer_with(name, json!({})).await;
    }

    /// A ClusterIssuer like `pebble` with `extra` merged into `spec.acme`.
    pub async fn cluster_issuer_with(&self, name: &str, extra: serde_json::Value) {
        let mut issuer = json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
            "metadata": {"name": name},
            "spec": {"acme": {"server": self.proxy.directory_url, "email": "ops@example.test",
                "caBundle": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, self.pebble.tls_ca_pem.as_bytes()),
                "privateKeySecretRef": {"name": format!("{name}-account")},
                "solvers": [{"http01": {"ingress": {"ingressClassName": self.cluster.ingress_class()}}}]}}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            issuer["spec"]["acme"][k] = v.clone();
        }
        Api::<ClusterIssuer>::all(self.client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(issuer).expect("issuer"),
            )
            .await
            .expect("create issuer");
    }

    pub async fn namespace(&self, name: &str) {
        let ns = json!({"metadata": {"name": name}});
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

    /// Every controller Pod's log, for failure messages.
    pub async fn logs(&self) -> String {
        let mut out = String::new();
        for pod in deploy::controller_pods(&self.client).await {
            out.push_str(&format!("--- {pod}\n"));
            out.push_str(&self.cluster.pod_log(deploy::NAMESPACE, &pod));
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
                panic!("timed out waiting for {what}\ncontroller log (tail):\n{tail}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
                    let ready = status.conditions.iter().flatten().any(|c| {
                        c.type_ == "Ready"
                            && c.status == certwright::api::meta::ConditionStatus::True
                    });
                    (ready && status.revision.unwrap_or(0) >= revision).then_some(cert)
                }
            },
        )
        .await
    }
}

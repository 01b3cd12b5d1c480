//! cert-manager v1.21 itself in the local cluster (its chart's CRDs, RBAC
//! and Deployment; its controllers and HTTP-01 solver Pods built from its
//! module), against the same pebble and Traefik as certwright, then the move
//! from it to certwright on the same cluster, with cert-manager's CRDs kept:
//!
//! 1. cert-manager registers an Issuer and a ClusterIssuer (RSA account keys,
//!    its own) and issues two Certificates, one with keystores: the smoke
//!    test that cert-manager really runs here.
//! 2. A third Certificate is left mid-issuance: its name resolves (for now)
//!    to an address nothing answers on, so cert-manager's self-check never
//!    passes and its Challenge waits, holding cert-manager's finalizer, with
//!    its solver Pod, Service and Ingress.
//! 3. cert-manager is stopped; the name is pointed back at the ingress;
//!    certwright is installed with its chart (its CRDs not applied).
//! 4. certwright keeps both accounts (same account URL at the CA), keeps
//!    the Secrets (no new request while they are valid), finishes the third
//!    issuance and removes cert-manager's solver resources and finalizer,
//!    then renews the keystore Certificate at the time cert-manager had
//!    scheduled, replacing every output key.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use certwright_testcluster::cert_manager::{self, Settings};
use certwright_testcluster::cluster::{ClusterOptions, LocalCluster};
use certwright_testcluster::deploy;
use certwright_testcluster::pebble::Pebble;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use common::{read_keystore, secret_data, verify_chain};

const NS: &str = "migrate";
/// The name whose issuance cert-manager is stopped in the middle of.
const LATE: &str = "late.migrate.test";
/// Where LATE points while cert-manager runs: a Service address with no
/// Service, so its self-check's connection is refused.
const NOWHERE: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 0, 99);
const PASSWORD: &str = "changeit";

fn api(client: &kube::Client, group: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural);
    Api::namespaced_with(client.clone(), NS, &ar)
}

fn certificates(client: &kube::Client) -> Api<DynamicObject> {
    api(client, "cert-manager.io", "Certificate", "certificates")
}

fn requests(client: &kube::Client) -> Api<DynamicObject> {
    api(
        client,
        "cert-manager.io",
        "CertificateRequest",
        "certificaterequests",
    )
}

fn challenges(client: &kube::Client) -> Api<DynamicObject> {
    api(client, "acme.cert-manager.io", "Challenge", "challenges")
}

/// Waits up to `secs` for `check`; on timeout fails naming `what`, with
/// `logs()` (the running controller's log tail).
async fn wait<T, F, Fut>(what: &str, secs: u64, logs: &dyn Fn() -> String, mut check: F) -> T
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
            panic!(
                "timed out waiting for {what}\nlog (tail):\n{}",
                tail(&logs())
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Certificate `name` once Ready=True, as JSON.
async fn ready(client: &kube::Client, name: &str, logs: &dyn Fn() -> String) -> Value {
    let api = certificates(client);
    wait(&format!("Certificate {name} Ready"), 120, logs, || {
        let api = api.clone();
        async move {
            let c = serde_json::to_value(api.get(name).await.ok()?).ok()?;
            let ready = c["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready.then_some(c)
        }
    })
    .await
}

/// The names of the CertificateRequests of Certificate `name`.
async fn request_names(client: &kube::Client, name: &str) -> Vec<String> {
    requests(client)
        .list(&ListParams::default())
        .await
        .expect("list requests")
        .items
        .into_iter()
        .filter(|r| {
            r.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("cert-manager.io/certificate-name"))
                == Some(&name.to_string())
        })
        .filter_map(|r| r.metadata.name)
        .collect()
}

/// The issuer's account URL (`status.acme.uri`).
async fn account_uri(issuer: &Api<DynamicObject>, name: &str) -> Option<String> {
    let i = serde_json::to_value(issuer.get(name).await.ok()?).ok()?;
    i["status"]["acme"]["uri"].as_str().map(str::to_string)
}

/// The Challenges (with their finalizers and state) and cert-manager
/// solver resources left in NS.
async fn leftovers(client: &kube::Client) -> Vec<String> {
    let mut out: Vec<String> = challenges(client)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            format!(
                "Challenge {} finalizers {:?} deleting {} state {}",
                c.metadata.name.unwrap_or_default(),
                c.metadata.finalizers.unwrap_or_default(),
                c.metadata.deletion_timestamp.is_some(),
                c.data["status"]["state"]
            )
        })
        .collect();
    out.extend(solver_names::<Pod>(client, "Pod").await);
    out.extend(solver_names::<Service>(client, "Service").await);
    out.extend(solver_names::<Ingress>(client, "Ingress").await);
    out
}

/// "`kind` name" for each of cert-manager's solver resources of `K` in NS
/// (a failed list is an entry too, so it never reads as none left).
async fn solver_names<K>(client: &kube::Client, kind: &str) -> Vec<String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let lp = ListParams::default().labels(cert_manager::SOLVER_LABEL);
    match Api::<K>::namespaced(client.clone(), NS).list(&lp).await {
        Ok(l) => l
            .items
            .iter()
            .map(|o| format!("{kind} {}", o.meta().name.clone().unwrap_or_default()))
            .collect(),
        Err(e) => vec![format!("{kind} list failed: {e}")],
    }
}

/// The last 60 lines of `log`.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// How many cert-manager solver resources (Pods, Services, Ingresses) are in NS.
async fn solver_resources(client: &kube::Client) -> usize {
    leftovers(client)
        .await
        .iter()
        .filter(|l| !l.starts_with("Challenge "))
        .count()
}

/// The logs of every Pod the kubelet ran in `namespace`.
fn pod_logs(cluster: &LocalCluster, namespace: &str) -> String {
    let prefix = format!("pod-{namespace}-");
    let mut out = String::new();
    for entry in std::fs::read_dir(cluster.log_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    out
}

fn acme_spec(pebble: &Pebble, cluster: &LocalCluster, key_secret: &str) -> Value {
    json!({"server": pebble.directory_url, "email": "ops@migrate.test",
        "caBundle": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pebble.tls_ca_pem.as_bytes()),
        "privateKeySecretRef": {"name": key_secret},
        "solvers": [{"http01": {"ingress": {"ingressClassName": cluster.ingress_class()}}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_issues_then_certwright_takes_over() {
    certwright::install_crypto_provider();
    let binary = env!("CARGO_BIN_EXE_certwright");
    let cluster: &'static LocalCluster = tokio::task::spawn_blocking(move || {
        let mut options = ClusterOptions::new(binary);
        options.certwright_crds = false;
        LocalCluster::shared_with(options)
    })
    .await
    .expect("the local cluster");
    let client = cluster.client();
    let mut options = cluster.pebble_options();
    // Five minutes: a renewal due a minute after issuance is seen in the run.
    options.certificate_validity_seconds = Some(300);
    let pebble = cluster
        .in_node(Pebble::start(options))
        .await
        .expect("pebble");
    let settings = Settings {
        dns: pebble.dns_address.clone(),
        extra_args: Vec::new(),
    };

    // 1. cert-manager, as its chart installs it.
    cert_manager::install(&client, &settings)
        .await
        .expect("cert-manager installed");
    let cm_logs = || pod_logs(cluster, cert_manager::NAMESPACE);
    common::namespace(&client, NS).await;
    let issuers = api(&client, "cert-manager.io", "Issuer", "issuers");
    let cluster_issuers = Api::<DynamicObject>::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cert-manager.io", "v1", "ClusterIssuer"),
            "clusterissuers",
        ),
    );
    deploy::apply(
        &client,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "ns-issuer", "namespace": NS},
        "spec": {"acme": acme_spec(&pebble, cluster, "ns-issuer-account")}}),
    )
    .await
    .expect("issuer");
    deploy::apply(
        &client,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": "cluster-issuer"},
        "spec": {"acme": acme_spec(&pebble, cluster, "cluster-issuer-account")}}),
    )
    .await
    .expect("cluster issuer");
    deploy::apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "keystore-password", "namespace": NS},
        "stringData": {"password": PASSWORD}}),
    )
    .await
    .expect("password");
    let certificate = |name: &str, host: &str, issuer: Value, extra: Value| {
        let mut spec =
            json!({"secretName": format!("{name}-tls"), "dnsNames": [host], "issuerRef": issuer});
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": name, "namespace": NS}, "spec": spec})
    };
    let keystores = json!({
        "pkcs12": {"create": true, "passwordSecretRef": {"name": "keystore-password", "key": "password"}},
        "jks": {"create": true, "passwordSecretRef": {"name": "keystore-password", "key": "password"}}});
    for cert in [
        certificate(
            "kept",
            "kept.migrate.test",
            json!({"name": "ns-issuer", "kind": "Issuer"}),
            // Renewed a minute after issuance (the certificate lives five).
            json!({"keystores": keystores, "renewBefore": "4m"}),
        ),
        certificate(
            "clustered",
            "clustered.migrate.test",
            json!({"name": "cluster-issuer", "kind": "ClusterIssuer"}),
            json!({}),
        ),
    ] {
        deploy::apply(&client, cert).await.expect("certificate");
    }
    let kept = ready(&client, "kept", &cm_logs).await;
    ready(&client, "clustered", &cm_logs).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    for (name, host) in [
        ("kept", "kept.migrate.test"),
        ("clustered", "clustered.migrate.test"),
    ] {
        let s = secrets.get(&format!("{name}-tls")).await.expect("secret");
        verify_chain(
            &String::from_utf8_lossy(&secret_data(&s, "tls.crt")),
            pebble.issuing_root_pem(),
            &[host],
        );
    }
    let cm_account = wait("both accounts registered", 30, &cm_logs, || async {
        Some((
            account_uri(&issuers, "ns-issuer").await?,
            account_uri(&cluster_issuers, "cluster-issuer").await?,
        ))
    })
    .await;
    // cert-manager's keys are RSA; the ClusterIssuer's is in its namespace.
    let cm_secrets: Api<Secret> = Api::namespaced(client.clone(), cert_manager::NAMESPACE);
    for key in [
        secrets.get("ns-issuer-account").await.expect("account key"),
        cm_secrets
            .get("cluster-issuer-account")
            .await
            .expect("cluster account key"),
    ] {
        let pem = String::from_utf8_lossy(&secret_data(&key, "tls.key")).into_owned();
        assert!(
            pem.contains("RSA PRIVATE KEY"),
            "cert-manager's RSA key: {pem:.40}"
        );
    }

    // 2. An issuance cert-manager cannot finish: its self-check is refused.
    cluster
        .in_node(pebble.set_address(LATE, Some(NOWHERE.into())))
        .await
        .expect("point the name nowhere");
    deploy::apply(
        &client,
        certificate(
            "late",
            LATE,
            json!({"name": "cluster-issuer", "kind": "ClusterIssuer"}),
            json!({}),
        ),
    )
    .await
    .expect("certificate");
    let held = wait(
        "cert-manager's Challenge presented, self-check failing",
        120,
        &cm_logs,
        || async {
            let list = challenges(&client)
                .list(&ListParams::default())
                .await
                .ok()?;
            let ch = serde_json::to_value(list.items.first()?).ok()?;
            let waiting = ch["status"]["presented"] == true
                && ch["status"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("self check"));
            (waiting && solver_resources(&client).await == 3).then_some(ch)
        },
    )
    .await;
    assert!(
        held["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "acme.cert-manager.io/finalizer")),
        "cert-manager's finalizer: {held}"
    );

    // 3. cert-manager stops; the name resolves to the ingress again.
    cert_manager::stop(&client)
        .await
        .expect("cert-manager stopped");
    let before: BTreeMap<&str, (Secret, Vec<String>)> = {
        let mut m = BTreeMap::new();
        for name in ["kept", "clustered"] {
            let s = secrets.get(&format!("{name}-tls")).await.expect("secret");
            m.insert(name, (s, request_names(&client, name).await));
        }
        m
    };
    let cm_renewal = kept["status"]["renewalTime"]
        .as_str()
        .expect("cert-manager scheduled the renewal")
        .to_string();
    cluster
        .in_node(pebble.set_address(LATE, None))
        .await
        .expect("point the name back");
    let mut args = common::env::controller_args(cluster);
    args.extend([
        "--cluster-resource-namespace".to_string(),
        cert_manager::NAMESPACE.to_string(),
    ]);
    deploy::controller(&client, &args)
        .await
        .expect("certwright installed");
    let cw_logs = || pod_logs(cluster, deploy::NAMESPACE);

    // 4. The interrupted issuance is finished, cert-manager's leftovers gone.
    ready(&client, "late", &cw_logs).await;
    let s = secrets.get("late-tls").await.expect("secret");
    verify_chain(
        &String::from_utf8_lossy(&secret_data(&s, "tls.crt")),
        pebble.issuing_root_pem(),
        &[LATE],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = leftovers(&client).await;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cert-manager's Challenge and solver resources were not removed within 60 s: {left:?}\nlog (tail):\n{}",
            tail(&cw_logs())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The accounts are cert-manager's, now under P-256 keys.
    let cw_account = wait("both accounts kept", 60, &cw_logs, || async {
        let rolled = secrets.get("ns-issuer-account").await.ok()?;
        let cluster_rolled = cm_secrets.get("cluster-issuer-account").await.ok()?;
        let p256 = |s: &Secret| {
            !String::from_utf8_lossy(&secret_data(s, "tls.key")).contains("RSA")
                && !secret_data(s, "certwright-previous-account.key").is_empty()
        };
        (p256(&rolled) && p256(&cluster_rolled)).then_some(())?;
        Some((
            account_uri(&issuers, "ns-issuer").await?,
            account_uri(&cluster_issuers, "cluster-issuer").await?,
        ))
    })
    .await;
    assert_eq!(cw_account, cm_account, "the same accounts at the CA");

    // The Secrets cert-manager wrote are kept: no new request, same bytes.
    for (name, (secret, requests)) in &before {
        let now = secrets.get(&format!("{name}-tls")).await.expect("secret");
        let changed: Vec<&String> = now
            .data
            .iter()
            .flatten()
            .filter(|(k, v)| secret.data.as_ref().and_then(|d| d.get(*k)) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        assert!(
            changed.is_empty()
                && now.data.as_ref().map(|d| d.len()) == secret.data.as_ref().map(|d| d.len()),
            "{name}: the Secret is kept as it was, but {changed:?} changed: {:?}",
            Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), NS)
                .list(&ListParams::default().fields("reason=SecretUpdated"))
                .await
                .map(|l| l.items.into_iter().map(|e| e.message).collect::<Vec<_>>())
        );
        assert_eq!(
            &request_names(&client, name).await,
            requests,
            "{name}: no new CertificateRequest"
        );
    }

    // Renewal at the time cert-manager scheduled, every output key replaced.
    let old = &before["kept"].0;
    let renewed = wait("kept renewed", 180, &cw_logs, || async {
        let s = secrets.get("kept-tls").await.ok()?;
        (secret_data(&s, "tls.crt") != secret_data(old, "tls.crt")).then_some(s)
    })
    .await;
    let kept_now = ready(&client, "kept", &cw_logs).await;
    let new_requests: Vec<String> = request_names(&client, "kept")
        .await
        .into_iter()
        .filter(|r| !before["kept"].1.contains(r))
        .collect();
    assert_eq!(new_requests.len(), 1, "one renewal: {new_requests:?}");
    let request = serde_json::to_value(
        requests(&client)
            .get(&new_requests[0])
            .await
            .expect("request"),
    )
    .expect("json");
    let created = request["metadata"]["creationTimestamp"]
        .as_str()
        .expect("created")
        .to_string();
    let at = |t: &str| t.parse::<jiff::Timestamp>().expect("RFC 3339").as_second();
    assert!(
        at(&created) >= at(&cm_renewal),
        "renewed at {created}, not before cert-manager's renewal time {cm_renewal}"
    );
    assert!(
        at(&created) <= at(&cm_renewal) + 30,
        "renewed at {created}, within moments of cert-manager's renewal time {cm_renewal}"
    );
    let chain = String::from_utf8_lossy(&secret_data(&renewed, "tls.crt")).into_owned();
    let parsed = verify_chain(&chain, pebble.issuing_root_pem(), &["kept.migrate.test"]);
    for key in ["tls.key", "keystore.p12", "keystore.jks"] {
        assert_ne!(
            secret_data(&renewed, key),
            secret_data(old, key),
            "{key} replaced at renewal"
        );
    }
    for kind in ["p12", "jks"] {
        let key = if kind == "p12" {
            "keystore.p12"
        } else {
            "keystore.jks"
        };
        let (_, stored) = read_keystore(kind, &secret_data(&renewed, key), PASSWORD);
        assert_eq!(
            stored.first().map(Vec::as_slice),
            Some(parsed[0].as_ref()),
            "{key} holds the renewed certificate"
        );
    }
    assert_eq!(
        kept_now["metadata"]["name"], "kept",
        "the Certificate is the one cert-manager issued"
    );
}

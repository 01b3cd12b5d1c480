//! The ingress-shim end to end: annotated Ingresses in the local cluster
//! get Certificates that pebble really issues, Traefik serves their
//! Secrets over HTTPS, and each change of the Ingress is followed as
//! cert-manager's ingress-shim follows it.

use crate::common;

use std::sync::Arc;

use certwright::api::{Certificate, Challenge};
use certwright_testcluster::deploy;
use common::env::Env;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Resource, ResourceExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

/// A backend Service for the Ingresses of `ns` with one endpoint (Traefik
/// makes no router for a Service without endpoints; nothing need answer
/// there for TLS to be served).
async fn backend(env: &Env, ns: &str) {
    let objects = [
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "site", "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "site", "namespace": ns,
                "labels": {"kubernetes.io/service-name": "site", "endpointslice.kubernetes.io/managed-by": "tests"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 9}],
            "endpoints": [{"addresses": ["10.244.0.1"], "conditions": {"ready": true}}]}),
    ];
    for object in objects {
        deploy::apply(&env.client, object).await.expect("backend");
    }
}

/// An Ingress `name` in `ns` with `annotations`, a TLS entry per
/// (secret, hosts) in `tls`, and a rule per host to the backend.
fn ingress(env: &Env, ns: &str, name: &str, annotations: Value, tls: &[(&str, &[&str])]) -> Value {
    let rules: Vec<Value> = tls
        .iter()
        .flat_map(|(_, hosts)| hosts.iter())
        .map(|host| {
            json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "site", "port": {"number": 80}}}}]}})
        })
        .collect();
    let tls: Vec<Value> = tls
        .iter()
        .map(|(secret, hosts)| json!({"secretName": secret, "hosts": hosts}))
        .collect();
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {"ingressClassName": env.cluster.ingress_class(), "tls": tls, "rules": rules}})
}

/// The leaf certificate (DER) at the start of a Secret's `tls.crt`.
fn secret_leaf(secret: &Secret) -> Vec<u8> {
    let pem = common::leaf_pem(secret);
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

/// The leaf Traefik serves for `host` over HTTPS, when it chains to
/// `root` and is valid for `host`.
async fn served_leaf(env: &Env, root: &str, host: &str) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root.as_bytes()).ok()?)
        .ok()?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = env.cluster.ingress_tls_node_addr();
    let name = ServerName::try_from(host.to_string()).ok()?;
    env.cluster
        .in_node(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
            let handshake = connector.connect(name, tcp);
            let tls = tokio::time::timeout(std::time::Duration::from_secs(5), handshake)
                .await
                .ok()?
                .ok()?;
            Some(tls.get_ref().1.peer_certificates()?.first()?.to_vec())
        })
        .await
}

/// Waits until Traefik serves the certificate of Secret `ns/secret` for `host`.
async fn traefik_serves(env: &Env, ns: &str, secret: &str, host: &str) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ns);
    let root = env.pebble.issuing_root_pem().to_string();
    env.wait(
        &format!("Traefik to serve Secret {ns}/{secret} for {host}"),
        60,
        || {
            let (secrets, root) = (secrets.clone(), root.clone());
            async move {
                let want = secret_leaf(&secrets.get(secret).await.ok()?);
                (served_leaf(env, &root, host).await? == want).then_some(())
            }
        },
    )
    .await;
}

/// Waits for an event `reason` on the Ingress whose message
/// holds `needle`; returns the message.
async fn ingress_event(env: &Env, ns: &str, name: &str, reason: &str, needle: &str) -> String {
    env.wait(
        &format!("a {reason} event on Ingress {ns}/{name} saying {needle:?}"),
        30,
        || async {
            env.events(
                ns,
                &format!("involvedObject.kind=Ingress,involvedObject.name={name}"),
            )
            .await
            .into_iter()
            .find(|(r, m)| r == reason && m.contains(needle))
            .map(|(_, m)| m)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotated_ingress_is_all_a_user_writes() {
    let env = Env::start(|_| {}, &[]).await;
    let ns = "shop";
    env.namespace(ns).await;
    backend(&env, ns).await;
    let certificates: Api<Certificate> = Api::namespaced(env.client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ns);
    let issuer = json!({"cert-manager.io/cluster-issuer": "pebble"});
    let apply =
        |object: Value| async { deploy::apply(&env.client, object).await.expect("ingress") };

    // The annotation alone: a Certificate named after the Secret, owned by
    // the Ingress, issued, and served by Traefik.
    apply(ingress(
        &env,
        ns,
        "shop",
        issuer.clone(),
        &[("shop-tls", &["shop.example.test"])],
    ))
    .await;
    let cert = env.certificate_ready(ns, "shop-tls", 1).await;
    let shop: Ingress = Api::namespaced(env.client.clone(), ns)
        .get("shop")
        .await
        .expect("ingress");
    let owner = &cert.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Ingress", "shop", Some(true))
    );
    assert_eq!(Some(&owner.uid), shop.meta().uid.as_ref());
    assert_eq!(
        cert.spec.dns_names.as_deref(),
        Some(&["shop.example.test".to_string()][..])
    );
    assert_eq!(cert.spec.issuer_ref.kind.as_deref(), Some("ClusterIssuer"));
    ingress_event(&env, ns, "shop", "CreateCertificate", "\"shop-tls\"").await;
    traefik_serves(&env, ns, "shop-tls", "shop.example.test").await;

    // A changed host re-issues; Traefik serves the new certificate for it.
    apply(ingress(
        &env,
        ns,
        "shop",
        issuer.clone(),
        &[("shop-tls", &["www.shop.example.test"])],
    ))
    .await;
    let cert = env.certificate_ready(ns, "shop-tls", 2).await;
    assert_eq!(
        cert.spec.dns_names.as_deref(),
        Some(&["www.shop.example.test".to_string()][..])
    );
    traefik_serves(&env, ns, "shop-tls", "www.shop.example.test").await;

    // A second TLS entry adds a second Certificate; taking it out again
    // deletes that Certificate and keeps its Secret.
    let two: [(&str, &[&str]); 2] = [
        ("shop-tls", &["www.shop.example.test"]),
        ("api-tls", &["api.shop.example.test"]),
    ];
    apply(ingress(&env, ns, "shop", issuer.clone(), &two)).await;
    env.certificate_ready(ns, "api-tls", 1).await;
    traefik_serves(&env, ns, "api-tls", "api.shop.example.test").await;
    apply(ingress(&env, ns, "shop", issuer.clone(), &two[..1])).await;
    env.wait("Certificate api-tls to be deleted", 30, || async {
        certificates
            .get_opt("api-tls")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    ingress_event(&env, ns, "shop", "DeleteCertificate", "\"api-tls\"").await;
    assert!(
        secrets.get_opt("api-tls").await.expect("get").is_some(),
        "the Secret stays"
    );

    // Only kubernetes.io/tls-acme, and this controller has no default
    // issuer: a Warning that says what to set, and no Certificate.
    let auto = json!({"kubernetes.io/tls-acme": "true"});
    apply(ingress(
        &env,
        ns,
        "auto",
        auto,
        &[("auto-tls", &["auto.shop.example.test"])],
    ))
    .await;
    ingress_event(&env, ns, "auto", "BadConfig", "--default-issuer-name").await;
    assert!(
        certificates
            .get_opt("auto-tls")
            .await
            .expect("get")
            .is_none()
    );

    // The annotation removed: the Certificate is no longer managed (a new
    // host is not followed) and the Secret stays.
    let generation = certificates
        .get("shop-tls")
        .await
        .expect("cert")
        .metadata
        .generation;
    apply(ingress(
        &env,
        ns,
        "shop",
        json!({}),
        &[("shop-tls", &["other.shop.example.test"])],
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let kept = certificates.get("shop-tls").await.expect("cert");
    assert_eq!(
        kept.metadata.generation, generation,
        "unmanaged: not changed"
    );
    assert_eq!(
        kept.spec.dns_names.as_deref(),
        Some(&["www.shop.example.test".to_string()][..])
    );

    // The Ingress deleted: its Certificate goes with it (the garbage
    // collector follows the owner reference) and the Secret stays.
    Api::<Ingress>::namespaced(env.client.clone(), ns)
        .delete("shop", &DeleteParams::default())
        .await
        .expect("delete the Ingress");
    env.wait(
        "Certificate shop-tls to go with its Ingress",
        60,
        || async {
            certificates
                .get_opt("shop-tls")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        secrets.get_opt("shop-tls").await.expect("get").is_some(),
        "the Secret stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaced_issuer_the_default_issuer_edit_in_place_and_bad_values() {
    let env = Env::start(|_| {}, &["--default-issuer-name", "local"]).await;
    let ns = "team";
    env.namespace(ns).await;
    backend(&env, ns).await;
    env.issuer_with(ns, "local", json!({})).await;
    let certificates: Api<Certificate> = Api::namespaced(env.client.clone(), ns);
    let apply =
        |object: Value| async { deploy::apply(&env.client, object).await.expect("ingress") };

    // kubernetes.io/tls-acme with the default issuer (an Issuer here).
    let auto = json!({"kubernetes.io/tls-acme": "true"});
    apply(ingress(
        &env,
        ns,
        "auto",
        auto,
        &[("auto-tls", &["auto.team.example.test"])],
    ))
    .await;
    let cert = env.certificate_ready(ns, "auto-tls", 1).await;
    assert_eq!(cert.spec.issuer_ref.name, "local");
    assert_eq!(cert.spec.issuer_ref.kind.as_deref(), Some("Issuer"));

    // cert-manager.io/issuer names the Issuer in the Ingress's namespace;
    // edit-in-place makes the Challenge route through this very Ingress.
    let named = json!({"cert-manager.io/issuer": "local",
        "acme.cert-manager.io/http01-edit-in-place": "true",
        "cert-manager.io/private-key-algorithm": "ECDSA",
        "cert-manager.io/duration": "720h"});
    apply(ingress(
        &env,
        ns,
        "site",
        named.clone(),
        &[("site-tls", &["site.team.example.test"])],
    ))
    .await;
    let challenge = env
        .wait("the site's Challenge", 30, || async {
            Api::<Challenge>::namespaced(env.client.clone(), ns)
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|c| c.spec.dns_name == "site.team.example.test")
        })
        .await;
    let solver = challenge
        .spec
        .solver
        .http01
        .and_then(|h| h.ingress)
        .expect("ingress solver");
    assert_eq!(solver.name.as_deref(), Some("site"), "edited in place");
    let cert = env.certificate_ready(ns, "site-tls", 1).await;
    assert_eq!(
        cert.annotations()
            .get("acme.cert-manager.io/http01-override-ingress-name")
            .map(String::as_str),
        Some("site")
    );
    assert_eq!(cert.spec.duration.as_deref(), Some("720h0m0s"));
    traefik_serves(&env, ns, "site-tls", "site.team.example.test").await;

    // A bad value on a managed Ingress: a Warning naming it, and the
    // Certificate unchanged.
    let generation = cert.metadata.generation;
    let mut bad = named.clone();
    bad["cert-manager.io/duration"] = json!("30m");
    apply(ingress(
        &env,
        ns,
        "site",
        bad,
        &[("site-tls", &["new.team.example.test"])],
    ))
    .await;
    let why = ingress_event(&env, ns, "site", "BadConfig", "cert-manager.io/duration").await;
    assert!(why.contains("greater than or equal to 1h0m0s"), "{why}");
    let kept = certificates.get("site-tls").await.expect("cert");
    assert_eq!(kept.metadata.generation, generation);

    // A value only the Certificate's own validation refuses (renewBefore
    // longer than the duration): the API server's words in the Warning.
    let refused = json!({"cert-manager.io/issuer": "local",
        "cert-manager.io/duration": "2h", "cert-manager.io/renew-before": "3h"});
    apply(ingress(
        &env,
        ns,
        "refused",
        refused,
        &[("refused-tls", &["refused.team.example.test"])],
    ))
    .await;
    let why = ingress_event(
        &env,
        ns,
        "refused",
        "BadConfig",
        "renewBefore must be shorter than duration",
    )
    .await;
    assert!(why.contains("refused-tls"), "{why}");
    assert!(
        certificates
            .get_opt("refused-tls")
            .await
            .expect("get")
            .is_none()
    );
}

//! Issuance end to end: certwright runs as a Pod of the local cluster,
//! pebble validates every token through the ingress router, and the
//! resulting Secret is checked like a user would check it.

use certwright::api::{CertificateRequest, Challenge, Order};
use certwright::pki::cert::parse_chain;
use certwright::pki::keys::PrivateKey;
use k8s_openapi::api::core::v1::{Event, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use serde_json::json;

mod common;

use common::env::Env;

fn secret_data(secret: &Secret, key: &str) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_name_certificate_is_issued_and_everything_temporary_is_cleaned_up() {
    let env = Env::start(|_| {}, &[]).await;
    env.namespace("apps").await;
    env.certificate(
        "apps",
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["web.example.test", "www.example.test"]}),
    )
    .await;
    let cert = env.certificate_ready("apps", "web", 1).await;
    let status = cert.status.clone().expect("status");
    assert_eq!(status.revision, Some(1));
    assert!(status.not_after.is_some() && status.renewal_time.is_some());

    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "apps");
    let secret = secrets.get("web-tls").await.expect("secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let chain = String::from_utf8(secret_data(&secret, "tls.crt")).expect("utf8");
    let root = env.pebble.issuing_root_pem().await.expect("root");
    common::verify_chain(&chain, &root, &["web.example.test", "www.example.test"]);
    let leaf = parse_chain(chain.as_bytes()).expect("leaf");
    let mut names = leaf.dns_names.clone();
    names.sort();
    assert_eq!(names, ["web.example.test", "www.example.test"]);
    let key = PrivateKey::from_pem(&secret_data(&secret, "tls.key")).expect("key");
    assert_eq!(key.public_key_info().expect("spki"), leaf.public_key_info);
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations["cert-manager.io/certificate-name"], "web");
    assert_eq!(annotations["cert-manager.io/issuer-kind"], "ClusterIssuer");
    assert_eq!(
        annotations["cert-manager.io/alt-names"],
        "web.example.test,www.example.test"
    );

    let requests: Api<CertificateRequest> = Api::namespaced(env.client.clone(), "apps");
    let cr = requests.get("web-1").await.expect("request web-1");
    let cr_conditions = cr.status.and_then(|s| s.conditions).unwrap_or_default();
    for (type_, reason) in [("Approved", "cert-manager.io"), ("Ready", "Issued")] {
        assert!(
            cr_conditions
                .iter()
                .any(|c| c.type_ == type_ && c.reason.as_deref() == Some(reason)),
            "{type_}/{reason} in {cr_conditions:?}"
        );
    }
    let orders: Api<Order> = Api::namespaced(env.client.clone(), "apps");
    let listed = orders.list(&ListParams::default()).await.expect("orders");
    let evs = Api::<Event>::namespaced(env.client.clone(), "apps")
        .list(&ListParams::default())
        .await
        .expect("events");
    let evs: Vec<_> = evs
        .items
        .iter()
        .map(|e| {
            (
                e.involved_object.name.clone(),
                e.reason.clone(),
                e.message.clone(),
            )
        })
        .collect();
    let names: Vec<_> = listed
        .items
        .iter()
        .map(|o| {
            (
                o.metadata.name.clone(),
                o.metadata.owner_references.clone(),
                o.status.clone().and_then(|s| s.state),
            )
        })
        .collect();
    assert_eq!(
        listed.items.len(),
        1,
        "one Order for one request: {names:?} {evs:#?}"
    );
    let order_status = listed.items[0].status.clone().expect("order status");
    assert_eq!(
        order_status.state,
        Some(certwright::api::order::AcmeState::Valid)
    );
    assert_eq!(order_status.authorizations.map(|a| a.len()), Some(2));

    // Everything temporary goes away.
    env.wait("temporary resources removed", 30, || {
        let client = env.client.clone();
        async move {
            let temp = Api::<Secret>::namespaced(client.clone(), "apps")
                .list(&ListParams::default().labels("cert-manager.io/next-private-key=true"))
                .await
                .ok()?;
            let challenges = Api::<Challenge>::namespaced(client.clone(), "apps")
                .list(&ListParams::default())
                .await
                .ok()?;
            let ingresses = Api::<Ingress>::namespaced(client.clone(), "apps")
                .list(&ListParams::default())
                .await
                .ok()?;
            let solver = Api::<Service>::namespaced(client.clone(), "apps")
                .get_opt("certwright-solver")
                .await
                .ok()?;
            let left = [
                ("temporary Secrets", temp.items.len()),
                ("Challenges", challenges.items.len()),
                ("Ingresses", ingresses.items.len()),
                ("solver Services", usize::from(solver.is_some())),
            ];
            if left.iter().any(|(_, n)| *n > 0) {
                eprintln!("still there: {left:?}");
                return None;
            }
            Some(())
        }
    })
    .await;

    // The events users look for, in order.
    let events: Api<Event> = Api::namespaced(env.client.clone(), "apps");
    let listed = events
        .list(
            &ListParams::default()
                .fields("involvedObject.name=web,involvedObject.kind=Certificate"),
        )
        .await
        .expect("events");
    let seen: Vec<(String, String)> = listed
        .items
        .iter()
        .map(|e| {
            (
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default(),
            )
        })
        .collect();
    let expected = [
        ("Issuing", "Issuing certificate as Secret does not exist"),
        (
            "Generated",
            "Stored new private key in temporary Secret resource",
        ),
        (
            "Requested",
            "Created new CertificateRequest resource \"web-1\"",
        ),
        ("Issuing", "The certificate has been successfully issued"),
    ];
    for (reason, message) in expected {
        assert!(
            seen.iter()
                .any(|(r, m)| r == reason && m.starts_with(message)),
            "event {reason}: {message} in {seen:?}"
        );
    }
}

//! The Certificate trigger and key manager against the API emulator: a new
//! Certificate gets Issuing=True ("Issuing certificate as Secret does not
//! exist"), a temporary key Secret of the requested kind owned by it and
//! named in status.nextPrivateKeySecretName, and both events; a restarted
//! controller does not make a second key.

use std::sync::Arc;
use std::time::Duration;

use certwright::api::Certificate;
use certwright::pki::keys::{KeyKind, PrivateKey};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

mod common;
use common::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_starts_issuing_with_a_fresh_key() {
    certwright::install_crypto_provider();
    let api = common::emulator_with_crds().await;
    let client = api.client();
    let ctx = Arc::new(certwright::context::Context {
        client: client.clone(),
        cluster_resource_namespace: "certwright".into(),
    });
    let controller = tokio::spawn(certwright::certificates::controllers::run(ctx.clone()));

    let certs: Api<Certificate> = Api::namespaced(client.clone(), "default");
    let cert = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "web"},
        "spec": {"secretName": "web-tls", "dnsNames": ["web.example.test"], "issuerRef": {"name": "le", "kind": "ClusterIssuer"},
                 "privateKey": {"algorithm": "ECDSA", "size": 384}}});
    certs
        .create(
            &PostParams::default(),
            &serde_json::from_value(cert).expect("cert"),
        )
        .await
        .expect("create");

    let (temp_name, issuing) = eventually("Issuing and a next private key", || async {
        let status = certs.get("web").await.ok()?.status?;
        let issuing = status
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Issuing")?;
        Some((status.next_private_key_secret_name?, issuing))
    })
    .await;
    assert_eq!(issuing.reason.as_deref(), Some("DoesNotExist"));
    assert_eq!(
        issuing.message.as_deref(),
        Some("Issuing certificate as Secret does not exist")
    );
    assert!(
        temp_name.starts_with("web-") && temp_name.len() == "web-".len() + 5,
        "{temp_name}"
    );

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let temp = secrets.get(&temp_name).await.expect("temporary Secret");
    assert_eq!(
        temp.metadata
            .labels
            .unwrap_or_default()
            .get("cert-manager.io/next-private-key")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        temp.metadata.owner_references.unwrap_or_default()[0].kind,
        "Certificate"
    );
    let key = PrivateKey::from_pem(&temp.data.expect("data")["tls.key"].0).expect("key parses");
    assert_eq!(key.kind, KeyKind::Ecdsa(384));

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let notes = eventually("both events", || async {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=web"))
            .await
            .ok()?;
        let notes: Vec<String> = list.items.into_iter().filter_map(|e| e.message).collect();
        (notes.len() >= 2).then_some(notes)
    })
    .await;
    assert!(
        notes.contains(&"Issuing certificate as Secret does not exist".to_string()),
        "{notes:?}"
    );
    assert!(
        notes.contains(&format!(
            "Stored new private key in temporary Secret resource {temp_name:?}"
        )),
        "{notes:?}"
    );

    // A restart adopts the key instead of generating another.
    controller.abort();
    let again = tokio::spawn(certwright::certificates::controllers::run(ctx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let temps = secrets
        .list(&ListParams::default().labels("cert-manager.io/next-private-key=true"))
        .await
        .expect("list");
    assert_eq!(temps.items.len(), 1, "one temporary key Secret");
    assert_eq!(
        certs
            .get("web")
            .await
            .expect("get")
            .status
            .expect("status")
            .next_private_key_secret_name,
        Some(temp_name)
    );
    again.abort();
}

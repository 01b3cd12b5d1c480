//! The Certificate trigger and key manager against the real API server: a new
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
    let (_, client) = common::control_plane_with_crds().await;
    let _turn = common::turn().await;
    let ns = "cert-trigger";
    common::namespace(&client, ns).await;

    let ctx = Arc::new(certwright::runtime::context::Context::new(
        client.clone(),
        "certwright",
    ));
    let controller = tokio::spawn(certwright::controllers::certificates::run(ctx.clone()));

    let certs: Api<Certificate> = Api::namespaced(client.clone(), ns);
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

    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
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

    let events: Api<Event> = Api::namespaced(client.clone(), ns);
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
    let again = tokio::spawn(certwright::controllers::certificates::run(ctx));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_manager_keeps_one_request_for_the_current_spec_and_key() {
    use certwright::api::CertificateRequest;
    use kube::api::{Patch, PatchParams};
    certwright::install_crypto_provider();
    let (_, client) = common::control_plane_with_crds().await;
    let _turn = common::turn().await;
    let ns = "cert-requests";
    common::namespace(&client, ns).await;

    let ctx = Arc::new(certwright::runtime::context::Context::new(
        client.clone(),
        "certwright",
    ));
    let keys = tokio::spawn(certwright::controllers::certificates::run(ctx));

    let certs: Api<Certificate> = Api::namespaced(client.clone(), ns);
    let cert = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "api", "labels": {"team": "a"}},
        "spec": {"secretName": "api-tls", "dnsNames": ["api.example.test"], "issuerRef": {"name": "le", "kind": "ClusterIssuer"}}});
    certs
        .create(
            &PostParams::default(),
            &serde_json::from_value(cert).expect("cert"),
        )
        .await
        .expect("create");
    let requests: Api<CertificateRequest> = Api::namespaced(client.clone(), ns);
    let request = eventually("CertificateRequest api-1", || async {
        requests.get("api-1").await.ok()
    })
    .await;
    let key_secret = certs
        .get("api")
        .await
        .expect("cert")
        .status
        .and_then(|s| s.next_private_key_secret_name)
        .expect("next key");
    let annotations = request.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("cert-manager.io/certificate-revision")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        annotations.get("cert-manager.io/private-key-secret-name"),
        Some(&key_secret)
    );
    assert_eq!(
        request
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("a")
    );
    assert_eq!(
        request
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()[0]
            .name,
        "api"
    );
    assert_eq!(
        request.spec.issuer_ref.kind.as_deref(),
        Some("ClusterIssuer")
    );
    let key_pem = Api::<Secret>::namespaced(client.clone(), ns)
        .get(&key_secret)
        .await
        .expect("key")
        .data
        .expect("data")["tls.key"]
        .0
        .clone();
    let key = PrivateKey::from_pem(&key_pem).expect("key");
    assert_eq!(key.kind, KeyKind::Rsa(2048), "RSA 2048 by default");
    let csr_der = pem::parse(&request.spec.request.0)
        .expect("CSR PEM")
        .contents()
        .to_vec();
    let (_, csr) = <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&csr_der).expect("CSR");
    assert_eq!(
        csr.certification_request_info.subject_pki.raw,
        key.public_key_info().expect("spki").as_slice(),
        "signed by the next key"
    );

    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually("the Requested event", || async {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=api"))
            .await
            .ok()?;
        list.items
            .into_iter()
            .any(|e| {
                e.message.as_deref() == Some("Created new CertificateRequest resource \"api-1\"")
            })
            .then_some(())
    })
    .await;

    // A spec change while issuing replaces the request.
    let uid = request.metadata.uid.clone();
    certs
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"dnsNames": ["api.example.test", "www.api.example.test"]}}),
            ),
        )
        .await
        .expect("patch");
    let replaced = eventually("a new api-1", || async {
        requests
            .get("api-1")
            .await
            .ok()
            .filter(|r| r.metadata.uid != uid)
    })
    .await;
    let der = pem::parse(&replaced.spec.request.0)
        .expect("pem")
        .contents()
        .to_vec();
    let (_, csr) = <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&der).expect("CSR");
    let mut names = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            names.extend(san.general_names.iter().map(|n| n.to_string()));
        }
    }
    assert_eq!(
        names,
        ["DNSName(api.example.test)", "DNSName(www.api.example.test)"],
        "the new request has the new names"
    );
    // Every other field that goes into the CSR replaces it too (these
    // were missed: the stale request completed, then it re-issued).
    type Check = fn(&certwright::pki::csr::ParsedCsr) -> bool;
    let edits: [(&str, serde_json::Value, Check); 6] = [
        (
            "commonName",
            json!({"commonName": "www.api.example.test"}),
            |c| c.common_name.as_deref() == Some("www.api.example.test"),
        ),
        ("ipAddresses", json!({"ipAddresses": ["192.0.2.10"]}), |c| {
            c.ip_addresses == ["192.0.2.10"]
        }),
        (
            "uris",
            json!({"uris": ["spiffe://example.test/api"]}),
            |c| c.uris == ["spiffe://example.test/api"],
        ),
        (
            "emailAddresses",
            json!({"emailAddresses": ["ops@example.test"]}),
            |c| c.email_addresses == ["ops@example.test"],
        ),
        (
            "subject",
            json!({"subject": {"organizations": ["Example"]}}),
            |c| c.subject == [("2.5.4.10".to_string(), "Example".to_string())],
        ),
        ("isCA", json!({"isCA": true}), |c| c.is_ca),
    ];
    let mut uid = replaced.metadata.uid.clone();
    for (field, spec, check) in edits {
        certs
            .patch(
                "api",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .expect("patch");
        let replaced = eventually(&format!("api-1 replaced for {field}"), || async {
            requests
                .get("api-1")
                .await
                .ok()
                .filter(|r| r.metadata.uid != uid)
        })
        .await;
        let parsed = certwright::pki::csr::parse(&replaced.spec.request.0).expect("CSR");
        assert!(check(&parsed), "{field}: {parsed:?}");
        uid = replaced.metadata.uid.clone();
    }
    // And an unchanged spec keeps its request.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = requests.get("api-1").await.expect("request");
    assert_eq!(kept.metadata.uid, uid, "no change, no new request");
    let list = requests.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.len(), 1, "exactly one request");
    keys.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_no_csr_can_carry_fails_with_a_condition_not_only_an_event() {
    use certwright::api::CertificateRequest;
    certwright::install_crypto_provider();
    let (_, client) = common::control_plane_with_crds().await;
    let _turn = common::turn().await;
    let ns = "cert-uncarried";
    common::namespace(&client, ns).await;
    let ctx = Arc::new(certwright::runtime::context::Context::new(
        client.clone(),
        "certwright",
    ));
    let controllers = tokio::spawn(certwright::controllers::certificates::run(ctx));
    let certs: Api<Certificate> = Api::namespaced(client.clone(), ns);
    let specs = [
        (
            "constrained",
            json!({"dnsNames": ["a.example.test"], "isCA": true,
                   "nameConstraints": {"critical": true, "permitted": {"dnsDomains": ["example.test"]}}}),
            "spec.nameConstraints (only CA certificates carry them, and ACME CAs issue none) is not supported by certwright",
        ),
        (
            "other-name",
            json!({"dnsNames": ["a.example.test"], "otherNames": [{"oid": "not.an.oid", "utf8Value": "x"}]}),
            "spec.otherNames.oid: \"not.an.oid\" is not valid",
        ),
    ];
    for (name, extra, _) in &specs {
        let mut spec = json!({"secretName": format!("{name}-tls"), "issuerRef": {"name": "le", "kind": "ClusterIssuer"}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        let cert = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": name}, "spec": spec});
        certs
            .create(
                &PostParams::default(),
                &serde_json::from_value(cert).expect("cert"),
            )
            .await
            .expect("create");
    }
    for (name, _, expected) in specs {
        let (message, attempts) = eventually(&format!("{name} to fail"), || async {
            let status = certs.get(name).await.ok()?.status?;
            let issuing = status
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Issuing" && c.reason.as_deref() == Some("Failed"))?;
            Some((issuing.message?, status.failed_issuance_attempts?))
        })
        .await;
        assert!(
            message.starts_with("The Certificate's spec cannot be turned into a CSR: ")
                && message.contains(expected),
            "{name}: {message}"
        );
        assert_eq!(attempts, 1, "{name}: one failure, then the backoff");
    }
    let requests = Api::<CertificateRequest>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("requests");
    assert!(requests.items.is_empty(), "no request was made");
    controllers.abort();
}

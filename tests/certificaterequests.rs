//! CertificateRequests for an ACME issuer against the real API server:
//! approved, answered by one Order built from the CSR, Pending while the
//! Order works, Issued with the chain when it is valid, Failed with the
//! Order's reason when it is not; requests for other issuers untouched.

use std::sync::Arc;

use certwright::api::{CertificateRequest, Order};
use certwright::pki::keys::{KeyKind, PrivateKey};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

mod common;
use common::eventually;

fn request(name: &str, issuer: &str, dns: &[&str]) -> CertificateRequest {
    let key = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
    let spec = certwright::api::CertificateSpec {
        dns_names: Some(dns.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let csr = certwright::pki::csr::build(&spec, &key).expect("csr");
    serde_json::from_value(json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest", "metadata": {"name": name},
        "spec": {"issuerRef": {"name": issuer, "kind": "ClusterIssuer"},
                 "request": serde_json::to_value(k8s_openapi::ByteString(csr.pem.into_bytes())).expect("b64")}}))
    .expect("request")
}

fn ready(cr: &CertificateRequest) -> Option<(String, String, String)> {
    let c = cr
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        serde_json::to_value(c.status).ok()?.as_str()?.to_string(),
        c.reason.clone()?,
        c.message.clone()?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_requests_become_orders_and_come_back_issued_or_failed() {
    certwright::install_crypto_provider();
    let (_, client) = common::control_plane_with_crds().await;
    let _turn = common::turn().await;
    let ns = "requests";
    common::namespace(&client, ns).await;

    let issuers: Api<certwright::api::ClusterIssuer> = Api::all(client.clone());
    for (name, spec) in [
        (
            "le",
            json!({"acme": {"server": "https://acme.example/dir", "profile": "tlsserver", "privateKeySecretRef": {"name": "k"}, "solvers": [{"http01": {"ingress": {}}}]}}),
        ),
        ("ca", json!({"ca": {"secretName": "ca"}})),
    ] {
        let issuer: certwright::api::ClusterIssuer =
            serde_json::from_value(json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": name}, "spec": spec})).expect("issuer");
        issuers
            .create(&PostParams::default(), &issuer)
            .await
            .expect("issuer");
    }
    let ctx = Arc::new(certwright::runtime::context::Context::new(
        client.clone(),
        "certwright",
    ));
    let controller = tokio::spawn(certwright::controllers::certificaterequests::run(ctx));
    let requests: Api<CertificateRequest> = Api::namespaced(client.clone(), ns);
    let orders: Api<Order> = Api::namespaced(client.clone(), ns);
    for (name, issuer) in [("ok-1", "le"), ("bad-1", "le"), ("other-1", "ca")] {
        requests
            .create(
                &PostParams::default(),
                &request(name, issuer, &["a.example.test", "b.example.test"]),
            )
            .await
            .expect("create");
    }

    let pending = eventually("ok-1 pending on its order", || async {
        ready(&requests.get("ok-1").await.ok()?).filter(|r| r.1 == "Pending")
    })
    .await;
    let ok = requests.get("ok-1").await.expect("get");
    let approved = ok
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Approved").cloned())
        .expect("Approved");
    assert_eq!(approved.reason.as_deref(), Some("cert-manager.io"));
    let order_name = orders
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|o| o.name_any())
        .find(|n| n.starts_with("ok-1-"))
        .expect("order");
    assert!(
        pending.2.starts_with(&format!(
            "Waiting on certificate issuance from order {ns}/{order_name}"
        )),
        "{pending:?}"
    );
    let order = orders.get(&order_name).await.expect("order");
    assert_eq!(
        order.spec.dns_names,
        Some(vec![
            "a.example.test".to_string(),
            "b.example.test".to_string()
        ])
    );
    assert_eq!(order.spec.profile.as_deref(), Some("tlsserver"));
    assert_eq!(
        order.metadata.owner_references.unwrap_or_default()[0].name,
        "ok-1"
    );

    let chain = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let valid = json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Order", "status": {"state": "valid",
        "certificate": serde_json::to_value(k8s_openapi::ByteString(chain.as_bytes().to_vec())).expect("b64")}});
    orders
        .patch_status(
            &order_name,
            &PatchParams::apply("test-order-controller"),
            &Patch::Apply(valid),
        )
        .await
        .expect("order valid");
    let issued = eventually("ok-1 issued", || async {
        ready(&requests.get("ok-1").await.ok()?).filter(|r| r.0 == "True")
    })
    .await;
    assert_eq!(
        (issued.1.as_str(), issued.2.as_str()),
        ("Issued", "Certificate fetched from issuer successfully")
    );
    assert_eq!(
        requests
            .get("ok-1")
            .await
            .expect("get")
            .status
            .and_then(|s| s.certificate)
            .map(|c| c.0),
        Some(chain.as_bytes().to_vec())
    );

    let bad_order = eventually("bad-1's order", || async {
        orders
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .map(|o| o.name_any())
            .find(|n| n.starts_with("bad-1-"))
    })
    .await;
    let errored = json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Order", "status": {"state": "invalid",
        "reason": "400 urn:ietf:params:acme:error:rejectedIdentifier: name is blocked"}});
    orders
        .patch_status(
            &bad_order,
            &PatchParams::apply("test-order-controller"),
            &Patch::Apply(errored),
        )
        .await
        .expect("order invalid");
    let failed = eventually("bad-1 failed", || async {
        ready(&requests.get("bad-1").await.ok()?).filter(|r| r.1 == "Failed")
    })
    .await;
    assert!(
        failed.2.contains(
            "order is in \"invalid\" state: 400 urn:ietf:params:acme:error:rejectedIdentifier"
        ),
        "{failed:?}"
    );
    assert!(
        requests
            .get("bad-1")
            .await
            .expect("get")
            .status
            .and_then(|s| s.failure_time)
            .is_some()
    );

    // A retry: a new request of the same name and CSR, while the failed
    // Order of the old one is still there (orphaned here; in a cluster,
    // not yet collected). It is never taken for the new request's.
    let old = requests.get("bad-1").await.expect("get");
    requests
        .delete("bad-1", &kube::api::DeleteParams::orphan())
        .await
        .expect("delete");
    eventually("bad-1 gone", || async {
        requests
            .get_opt("bad-1")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let mut again: CertificateRequest = serde_json::from_value(json!({"apiVersion": "cert-manager.io/v1",
        "kind": "CertificateRequest", "metadata": {"name": "bad-1"}, "spec": {"issuerRef": {"name": ""}, "request": ""}}))
    .expect("request");
    again.spec = old.spec.clone();
    let again = requests
        .create(&PostParams::default(), &again)
        .await
        .expect("create again");
    let pending = eventually("the new bad-1 pending on a fresh order", || async {
        ready(&requests.get("bad-1").await.ok()?).filter(|r| r.1 == "Pending")
    })
    .await;
    assert!(pending.2.contains(&bad_order), "{pending:?}");
    let fresh = orders.get(&bad_order).await.expect("order");
    assert_eq!(
        fresh.metadata.owner_references.unwrap_or_default()[0].uid,
        again.metadata.uid.clone().unwrap_or_default(),
        "owned by the new request"
    );
    assert!(fresh.status.is_none(), "a fresh Order, not the failed one");

    let other = requests.get("other-1").await.expect("get");
    assert!(other.status.is_none(), "not an ACME issuer: untouched");
    assert!(
        !orders
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .iter()
            .any(|o| o.name_any().starts_with("other-1"))
    );
    controller.abort();
}

/// With `--controllers=*,-certificaterequests-approver` another approver
/// (approver-policy) decides: requests wait, unapproved, with cert-manager's
/// WaitingForApproval event; approved ones get their Order; denied ones
/// fail as cert-manager's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_approver_off_requests_wait_for_another_approver() {
    certwright::install_crypto_provider();
    let (_, client) = common::control_plane_with_crds().await;
    let _turn = common::turn().await;
    let ns = "requests-approval";
    common::namespace(&client, ns).await;
    let issuer: certwright::api::ClusterIssuer = serde_json::from_value(json!({"apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer", "metadata": {"name": "le-approval"},
        "spec": {"acme": {"server": "https://acme.example/dir", "privateKeySecretRef": {"name": "k"},
                          "solvers": [{"http01": {"ingress": {}}}]}}}))
    .expect("issuer");
    Api::<certwright::api::ClusterIssuer>::all(client.clone())
        .create(&PostParams::default(), &issuer)
        .await
        .expect("issuer");
    let mut ctx = certwright::runtime::context::Context::new(client.clone(), "certwright");
    ctx.settings.controllers = certwright::runtime::settings::Controllers::parse(&[
        "*".into(),
        "-certificaterequests-approver".into(),
    ])
    .expect("flag");
    let controller = tokio::spawn(certwright::controllers::certificaterequests::run(Arc::new(
        ctx,
    )));
    let requests: Api<CertificateRequest> = Api::namespaced(client.clone(), ns);
    let orders: Api<Order> = Api::namespaced(client.clone(), ns);
    for name in ["waits-1", "denied-1"] {
        requests
            .create(
                &PostParams::default(),
                &request(name, "le-approval", &["c.example.test"]),
            )
            .await
            .expect("create");
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    eventually("a WaitingForApproval event", || async {
        events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("WaitingForApproval")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("waits-1")
            })
    })
    .await;
    let has_order = async |prefix: &str| {
        orders
            .list(&Default::default())
            .await
            .expect("orders")
            .items
            .iter()
            .any(|o| o.name_any().starts_with(prefix))
    };
    let waiting = requests.get("waits-1").await.expect("get");
    assert!(
        waiting
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_none_or(|c| c.iter().all(|c| c.type_ != "Approved")),
        "not approved by certwright: {:?}",
        waiting.status
    );
    assert!(!has_order("waits-1-").await, "no Order before approval");

    // The other approver decides.
    let decide = |name: &'static str, type_: &str, reason: &str| {
        json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest", "metadata": {"name": name},
            "status": {"conditions": [{"type": type_, "status": "True", "reason": reason,
                "message": format!("{reason} by the test's approver")}]}})
    };
    for (name, type_, reason) in [
        ("waits-1", "Approved", "policy.cert-manager.io"),
        ("denied-1", "Denied", "policy.cert-manager.io"),
    ] {
        requests
            .patch_status(
                name,
                &PatchParams::apply("approver-policy"),
                &Patch::Apply(decide(name, type_, reason)),
            )
            .await
            .expect("decided");
    }
    eventually("waits-1 pending on its order", || async {
        ready(&requests.get("waits-1").await.ok()?).filter(|r| r.1 == "Pending")
    })
    .await;
    assert!(has_order("waits-1-").await, "an Order once approved");
    let denied = eventually("denied-1 denied", || async {
        ready(&requests.get("denied-1").await.ok()?).filter(|r| r.1 == "Denied")
    })
    .await;
    assert_eq!(
        (denied.0.as_str(), denied.2.as_str()),
        (
            "False",
            "The CertificateRequest was denied by an approval controller"
        )
    );
    assert!(
        requests
            .get("denied-1")
            .await
            .expect("get")
            .status
            .and_then(|s| s.failure_time)
            .is_some()
    );
    assert!(
        !has_order("denied-1-").await,
        "no Order for a denied request"
    );
    controller.abort();
}

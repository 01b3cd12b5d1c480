//! The real garbage collector on our ownerReferences: deleting a
//! Certificate removes its CertificateRequest and that request's Order,
//! and leaves the final Secret, which nothing owns.

use kube::Resource;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use crate::common;

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
}

async fn create(api: &Api<DynamicObject>, doc: serde_json::Value) -> DynamicObject {
    api.create(
        &PostParams::default(),
        &serde_json::from_value(doc).expect("object"),
    )
    .await
    .expect("created")
}

fn owner(obj: &DynamicObject, api_version: &str, kind: &str) -> serde_json::Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": obj.meta().name, "uid": obj.meta().uid,
            "controller": true, "blockOwnerDeletion": true}])
}

#[tokio::test]
async fn deleting_a_certificate_collects_its_requests_and_orders() {
    let (_, client) = common::control_plane_with_crds().await;
    let ns = "cw-gc";
    common::namespace(&client, ns).await;
    let certs = resource("cert-manager.io", "Certificate", "certificates");
    let requests = resource(
        "cert-manager.io",
        "CertificateRequest",
        "certificaterequests",
    );
    let orders = resource("acme.cert-manager.io", "Order", "orders");
    let certs: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &certs);
    let requests: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &requests);
    let orders: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &orders);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);

    let cert = create(&certs, json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "web"},
        "spec": {"secretName": "web-tls", "dnsNames": ["web.example.test"], "issuerRef": {"name": "le"}}}))
    .await;
    let request = create(&requests, json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
        "metadata": {"name": "web-1", "ownerReferences": owner(&cert, "cert-manager.io/v1", "Certificate")},
        "spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K", "issuerRef": {"name": "le"}}}))
    .await;
    create(&orders, json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
        "metadata": {"name": "web-1-1234", "ownerReferences": owner(&request, "cert-manager.io/v1", "CertificateRequest")},
        "spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K", "dnsNames": ["web.example.test"],
                 "issuerRef": {"name": "le"}}}))
    .await;
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "web-tls"}, "type": "kubernetes.io/tls",
                "data": {"tls.crt": "", "tls.key": ""}}),
            )
            .expect("secret"),
        )
        .await
        .expect("secret");

    certs
        .delete("web", &DeleteParams::background())
        .await
        .expect("delete");
    common::eventually("the request and order collected", || async {
        let gone = |r: Result<DynamicObject, kube::Error>| {
            matches!(r, Err(kube::Error::Api(s)) if s.code == 404)
        };
        (gone(requests.get("web-1").await) && gone(orders.get("web-1-1234").await)).then_some(())
    })
    .await;
    assert!(
        secrets.get("web-tls").await.is_ok(),
        "the Secret has no owner and must stay"
    );
}

//! The CRDs as the real API server takes them: established, every fixture
//! stored as written (nothing pruned), wrong manifests rejected by the
//! schema and the CEL rules with the API server's messages.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::common;
use crate::fixtures::{documents, fixtures};

/// The dynamic API for `doc`'s kind, in its namespace (if any).
fn api_for(client: &kube::Client, doc: &Value) -> Api<DynamicObject> {
    let kind = doc["kind"].as_str().expect("kind");
    let (group, version) = doc["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .expect("apiVersion");
    let plural = format!("{}s", kind.to_lowercase());
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
    match doc["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Creates `doc` with dryRun=All: the API server validates, defaults and
/// prunes it as for a real create, and stores nothing.
async fn dry_run(client: &kube::Client, doc: &Value) -> Result<Value, kube::Error> {
    let object: DynamicObject = serde_json::from_value(doc.clone()).expect("object");
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let created = api_for(client, doc).create(&pp, &object).await?;
    Ok(serde_json::to_value(created).expect("json"))
}

#[tokio::test]
async fn the_crds_are_established_with_their_names() {
    let (_, client) = common::control_plane_with_crds().await;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for crd in certwright::api::crds() {
        let name = crd.metadata.name.expect("name");
        let stored = api.get(&name).await.expect("CRD stored");
        let conditions = stored.status.and_then(|s| s.conditions).unwrap_or_default();
        for wanted in ["Established", "NamesAccepted"] {
            assert!(
                conditions
                    .iter()
                    .any(|c| c.type_ == wanted && c.status == "True"),
                "{name}: {wanted} is not True: {conditions:?}"
            );
        }
    }
}

#[tokio::test]
async fn every_fixture_is_stored_as_written() {
    let (_, client) = common::control_plane_with_crds().await;
    let all = fixtures();
    let mut namespaces: Vec<&str> = all
        .iter()
        .filter_map(|(_, d)| d["metadata"]["namespace"].as_str())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    for ns in namespaces {
        common::namespace(&client, ns).await;
    }
    for (name, doc) in &all {
        // Nothing pruned or changed: the schema models every field the manifest uses.
        let stored = dry_run(&client, doc)
            .await
            .unwrap_or_else(|e| panic!("{name}: the API server refused it: {e}"));
        assert_eq!(
            stored["spec"], doc["spec"],
            "{name}: spec changed when stored"
        );
        if doc["status"].is_null() {
            continue;
        }
        // Status goes through its subresource, on an object that exists.
        let api = api_for(&client, doc);
        let object: DynamicObject = serde_json::from_value(doc.clone()).expect("object");
        let object_name = object.metadata.name.clone().expect("name");
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("{name}: create: {e}"));
        let patched = api
            .patch_status(
                &object_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": doc["status"]})),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: status: {e}"));
        let patched = serde_json::to_value(patched).expect("json");
        assert_eq!(
            patched["status"], doc["status"],
            "{name}: status changed when stored"
        );
        api.delete(&object_name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: delete: {e}"));
    }
}

fn certificate(spec_yaml: &str) -> Value {
    let mut doc = documents(&format!(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: bad\n  namespace: default\nspec:\n{spec_yaml}"
    ))
    .remove(0);
    if doc["spec"].get("issuerRef").is_none() {
        doc["spec"]["issuerRef"] = json!({"name": "le"});
    }
    doc
}

fn issuer(spec_yaml: &str) -> Value {
    documents(&format!("apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata:\n  name: bad\n  namespace: default\nspec:\n{spec_yaml}"))
        .remove(0)
}

/// The API server's message for refusing `doc`; fails if it accepts it.
async fn refusal(client: &kube::Client, doc: &Value) -> String {
    match dry_run(client, doc).await {
        Ok(_) => panic!("the API server accepted {doc}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

async fn assert_rejected(client: &kube::Client, doc: Value, expected: &str) {
    let message = refusal(client, &doc).await;
    assert!(
        message.contains(expected),
        "expected {expected:?} in the API server's answer:\n{message}"
    );
}

#[tokio::test]
async fn the_schema_and_cel_rules_reject_what_they_should() {
    let (_, client) = common::control_plane_with_crds().await;
    let c = &client;
    assert_rejected(
        c,
        certificate("  secretName: s\n  dnsNames: example.com\n"),
        "spec.dnsNames: Invalid value: \"string\": spec.dnsNames in body must be of type array: \"string\"",
    )
    .await;
    assert_rejected(
        c,
        certificate("  secretName: s\n  dnsNames: [a.example.com]\n  privateKey:\n    algorithm: DSA\n"),
        "spec.privateKey.algorithm: Unsupported value: \"DSA\": supported values: \"RSA\", \"ECDSA\", \"Ed25519\"",
    )
    .await;
    assert_rejected(
        c,
        certificate(
            "  secretName: s\n  dnsNames: [a.example.com]\n  privateKey:\n    size: 1024\n",
        ),
        "RSA key size must be between 2048 and 8192",
    )
    .await;
    assert_rejected(
        c,
        certificate("  commonName: a.example.com\n"),
        "spec.secretName: Required value",
    )
    .await;
    assert_rejected(
        c,
        certificate("  secretName: s\n"),
        "at least one of commonName, literalSubject, dnsNames, uris, emailAddresses, ipAddresses or otherNames must be set",
    )
    .await;
    assert_rejected(
        c,
        certificate("  secretName: s\n  literalSubject: CN=a\n  commonName: a\n"),
        "literalSubject cannot be set together with commonName or subject",
    )
    .await;
    assert_rejected(
        c,
        certificate("  secretName: s\n  dnsNames: [a.example.com]\n  renewBefore: 1h\n  renewBeforePercentage: 10\n"),
        "renewBefore and renewBeforePercentage are mutually exclusive",
    )
    .await;
    assert_rejected(
        c,
        certificate("  secretName: s\n  dnsNames: [a.example.com]\n  renewBeforePercentage: 100\n"),
        "spec.renewBeforePercentage: Invalid value: 100: spec.renewBeforePercentage in body should be less than or equal to 99",
    )
    .await;
    // Input cert-manager's webhook refused: named, not stored.
    let refused = [
        (
            "  secretName: Web_TLS\n  dnsNames: [a.example.com]\n",
            "spec.secretName in body should match",
        ),
        (
            "  secretName: s\n  dnsNames: [a.example.com]\n  duration: 90d\n",
            "spec.duration in body should match",
        ),
        (
            "  secretName: s\n  dnsNames: [a.example.com]\n  duration: -1h\n",
            "spec.duration in body should match",
        ),
        (
            "  secretName: s\n  dnsNames: [a.example.com]\n  duration: 30m\n",
            "duration must be at least 1h",
        ),
        (
            "  secretName: s\n  dnsNames: [a.example.com]\n  renewBefore: 1m\n",
            "renewBefore must be at least 5m",
        ),
        (
            "  secretName: s\n  dnsNames: [a.example.com]\n  duration: 2h\n  renewBefore: 3h\n",
            "renewBefore must be shorter than duration",
        ),
        (
            "  secretName: s\n  ipAddresses: [999.1.1.1]\n",
            "spec.ipAddresses[0] in body must be of type ipv4",
        ),
        (
            "  secretName: s\n  dnsNames: [bücher.example]\n",
            "write an international domain name in its xn-- form",
        ),
        (
            "  secretName: s\n  commonName: bücher.example\n",
            "write an international domain name in its xn-- form",
        ),
        (
            "  secretName: s\n  dnsNames: [\"a.example.com.\"]\n",
            "must not end with a dot: write example.com, not example.com.",
        ),
        (
            "  secretName: s\n  dnsNames: [\"192.0.2.7\"]\n",
            "is an IP address, not a DNS name: put it in ipAddresses",
        ),
        (
            "  secretName: s\n  dnsNames: [\"::1\"]\n",
            "is an IP address, not a DNS name: put it in ipAddresses",
        ),
        (
            "  secretName: s\n  dnsNames: [\"*.*.example.test\"]\n",
            "a wildcard may only be the whole leftmost label, once",
        ),
        (
            "  secretName: s\n  dnsNames: [\"a*.example.test\"]\n",
            "a wildcard may only be the whole leftmost label, once",
        ),
        (
            "  secretName: s\n  emailAddresses: [\"ops @example.com\"]\n",
            "must be printable ASCII",
        ),
    ];
    for (spec, message) in refused {
        assert_rejected(c, certificate(spec), message).await;
    }
    // And what it accepted still is.
    for spec in [
        "  secretName: web.tls-1\n  dnsNames: [xn--bcher-kva.example]\n  duration: 1h30m\n  renewBefore: 6m30s\n",
        "  secretName: s\n  dnsNames: [\"*.example.com\", example.com, 1.example.com]\n",
        "  secretName: s\n  ipAddresses: [192.0.2.1, \"2001:db8::1\", \"::ffff:192.0.2.7\"]\n  duration: 2160h\n  renewBefore: 360h\n",
    ] {
        let doc = certificate(spec);
        let object: DynamicObject = serde_json::from_value(doc.clone()).expect("object");
        let dry_run = PostParams {
            dry_run: true,
            ..Default::default()
        };
        api_for(c, &doc)
            .create(&dry_run, &object)
            .await
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
    }
    assert_rejected(
        c,
        issuer("  acme:\n    server: https://acme.example/dir\n    privateKeySecretRef: {name: k}\n    solvers:\n    - http01:\n        ingress:\n          class: nginx\n          ingressClassName: nginx\n"),
        "only one of class, ingressClassName or name may be set",
    )
    .await;
    for spec in ["  selfSigned: {}\n  ca:\n    secretName: ca\n", "  {}\n"] {
        assert_rejected(
            c,
            issuer(spec),
            "exactly one of acme, ca, vault, selfSigned or venafi must be set",
        )
        .await;
    }
    assert_rejected(
        c,
        issuer("  acme:\n    server: https://acme.example/dir\n    privateKeySecretRef: {name: k}\n    solvers:\n    - http01: {ingress: {}}\n      dns01: {cloudflare: {}}\n"),
        "exactly one of http01 or dns01 must be set",
    )
    .await;
    assert_rejected(
        c,
        issuer("  acme:\n    server: https://acme.example/dir\n    caBundle: AAAA\n    skipTLSVerify: true\n    privateKeySecretRef: {name: k}\n"),
        "caBundle and skipTLSVerify are mutually exclusive",
    )
    .await;
    assert_rejected(
        c,
        issuer("  acme:\n    server: https://acme.example/dir\n    privateKeySecretRef: {name: \"\"}\n    solvers:\n    - http01: {ingress: {}}\n"),
        "privateKeySecretRef.name must name the Secret that holds (or will hold) the ACME account key",
    )
    .await;
}

#[tokio::test]
async fn key_sizes_are_checked_per_algorithm() {
    let (_, client) = common::control_plane_with_crds().await;
    for (algorithm, size, ok) in [
        ("RSA", 1024, false),
        ("RSA", 3072, true),
        ("ECDSA", 256, true),
        ("ECDSA", 512, false),
    ] {
        let doc = certificate(&format!(
            "  secretName: s\n  dnsNames: [a.example.com]\n  privateKey:\n    algorithm: {algorithm}\n    size: {size}\n"
        ));
        let answer = dry_run(&client, &doc).await;
        assert_eq!(answer.is_ok(), ok, "{algorithm}/{size}: {answer:?}");
    }
}

#[tokio::test]
async fn unknown_fields_are_pruned_not_kept() {
    let (_, client) = common::control_plane_with_crds().await;
    let doc =
        certificate("  secretName: s\n  dnsNames: [a.example.com]\n  dnsName: typo.example.com\n");
    let stored = dry_run(&client, &doc).await.expect("accepted");
    let mut expected = doc["spec"].clone();
    expected.as_object_mut().map(|s| s.remove("dnsName"));
    assert_eq!(stored["spec"], expected);
}

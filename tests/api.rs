//! The API types against cert-manager-shaped manifests: every fixture
//! round-trips through the Rust types without losing a field, passes the
//! derived CRD schema with nothing pruned, and wrong manifests are rejected
//! with messages that point at the field.

use std::path::Path;

use certwright::api::{
    self, Certificate, CertificateRequest, Challenge, ClusterIssuer, Issuer, Order,
};
use certwright_testcluster::schema::{Outcome, Validator};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde_json::Value;

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("fixture is valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn fixtures() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/api");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("fixture readable");
        for (i, doc) in documents(&text).into_iter().enumerate() {
            out.push((
                format!(
                    "{}#{i}",
                    file.file_name().unwrap_or_default().to_string_lossy()
                ),
                doc,
            ));
        }
    }
    out
}

fn crd_for(kind: &str) -> CustomResourceDefinition {
    api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

fn validate(doc: &Value) -> Outcome {
    let kind = doc["kind"].as_str().expect("kind");
    Validator::for_crd(&crd_for(kind), "v1")
        .expect("validator")
        .validate(doc)
}

/// Deserializes into the typed struct and serializes back.
fn round_trip(doc: &Value) -> Result<Value, serde_json::Error> {
    fn via<T: serde::de::DeserializeOwned + serde::Serialize>(
        doc: &Value,
    ) -> Result<Value, serde_json::Error> {
        serde_json::to_value(serde_json::from_value::<T>(doc.clone())?)
    }
    match doc["kind"].as_str() {
        Some("Certificate") => via::<Certificate>(doc),
        Some("CertificateRequest") => via::<CertificateRequest>(doc),
        Some("Issuer") => via::<Issuer>(doc),
        Some("ClusterIssuer") => via::<ClusterIssuer>(doc),
        Some("Order") => via::<Order>(doc),
        Some("Challenge") => via::<Challenge>(doc),
        other => panic!("fixture of unexpected kind {other:?}"),
    }
}

#[test]
fn fixtures_cover_all_six_kinds() {
    let mut kinds: Vec<String> = fixtures()
        .iter()
        .map(|(_, d)| d["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "Certificate",
            "CertificateRequest",
            "Challenge",
            "ClusterIssuer",
            "Issuer",
            "Order"
        ]
    );
}

#[test]
fn every_fixture_round_trips_without_losing_a_field() {
    for (name, doc) in fixtures() {
        let back = round_trip(&doc).unwrap_or_else(|e| panic!("{name}: does not deserialize: {e}"));
        assert_eq!(back, doc, "{name}: the typed round trip changed the object");
    }
}

#[test]
fn every_fixture_passes_the_schema_with_nothing_pruned() {
    for (name, doc) in fixtures() {
        let out = validate(&doc);
        assert!(out.errors.is_empty(), "{name}: {}", out.message());
        // Nothing pruned means the schema models every field the manifest uses.
        assert!(
            out.pruned.is_empty(),
            "{name}: the schema does not model {:?}",
            out.pruned
        );
        assert_eq!(out.object, doc, "{name}");
    }
}

fn certificate(spec_yaml: &str) -> Value {
    let mut doc = documents(&format!(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: bad\n  namespace: default\nspec:\n{spec_yaml}"
    ))
    .remove(0);
    if doc["spec"].get("issuerRef").is_none() {
        doc["spec"]["issuerRef"] = serde_json::json!({"name": "le"});
    }
    doc
}

fn issuer(spec_yaml: &str) -> Value {
    documents(&format!("apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata:\n  name: bad\n  namespace: default\nspec:\n{spec_yaml}"))
        .remove(0)
}

fn assert_rejected(doc: &Value, expected: &str) {
    let out = validate(doc);
    assert!(
        out.errors.iter().any(|e| e.to_string() == expected),
        "expected error {expected:?}, got {:?}",
        out.message()
    );
}

#[test]
fn a_string_where_a_list_belongs_is_rejected_by_schema_and_types() {
    let doc = certificate("  secretName: s\n  dnsNames: example.com\n");
    assert_rejected(
        &doc,
        "spec.dnsNames: Invalid value: \"string\": spec.dnsNames in body must be of type array: \"string\"",
    );
    let err = serde_json::from_value::<Certificate>(doc).expect_err("typed parse must fail");
    assert!(err.to_string().contains("expected a sequence"), "{err}");
}

#[test]
fn unknown_key_algorithm_is_unsupported() {
    let doc = certificate(
        "  secretName: s\n  dnsNames: [a.example.com]\n  privateKey:\n    algorithm: DSA\n",
    );
    assert_rejected(
        &doc,
        "spec.privateKey.algorithm: Unsupported value: \"DSA\": supported values: \"RSA\", \"ECDSA\", \"Ed25519\"",
    );
}

#[test]
fn key_sizes_are_checked_per_algorithm() {
    for (algorithm, size, ok) in [
        ("RSA", 1024, false),
        ("RSA", 3072, true),
        ("ECDSA", 256, true),
        ("ECDSA", 512, false),
    ] {
        let doc = certificate(&format!(
            "  secretName: s\n  dnsNames: [a.example.com]\n  privateKey:\n    algorithm: {algorithm}\n    size: {size}\n"
        ));
        let out = validate(&doc);
        assert_eq!(
            out.errors.is_empty(),
            ok,
            "{algorithm}/{size}: {}",
            out.message()
        );
    }
    let default_rsa = certificate(
        "  secretName: s\n  dnsNames: [a.example.com]\n  privateKey:\n    size: 1024\n",
    );
    assert_rejected(
        &default_rsa,
        "spec.privateKey: Invalid value: \"object\": RSA key size must be between 2048 and 8192",
    );
}

#[test]
fn missing_secret_name_and_names_are_reported() {
    let doc = certificate("  commonName: a.example.com\n");
    assert_rejected(&doc, "spec.secretName: Required value");
    let doc = certificate("  secretName: s\n");
    assert_rejected(
        &doc,
        "spec: Invalid value: \"object\": at least one of commonName, literalSubject, dnsNames, uris, emailAddresses, ipAddresses or otherNames must be set",
    );
}

#[test]
fn mutually_exclusive_certificate_fields() {
    let doc = certificate("  secretName: s\n  literalSubject: CN=a\n  commonName: a\n");
    assert_rejected(
        &doc,
        "spec: Invalid value: \"object\": literalSubject cannot be set together with commonName or subject",
    );
    let doc = certificate(
        "  secretName: s\n  dnsNames: [a.example.com]\n  renewBefore: 1h\n  renewBeforePercentage: 10\n",
    );
    assert_rejected(
        &doc,
        "spec: Invalid value: \"object\": renewBefore and renewBeforePercentage are mutually exclusive",
    );
    let doc =
        certificate("  secretName: s\n  dnsNames: [a.example.com]\n  renewBeforePercentage: 100\n");
    assert_rejected(
        &doc,
        "spec.renewBeforePercentage: Invalid value: 100: spec.renewBeforePercentage in body should be less than or equal to 99",
    );
}

#[test]
fn class_and_ingress_class_name_together_are_rejected() {
    let doc = issuer(
        "  acme:\n    server: https://acme.example/dir\n    privateKeySecretRef: {name: k}\n    solvers:\n    - http01:\n        ingress:\n          class: nginx\n          ingressClassName: nginx\n",
    );
    assert_rejected(
        &doc,
        "spec.acme.solvers[0].http01.ingress: Invalid value: \"object\": only one of class, ingressClassName or name may be set",
    );
}

#[test]
fn issuer_needs_exactly_one_type_and_solver_exactly_one_mechanism() {
    let both = issuer("  selfSigned: {}\n  ca:\n    secretName: ca\n");
    assert_rejected(
        &both,
        "spec: Invalid value: \"object\": exactly one of acme, ca, vault, selfSigned or venafi must be set",
    );
    let none = issuer("  {}\n");
    assert_rejected(
        &none,
        "spec: Invalid value: \"object\": exactly one of acme, ca, vault, selfSigned or venafi must be set",
    );
    let solver = issuer(
        "  acme:\n    server: https://acme.example/dir\n    privateKeySecretRef: {name: k}\n    solvers:\n    - http01: {ingress: {}}\n      dns01: {cloudflare: {}}\n",
    );
    assert_rejected(
        &solver,
        "spec.acme.solvers[0]: Invalid value: \"object\": exactly one of http01 or dns01 must be set",
    );
    let insecure = issuer(
        "  acme:\n    server: https://acme.example/dir\n    caBundle: AAAA\n    skipTLSVerify: true\n    privateKeySecretRef: {name: k}\n",
    );
    assert_rejected(
        &insecure,
        "spec.acme: Invalid value: \"object\": caBundle and skipTLSVerify are mutually exclusive",
    );
}

#[test]
fn unknown_fields_are_pruned_not_kept() {
    let mut doc =
        certificate("  secretName: s\n  dnsNames: [a.example.com]\n  dnsName: typo.example.com\n");
    let out = validate(&doc);
    assert!(out.errors.is_empty(), "{}", out.message());
    assert_eq!(out.pruned, ["spec.dnsName"]);
    doc["spec"].as_object_mut().map(|s| s.remove("dnsName"));
    assert_eq!(out.object, doc);
}

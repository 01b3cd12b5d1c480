//! The API types against cert-manager-shaped manifests (`tests/fixtures/api`):
//! every fixture round-trips through the Rust types without losing a field.
//! What the API server makes of them is in `schema.rs`.

use std::path::Path;

use certwright::api::{Certificate, CertificateRequest, Challenge, ClusterIssuer, Issuer, Order};
use serde::Deserialize;
use serde_json::Value;

pub fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("fixture is valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn fixtures() -> Vec<(String, Value)> {
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
fn a_string_where_a_list_belongs_does_not_parse() {
    let doc = serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"secretName": "s", "dnsNames": "example.com", "issuerRef": {"name": "le"}}});
    let err = serde_json::from_value::<Certificate>(doc).expect_err("typed parse must fail");
    assert!(err.to_string().contains("expected a sequence"), "{err}");
}

//! The Certificate's Secret: type `kubernetes.io/tls`, `tls.crt` (leaf and
//! chain), `tls.key`, `ca.crt` when known, cert-manager's annotations and
//! the `secretTemplate` (`build`, here, pure); the additional output formats
//! and keystores the spec asks for (`outputs`, pure); whether certwright
//! may write it at all (`guard`): never a Secret another Certificate owns,
//! of another type, or holding data certwright does not write, unless it
//! is handed over; and the write itself (`write`).

pub mod guard;
pub mod outputs;
pub mod write;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use serde_json::{Value, json};

use crate::api::Certificate;
use crate::pki::cert::LeafInfo;

/// The annotation that hands a Secret to a Certificate.
pub const CERTIFICATE_NAME: &str = "cert-manager.io/certificate-name";

/// Values joined as one CSV record, as cert-manager writes its list
/// annotations (Go's encoding/csv): a value with a comma, a quote, a line
/// break or a leading space is quoted, its quotes doubled.
pub fn csv(values: &[String]) -> String {
    values
        .iter()
        .map(|v| {
            let quote = v.contains([',', '"', '\r', '\n']) || v.starts_with([' ', '\t']);
            if quote {
                format!("\"{}\"", v.replace('"', "\"\""))
            } else {
                v.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The Secret to apply (server-side apply: fields others set survive).
pub fn build(
    cert: &Certificate,
    chain_pem: &str,
    key_pem: &str,
    ca_pem: Option<&str>,
    leaf: &LeafInfo,
    outputs: &BTreeMap<String, Vec<u8>>,
) -> Value {
    let spec = &cert.spec;
    let name = cert.metadata.name.clone().unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = spec
        .secret_template
        .as_ref()
        .and_then(|t| t.annotations.clone())
        .unwrap_or_default();
    let labels: BTreeMap<String, String> = spec
        .secret_template
        .as_ref()
        .and_then(|t| t.labels.clone())
        .unwrap_or_default();
    let ours = [
        (CERTIFICATE_NAME, name.clone()),
        ("cert-manager.io/issuer-name", spec.issuer_ref.name.clone()),
        // As given (empty when unset), as cert-manager writes them.
        (
            "cert-manager.io/issuer-kind",
            spec.issuer_ref.kind.clone().unwrap_or_default(),
        ),
        (
            "cert-manager.io/issuer-group",
            spec.issuer_ref.group.clone().unwrap_or_default(),
        ),
        (
            "cert-manager.io/common-name",
            leaf.common_name.clone().unwrap_or_default(),
        ),
        ("cert-manager.io/alt-names", leaf.dns_names.join(",")),
        ("cert-manager.io/ip-sans", leaf.ip_addresses.join(",")),
        ("cert-manager.io/uri-sans", leaf.uris.join(",")),
    ];
    for (k, v) in ours {
        // The template cannot override cert-manager's own annotations.
        annotations.insert(k.to_string(), v);
    }
    // As cert-manager: these only when the certificate has them.
    let subject = |oid: &str| leaf.subject.get(oid).cloned().unwrap_or_default();
    let optional = [
        ("cert-manager.io/email-sans", leaf.email_addresses.clone()),
        ("cert-manager.io/subject-serialnumber", subject("2.5.4.5")),
        ("cert-manager.io/subject-organizations", subject("2.5.4.10")),
        (
            "cert-manager.io/subject-organizationalunits",
            subject("2.5.4.11"),
        ),
        ("cert-manager.io/subject-countries", subject("2.5.4.6")),
        ("cert-manager.io/subject-provinces", subject("2.5.4.8")),
        ("cert-manager.io/subject-localities", subject("2.5.4.7")),
        ("cert-manager.io/subject-postalcodes", subject("2.5.4.17")),
        (
            "cert-manager.io/subject-streetaddresses",
            subject("2.5.4.9"),
        ),
    ];
    for (k, values) in optional {
        if !values.is_empty() {
            annotations.insert(k.to_string(), csv(&values));
        }
    }
    let mut data = BTreeMap::from([
        (
            "tls.crt".to_string(),
            ByteString(chain_pem.as_bytes().to_vec()),
        ),
        (
            "tls.key".to_string(),
            ByteString(key_pem.as_bytes().to_vec()),
        ),
    ]);
    if let Some(ca) = ca_pem.filter(|c| !c.is_empty()) {
        data.insert("ca.crt".to_string(), ByteString(ca.as_bytes().to_vec()));
    }
    for (k, v) in outputs {
        data.insert(k.clone(), ByteString(v.clone()));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": spec.secret_name, "namespace": cert.metadata.namespace, "annotations": annotations, "labels": labels},
        "type": "kubernetes.io/tls",
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::CertificateSpec;
    use crate::api::certificate::SecretTemplate;
    use crate::api::meta::IssuerReference;

    fn leaf() -> LeafInfo {
        LeafInfo {
            not_before: 0,
            not_after: 1,
            common_name: None,
            dns_names: vec!["a.example.com".into(), "b.example.com".into()],
            ip_addresses: vec![],
            uris: vec![],
            email_addresses: vec![],
            issuer: "CN=Pebble".into(),
            public_key_info: vec![],
            chain_len: 2,
            ari_id: None,
            subject: Default::default(),
        }
    }

    #[test]
    fn secret_carries_data_annotations_and_template() {
        let mut cert = Certificate::new(
            "web",
            CertificateSpec {
                secret_name: "web-tls".into(),
                issuer_ref: IssuerReference {
                    name: "le".into(),
                    kind: Some("ClusterIssuer".into()),
                    group: None,
                },
                secret_template: Some(SecretTemplate {
                    annotations: Some(
                        [
                            ("team".into(), "a".into()),
                            ("cert-manager.io/issuer-name".into(), "spoof".into()),
                        ]
                        .into(),
                    ),
                    labels: Some([("app".into(), "web".into())].into()),
                }),
                ..Default::default()
            },
        );
        cert.metadata.namespace = Some("default".into());
        let s = build(&cert, "CHAIN", "KEY", Some("CA"), &leaf(), &BTreeMap::new());
        assert_eq!(s["type"], "kubernetes.io/tls");
        assert_eq!(s["metadata"]["namespace"], "default");
        let a = &s["metadata"]["annotations"];
        assert_eq!(
            (
                a["cert-manager.io/issuer-name"].as_str(),
                a["cert-manager.io/issuer-kind"].as_str()
            ),
            (Some("le"), Some("ClusterIssuer"))
        );
        assert_eq!(
            a["cert-manager.io/alt-names"],
            "a.example.com,b.example.com"
        );
        assert_eq!(a["team"], "a");
        assert_eq!(
            a["cert-manager.io/issuer-group"], "",
            "as given: empty when unset, as cert-manager writes it"
        );
        assert_eq!(s["metadata"]["labels"]["app"], "web");
        assert_eq!(s["data"]["tls.crt"], "Q0hBSU4=");
        assert_eq!(s["data"]["ca.crt"], "Q0E=");
        assert!(
            build(&cert, "C", "K", None, &leaf(), &BTreeMap::new())["data"]
                .get("ca.crt")
                .is_none()
        );
    }

    #[test]
    fn list_annotations_are_csv_as_cert_manager_writes_them() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(csv(&v(&["Acme", "Acme Labs"])), "Acme,Acme Labs");
        assert_eq!(
            csv(&v(&["Acme, Inc.", "say \"hi\"", " lead"])),
            "\"Acme, Inc.\",\"say \"\"hi\"\"\",\" lead\""
        );
        let mut l = leaf();
        l.email_addresses = v(&["ops@example.com"]);
        l.subject
            .insert("2.5.4.10".into(), v(&["Acme", "Acme, Inc."]));
        let cert = Certificate::new("web", CertificateSpec::default());
        let s = build(&cert, "C", "K", None, &l, &BTreeMap::new());
        let a = &s["metadata"]["annotations"];
        assert_eq!(a["cert-manager.io/email-sans"], "ops@example.com");
        assert_eq!(
            a["cert-manager.io/subject-organizations"],
            "Acme,\"Acme, Inc.\""
        );
        assert!(
            a.get("cert-manager.io/subject-countries").is_none(),
            "only what the certificate has"
        );
    }
}

//! The Certificate's Secret: type `kubernetes.io/tls`, `tls.crt` (leaf and
//! chain), `tls.key`, `ca.crt` when known, cert-manager's annotations and
//! the `secretTemplate`; and whether certwright may write it at all: never
//! a Secret another Certificate owns, of another type, or holding data
//! certwright does not write, unless it is handed over.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use serde_json::{Value, json};

use crate::api::Certificate;
use crate::pki::cert::LeafInfo;

/// Whether the Secret may be written for `certificate`: the Secret's
/// `cert-manager.io/certificate-name` annotation, if any, must name it.
pub fn owned_by_other(
    secret_annotations: &BTreeMap<String, String>,
    certificate: &str,
) -> Option<String> {
    secret_annotations
        .get(CERTIFICATE_NAME)
        .filter(|owner| owner.as_str() != certificate)
        .cloned()
}

/// Data keys certwright (or cert-manager) writes into a Certificate's Secret.
pub const OWN_KEYS: [&str; 9] = [
    "tls.crt",
    "tls.key",
    "ca.crt",
    "tls-combined.pem",
    "key.der",
    "keystore.jks",
    "truststore.jks",
    "keystore.p12",
    "truststore.p12",
];

/// The annotation that hands a Secret to a Certificate.
pub const CERTIFICATE_NAME: &str = "cert-manager.io/certificate-name";

/// Why an existing Secret must not be written for a Certificate (besides
/// belonging to another one, which needs a look at the API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A Secret's type cannot change: it would be refused for ever.
    WrongType(String),
    /// Keys certwright does not write, in a Secret not handed to this
    /// Certificate: it holds something else.
    ForeignData(Vec<String>),
}

/// Whether a Secret of `type_` (None: Opaque, as the API defaults it)
/// with `annotations` and `data_keys` may be written for `certificate`.
pub fn refusal<'a>(
    type_: Option<&str>,
    annotations: &BTreeMap<String, String>,
    data_keys: impl IntoIterator<Item = &'a String>,
    certificate: &str,
) -> Option<Refusal> {
    let type_ = type_.unwrap_or("Opaque");
    if type_ != "kubernetes.io/tls" {
        return Some(Refusal::WrongType(type_.to_string()));
    }
    if annotations.get(CERTIFICATE_NAME).map(String::as_str) == Some(certificate) {
        return None;
    }
    let foreign: Vec<String> = data_keys
        .into_iter()
        .filter(|k| !OWN_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    (!foreign.is_empty()).then_some(Refusal::ForeignData(foreign))
}

/// The Secret to apply (server-side apply: fields others set survive).
pub fn build(
    cert: &Certificate,
    chain_pem: &str,
    key_pem: &str,
    ca_pem: Option<&str>,
    leaf: &LeafInfo,
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
        (
            "cert-manager.io/issuer-kind",
            spec.issuer_ref
                .kind
                .clone()
                .unwrap_or_else(|| "Issuer".into()),
        ),
        (
            "cert-manager.io/issuer-group",
            spec.issuer_ref
                .group
                .clone()
                .unwrap_or_else(|| "cert-manager.io".into()),
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
        let s = build(&cert, "CHAIN", "KEY", Some("CA"), &leaf());
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
        assert_eq!(s["metadata"]["labels"]["app"], "web");
        assert_eq!(s["data"]["tls.crt"], "Q0hBSU4=");
        assert_eq!(s["data"]["ca.crt"], "Q0E=");
        assert!(
            build(&cert, "C", "K", None, &leaf())["data"]
                .get("ca.crt")
                .is_none()
        );
    }

    #[test]
    fn foreign_secrets_are_not_taken_over() {
        let mine: BTreeMap<String, String> = [(
            "cert-manager.io/certificate-name".to_string(),
            "web".to_string(),
        )]
        .into();
        assert_eq!(owned_by_other(&mine, "web"), None);
        assert_eq!(owned_by_other(&mine, "api"), Some("web".into()));
        assert_eq!(
            owned_by_other(&BTreeMap::new(), "api"),
            None,
            "an unannotated Secret can be adopted"
        );
    }

    #[test]
    fn secrets_holding_something_else_are_refused_unless_handed_over() {
        let none = BTreeMap::new();
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            refusal(Some("Opaque"), &none, &keys(&["tls.key"]), "web"),
            Some(Refusal::WrongType("Opaque".into()))
        );
        assert_eq!(
            refusal(None, &none, &keys(&[]), "web"),
            Some(Refusal::WrongType("Opaque".into())),
            "the API's default type"
        );
        let tls = Some("kubernetes.io/tls");
        assert_eq!(
            refusal(tls, &none, &keys(&["tls.crt", "tls.key", "ca.crt"]), "web"),
            None,
            "a plain TLS Secret is adopted"
        );
        assert_eq!(
            refusal(
                tls,
                &none,
                &keys(&["tls.crt", "tls.key", "password"]),
                "web"
            ),
            Some(Refusal::ForeignData(vec!["password".into()]))
        );
        let handed: BTreeMap<String, String> =
            [(CERTIFICATE_NAME.to_string(), "web".to_string())].into();
        assert_eq!(
            refusal(tls, &handed, &keys(&["tls.crt", "password"]), "web"),
            None,
            "handed over by its annotation"
        );
        assert_eq!(
            refusal(Some("Opaque"), &handed, &keys(&[]), "web"),
            Some(Refusal::WrongType("Opaque".into())),
            "but a type cannot change"
        );
    }
}

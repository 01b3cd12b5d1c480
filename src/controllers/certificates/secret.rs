//! The Certificate's Secret: type `kubernetes.io/tls`, `tls.crt` (leaf and
//! chain), `tls.key`, `ca.crt` when known, the additional output formats
//! and keystores the spec asks for, cert-manager's annotations and the
//! `secretTemplate`; and whether certwright may write it at all: never a
//! Secret another Certificate owns, of another type, or holding data
//! certwright does not write, unless it is handed over.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use serde_json::{Value, json};

use crate::api::Certificate;
use crate::api::certificate::{CertificateSpec, OutputFormatType};
use crate::pki::cert::LeafInfo;
use crate::pki::keys::PrivateKey;
use crate::pki::keystore::{self, Contents, jks};

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

pub const COMBINED_PEM: &str = "tls-combined.pem";
pub const DER_KEY: &str = "key.der";
pub const JKS: &str = "keystore.jks";
pub const JKS_TRUST: &str = "truststore.jks";
pub const PKCS12: &str = "keystore.p12";
pub const PKCS12_TRUST: &str = "truststore.p12";

/// Data keys certwright (or cert-manager) writes into a Certificate's Secret.
pub const OWN_KEYS: [&str; 9] = [
    "tls.crt",
    "tls.key",
    "ca.crt",
    COMBINED_PEM,
    DER_KEY,
    JKS,
    JKS_TRUST,
    PKCS12,
    PKCS12_TRUST,
];

/// The keystore passwords, as the caller read them (from the spec or the
/// Secrets it names); `None` where the spec asks for no such keystore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Passwords {
    pub pkcs12: Option<String>,
    pub jks: Option<String>,
}

/// The keys besides `tls.crt`, `tls.key` and `ca.crt` that the spec asks
/// for, given whether there is a CA (truststores need one).
pub fn wanted_outputs(spec: &CertificateSpec, has_ca: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    for format in spec.additional_output_formats.iter().flatten() {
        out.push(match format.type_ {
            OutputFormatType::Der => DER_KEY,
            OutputFormatType::CombinedPem => COMBINED_PEM,
        });
    }
    let stores = spec.keystores.as_ref();
    if stores
        .and_then(|k| k.pkcs12.as_ref())
        .is_some_and(|p| p.create)
    {
        out.push(PKCS12);
        if has_ca {
            out.push(PKCS12_TRUST);
        }
    }
    if stores
        .and_then(|k| k.jks.as_ref())
        .is_some_and(|j| j.create)
    {
        out.push(JKS);
        if has_ca {
            out.push(JKS_TRUST);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `key.der` as cert-manager writes it: the DER inside `tls.key`'s PEM.
fn der_key(key_pem: &str) -> Result<Vec<u8>, String> {
    pem::parse(key_pem)
        .map(|p| p.into_contents())
        .map_err(|e| format!("tls.key is not PEM: {e}"))
}

/// `tls-combined.pem` as cert-manager writes it: the key, a newline, the chain.
fn combined_pem(key_pem: &str, chain_pem: &str) -> Vec<u8> {
    format!("{key_pem}\n{chain_pem}").into_bytes()
}

/// The additional output formats and keystores the spec asks for.
pub fn outputs(
    spec: &CertificateSpec,
    key_pem: &str,
    chain_pem: &str,
    ca_pem: Option<&str>,
    passwords: &Passwords,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let ca_pem = ca_pem.unwrap_or_default();
    let wanted = wanted_outputs(spec, !ca_pem.is_empty());
    let stores = spec.keystores.as_ref();
    let profile = stores
        .and_then(|k| k.pkcs12.as_ref())
        .and_then(|p| p.profile);
    let alias = stores
        .and_then(|k| k.jks.as_ref())
        .and_then(|j| j.alias.clone())
        .unwrap_or_else(|| "certificate".into());
    let contents = if wanted.iter().any(|k| k.contains("store")) {
        let key = PrivateKey::from_pem(key_pem.as_bytes()).map_err(|e| format!("tls.key: {e}"))?;
        Some(Contents::new(&key, chain_pem, ca_pem).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mut out = BTreeMap::new();
    for name in wanted {
        let value = match (name, &contents) {
            (DER_KEY, _) => der_key(key_pem)?,
            (COMBINED_PEM, _) => combined_pem(key_pem, chain_pem),
            (PKCS12, Some(c)) => {
                keystore::pkcs12_keystore(profile, password(&passwords.pkcs12, "PKCS#12")?, c)
                    .map_err(encoding("PKCS#12 keystore"))?
            }
            (PKCS12_TRUST, Some(c)) => keystore::pkcs12_truststore(
                profile,
                password(&passwords.pkcs12, "PKCS#12")?,
                &c.cas,
            )
            .map_err(encoding("PKCS#12 truststore"))?,
            (JKS, Some(c)) => jks::keystore(password(&passwords.jks, "JKS")?, &alias, c)
                .map_err(encoding("JKS keystore"))?,
            (_, Some(c)) => jks::truststore(password(&passwords.jks, "JKS")?, &c.cas)
                .map_err(encoding("JKS truststore"))?,
            (_, None) => continue,
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

fn password<'a>(read: &'a Option<String>, kind: &str) -> Result<&'a str, String> {
    read.as_deref()
        .ok_or_else(|| format!("no password was read for the {kind} keystore"))
}

fn encoding(what: &'static str) -> impl Fn(keystore::KeystoreError) -> String {
    move |e| format!("encoding the {what}: {e}")
}

/// Keys certwright or cert-manager wrote that the Secret should no longer
/// hold: after a spec change, or left by cert-manager before a migration.
pub fn stale<'a>(
    existing: impl IntoIterator<Item = &'a String>,
    written: &BTreeMap<String, ByteString>,
) -> Vec<String> {
    existing
        .into_iter()
        .filter(|k| OWN_KEYS.contains(&k.as_str()) && !written.contains_key(*k))
        .cloned()
        .collect()
}

/// Why the Secret's outputs no longer match the spec (written again
/// without issuing, as cert-manager's post-issuance checks do), if they
/// do not. Keystores are checked for presence: their encryption is salted.
pub fn outputs_drift(spec: &CertificateSpec, data: &BTreeMap<String, Vec<u8>>) -> Option<String> {
    let text = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
    let (key_pem, chain_pem) = (text("tls.key")?, text("tls.crt")?);
    let has_ca = data.get("ca.crt").is_some_and(|c| !c.is_empty());
    let wanted = wanted_outputs(spec, has_ca);
    for name in &wanted {
        let have = data.get(*name).filter(|v| !v.is_empty());
        let right = match *name {
            DER_KEY => have.is_some_and(|v| der_key(&key_pem).is_ok_and(|d| &d == v)),
            COMBINED_PEM => have.is_some_and(|v| *v == combined_pem(&key_pem, &chain_pem)),
            _ => have.is_some(),
        };
        if !right {
            return Some(format!("{name} is missing or out of date"));
        }
    }
    let extra = OWN_KEYS[3..]
        .iter()
        .find(|k| data.contains_key(**k) && !wanted.contains(k));
    extra.map(|k| format!("{k} is no longer asked for"))
}

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

/// Why the Secret's metadata no longer matches what `wanted` (the Secret
/// [`build`] makes, owner reference included when enabled) says, if it
/// does not: an annotation or label missing or changed, one `manager`
/// applied before that is no longer wanted (a `secretTemplate` entry
/// removed), or the owner reference added or removed. Written again
/// without issuing, as cert-manager's post-issuance policies do.
pub fn metadata_drift(
    wanted: &Value,
    secret: &k8s_openapi::api::core::v1::Secret,
    manager: &str,
) -> Option<String> {
    let meta = &secret.metadata;
    let empty = BTreeMap::new();
    for (field, have) in [
        ("annotations", meta.annotations.as_ref().unwrap_or(&empty)),
        ("labels", meta.labels.as_ref().unwrap_or(&empty)),
    ] {
        let want = wanted["metadata"][field]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (k, v) in &want {
            if !same_value(k, have.get(k).map(String::as_str), v.as_str()) {
                return Some(format!(
                    "the {} {k} is missing or changed",
                    &field[..field.len() - 1]
                ));
            }
        }
        for k in applied(secret, manager, field) {
            if !want.contains_key(&k) {
                return Some(format!(
                    "the {} {k} is no longer asked for",
                    &field[..field.len() - 1]
                ));
            }
        }
    }
    let uid = wanted["metadata"]["ownerReferences"][0]["uid"].as_str();
    let owned = |u: &str| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == u && o.controller == Some(true))
    };
    match uid {
        Some(u) if !owned(u) => Some("the owner reference to the Certificate is missing".into()),
        None if has_applied_field(secret, manager, "f:ownerReferences") => {
            Some("the owner reference is no longer asked for".into())
        }
        _ => None,
    }
}

/// Whether an annotation or label `key` holds what is wanted. The issuer's
/// kind and group count as the same whether spelled out or left empty (an
/// empty kind is an Issuer, an empty group cert-manager.io), so a Secret
/// written either way is not written again for it.
pub(crate) fn same_value(key: &str, have: Option<&str>, want: Option<&str>) -> bool {
    let default = match key {
        "cert-manager.io/issuer-kind" => "Issuer",
        "cert-manager.io/issuer-group" => "cert-manager.io",
        _ => return have == want,
    };
    let normal = |v: Option<&str>| v.map(|v| if v.is_empty() { default } else { v }.to_string());
    normal(have) == normal(want)
}

/// The keys under `metadata.<field>` that `manager` last applied.
fn applied(secret: &k8s_openapi::api::core::v1::Secret, manager: &str, field: &str) -> Vec<String> {
    fields_of(secret, manager)
        .and_then(|f| f["f:metadata"][format!("f:{field}")].as_object().cloned())
        .map(|o| {
            o.keys()
                .filter_map(|k| k.strip_prefix("f:").map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn has_applied_field(
    secret: &k8s_openapi::api::core::v1::Secret,
    manager: &str,
    field: &str,
) -> bool {
    fields_of(secret, manager).is_some_and(|f| f["f:metadata"].get(field).is_some())
}

fn fields_of(secret: &k8s_openapi::api::core::v1::Secret, manager: &str) -> Option<Value> {
    secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|m| m.manager.as_deref() == Some(manager) && m.operation.as_deref() == Some("Apply"))
        .and_then(|m| m.fields_v1.as_ref())
        .map(|f| f.0.clone())
}

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

    #[test]
    fn the_issuers_kind_and_group_match_spelled_out_or_empty() {
        let (kind, group) = (
            "cert-manager.io/issuer-kind",
            "cert-manager.io/issuer-group",
        );
        assert!(same_value(kind, Some(""), Some("Issuer")));
        assert!(same_value(kind, Some("Issuer"), Some("")));
        assert!(!same_value(kind, Some("ClusterIssuer"), Some("")));
        assert!(!same_value(kind, None, Some("")), "missing is drift");
        assert!(same_value(group, Some("cert-manager.io"), Some("")));
        assert!(!same_value(group, Some("example.io"), Some("")));
        assert!(!same_value("team", Some(""), Some("a")));
    }
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
    fn metadata_drift_is_what_the_template_and_ownership_say() {
        use k8s_openapi::api::core::v1::Secret;
        let wanted = json!({"metadata": {"annotations": {"cert-manager.io/certificate-name": "web"},
            "labels": {"team": "a"}}});
        let secret = |meta: Value| -> Secret {
            serde_json::from_value(json!({"metadata": meta})).expect("secret")
        };
        let applied = json!([{"manager": "m", "operation": "Apply", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}, "f:old": {}}}}}]);
        let fine = secret(
            json!({"annotations": {"cert-manager.io/certificate-name": "web", "x": "y"},
            "labels": {"team": "a", "other": "kept"}}),
        );
        assert_eq!(
            metadata_drift(&wanted, &fine, "m"),
            None,
            "others' keys are theirs"
        );
        let changed = secret(
            json!({"annotations": {"cert-manager.io/certificate-name": "web"},
            "labels": {"team": "b"}}),
        );
        assert_eq!(
            metadata_drift(&wanted, &changed, "m").as_deref(),
            Some("the label team is missing or changed")
        );
        let removed = secret(
            json!({"annotations": {"cert-manager.io/certificate-name": "web"},
            "labels": {"team": "a", "old": "1"}, "managedFields": applied}),
        );
        assert_eq!(
            metadata_drift(&wanted, &removed, "m").as_deref(),
            Some("the label old is no longer asked for"),
            "a template entry we applied and the spec dropped"
        );
        let mut owned = wanted.clone();
        owned["metadata"]["ownerReferences"] = json!([{"uid": "u1"}]);
        assert_eq!(
            metadata_drift(&owned, &fine, "m").as_deref(),
            Some("the owner reference to the Certificate is missing")
        );
        let was_owned = secret(
            json!({"annotations": {"cert-manager.io/certificate-name": "web"},
            "labels": {"team": "a"}, "ownerReferences": [{"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "name": "web", "uid": "u1", "controller": true}],
            "managedFields": [{"manager": "m", "operation": "Apply", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:ownerReferences": {"k:{\"uid\":\"u1\"}": {}}}}}]}),
        );
        assert_eq!(metadata_drift(&owned, &was_owned, "m"), None);
        assert_eq!(
            metadata_drift(&wanted, &was_owned, "m").as_deref(),
            Some("the owner reference is no longer asked for")
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

    fn spec_with_outputs(pkcs12: bool, jks: bool) -> CertificateSpec {
        serde_json::from_value(json!({
            "secretName": "web-tls",
            "issuerRef": {"name": "le"},
            "additionalOutputFormats": [{"type": "DER"}, {"type": "CombinedPEM"}],
            "keystores": {
                "pkcs12": {"create": pkcs12, "password": "p", "profile": "Modern2023"},
                "jks": {"create": jks, "password": "j"},
            },
        }))
        .expect("spec")
    }

    fn key_and_chain() -> (String, String) {
        use crate::pki::keys::KeyKind;
        crate::install_crypto_provider();
        let key = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["web.test".to_string()])
            .expect("params")
            .self_signed(&key.key_pair().expect("pair"))
            .expect("cert");
        (
            key.to_pem(crate::api::certificate::PrivateKeyEncoding::Pkcs1)
                .expect("pem"),
            cert.pem(),
        )
    }

    #[test]
    fn the_spec_names_its_outputs_and_truststores_need_a_ca() {
        let spec = spec_with_outputs(true, false);
        assert_eq!(
            wanted_outputs(&spec, false),
            [DER_KEY, PKCS12, COMBINED_PEM]
        );
        assert_eq!(
            wanted_outputs(&spec_with_outputs(true, true), true),
            [DER_KEY, JKS, PKCS12, COMBINED_PEM, JKS_TRUST, PKCS12_TRUST]
        );
        assert!(wanted_outputs(&CertificateSpec::default(), true).is_empty());
    }

    #[test]
    fn outputs_are_written_as_cert_manager_writes_them() {
        let (key_pem, chain_pem) = key_and_chain();
        let spec = spec_with_outputs(true, true);
        let passwords = Passwords {
            pkcs12: Some("p".into()),
            jks: Some("j".into()),
        };
        let out = outputs(&spec, &key_pem, &chain_pem, None, &passwords).expect("outputs");
        assert_eq!(
            out.keys().map(String::as_str).collect::<Vec<_>>(),
            [DER_KEY, JKS, PKCS12, COMBINED_PEM]
        );
        assert_eq!(
            out[COMBINED_PEM],
            format!("{key_pem}\n{chain_pem}").into_bytes()
        );
        assert_eq!(out[DER_KEY], pem::parse(&key_pem).unwrap().contents());
        assert_eq!(out[JKS][..4], [0xfe, 0xed, 0xfe, 0xed]);
        assert_eq!(out[PKCS12][0], 0x30);
        let missing = outputs(&spec, &key_pem, &chain_pem, None, &Passwords::default());
        assert_eq!(
            missing.unwrap_err(),
            "no password was read for the JKS keystore"
        );
    }

    #[test]
    fn drift_is_what_the_spec_asks_and_the_secret_lacks_or_keeps() {
        let (key_pem, chain_pem) = key_and_chain();
        let spec = spec_with_outputs(true, false);
        let passwords = Passwords {
            pkcs12: Some("p".into()),
            jks: None,
        };
        let mut data: BTreeMap<String, Vec<u8>> =
            outputs(&spec, &key_pem, &chain_pem, None, &passwords).expect("outputs");
        data.insert("tls.key".into(), key_pem.clone().into_bytes());
        data.insert("tls.crt".into(), chain_pem.clone().into_bytes());
        assert_eq!(outputs_drift(&spec, &data), None, "as written");
        let mut old = data.clone();
        old.insert(COMBINED_PEM.into(), b"an older chain".to_vec());
        assert_eq!(
            outputs_drift(&spec, &old).as_deref(),
            Some("tls-combined.pem is missing or out of date")
        );
        let mut extra = data.clone();
        extra.insert(JKS.into(), b"cert-manager's".to_vec());
        assert_eq!(
            outputs_drift(&spec, &extra).as_deref(),
            Some("keystore.jks is no longer asked for")
        );
        assert!(
            outputs_drift(&spec_with_outputs(true, true), &data).is_some(),
            "JKS added"
        );
        let plain = [("tls.key", &key_pem), ("tls.crt", &chain_pem)]
            .map(|(k, v)| (k.to_string(), v.clone().into_bytes()))
            .into();
        assert_eq!(outputs_drift(&CertificateSpec::default(), &plain), None);
    }

    #[test]
    fn stale_keys_are_own_keys_not_written_again() {
        let existing: Vec<String> = ["tls.crt", "keystore.jks", "ca.crt", "team-notes"]
            .map(String::from)
            .into();
        let written: BTreeMap<String, ByteString> =
            [("tls.crt".to_string(), ByteString(vec![]))].into();
        assert_eq!(stale(&existing, &written), ["keystore.jks", "ca.crt"]);
    }
}

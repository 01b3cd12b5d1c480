//! Which Secret a Certificate may write, decided before anything is
//! ordered, and the Certificate a Secret belongs to.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;

use super::super::state::Ctx;
use super::CERTIFICATE_NAME;
use super::outputs::OWN_KEYS;
use crate::api::{Certificate, ClusterIssuer, Issuer};

use super::super::status::Error;

/// Why `secret` must not be written for `cert`, as the message for its
/// condition, or None. Decided before anything is ordered: refusing after
/// a full ACME order cost a certificate per attempt.
///
/// - It belongs to another, existing Certificate (a Secret whose
///   Certificate is gone is free to adopt: a renamed Certificate keeps its
///   secretName).
/// - It is not of type kubernetes.io/tls (the type cannot change).
/// - It holds data certwright does not write, and was not handed over
///   with the `cert-manager.io/certificate-name` annotation.
/// - It is the ACME account key of an Issuer: never, whatever it says.
pub(crate) async fn refused(
    ctx: &Ctx,
    cert: &Certificate,
    secret: &Secret,
) -> Result<Option<String>, Error> {
    let ns = cert.namespace().unwrap_or_default();
    let name = &cert.spec.secret_name;
    let at = format!("Secret {ns}/{name}");
    if let Some(other) = owned_by_other(secret.annotations(), &cert.name_any()) {
        let api: Api<Certificate> = Api::namespaced(ctx.client.clone(), &ns);
        let exists = api
            .get_opt(&other)
            .await
            .map_err(|e| Error::Get(format!("Certificate {ns}/{other}"), e))?
            .is_some();
        if exists {
            return Ok(Some(format!(
                "{at} belongs to Certificate {other:?}; certwright will not overwrite it: give this Certificate another secretName"
            )));
        }
    }
    let keys = secret.data.iter().flatten().map(|(k, _)| k);
    match refusal(
        secret.type_.as_deref(),
        secret.annotations(),
        keys,
        &cert.name_any(),
    ) {
        Some(Refusal::WrongType(type_)) => {
            return Ok(Some(format!(
                "{at} is of type {type_:?}, not kubernetes.io/tls, and a Secret's type cannot change; certwright will not replace it: delete it, or give this Certificate another secretName"
            )));
        }
        Some(Refusal::ForeignData(keys)) => {
            return Ok(Some(format!(
                "{at} holds data certwright does not write ({}); certwright will not overwrite it: give this Certificate another secretName, or hand the Secret over with `kubectl annotate secret -n {ns} {name} cert-manager.io/certificate-name={}`",
                keys.join(", "),
                cert.name_any()
            )));
        }
        None => {}
    }
    if secret.annotations().contains_key(super::CERTIFICATE_NAME) {
        // Written for a Certificate: not an account key.
        return Ok(None);
    }
    if let Some(issuer) = account_key_of(ctx, &ns, name).await? {
        return Ok(Some(format!(
            "{at} is the ACME account key of {issuer}; certwright will never overwrite it: give this Certificate another secretName"
        )));
    }
    Ok(None)
}

/// The Issuer (or ClusterIssuer) keeping its ACME account key in Secret
/// `ns/name`, if any.
async fn account_key_of(ctx: &Ctx, ns: &str, name: &str) -> Result<Option<String>, Error> {
    let uses = |acme: Option<&crate::api::AcmeIssuer>| {
        acme.is_some_and(|a| a.private_key_secret_ref.name == name)
    };
    let issuers = Api::<Issuer>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::Get(format!("Issuers in {ns}"), e))?;
    if let Some(i) = issuers
        .items
        .iter()
        .find(|i| uses(i.spec.config.acme.as_ref()))
    {
        return Ok(Some(format!("Issuer {:?}", i.name_any())));
    }
    if ns == ctx.settings.cluster_resource_namespace {
        let cluster = Api::<ClusterIssuer>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::Get("ClusterIssuers".into(), e))?;
        if let Some(i) = cluster
            .items
            .iter()
            .find(|i| uses(i.spec.config.acme.as_ref()))
        {
            return Ok(Some(format!("ClusterIssuer {:?}", i.name_any())));
        }
    }
    Ok(None)
}

/// The Certificate a Secret belongs to, by its certificate-name
/// annotation (it is not owned by the Certificate unless owner references
/// are on).
pub(crate) fn certificate_of(
    secret: kube::core::PartialObjectMeta<Secret>,
) -> Option<ObjectRef<Certificate>> {
    let ns = secret.metadata.namespace.clone()?;
    let name = secret
        .metadata
        .annotations
        .as_ref()?
        .get("cert-manager.io/certificate-name")?
        .clone();
    Some(ObjectRef::new(&name).within(&ns))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

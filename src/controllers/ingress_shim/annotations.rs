//! What an annotated Ingress asks for, decided without I/O: the issuer its
//! annotations (or the controller's default) name, and the Certificate of
//! each `spec.tls` entry with cert-manager's annotations translated into
//! its spec as cert-manager's ingress-shim translates them.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;

use crate::api::certificate::{
    CertificatePrivateKey, PrivateKeyAlgorithm, PrivateKeyEncoding, RotationPolicy,
};
use crate::api::meta::{IssuerReference, KeyUsage};
use crate::api::{Certificate, CertificateSpec};
use crate::runtime::settings::IngressShim;

pub const ISSUER: &str = "cert-manager.io/issuer";
pub const CLUSTER_ISSUER: &str = "cert-manager.io/cluster-issuer";
pub const ISSUER_KIND: &str = "cert-manager.io/issuer-kind";
pub const ISSUER_GROUP: &str = "cert-manager.io/issuer-group";
pub const TLS_ACME: &str = "kubernetes.io/tls-acme";
const COMMON_NAME: &str = "cert-manager.io/common-name";
const DURATION: &str = "cert-manager.io/duration";
const RENEW_BEFORE: &str = "cert-manager.io/renew-before";
const RENEW_BEFORE_PERCENTAGE: &str = "cert-manager.io/renew-before-percentage";
const USAGES: &str = "cert-manager.io/usages";
const KEY_ALGORITHM: &str = "cert-manager.io/private-key-algorithm";
const KEY_SIZE: &str = "cert-manager.io/private-key-size";
const KEY_ENCODING: &str = "cert-manager.io/private-key-encoding";
const KEY_ROTATION: &str = "cert-manager.io/private-key-rotation-policy";
const REVISION_HISTORY_LIMIT: &str = "cert-manager.io/revision-history-limit";
const EDIT_IN_PLACE: &str = "acme.cert-manager.io/http01-edit-in-place";
const INGRESS_CLASS: &str = "acme.cert-manager.io/http01-ingress-class";
const INGRESS_CLASS_NAME: &str = "acme.cert-manager.io/http01-ingress-ingressclassname";

/// Annotations on a Certificate that override its issuer's HTTP-01 solver
/// Ingress (read when its Challenges are made; see `orders::select`).
pub const OVERRIDE_INGRESS_NAME: &str = "acme.cert-manager.io/http01-override-ingress-name";
pub const OVERRIDE_INGRESS_CLASS: &str = "acme.cert-manager.io/http01-override-ingress-class";
pub const OVERRIDE_INGRESS_CLASS_NAME: &str =
    "acme.cert-manager.io/http01-override-ingress-ingressclassname";
/// The override annotations the shim writes and removes; others on its
/// Certificates are left as they are.
pub const MANAGED_ANNOTATIONS: [&str; 3] = [
    OVERRIDE_INGRESS_NAME,
    OVERRIDE_INGRESS_CLASS,
    OVERRIDE_INGRESS_CLASS_NAME,
];

/// An Ingress label not copied to its Certificates: kubectl's applyset
/// would prune them (cert-manager drops it too).
const APPLYSET_LABEL: &str = "applyset.kubernetes.io/part-of";

/// What the shim makes of an Ingress.
#[derive(Debug)]
pub enum Decision {
    /// Neither annotated for a Certificate nor auto-annotated, or being
    /// deleted: left alone (its Certificates too).
    Ignore,
    /// The annotations cannot be turned into Certificates: why, for a
    /// Warning event; nothing is changed.
    BadConfig(String),
    /// The Certificates it should control (by `spec.secretName`), and the
    /// TLS entries skipped, with why.
    Certificates {
        wanted: Vec<Certificate>,
        skipped: Vec<String>,
    },
}

/// Go's `strconv.ParseBool` true values.
fn go_true(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

/// Whether the Ingress asks for Certificates at all.
fn annotated(annotations: &BTreeMap<String, String>, settings: &IngressShim) -> bool {
    annotations.contains_key(ISSUER)
        || annotations.contains_key(CLUSTER_ISSUER)
        || settings
            .auto_annotations
            .iter()
            .any(|a| annotations.get(a).is_some_and(|v| go_true(v)))
}

/// The issuer the annotations name, with cert-manager's rules and clearer
/// words where it has none.
fn issuer(
    annotations: &BTreeMap<String, String>,
    settings: &IngressShim,
) -> Result<IssuerReference, String> {
    let issuer = annotations.get(ISSUER);
    let cluster = annotations.get(CLUSTER_ISSUER);
    let kind = annotations.get(ISSUER_KIND);
    let group = annotations.get(ISSUER_GROUP);
    let mut errors = Vec::new();
    if issuer.is_some() && cluster.is_some() {
        errors.push(format!(
            "both {ISSUER:?} and {CLUSTER_ISSUER:?} may not be set"
        ));
    }
    if cluster.is_some() && group.is_some() {
        errors.push(format!(
            "both {CLUSTER_ISSUER:?} and {ISSUER_GROUP:?} may not be set"
        ));
    }
    if cluster.is_some() && kind.is_some() {
        errors.push(format!(
            "both {CLUSTER_ISSUER:?} and {ISSUER_KIND:?} may not be set"
        ));
    }
    let (name, default_kind) = match (cluster, issuer) {
        (Some(name), _) => (Some(name.clone()), "ClusterIssuer".to_string()),
        (None, Some(name)) => (Some(name.clone()), "Issuer".to_string()),
        (None, None) => (
            settings.default_issuer_name.clone(),
            settings.default_issuer_kind.clone(),
        ),
    };
    let name = name.unwrap_or_default();
    if name.is_empty() {
        errors.push(if issuer.is_some() || cluster.is_some() {
            format!("the issuer name in {ISSUER:?} or {CLUSTER_ISSUER:?} is empty")
        } else {
            format!(
                "the Ingress asks for a certificate from the default issuer, but certwright has none: set {ISSUER:?} or {CLUSTER_ISSUER:?} on the Ingress, or start the controller with --default-issuer-name (Helm: ingressShim.defaultIssuerName)"
            )
        });
    }
    if !errors.is_empty() {
        return Err(format!(
            "Could not determine issuer for ingress due to bad annotations: {}",
            errors.join(", ")
        ));
    }
    Ok(IssuerReference {
        name,
        kind: Some(kind.cloned().unwrap_or(default_kind)),
        group: Some(
            group
                .cloned()
                .unwrap_or_else(|| settings.default_issuer_group.clone()),
        ),
    })
}

/// Decides the Certificates of `ingress`.
pub fn decide(ingress: &Ingress, settings: &IngressShim) -> Decision {
    let annotations = ingress.annotations();
    if !annotated(annotations, settings) {
        return Decision::Ignore;
    }
    let foreground = ingress
        .finalizers()
        .iter()
        .any(|f| f == "foregroundDeletion");
    if ingress.metadata.deletion_timestamp.is_some() || foreground {
        return Decision::Ignore;
    }
    let issuer_ref = match issuer(annotations, settings) {
        Ok(i) => i,
        Err(why) => return Decision::BadConfig(why),
    };
    let tls = ingress
        .spec
        .as_ref()
        .and_then(|s| s.tls.clone())
        .unwrap_or_default();
    if let Some(why) = duplicate_secret_names(&tls) {
        return Decision::BadConfig(why);
    }
    let mut template = CertificateSpec {
        issuer_ref,
        usages: Some(vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment]),
        ..Default::default()
    };
    if let Err(why) = translate(&mut template, annotations) {
        return Decision::BadConfig(why);
    }
    let mut cert_annotations: BTreeMap<String, String> = settings
        .extra_annotations
        .iter()
        .filter_map(|k| annotations.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    cert_annotations.extend(overrides(ingress));
    let mut labels = ingress.labels().clone();
    labels.remove(APPLYSET_LABEL);
    let owner = serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "name": ingress.name_any(), "uid": ingress.uid().unwrap_or_default(),
        "controller": true, "blockOwnerDeletion": true});
    let mut wanted = Vec::new();
    let mut skipped = Vec::new();
    for (i, entry) in tls.iter().enumerate() {
        let hosts = entry.hosts.clone().unwrap_or_default();
        let secret = entry.secret_name.clone().unwrap_or_default();
        let mut missing = Vec::new();
        if hosts.is_empty() {
            missing.push(format!("spec.tls[{i}].hosts: Required value"));
        }
        if secret.is_empty() {
            missing.push(format!("spec.tls[{i}].secretName: Required value"));
        }
        if !missing.is_empty() {
            skipped.push(format!("Skipped a TLS block: {}", missing.join(", ")));
            continue;
        }
        let (dns, ips) = split_hosts(&hosts);
        let mut spec = template.clone();
        spec.secret_name = secret.clone();
        spec.dns_names = (!dns.is_empty()).then_some(dns);
        spec.ip_addresses = (!ips.is_empty()).then_some(ips);
        let mut cert = Certificate::new(&secret, spec);
        cert.metadata.namespace = ingress.namespace();
        cert.metadata.labels = (!labels.is_empty()).then(|| labels.clone());
        cert.metadata.annotations =
            (!cert_annotations.is_empty()).then(|| cert_annotations.clone());
        cert.metadata.owner_references = Some(vec![
            serde_json::from_value(owner.clone()).expect("owner reference"),
        ]);
        wanted.push(cert);
    }
    Decision::Certificates { wanted, skipped }
}

/// Two TLS entries may not share a Secret: each gets its own Certificate.
fn duplicate_secret_names(tls: &[k8s_openapi::api::networking::v1::IngressTLS]) -> Option<String> {
    let names: Vec<&str> = tls
        .iter()
        .map(|t| t.secret_name.as_deref().unwrap_or_default())
        .collect();
    for (i, name) in names.iter().enumerate() {
        if let Some(j) = names[i + 1..].iter().position(|n| n == name) {
            return Some(format!(
                "spec.tls[{i}].secretName: Invalid value: {name:?}: this secret name must only appear in a single TLS entry but is also used in spec.tls[{}].secretName",
                i + 1 + j
            ));
        }
    }
    None
}

/// Hosts split into DNS names and IP addresses, duplicates dropped, order kept.
fn split_hosts(hosts: &[String]) -> (Vec<String>, Vec<String>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for host in hosts {
        if dns.contains(host) || ips.contains(host) {
            continue;
        }
        if host.parse::<std::net::IpAddr>().is_ok() {
            ips.push(host.clone());
        } else {
            dns.push(host.clone());
        }
    }
    (dns, ips)
}

/// The solver Ingress overrides the ACME annotations ask for.
fn overrides(ingress: &Ingress) -> BTreeMap<String, String> {
    let annotations = ingress.annotations();
    let mut out = BTreeMap::new();
    if annotations.get(EDIT_IN_PLACE).map(String::as_str) == Some("true") {
        out.insert(OVERRIDE_INGRESS_NAME.to_string(), ingress.name_any());
    }
    for (from, to) in [
        (INGRESS_CLASS, OVERRIDE_INGRESS_CLASS),
        (INGRESS_CLASS_NAME, OVERRIDE_INGRESS_CLASS_NAME),
    ] {
        if let Some(v) = annotations.get(from).filter(|v| !v.is_empty()) {
            out.insert(to.to_string(), v.clone());
        }
    }
    out
}

fn invalid(key: &str, why: impl std::fmt::Display) -> String {
    format!("invalid ingress annotation {key:?}: {why}")
}

/// A Go duration as the Certificate stores it (Go's `Duration.String()`,
/// as cert-manager writes it: `2160h0m0s`), at least `min` seconds.
fn go_duration(key: &str, value: &str, min: i64, what: &str) -> Result<String, String> {
    let seconds = crate::time::parse_go_duration(value).map_err(|e| invalid(key, e))?;
    if seconds < min {
        return Err(invalid(
            key,
            format!("{what} must be greater than or equal to {}", format_go(min)),
        ));
    }
    Ok(format_go(seconds))
}

/// Whole seconds written as Go's `Duration.String()` does.
fn format_go(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// Translates cert-manager's Certificate annotations into `spec`, as its
/// ingress-shim does; the first bad value is the error.
fn translate(
    spec: &mut CertificateSpec,
    annotations: &BTreeMap<String, String>,
) -> Result<(), String> {
    let get = |k: &str| annotations.get(k).map(String::as_str);
    if let Some(cn) = get(COMMON_NAME) {
        if cn.len() > 64 {
            return Err(invalid(
                COMMON_NAME,
                "common name may not be more than 64 bytes",
            ));
        }
        spec.common_name = Some(cn.to_string());
    }
    if let Some(v) = get(DURATION) {
        spec.duration = Some(go_duration(DURATION, v, 3600, "duration")?);
    }
    if let Some(v) = get(RENEW_BEFORE) {
        spec.renew_before = Some(go_duration(RENEW_BEFORE, v, 300, "renewBefore")?);
    }
    if let Some(v) = get(RENEW_BEFORE_PERCENTAGE) {
        let pct: i32 = v.parse().map_err(|e| invalid(RENEW_BEFORE_PERCENTAGE, e))?;
        spec.renew_before_percentage = Some(pct);
    }
    if let Some(v) = get(USAGES) {
        let mut usages = Vec::new();
        for name in v.split(',') {
            let usage: KeyUsage = serde_json::from_value(serde_json::json!(name.trim_matches(' ')))
                .map_err(|_| invalid(USAGES, format!("invalid key usage name {name:?}")))?;
            usages.push(usage);
        }
        spec.usages = Some(usages);
    }
    if let Some(v) = get(REVISION_HISTORY_LIMIT) {
        let limit: i32 = v.parse().map_err(|e| invalid(REVISION_HISTORY_LIMIT, e))?;
        if limit < 1 {
            return Err(invalid(
                REVISION_HISTORY_LIMIT,
                format!("revision history limit must be a positive number {v:?}"),
            ));
        }
        spec.revision_history_limit = Some(limit);
    }
    fn key(spec: &mut CertificateSpec) -> &mut CertificatePrivateKey {
        spec.private_key.get_or_insert_with(Default::default)
    }
    if let Some(v) = get(KEY_ALGORITHM) {
        let algorithm = match v {
            "RSA" => PrivateKeyAlgorithm::Rsa,
            "ECDSA" => PrivateKeyAlgorithm::Ecdsa,
            "Ed25519" => PrivateKeyAlgorithm::Ed25519,
            _ => {
                return Err(invalid(
                    KEY_ALGORITHM,
                    format!("invalid private key algorithm {v:?}"),
                ));
            }
        };
        key(spec).algorithm = Some(algorithm);
    }
    if let Some(v) = get(KEY_ENCODING) {
        let encoding = match v {
            "PKCS1" => PrivateKeyEncoding::Pkcs1,
            "PKCS8" => PrivateKeyEncoding::Pkcs8,
            _ => {
                return Err(invalid(
                    KEY_ENCODING,
                    format!("invalid private key encoding {v:?}"),
                ));
            }
        };
        key(spec).encoding = Some(encoding);
    }
    if let Some(v) = get(KEY_SIZE) {
        let size: i64 = v.parse().map_err(|e| invalid(KEY_SIZE, e))?;
        let algorithm = spec
            .private_key
            .as_ref()
            .and_then(|k| k.algorithm)
            .unwrap_or(PrivateKeyAlgorithm::Rsa);
        let fits = match algorithm {
            PrivateKeyAlgorithm::Rsa => (2048..=8192).contains(&size),
            PrivateKeyAlgorithm::Ecdsa => matches!(size, 256 | 384 | 521),
            PrivateKeyAlgorithm::Ed25519 => true,
        };
        if !fits {
            let name = match algorithm {
                PrivateKeyAlgorithm::Ecdsa => "ECDSA",
                _ => "RSA",
            };
            return Err(invalid(
                KEY_SIZE,
                format!("invalid private key size for {name} algorithm {v:?}"),
            ));
        }
        key(spec).size = Some(size);
    }
    if let Some(v) = get(KEY_ROTATION) {
        let policy = match v {
            "Never" => RotationPolicy::Never,
            "Always" => RotationPolicy::Always,
            _ => {
                return Err(invalid(
                    KEY_ROTATION,
                    format!("invalid private key rotation policy {v:?}"),
                ));
            }
        };
        key(spec).rotation_policy = Some(policy);
    }
    Ok(())
}

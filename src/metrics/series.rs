//! The scrape-time series of cert-manager's controller, computed from the
//! watch caches (pure: objects in, samples out), so existing dashboards and
//! alerts work unchanged.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::challenge::ChallengeType;
use crate::api::meta::{Condition, ConditionStatus, IssuerReference};
use crate::api::order::AcmeState;
use crate::api::{Certificate, Challenge};

/// One sample of a gauge family.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub family: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A gauge family: name and help.
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
}

pub const CERT_READY: Family = Family {
    name: "certmanager_certificate_ready_status",
    help: "The ready status of the certificate.",
};
pub const CERT_EXPIRATION: Family = Family {
    name: "certmanager_certificate_expiration_timestamp_seconds",
    help: "The date after which the certificate expires. Expressed as a Unix Epoch Time.",
};
pub const CERT_NOT_AFTER: Family = Family {
    name: "certmanager_certificate_not_after_timestamp_seconds",
    help: "The timestamp after which the certificate is invalid, expressed as a Unix Epoch Time.",
};
pub const CERT_NOT_BEFORE: Family = Family {
    name: "certmanager_certificate_not_before_timestamp_seconds",
    help: "The timestamp before which the certificate is invalid, expressed as a Unix Epoch Time.",
};
pub const CERT_RENEWAL: Family = Family {
    name: "certmanager_certificate_renewal_timestamp_seconds",
    help: "The number of seconds before expiration time the certificate should renew.",
};
pub const CHALLENGE_STATUS: Family = Family {
    name: "certmanager_certificate_challenge_status",
    help: "The status of certificate challenges.",
};
pub const ISSUER_READY: Family = Family {
    name: "certmanager_issuer_ready_status",
    help: "The ready status of the issuer.",
};
pub const CLUSTER_ISSUER_READY: Family = Family {
    name: "certmanager_clusterissuer_ready_status",
    help: "The ready status of the cluster issuer.",
};

/// Every scrape-time family, in output order.
pub const FAMILIES: [Family; 8] = [
    CERT_READY,
    CERT_EXPIRATION,
    CERT_NOT_AFTER,
    CERT_NOT_BEFORE,
    CERT_RENEWAL,
    CHALLENGE_STATUS,
    ISSUER_READY,
    CLUSTER_ISSUER_READY,
];

const CONDITIONS: [(ConditionStatus, &str); 3] = [
    (ConditionStatus::True, "True"),
    (ConditionStatus::False, "False"),
    (ConditionStatus::Unknown, "Unknown"),
];

/// The challenge states cert-manager reports, `""` (not yet set) first.
const STATES: [(Option<AcmeState>, &str); 8] = [
    (None, ""),
    (Some(AcmeState::Errored), "errored"),
    (Some(AcmeState::Expired), "expired"),
    (Some(AcmeState::Invalid), "invalid"),
    (Some(AcmeState::Pending), "pending"),
    (Some(AcmeState::Processing), "processing"),
    (Some(AcmeState::Ready), "ready"),
    (Some(AcmeState::Valid), "valid"),
];

fn seconds(t: &Option<Time>) -> Option<f64> {
    t.as_ref().map(|t| t.0.as_second() as f64)
}

fn ready(conditions: Option<&Vec<Condition>>) -> ConditionStatus {
    conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map_or(ConditionStatus::Unknown, |c| c.status)
}

/// One sample per condition value: 1 for the current one, 0 for the others.
fn ready_samples(
    family: &'static str,
    labels: &[(&'static str, String)],
    status: ConditionStatus,
) -> impl Iterator<Item = Sample> {
    CONDITIONS.into_iter().map(move |(value, name)| {
        let mut labels = labels.to_vec();
        labels.push(("condition", name.to_string()));
        Sample {
            family,
            labels,
            value: if value == status { 1.0 } else { 0.0 },
        }
    })
}

fn issuer_labels(r: &IssuerReference) -> [(&'static str, String); 3] {
    [
        ("issuer_name", r.name.clone()),
        (
            "issuer_kind",
            r.kind.clone().unwrap_or_else(|| "Issuer".into()),
        ),
        (
            "issuer_group",
            r.group.clone().unwrap_or_else(|| "cert-manager.io".into()),
        ),
    ]
}

/// A Certificate's series: readiness and its validity timestamps (0 when
/// not issued yet, as cert-manager reports them).
pub fn certificate(cert: &Certificate) -> Vec<Sample> {
    let mut labels = vec![
        ("name", cert.name_any()),
        ("namespace", cert.namespace().unwrap_or_default()),
    ];
    labels.extend(issuer_labels(&cert.spec.issuer_ref));
    let status = cert.status.clone().unwrap_or_default();
    let mut out: Vec<Sample> =
        ready_samples(CERT_READY.name, &labels, ready(status.conditions.as_ref())).collect();
    for (family, value) in [
        (CERT_EXPIRATION.name, seconds(&status.not_after)),
        (CERT_NOT_AFTER.name, seconds(&status.not_after)),
        (CERT_NOT_BEFORE.name, seconds(&status.not_before)),
        (CERT_RENEWAL.name, seconds(&status.renewal_time)),
    ] {
        out.push(Sample {
            family,
            labels: labels.clone(),
            value: value.unwrap_or(0.0),
        });
    }
    out
}

/// A Challenge's series: one per state, 1 for the current one.
pub fn challenge(ch: &Challenge) -> Vec<Sample> {
    let status = ch.status.clone().unwrap_or_default();
    let labels = vec![
        ("name", ch.name_any()),
        ("namespace", ch.namespace().unwrap_or_default()),
        ("domain", ch.spec.dns_name.clone()),
        ("processing", status.processing.unwrap_or(false).to_string()),
        ("reason", status.reason.clone().unwrap_or_default()),
        (
            "type",
            match ch.spec.type_ {
                ChallengeType::Http01 => "HTTP-01",
                ChallengeType::Dns01 => "DNS-01",
            }
            .to_string(),
        ),
    ];
    STATES
        .into_iter()
        .map(|(state, name)| {
            let mut labels = labels.clone();
            labels.push(("status", name.to_string()));
            Sample {
                family: CHALLENGE_STATUS.name,
                labels,
                value: if state == status.state { 1.0 } else { 0.0 },
            }
        })
        .collect()
}

/// An Issuer's (namespace given) or ClusterIssuer's readiness.
pub fn issuer(
    name: String,
    namespace: Option<String>,
    conditions: Option<&Vec<Condition>>,
) -> Vec<Sample> {
    let (family, labels) = match namespace {
        Some(ns) => (ISSUER_READY.name, vec![("name", name), ("namespace", ns)]),
        None => (CLUSTER_ISSUER_READY.name, vec![("name", name)]),
    };
    ready_samples(family, &labels, ready(conditions)).collect()
}

/// The samples in Prometheus' text format, grouped by family with HELP
/// and TYPE lines; families without samples are left out.
pub fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    for family in FAMILIES {
        let mut lines: Vec<String> = samples
            .iter()
            .filter(|s| s.family == family.name)
            .map(|s| {
                let mut labels = s.labels.clone();
                labels.sort_by(|a, b| a.0.cmp(b.0));
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                format!("{}{{{}}} {}", s.family, labels.join(","), s.value)
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        lines.sort();
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} gauge\n",
            family.name, family.help, family.name
        ));
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Escapes a label value (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cert(status: serde_json::Value) -> Certificate {
        serde_json::from_value(json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {"secretName": "web-tls", "dnsNames": ["a.example"],
                     "issuerRef": {"name": "le", "kind": "ClusterIssuer"}},
            "status": status}))
        .expect("certificate")
    }

    #[test]
    fn a_ready_certificate_reports_its_condition_and_timestamps() {
        let c = cert(json!({"conditions": [{"type": "Ready", "status": "True"}],
            "notBefore": "2026-01-01T00:00:00Z", "notAfter": "2026-04-01T00:00:00Z",
            "renewalTime": "2026-03-02T00:00:00Z"}));
        let text = render(&certificate(&c));
        assert!(text.contains(
            r#"certmanager_certificate_ready_status{condition="True",issuer_group="cert-manager.io",issuer_kind="ClusterIssuer",issuer_name="le",name="web",namespace="apps"} 1"#
        ), "{text}");
        assert!(text.contains(r#"certmanager_certificate_ready_status{condition="False","#));
        assert!(text.contains(
            r#"certmanager_certificate_expiration_timestamp_seconds{issuer_group="cert-manager.io",issuer_kind="ClusterIssuer",issuer_name="le",name="web",namespace="apps"} 1775001600"#
        ), "{text}");
        assert!(
            text.contains("certmanager_certificate_not_before_timestamp_seconds{")
                && text.contains("} 1767225600")
        );
        assert!(text.contains("# TYPE certmanager_certificate_renewal_timestamp_seconds gauge"));
    }

    #[test]
    fn a_new_certificate_is_unknown_with_zero_timestamps() {
        let samples = certificate(&cert(json!({})));
        let unknown = samples
            .iter()
            .find(|s| s.labels.contains(&("condition", "Unknown".into())))
            .expect("unknown sample");
        assert_eq!(unknown.value, 1.0);
        assert!(
            samples
                .iter()
                .filter(|s| s.family != CERT_READY.name)
                .all(|s| s.value == 0.0)
        );
    }

    #[test]
    fn a_challenge_has_one_series_per_state_and_one_is_set() {
        let ch: Challenge = serde_json::from_value(json!({
            "apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
            "metadata": {"name": "web-1", "namespace": "apps"},
            "spec": {"url": "u", "authorizationURL": "a", "dnsName": "a.example", "type": "HTTP-01",
                     "token": "t", "key": "k", "solver": {"http01": {"ingress": {}}},
                     "issuerRef": {"name": "le"}},
            "status": {"state": "pending", "processing": true, "reason": "Waiting \"for\" CA"}}))
        .expect("challenge");
        let samples = challenge(&ch);
        assert_eq!(samples.len(), 8);
        let set: Vec<_> = samples.iter().filter(|s| s.value == 1.0).collect();
        assert_eq!(set.len(), 1);
        assert!(set[0].labels.contains(&("status", "pending".into())));
        let text = render(&samples);
        assert!(text.contains(r#"reason="Waiting \"for\" CA""#), "{text}");
        assert!(text.contains(r#"processing="true""#) && text.contains(r#"type="HTTP-01""#));
    }

    #[test]
    fn issuers_and_cluster_issuers_are_separate_families() {
        let conditions = vec![
            serde_json::from_value::<Condition>(json!({"type": "Ready", "status": "False"}))
                .expect("condition"),
        ];
        let text = render(
            &[
                issuer("a".into(), Some("apps".into()), Some(&conditions)),
                issuer("b".into(), None, None),
            ]
            .concat(),
        );
        assert!(text.contains(
            r#"certmanager_issuer_ready_status{condition="False",name="a",namespace="apps"} 1"#
        ));
        assert!(
            text.contains(
                r#"certmanager_clusterissuer_ready_status{condition="Unknown",name="b"} 1"#
            )
        );
        assert!(!text.contains("certmanager_certificate_"));
    }
}

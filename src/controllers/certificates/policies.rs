//! The trigger's policies: whether a Certificate needs issuing now, and why, in the
//! reasons and messages cert-manager users know from `kubectl describe`
//! (DoesNotExist, MissingData, InvalidKeyPair, InvalidCertificate,
//! IncorrectIssuer, IncorrectCertificate, SecretMismatch, Expired,
//! Renewing). Pure: the caller gathers the Secret and the clock.

use std::collections::BTreeMap;

use super::renewal::ari::Suggestion;
use crate::api::{Certificate, CertificateRequest};
use crate::pki::cert::parse_chain;
use crate::pki::keys::{KeySpec, PrivateKey};
use crate::time::{rfc1123, rfc3339};

/// The parts of the target Secret the trigger looks at.
#[derive(Clone, Debug, Default)]
pub struct SecretView {
    pub annotations: BTreeMap<String, String>,
    pub data: BTreeMap<String, Vec<u8>>,
}

/// Why an issuance is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub reason: &'static str,
    pub message: String,
}

fn trigger(reason: &'static str, message: impl Into<String>) -> Option<Trigger> {
    Some(Trigger {
        reason,
        message: message.into(),
    })
}

fn issuer_string(name: &str, kind: &str, group: &str) -> String {
    let kind = if kind.is_empty() { "Issuer" } else { kind };
    let group = if group.is_empty() {
        "cert-manager.io"
    } else {
        group
    };
    format!("{kind}.{group}/{name}")
}

/// The issuer a Secret's annotations name, when they name one other than
/// `cert`'s issuerRef (the certificate held came from that one).
pub fn other_issuer(cert: &Certificate, annotations: &BTreeMap<String, String>) -> Option<String> {
    let annotation = |k: &str| annotations.get(k).map(String::as_str);
    let (name, kind, group) = (
        annotation("cert-manager.io/issuer-name"),
        annotation("cert-manager.io/issuer-kind"),
        annotation("cert-manager.io/issuer-group"),
    );
    if name.is_none() && kind.is_none() && group.is_none() {
        return None;
    }
    let have = issuer_string(name.unwrap_or(""), kind.unwrap_or(""), group.unwrap_or(""));
    let r = &cert.spec.issuer_ref;
    let want = issuer_string(
        &r.name,
        r.kind.as_deref().unwrap_or(""),
        r.group.as_deref().unwrap_or(""),
    );
    (have != want).then_some(have)
}

/// Decides whether `cert` must be (re-)issued given its Secret (None when
/// absent), the CertificateRequest of its current revision (when it still
/// exists) and the CA's renewal suggestion (when it offers one) at Unix
/// time `now`.
pub fn evaluate(
    cert: &Certificate,
    secret: Option<&SecretView>,
    request: Option<&CertificateRequest>,
    suggestion: Option<&Suggestion>,
    now: i64,
) -> Option<Trigger> {
    let Some(secret) = secret else {
        return trigger(
            "DoesNotExist",
            "Issuing certificate as Secret does not exist",
        );
    };
    if secret.data.is_empty() {
        return trigger(
            "MissingData",
            "Issuing certificate as Secret does not contain any data",
        );
    }
    let key_pem = secret.data.get("tls.key").filter(|v| !v.is_empty());
    let cert_pem = secret.data.get("tls.crt").filter(|v| !v.is_empty());
    let Some(key_pem) = key_pem else {
        return trigger(
            "MissingData",
            "Issuing certificate as Secret does not contain a private key",
        );
    };
    let Some(cert_pem) = cert_pem else {
        return trigger(
            "MissingData",
            "Issuing certificate as Secret does not contain a certificate",
        );
    };
    let key = match PrivateKey::from_pem(key_pem) {
        Ok(k) => k,
        Err(e) => {
            return trigger(
                "InvalidKeyPair",
                format!("Issuing certificate as Secret contains invalid private key data: {e}"),
            );
        }
    };
    let leaf = match parse_chain(cert_pem) {
        Ok(l) => l,
        Err(e) => {
            return trigger(
                "InvalidCertificate",
                format!("Issuing certificate as Secret contains an invalid certificate: {e}"),
            );
        }
    };
    if key.public_key_info().ok().as_deref() != Some(leaf.public_key_info.as_slice()) {
        return trigger(
            "InvalidKeyPair",
            "Issuing certificate as Secret contains a private key that does not match the certificate",
        );
    }

    let spec = &cert.spec;
    let annotation = |k: &str| secret.annotations.get(k).map(String::as_str);
    if let Some(have) = other_issuer(cert, &secret.annotations) {
        return trigger(
            "IncorrectIssuer",
            format!("Issuing certificate as Secret was previously issued by {have:?}"),
        );
    }
    if let (Some(owner), Some(name)) = (
        annotation("cert-manager.io/certificate-name"),
        cert.metadata.name.as_deref(),
    ) && owner != name
    {
        return trigger(
            "IncorrectCertificate",
            format!(
                "Secret was issued for {owner:?}. If this message is not transient, you might have two conflicting Certificates pointing to the same secret."
            ),
        );
    }

    // As cert-manager: the request of the current revision says what was
    // asked for, exactly; only without it is the leaf compared, loosely.
    if let Some(request) = request {
        let fields = super::names::misfits(request, cert, &key);
        if !fields.is_empty() {
            return trigger(
                "RequestChanged",
                format!(
                    "Fields on existing CertificateRequest resource not up to date: [{}]",
                    fields.join(", ")
                ),
            );
        }
    }
    let violations = match request {
        Some(_) => Vec::new(),
        None => super::names::violations(spec, &leaf),
    };
    if !violations.is_empty() {
        return trigger(
            "SecretMismatch",
            format!(
                "Issuing certificate as Existing issued Secret is not up to date for spec: [{}]",
                violations.join(", ")
            ),
        );
    }
    if let Ok(wanted) = KeySpec::from_spec(spec.private_key.as_ref())
        && wanted.kind != key.kind
    {
        let field = if std::mem::discriminant(&wanted.kind) == std::mem::discriminant(&key.kind) {
            "spec.privateKey.size"
        } else {
            "spec.privateKey.algorithm"
        };
        return trigger(
            "SecretMismatch",
            format!("Existing private key is not up to date for spec: [{field}]"),
        );
    }

    if now > leaf.not_after {
        return trigger(
            "Expired",
            format!("Certificate expired on {}", rfc1123(leaf.not_after)),
        );
    }
    let scheduled = super::renewal::scheduled(cert, leaf.not_before, leaf.not_after, suggestion);
    // Policy Disabled: never renewed (an expired one is re-issued above).
    let renewal = scheduled.at?;
    if now >= renewal {
        let message = match suggestion {
            Some(s) if renewal == s.renew_at => format!(
                "Renewing certificate as suggested by the CA's renewal information (window {} to {})",
                rfc3339(s.start),
                rfc3339(s.end)
            ),
            _ => format!(
                "Renewing certificate as renewal was scheduled at {}",
                rfc3339(renewal)
            ),
        };
        return trigger("Renewing", message);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::certificate::{CertificatePrivateKey, CertificateSpec, PrivateKeyAlgorithm};
    use crate::api::meta::IssuerReference;
    use crate::pki::keys::KeyKind;

    const DAY: i64 = 86_400;
    const ISSUED: i64 = 1_767_225_600; // 2026-01-01

    fn certificate(names: &[&str]) -> Certificate {
        let mut c = Certificate::new(
            "web",
            CertificateSpec {
                secret_name: "web-tls".into(),
                dns_names: Some(names.iter().map(|s| s.to_string()).collect()),
                issuer_ref: IssuerReference {
                    name: "le".into(),
                    kind: Some("ClusterIssuer".into()),
                    group: None,
                },
                private_key: Some(CertificatePrivateKey {
                    algorithm: Some(PrivateKeyAlgorithm::Ecdsa),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        c.metadata.namespace = Some("default".into());
        c
    }

    /// A Secret holding a 90-day certificate for `names` issued at ISSUED.
    fn secret(names: &[&str], kind: KeyKind) -> SecretView {
        let key = PrivateKey::generate(kind).expect("key");
        let pair = key.key_pair().expect("pair");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2026, 4, 1);
        let cert = params.self_signed(&pair).expect("cert");
        SecretView {
            annotations: [
                ("cert-manager.io/issuer-name".to_string(), "le".to_string()),
                (
                    "cert-manager.io/issuer-kind".to_string(),
                    "ClusterIssuer".to_string(),
                ),
                (
                    "cert-manager.io/certificate-name".to_string(),
                    "web".to_string(),
                ),
            ]
            .into(),
            data: [
                (
                    "tls.key".to_string(),
                    key.to_pem(crate::api::certificate::PrivateKeyEncoding::Pkcs8)
                        .expect("pem")
                        .into_bytes(),
                ),
                ("tls.crt".to_string(), cert.pem().into_bytes()),
            ]
            .into(),
        }
    }

    fn reason(t: Option<Trigger>) -> Option<&'static str> {
        t.map(|t| t.reason)
    }

    #[test]
    fn secret_presence_and_data() {
        crate::install_crypto_provider();
        let c = certificate(&["a.example.com"]);
        assert_eq!(
            evaluate(&c, None, None, None, ISSUED),
            trigger(
                "DoesNotExist",
                "Issuing certificate as Secret does not exist"
            )
        );
        assert_eq!(
            reason(evaluate(
                &c,
                Some(&SecretView::default()),
                None,
                None,
                ISSUED
            )),
            Some("MissingData")
        );
        let mut s = secret(&["a.example.com"], KeyKind::Ecdsa(256));
        s.data.remove("tls.crt");
        assert_eq!(
            evaluate(&c, Some(&s), None, None, ISSUED)
                .map(|t| t.message)
                .as_deref(),
            Some("Issuing certificate as Secret does not contain a certificate")
        );
        s.data.remove("tls.key");
        s.data.insert("ca.crt".into(), b"x".to_vec());
        assert_eq!(
            evaluate(&c, Some(&s), None, None, ISSUED)
                .map(|t| t.message)
                .as_deref(),
            Some("Issuing certificate as Secret does not contain a private key")
        );
    }

    #[test]
    fn broken_or_mismatched_key_pairs() {
        crate::install_crypto_provider();
        let c = certificate(&["a.example.com"]);
        let mut s = secret(&["a.example.com"], KeyKind::Ecdsa(256));
        let good = s.clone();
        s.data.insert("tls.key".into(), b"junk".to_vec());
        assert_eq!(
            reason(evaluate(&c, Some(&s), None, None, ISSUED)),
            Some("InvalidKeyPair")
        );
        let mut s = good.clone();
        s.data.insert(
            "tls.crt".into(),
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
        );
        assert_eq!(
            reason(evaluate(&c, Some(&s), None, None, ISSUED)),
            Some("InvalidCertificate")
        );
        let mut s = good.clone();
        s.data.insert(
            "tls.key".into(),
            secret(&["x"], KeyKind::Ecdsa(256)).data["tls.key"].clone(),
        );
        assert_eq!(
            evaluate(&c, Some(&s), None, None, ISSUED)
                .map(|t| t.message)
                .as_deref(),
            Some(
                "Issuing certificate as Secret contains a private key that does not match the certificate"
            )
        );
        assert_eq!(
            evaluate(&c, Some(&good), None, None, ISSUED + DAY),
            None,
            "a healthy Secret needs nothing"
        );
    }

    #[test]
    fn issuer_owner_and_spec_changes() {
        crate::install_crypto_provider();
        let c = certificate(&["a.example.com"]);
        let good = secret(&["a.example.com"], KeyKind::Ecdsa(256));
        let mut s = good.clone();
        s.annotations
            .insert("cert-manager.io/issuer-name".into(), "old".into());
        assert_eq!(
            evaluate(&c, Some(&s), None, None, ISSUED),
            trigger(
                "IncorrectIssuer",
                "Issuing certificate as Secret was previously issued by \"ClusterIssuer.cert-manager.io/old\""
            )
        );
        let mut s = good.clone();
        s.annotations
            .insert("cert-manager.io/certificate-name".into(), "other".into());
        assert_eq!(
            reason(evaluate(&c, Some(&s), None, None, ISSUED)),
            Some("IncorrectCertificate")
        );
        let changed = certificate(&["a.example.com", "b.example.com"]);
        assert_eq!(
            evaluate(&changed, Some(&good), None, None, ISSUED),
            trigger(
                "SecretMismatch",
                "Issuing certificate as Existing issued Secret is not up to date for spec: [spec.dnsNames]"
            )
        );
        let mut bigger = c.clone();
        bigger.spec.private_key = Some(CertificatePrivateKey {
            algorithm: Some(PrivateKeyAlgorithm::Ecdsa),
            size: Some(384),
            ..Default::default()
        });
        assert_eq!(
            evaluate(&bigger, Some(&good), None, None, ISSUED),
            trigger(
                "SecretMismatch",
                "Existing private key is not up to date for spec: [spec.privateKey.size]"
            )
        );
        let mut rsa = c.clone();
        rsa.spec.private_key = None;
        assert_eq!(
            reason(evaluate(&rsa, Some(&good), None, None, ISSUED)),
            Some("SecretMismatch"),
            "default algorithm is RSA"
        );
    }

    /// The request of the current revision, as the request manager made it
    /// from the Secret's key.
    fn request_for(c: &Certificate, s: &SecretView) -> CertificateRequest {
        let key = PrivateKey::from_pem(&s.data["tls.key"]).expect("key");
        let csr = crate::pki::csr::build(&c.spec, &key).expect("csr");
        CertificateRequest::new(
            "web-1",
            super::super::request_manager::request_spec(c, &csr.pem),
        )
    }

    #[test]
    fn the_current_request_is_compared_exactly_and_the_leaf_is_not() {
        crate::install_crypto_provider();
        let mut c = certificate(&["a.example.com", "b.example.com"]);
        c.spec.common_name = Some("b.example.com".into());
        c.spec.email_addresses = Some(vec!["ops@example.com".into()]);
        // The CA moved the CN and dropped the email SAN (pebble does).
        let s = secret(&["a.example.com", "b.example.com"], KeyKind::Ecdsa(256));
        let request = request_for(&c, &s);
        assert_eq!(evaluate(&c, Some(&s), Some(&request), None, ISSUED), None);
        // A field the CA drops is still noticed when the spec changes it.
        let mut edited = c.clone();
        edited.spec.email_addresses = Some(vec!["security@example.com".into()]);
        assert_eq!(
            evaluate(&edited, Some(&s), Some(&request), None, ISSUED),
            trigger(
                "RequestChanged",
                "Fields on existing CertificateRequest resource not up to date: [spec.emailAddresses]"
            )
        );
        let mut edited = c.clone();
        edited.spec.duration = Some("2160h".into());
        assert_eq!(
            reason(evaluate(&edited, Some(&s), Some(&request), None, ISSUED)),
            Some("RequestChanged")
        );
        // A request from another key than the Secret's is not the current one's.
        let other = secret(&["a.example.com"], KeyKind::Ecdsa(256));
        assert_eq!(
            evaluate(&c, Some(&s), Some(&request_for(&c, &other)), None, ISSUED),
            trigger(
                "RequestChanged",
                "Fields on existing CertificateRequest resource not up to date: [spec.privateKey]"
            )
        );
    }

    #[test]
    fn expiry_and_renewal_windows() {
        crate::install_crypto_provider();
        let c = certificate(&["a.example.com"]);
        let s = secret(&["a.example.com"], KeyKind::Ecdsa(256));
        assert_eq!(evaluate(&c, Some(&s), None, None, ISSUED + 59 * DAY), None);
        assert_eq!(
            evaluate(&c, Some(&s), None, None, ISSUED + 60 * DAY),
            trigger(
                "Renewing",
                "Renewing certificate as renewal was scheduled at 2026-03-02T00:00:00Z"
            )
        );
        let mut early = c.clone();
        early.spec.renew_before = Some("720h".into());
        assert_eq!(
            reason(evaluate(&early, Some(&s), None, None, ISSUED + 60 * DAY)),
            Some("Renewing")
        );
        assert_eq!(
            reason(evaluate(&early, Some(&s), None, None, ISSUED + 59 * DAY)),
            None,
            "30 days before expiry is day 60"
        );
        assert_eq!(
            evaluate(&c, Some(&s), None, None, ISSUED + 91 * DAY),
            trigger(
                "Expired",
                "Certificate expired on Wed, 01 Apr 2026 00:00:00 UTC"
            )
        );
    }
}

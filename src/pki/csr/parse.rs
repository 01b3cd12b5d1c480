//! Reading a CSR back: every field certwright puts in one, so a request
//! can be compared with what the current spec would ask for. Names are
//! compared as sets (lower case DNS names, canonical addresses), as the
//! order of SANs means nothing to a CA.

use std::collections::BTreeSet;
use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::CsrError;

/// What a PEM CSR asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedCsr {
    pub der: Vec<u8>,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    /// (OID, DER of the value) of each otherName SAN.
    pub other_names: Vec<(String, Vec<u8>)>,
    /// (OID, value) of each subject attribute but the common name.
    pub subject: Vec<(String, String)>,
    pub is_ca: bool,
    /// The key usage bits, when the extension is present.
    pub key_usage: Option<u16>,
    /// Extended key usage OIDs.
    pub extended_key_usages: Vec<String>,
    pub public_key_info: Vec<u8>,
}

const COMMON_NAME: &str = "2.5.4.3";

/// Parses a PEM CSR (as CertificateRequests carry it).
pub fn parse(pem_text: &[u8]) -> Result<ParsedCsr, CsrError> {
    let invalid = |why: String| CsrError::Invalid {
        field: "spec.request",
        value: String::new(),
        why,
    };
    let text = std::str::from_utf8(pem_text).map_err(|e| invalid(e.to_string()))?;
    let block = pem::parse(text).map_err(|e| invalid(e.to_string()))?;
    let der = block.contents().to_vec();
    let (_, csr) = X509CertificationRequest::from_der(&der).map_err(|e| invalid(e.to_string()))?;
    let info = &csr.certification_request_info;
    let mut parsed = ParsedCsr {
        public_key_info: info.subject_pki.raw.to_vec(),
        ..Default::default()
    };
    for attr in info.subject.iter_attributes() {
        let oid = attr.attr_type().to_id_string();
        let value = attr
            .as_str()
            .map(String::from)
            .unwrap_or_else(|_| String::from_utf8_lossy(attr.attr_value().data).into_owned());
        if oid == COMMON_NAME && parsed.common_name.is_none() {
            parsed.common_name = Some(value);
        } else {
            parsed.subject.push((oid, value));
        }
    }
    for ext in csr.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => parsed.dns_names.push(d.to_string()),
                        GeneralName::IPAddress(b) => {
                            parsed.ip_addresses.extend(crate::pki::cert::ip_san(b))
                        }
                        GeneralName::URI(u) => parsed.uris.push(u.to_string()),
                        GeneralName::RFC822Name(e) => parsed.email_addresses.push(e.to_string()),
                        GeneralName::OtherName(oid, value) => parsed
                            .other_names
                            .push((oid.to_id_string(), value.to_vec())),
                        _ => {}
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => parsed.is_ca = bc.ca,
            ParsedExtension::KeyUsage(ku) => parsed.key_usage = Some(ku.flags),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let known = [
                    (eku.any, "2.5.29.37.0"),
                    (eku.server_auth, "1.3.6.1.5.5.7.3.1"),
                    (eku.client_auth, "1.3.6.1.5.5.7.3.2"),
                    (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
                    (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
                    (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
                    (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
                ];
                parsed.extended_key_usages.extend(
                    known
                        .into_iter()
                        .filter(|(set, _)| *set)
                        .map(|(_, oid)| oid.to_string()),
                );
                parsed
                    .extended_key_usages
                    .extend(eku.other.iter().map(|o| o.to_id_string()));
            }
            _ => {}
        }
    }
    parsed.der = der;
    Ok(parsed)
}

fn lower(names: &[String]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_ascii_lowercase()).collect()
}

fn addresses(ips: &[String]) -> BTreeSet<String> {
    ips.iter()
        .map(|ip| match ip.parse::<IpAddr>() {
            Ok(addr) => addr.to_canonical().to_string(),
            Err(_) => ip.clone(),
        })
        .collect()
}

fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
    items.iter().cloned().collect()
}

/// The spec fields in which request `have` differs from `want` (what the
/// spec asks for now), in cert-manager's field names. The key is not
/// compared: callers that care compare `public_key_info`.
pub fn differences(have: &ParsedCsr, want: &ParsedCsr) -> Vec<&'static str> {
    let checks = [
        (
            have.common_name.as_ref().map(|c| c.to_ascii_lowercase())
                == want.common_name.as_ref().map(|c| c.to_ascii_lowercase()),
            "spec.commonName",
        ),
        (
            lower(&have.dns_names) == lower(&want.dns_names),
            "spec.dnsNames",
        ),
        (
            addresses(&have.ip_addresses) == addresses(&want.ip_addresses),
            "spec.ipAddresses",
        ),
        (set(&have.uris) == set(&want.uris), "spec.uris"),
        (
            lower(&have.email_addresses) == lower(&want.email_addresses),
            "spec.emailAddresses",
        ),
        (
            set(&have.other_names) == set(&want.other_names),
            "spec.otherNames",
        ),
        (set(&have.subject) == set(&want.subject), "spec.subject"),
        (have.is_ca == want.is_ca, "spec.isCA"),
        (
            have.key_usage == want.key_usage
                && set(&have.extended_key_usages) == set(&want.extended_key_usages),
            "spec.usages",
        ),
    ];
    checks
        .into_iter()
        .filter(|(same, _)| !same)
        .map(|(_, field)| field)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::build;
    use super::*;
    use crate::api::CertificateSpec;
    use crate::api::certificate::X509Subject;
    use crate::api::meta::KeyUsage;
    use crate::pki::keys::{KeyKind, PrivateKey};

    fn parsed(spec: &CertificateSpec, key: &PrivateKey) -> ParsedCsr {
        parse(build(spec, key).expect("csr").pem.as_bytes()).expect("parse")
    }

    fn base() -> CertificateSpec {
        CertificateSpec {
            common_name: Some("a.example.com".into()),
            dns_names: Some(vec!["a.example.com".into(), "b.example.com".into()]),
            ..Default::default()
        }
    }

    #[test]
    fn the_same_spec_matches_whatever_the_key_and_order() {
        crate::install_crypto_provider();
        let one = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
        let two = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
        let mut reordered = base();
        reordered.dns_names = Some(vec!["B.example.com".into(), "a.example.com".into()]);
        assert_eq!(
            differences(&parsed(&base(), &one), &parsed(&reordered, &two)),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn every_field_that_goes_into_the_csr_is_compared() {
        crate::install_crypto_provider();
        let key = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
        let before = parsed(&base(), &key);
        type Edit = fn(&mut CertificateSpec);
        let edits: [(&str, Edit); 9] = [
            ("spec.commonName", |s| {
                s.common_name = Some("b.example.com".into())
            }),
            ("spec.dnsNames", |s| {
                s.dns_names
                    .as_mut()
                    .expect("names")
                    .push("c.example.com".into())
            }),
            ("spec.ipAddresses", |s| {
                s.ip_addresses = Some(vec!["192.0.2.1".into()])
            }),
            ("spec.uris", |s| s.uris = Some(vec!["spiffe://x/y".into()])),
            ("spec.emailAddresses", |s| {
                s.email_addresses = Some(vec!["ops@example.com".into()])
            }),
            ("spec.otherNames", |s| {
                s.other_names = Some(vec![crate::api::certificate::OtherName {
                    oid: Some("1.3.6.1.4.1.311.20.2.3".into()),
                    utf8_value: Some("upn@example.com".into()),
                }])
            }),
            ("spec.subject", |s| {
                s.subject = Some(X509Subject {
                    organizations: Some(vec!["Example".into()]),
                    ..Default::default()
                })
            }),
            ("spec.isCA", |s| s.is_ca = Some(true)),
            ("spec.usages", |s| {
                s.usages = Some(vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth])
            }),
        ];
        for (field, edit) in edits {
            let mut spec = base();
            edit(&mut spec);
            let after = parsed(&spec, &key);
            let found = differences(&before, &after);
            // isCA also adds the certSign usage.
            assert!(found.first() == Some(&field), "{field}: found {found:?}");
        }
    }

    #[test]
    fn addresses_compare_as_addresses() {
        crate::install_crypto_provider();
        let key = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
        let mut one = base();
        one.ip_addresses = Some(vec!["2001:DB8::1".into()]);
        let mut two = base();
        two.ip_addresses = Some(vec!["2001:db8:0::1".into()]);
        assert_eq!(
            differences(&parsed(&one, &key), &parsed(&two, &key)),
            Vec::<&str>::new()
        );
    }
}

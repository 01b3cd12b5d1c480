//! The CSR of a Certificate: subject, subject alternative names, basic
//! constraints and (unless `encodeUsagesInRequest: false`) key usages,
//! signed with the Certificate's private key.

use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose as Eku, IsCa, KeyUsagePurpose as Ku, OtherNameValue,
    SanType,
};

mod parse;

pub use parse::{ParsedCsr, differences, parse};

use super::keys::PrivateKey;
use crate::api::CertificateSpec;
use crate::api::meta::KeyUsage;

/// A signed PKCS#10 request.
#[derive(Clone, Debug)]
pub struct Csr {
    pub der: Vec<u8>,
    pub pem: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    #[error("{field}: {value:?} is not valid: {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: String,
    },
    #[error("{0} is not supported by certwright")]
    Unsupported(&'static str),
    #[error("signing the CSR failed: {0}")]
    Sign(String),
}

enum Usage {
    Key(Ku),
    Extended(Eku),
}

fn usage(u: KeyUsage) -> Usage {
    use KeyUsage::*;
    match u {
        Signing | DigitalSignature => Usage::Key(Ku::DigitalSignature),
        ContentCommitment => Usage::Key(Ku::ContentCommitment),
        KeyEncipherment => Usage::Key(Ku::KeyEncipherment),
        KeyAgreement => Usage::Key(Ku::KeyAgreement),
        DataEncipherment => Usage::Key(Ku::DataEncipherment),
        CertSign => Usage::Key(Ku::KeyCertSign),
        CrlSign => Usage::Key(Ku::CrlSign),
        EncipherOnly => Usage::Key(Ku::EncipherOnly),
        DecipherOnly => Usage::Key(Ku::DecipherOnly),
        Any => Usage::Extended(Eku::Any),
        ServerAuth => Usage::Extended(Eku::ServerAuth),
        ClientAuth => Usage::Extended(Eku::ClientAuth),
        CodeSigning => Usage::Extended(Eku::CodeSigning),
        EmailProtection | SMime => Usage::Extended(Eku::EmailProtection),
        Timestamping => Usage::Extended(Eku::TimeStamping),
        OcspSigning => Usage::Extended(Eku::OcspSigning),
        IpsecEndSystem => Usage::Extended(Eku::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5])),
        IpsecTunnel => Usage::Extended(Eku::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6])),
        IpsecUser => Usage::Extended(Eku::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7])),
        MicrosoftSgc => Usage::Extended(Eku::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 3])),
        NetscapeSgc => Usage::Extended(Eku::Other(vec![2, 16, 840, 1, 113_730, 4, 1])),
    }
}

fn oid(text: &str) -> Option<Vec<u64>> {
    text.split('.').map(|p| p.parse().ok()).collect()
}

fn ia5(field: &'static str, value: &str) -> Result<rcgen::string::Ia5String, CsrError> {
    value
        .to_string()
        .try_into()
        .map_err(|e: rcgen::Error| CsrError::Invalid {
            field,
            value: value.into(),
            why: e.to_string(),
        })
}

/// Builds and signs the CSR for `spec` with `key`.
pub fn build(spec: &CertificateSpec, key: &PrivateKey) -> Result<Csr, CsrError> {
    let subject = super::subject::rdns(spec).map_err(|why| CsrError::Invalid {
        field: "spec.literalSubject",
        value: spec.literal_subject.clone().unwrap_or_default(),
        why,
    })?;
    let mut params = CertificateParams::default();
    // rcgen's default subject is "CN=rcgen self signed cert"; the subject
    // is ours (rcgen keeps one value per type), put in below.
    params.distinguished_name = rcgen::DistinguishedName::new();
    for name in spec.dns_names.iter().flatten() {
        params
            .subject_alt_names
            .push(SanType::DnsName(ia5("spec.dnsNames", name)?));
    }
    // A common name must also be a SAN (CAs validate and issue SANs; the
    // order asks for it): a CN missing from dnsNames and ipAddresses is added.
    if let Some(cn) = &super::subject::common_name(spec) {
        let listed = spec
            .dns_names
            .iter()
            .flatten()
            .chain(spec.ip_addresses.iter().flatten())
            .any(|n| n.eq_ignore_ascii_case(cn));
        if !listed {
            match cn.parse::<std::net::IpAddr>() {
                Ok(ip) => params.subject_alt_names.push(SanType::IpAddress(ip)),
                Err(_) => params
                    .subject_alt_names
                    .push(SanType::DnsName(ia5("spec.commonName", cn)?)),
            }
        }
    }
    for ip in spec.ip_addresses.iter().flatten() {
        let parsed = ip
            .parse()
            .map_err(|e: std::net::AddrParseError| CsrError::Invalid {
                field: "spec.ipAddresses",
                value: ip.clone(),
                why: e.to_string(),
            })?;
        params.subject_alt_names.push(SanType::IpAddress(parsed));
    }
    for uri in spec.uris.iter().flatten() {
        params
            .subject_alt_names
            .push(SanType::URI(ia5("spec.uris", uri)?));
    }
    for email in spec.email_addresses.iter().flatten() {
        params
            .subject_alt_names
            .push(SanType::Rfc822Name(ia5("spec.emailAddresses", email)?));
    }
    for other in spec.other_names.iter().flatten() {
        let text = other.oid.clone().unwrap_or_default();
        let parsed = oid(&text).ok_or_else(|| CsrError::Invalid {
            field: "spec.otherNames.oid",
            value: text.clone(),
            why: "not a dotted OID".into(),
        })?;
        params.subject_alt_names.push(SanType::OtherName((
            parsed,
            OtherNameValue::Utf8String(other.utf8_value.clone().unwrap_or_default()),
        )));
    }
    if spec.is_ca == Some(true) {
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    if spec.encode_usages_in_request != Some(false) {
        let mut usages = spec
            .usages
            .clone()
            .unwrap_or_else(|| vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment]);
        if spec.is_ca == Some(true) && !usages.contains(&KeyUsage::CertSign) {
            usages.push(KeyUsage::CertSign);
        }
        for u in usages {
            match usage(u) {
                Usage::Key(k) if !params.key_usages.contains(&k) => params.key_usages.push(k),
                Usage::Extended(e) if !params.extended_key_usages.contains(&e) => {
                    params.extended_key_usages.push(e)
                }
                _ => {}
            }
        }
    }
    if spec.name_constraints.is_some() {
        return Err(CsrError::Unsupported(
            "spec.nameConstraints (only CA certificates carry them, and ACME CAs issue none)",
        ));
    }
    let pair = match spec.signature_algorithm {
        None => key.key_pair(),
        Some(wanted) => key.key_pair_with(signing(wanted, key.kind)?),
    }
    .map_err(|e| CsrError::Sign(e.to_string()))?;
    let csr = params
        .serialize_request(&pair)
        .map_err(|e| CsrError::Sign(e.to_string()))?;
    let der = with_subject(csr.der(), &super::subject::encode(&subject), &pair)?;
    let pem = pem::encode_config(
        &pem::Pem::new("CERTIFICATE REQUEST", der.clone()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok(Csr { der, pem })
}

/// rcgen's algorithm for `spec.signatureAlgorithm` with a key of `kind`.
fn signing(
    wanted: crate::api::certificate::SignatureAlgorithm,
    kind: super::keys::KeyKind,
) -> Result<&'static rcgen::SignatureAlgorithm, CsrError> {
    use super::keys::KeyKind::{Ecdsa, Ed25519, Rsa};
    use crate::api::certificate::SignatureAlgorithm as S;
    Ok(match (wanted, kind) {
        (S::Sha256WithRsa, Rsa(_)) => &rcgen::PKCS_RSA_SHA256,
        (S::Sha384WithRsa, Rsa(_)) => &rcgen::PKCS_RSA_SHA384,
        (S::Sha512WithRsa, Rsa(_)) => &rcgen::PKCS_RSA_SHA512,
        (S::EcdsaWithSha256, Ecdsa(256)) => &rcgen::PKCS_ECDSA_P256_SHA256,
        (S::EcdsaWithSha384, Ecdsa(384)) => &rcgen::PKCS_ECDSA_P384_SHA384,
        (S::EcdsaWithSha256, Ecdsa(521)) => &rcgen::PKCS_ECDSA_P521_SHA256,
        (S::EcdsaWithSha384, Ecdsa(521)) => &rcgen::PKCS_ECDSA_P521_SHA384,
        (S::EcdsaWithSha512, Ecdsa(521)) => &rcgen::PKCS_ECDSA_P521_SHA512,
        (S::PureEd25519, Ed25519) => &rcgen::PKCS_ED25519,
        (wanted, kind) => {
            let name = serde_json::to_value(wanted)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            return Err(CsrError::Invalid {
                field: "spec.signatureAlgorithm",
                value: name,
                why: format!(
                    "cannot sign with a {kind:?} key (certwright signs RSA keys with SHA256/384/512WithRSA, P-256 with ECDSAWithSHA256, P-384 with ECDSAWithSHA384, P-521 with any ECDSAWithSHA, Ed25519 with PureEd25519)"
                ),
            });
        }
    })
}

/// The CSR `der` (with an empty subject) with `subject` put in, signed again.
fn with_subject(der: &[u8], subject: &[u8], key: &rcgen::KeyPair) -> Result<Vec<u8>, CsrError> {
    use super::der as d;
    use rcgen::SigningKey;
    let bad = || CsrError::Sign("unexpected CSR structure".into());
    let (outer, _) = d::read(der).ok_or_else(bad)?;
    let [info, algorithm, _signature] = d::children(outer.content)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    let fields = d::children(info.content).ok_or_else(bad)?;
    let [version, _empty, public_key, attributes] = fields.try_into().map_err(|_| bad())?;
    let info = d::seq(&[version.raw, subject, public_key.raw, attributes.raw]);
    let signature = key.sign(&info).map_err(|e| CsrError::Sign(e.to_string()))?;
    // A BIT STRING with no unused bits.
    let bits = d::write(0x03, &[&[0u8][..], &signature].concat());
    Ok(d::seq(&[&info, algorithm.raw, &bits]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::certificate::{OtherName, X509Subject};
    use crate::pki::keys::KeyKind;
    use x509_parser::prelude::FromDer;

    #[test]
    fn names_subject_and_usages_land_in_the_request() {
        crate::install_crypto_provider();
        let spec = CertificateSpec {
            common_name: Some("a.example.com".into()),
            dns_names: Some(vec!["a.example.com".into(), "b.example.com".into()]),
            ip_addresses: Some(vec!["192.0.2.1".into()]),
            uris: Some(vec!["spiffe://cluster.local/ns/a/sa/b".into()]),
            email_addresses: Some(vec!["ops@example.com".into()]),
            other_names: Some(vec![OtherName {
                oid: Some("1.3.6.1.4.1.311.20.2.3".into()),
                utf8_value: Some("upn@example.com".into()),
            }]),
            subject: Some(X509Subject {
                organizations: Some(vec!["Example".into()]),
                countries: Some(vec!["GB".into()]),
                ..Default::default()
            }),
            usages: Some(vec![KeyUsage::DigitalSignature, KeyUsage::ServerAuth]),
            ..Default::default()
        };
        let key = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
        let csr = build(&spec, &key).expect("csr");
        assert!(csr.pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&csr.der)
                .expect("parses");
        let subject = parsed.certification_request_info.subject.to_string();
        assert!(
            subject.contains("CN=a.example.com")
                && subject.contains("O=Example")
                && subject.contains("C=GB"),
            "{subject}"
        );
        assert_eq!(
            parsed.certification_request_info.subject_pki.raw,
            key.public_key_info().expect("spki").as_slice()
        );
        let mut sans = Vec::new();
        for ext in parsed.requested_extensions().into_iter().flatten() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                sans.extend(san.general_names.iter().map(|n| format!("{n}")));
            }
        }
        assert_eq!(sans.len(), 6, "{sans:?}");
        let round = parse(csr.pem.as_bytes()).expect("parses back");
        assert_eq!(round.dns_names, ["a.example.com", "b.example.com"]);
        assert_eq!(round.ip_addresses, ["192.0.2.1"]);
        assert_eq!(round.common_name.as_deref(), Some("a.example.com"));
        assert_eq!(round.der, csr.der);
        assert!(sans.iter().any(|s| s.contains("b.example.com")));
    }

    #[test]
    fn bad_input_is_named_by_field() {
        crate::install_crypto_provider();
        let key = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
        let spec = CertificateSpec {
            ip_addresses: Some(vec!["999.1.1.1".into()]),
            ..Default::default()
        };
        assert!(matches!(
            build(&spec, &key),
            Err(CsrError::Invalid {
                field: "spec.ipAddresses",
                ..
            })
        ));
        let spec = CertificateSpec {
            literal_subject: Some("CN=x,MAIL=y".into()),
            ..Default::default()
        };
        assert!(matches!(
            build(&spec, &key),
            Err(CsrError::Invalid { field: "spec.literalSubject", why, .. }) if why.contains("\"MAIL\"")
        ));
    }

    /// Checks the CSR's own signature with its public key.
    fn signature_holds(der: &[u8]) -> bool {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256};
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
            .expect("parses");
        let info = csr.certification_request_info.raw;
        let key = &csr
            .certification_request_info
            .subject_pki
            .subject_public_key
            .data;
        let alg: &dyn aws_lc_rs::signature::VerificationAlgorithm =
            match csr.signature_algorithm.algorithm.to_id_string().as_str() {
                "1.2.840.10045.4.3.2" => &ECDSA_P256_SHA256_ASN1,
                "1.2.840.113549.1.1.11" => &RSA_PKCS1_2048_8192_SHA256,
                other => panic!("unexpected algorithm {other}"),
            };
        aws_lc_rs::signature::UnparsedPublicKey::new(alg, key.as_ref())
            .verify(info, &csr.signature_value.data)
            .is_ok()
    }

    #[test]
    fn every_subject_value_and_a_literal_subject_reach_the_signed_request() {
        crate::install_crypto_provider();
        let key = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
        let spec = CertificateSpec {
            common_name: Some("a.example.com".into()),
            subject: Some(X509Subject {
                organizations: Some(vec!["One".into(), "Two".into()]),
                organizational_units: Some(vec!["Web".into(), "Edge".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let csr = build(&spec, &key).expect("csr");
        assert!(
            signature_holds(&csr.der),
            "signed again after the subject went in"
        );
        let parsed = parse(csr.pem.as_bytes()).expect("parse");
        assert_eq!(parsed.common_name.as_deref(), Some("a.example.com"));
        let values: Vec<&str> = parsed.subject.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["One", "Two", "Web", "Edge"]);

        let rsa = PrivateKey::generate(KeyKind::Rsa(2048)).expect("rsa");
        let spec = CertificateSpec {
            literal_subject: Some("CN=lit.example.com,OU=A+OU=B,DC=example,DC=com".into()),
            ..Default::default()
        };
        let csr = build(&spec, &rsa).expect("csr");
        assert!(signature_holds(&csr.der));
        let (_, raw) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&csr.der)
                .expect("parses");
        assert_eq!(
            raw.certification_request_info.subject.to_string(),
            "DC=com, DC=example, OU=A + OU=B, CN=lit.example.com"
        );
        let parsed = parse(csr.pem.as_bytes()).expect("parse");
        assert_eq!(parsed.common_name.as_deref(), Some("lit.example.com"));
        assert_eq!(parsed.dns_names, ["lit.example.com"], "the CN is a SAN too");
    }

    #[test]
    fn the_signature_algorithm_is_the_one_asked_for_or_refused() {
        use crate::api::certificate::SignatureAlgorithm as S;
        crate::install_crypto_provider();
        let rsa = PrivateKey::generate(KeyKind::Rsa(2048)).expect("rsa");
        let mut spec = CertificateSpec {
            dns_names: Some(vec!["a.example.com".into()]),
            signature_algorithm: Some(S::Sha384WithRsa),
            ..Default::default()
        };
        let csr = build(&spec, &rsa).expect("csr");
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&csr.der)
                .expect("parses");
        assert_eq!(
            parsed.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.113549.1.1.12",
            "sha384WithRSAEncryption"
        );
        spec.signature_algorithm = Some(S::EcdsaWithSha256);
        let err = build(&spec, &rsa).expect_err("an RSA key cannot sign ECDSA");
        assert!(err.to_string().contains("spec.signatureAlgorithm"), "{err}");
        spec.signature_algorithm = None;
        spec.name_constraints = Some(Default::default());
        assert!(
            matches!(build(&spec, &rsa), Err(CsrError::Unsupported(m)) if m.contains("nameConstraints"))
        );
    }

    #[test]
    fn a_common_name_outside_the_sans_is_added_to_them() {
        crate::install_crypto_provider();
        let key = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
        let spec = CertificateSpec {
            common_name: Some("cn.example.com".into()),
            dns_names: Some(vec!["a.example.com".into()]),
            ..Default::default()
        };
        let round = parse(build(&spec, &key).expect("csr").pem.as_bytes()).expect("parse");
        assert_eq!(round.dns_names, ["a.example.com", "cn.example.com"]);
        let spec = CertificateSpec {
            common_name: Some("A.example.com".into()),
            dns_names: Some(vec!["a.example.com".into()]),
            ..Default::default()
        };
        let round = parse(build(&spec, &key).expect("csr").pem.as_bytes()).expect("parse");
        assert_eq!(round.dns_names, ["a.example.com"], "already listed");
    }

    #[test]
    fn without_a_common_name_the_subject_is_empty() {
        crate::install_crypto_provider();
        let key = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
        let spec = CertificateSpec {
            dns_names: Some(vec!["a.example.com".into()]),
            ..Default::default()
        };
        let csr = build(&spec, &key).expect("csr");
        let parsed = parse(csr.pem.as_bytes()).expect("parse");
        assert_eq!(parsed.common_name, None, "no default subject sneaks in");
    }
}

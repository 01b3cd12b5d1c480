//! What a certificate in a Secret holds, for `status` and `inspect`.

use k8s_openapi::jiff::Timestamp;
use x509_parser::prelude::*;

use crate::pki::cert::ip_san;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub subject: String,
    pub issuer: String,
    /// Colon-separated hex, as openssl prints it.
    pub serial: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    pub signature_algorithm: String,
    /// `RSA 2048`, `ECDSA P-256`, `Ed25519`.
    pub public_key: String,
    pub sha256_fingerprint: String,
    pub is_ca: bool,
    pub key_usages: Vec<String>,
    pub extended_key_usages: Vec<String>,
    /// Certificates in the PEM (leaf included).
    pub chain_len: usize,
    /// The issuers named by the rest of the chain, leaf's issuer first.
    pub chain_subjects: Vec<String>,
}

/// The leaf of a PEM chain, and what follows it.
pub fn of_chain(pem_text: &str) -> Result<Details, String> {
    let ders = crate::pki::keystore::certificates(pem_text).map_err(|e| e.to_string())?;
    let leaf = ders.first().ok_or("no certificate in tls.crt")?;
    let (_, cert) = parse_x509_certificate(leaf).map_err(|e| format!("tls.crt: {e}"))?;
    let mut d = Details {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: Timestamp::from_second(cert.validity().not_before.timestamp())
            .unwrap_or_default(),
        not_after: Timestamp::from_second(cert.validity().not_after.timestamp())
            .unwrap_or_default(),
        signature_algorithm: signature_name(&cert.signature_algorithm.algorithm.to_id_string()),
        public_key: public_key_name(&cert),
        sha256_fingerprint: aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
        is_ca: cert.is_ca(),
        chain_len: ders.len(),
        ..Default::default()
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => d.dns_names.push(n.to_string()),
                GeneralName::IPAddress(b) => d.ip_addresses.extend(ip_san(b)),
                GeneralName::URI(u) => d.uris.push(u.to_string()),
                GeneralName::RFC822Name(e) => d.email_addresses.push(e.to_string()),
                _ => {}
            }
        }
    }
    if let Ok(Some(ku)) = cert.key_usage() {
        let k = ku.value;
        let all = [
            (k.digital_signature(), "digital signature"),
            (k.non_repudiation(), "content commitment"),
            (k.key_encipherment(), "key encipherment"),
            (k.data_encipherment(), "data encipherment"),
            (k.key_agreement(), "key agreement"),
            (k.key_cert_sign(), "cert sign"),
            (k.crl_sign(), "crl sign"),
        ];
        d.key_usages = all
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| n.to_string())
            .collect();
    }
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        let e = eku.value;
        let all = [
            (e.server_auth, "server auth"),
            (e.client_auth, "client auth"),
            (e.code_signing, "code signing"),
            (e.email_protection, "email protection"),
            (e.ocsp_signing, "ocsp signing"),
        ];
        d.extended_key_usages = all
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| n.to_string())
            .collect();
    }
    for der in ders.iter().skip(1) {
        if let Ok((_, c)) = parse_x509_certificate(der) {
            d.chain_subjects.push(c.subject().to_string());
        }
    }
    Ok(d)
}

fn signature_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.11" => "SHA256-RSA",
        "1.2.840.113549.1.1.12" => "SHA384-RSA",
        "1.2.840.113549.1.1.13" => "SHA512-RSA",
        "1.2.840.10045.4.3.2" => "ECDSA-SHA256",
        "1.2.840.10045.4.3.3" => "ECDSA-SHA384",
        "1.2.840.10045.4.3.4" => "ECDSA-SHA512",
        "1.3.101.112" => "Ed25519",
        other => return other.to_string(),
    }
    .to_string()
}

fn public_key_name(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(point)) => match point.key_size() {
            256 => "ECDSA P-256".into(),
            384 => "ECDSA P-384".into(),
            521 => "ECDSA P-521".into(),
            n => format!("ECDSA {n}"),
        },
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => "Ed25519".into(),
        _ => spki.algorithm.algorithm.to_id_string(),
    }
}

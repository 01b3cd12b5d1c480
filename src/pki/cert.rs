//! Reading issued certificates: validity, names and public key of the leaf
//! of a PEM chain.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;

/// What the controllers need to know about an issued leaf certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeafInfo {
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    /// Issuer's distinguished name, as text.
    pub issuer: String,
    /// DER SubjectPublicKeyInfo.
    pub public_key_info: Vec<u8>,
    /// How many certificates the PEM chain holds.
    pub chain_len: usize,
    /// Its RFC 9773 identifier (authority key identifier and serial), for
    /// the CA's renewal information; None without an AKI extension.
    pub ari_id: Option<String>,
    /// Every value of every subject attribute, by the attribute's dotted
    /// OID (`2.5.4.10` organization, …), in the certificate's order.
    pub subject: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    #[error("no PEM certificate found")]
    Empty,
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("invalid X.509 certificate: {0}")]
    X509(String),
}

/// An IP subject alternative name (4 or 16 bytes) as text.
pub fn ip_san(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::IpAddr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::IpAddr::from(b).to_string()),
        _ => None,
    }
}

/// Parses the first certificate of a PEM chain.
pub fn parse_chain(pem: &[u8]) -> Result<LeafInfo, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Pem(e.to_string()))?;
    let leaf = chain.first().ok_or(CertError::Empty)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| CertError::X509(e.to_string()))?;
    let mut info = LeafInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(String::from),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        uris: Vec::new(),
        email_addresses: Vec::new(),
        issuer: cert.issuer().to_string(),
        public_key_info: cert.public_key().raw.to_vec(),
        chain_len: chain.len(),
        ari_id: instant_acme::CertificateIdentifier::try_from(leaf)
            .ok()
            .map(|id| id.to_string()),
        subject: Default::default(),
    };
    for attr in cert.subject().iter_attributes() {
        if let Ok(value) = attr.as_str() {
            info.subject
                .entry(attr.attr_type().to_id_string())
                .or_default()
                .push(value.to_string());
        }
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => info.dns_names.push(d.to_string()),
                GeneralName::URI(u) => info.uris.push(u.to_string()),
                GeneralName::RFC822Name(e) => info.email_addresses.push(e.to_string()),
                GeneralName::IPAddress(bytes) => info.ip_addresses.extend(ip_san(bytes)),
                _ => {}
            }
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_validity_names_and_key_of_the_leaf() {
        crate::install_crypto_provider();
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![
            "a.example.com".to_string(),
            "192.0.2.7".to_string(),
        ])
        .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "a.example.com");
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2026, 4, 1);
        let cert = params.self_signed(&key).expect("cert");
        let pem = format!("{}{}", cert.pem(), cert.pem());
        let info = parse_chain(pem.as_bytes()).expect("parses");
        assert_eq!(info.dns_names, ["a.example.com"]);
        assert_eq!(info.ip_addresses, ["192.0.2.7"]);
        assert_eq!(info.common_name.as_deref(), Some("a.example.com"));
        assert_eq!(info.not_before, 1_767_225_600);
        assert_eq!(info.not_after - info.not_before, 90 * 86_400);
        assert_eq!(info.chain_len, 2);
        use rcgen::PublicKeyData;
        assert_eq!(info.public_key_info, key.subject_public_key_info());
        assert_eq!(
            info.subject.get("2.5.4.3").map(Vec::as_slice),
            Some(&["a.example.com".to_string()][..])
        );
        assert_eq!(parse_chain(b""), Err(CertError::Empty));
    }
}

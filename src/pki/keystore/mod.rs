//! Keystores as cert-manager writes them into a Certificate's Secret:
//! PKCS#12 (`keystore.p12`, `truststore.p12`) in its four profiles, and
//! Java's JKS (`keystore.jks`, `truststore.jks`). Built from the key, the
//! chain and the CA certificates with aws-lc alone.

mod cbc;
pub mod jks;
pub mod pkcs12;

use crate::api::certificate::Pkcs12Profile;
use crate::pki::keys::PrivateKey;

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("no certificate in the chain")]
    NoCertificate,
    #[error("the certificates are not PEM: {0}")]
    Pem(String),
    #[error("the password is empty")]
    EmptyPassword,
    #[error("aws-lc refused to encrypt: {0}")]
    Crypto(&'static str),
}

/// What a keystore holds: the key, the chain (leaf first) and the CA
/// certificates, all DER.
pub struct Contents {
    pub key_pkcs8: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
    pub cas: Vec<Vec<u8>>,
}

impl Contents {
    /// From the key and the PEM of the chain and of the CA (may be empty).
    pub fn new(key: &PrivateKey, chain_pem: &str, ca_pem: &str) -> Result<Self, KeystoreError> {
        let chain = certificates(chain_pem)?;
        if chain.is_empty() {
            return Err(KeystoreError::NoCertificate);
        }
        Ok(Self {
            key_pkcs8: key.pkcs8_der().to_vec(),
            chain,
            cas: certificates(ca_pem)?,
        })
    }
}

/// The DER of every CERTIFICATE block in `pem_text`.
pub fn certificates(pem_text: &str) -> Result<Vec<Vec<u8>>, KeystoreError> {
    Ok(pem::parse_many(pem_text)
        .map_err(|e| KeystoreError::Pem(e.to_string()))?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect())
}

/// `keystore.p12`: the key and the chain, and the CA certificates after
/// it, as cert-manager writes them (`LegacyRC2` when no profile is set).
pub fn pkcs12_keystore(
    profile: Option<Pkcs12Profile>,
    password: &str,
    contents: &Contents,
) -> Result<Vec<u8>, KeystoreError> {
    pkcs12::keystore(
        profile.unwrap_or(Pkcs12Profile::LegacyRc2),
        password,
        contents,
    )
}

/// `truststore.p12`: the CA certificates as trusted entries.
pub fn pkcs12_truststore(
    profile: Option<Pkcs12Profile>,
    password: &str,
    cas: &[Vec<u8>],
) -> Result<Vec<u8>, KeystoreError> {
    pkcs12::truststore(profile.unwrap_or(Pkcs12Profile::LegacyRc2), password, cas)
}

/// Random bytes from aws-lc.
fn random<const N: usize>() -> Result<[u8; N], KeystoreError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| KeystoreError::Crypto("random"))?;
    Ok(out)
}

/// A password as Java and PKCS#12 see it: UTF-16, big-endian.
fn utf16_be(password: &str) -> Vec<u8> {
    password.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_utf16_big_endian() {
        assert_eq!(utf16_be("ab"), [0, b'a', 0, b'b']);
        assert_eq!(utf16_be("é"), [0, 0xe9]);
    }

    #[test]
    fn only_certificate_blocks_are_taken() {
        let pem_text = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n\
                        -----BEGIN PRIVATE KEY-----\nBAUG\n-----END PRIVATE KEY-----\n";
        assert_eq!(certificates(pem_text).unwrap(), vec![vec![1, 2, 3]]);
        assert!(certificates("").unwrap().is_empty());
    }
}

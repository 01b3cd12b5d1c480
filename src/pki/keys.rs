//! Private keys of Certificates: generation for every algorithm and size
//! certwright supports, encoding as PKCS#1 (RSA), SEC1 (ECDSA; what
//! cert-manager calls PKCS1) or PKCS#8, and decoding whatever a Secret holds.

use rcgen::{KeyPair, SignatureAlgorithm};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::der;
use crate::api::certificate::{CertificatePrivateKey, PrivateKeyAlgorithm, PrivateKeyEncoding};

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

/// The kind and size of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa(u32),
    Ecdsa(u32),
    Ed25519,
}

/// What a Certificate asks for: kind and encoding, defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub kind: KeyKind,
    pub encoding: PrivateKeyEncoding,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("unsupported key: {0}")]
    Unsupported(String),
    #[error("generating the key failed: {0}")]
    Generate(String),
    #[error("the private key is not valid PEM/DER: {0}")]
    Malformed(String),
}

impl KeySpec {
    /// cert-manager's defaults: RSA 2048, ECDSA 256, PKCS1 encoding.
    pub fn from_spec(key: Option<&CertificatePrivateKey>) -> Result<Self, KeyError> {
        let algorithm = key
            .and_then(|k| k.algorithm)
            .unwrap_or(PrivateKeyAlgorithm::Rsa);
        let size = key.and_then(|k| k.size);
        let kind = match algorithm {
            PrivateKeyAlgorithm::Rsa => KeyKind::Rsa(size.unwrap_or(2048) as u32),
            PrivateKeyAlgorithm::Ecdsa => KeyKind::Ecdsa(size.unwrap_or(256) as u32),
            PrivateKeyAlgorithm::Ed25519 => KeyKind::Ed25519,
        };
        let encoding = key
            .and_then(|k| k.encoding)
            .unwrap_or(PrivateKeyEncoding::Pkcs1);
        Ok(Self { kind, encoding })
    }
}

/// A private key, held as PKCS#8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateKey {
    pub kind: KeyKind,
    pkcs8: Vec<u8>,
}

fn signature_algorithm(kind: KeyKind) -> Result<&'static SignatureAlgorithm, KeyError> {
    Ok(match kind {
        KeyKind::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
        KeyKind::Ecdsa(256) => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyKind::Ecdsa(384) => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyKind::Ecdsa(521) => &rcgen::PKCS_ECDSA_P521_SHA512,
        KeyKind::Ecdsa(other) => {
            return Err(KeyError::Unsupported(format!(
                "ECDSA size {other} (use 256, 384 or 521)"
            )));
        }
        KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
    })
}

impl PrivateKey {
    pub fn generate(kind: KeyKind) -> Result<Self, KeyError> {
        let alg = signature_algorithm(kind)?;
        if let KeyKind::Rsa(bits) = kind {
            return Ok(Self {
                kind,
                pkcs8: generate_rsa(bits)?,
            });
        }
        let pair = KeyPair::generate_for(alg).map_err(|e| KeyError::Generate(e.to_string()))?;
        let mut pkcs8 = pair.serialize_der();
        if kind == KeyKind::Ed25519 {
            // aws-lc writes PKCS#8 v2 (with the public key), which OpenSSL 3.0
            // cannot read; Go and OpenSSL write v1 (RFC 8410), so do we.
            pkcs8 = pkcs8_v1(&pkcs8)
                .ok_or_else(|| KeyError::Generate("unexpected Ed25519 PKCS#8".into()))?;
        }
        Ok(Self { kind, pkcs8 })
    }

    /// Decodes a PEM key in any of the three encodings.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der =
            PrivateKeyDer::from_pem_slice(pem).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let pkcs8 = match der {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            PrivateKeyDer::Pkcs1(k) => rsa_pkcs1_to_pkcs8(k.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(k) => sec1_to_pkcs8(k.secret_sec1_der())
                .ok_or_else(|| KeyError::Malformed("bad SEC1 structure".into()))?,
            _ => return Err(KeyError::Unsupported("unknown private key format".into())),
        };
        let kind = kind_of(&pkcs8)
            .ok_or_else(|| KeyError::Unsupported("not an RSA, ECDSA or Ed25519 key".into()))?;
        let key = Self { kind, pkcs8 };
        key.key_pair()?;
        Ok(key)
    }

    /// The key as PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key for signing CSRs.
    pub fn key_pair(&self) -> Result<KeyPair, KeyError> {
        let alg = signature_algorithm(self.kind)?;
        let der = PrivatePkcs8KeyDer::from(self.pkcs8.clone());
        KeyPair::from_pkcs8_der_and_sign_algo(&der, alg)
            .map_err(|e| KeyError::Malformed(e.to_string()))
    }

    /// The key for signing with `alg` (a `spec.signatureAlgorithm`).
    pub fn key_pair_with(&self, alg: &'static SignatureAlgorithm) -> Result<KeyPair, KeyError> {
        let der = PrivatePkcs8KeyDer::from(self.pkcs8.clone());
        KeyPair::from_pkcs8_der_and_sign_algo(&der, alg)
            .map_err(|e| KeyError::Malformed(e.to_string()))
    }

    /// The DER SubjectPublicKeyInfo, to match against a certificate.
    pub fn public_key_info(&self) -> Result<Vec<u8>, KeyError> {
        use rcgen::PublicKeyData;
        Ok(self.key_pair()?.subject_public_key_info())
    }

    /// PEM in `encoding` (Ed25519 is always PKCS#8, as cert-manager writes it).
    pub fn to_pem(&self, encoding: PrivateKeyEncoding) -> Result<String, KeyError> {
        let (label, der) = match (encoding, self.kind) {
            (PrivateKeyEncoding::Pkcs8, _) | (_, KeyKind::Ed25519) => {
                ("PRIVATE KEY", self.pkcs8.clone())
            }
            (PrivateKeyEncoding::Pkcs1, KeyKind::Rsa(_)) => (
                "RSA PRIVATE KEY",
                pkcs8_inner(&self.pkcs8)
                    .ok_or_else(|| KeyError::Malformed("bad PKCS#8".into()))?
                    .to_vec(),
            ),
            (PrivateKeyEncoding::Pkcs1, KeyKind::Ecdsa(_)) => (
                "EC PRIVATE KEY",
                pkcs8_to_sec1(&self.pkcs8)
                    .ok_or_else(|| KeyError::Malformed("bad PKCS#8".into()))?,
            ),
        };
        Ok(pem::encode_config(
            &pem::Pem::new(label, der),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ))
    }
}

/// A new RSA key as PKCS#8, in the sizes aws-lc generates (rcgen stops at
/// 4096; 8192 takes seconds, which is why callers generate off the runtime).
fn generate_rsa(bits: u32) -> Result<Vec<u8>, KeyError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        8192 => KeySize::Rsa8192,
        other => {
            return Err(KeyError::Unsupported(format!(
                "RSA size {other} cannot be generated (use 2048, 3072, 4096 or 8192)"
            )));
        }
    };
    let pair = RsaKeyPair::generate(size)
        .map_err(|_| KeyError::Generate(format!("RSA {bits} key generation failed")))?;
    let der = pair
        .as_der()
        .map_err(|_| KeyError::Generate("encoding the RSA key failed".into()))?;
    Ok(der.as_ref().to_vec())
}

/// The privateKey OCTET STRING content of a PKCS#8 document.
fn pkcs8_inner(pkcs8: &[u8]) -> Option<&[u8]> {
    let (outer, _) = der::read(pkcs8)?;
    let parts = der::children(outer.content)?;
    parts
        .get(2)
        .filter(|p| p.tag == der::OCTET_STRING)
        .map(|p| p.content)
}

/// (algorithm OID, parameters TLV) of a PKCS#8 document.
fn pkcs8_algorithm(pkcs8: &[u8]) -> Option<(&[u8], Option<der::Tlv<'_>>)> {
    let (outer, _) = der::read(pkcs8)?;
    let parts = der::children(outer.content)?;
    let alg = der::children(parts.get(1)?.content)?;
    Some((alg.first()?.content, alg.get(1).copied()))
}

fn kind_of(pkcs8: &[u8]) -> Option<KeyKind> {
    let (oid, params) = pkcs8_algorithm(pkcs8)?;
    if oid == OID_RSA {
        // RSAPrivateKey: version, modulus, ...; the modulus length gives the size.
        let (rsa, _) = der::read(pkcs8_inner(pkcs8)?)?;
        let modulus = der::children(rsa.content)?.get(1)?.content;
        let significant = modulus.iter().skip_while(|b| **b == 0).count();
        return Some(KeyKind::Rsa((significant * 8) as u32));
    }
    if oid == OID_EC {
        return match params?.content {
            c if c == OID_P256 => Some(KeyKind::Ecdsa(256)),
            c if c == OID_P384 => Some(KeyKind::Ecdsa(384)),
            c if c == OID_P521 => Some(KeyKind::Ecdsa(521)),
            _ => None,
        };
    }
    (oid == OID_ED25519).then_some(KeyKind::Ed25519)
}

/// A PKCS#8 v2 document (OneAsymmetricKey) reduced to v1: version 0, the
/// algorithm and the private key, no public key or attributes.
fn pkcs8_v1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (outer, _) = der::read(pkcs8)?;
    let parts = der::children(outer.content)?;
    let content = [
        der::write(der::INTEGER, &[0]),
        parts.get(1)?.raw.to_vec(),
        parts.get(2)?.raw.to_vec(),
    ]
    .concat();
    Some(der::write(der::SEQUENCE, &content))
}

fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let alg = der::write(
        der::SEQUENCE,
        &[der::write(der::OID, OID_RSA), der::write(der::NULL, &[])].concat(),
    );
    der::write(
        der::SEQUENCE,
        &[
            der::write(der::INTEGER, &[0]),
            alg,
            der::write(der::OCTET_STRING, pkcs1),
        ]
        .concat(),
    )
}

/// PKCS#8 EC key → SEC1 ECPrivateKey with the curve in `[0]`.
fn pkcs8_to_sec1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (_, params) = pkcs8_algorithm(pkcs8)?;
    let (inner, _) = der::read(pkcs8_inner(pkcs8)?)?;
    let fields = der::children(inner.content)?;
    let mut content = Vec::new();
    content.extend_from_slice(fields.first()?.raw);
    content.extend_from_slice(fields.get(1)?.raw);
    content.extend(der::write(der::CONTEXT_0, params?.raw));
    if let Some(public) = fields.iter().find(|f| f.tag == der::CONTEXT_1) {
        content.extend_from_slice(public.raw);
    }
    Some(der::write(der::SEQUENCE, &content))
}

/// SEC1 ECPrivateKey → PKCS#8 (the curve moves to the algorithm identifier).
fn sec1_to_pkcs8(sec1: &[u8]) -> Option<Vec<u8>> {
    let (outer, _) = der::read(sec1)?;
    let fields = der::children(outer.content)?;
    let params = fields.iter().find(|f| f.tag == der::CONTEXT_0)?;
    let (curve, _) = der::read(params.content)?;
    let mut inner = Vec::new();
    inner.extend_from_slice(fields.first()?.raw);
    inner.extend_from_slice(fields.get(1)?.raw);
    if let Some(public) = fields.iter().find(|f| f.tag == der::CONTEXT_1) {
        inner.extend_from_slice(public.raw);
    }
    let alg = der::write(
        der::SEQUENCE,
        &[der::write(der::OID, OID_EC), curve.raw.to_vec()].concat(),
    );
    Some(der::write(
        der::SEQUENCE,
        &[
            der::write(der::INTEGER, &[0]),
            alg,
            der::write(der::OCTET_STRING, &der::write(der::SEQUENCE, &inner)),
        ]
        .concat(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combos() -> Vec<(KeyKind, PrivateKeyEncoding, &'static str)> {
        use PrivateKeyEncoding::{Pkcs1, Pkcs8};
        vec![
            (KeyKind::Rsa(2048), Pkcs1, "RSA PRIVATE KEY"),
            (KeyKind::Rsa(2048), Pkcs8, "PRIVATE KEY"),
            (KeyKind::Rsa(3072), Pkcs1, "RSA PRIVATE KEY"),
            (KeyKind::Rsa(8192), Pkcs8, "PRIVATE KEY"),
            (KeyKind::Ecdsa(256), Pkcs1, "EC PRIVATE KEY"),
            (KeyKind::Ecdsa(256), Pkcs8, "PRIVATE KEY"),
            (KeyKind::Ecdsa(384), Pkcs1, "EC PRIVATE KEY"),
            (KeyKind::Ecdsa(384), Pkcs8, "PRIVATE KEY"),
            (KeyKind::Ed25519, Pkcs8, "PRIVATE KEY"),
            (KeyKind::Ed25519, Pkcs1, "PRIVATE KEY"),
        ]
    }

    #[test]
    fn every_kind_and_encoding_round_trips() {
        crate::install_crypto_provider();
        for (kind, encoding, label) in combos() {
            let key = PrivateKey::generate(kind).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            let pem = key.to_pem(encoding).expect("encodes");
            assert!(
                pem.starts_with(&format!("-----BEGIN {label}-----\n")),
                "{kind:?}/{encoding:?}: {pem}"
            );
            let back = PrivateKey::from_pem(pem.as_bytes())
                .unwrap_or_else(|e| panic!("{kind:?}/{encoding:?}: {e}"));
            assert_eq!(back, key, "{kind:?}/{encoding:?}");
            assert_eq!(back.public_key_info(), key.public_key_info());
        }
    }

    #[test]
    fn specs_take_cert_manager_defaults_and_refuse_unsupported_sizes() {
        let spec = KeySpec::from_spec(None).expect("defaults");
        assert_eq!(
            spec,
            KeySpec {
                kind: KeyKind::Rsa(2048),
                encoding: PrivateKeyEncoding::Pkcs1
            }
        );
        let ec = CertificatePrivateKey {
            algorithm: Some(PrivateKeyAlgorithm::Ecdsa),
            ..Default::default()
        };
        assert_eq!(
            KeySpec::from_spec(Some(&ec)).expect("ecdsa").kind,
            KeyKind::Ecdsa(256)
        );
        assert!(
            matches!(PrivateKey::generate(KeyKind::Rsa(2560)), Err(KeyError::Unsupported(m)) if m.contains("2560") && m.contains("8192"))
        );
        assert!(matches!(
            PrivateKey::generate(KeyKind::Ecdsa(512)),
            Err(KeyError::Unsupported(_))
        ));
        assert!(matches!(
            PrivateKey::from_pem(b"garbage"),
            Err(KeyError::Malformed(_))
        ));
    }
}

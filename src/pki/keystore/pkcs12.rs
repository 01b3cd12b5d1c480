//! PKCS#12 (RFC 7292) as cert-manager's encoder lays it out: one
//! encrypted SafeContents with the certificates (the leaf with a
//! localKeyId, then the rest of the chain, then the CAs), one plain
//! SafeContents with the shrouded key, and a MAC. The profiles choose the
//! algorithms:
//!
//! | profile    | certificates     | key              | MAC                  |
//! |------------|------------------|------------------|----------------------|
//! | LegacyRC2  | PBE SHA-1 RC2-40 | PBE SHA-1 3DES   | HMAC-SHA-1           |
//! | LegacyDES  | PBE SHA-1 3DES   | PBE SHA-1 3DES   | HMAC-SHA-1           |
//! | Modern2023 | PBES2 AES-256    | PBES2 AES-256    | HMAC-SHA-256         |
//! | Modern2026 | PBES2 AES-256    | PBES2 AES-256    | PBMAC1 HMAC-SHA-256  |
//!
//! 2048 iterations everywhere but the legacy MACs (1), PBKDF2 with
//! HMAC-SHA-256 for PBES2 and PBMAC1.

use std::num::NonZeroU32;

use aws_lc_rs::{digest, hmac, pbkdf2};

use super::cbc::{self, Cipher};
use super::{Contents, KeystoreError, random, utf16_be};
use crate::api::certificate::Pkcs12Profile;
use crate::pki::der::{self, OCTET_STRING, algorithm, explicit, integer, oid, seq, set};

const DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
const ENCRYPTED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 6];
const SHROUDED_KEY_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 2];
const CERT_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 3];
const X509_CERTIFICATE: &[u64] = &[1, 2, 840, 113549, 1, 9, 22, 1];
const LOCAL_KEY_ID: &[u64] = &[1, 2, 840, 113549, 1, 9, 21];
const FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113549, 1, 9, 20];
const PBE_SHA1_3DES: &[u64] = &[1, 2, 840, 113549, 1, 12, 1, 3];
const PBE_SHA1_RC2_40: &[u64] = &[1, 2, 840, 113549, 1, 12, 1, 6];
const PBES2: &[u64] = &[1, 2, 840, 113549, 1, 5, 13];
const PBKDF2: &[u64] = &[1, 2, 840, 113549, 1, 5, 12];
const PBMAC1: &[u64] = &[1, 2, 840, 113549, 1, 5, 14];
const HMAC_SHA256: &[u64] = &[1, 2, 840, 113549, 2, 9];
const AES_256_CBC: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 1, 42];
const SHA1: &[u64] = &[1, 3, 14, 3, 2, 26];
const SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
/// Oracle's attribute that makes Java read a certificate bag as trusted.
const JAVA_TRUSTED_KEY_USAGE: &[u64] = &[2, 16, 840, 1, 113894, 746875, 1, 1];
const ANY_EXTENDED_KEY_USAGE: &[u64] = &[2, 5, 29, 37, 0];

const ITERATIONS: u32 = 2048;

#[derive(Clone, Copy)]
enum Encryption {
    /// PKCS#12's own password-based encryption, SHA-1 key derivation.
    Pbe(Cipher),
    /// PBES2: PBKDF2-HMAC-SHA-256 and AES-256-CBC.
    Pbes2,
}

#[derive(Clone, Copy)]
enum Mac {
    /// HMAC keyed with PKCS#12's key derivation on this digest.
    Pkcs12(Digest, u32),
    /// PBMAC1 (RFC 9579): PBKDF2-HMAC-SHA-256 and HMAC-SHA-256.
    Pbmac1,
}

#[derive(Clone, Copy)]
enum Digest {
    Sha1,
    Sha256,
}

struct Scheme {
    certificates: Encryption,
    key: Encryption,
    mac: Mac,
}

fn scheme(profile: Pkcs12Profile) -> Scheme {
    match profile {
        Pkcs12Profile::LegacyRc2 => Scheme {
            certificates: Encryption::Pbe(Cipher::Rc2_40),
            key: Encryption::Pbe(Cipher::TripleDes),
            mac: Mac::Pkcs12(Digest::Sha1, 1),
        },
        Pkcs12Profile::LegacyDes => Scheme {
            certificates: Encryption::Pbe(Cipher::TripleDes),
            key: Encryption::Pbe(Cipher::TripleDes),
            mac: Mac::Pkcs12(Digest::Sha1, 1),
        },
        Pkcs12Profile::Modern2023 => Scheme {
            certificates: Encryption::Pbes2,
            key: Encryption::Pbes2,
            mac: Mac::Pkcs12(Digest::Sha256, ITERATIONS),
        },
        Pkcs12Profile::Modern2026 => Scheme {
            certificates: Encryption::Pbes2,
            key: Encryption::Pbes2,
            mac: Mac::Pbmac1,
        },
    }
}

/// `keystore.p12`.
pub fn keystore(
    profile: Pkcs12Profile,
    password: &str,
    contents: &Contents,
) -> Result<Vec<u8>, KeystoreError> {
    if password.is_empty() {
        return Err(KeystoreError::EmptyPassword);
    }
    let scheme = scheme(profile);
    let leaf = contents.chain.first().ok_or(KeystoreError::NoCertificate)?;
    let key_id = attribute(
        LOCAL_KEY_ID,
        &der::write(
            OCTET_STRING,
            digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, leaf).as_ref(),
        ),
    );
    let mut bags = vec![cert_bag(leaf, &[&key_id])];
    for cert in contents.chain.iter().skip(1).chain(&contents.cas) {
        bags.push(cert_bag(cert, &[]));
    }
    let certificates = encrypted_contents(scheme.certificates, password, &bags.concat())?;
    let (alg, encrypted) = encrypt(scheme.key, password, &contents.key_pkcs8)?;
    let shrouded = seq(&[&alg, &der::write(OCTET_STRING, &encrypted)]);
    let key_bag = seq(&[
        &oid(SHROUDED_KEY_BAG),
        &explicit(0, &shrouded),
        &set(&[&key_id]),
    ]);
    let key = plain_contents(&seq(&[&key_bag]));
    pfx(scheme.mac, password, &[&certificates, &key])
}

/// `truststore.p12`: every CA certificate, trusted for any use, named by
/// its subject.
pub fn truststore(
    profile: Pkcs12Profile,
    password: &str,
    cas: &[Vec<u8>],
) -> Result<Vec<u8>, KeystoreError> {
    if password.is_empty() {
        return Err(KeystoreError::EmptyPassword);
    }
    let scheme = scheme(profile);
    let trusted = attribute(JAVA_TRUSTED_KEY_USAGE, &oid(ANY_EXTENDED_KEY_USAGE));
    let bags: Vec<Vec<u8>> = cas
        .iter()
        .map(|cert| {
            let name = attribute(
                FRIENDLY_NAME,
                &der::write(der::BMP_STRING, &utf16_be(&subject(cert))),
            );
            cert_bag(cert, &[&trusted, &name])
        })
        .collect();
    let certificates = encrypted_contents(scheme.certificates, password, &bags.concat())?;
    pfx(scheme.mac, password, &[&certificates])
}

/// A certificate's subject as text (`CN=…`), for a friendly name.
fn subject(cert: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    x509_parser::certificate::X509Certificate::from_der(cert)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_default()
}

fn attribute(id: &[u64], value: &[u8]) -> Vec<u8> {
    seq(&[&oid(id), &set(&[value])])
}

fn cert_bag(cert: &[u8], attributes: &[&[u8]]) -> Vec<u8> {
    let value = seq(&[
        &oid(X509_CERTIFICATE),
        &explicit(0, &der::write(OCTET_STRING, cert)),
    ]);
    let bag = [oid(CERT_BAG), explicit(0, &value)];
    if attributes.is_empty() {
        seq(&[&bag[0], &bag[1]])
    } else {
        seq(&[&bag[0], &bag[1], &set(attributes)])
    }
}

/// A ContentInfo of type data around SafeContents.
fn plain_contents(safe_contents: &[u8]) -> Vec<u8> {
    seq(&[
        &oid(DATA),
        &explicit(0, &der::write(OCTET_STRING, safe_contents)),
    ])
}

/// A ContentInfo of type encryptedData around the bags.
fn encrypted_contents(
    encryption: Encryption,
    password: &str,
    bags: &[u8],
) -> Result<Vec<u8>, KeystoreError> {
    let (alg, encrypted) = encrypt(encryption, password, &seq(&[bags]))?;
    // encryptedContent is [0] IMPLICIT OCTET STRING.
    let content_info = seq(&[&oid(DATA), &alg, &der::write(0x80, &encrypted)]);
    Ok(seq(&[
        &oid(ENCRYPTED_DATA),
        &explicit(0, &seq(&[&integer(0), &content_info])),
    ]))
}

/// The AlgorithmIdentifier and the ciphertext of `plain`.
fn encrypt(
    encryption: Encryption,
    password: &str,
    plain: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), KeystoreError> {
    match encryption {
        Encryption::Pbe(cipher) => {
            let salt = random::<8>()?;
            let bmp = bmp_password(password);
            let key = derive(Digest::Sha1, 1, &salt, &bmp, ITERATIONS, cipher.key_len());
            let iv = derive(Digest::Sha1, 2, &salt, &bmp, ITERATIONS, cipher.iv_len());
            let arcs = match cipher {
                Cipher::Rc2_40 => PBE_SHA1_RC2_40,
                _ => PBE_SHA1_3DES,
            };
            let params = seq(&[
                &der::write(OCTET_STRING, &salt),
                &integer(ITERATIONS.into()),
            ]);
            Ok((
                algorithm(arcs, Some(&params)),
                cbc::encrypt(cipher, &key, &iv, plain)?,
            ))
        }
        Encryption::Pbes2 => {
            let salt = random::<16>()?;
            let iv = random::<16>()?;
            let key = pbkdf2_sha256(password.as_bytes(), &salt, Cipher::Aes256.key_len());
            let kdf = algorithm(PBKDF2, Some(&pbkdf2_params(&salt, None)));
            let scheme = algorithm(AES_256_CBC, Some(&der::write(OCTET_STRING, &iv)));
            Ok((
                algorithm(PBES2, Some(&seq(&[&kdf, &scheme]))),
                cbc::encrypt(Cipher::Aes256, &key, &iv, plain)?,
            ))
        }
    }
}

/// PBKDF2-params with HMAC-SHA-256 as the PRF.
fn pbkdf2_params(salt: &[u8], key_len: Option<u64>) -> Vec<u8> {
    let salt = der::write(OCTET_STRING, salt);
    let iterations = integer(ITERATIONS.into());
    let prf = algorithm(HMAC_SHA256, None);
    match key_len {
        Some(len) => seq(&[&salt, &iterations, &integer(len), &prf]),
        None => seq(&[&salt, &iterations, &prf]),
    }
}

fn pbkdf2_sha256(password: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password,
        &mut out,
    );
    out
}

/// The PFX: version 3, the AuthenticatedSafe and its MAC.
fn pfx(mac: Mac, password: &str, contents: &[&[u8]]) -> Result<Vec<u8>, KeystoreError> {
    let safe = seq(contents);
    let mac_data = match mac {
        Mac::Pkcs12(digest, iterations) => {
            let salt = random::<16>()?;
            let salt = match digest {
                Digest::Sha1 => &salt[..8],
                Digest::Sha256 => &salt[..],
            };
            let (len, alg, arcs) = match digest {
                Digest::Sha1 => (20, hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, SHA1),
                Digest::Sha256 => (32, hmac::HMAC_SHA256, SHA256),
            };
            let key = derive(digest, 3, salt, &bmp_password(password), iterations, len);
            let tag = hmac::sign(&hmac::Key::new(alg, &key), &safe);
            let digest_info = seq(&[
                &algorithm(arcs, None),
                &der::write(OCTET_STRING, tag.as_ref()),
            ]);
            let salt = der::write(OCTET_STRING, salt);
            if iterations == 1 {
                // The DEFAULT is left out.
                seq(&[&digest_info, &salt])
            } else {
                seq(&[&digest_info, &salt, &integer(iterations.into())])
            }
        }
        Mac::Pbmac1 => {
            let salt = random::<16>()?;
            let key = pbkdf2_sha256(password.as_bytes(), &salt, 32);
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), &safe);
            let kdf = algorithm(PBKDF2, Some(&pbkdf2_params(&salt, Some(32))));
            let params = seq(&[&kdf, &algorithm(HMAC_SHA256, None)]);
            let digest_info = seq(&[
                &algorithm(PBMAC1, Some(&params)),
                &der::write(OCTET_STRING, tag.as_ref()),
            ]);
            // RFC 9579: MacData's own salt and iterations are not used.
            seq(&[&digest_info, &der::write(OCTET_STRING, b"NOT USED")])
        }
    };
    Ok(seq(&[&integer(3), &plain_contents(&safe), &mac_data]))
}

/// The password as PKCS#12's key derivation takes it: a BMPString with a
/// terminating zero.
fn bmp_password(password: &str) -> Vec<u8> {
    let mut out = utf16_be(password);
    out.extend([0, 0]);
    out
}

/// PKCS#12's key derivation (RFC 7292 appendix B.2): `id` 1 for a key,
/// 2 for an IV, 3 for a MAC key.
fn derive(
    digest: Digest,
    id: u8,
    salt: &[u8],
    password: &[u8],
    iterations: u32,
    len: usize,
) -> Vec<u8> {
    let (alg, u) = match digest {
        Digest::Sha1 => (&digest::SHA1_FOR_LEGACY_USE_ONLY, 20),
        Digest::Sha256 => (&digest::SHA256, 32),
    };
    const V: usize = 64;
    let fill = |input: &[u8]| -> Vec<u8> {
        if input.is_empty() {
            return Vec::new();
        }
        let n = V * input.len().div_ceil(V);
        input.iter().cycle().take(n).copied().collect()
    };
    let d = [id; V];
    let mut i = fill(salt);
    i.extend(fill(password));
    let mut out = Vec::with_capacity(len + u);
    while out.len() < len {
        let mut a = digest::digest(alg, &[&d[..], &i].concat())
            .as_ref()
            .to_vec();
        for _ in 1..iterations {
            a = digest::digest(alg, &a).as_ref().to_vec();
        }
        let b: Vec<u8> = a.iter().cycle().take(V).copied().collect();
        for block in i.chunks_mut(V) {
            // block = (block + b + 1) mod 2^(8v)
            let mut carry = 1u16;
            for (x, y) in block.iter_mut().zip(&b).rev() {
                let sum = u16::from(*x) + u16::from(*y) + carry;
                *x = sum as u8;
                carry = sum >> 8;
            }
        }
        out.extend(a);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn key_derivation_matches_known_vectors() {
        // The vectors Go's PKCS#12 packages test against: a 3DES key from
        // "sesame", and one whose intermediate blocks start with zeros.
        assert_eq!(
            hex(&derive(
                Digest::Sha1,
                1,
                &[0xff; 8],
                &bmp_password("sesame"),
                2048,
                24
            )),
            "7cd9fd3e2b3be7691a44e3bef0f9ea0fb9b897d4e325d9d1"
        );
        let salt = [0xf3, 0x7e, 0x05, 0xb5, 0x18, 0x32, 0x4b, 0x4b];
        assert_eq!(
            hex(&derive(Digest::Sha1, 1, &salt, &[0, 0], 2048, 24)),
            "00f759ff47d14dd03665d5943cb3c4a39a2555c02aed66e1"
        );
    }

    #[test]
    fn an_empty_password_is_refused() {
        let contents = Contents {
            key_pkcs8: vec![],
            chain: vec![vec![0x30, 0]],
            cas: vec![],
        };
        assert!(matches!(
            keystore(Pkcs12Profile::Modern2023, "", &contents),
            Err(KeystoreError::EmptyPassword)
        ));
    }
}

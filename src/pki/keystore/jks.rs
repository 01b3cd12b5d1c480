//! Java's JKS keystore (version 2), as `keytool` reads it: a private key
//! entry with the chain under the Certificate's alias, the CA certificates
//! as trusted entries `ca`, `ca-1`, …, and the SHA-1 integrity digest
//! over the password and "Mighty Aphrodite". The key is protected with
//! Sun's key protector (a SHA-1 keystream), the only one JKS defines.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{self, SHA1_FOR_LEGACY_USE_ONLY};

use super::{Contents, KeystoreError, random, utf16_be};
use crate::pki::der::{self, OCTET_STRING, algorithm, seq};

const MAGIC: u32 = 0xfeed_feed;
const VERSION: u32 = 2;
const PRIVATE_KEY: u32 = 1;
const TRUSTED_CERTIFICATE: u32 = 2;
/// Sun's JKS key protector.
const KEY_PROTECTOR: &[u64] = &[1, 3, 6, 1, 4, 1, 42, 2, 17, 1, 1];

/// `keystore.jks`.
pub fn keystore(
    password: &str,
    alias: &str,
    contents: &Contents,
) -> Result<Vec<u8>, KeystoreError> {
    if password.is_empty() {
        return Err(KeystoreError::EmptyPassword);
    }
    let mut out = header(1 + contents.cas.len());
    let now = millis();
    put_u32(&mut out, PRIVATE_KEY);
    put_utf(&mut out, &alias.to_lowercase());
    out.extend(now.to_be_bytes());
    let protected = protect(password, &contents.key_pkcs8)?;
    put_bytes(&mut out, &protected);
    put_u32(&mut out, contents.chain.len() as u32);
    for cert in &contents.chain {
        put_certificate(&mut out, cert);
    }
    trusted(&mut out, &contents.cas, now);
    Ok(seal(password, out))
}

/// `truststore.jks`: the CA certificates as trusted entries.
pub fn truststore(password: &str, cas: &[Vec<u8>]) -> Result<Vec<u8>, KeystoreError> {
    if password.is_empty() {
        return Err(KeystoreError::EmptyPassword);
    }
    let mut out = header(cas.len());
    trusted(&mut out, cas, millis());
    Ok(seal(password, out))
}

fn header(entries: usize) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, MAGIC);
    put_u32(&mut out, VERSION);
    put_u32(&mut out, entries as u32);
    out
}

fn trusted(out: &mut Vec<u8>, cas: &[Vec<u8>], now: u64) {
    for (i, cert) in cas.iter().enumerate() {
        put_u32(out, TRUSTED_CERTIFICATE);
        put_utf(
            out,
            &if i == 0 {
                "ca".into()
            } else {
                format!("ca-{i}")
            },
        );
        out.extend(now.to_be_bytes());
        put_certificate(out, cert);
    }
}

/// Appends the integrity digest.
fn seal(password: &str, mut out: Vec<u8>) -> Vec<u8> {
    let mut ctx = digest::Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&utf16_be(password));
    ctx.update(b"Mighty Aphrodite");
    ctx.update(&out);
    out.extend(ctx.finish().as_ref());
    out
}

/// The PKCS#8 key as an EncryptedPrivateKeyInfo under Sun's protector:
/// salt, the key XORed with SHA-1(password ‖ previous) blocks, and
/// SHA-1(password ‖ key) to check it.
fn protect(password: &str, key: &[u8]) -> Result<Vec<u8>, KeystoreError> {
    let password = utf16_be(password);
    let salt = random::<20>()?;
    let mut stream = Vec::with_capacity(key.len() + 20);
    let mut previous = salt.to_vec();
    while stream.len() < key.len() {
        previous = sha1(&[&password, &previous]);
        stream.extend(&previous);
    }
    let mut protected = salt.to_vec();
    protected.extend(key.iter().zip(&stream).map(|(k, s)| k ^ s));
    protected.extend(sha1(&[&password, key]));
    Ok(seq(&[
        &algorithm(KEY_PROTECTOR, None),
        &der::write(OCTET_STRING, &protected),
    ]))
}

fn sha1(parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
    for part in parts {
        ctx.update(part);
    }
    ctx.finish().as_ref().to_vec()
}

fn millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend(value.to_be_bytes());
}

/// Java's writeUTF: a 16-bit length, then the text.
fn put_utf(out: &mut Vec<u8>, text: &str) {
    out.extend((text.len() as u16).to_be_bytes());
    out.extend(text.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend(bytes);
}

fn put_certificate(out: &mut Vec<u8>, cert: &[u8]) {
    put_utf(out, "X.509");
    put_bytes(out, cert);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_jks_version_2_with_its_digest() {
        let contents = Contents {
            key_pkcs8: vec![1, 2, 3],
            chain: vec![vec![4, 5]],
            cas: vec![vec![6]],
        };
        let out = keystore("changeit", "Web", &contents).expect("encodes");
        assert_eq!(
            &out[..12],
            &[0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, 0, 0, 0, 2]
        );
        let (body, digest) = out.split_at(out.len() - 20);
        assert_eq!(
            digest,
            sha1(&[&utf16_be("changeit"), b"Mighty Aphrodite", body]).as_slice()
        );
        // The alias, lowercased as Java stores it.
        assert_eq!(&body[16..21], b"\0\x03web");
    }

    #[test]
    fn the_key_protector_round_trips() {
        let key: Vec<u8> = (0..=200).collect();
        let epki = protect("pässword", &key).expect("protects");
        let (outer, _) = der::read(&epki).expect("der");
        let parts = der::children(outer.content).expect("children");
        let protected = parts[1].content;
        let (salt, rest) = protected.split_at(20);
        let (xored, check) = rest.split_at(rest.len() - 20);
        let password = utf16_be("pässword");
        let mut previous = salt.to_vec();
        let mut plain = Vec::new();
        for chunk in xored.chunks(20) {
            previous = sha1(&[&password, &previous]);
            plain.extend(chunk.iter().zip(&previous).map(|(x, s)| x ^ s));
        }
        assert_eq!(plain, key);
        assert_eq!(check, sha1(&[&password, &key]).as_slice());
    }
}

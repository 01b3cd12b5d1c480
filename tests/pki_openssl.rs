//! certwright's private keys as another implementation reads them: OpenSSL
//! parses every algorithm/encoding combination, sees the right kind and
//! size, and derives the same public key.

use std::process::Command;

use certwright::api::certificate::PrivateKeyEncoding;
use certwright::pki::keys::{KeyKind, PrivateKey};

#[test]
fn openssl_reads_every_key_combination() {
    certwright::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("certwright-pki-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let combos = [
        (
            KeyKind::Rsa(2048),
            PrivateKeyEncoding::Pkcs1,
            "Private-Key: (2048 bit",
        ),
        (
            KeyKind::Rsa(4096),
            PrivateKeyEncoding::Pkcs8,
            "Private-Key: (4096 bit",
        ),
        (
            KeyKind::Rsa(3072),
            PrivateKeyEncoding::Pkcs8,
            "Private-Key: (3072 bit",
        ),
        (KeyKind::Ecdsa(256), PrivateKeyEncoding::Pkcs1, "prime256v1"),
        (KeyKind::Ecdsa(256), PrivateKeyEncoding::Pkcs8, "prime256v1"),
        (KeyKind::Ecdsa(384), PrivateKeyEncoding::Pkcs1, "secp384r1"),
        (KeyKind::Ecdsa(384), PrivateKeyEncoding::Pkcs8, "secp384r1"),
        (
            KeyKind::Ed25519,
            PrivateKeyEncoding::Pkcs8,
            "ED25519 Private-Key",
        ),
    ];
    for (i, (kind, encoding, expect)) in combos.into_iter().enumerate() {
        let key = PrivateKey::generate(kind).expect("generate");
        let file = dir.join(format!("key{i}.pem"));
        std::fs::write(&file, key.to_pem(encoding).expect("pem")).expect("write");
        let text = Command::new("openssl")
            .args(["pkey", "-noout", "-text", "-in"])
            .arg(&file)
            .output()
            .expect("openssl runs");
        let out = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.status.success(),
            "{kind:?}/{encoding:?}: {}",
            String::from_utf8_lossy(&text.stderr)
        );
        assert!(out.contains(expect), "{kind:?}/{encoding:?}: {out}");
        let public = Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&file)
            .output()
            .expect("openssl runs");
        assert_eq!(
            public.stdout,
            key.public_key_info().expect("spki"),
            "{kind:?}/{encoding:?}: same public key"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn openssl_verifies_our_csrs() {
    use certwright::api::CertificateSpec;
    certwright::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("certwright-csr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let spec = CertificateSpec {
        dns_names: Some(vec!["a.example.com".into(), "www.a.example.com".into()]),
        ip_addresses: Some(vec!["2001:db8::1".into()]),
        ..Default::default()
    };
    for (i, kind) in [KeyKind::Rsa(2048), KeyKind::Ecdsa(384), KeyKind::Ed25519]
        .into_iter()
        .enumerate()
    {
        let key = PrivateKey::generate(kind).expect("key");
        let csr = certwright::pki::csr::build(&spec, &key).expect("csr");
        let file = dir.join(format!("csr{i}.pem"));
        std::fs::write(&file, &csr.pem).expect("write");
        let out = Command::new("openssl")
            .args(["req", "-noout", "-verify", "-text", "-in"])
            .arg(&file)
            .output()
            .expect("openssl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("verify OK"),
            "{kind:?}: {text}"
        );
        assert!(
            text.contains(
                "DNS:a.example.com, DNS:www.a.example.com, IP Address:2001:DB8:0:0:0:0:0:1"
            ),
            "{kind:?}: {text}"
        );
        assert!(
            text.contains("Digital Signature, Key Encipherment"),
            "{kind:?}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

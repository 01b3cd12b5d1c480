//! `certwright inspect secret NAME`: what the Secret's certificate holds,
//! as cmctl shows it.

use std::fmt::Write;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::age;
use super::details;
use crate::pki::keys::PrivateKey;

/// The Secret's certificate as text, ages counted from `now`.
pub fn render(secret: &Secret, now: Timestamp) -> Result<String, String> {
    let data = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
    };
    let at = format!(
        "Secret {}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    );
    let crt = data("tls.crt")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| format!("{at} has no tls.crt"))?;
    let d = details::of_chain(&String::from_utf8_lossy(&crt)).map_err(|e| format!("{at}: {e}"))?;
    let none = |v: &[String]| {
        if v.is_empty() {
            " <none>".to_string()
        } else {
            v.iter().map(|s| format!("\n\t\t- {s}")).collect()
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "Valid for:");
    let _ = writeln!(out, "\tDNS Names:{}", none(&d.dns_names));
    let _ = writeln!(out, "\tURIs:{}", none(&d.uris));
    let _ = writeln!(out, "\tIP Addresses:{}", none(&d.ip_addresses));
    let _ = writeln!(out, "\tEmail Addresses:{}", none(&d.email_addresses));
    let usages: Vec<String> = d
        .key_usages
        .iter()
        .chain(&d.extended_key_usages)
        .cloned()
        .collect();
    let _ = writeln!(out, "\tUsages:{}", none(&usages));
    let _ = writeln!(out, "\nValidity period:");
    let _ = writeln!(
        out,
        "\tNot Before: {}",
        d.not_before.strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(
        out,
        "\tNot After: {} ({})",
        d.not_after.strftime("%Y-%m-%d %H:%M:%S UTC"),
        age(now, d.not_after)
    );
    let _ = writeln!(out, "\nIssued By: {}", d.issuer);
    let _ = writeln!(
        out,
        "Issued For: {}",
        if d.subject.is_empty() {
            "<empty subject>"
        } else {
            &d.subject
        }
    );
    let _ = writeln!(out, "\nCertificate:");
    let _ = writeln!(out, "\tSigning Algorithm: {}", d.signature_algorithm);
    let _ = writeln!(out, "\tPublic Key Algorithm: {}", d.public_key);
    let _ = writeln!(out, "\tSerial Number: {}", d.serial);
    let _ = writeln!(out, "\tFingerprint (SHA-256): {}", d.sha256_fingerprint);
    let _ = writeln!(out, "\tIs a CA certificate: {}", d.is_ca);
    if d.chain_len == 1 {
        let _ = writeln!(out, "\tChain: the certificate alone");
    } else {
        let _ = writeln!(
            out,
            "\tChain: {} certificates; after it:{}",
            d.chain_len,
            none(&d.chain_subjects)
        );
    }
    let _ = writeln!(out, "\nSecret:");
    let mut keys: Vec<&String> = secret.data.iter().flatten().map(|(k, _)| k).collect();
    keys.sort();
    let _ = writeln!(
        out,
        "\tKeys: {}",
        keys.iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for a in [
        "cert-manager.io/certificate-name",
        "cert-manager.io/issuer-kind",
        "cert-manager.io/issuer-name",
    ] {
        if let Some(v) = secret.annotations().get(a) {
            let _ = writeln!(out, "\t{a}: {v}");
        }
    }
    let key_matches = data("tls.key")
        .and_then(|k| PrivateKey::from_pem(&k).ok())
        .and_then(|k| k.public_key_info().ok())
        .zip(crate::pki::cert::parse_chain(&crt).ok())
        .map(|(spki, leaf)| spki == leaf.public_key_info);
    let _ = writeln!(out, "\nDebugging:");
    let _ = writeln!(
        out,
        "\tKey matches certificate: {}",
        match key_matches {
            Some(true) => "yes",
            Some(false) => "NO: tls.key is not the certificate's key",
            None => "unknown (no readable tls.key)",
        }
    );
    let state = if now < d.not_before {
        "not yet valid"
    } else if now > d.not_after {
        "EXPIRED"
    } else {
        "valid"
    };
    let _ = writeln!(out, "\tNow: {state}");
    Ok(out)
}

//! The output formats and keystores a Certificate's spec asks for beside
//! `tls.crt` and `tls.key`, as cert-manager writes them, and which of the
//! keys certwright writes are stale or drifted.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use crate::api::certificate::{CertificateSpec, OutputFormatType};
use crate::pki::keys::PrivateKey;
use crate::pki::keystore::{self, Contents, jks};

pub const COMBINED_PEM: &str = "tls-combined.pem";
pub const DER_KEY: &str = "key.der";
pub const JKS: &str = "keystore.jks";
pub const JKS_TRUST: &str = "truststore.jks";
pub const PKCS12: &str = "keystore.p12";
pub const PKCS12_TRUST: &str = "truststore.p12";

/// Data keys certwright (or cert-manager) writes into a Certificate's Secret.
pub const OWN_KEYS: [&str; 9] = [
    "tls.crt",
    "tls.key",
    "ca.crt",
    COMBINED_PEM,
    DER_KEY,
    JKS,
    JKS_TRUST,
    PKCS12,
    PKCS12_TRUST,
];

/// The keystore passwords, as the caller read them (from the spec or the
/// Secrets it names); `None` where the spec asks for no such keystore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Passwords {
    pub pkcs12: Option<String>,
    pub jks: Option<String>,
}

/// The keys besides `tls.crt`, `tls.key` and `ca.crt` that the spec asks
/// for, given whether there is a CA (truststores need one).
pub fn wanted_outputs(spec: &CertificateSpec, has_ca: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    for format in spec.additional_output_formats.iter().flatten() {
        out.push(match format.type_ {
            OutputFormatType::Der => DER_KEY,
            OutputFormatType::CombinedPem => COMBINED_PEM,
        });
    }
    let stores = spec.keystores.as_ref();
    if stores
        .and_then(|k| k.pkcs12.as_ref())
        .is_some_and(|p| p.create)
    {
        out.push(PKCS12);
        if has_ca {
            out.push(PKCS12_TRUST);
        }
    }
    if stores
        .and_then(|k| k.jks.as_ref())
        .is_some_and(|j| j.create)
    {
        out.push(JKS);
        if has_ca {
            out.push(JKS_TRUST);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `key.der` as cert-manager writes it: the DER inside `tls.key`'s PEM.
fn der_key(key_pem: &str) -> Result<Vec<u8>, String> {
    pem::parse(key_pem)
        .map(|p| p.into_contents())
        .map_err(|e| format!("tls.key is not PEM: {e}"))
}

/// `tls-combined.pem` as cert-manager writes it: the key, a newline, the chain.
fn combined_pem(key_pem: &str, chain_pem: &str) -> Vec<u8> {
    format!("{key_pem}\n{chain_pem}").into_bytes()
}

/// The additional output formats and keystores the spec asks for.
pub fn outputs(
    spec: &CertificateSpec,
    key_pem: &str,
    chain_pem: &str,
    ca_pem: Option<&str>,
    passwords: &Passwords,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let ca_pem = ca_pem.unwrap_or_default();
    let wanted = wanted_outputs(spec, !ca_pem.is_empty());
    let stores = spec.keystores.as_ref();
    let profile = stores
        .and_then(|k| k.pkcs12.as_ref())
        .and_then(|p| p.profile);
    let alias = stores
        .and_then(|k| k.jks.as_ref())
        .and_then(|j| j.alias.clone())
        .unwrap_or_else(|| "certificate".into());
    let contents = if wanted.iter().any(|k| k.contains("store")) {
        let key = PrivateKey::from_pem(key_pem.as_bytes()).map_err(|e| format!("tls.key: {e}"))?;
        Some(Contents::new(&key, chain_pem, ca_pem).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mut out = BTreeMap::new();
    for name in wanted {
        let value = match (name, &contents) {
            (DER_KEY, _) => der_key(key_pem)?,
            (COMBINED_PEM, _) => combined_pem(key_pem, chain_pem),
            (PKCS12, Some(c)) => {
                keystore::pkcs12_keystore(profile, password(&passwords.pkcs12, "PKCS#12")?, c)
                    .map_err(encoding("PKCS#12 keystore"))?
            }
            (PKCS12_TRUST, Some(c)) => keystore::pkcs12_truststore(
                profile,
                password(&passwords.pkcs12, "PKCS#12")?,
                &c.cas,
            )
            .map_err(encoding("PKCS#12 truststore"))?,
            (JKS, Some(c)) => jks::keystore(password(&passwords.jks, "JKS")?, &alias, c)
                .map_err(encoding("JKS keystore"))?,
            (_, Some(c)) => jks::truststore(password(&passwords.jks, "JKS")?, &c.cas)
                .map_err(encoding("JKS truststore"))?,
            (_, None) => continue,
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

fn password<'a>(read: &'a Option<String>, kind: &str) -> Result<&'a str, String> {
    read.as_deref()
        .ok_or_else(|| format!("no password was read for the {kind} keystore"))
}

fn encoding(what: &'static str) -> impl Fn(keystore::KeystoreError) -> String {
    move |e| format!("encoding the {what}: {e}")
}

/// Keys certwright or cert-manager wrote that the Secret should no longer
/// hold: after a spec change, or left by cert-manager before a migration.
pub fn stale<'a>(
    existing: impl IntoIterator<Item = &'a String>,
    written: &BTreeMap<String, ByteString>,
) -> Vec<String> {
    existing
        .into_iter()
        .filter(|k| OWN_KEYS.contains(&k.as_str()) && !written.contains_key(*k))
        .cloned()
        .collect()
}

/// Why the Secret's outputs no longer match the spec (written again
/// without issuing, as cert-manager's post-issuance checks do), if they
/// do not. Keystores are checked for presence: their encryption is salted.
pub fn outputs_drift(spec: &CertificateSpec, data: &BTreeMap<String, Vec<u8>>) -> Option<String> {
    let text = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
    let (key_pem, chain_pem) = (text("tls.key")?, text("tls.crt")?);
    let has_ca = data.get("ca.crt").is_some_and(|c| !c.is_empty());
    let wanted = wanted_outputs(spec, has_ca);
    for name in &wanted {
        let have = data.get(*name).filter(|v| !v.is_empty());
        let right = match *name {
            DER_KEY => have.is_some_and(|v| der_key(&key_pem).is_ok_and(|d| &d == v)),
            COMBINED_PEM => have.is_some_and(|v| *v == combined_pem(&key_pem, &chain_pem)),
            _ => have.is_some(),
        };
        if !right {
            return Some(format!("{name} is missing or out of date"));
        }
    }
    let extra = OWN_KEYS[3..]
        .iter()
        .find(|k| data.contains_key(**k) && !wanted.contains(k));
    extra.map(|k| format!("{k} is no longer asked for"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec_with_outputs(pkcs12: bool, jks: bool) -> CertificateSpec {
        serde_json::from_value(json!({
            "secretName": "web-tls",
            "issuerRef": {"name": "le"},
            "additionalOutputFormats": [{"type": "DER"}, {"type": "CombinedPEM"}],
            "keystores": {
                "pkcs12": {"create": pkcs12, "password": "p", "profile": "Modern2023"},
                "jks": {"create": jks, "password": "j"},
            },
        }))
        .expect("spec")
    }

    fn key_and_chain() -> (String, String) {
        use crate::pki::keys::KeyKind;
        crate::install_crypto_provider();
        let key = PrivateKey::generate(KeyKind::Ecdsa(256)).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["web.test".to_string()])
            .expect("params")
            .self_signed(&key.key_pair().expect("pair"))
            .expect("cert");
        (
            key.to_pem(crate::api::certificate::PrivateKeyEncoding::Pkcs1)
                .expect("pem"),
            cert.pem(),
        )
    }

    #[test]
    fn the_spec_names_its_outputs_and_truststores_need_a_ca() {
        let spec = spec_with_outputs(true, false);
        assert_eq!(
            wanted_outputs(&spec, false),
            [DER_KEY, PKCS12, COMBINED_PEM]
        );
        assert_eq!(
            wanted_outputs(&spec_with_outputs(true, true), true),
            [DER_KEY, JKS, PKCS12, COMBINED_PEM, JKS_TRUST, PKCS12_TRUST]
        );
        assert!(wanted_outputs(&CertificateSpec::default(), true).is_empty());
    }

    #[test]
    fn outputs_are_written_as_cert_manager_writes_them() {
        let (key_pem, chain_pem) = key_and_chain();
        let spec = spec_with_outputs(true, true);
        let passwords = Passwords {
            pkcs12: Some("p".into()),
            jks: Some("j".into()),
        };
        let out = outputs(&spec, &key_pem, &chain_pem, None, &passwords).expect("outputs");
        assert_eq!(
            out.keys().map(String::as_str).collect::<Vec<_>>(),
            [DER_KEY, JKS, PKCS12, COMBINED_PEM]
        );
        assert_eq!(
            out[COMBINED_PEM],
            format!("{key_pem}\n{chain_pem}").into_bytes()
        );
        assert_eq!(out[DER_KEY], pem::parse(&key_pem).unwrap().contents());
        assert_eq!(out[JKS][..4], [0xfe, 0xed, 0xfe, 0xed]);
        assert_eq!(out[PKCS12][0], 0x30);
        let missing = outputs(&spec, &key_pem, &chain_pem, None, &Passwords::default());
        assert_eq!(
            missing.unwrap_err(),
            "no password was read for the JKS keystore"
        );
    }

    #[test]
    fn drift_is_what_the_spec_asks_and_the_secret_lacks_or_keeps() {
        let (key_pem, chain_pem) = key_and_chain();
        let spec = spec_with_outputs(true, false);
        let passwords = Passwords {
            pkcs12: Some("p".into()),
            jks: None,
        };
        let mut data: BTreeMap<String, Vec<u8>> =
            outputs(&spec, &key_pem, &chain_pem, None, &passwords).expect("outputs");
        data.insert("tls.key".into(), key_pem.clone().into_bytes());
        data.insert("tls.crt".into(), chain_pem.clone().into_bytes());
        assert_eq!(outputs_drift(&spec, &data), None, "as written");
        let mut old = data.clone();
        old.insert(COMBINED_PEM.into(), b"an older chain".to_vec());
        assert_eq!(
            outputs_drift(&spec, &old).as_deref(),
            Some("tls-combined.pem is missing or out of date")
        );
        let mut extra = data.clone();
        extra.insert(JKS.into(), b"cert-manager's".to_vec());
        assert_eq!(
            outputs_drift(&spec, &extra).as_deref(),
            Some("keystore.jks is no longer asked for")
        );
        assert!(
            outputs_drift(&spec_with_outputs(true, true), &data).is_some(),
            "JKS added"
        );
        let plain = [("tls.key", &key_pem), ("tls.crt", &chain_pem)]
            .map(|(k, v)| (k.to_string(), v.clone().into_bytes()))
            .into();
        assert_eq!(outputs_drift(&CertificateSpec::default(), &plain), None);
    }

    #[test]
    fn stale_keys_are_own_keys_not_written_again() {
        let existing: Vec<String> = ["tls.crt", "keystore.jks", "ca.crt", "team-notes"]
            .map(String::from)
            .into();
        let written: BTreeMap<String, ByteString> =
            [("tls.crt".to_string(), ByteString(vec![]))].into();
        assert_eq!(stale(&existing, &written), ["keystore.jks", "ca.crt"]);
    }
}

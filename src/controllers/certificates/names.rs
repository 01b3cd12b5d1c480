//! Whether what was requested and issued still fits a Certificate's spec.
//!
//! A request is compared strictly: every field that goes into the CSR,
//! as the spec would build it now (the CA cannot have changed it).
//!
//! An issued leaf serves the names a Certificate asks for, judged
//! as CAs actually issue: a name may move between the subject's common
//! name and the SANs (pebble sets the CN to the first SAN; Let's Encrypt's
//! `tlsserver` and `shortlived` profiles leave it out), CAs drop email and
//! URI SANs but never add any, and addresses are compared as addresses
//! (an IPv4-mapped IPv6 address comes back as IPv4). Comparing exactly
//! re-issued without end against such CAs.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::api::certificate::CertificateSpec;
use crate::api::{Certificate, CertificateRequest};
use crate::pki::cert::LeafInfo;
use crate::pki::csr;
use crate::pki::keys::PrivateKey;

fn lower<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    names.into_iter().map(|n| n.to_ascii_lowercase()).collect()
}

fn addresses<'a>(ips: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    ips.into_iter()
        .map(|ip| match ip.parse::<IpAddr>() {
            Ok(addr) => addr.to_canonical().to_string(),
            Err(_) => ip.clone(),
        })
        .collect()
}

/// The spec fields `leaf` does not serve, in cert-manager's field names.
pub fn violations(spec: &CertificateSpec, leaf: &LeafInfo) -> Vec<&'static str> {
    let mut out = Vec::new();
    let wanted = lower(spec.dns_names.iter().flatten());
    let common_name = crate::pki::subject::common_name(spec).map(|cn| cn.to_ascii_lowercase());
    // Every name the leaf answers to, wherever the CA put it.
    let served: BTreeSet<String> = lower(leaf.dns_names.iter().chain(leaf.common_name.iter()));
    let allowed: BTreeSet<String> = wanted.iter().cloned().chain(common_name.clone()).collect();
    let extra_san = leaf
        .dns_names
        .iter()
        .any(|n| !allowed.contains(&n.to_ascii_lowercase()));
    if !wanted.is_subset(&served) || extra_san {
        out.push("spec.dnsNames");
    }
    if let Some(cn) = &common_name
        && !served.contains(cn)
        && !addresses(&leaf.ip_addresses).contains(cn)
    {
        out.push("spec.commonName");
    }
    if addresses(spec.ip_addresses.iter().flatten()) != addresses(&leaf.ip_addresses) {
        out.push("spec.ipAddresses");
    }
    if !lower(&leaf.uris).is_subset(&lower(spec.uris.iter().flatten())) {
        out.push("spec.uris");
    }
    if !lower(&leaf.email_addresses).is_subset(&lower(spec.email_addresses.iter().flatten())) {
        out.push("spec.emailAddresses");
    }
    out
}

/// The fields in which an existing request no longer fits the
/// Certificate: its issuer, duration, usages and isCA, and a CSR with
/// every field the current spec puts in one, from the current key.
pub fn misfits(
    existing: &CertificateRequest,
    cert: &Certificate,
    key: &PrivateKey,
) -> Vec<&'static str> {
    let spec = &existing.spec;
    let mut out = Vec::new();
    if spec.issuer_ref != cert.spec.issuer_ref {
        out.push("spec.issuerRef");
    }
    if spec.duration != cert.spec.duration {
        out.push("spec.duration");
    }
    let Ok(have) = csr::parse(&spec.request.0) else {
        out.push("spec.request");
        return out;
    };
    if key.public_key_info().ok().as_deref() != Some(have.public_key_info.as_slice()) {
        out.push("spec.privateKey");
    }
    match csr::build(&cert.spec, key).map(|c| csr::parse(c.pem.as_bytes())) {
        Ok(Ok(want)) => out.extend(csr::differences(&have, &want)),
        // The spec can no longer be turned into a CSR: building says why.
        _ => out.push("spec"),
    }
    // The request's own fields, which reach the CSR only in part
    // (encodeUsagesInRequest: false leaves the usages out).
    for (differs, field) in [
        (spec.is_ca != cert.spec.is_ca, "spec.isCA"),
        (spec.usages != cert.spec.usages, "spec.usages"),
    ] {
        if differs && !out.contains(&field) {
            out.push(field);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cn: Option<&str>, dns: &[&str]) -> CertificateSpec {
        CertificateSpec {
            common_name: cn.map(String::from),
            dns_names: Some(dns.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn leaf(cn: Option<&str>, dns: &[&str]) -> LeafInfo {
        LeafInfo {
            common_name: cn.map(String::from),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_common_name_the_ca_moved_or_dropped_still_matches() {
        // pebble: the CN becomes the first SAN, whatever the spec said.
        let s = spec(
            Some("b.example.test"),
            &["a.example.test", "b.example.test"],
        );
        let l = leaf(
            Some("a.example.test"),
            &["a.example.test", "b.example.test"],
        );
        assert_eq!(violations(&s, &l), Vec::<&str>::new());
        // Let's Encrypt's tlsserver profile: no CN at all.
        let l = leaf(None, &["a.example.test", "b.example.test"]);
        assert_eq!(violations(&s, &l), Vec::<&str>::new());
        // A CN that is not among dnsNames but is served as a SAN.
        let s = spec(Some("c.example.test"), &["a.example.test"]);
        let l = leaf(
            Some("a.example.test"),
            &["a.example.test", "c.example.test"],
        );
        assert_eq!(violations(&s, &l), Vec::<&str>::new());
        // Case does not matter in DNS names.
        let s = spec(None, &["A.Example.Test"]);
        assert_eq!(
            violations(&s, &leaf(None, &["a.example.test"])),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn names_really_missing_or_added_still_mismatch() {
        let s = spec(None, &["a.example.test", "new.example.test"]);
        let l = leaf(Some("a.example.test"), &["a.example.test"]);
        assert_eq!(violations(&s, &l), ["spec.dnsNames"]);
        let s = spec(None, &["a.example.test"]);
        let l = leaf(None, &["a.example.test", "gone.example.test"]);
        assert_eq!(violations(&s, &l), ["spec.dnsNames"]);
        let s = spec(Some("other.example.test"), &["a.example.test"]);
        let l = leaf(Some("a.example.test"), &["a.example.test"]);
        assert_eq!(violations(&s, &l), ["spec.commonName"]);
    }

    #[test]
    fn dropped_email_and_uri_sans_match_added_ones_do_not() {
        let mut s = spec(None, &["a.example.test"]);
        s.email_addresses = Some(vec!["ops@example.test".into()]);
        s.uris = Some(vec!["spiffe://example.test/web".into()]);
        let mut l = leaf(Some("a.example.test"), &["a.example.test"]);
        assert_eq!(violations(&s, &l), Vec::<&str>::new());
        l.email_addresses = vec!["someone@else.test".into()];
        l.uris = vec!["https://else.test".into()];
        assert_eq!(violations(&s, &l), ["spec.uris", "spec.emailAddresses"]);
    }

    #[test]
    fn addresses_compare_as_addresses() {
        let mut s = spec(None, &[]);
        s.ip_addresses = Some(vec!["::ffff:192.0.2.7".into(), "2001:DB8::1".into()]);
        let mut l = leaf(None, &[]);
        l.ip_addresses = vec!["192.0.2.7".into(), "2001:db8::1".into()];
        assert_eq!(violations(&s, &l), Vec::<&str>::new());
        l.ip_addresses = vec!["192.0.2.8".into(), "2001:db8::1".into()];
        assert_eq!(violations(&s, &l), ["spec.ipAddresses"]);
        // An address as the common name is served by the IP SAN.
        let mut s = spec(Some("192.0.2.7"), &[]);
        s.ip_addresses = Some(vec!["192.0.2.7".into()]);
        l.ip_addresses = vec!["192.0.2.7".into()];
        assert_eq!(violations(&s, &l), Vec::<&str>::new());
    }
}

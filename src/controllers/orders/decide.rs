//! The Order controller's pure decisions: which identifiers to order,
//! when an Order is done, and how ACME states map to cert-manager's.

use instant_acme::{AuthorizationStatus, Identifier};

use crate::api::OrderSpec;
use crate::api::order::{AcmeState, OrderStatus};

/// Whether the Order has reached a state it never leaves.
pub fn is_final(status: &OrderStatus) -> bool {
    match status.state {
        Some(AcmeState::Valid) => status.certificate.is_some(),
        Some(AcmeState::Invalid | AcmeState::Errored | AcmeState::Expired) => true,
        _ => false,
    }
}

/// The identifiers to order: the DNS names, the common name when it is
/// not among them, and the IP addresses.
/// Why an order for `ids` would be refused by any ACME CA for their form
/// alone, if it would: said before anything is sent (no failed-validation
/// budget spent, no order).
pub fn refused_before_asking(ids: &[Identifier]) -> Option<String> {
    if ids.is_empty() {
        return Some(
            "the Certificate names nothing an ACME CA can certify: ACME orders DNS names (dnsNames, commonName) and IP addresses (ipAddresses) only; emailAddresses and uris need another issuer".into(),
        );
    }
    ids.iter().find_map(|id| match id {
        Identifier::Ip(std::net::IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(|v4| {
            format!(
                "{v6} is an IPv4 address written as IPv6 (IPv4-mapped); the CA would validate {v4} instead: write {v4} in ipAddresses"
            )
        }),
        _ => None,
    })
}

pub fn identifiers(spec: &OrderSpec) -> Vec<Identifier> {
    let mut names: Vec<String> = Vec::new();
    let mut ips: Vec<std::net::IpAddr> = Vec::new();
    let mut add = |value: &str| {
        if let Ok(ip) = value.parse::<std::net::IpAddr>() {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        } else {
            let name = value.trim_end_matches('.').to_ascii_lowercase();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    };
    for name in spec.dns_names.iter().flatten() {
        add(name);
    }
    if let Some(cn) = &spec.common_name {
        add(cn);
    }
    for ip in spec.ip_addresses.iter().flatten() {
        add(ip);
    }
    names
        .into_iter()
        .map(Identifier::Dns)
        .chain(ips.into_iter().map(Identifier::Ip))
        .collect()
}

/// The issuer common name of the last certificate of a PEM chain.
pub fn top_issuer(chain: &str) -> Option<String> {
    let blocks = pem::parse_many(chain).ok()?;
    let last = blocks.iter().rev().find(|b| b.tag() == "CERTIFICATE")?;
    let (_, cert) = x509_parser::parse_x509_certificate(last.contents()).ok()?;
    let cn = cert
        .issuer()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

pub fn order_state(s: instant_acme::OrderStatus) -> AcmeState {
    match s {
        instant_acme::OrderStatus::Pending => AcmeState::Pending,
        instant_acme::OrderStatus::Ready => AcmeState::Ready,
        instant_acme::OrderStatus::Processing => AcmeState::Processing,
        instant_acme::OrderStatus::Valid => AcmeState::Valid,
        instant_acme::OrderStatus::Invalid => AcmeState::Invalid,
    }
}

pub fn authorization_state(s: AuthorizationStatus) -> AcmeState {
    match s {
        AuthorizationStatus::Pending => AcmeState::Pending,
        AuthorizationStatus::Valid => AcmeState::Valid,
        AuthorizationStatus::Expired => AcmeState::Expired,
        _ => AcmeState::Invalid,
    }
}

pub fn challenge_type(t: &instant_acme::ChallengeType) -> String {
    match t {
        instant_acme::ChallengeType::Http01 => "http-01".into(),
        instant_acme::ChallengeType::Dns01 => "dns-01".into(),
        instant_acme::ChallengeType::TlsAlpn01 => "tls-alpn-01".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn identifiers_take_names_common_name_and_ips_once() {
        let spec = OrderSpec {
            dns_names: Some(vec!["b.example".into(), "A.example.".into()]),
            common_name: Some("a.example".into()),
            ip_addresses: Some(vec!["10.0.0.1".into()]),
            ..Default::default()
        };
        let ids = identifiers(&spec);
        assert_eq!(
            ids,
            vec![
                Identifier::Dns("b.example".into()),
                Identifier::Dns("a.example".into()),
                Identifier::Ip("10.0.0.1".parse().expect("ip")),
            ]
        );
        let only_cn = OrderSpec {
            common_name: Some("cn.example".into()),
            ..Default::default()
        };
        assert_eq!(
            identifiers(&only_cn),
            vec![Identifier::Dns("cn.example".into())]
        );
    }

    #[test]
    fn final_states() {
        let mut s = OrderStatus {
            state: Some(AcmeState::Valid),
            ..Default::default()
        };
        assert!(!is_final(&s), "valid without the chain is not done");
        s.certificate = Some(ByteString(b"pem".to_vec()));
        assert!(is_final(&s));
        for state in [AcmeState::Invalid, AcmeState::Errored, AcmeState::Expired] {
            assert!(is_final(&OrderStatus {
                state: Some(state),
                ..Default::default()
            }));
        }
        for state in [AcmeState::Pending, AcmeState::Ready, AcmeState::Processing] {
            assert!(!is_final(&OrderStatus {
                state: Some(state),
                ..Default::default()
            }));
        }
    }

    #[test]
    fn forms_no_ca_accepts_are_said_before_asking() {
        assert!(refused_before_asking(&[]).is_some_and(|w| w.contains("emailAddresses and uris")));
        let mapped: std::net::IpAddr = "::ffff:127.166.0.1".parse().expect("ip");
        let why = refused_before_asking(&[Identifier::Ip(mapped)]).expect("refused");
        assert!(why.contains("write 127.166.0.1 in ipAddresses"), "{why}");
        let fine = [
            Identifier::Dns("a.example".into()),
            Identifier::Ip("2001:db8::1".parse().expect("ip")),
        ];
        assert_eq!(refused_before_asking(&fine), None);
    }
}

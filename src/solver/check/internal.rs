//! Addresses a redirect may not lead the self-check to: a tenant controls
//! where its domain redirects, and the check runs inside the cluster, so
//! without this it would fetch loopback, metadata endpoints, Pods and
//! Services for anyone who asks. Refused after a redirect: loopback and
//! unspecified, link-local (cloud metadata), the private and shared
//! (CGNAT) ranges, and the cluster's Service range. The exception: an
//! address the first request already went to, and, when the first request
//! went to a private address itself (a cluster that validates internal
//! names), other private addresses.

use std::net::IpAddr;

/// An IP range in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub net: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let why = || format!("{s:?} is not a CIDR range such as 10.96.0.0/12");
        let (ip, prefix) = s.trim().split_once('/').ok_or_else(why)?;
        let net: IpAddr = ip.parse().map_err(|_| why())?;
        let prefix: u8 = prefix.parse().map_err(|_| why())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(why());
        }
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ((net, width), (addr, other)) = (bits(self.net), bits(ip));
        if width != other {
            return false;
        }
        let host_bits = width - u32::from(self.prefix);
        let shift = |v: u128| v.checked_shr(host_bits).unwrap_or(0);
        shift(net) == shift(addr)
    }
}

const fn v4(a: u8, b: u8, prefix: u8) -> Cidr {
    Cidr {
        net: IpAddr::V4(std::net::Ipv4Addr::new(a, b, 0, 0)),
        prefix,
    }
}

const fn v6(first: u16, prefix: u8) -> Cidr {
    Cidr {
        net: IpAddr::V6(std::net::Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, 0)),
        prefix,
    }
}

const PRIVATE: [Cidr; 5] = [
    v4(10, 0, 8),
    v4(172, 16, 12),
    v4(192, 168, 16),
    v4(100, 64, 10),
    v6(0xfc00, 7),
];

/// What an address a redirect may not lead to is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Loopback,
    Unspecified,
    LinkLocal,
    Service,
    Private,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Loopback => "a loopback address",
            Kind::Unspecified => "an unspecified address",
            Kind::LinkLocal => "a link-local address (where cloud metadata services answer)",
            Kind::Service => "an address of the cluster's Service range",
            Kind::Private => "a private address",
        }
    }

    /// The cluster's own networks, as opposed to the host's.
    fn in_cluster(self) -> bool {
        matches!(self, Kind::Service | Kind::Private)
    }
}

/// What `ip` is, when a redirect may not lead there (`services`: the
/// cluster's Service ranges).
pub fn kind(ip: IpAddr, services: &[Cidr]) -> Option<Kind> {
    // An IPv4-mapped IPv6 address is the IPv4 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        return Some(Kind::Loopback);
    }
    if ip.is_unspecified() || v4(0, 0, 8).contains(ip) {
        return Some(Kind::Unspecified);
    }
    if v4(169, 254, 16).contains(ip) || v6(0xfe80, 10).contains(ip) {
        return Some(Kind::LinkLocal);
    }
    if services.iter().any(|c| c.contains(ip)) {
        return Some(Kind::Service);
    }
    if PRIVATE.iter().any(|c| c.contains(ip)) {
        return Some(Kind::Private);
    }
    None
}

/// Why a redirect may not be followed to `to`, given the addresses the
/// first request went to.
pub fn refused(to: IpAddr, first: &[IpAddr], services: &[Cidr]) -> Option<String> {
    let what = kind(to, services)?;
    if first.contains(&to) {
        return None;
    }
    let first_inside = first
        .iter()
        .any(|f| kind(*f, services).is_some_and(Kind::in_cluster));
    if what.in_cluster() && first_inside {
        return None;
    }
    Some(format!(
        "it resolves to {to}, {}: after a redirect the self-check goes into the cluster's own networks only where the first request went",
        what.describe()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ranges_parse_and_contain() {
        let c: Cidr = "10.96.0.0/12".parse().expect("cidr");
        assert!(c.contains(ip("10.96.0.1")) && c.contains(ip("10.111.255.255")));
        assert!(!c.contains(ip("10.112.0.0")) && !c.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains(ip("198.51.100.10")));
        let v6: Cidr = "fd00:10:96::/112".parse().expect("cidr");
        assert!(v6.contains(ip("fd00:10:96::5")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
    }

    #[test]
    fn internal_addresses_are_named() {
        let services: Vec<Cidr> = vec!["10.96.0.0/12".parse().expect("cidr")];
        for (addr, what) in [
            ("127.0.0.1", "a loopback address"),
            ("::1", "a loopback address"),
            ("0.0.0.0", "an unspecified address"),
            ("0.1.2.3", "an unspecified address"),
            ("169.254.169.254", "a link-local address"),
            ("fe80::1", "a link-local address"),
            ("10.96.0.10", "an address of the cluster's Service range"),
            ("10.1.2.3", "a private address"),
            ("172.20.0.1", "a private address"),
            ("192.168.1.1", "a private address"),
            ("100.64.0.1", "a private address"),
            ("fd12::1", "a private address"),
            ("::ffff:127.166.0.1", "a loopback address"),
        ] {
            let got = kind(ip(addr), &services).map(Kind::describe);
            assert!(got.is_some_and(|g| g.starts_with(what)), "{addr}: {got:?}");
        }
        for public in ["198.51.100.10", "8.8.8.8", "2001:db8::1", "172.32.0.1"] {
            assert_eq!(kind(ip(public), &services), None, "{public}");
        }
    }

    #[test]
    fn a_redirect_inward_is_refused_unless_the_first_hop_went_there() {
        let public = [ip("198.51.100.10")];
        let why = refused(ip("10.0.0.7"), &public, &[]).expect("refused");
        assert!(why.contains("10.0.0.7, a private address"), "{why}");
        assert!(refused(ip("169.254.169.254"), &public, &[]).is_some());
        assert_eq!(refused(ip("203.0.113.5"), &public, &[]), None);
        // A cluster that validates internal names (here through its
        // ingress controller's Service).
        let services: Vec<Cidr> = vec!["10.96.0.0/12".parse().expect("cidr")];
        let inside = [ip("10.96.0.80")];
        assert_eq!(refused(ip("10.96.0.80"), &inside, &services), None);
        assert_eq!(refused(ip("192.168.3.4"), &inside, &services), None);
        assert_eq!(refused(ip("10.96.0.1"), &inside, &services), None);
        assert!(refused(ip("169.254.169.254"), &inside, &services).is_some());
        assert!(refused(ip("127.0.0.1"), &inside, &services).is_some());
        let loopback = [ip("127.0.0.1")];
        assert_eq!(refused(ip("127.0.0.1"), &loopback, &[]), None);
    }
}

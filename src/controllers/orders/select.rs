//! Which of an Issuer's solvers proves a name, with cert-manager's
//! precedence: a `dnsNames` match beats a `dnsZones` match (the longest zone
//! wins), which beats a labels-only match, which beats a solver without a
//! selector; ties go to the solver with more `matchLabels`, then to the one
//! listed first. Only solvers able to prove the name take part (HTTP-01
//! cannot prove wildcards).

use std::collections::BTreeMap;

use crate::api::AcmeChallengeSolver;

/// How specifically a solver matched; larger is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    Default,
    Labels,
    Zone(usize),
    Name,
}

fn zone_match(domain: &str, zone: &str) -> bool {
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    domain == zone || domain.ends_with(&format!(".{zone}"))
}

/// Why the issuer's `solvers` cannot prove `name` (as an Order lists it,
/// `*.` first for a wildcard) with what certwright solves today, if they
/// cannot. Decided before anything is ordered, so an impossible name costs
/// no ACME order.
pub fn cannot_prove(
    solvers: &[AcmeChallengeSolver],
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    let (domain, wildcard) = match name.strip_prefix("*.") {
        Some(domain) => (domain, true),
        None => (name, false),
    };
    let why = match solver_for(solvers, domain, wildcard, labels) {
        None if wildcard => format!(
            "no solver of the issuer can prove {name}: wildcard names need DNS-01, and the issuer has no DNS-01 solver whose selector matches them"
        ),
        None => format!("no solver of the issuer matches {name}"),
        Some(i) => match &solvers[i].dns01 {
            Some(dns) if !dns.supported() => {
                return Some(format!(
                    "The solver chosen for {name} is DNS-01 with a provider certwright does not support yet ({} today); use one of those or an HTTP-01 solver whose selector matches it",
                    crate::api::dns01::SUPPORTED_PROVIDERS
                ));
            }
            _ if solvers[i]
                .http01
                .as_ref()
                .is_some_and(|h| h.ingress.is_none() && h.gateway_http_route.is_some()) =>
            {
                return Some(format!(
                    "The solver chosen for {name} is an HTTP-01 Gateway API HTTPRoute solver, which certwright does not support yet; use an http01.ingress solver whose selector matches it"
                ));
            }
            _ => return None,
        },
    };
    Some(format!(
        "Failed to determine a valid solver configuration for the set of domains on the Order: {why}"
    ))
}

/// The index of the solver for `domain` (without `*.`; `wildcard` says
/// whether the name was a wildcard), given the labels of the Certificate.
pub fn solver_for(
    solvers: &[AcmeChallengeSolver],
    domain: &str,
    wildcard: bool,
    labels: &BTreeMap<String, String>,
) -> Option<usize> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let requested = if wildcard {
        format!("*.{domain}")
    } else {
        domain.clone()
    };
    let mut best: Option<(Specificity, usize, usize)> = None;
    for (i, solver) in solvers.iter().enumerate() {
        let can_prove = solver.dns01.is_some() || (solver.http01.is_some() && !wildcard);
        if !can_prove {
            continue;
        }
        let (specificity, label_count) = match &solver.selector {
            None => (Specificity::Default, 0),
            Some(sel) => {
                let match_labels = sel.match_labels.clone().unwrap_or_default();
                if !match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                    continue;
                }
                let names = sel.dns_names.as_deref().unwrap_or_default();
                let zones = sel.dns_zones.as_deref().unwrap_or_default();
                let by_name = names
                    .iter()
                    .any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&requested));
                let zone = zones
                    .iter()
                    .filter(|z| zone_match(&domain, z))
                    .map(|z| z.trim_end_matches('.').len())
                    .max();
                let specificity = if by_name {
                    Specificity::Name
                } else if let Some(len) = zone {
                    Specificity::Zone(len)
                } else if names.is_empty() && zones.is_empty() {
                    if match_labels.is_empty() {
                        Specificity::Default
                    } else {
                        Specificity::Labels
                    }
                } else {
                    continue;
                };
                (specificity, match_labels.len())
            }
        };
        let better = match best {
            None => true,
            Some((s, l, _)) => (specificity, label_count) > (s, l),
        };
        if better {
            best = Some((specificity, label_count, i));
        }
    }
    best.map(|(_, _, i)| i)
}

/// `solver` with the Order's HTTP-01 Ingress overrides applied
/// (cert-manager's `acme.cert-manager.io/http01-override-ingress-*`
/// annotations, which the ingress-shim sets from the Ingress's and which
/// travel from the Certificate through its request to the Order): one
/// replaces the solver's class, ingressClassName and name. At most one
/// may be given.
pub fn with_overrides(
    mut solver: AcmeChallengeSolver,
    annotations: &BTreeMap<String, String>,
) -> Result<AcmeChallengeSolver, String> {
    use crate::controllers::ingress_shim::annotations::{
        OVERRIDE_INGRESS_CLASS, OVERRIDE_INGRESS_CLASS_NAME, OVERRIDE_INGRESS_NAME,
    };
    let Some(ingress) = solver.http01.as_mut().and_then(|h| h.ingress.as_mut()) else {
        return Ok(solver);
    };
    let name = annotations.get(OVERRIDE_INGRESS_NAME);
    let class = annotations.get(OVERRIDE_INGRESS_CLASS);
    let class_name = annotations.get(OVERRIDE_INGRESS_CLASS_NAME);
    match [name, class, class_name].iter().flatten().count() {
        0 => return Ok(solver),
        1 => {}
        _ => {
            return Err(format!(
                "may not specify more than one of the annotations {OVERRIDE_INGRESS_NAME:?}, {OVERRIDE_INGRESS_CLASS:?} and {OVERRIDE_INGRESS_CLASS_NAME:?} on the Certificate"
            ));
        }
    }
    ingress.name = name.cloned();
    ingress.class = class.cloned();
    ingress.ingress_class_name = class_name.cloned();
    Ok(solver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::acme::CertificateDnsNameSelector;
    use crate::api::dns01::Dns01Solver;
    use crate::api::http01::Http01Solver;

    fn http(selector: Option<CertificateDnsNameSelector>) -> AcmeChallengeSolver {
        AcmeChallengeSolver {
            selector,
            http01: Some(Http01Solver::default()),
            dns01: None,
            wait_instead_of_self_check: None,
        }
    }

    fn dns(selector: Option<CertificateDnsNameSelector>) -> AcmeChallengeSolver {
        AcmeChallengeSolver {
            selector,
            http01: None,
            dns01: Some(Dns01Solver::default()),
            wait_instead_of_self_check: None,
        }
    }

    fn sel(
        names: &[&str],
        zones: &[&str],
        labels: &[(&str, &str)],
    ) -> Option<CertificateDnsNameSelector> {
        let list = |v: &[&str]| (!v.is_empty()).then(|| v.iter().map(|s| s.to_string()).collect());
        Some(CertificateDnsNameSelector {
            dns_names: list(names),
            dns_zones: list(zones),
            match_labels: (!labels.is_empty()).then(|| {
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
        })
    }

    #[test]
    fn names_certwright_cannot_prove_are_known_before_ordering() {
        let none = BTreeMap::new();
        let only_http = vec![http(None)];
        assert_eq!(cannot_prove(&only_http, "www.example.com", &none), None);
        let why =
            cannot_prove(&only_http, "*.example.com", &none).expect("a wildcard needs DNS-01");
        assert!(
            why.contains("*.example.com") && why.contains("wildcard names need DNS-01"),
            "{why}"
        );
        let scoped = vec![http(sel(&[], &["example.com"], &[]))];
        let why = cannot_prove(&scoped, "other.org", &none).expect("no solver matches");
        assert!(
            why.contains("no solver of the issuer matches other.org"),
            "{why}"
        );
        let why =
            cannot_prove(&[dns(None)], "www.example.com", &none).expect("DNS-01 is not solved yet");
        assert!(why.contains("DNS-01"), "{why}");
        let gateway = AcmeChallengeSolver {
            http01: Some(Http01Solver {
                ingress: None,
                gateway_http_route: Some(Default::default()),
            }),
            ..http(None)
        };
        let why = cannot_prove(&[gateway], "www.example.com", &none).expect("not supported yet");
        assert!(
            why.contains("Gateway API HTTPRoute") && why.contains("www.example.com"),
            "{why}"
        );
    }

    #[test]
    fn precedence() {
        let none = BTreeMap::new();
        let team: BTreeMap<String, String> = [("team".to_string(), "a".to_string())].into();
        let solvers = vec![
            http(None),                                             // 0 default
            http(sel(&[], &["example.com"], &[])),                  // 1 zone
            http(sel(&[], &["sys.example.com"], &[])),              // 2 longer zone
            http(sel(&["www.example.com"], &[], &[])),              // 3 exact name
            http(sel(&[], &[], &[("team", "a")])),                  // 4 labels only
            http(sel(&[], &["sys.example.com"], &[("team", "a")])), // 5 longer zone + label
        ];
        assert_eq!(
            solver_for(&solvers, "www.example.com", false, &none),
            Some(3)
        );
        assert_eq!(
            solver_for(&solvers, "api.sys.example.com", false, &none),
            Some(2)
        );
        assert_eq!(
            solver_for(&solvers, "api.sys.example.com", false, &team),
            Some(5),
            "more labels break the tie"
        );
        assert_eq!(
            solver_for(&solvers, "other.example.com", false, &none),
            Some(1)
        );
        assert_eq!(
            solver_for(&solvers, "other.org", false, &team),
            Some(4),
            "labels-only beats the default"
        );
        assert_eq!(solver_for(&solvers, "other.org", false, &none), Some(0));
        assert_eq!(
            solver_for(&solvers[1..2], "other.org", false, &none),
            None,
            "a selector that does not match excludes"
        );
    }

    #[test]
    fn wildcards_need_dns01_and_first_listed_wins_ties() {
        let none = BTreeMap::new();
        let solvers = vec![
            http(None),
            dns(sel(&[], &["example.com"], &[])),
            dns(sel(&[], &["example.com"], &[])),
        ];
        assert_eq!(solver_for(&solvers, "example.com", true, &none), Some(1));
        assert_eq!(
            solver_for(&solvers[..1], "example.com", true, &none),
            None,
            "HTTP-01 cannot prove a wildcard"
        );
        let named = vec![
            http(sel(&["*.example.com"], &[], &[])),
            dns(sel(&["*.example.com"], &[], &[])),
        ];
        assert_eq!(solver_for(&named, "example.com", true, &none), Some(1));
    }

    #[test]
    fn one_ingress_override_replaces_the_solvers_choice_of_ingress() {
        use crate::api::http01::Http01IngressSolver;
        let solver = AcmeChallengeSolver {
            selector: None,
            http01: Some(Http01Solver {
                ingress: Some(Http01IngressSolver {
                    ingress_class_name: Some("traefik".into()),
                    ..Default::default()
                }),
                gateway_http_route: None,
            }),
            dns01: None,
            wait_instead_of_self_check: None,
        };
        let ingress = |s: &AcmeChallengeSolver| s.http01.clone().unwrap().ingress.unwrap();
        let annotations = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let same = with_overrides(solver.clone(), &annotations(&[("other", "x")])).unwrap();
        assert_eq!(same, solver);
        let named = with_overrides(
            solver.clone(),
            &annotations(&[("acme.cert-manager.io/http01-override-ingress-name", "site")]),
        )
        .unwrap();
        assert_eq!(ingress(&named).name.as_deref(), Some("site"));
        assert_eq!(ingress(&named).ingress_class_name, None);
        let classed = with_overrides(
            solver.clone(),
            &annotations(&[(
                "acme.cert-manager.io/http01-override-ingress-class",
                "nginx",
            )]),
        )
        .unwrap();
        assert_eq!(ingress(&classed).class.as_deref(), Some("nginx"));
        assert_eq!(ingress(&classed).ingress_class_name, None);
        let two = with_overrides(
            solver.clone(),
            &annotations(&[
                (
                    "acme.cert-manager.io/http01-override-ingress-class",
                    "nginx",
                ),
                (
                    "acme.cert-manager.io/http01-override-ingress-ingressclassname",
                    "a",
                ),
            ]),
        );
        assert!(two.unwrap_err().contains("more than one"));
        let dns_only = dns(None);
        assert_eq!(
            with_overrides(
                dns_only.clone(),
                &annotations(&[("acme.cert-manager.io/http01-override-ingress-name", "x")])
            )
            .unwrap(),
            dns_only
        );
    }
}

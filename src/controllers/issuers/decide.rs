//! What an Issuer is to certwright, before any I/O: an ACME issuer it can
//! serve, or one it cannot, with the condition reason and message to show.

use crate::api::IssuerConfig;
use crate::api::dns01::{Dns01Solver, SUPPORTED_PROVIDERS};

/// The verdict on an issuer's spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// ACME with at least one solver certwright can run (HTTP-01 through
    /// an Ingress, DNS-01 with RFC 2136).
    Acme,
    /// Not servable: Ready=False with this reason and message.
    Unsupported {
        reason: &'static str,
        message: String,
    },
}

pub fn assess(config: &IssuerConfig) -> Verdict {
    let other = [
        (config.ca.is_some(), "ca"),
        (config.vault.is_some(), "vault"),
        (config.self_signed.is_some(), "selfSigned"),
        (config.venafi.is_some(), "venafi"),
    ];
    let Some(acme) = &config.acme else {
        let kind = other
            .iter()
            .find(|(set, _)| *set)
            .map(|(_, k)| *k)
            .unwrap_or("none");
        return Verdict::Unsupported {
            reason: "UnsupportedIssuerType",
            message: format!(
                "certwright only serves ACME issuers; this issuer is of type {kind:?}. Use cert-manager for it, or configure spec.acme"
            ),
        };
    };
    if acme.private_key_secret_ref.name.trim().is_empty() {
        return Verdict::Unsupported {
            reason: "InvalidConfig",
            message: "spec.acme.privateKeySecretRef.name is empty: name the Secret that holds (or will hold) the ACME account key".into(),
        };
    }
    let solvers = acme.solvers.as_deref().unwrap_or_default();
    if solvers.is_empty() {
        return Verdict::Unsupported {
            reason: "NoSolvers",
            message: "spec.acme.solvers is empty: add an http01 ingress solver so challenges can be solved".into(),
        };
    }
    let usable = solvers.iter().any(|s| {
        s.http01.as_ref().is_some_and(|h| h.ingress.is_some())
            || s.dns01.as_ref().is_some_and(Dns01Solver::supported)
    });
    if !usable {
        let dns = solvers.iter().any(|s| s.dns01.is_some());
        let message = if dns {
            format!(
                "this issuer's DNS-01 solvers use providers certwright does not support yet ({SUPPORTED_PROVIDERS} today): add one of those or an http01 ingress solver"
            )
        } else {
            "this issuer only has Gateway API HTTPRoute solvers, which certwright does not solve yet: add an http01 ingress solver".to_string()
        };
        return Verdict::Unsupported {
            reason: "NoSupportedSolver",
            message,
        };
    }
    Verdict::Acme
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::acme::{AcmeChallengeSolver, AcmeIssuer};
    use crate::api::http01::{Http01IngressSolver, Http01Solver};
    use crate::api::issuer::CaIssuer;

    fn acme(solvers: Vec<AcmeChallengeSolver>) -> IssuerConfig {
        IssuerConfig {
            acme: Some(AcmeIssuer {
                server: "https://acme/dir".into(),
                solvers: Some(solvers),
                private_key_secret_ref: crate::api::meta::SecretKeySelector {
                    name: "account".into(),
                    key: None,
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn verdicts() {
        let http = AcmeChallengeSolver {
            http01: Some(Http01Solver {
                ingress: Some(Http01IngressSolver::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let dns = AcmeChallengeSolver {
            dns01: Some(Dns01Solver::default()),
            ..Default::default()
        };
        let gateway = AcmeChallengeSolver {
            http01: Some(Http01Solver::default()),
            ..Default::default()
        };
        assert_eq!(assess(&acme(vec![dns.clone(), http])), Verdict::Acme);
        let rfc2136 = AcmeChallengeSolver {
            dns01: Some(Dns01Solver {
                rfc2136: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(assess(&acme(vec![rfc2136])), Verdict::Acme);
        let webhook = AcmeChallengeSolver {
            dns01: Some(Dns01Solver {
                webhook: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(assess(&acme(vec![webhook])), Verdict::Acme);
        assert!(
            matches!(assess(&acme(vec![dns])), Verdict::Unsupported { reason: "NoSupportedSolver", message } if message.contains("rfc2136"))
        );
        assert!(
            matches!(assess(&acme(vec![gateway])), Verdict::Unsupported { reason: "NoSupportedSolver", message } if message.contains("Gateway"))
        );
        assert!(matches!(
            assess(&acme(vec![])),
            Verdict::Unsupported {
                reason: "NoSolvers",
                ..
            }
        ));
        let ca = IssuerConfig {
            ca: Some(CaIssuer {
                secret_name: "ca".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            matches!(assess(&ca), Verdict::Unsupported { reason: "UnsupportedIssuerType", message } if message.contains("\"ca\""))
        );
    }

    #[test]
    fn an_account_key_secret_without_a_name_is_said() {
        let http = AcmeChallengeSolver {
            http01: Some(Http01Solver {
                ingress: Some(Http01IngressSolver::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut config = acme(vec![http]);
        assert_eq!(assess(&config), Verdict::Acme);
        if let Some(a) = config.acme.as_mut() {
            a.private_key_secret_ref.name = " ".into();
        }
        match assess(&config) {
            Verdict::Unsupported { reason, message } => {
                assert_eq!(reason, "InvalidConfig");
                assert!(
                    message.contains("privateKeySecretRef.name is empty"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

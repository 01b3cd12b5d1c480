//! `certwright check domain NAME`: the HTTP-01 self-check for a name,
//! without issuing: the name is resolved and a probe token fetched as the
//! CA will fetch tokens (redirect rules included). A 404 is the right
//! answer before an issuance (certwright routes each token only while its
//! Challenge is presented); an address that does not resolve, a refused
//! or timed-out connection, a redirect the CA will not follow or a 5xx is
//! what would fail the Challenge. With an issuer, it also says which of
//! the issuer's solvers would prove the name.

use std::collections::BTreeMap;

use crate::api::acme::AcmeChallengeSolver;
use crate::controllers::orders::select::solver_for;
use crate::solver::check::{Probe, SelfCheckFailure, reachable, token_path};

/// The token fetched: never one a CA issues (those are 43 characters of
/// base64url), so nothing can serve it by accident.
pub const PROBE_TOKEN: &str = "certwright-check-domain";

/// Ok with what was seen, or Err with why the CA could not fetch a token.
pub async fn check(probe: &Probe, name: &str) -> Result<String, String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.starts_with("*.") {
        return Err(format!(
            "{name} is a wildcard: the CA proves wildcard names with DNS-01 only"
        ));
    }
    match reachable(probe, &name, PROBE_TOKEN, "-").await {
        Ok(()) => Ok(format!(
            "{name}: something answered certwright's probe token with its own body: an odd server, but reachable"
        )),
        Err(SelfCheckFailure::NotRouted(_)) => Ok(format!(
            "{name}: reachable as the CA fetches tokens: GET http://{name}{} answered 404, as it should before an issuance (certwright routes each token only while its Challenge is presented)",
            token_path(PROBE_TOKEN)
        )),
        Err(e) => Err(format!(
            "{name}: the CA could not fetch an HTTP-01 token: {e}"
        )),
    }
}

/// Which solver of `solvers` would prove `name`, in words.
pub fn solver(solvers: &[AcmeChallengeSolver], name: &str, issuer: &str) -> String {
    let (domain, wildcard) = match name.strip_prefix("*.") {
        Some(d) => (d, true),
        None => (name, false),
    };
    let Some(i) = solver_for(solvers, domain, wildcard, &BTreeMap::new()) else {
        return format!(
            "{issuer}: no solver matches {name}; an Order for it would fail before anything is ordered"
        );
    };
    let s = &solvers[i];
    let how = if let Some(http) = &s.http01 {
        let ingress = http.ingress.as_ref();
        let class = ingress
            .and_then(|i| i.ingress_class_name.clone().or(i.class.clone()))
            .map(|c| format!("ingress class {c}"))
            .or_else(|| {
                ingress
                    .and_then(|i| i.name.clone())
                    .map(|n| format!("edits Ingress {n}"))
            })
            .unwrap_or_else(|| "the default ingress class".into());
        format!("HTTP-01 through {class}")
    } else if let Some(dns) = &s.dns01 {
        let provider = serde_json::to_value(dns)
            .ok()
            .and_then(|v| {
                v.as_object()
                    .and_then(|o| o.keys().find(|k| !k.starts_with("cname")).cloned())
            })
            .unwrap_or_else(|| "?".into());
        format!("DNS-01 with {provider}")
    } else {
        "no challenge type".into()
    };
    format!(
        "{issuer}: solver {} of its list proves {name}: {how}",
        i + 1
    )
}

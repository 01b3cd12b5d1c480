//! The Challenge controller's self-checks: the solver answers in-cluster,
//! then the name answers as the CA will fetch it (the issuer may send that
//! request to an address of its own, or skip it). Both must pass a number
//! of times in a row before the CA is asked.

use super::state::Ctx;
use crate::api::Challenge;
use crate::solver::check::{self, Probe};
use crate::solver::{Mode, SELF_CHECK_ADDRESS_ANNOTATION, SELF_CHECK_ANNOTATION};
use kube::ResourceExt;

/// What the checks found.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Both passed, this many times in a row.
    Passed(u32),
    /// A check failed: the reason, and whether the solver itself is
    /// missing (then it is presented again).
    Failed { reason: String, missing: bool },
}

fn ingress_class(ch: &Challenge) -> String {
    let solver = ch
        .spec
        .solver
        .http01
        .as_ref()
        .and_then(|h| h.ingress.as_ref());
    match solver {
        Some(s) if s.ingress_class_name.is_some() => {
            format!(
                "ingressClassName {:?}",
                s.ingress_class_name.as_deref().unwrap_or("")
            )
        }
        Some(s) if s.class.is_some() => format!("class {:?}", s.class.as_deref().unwrap_or("")),
        Some(s) if s.name.is_some() => format!("the Ingress {:?}", s.name.as_deref().unwrap_or("")),
        _ => "the default ingress class".into(),
    }
}

/// The cause of a failed check, as a bounded metric label.
pub fn cause(reason: &str) -> &'static str {
    let in_cluster = reason.starts_with("in-cluster:");
    if reason.contains("Pod") && (reason.contains("does not exist") || reason.contains("not ready"))
    {
        "solver_not_ready"
    } else if in_cluster {
        "solver_unreachable"
    } else if reason.contains("no such name")
        || reason.contains("no A or AAAA")
        || reason.contains("resolving ")
    {
        "dns"
    } else if reason.contains("redirect") {
        "redirect"
    } else if reason.contains("not routed") {
        "not_routed"
    } else if reason.contains("wrong status code") {
        "wrong_status"
    } else if reason.contains("is not the key authorization") {
        "wrong_answer"
    } else {
        "unreachable"
    }
}

/// Runs the checks once for `ch` presented in `mode`, and counts the result.
pub async fn run(ctx: &Ctx, ch: &Challenge, mode: Mode) -> Result<Verdict, kube::Error> {
    let verdict = check(ctx, ch, mode).await?;
    crate::metrics::self_check(match &verdict {
        Verdict::Passed(_) => "passed",
        Verdict::Failed { reason, .. } => cause(reason),
    });
    Ok(verdict)
}

async fn check(ctx: &Ctx, ch: &Challenge, mode: Mode) -> Result<Verdict, kube::Error> {
    let domain = ch.spec.dns_name.trim_end_matches('.');
    let token = &ch.spec.token;
    let key = &ch.spec.key;
    let in_cluster = match mode.solver_address(&ctx.state.solvers, ch).await? {
        Ok(Some(addr)) => match check::in_cluster(addr, domain, token, key).await {
            Ok(()) => true,
            Err(why) => {
                return Ok(Verdict::Failed {
                    reason: format!("in-cluster: {why}"),
                    missing: false,
                });
            }
        },
        Ok(None) => false,
        Err(why) => {
            return Ok(Verdict::Failed {
                missing: why.contains("does not exist"),
                reason: format!("in-cluster: {why}"),
            });
        }
    };
    let annotations = ctx
        .issuer_stores
        .annotations(&ch.namespace().unwrap_or_default(), &ch.spec.issuer_ref);
    let skip = annotations
        .get(SELF_CHECK_ANNOTATION)
        .is_some_and(|v| v.trim() == "skip");
    if !skip {
        let mut probe: Probe = ctx.settings.solver.probe.clone();
        if let Some(via) = annotations.get(SELF_CHECK_ADDRESS_ANNOTATION) {
            probe.via = Some(via.trim().to_string());
        }
        if let Err(why) = check::reachable(&probe, domain, token, key).await {
            let reason = if in_cluster && why.contains("wrong status code 404") {
                format!(
                    "{why}. The solver answers in-cluster, so the ingress controller does not route this host and path: check that an ingress controller serves {}",
                    ingress_class(ch)
                )
            } else {
                why
            };
            return Ok(Verdict::Failed {
                reason,
                missing: false,
            });
        }
    }
    Ok(Verdict::Passed(
        ctx.state.passes.bump(&ch.uid().unwrap_or_default()),
    ))
}

#[cfg(test)]
mod tests {
    use super::cause;

    #[test]
    fn failures_are_counted_by_a_bounded_cause() {
        for (reason, want) in [
            (
                "in-cluster: the solver Pod apps/x does not exist (yet)",
                "solver_not_ready",
            ),
            (
                "in-cluster: the solver Pod apps/x is not ready yet: ImagePullBackOff",
                "solver_not_ready",
            ),
            (
                "in-cluster: the solver at 10.0.0.1:8089 does not answer: refused",
                "solver_unreachable",
            ),
            ("no such name: a.example does not resolve (NXDOMAIN)", "dns"),
            (
                "http://a.example/x via 1.2.3.4:80: wrong status code 404, expected 200: not routed; no Ingress",
                "not_routed",
            ),
            (
                "http://a.example/x via 1.2.3.4:80: wrong status code 503, expected 200",
                "wrong_status",
            ),
            (
                "http://a.example/x: redirect to \"ftp://x\" refused",
                "redirect",
            ),
            (
                "http://a.example/x via 1.2.3.4:80: the body \"x\" is not the key authorization \"k\"",
                "wrong_answer",
            ),
            (
                "http://a.example/x via 1.2.3.4:80: connection refused",
                "unreachable",
            ),
        ] {
            assert_eq!(cause(reason), want, "{reason}");
        }
    }
}

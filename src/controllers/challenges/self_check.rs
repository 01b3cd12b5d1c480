//! The Challenge controller's self-checks: the solver answers in-cluster,
//! then the name answers as the CA will fetch it (the issuer may send that
//! request to an address of its own, or skip it). Both must pass a number
//! of times in a row before the CA is asked.

use super::state::Ctx;
use crate::api::Challenge;
use crate::solver::check::{self, Probe, SelfCheckFailure};
use crate::solver::{Mode, SELF_CHECK_ADDRESS_ANNOTATION, SELF_CHECK_ANNOTATION};
use kube::ResourceExt;

/// What the checks found.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Both passed, this many times in a row.
    Passed(u32),
    /// A check failed.
    Failed(SelfCheckFailure),
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

/// Runs the checks once for `ch` presented in `mode`, and counts the result.
pub async fn run(ctx: &Ctx, ch: &Challenge, mode: Mode) -> Result<Verdict, kube::Error> {
    let verdict = check(ctx, ch, mode).await?;
    crate::metrics::self_check(match &verdict {
        Verdict::Passed(_) => "passed",
        Verdict::Failed(failure) => failure.label(),
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
            Err(why) => return Ok(Verdict::Failed(why.map(|w| format!("in-cluster: {w}")))),
        },
        Ok(None) => false,
        Err(why) => return Ok(Verdict::Failed(why.map(|w| format!("in-cluster: {w}")))),
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
            let why = match why {
                SelfCheckFailure::NotRouted(m) if in_cluster => {
                    SelfCheckFailure::NotRouted(format!(
                        "{m}. The solver answers in-cluster, so the ingress controller does not route this host and path: check that an ingress controller serves {}",
                        ingress_class(ch)
                    ))
                }
                other => other,
            };
            return Ok(Verdict::Failed(why));
        }
    }
    Ok(Verdict::Passed(
        ctx.state.passes.bump(&ch.uid().unwrap_or_default()),
    ))
}

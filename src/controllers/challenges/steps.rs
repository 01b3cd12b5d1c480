//! The Challenge controller's steps, one function each: the only I/O of a
//! pass. A step changes the pass's copy of the status, adds what it learnt
//! to [`Seen`], and says whether the pass goes on ([`Flow::Next`]) or ends.
//! The status is written when the pass ends, once and only if it changed,
//! and before the two effects that rely on it being on record
//! ([`Pass::checkpoint`]): asking the CA, and cleaning up a final state.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::pass::{Flow, Pass, uid};
use super::plan::{FINALIZER, SELF_CHECK_FAILED, Step, UNSOLVABLE, is_final};
use super::present::Presenter;
use super::self_check::Verdict;
use super::state::Ctx;
use super::validate::{Outcome, VALIDATE, accept_and_poll, retry_later};
use super::{ASKING, Error, WARN_AFTER, event, self_check_delay};
use crate::acme::errors::{Verdict as CaVerdict, classify};
use crate::acme::session::{self, SessionError};
use crate::api::order::AcmeState;
use crate::api::{Challenge, Order};
use crate::solver::check::SelfCheckFailure;
use crate::solver::shared::WAITING_FOR_CA;

/// Runs `step`.
pub(super) async fn run(pass: &mut Pass<'_>, step: Step) -> Result<Flow, Error> {
    match step {
        Step::CleanUpDeleted => clean_up_deleted(pass).await,
        Step::Forget => Ok(forget(pass)),
        Step::Finish => finish(pass).await,
        Step::AddFinalizer => add_finalizer(pass).await,
        Step::Unsolvable => {
            pass.status.reason = Some(UNSOLVABLE.into());
            Ok(Flow::Done(Action::await_change()))
        }
        Step::WaitForRetry(left) => Ok(Flow::Done(Action::requeue(left))),
        Step::Claim => claim(pass).await,
        Step::WaitForPlace(reason) => {
            pass.status.reason = Some(reason);
            Ok(Flow::Done(Action::requeue(Duration::from_secs(1))))
        }
        Step::ReadPresenter => {
            pass.ctx.issuer_stores.ready().await;
            pass.seen.presenter = Some(Presenter::of(pass.ctx, pass.ch));
            Ok(Flow::Next)
        }
        Step::CannotPresent(why) => Ok(cannot_present(pass, why)),
        Step::Present => present(pass).await,
        Step::WaitInsteadOfSelfCheck(wait) => Ok(wait_instead_of_self_check(pass, wait)),
        Step::SelfCheck => self_check(pass).await,
        Step::SelfCheckFailed => self_check_failed(pass).await,
        Step::CheckAgain => Ok(Flow::Done(Action::requeue(self_check_delay(1)))),
        Step::Accept => accept(pass).await,
    }
}

/// Forgets what the Challenge kept in memory and releases its place.
fn forget(pass: &Pass<'_>) -> Flow {
    let uid = uid(pass.ch);
    let ctx = pass.ctx;
    ctx.retries.forget(&uid);
    ctx.state.self_check_failures.forget(&uid);
    ctx.state.passes.forget(&uid);
    if pass.ch.metadata.deletion_timestamp.is_some() {
        // (A finished Challenge's last write is kept: a pass that an
        // Ingress cleaned up starts before the watch has brought it.)
        ctx.state.latest.forget(&uid);
    }
    ctx.state.release(&uid);
    Flow::Done(Action::await_change())
}

/// What to clean up with: DNS-01's provider, or the issuer's HTTP-01
/// mode, or the default when the annotation is unreadable now (cleanup
/// undoes routes whatever the mode).
async fn cleanup_presenter(ctx: &Ctx, ch: &Challenge) -> Presenter {
    ctx.issuer_stores.ready().await;
    Presenter::of(ctx, ch).unwrap_or(Presenter::Http01(ctx.settings.solver.default_mode))
}

/// `status.presented` as the API has it now (`None`: it did not answer),
/// for the paths that must not clean up twice on a cache that lags.
async fn fresh_presented(ctx: &Ctx, ch: &Challenge) -> Option<Option<bool>> {
    let api: Api<Challenge> =
        Api::namespaced(ctx.client.clone(), &ch.namespace().unwrap_or_default());
    let this = kube::api::ListParams::default().fields(&format!("metadata.name={}", ch.name_any()));
    let fresh = api.list(&this).await.ok()?.items.into_iter().next()?;
    Some(fresh.status.and_then(|s| s.presented))
}

/// Removes what `presenter` presented for `ch`. A DNS-01 record the
/// provider will not remove (a revoked token, a deleted Secret), or a route
/// in the user's Ingress that kept changing, is said in a Warning event
/// and left behind: it keeps neither the Challenge nor its name's claim;
/// an API error is retried.
async fn clean_up(ctx: &Ctx, ch: &Challenge, presenter: Presenter) -> Result<(), Error> {
    ctx.state.in_flight().finishing(&uid(ch));
    match presenter.cleanup(ctx, ch).await {
        Err(Error::Cleanup(why)) => {
            event(ctx, ch, EventType::Warning, "CleanUpError", why);
            Ok(())
        }
        other => other,
    }
}

/// A deleted Challenge: what it presented goes, then our finalizer.
async fn clean_up_deleted(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let (ctx, ch) = (pass.ctx, pass.ch);
    // A Challenge that reached a final state has cleaned up already; a
    // DNS-01 record is there only once presented.
    let presenter = cleanup_presenter(ctx, ch).await;
    let mut presented = pass.status.presented;
    if presented != Some(false) {
        // The cache may not have seen the finish that cleaned up a moment
        // ago (its Order was done first): ask, not clean twice.
        presented = fresh_presented(ctx, ch).await.unwrap_or(presented);
    }
    let presented = match presenter {
        Presenter::Dns01 => presented == Some(true),
        Presenter::Http01(_) => presented != Some(false),
    };
    if presented {
        clean_up(ctx, ch, presenter).await?;
    }
    let rest: Vec<String> = ch
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    adopt(ctx, ch, rest, None).await?;
    Ok(forget(pass))
}

/// A final state: written before cleaning up (the namespace's solver
/// Service goes with the last live Challenge, and of two Challenges
/// finishing together the later one to look must see the other one
/// finished), then presented no more.
async fn finish(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let (ctx, ch) = (pass.ctx, pass.ch);
    let from_cache = is_final(ch.status.as_ref().and_then(|s| s.state));
    if from_cache
        && pass.status.presented == Some(true)
        && fresh_presented(ctx, ch).await == Some(Some(false))
    {
        // A cache behind our own last write (the finish that cleaned up,
        // its event not seen yet) would clean up twice.
        return Ok(Flow::Done(Action::await_change()));
    }
    pass.status.processing = Some(false);
    if pass.status.presented == Some(true) {
        pass.checkpoint().await?;
        clean_up(ctx, ch, cleanup_presenter(ctx, ch).await).await?;
    }
    pass.status.presented = Some(false);
    pass.checkpoint().await?;
    Ok(forget(pass))
}

/// Sets the Challenge's finalizers, and records the HTTP-01 mode it is
/// presented in when given.
async fn adopt(
    ctx: &Ctx,
    ch: &Challenge,
    finalizers: Vec<String>,
    mode: Option<crate::solver::Mode>,
) -> Result<(), Error> {
    let api: Api<Challenge> =
        Api::namespaced(ctx.client.clone(), &ch.namespace().unwrap_or_default());
    let mut patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": ch.resource_version()}});
    if let Some(mode) = mode {
        patch["metadata"]["annotations"] = json!({(crate::solver::PRESENTED_MODE): mode.as_str()});
    }
    let written = api
        .patch(
            &ch.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map_err(|e| Error::Api(format!("Challenge {}", ch.name_any()), e))?;
    ctx.state.latest.wrote(ch, written);
    Ok(())
}

/// Our finalizer, and the HTTP-01 mode fixed with it (one write).
async fn add_finalizer(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let (ctx, ch) = (pass.ctx, pass.ch);
    let mut all: Vec<String> = ch.finalizers().to_vec();
    all.push(FINALIZER.into());
    ctx.issuer_stores.ready().await;
    let mode = match Presenter::of(ctx, ch) {
        Ok(Presenter::Http01(mode)) => Some(mode),
        _ => None,
    };
    adopt(ctx, ch, all, mode).await?;
    Ok(Flow::Done(Action::await_change()))
}

/// The ACME account `ch` acts through, as the CA tells accounts apart:
/// the issuer's server and account key Secret (its issuer reference when
/// the issuer is not known yet).
async fn account_of(ctx: &Ctx, ch: &Challenge) -> String {
    let ns = ch.namespace().unwrap_or_default();
    let reference = &ch.spec.issuer_ref;
    match session::find_issuer(ctx.acme(), &ns, reference).await {
        Ok(Some((config, _, secret_ns))) if config.acme.is_some() => {
            let acme = config.acme.unwrap_or_default();
            format!(
                "{}|{secret_ns}/{}",
                acme.server, acme.private_key_secret_ref.name
            )
        }
        _ => format!(
            "{}|{ns}/{}",
            reference.kind.as_deref().unwrap_or("Issuer"),
            reference.name
        ),
    }
}

/// One Challenge per account and name at a time, and a cap overall.
async fn claim(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let (ctx, ch) = (pass.ctx, pass.ch);
    let account = account_of(ctx, ch).await;
    let decision = ctx.state.in_flight().claim(
        &account,
        &ch.spec.dns_name,
        &uid(ch),
        &format!("{}/{}", ch.namespace().unwrap_or_default(), ch.name_any()),
        ctx.settings.max_challenges,
        std::time::Instant::now(),
    );
    pass.seen.place = Some(decision);
    Ok(Flow::Next)
}

/// A Challenge that cannot be presented as configured: the reason, and a
/// Warning event once per distinct reason, then a slow retry (the fix may
/// be in another object: the Issuer's annotation, a named Ingress).
fn cannot_present(pass: &mut Pass<'_>, why: String) -> Flow {
    let kind = pass.presenter().map_or("HTTP-01", Presenter::kind);
    let reason = format!("Cannot present the {kind} challenge: {why}");
    if pass.status.reason.as_deref() != Some(reason.as_str()) {
        pass.status.reason = Some(reason.clone());
        event(
            pass.ctx,
            pass.ch,
            EventType::Warning,
            "PresentError",
            reason,
        );
    }
    Flow::Done(Action::requeue(Duration::from_secs(30)))
}

async fn present(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let (ctx, ch) = (pass.ctx, pass.ch);
    let Some(presenter) = pass.presenter() else {
        return Ok(Flow::Next);
    };
    let kind = presenter.kind();
    if let Err(why) = presenter.present(ctx, ch, false).await? {
        return Ok(cannot_present(pass, why));
    }
    pass.status.presented = Some(true);
    pass.status.processing = Some(true);
    pass.status.state = Some(AcmeState::Pending);
    pass.status.reason = Some(format!("Waiting for {kind} challenge propagation"));
    crate::metrics::stage_since("challenge_presented", ch.meta());
    event(
        ctx,
        ch,
        EventType::Normal,
        "Presented",
        format!("Presented challenge using {kind} challenge mechanism"),
    );
    Ok(Flow::Next)
}

/// `waitInsteadOfSelfCheck`: a wait, from when it was first seen
/// presented, in place of the checks.
fn wait_instead_of_self_check(pass: &mut Pass<'_>, wait: Duration) -> Flow {
    match pass.ctx.state.still_to_wait(&uid(pass.ch), wait) {
        Some(left) => {
            pass.status.reason = Some(format!(
                "Waiting {}s after presenting before asking the CA to validate (waitInsteadOfSelfCheck; no self-check)",
                wait.as_secs()
            ));
            Flow::Done(Action::requeue(left))
        }
        None => {
            pass.seen.verdict = Some(Verdict::Passed(pass.ctx.settings.solver.passes));
            Flow::Next
        }
    }
}

/// The self-checks, in-cluster and as the CA will fetch it, run before
/// every request to validate: a retried request may be the first to reach
/// the CA (the earlier ones failed on the way), and a restarted or
/// rescheduled solver may not be reachable yet.
async fn self_check(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let (ctx, ch) = (pass.ctx, pass.ch);
    let Some(presenter) = pass.presenter() else {
        return Ok(Flow::Next);
    };
    let verdict = presenter.check(ctx, ch).await?;
    if matches!(verdict, Verdict::Passed(n) if n >= ctx.settings.solver.passes) {
        if pass.status.reason.as_deref() != Some(WAITING_FOR_CA) {
            crate::metrics::stage_since("self_check_passed", ch.meta());
        }
        // Self-checks start over; the CA's run of failures does not.
        ctx.state.self_check_failures.forget(&uid(ch));
    }
    pass.seen.verdict = Some(verdict);
    Ok(Flow::Next)
}

async fn self_check_failed(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let (ctx, ch) = (pass.ctx, pass.ch);
    let (Some(presenter), Some(Verdict::Failed(failure))) =
        (pass.presenter(), pass.seen.verdict.clone())
    else {
        return Ok(Flow::Next);
    };
    let uid = uid(ch);
    ctx.state.passes.forget(&uid);
    let attempts = ctx.state.self_check_failures.bump(&uid);
    // (A solver just created may not be in the watch cache yet; an
    // ingress controller under load takes seconds to route.)
    let missing = matches!(failure, SelfCheckFailure::SolverMissing(_));
    if (missing && attempts >= 3) || attempts.is_multiple_of(16) {
        // Someone may have removed the resources: present again.
        presenter.present(ctx, ch, true).await?.ok();
    }
    let reason = format!(
        "Waiting for {} challenge propagation: {failure}",
        presenter.kind()
    );
    let changed = pass.status.reason.as_deref() != Some(reason.as_str());
    pass.status.reason = Some(reason.clone());
    // The first failures are the ingress controller picking the route up;
    // a failure that lasts is worth an event (and each new reason after).
    if attempts == WARN_AFTER || (changed && attempts > WARN_AFTER) {
        event(ctx, ch, EventType::Warning, SELF_CHECK_FAILED, reason);
    }
    Ok(Flow::Done(Action::requeue(self_check_delay(attempts))))
}

/// The Order's ACME URL: noted on each Challenge the Order controller
/// creates, else read from the owning Order.
async fn order_url(ctx: &Ctx, ch: &Challenge) -> Result<Option<String>, Error> {
    let annotated = ch
        .annotations()
        .get(crate::controllers::orders::challenges::ORDER_URL_ANNOTATION)
        .filter(|u| !u.is_empty())
        .cloned();
    if annotated.is_some() {
        return Ok(annotated);
    }
    let Some(name) = ch
        .owner_references()
        .iter()
        .find(|r| r.kind == "Order")
        .map(|r| r.name.clone())
    else {
        return Ok(None);
    };
    let ns = ch.namespace().unwrap_or_default();
    Ok(Api::<Order>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(|e| Error::Api(format!("Order {ns}/{name}"), e))?
        .and_then(|o| o.status)
        .and_then(|s| s.url))
}

/// Asks the CA to validate (the reason saying so is on record first) and
/// polls the authorization; an outcome that ends the Challenge is recorded
/// for [`Step::Finish`].
async fn accept(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let (ctx, ch) = (pass.ctx, pass.ch);
    let Some(presenter) = pass.presenter() else {
        return Ok(Flow::Next);
    };
    let kind = presenter.kind();
    let uid = uid(ch);
    let ns = ch.namespace().unwrap_or_default();
    let session = match session::session(ctx.acme(), &ns, &ch.spec.issuer_ref).await {
        Ok(s) => s,
        Err(SessionError::Api(what, e)) => return Err(Error::Api(what, e)),
        Err(e) => {
            // Usually the issuer is registering its account right now.
            return Ok(retry_later(pass, "issuer", e.to_string(), None));
        }
    };
    ctx.retries.succeeded(&uid, "issuer");
    let Some(order_url) = order_url(ctx, ch).await? else {
        pass.status.state = Some(AcmeState::Errored);
        pass.status.reason = Some("The Challenge's Order, or its ACME order URL, is gone".into());
        return Ok(Flow::Next);
    };
    // The first request to validate says so; a retry keeps the reason that
    // names the run (one write per attempt, not two).
    let retrying = ctx
        .retries
        .run(&uid, pass.status.reason.as_deref())
        .is_some_and(|r| r.failures > 0);
    if pass.status.reason.as_deref() != Some(WAITING_FOR_CA) && !retrying {
        pass.status.reason = Some(WAITING_FOR_CA.into());
        pass.status.processing = Some(true);
    }
    pass.checkpoint().await?;
    let domain = ch.spec.dns_name.as_str();
    match accept_and_poll(ctx, &session, &order_url, ch, presenter.acme_type()).await {
        Ok(Outcome::Valid) => {
            crate::metrics::stage_since("ca_valid", ch.meta());
            pass.status.state = Some(AcmeState::Valid);
            pass.status.reason = Some("Successfully authorized domain".into());
            event(
                ctx,
                ch,
                EventType::Normal,
                "DomainVerified",
                format!("Domain {domain:?} verified with \"{kind}\" validation"),
            );
            Ok(Flow::Next)
        }
        Ok(Outcome::Invalid(detail)) => {
            let reason = format!(
                "Error accepting authorization: acme: authorization error for {domain}: {detail}"
            );
            pass.status.state = Some(AcmeState::Invalid);
            pass.status.reason = Some(reason.clone());
            event(ctx, ch, EventType::Warning, "Failed", reason);
            Ok(Flow::Next)
        }
        Ok(Outcome::Pending(wait)) => {
            ctx.retries.succeeded(&uid, VALIDATE);
            let wait = wait.max(ctx.settings.poll_interval);
            let next = crate::acme::retry::after(Timestamp::now(), wait);
            ctx.retries.defer(&uid, "poll", next);
            tracing::info!(challenge = %ch.name_any(), wait_ms = wait.as_millis() as u64, "the CA is still validating; asking again later");
            Ok(Flow::Done(Action::requeue(wait)))
        }
        Err(e) => match classify(&e) {
            CaVerdict::Transient { reason, detail } | CaVerdict::Config { reason, detail } => {
                let what = format!("{ASKING}; {reason}: {detail}");
                let retry_after = session.log.latest_retry_after(&uid);
                Ok(retry_later(pass, VALIDATE, what, retry_after))
            }
            CaVerdict::ReplaceOrder { detail } => {
                // The Order controller places a fresh order on seeing this.
                let reason = format!("The CA lost the authorization: {detail}");
                pass.status.state = Some(AcmeState::Errored);
                pass.status.reason = Some(reason.clone());
                event(ctx, ch, EventType::Warning, "Failed", reason);
                Ok(Flow::Next)
            }
            CaVerdict::Permanent { detail, .. } => {
                let reason = format!("Error accepting the challenge: {detail}");
                pass.status.state = Some(AcmeState::Invalid);
                pass.status.reason = Some(reason.clone());
                event(ctx, ch, EventType::Warning, "Failed", reason);
                Ok(Flow::Next)
            }
        },
    }
}

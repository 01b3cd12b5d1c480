//! The Challenge controller: holds cert-manager's finalizer, presents the
//! token (shared mode: an Ingress to the namespace's solver Service),
//! checks it is reachable as the CA will see it, accepts the challenge at
//! the CA, polls the authorization and records state, reason, presented
//! and processing; cleans up on any final state or on deletion.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::acme::errors::{Verdict, classify};
use crate::acme::session::{self, SessionError};
use crate::api::challenge::ChallengeStatus;
use crate::api::order::AcmeState;
use crate::api::{Challenge, Order};
use crate::runtime::context::Context;
use crate::solver::SOLVER_LABEL;
use crate::solver::shared::WAITING_FOR_CA;
use crate::solver::state::Solvers;
use state::{Ctx, State};

mod dns01;
mod present;
pub mod schedule;
mod self_check;
pub mod state;
mod validate;

use present::Presenter;
use validate::{Outcome, VALIDATE, accept_and_poll, retry_later};

pub const CONTROLLER_NAME: &str = "certwright-challenges";
/// Every reason written once the CA has been asked starts so.
const ASKING: &str = "Asking the CA to validate";
/// Self-check failures in a row before a changed reason is also an event:
/// about half a minute of them (an ingress controller under load takes
/// seconds to route a new Ingress; that is not worth a warning).
const WARN_AFTER: u32 = 18;
/// Self-check failures retried within 2 s, about a minute of them; then
/// within 10 s.
const FAST_CHECKS: u32 = 36;
/// cert-manager's finalizer, so Challenges it left are finished by us too.
pub const FINALIZER: &str = "acme.cert-manager.io/finalizer";

pub use crate::runtime::reconcile_error::Error;

fn is_final(state: Option<AcmeState>) -> bool {
    matches!(
        state,
        Some(AcmeState::Valid | AcmeState::Invalid | AcmeState::Errored | AcmeState::Expired)
    )
}

/// Delay before the next self-check after `attempts` failures: from
/// 100 ms doubling to 2 s for about a minute (a route goes live when the
/// ingress controller gets to it, seconds later under load, and a long
/// sleep would overshoot it), then to 10 s; never a fixed long sleep.
pub fn self_check_delay(attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(10));
    let ceiling = if attempts <= FAST_CHECKS { 2 } else { 10 };
    Duration::from_millis(100)
        .saturating_mul(factor)
        .min(Duration::from_secs(ceiling))
}

async fn write(ctx: &Ctx, ch: &Challenge, status: &ChallengeStatus) -> Result<(), Error> {
    let api: Api<Challenge> =
        Api::namespaced(ctx.client.clone(), &ch.namespace().unwrap_or_default());
    crate::runtime::status::apply(&api, &ch.name_any(), CONTROLLER_NAME, status)
        .await
        .map_err(|e| Error::WriteStatus("Challenge", e))
}

fn event(ctx: &Ctx, ch: &Challenge, type_: EventType, reason: &str, note: String) {
    ctx.events
        .publish(CONTROLLER_NAME, ch.object_ref(&()), type_, reason, note);
}

async fn set_finalizers(ctx: &Ctx, ch: &Challenge, finalizers: Vec<String>) -> Result<(), Error> {
    adopt(ctx, ch, finalizers, None).await
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
    api.patch(
        &ch.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .map_err(|e| Error::Api(format!("Challenge {}", ch.name_any()), e))?;
    Ok(())
}

async fn finish(ctx: &Ctx, ch: &Challenge, mut status: ChallengeStatus) -> Result<Action, Error> {
    status.processing = Some(false);
    if status.presented == Some(true) {
        // The final state is written before cleaning up: the namespace's
        // solver Service goes with the last live Challenge, and of two
        // Challenges finishing together the later one to look must see
        // the other one finished.
        if ch.status.as_ref().and_then(|s| s.state) != status.state {
            write(ctx, ch, &status).await?;
        }
        clean_up(ctx, ch, cleanup_presenter(ctx, ch).await).await?;
    }
    status.presented = Some(false);
    write(ctx, ch, &status).await?;
    let uid = ch.uid().unwrap_or_default();
    ctx.state.release(&uid);
    forget(ctx, &uid);
    Ok(Action::await_change())
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
    ctx.state
        .in_flight()
        .finishing(&ch.uid().unwrap_or_default());
    match presenter.cleanup(ctx, ch).await {
        Err(Error::Cleanup(why)) => {
            event(ctx, ch, EventType::Warning, "CleanUpError", why);
            Ok(())
        }
        other => other,
    }
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

/// A Challenge that cannot be presented as configured: the reason and a
/// Warning event once per distinct reason, then a slow retry (the fix may
/// be in another object: the Issuer's annotation, a named Ingress).
async fn present_error(
    ctx: &Ctx,
    ch: &Challenge,
    mut status: ChallengeStatus,
    kind: &str,
    why: String,
) -> Result<Action, Error> {
    let reason = format!("Cannot present the {kind} challenge: {why}");
    if status.reason.as_deref() != Some(reason.as_str()) {
        status.reason = Some(reason.clone());
        write(ctx, ch, &status).await?;
        event(ctx, ch, EventType::Warning, "PresentError", reason);
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// What to clean up with: DNS-01's provider, or the issuer's HTTP-01
/// mode, or the default when the annotation is unreadable now (cleanup
/// undoes routes whatever the mode).
async fn cleanup_presenter(ctx: &Ctx, ch: &Challenge) -> Presenter {
    ctx.issuer_stores.ready().await;
    Presenter::of(ctx, ch).unwrap_or(Presenter::Http01(ctx.settings.solver.default_mode))
}

async fn reconcile(ch: Arc<Challenge>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    crate::metrics::sync("challenges");
    let has_finalizer = ch.finalizers().iter().any(|f| f == FINALIZER);
    if ch.meta().deletion_timestamp.is_some() {
        if has_finalizer {
            // A Challenge that reached a final state has cleaned up
            // already; a DNS-01 record is there only once presented.
            let presenter = cleanup_presenter(&ctx, &ch).await;
            let mut presented = ch.status.as_ref().and_then(|s| s.presented);
            if presented != Some(false) {
                // The cache may not have seen the finish that cleaned up a
                // moment ago (its Order was done first): ask, not clean twice.
                presented = fresh_presented(&ctx, &ch).await.unwrap_or(presented);
            }
            let presented = match presenter {
                Presenter::Dns01 => presented == Some(true),
                Presenter::Http01(_) => presented != Some(false),
            };
            if presented {
                clean_up(&ctx, &ch, presenter).await?;
            }
            let rest: Vec<String> = ch
                .finalizers()
                .iter()
                .filter(|f| *f != FINALIZER)
                .cloned()
                .collect();
            set_finalizers(&ctx, &ch, rest).await?;
        }
        forget(ctx.as_ref(), &ch.uid().unwrap_or_default());
        ctx.state.release(&ch.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    let mut status = ch.status.clone().unwrap_or_default();
    if is_final(status.state) {
        // A cache behind our own last write (the finish that cleaned up,
        // its event not seen yet) would clean up twice: ask first.
        if status.presented == Some(true) && fresh_presented(&ctx, &ch).await == Some(Some(false)) {
            return Ok(Action::await_change());
        }
        if status.presented == Some(true) || status.processing == Some(true) {
            return finish(&ctx, &ch, status).await;
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        let mut all: Vec<String> = ch.finalizers().to_vec();
        all.push(FINALIZER.into());
        // The HTTP-01 mode is fixed now, with the finalizer (one write).
        ctx.issuer_stores.ready().await;
        let mode = match Presenter::of(&ctx, &ch) {
            Ok(Presenter::Http01(mode)) => Some(mode),
            _ => None,
        };
        adopt(&ctx, &ch, all, mode).await?;
        return Ok(Action::await_change());
    }
    if ch.spec.solver.http01.is_none() && ch.spec.solver.dns01.is_none() {
        let reason = "The Challenge's solver has neither http01 nor dns01".to_string();
        if status.reason.as_deref() != Some(reason.as_str()) {
            status.reason = Some(reason);
            write(&ctx, &ch, &status).await?;
        }
        return Ok(Action::await_change());
    }
    let uid = ch.uid().unwrap_or_default();
    let domain = ch.spec.dns_name.as_str();

    // A run of failed requests to the CA waits for its next try, whatever
    // woke the Challenge (its own status write among others).
    if let Some(left) = ctx
        .retries
        .wait_left(&uid, status.reason.as_deref(), Timestamp::now())
    {
        return Ok(Action::requeue(left));
    }

    // One Challenge per account and name at a time, and a cap overall.
    let account = account_of(&ctx, &ch).await;
    let decision = ctx.state.in_flight().claim(
        &account,
        domain,
        &uid,
        &format!("{}/{}", ch.namespace().unwrap_or_default(), ch.name_any()),
        ctx.settings.max_challenges,
        std::time::Instant::now(),
    );
    let waiting = match decision {
        schedule::Decision::Go => None,
        schedule::Decision::NameBusy(other) => Some(format!(
            "Waiting: Challenge {other} for the same name and ACME account is in progress"
        )),
        schedule::Decision::Full(n) => Some(format!(
            "Waiting: {n} Challenges are in progress, the most allowed (--max-concurrent-challenges)"
        )),
    };
    if let Some(reason) = waiting {
        if status.reason.as_deref() != Some(reason.as_str()) {
            status.reason = Some(reason);
            write(&ctx, &ch, &status).await?;
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    // Present.
    ctx.issuer_stores.ready().await;
    let presenter = match Presenter::of(&ctx, &ch) {
        Ok(p) => p,
        Err(why) => return present_error(&ctx, &ch, status, "HTTP-01", why).await,
    };
    let kind = presenter.kind();
    if status.presented != Some(true) {
        if let Err(why) = presenter.present(&ctx, &ch, false).await? {
            return present_error(&ctx, &ch, status, kind, why).await;
        }
        status.presented = Some(true);
        status.processing = Some(true);
        status.state = Some(AcmeState::Pending);
        status.reason = Some(format!("Waiting for {kind} challenge propagation"));
        write(&ctx, &ch, &status).await?;
        crate::metrics::stage_since("challenge_presented", ch.meta());
        event(
            &ctx,
            &ch,
            EventType::Normal,
            "Presented",
            format!("Presented challenge using {kind} challenge mechanism"),
        );
    }

    // Self-checks, in-cluster and as the CA will fetch it, before every
    // request to validate: a retried request may be the first to reach
    // the CA (the earlier ones failed on the way), and a restarted or
    // rescheduled solver may not be reachable yet.
    // waitInsteadOfSelfCheck: a wait in place of the checks.
    let wait = ch
        .spec
        .solver
        .wait_instead_of_self_check
        .as_deref()
        .map(crate::time::parse_go_duration);
    let verdict = match wait {
        Some(Ok(seconds)) if seconds >= 0 => {
            let wait = Duration::from_secs(seconds as u64);
            if let Some(left) = ctx.state.still_to_wait(&uid, wait) {
                let reason = format!(
                    "Waiting {}s after presenting before asking the CA to validate (waitInsteadOfSelfCheck; no self-check)",
                    wait.as_secs()
                );
                if status.reason.as_deref() != Some(reason.as_str()) {
                    status.reason = Some(reason);
                    write(&ctx, &ch, &status).await?;
                }
                return Ok(Action::requeue(left));
            }
            self_check::Verdict::Passed(ctx.settings.solver.passes)
        }
        Some(_) => {
            let why =
                "the solver's waitInsteadOfSelfCheck is not a non-negative duration (e.g. 30s)"
                    .to_string();
            return present_error(&ctx, &ch, status, kind, why).await;
        }
        None => presenter.check(&ctx, &ch).await?,
    };
    match verdict {
        self_check::Verdict::Failed { reason, missing } => {
            ctx.state.passes.forget(&uid);
            let attempts = ctx.state.self_check_failures.bump(&uid);
            // (A solver just created may not be in the watch cache yet;
            // an ingress controller under load takes seconds to route.)
            if (missing && attempts >= 3) || attempts.is_multiple_of(16) {
                // Someone may have removed the resources: present again.
                presenter.present(&ctx, &ch, true).await?.ok();
            }
            let reason = format!("Waiting for {kind} challenge propagation: {reason}");
            let changed = status.reason.as_deref() != Some(reason.as_str());
            if changed {
                status.reason = Some(reason.clone());
                write(&ctx, &ch, &status).await?;
            }
            // The first failures are the ingress controller picking the
            // route up; a failure that lasts is worth an event (and each
            // new reason after that).
            if attempts == WARN_AFTER || (changed && attempts > WARN_AFTER) {
                event(&ctx, &ch, EventType::Warning, "SelfCheckFailed", reason);
            }
            return Ok(Action::requeue(self_check_delay(attempts)));
        }
        self_check::Verdict::Passed(n) if n < ctx.settings.solver.passes => {
            return Ok(Action::requeue(self_check_delay(1)));
        }
        self_check::Verdict::Passed(_) => {
            if status.reason.as_deref() != Some(WAITING_FOR_CA) {
                crate::metrics::stage_since("self_check_passed", ch.meta());
            }
            // Self-checks start over; the CA's run of failures does not.
            ctx.state.self_check_failures.forget(&uid)
        }
    }

    // Accept and poll.
    let ns = ch.namespace().unwrap_or_default();
    let session = match session::session(ctx.acme(), &ns, &ch.spec.issuer_ref).await {
        Ok(s) => s,
        Err(SessionError::Api(what, e)) => return Err(Error::Api(what, e)),
        Err(e) => {
            // Usually the issuer is registering its account right now.
            return retry_later(&ctx, &ch, status, "issuer", e.to_string(), None).await;
        }
    };
    ctx.retries.succeeded(&uid, "issuer");
    let owner = ch
        .owner_references()
        .iter()
        .find(|r| r.kind == "Order")
        .map(|r| r.name.clone());
    // The Order controller notes the order URL on each Challenge it creates.
    let annotated = ch
        .annotations()
        .get(crate::controllers::orders::challenges::ORDER_URL_ANNOTATION)
        .filter(|u| !u.is_empty())
        .cloned();
    let order_url = match (annotated, owner) {
        (Some(url), _) => Some(url),
        (None, Some(name)) => Api::<Order>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&name)
            .await
            .map_err(|e| Error::Api(format!("Order {ns}/{name}"), e))?
            .and_then(|o| o.status)
            .and_then(|s| s.url),
        (None, None) => None,
    };
    let Some(order_url) = order_url else {
        status.state = Some(AcmeState::Errored);
        status.reason = Some("The Challenge's Order, or its ACME order URL, is gone".into());
        return finish(&ctx, &ch, status).await;
    };
    // The first request to validate says so; a retry keeps the reason
    // that names the run (one write per attempt, not two).
    let retrying = ctx
        .retries
        .run(&uid, status.reason.as_deref())
        .is_some_and(|r| r.failures > 0);
    if status.reason.as_deref() != Some(WAITING_FOR_CA) && !retrying {
        status.reason = Some(WAITING_FOR_CA.into());
        status.processing = Some(true);
        write(&ctx, &ch, &status).await?;
    }
    match accept_and_poll(&ctx, &session, &order_url, &ch, presenter.acme_type()).await {
        Ok(Outcome::Valid) => {
            crate::metrics::stage_since("ca_valid", ch.meta());
            status.state = Some(AcmeState::Valid);
            status.reason = Some("Successfully authorized domain".into());
            event(
                &ctx,
                &ch,
                EventType::Normal,
                "DomainVerified",
                format!("Domain {domain:?} verified with \"{kind}\" validation"),
            );
            finish(&ctx, &ch, status).await
        }
        Ok(Outcome::Invalid(detail)) => {
            let reason = format!(
                "Error accepting authorization: acme: authorization error for {domain}: {detail}"
            );
            status.state = Some(AcmeState::Invalid);
            status.reason = Some(reason.clone());
            event(&ctx, &ch, EventType::Warning, "Failed", reason);
            finish(&ctx, &ch, status).await
        }
        Ok(Outcome::Pending(wait)) => {
            ctx.retries.succeeded(&uid, VALIDATE);
            let wait = wait.max(ctx.settings.poll_interval);
            let next = crate::acme::retry::after(Timestamp::now(), wait);
            ctx.retries.defer(&uid, "poll", next);
            tracing::info!(challenge = %ch.name_any(), wait_ms = wait.as_millis() as u64, "the CA is still validating; asking again later");
            Ok(Action::requeue(wait))
        }
        Err(e) => match classify(&e) {
            Verdict::Transient { reason, detail } | Verdict::Config { reason, detail } => {
                let what = format!("{ASKING}; {reason}: {detail}");
                let retry_after = session.log.latest_retry_after(&uid);
                retry_later(&ctx, &ch, status, VALIDATE, what, retry_after).await
            }
            Verdict::ReplaceOrder { detail } => {
                // The Order controller places a fresh order on seeing this.
                status.state = Some(AcmeState::Errored);
                status.reason = Some(format!("The CA lost the authorization: {detail}"));
                event(
                    &ctx,
                    &ch,
                    EventType::Warning,
                    "Failed",
                    format!("The CA lost the authorization: {detail}"),
                );
                finish(&ctx, &ch, status).await
            }
            Verdict::Permanent { detail, .. } => {
                status.state = Some(AcmeState::Invalid);
                status.reason = Some(format!("Error accepting the challenge: {detail}"));
                event(
                    &ctx,
                    &ch,
                    EventType::Warning,
                    "Failed",
                    format!("Error accepting the challenge: {detail}"),
                );
                finish(&ctx, &ch, status).await
            }
        },
    }
}

/// Forgets what `uid` kept in memory (it finished, or is gone).
fn forget(ctx: &Ctx, uid: &str) {
    ctx.retries.forget(uid);
    ctx.state.self_check_failures.forget(uid);
    ctx.state.passes.forget(uid);
}

fn error_policy(ch: Arc<Challenge>, error: &Error, ctx: Arc<Ctx>) -> Action {
    crate::metrics::sync_error("challenges");
    let wait = ctx.reconcile_failed(&ch.uid().unwrap_or_default());
    tracing::warn!(error = %error, kind = error.kind(), retry_in = ?wait, "challenge reconcile failed");
    Action::requeue(wait)
}

/// Runs the controller until the stream ends. Besides Challenges it
/// watches the solver Pods and Ingresses it owns (by their label), so a
/// solver Pod turning Ready or an Ingress getting its address re-runs the
/// self-check at once rather than at the next backoff.
pub async fn run(shared: Arc<Context>, solvers: Arc<Solvers>) {
    let ctx = Arc::new(Ctx {
        shared,
        state: State::new(solvers),
    });
    let solver_only = watcher::Config::default().labels(&format!("{SOLVER_LABEL}=true"));
    let (store, challenges) = crate::runtime::watch::trimmed_into(
        &ctx.stores.challenges,
        Api::<Challenge>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let mut controller = Controller::for_stream(challenges, store)
        .with_config(ctx.settings.controller_config())
        .graceful_shutdown_on(ctx.stopped())
        .owns(Api::<Ingress>::all(ctx.client.clone()), solver_only.clone());
    if let Some(writer) = ctx.state.solvers.take_pods_writer() {
        let pods = reflector::reflector(
            writer,
            watcher(Api::<Pod>::all(ctx.client.clone()), solver_only),
        )
        .default_backoff()
        .touched_objects();
        controller = controller.owns_stream(pods);
    }
    if let Some(woken) = ctx.state.take_woken() {
        controller = controller.reconcile_on(woken);
    }
    controller
        .run(
            |ch, ctx| {
                // The Challenge's requests are its own for Retry-After.
                let uid = ch.uid().unwrap_or_default();
                let who = (uid.clone(), crate::naming::object_name(&*ch));
                let tracker = ctx.clone();
                let run = reconcile(ch, ctx);
                crate::acme::http::REQUESTER.scope(uid.clone(), async move {
                    tracker.tracked("challenges", who, run).await
                })
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_checks_back_off_from_a_tenth_of_a_second_to_two_then_ten() {
        assert_eq!(self_check_delay(1), Duration::from_millis(100));
        assert_eq!(self_check_delay(2), Duration::from_millis(200));
        assert_eq!(self_check_delay(5), Duration::from_millis(1600));
        assert_eq!(self_check_delay(6), Duration::from_secs(2));
        assert_eq!(self_check_delay(FAST_CHECKS), Duration::from_secs(2));
        assert_eq!(self_check_delay(FAST_CHECKS + 1), Duration::from_secs(10));
        assert_eq!(self_check_delay(1000), Duration::from_secs(10));
        let until_warned: Duration = (1..WARN_AFTER).map(self_check_delay).sum();
        assert!(until_warned > Duration::from_secs(25), "{until_warned:?}");
    }
}

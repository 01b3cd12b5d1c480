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
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};

use crate::api::Challenge;
use crate::api::challenge::ChallengeStatus;
use crate::runtime::context::Context;
use crate::solver::SOLVER_LABEL;
use crate::solver::state::Solvers;
use state::{Ctx, State};

mod pass;
mod plan;
mod present;
pub mod schedule;
mod self_check;
pub mod state;
mod steps;
mod validate;

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
/// Most steps in one pass (a pass takes at most ten).
const MOST_STEPS: usize = 16;
pub use plan::{FINALIZER, SELF_CHECK_FAILED};

pub use crate::runtime::reconcile_error::Error;

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
    let written =
        crate::runtime::status::apply_returning(&api, &ch.name_any(), CONTROLLER_NAME, status)
            .await
            .map_err(|e| Error::WriteStatus("Challenge", e))?;
    ctx.state.latest.wrote(ch, written);
    Ok(())
}

fn event(ctx: &Ctx, ch: &Challenge, type_: EventType, reason: &str, note: String) {
    ctx.events
        .publish(CONTROLLER_NAME, ch.object_ref(&()), type_, reason, note);
}

async fn reconcile(ch: Arc<Challenge>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    crate::metrics::sync("challenges");
    // A timer may start the pass before the watch brought our last write.
    let ch = ctx.state.latest.pick(ch);
    let mut pass = pass::Pass::new(&ctx, &ch);
    let passes = ctx.settings.solver.passes;
    // Each step either ends the pass or learns something the next one
    // needs; a table that chose steps without end is a bug, cut short.
    for _ in 0..MOST_STEPS {
        let step = plan::next_step(&ch, &pass.status, &pass.seen, passes);
        if let pass::Flow::Done(action) = steps::run(&mut pass, step).await? {
            pass.checkpoint().await?;
            return Ok(action);
        }
    }
    tracing::error!(challenge = %ch.name_any(), "the Challenge's steps did not end a pass; trying again later");
    pass.checkpoint().await?;
    Ok(Action::requeue(Duration::from_secs(30)))
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
    // Our own status writes wake no Challenge (each pass says when its
    // next step is due); another manager's do.
    let (store, challenges) = crate::runtime::watch::trimmed_into(
        &ctx.stores.challenges,
        Api::<Challenge>::all(ctx.client.clone()),
        watcher::Config::default(),
        crate::runtime::watch::Wake::ExceptOwnStatus({
            let ctx = ctx.clone();
            Box::new(move |ch: &Challenge| ctx.state.latest.is_ours(ch))
        }),
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

//! The Order controller: places the ACME order (its URL is stored at once,
//! so a restarted controller resumes the same order), records the
//! authorizations, creates one Challenge per authorization still pending
//! (solver chosen by the Issuer's selectors), finalizes with the request's
//! CSR and stores the chain. A lost order (the CA's 404) is replaced by a
//! fresh one within seconds; permanent errors mark the Order errored with
//! the CA's detail.
//!
//! A pass reads the Order and its Challenges, then runs the steps the
//! state table (`plan`) chooses, one after another (`steps`, `place`,
//! `failures`), until one ends it; the status is written once, if it
//! changed. The pure parts besides the plan: ACME states and identifiers
//! (`decide`) and solver selection (`select`). The deterministic names of
//! requests, Orders and Challenges are in `crate::naming`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;

use crate::api::order::AcmeState;
use crate::api::{Challenge, Order};
use crate::runtime::context::Context;

mod budget;
pub mod challenges;
pub mod decide;
mod failures;
mod pass;
mod place;
mod plan;
pub mod select;
pub mod status;
mod steps;

pub use status::{CONTROLLER_NAME, Error};

/// Most steps in one pass (a pass takes at most eleven).
const MOST_STEPS: usize = 16;

async fn reconcile(
    order: Arc<Order>,
    ctx: Arc<Context>,
    cached: Store<Challenge>,
) -> Result<Action, Error> {
    crate::metrics::sync("orders");
    let name = order.name_any();
    let mut pass = pass::Pass::new(&ctx, order, &cached);
    // Each step either ends the pass or learns something the next one
    // needs; a table that chose steps without end is a bug, cut short.
    for _ in 0..MOST_STEPS {
        let step = plan::next_step(&pass.order, &pass.status, &pass.seen);
        if let pass::Flow::Done(action) = steps::run(&mut pass, step).await? {
            pass.checkpoint().await?;
            return Ok(action);
        }
    }
    tracing::error!(order = %name, "the Order's steps did not end a pass; trying again later");
    pass.checkpoint().await?;
    Ok(Action::requeue(Duration::from_secs(30)))
}

fn error_policy(order: Arc<Order>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::metrics::sync_error("orders");
    let wait = ctx.reconcile_failed(&order.uid().unwrap_or_default());
    tracing::warn!(error = %error, kind = error.kind(), retry_in = ?wait, "order reconcile failed");
    Action::requeue(wait)
}

/// What a pass reads of a Challenge besides its owners and deletion: its
/// state, and why it failed. A Challenge's progress messages (the
/// self-check's, the wait for the CA) wake no Order.
fn challenge_fingerprint(ch: &Challenge) -> serde_json::Value {
    let status = ch.status.as_ref();
    let state = status.and_then(|s| s.state);
    let failed = matches!(state, Some(AcmeState::Invalid | AcmeState::Errored));
    serde_json::json!([
        state,
        status.and_then(|s| s.reason.as_ref()).filter(|_| failed),
    ])
}

/// Runs the controller until the stream ends.
pub async fn run(ctx: Arc<Context>) {
    // Every Challenge is cached (a pass reads its Order's from here), but
    // only what a pass reads of one wakes its Order.
    let (cached, events) = crate::runtime::watch::cached(
        Api::<Challenge>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let challenges = crate::runtime::watch::changes(events, challenge_fingerprint);
    let (store, orders) = crate::runtime::watch::trimmed(
        Api::<Order>::all(ctx.client.clone()),
        watcher::Config::default(),
        // Our own status writes wake no Order (each pass says when its next
        // step is due); another manager's do.
        crate::runtime::watch::Wake::ExceptOwnStatus({
            let ctx = ctx.clone();
            Box::new(move |o: &Order| {
                ctx.is_own_write(
                    o.metadata.uid.as_deref().unwrap_or_default(),
                    o.metadata.resource_version.as_deref(),
                )
            })
        }),
    );
    Controller::for_stream(orders, store)
        .owns_stream(challenges)
        .with_config(ctx.settings.controller_config())
        .graceful_shutdown_on(ctx.stopped())
        .run(
            move |order, ctx| {
                // The Order's requests are its own for Retry-After.
                let uid = order.uid().unwrap_or_default();
                let who = (uid.clone(), crate::naming::object_name(&*order));
                let tracker = ctx.clone();
                let run = reconcile(order, ctx, cached.clone());
                crate::acme::http::REQUESTER.scope(uid.clone(), async move {
                    tracker.tracked("orders", who, run).await
                })
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {})
        .await;
}

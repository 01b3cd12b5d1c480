//! What the Order controller does when something fails: retry soon
//! (transient), place a fresh ACME order (the CA lost this one), or mark
//! the Order errored with the CA's detail.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::challenges::delete_challenges;
use super::pass::{Flow, Pass};
use super::status::{Error, event};
use crate::acme::errors::{UNTIL_SPEC_CHANGES, Verdict, classify, refuses_what_the_spec_makes};
use crate::acme::retries::{Attempt, REPLACE};
use crate::acme::retry::{Kind, Next, until};
use crate::api::order::{AcmeState, OrderStatus};

/// Marks the Order errored for good, with `reason` for the user; the
/// state is on record before its Challenges are deleted.
pub(super) async fn fail(pass: &mut Pass<'_>, reason: String) -> Result<Flow, Error> {
    let (ctx, order) = (pass.ctx, pass.order.clone());
    // The CA's words may hold an unpause link: its token stays out of logs.
    let said = crate::acme::limits::redact(&reason);
    tracing::warn!(order = %order.name_any(), reason = %said, "order failed");
    event(ctx, &order, EventType::Warning, "Failed", reason.clone());
    pass.status.state = Some(AcmeState::Errored);
    pass.status.reason = Some(reason);
    pass.status.failure_time = Some(Time(Timestamp::now()));
    pass.checkpoint().await?;
    delete_challenges(ctx, &order).await?;
    ctx.retries.forget(&pass.uid());
    Ok(Flow::Done(Action::await_change()))
}

/// A new order the CA's earlier refusal holds back: a pause fails the
/// Order at once, with the unpause link (no request: waiting does not
/// lift a pause); a rate limit waits, its reason on record, until the
/// time the CA named.
pub(super) async fn held(
    pass: &mut Pass<'_>,
    hold: crate::acme::limits::Hold,
) -> Result<Flow, Error> {
    if hold.paused {
        return fail(pass, hold.reason).await;
    }
    let now = Timestamp::now();
    pass.ctx.retries.defer(&pass.uid(), "held", hold.until);
    pass.status.reason = Some(format!("Waiting: {}", hold.reason));
    let wait = until(hold.until, now);
    crate::metrics::acme_retry_delay("newOrder", "held", wait);
    Ok(Flow::Done(Action::requeue(wait)))
}

/// Drops the ACME order the CA lost and starts a fresh one: the Challenges
/// of the old one are deleted (their finalizers clean up), the status is
/// cleared but for the reason, and the fresh order is placed at once the
/// first time, then on the lost-order backoff (`acme::retry`).
pub(super) async fn replace(pass: &mut Pass<'_>, detail: String) -> Result<Flow, Error> {
    let (ctx, order) = (pass.ctx, pass.order.clone());
    let uid = pass.uid();
    let now = Timestamp::now();
    let reason = order.status.as_ref().and_then(|s| s.reason.as_deref());
    let retry_after = pass
        .session
        .as_ref()
        .and_then(|s| s.log.latest_retry_after(&uid));
    let run = match ctx.retries.failed(
        &ctx.settings.retry,
        &uid,
        reason,
        REPLACE,
        Kind::Lost,
        retry_after,
        now,
    ) {
        Next::Retry(run) => run,
        Next::GiveUp(run) => {
            let why = format!(
                "The CA lost the order {} times in a row; giving up: {detail}",
                run.failures
            );
            return fail(pass, why).await;
        }
    };
    delete_challenges(ctx, &order).await?;
    let wait = until(run.next, now);
    crate::metrics::acme_retry_delay(REPLACE, "lost", wait);
    let reason = format!(
        "The ACME order was lost at the CA ({detail}); placing a fresh order; {}",
        run.describe()
    );
    tracing::info!(order = %order.name_any(), attempt = run.failures, wait_ms = wait.as_millis() as u64, %detail, "replacing a lost ACME order");
    event(
        ctx,
        &order,
        EventType::Warning,
        "OrderReplaced",
        reason.clone(),
    );
    pass.status = OrderStatus {
        reason: Some(reason),
        ..Default::default()
    };
    pass.checkpoint().await?;
    // What another manager wrote (cert-manager, before a migration) stays
    // after the apply: cleared explicitly, or the lost order is asked again.
    let old = order.status.clone().unwrap_or_default();
    let left = old.url.is_some()
        || old.finalize_url.is_some()
        || old.authorizations.is_some()
        || old.state.is_some();
    if left {
        let fields = [
            "url",
            "finalizeURL",
            "authorizations",
            "state",
            "certificate",
            "failureTime",
        ];
        super::status::clear(ctx, &order, &fields).await?;
    }
    Ok(Flow::Done(Action::requeue(wait)))
}

/// One more transient failure of `step`: the reason (with the run, so a
/// restarted controller reads it back) goes on record, and the next try
/// waits on the CA retry policy; a run that is over fails the Order.
pub(super) async fn retry_later(
    pass: &mut Pass<'_>,
    step: &str,
    what: String,
) -> Result<Flow, Error> {
    let ctx = pass.ctx;
    let uid = pass.uid();
    let retry_after = pass
        .session
        .as_ref()
        .and_then(|s| s.log.latest_retry_after(&uid));
    let previous = pass.status.reason.as_deref();
    match ctx.retries.transient(
        &ctx.settings.retry,
        &*pass.order,
        previous,
        step,
        &what,
        retry_after,
    ) {
        Attempt::Retry { reason, wait } => {
            pass.status.reason = Some(reason);
            Ok(Flow::Done(Action::requeue(wait)))
        }
        Attempt::GiveUp { reason } => fail(pass, reason).await,
    }
}

/// What an ACME failure of `step` means: retry on the policy, replace the
/// order, or fail.
pub(super) async fn on_acme_error(
    pass: &mut Pass<'_>,
    (step, during): (&str, &str),
    error: instant_acme::Error,
) -> Result<Flow, Error> {
    match classify(&error) {
        // Within an order, a configuration error (an answer that is not
        // ACME, a TLS certificate not trusted) is retried as a transient
        // one: the Issuer's controller reports it, and a bounded run ends
        // in the Certificate's backoff.
        Verdict::Transient { reason, detail } | Verdict::Config { reason, detail } => {
            let what = format!("{during}: {reason}: {detail}");
            retry_later(pass, step, what).await
        }
        Verdict::ReplaceOrder { detail } => replace(pass, detail).await,
        Verdict::Permanent { reason, detail }
            if step == "finalize" && refuses_what_the_spec_makes(reason) =>
        {
            let why = format!("Failed {during}: {detail}; {UNTIL_SPEC_CHANGES}");
            fail(pass, why).await
        }
        Verdict::Permanent { detail, .. } => fail(pass, format!("Failed {during}: {detail}")).await,
    }
}

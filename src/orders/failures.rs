//! What the Order controller does when something fails: retry soon
//! (transient), place a fresh ACME order (the CA lost this one), or mark
//! the Order errored with the CA's detail.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::challenges::delete_challenges;
use super::status::{Error, event, write};
use crate::acme::errors::{Verdict, classify};
use crate::acme::session::Session;
use crate::api::Order;
use crate::api::order::{AcmeState, OrderStatus};
use crate::context::Context;

/// Fresh orders placed in a row for one Order before it is failed.
const MAX_REPLACEMENTS: u32 = 5;

/// Marks the Order errored for good, with `reason` for the user.
pub(super) async fn fail(
    ctx: &Context,
    order: &Order,
    mut status: OrderStatus,
    reason: String,
) -> Result<Action, Error> {
    tracing::warn!(order = %order.name_any(), %reason, "order failed");
    event(ctx, order, EventType::Warning, "Failed", reason.clone()).await;
    status.state = Some(AcmeState::Errored);
    status.reason = Some(reason);
    status.failure_time = Some(Time(Timestamp::now()));
    write(ctx, order, &status).await?;
    delete_challenges(ctx, order).await?;
    ctx.succeeded(&order.uid().unwrap_or_default());
    Ok(Action::await_change())
}

/// Drops the ACME order the CA lost and starts a fresh one: the Challenges
/// of the old one are deleted (their finalizers clean up), the status is
/// cleared but for the reason, and the next attempt comes within the
/// transient backoff.
pub(super) async fn replace(
    ctx: &Context,
    order: &Order,
    session: Option<&Session>,
    detail: String,
) -> Result<Action, Error> {
    let uid = order.uid().unwrap_or_default();
    // Transient failures before or between do not count towards the cap.
    let attempts = ctx.lost_again(&uid);
    if attempts > MAX_REPLACEMENTS {
        let status = order.status.clone().unwrap_or_default();
        return fail(
            ctx,
            order,
            status,
            format!("The CA lost the order {MAX_REPLACEMENTS} times in a row; giving up: {detail}"),
        )
        .await;
    }
    delete_challenges(ctx, order).await?;
    let wait = ctx.backoff.after_transient(
        attempts,
        session.and_then(|s| s.log.latest_retry_after(&uid)),
    );
    let reason = format!("The ACME order was lost at the CA ({detail}); placing a fresh order");
    tracing::info!(order = %order.name_any(), attempt = attempts, wait_ms = wait.as_millis() as u64, %detail, "replacing a lost ACME order");
    event(
        ctx,
        order,
        EventType::Warning,
        "OrderReplaced",
        reason.clone(),
    )
    .await;
    let status = OrderStatus {
        reason: Some(reason),
        ..Default::default()
    };
    write(ctx, order, &status).await?;
    Ok(Action::requeue(wait))
}

/// What an ACME failure means: retry soon, replace the order, or fail.
pub(super) async fn on_acme_error(
    ctx: &Context,
    order: &Order,
    mut status: OrderStatus,
    session: Option<&Session>,
    during: &str,
    error: instant_acme::Error,
) -> Result<Action, Error> {
    match classify(&error) {
        Verdict::Transient { reason, detail } => {
            let uid = order.uid().unwrap_or_default();
            let attempts = ctx.failed_again(&uid);
            let wait = ctx.backoff.after_transient(
                attempts,
                session.and_then(|s| s.log.latest_retry_after(&uid)),
            );
            tracing::info!(order = %order.name_any(), attempt = attempts, wait_ms = wait.as_millis() as u64, %detail, "transient ACME error while {during}");
            let text = format!("{during}: {reason}: {detail}; retrying in {}", human(wait));
            if status.reason.as_deref() != Some(text.as_str()) {
                status.reason = Some(text);
                write(ctx, order, &status).await?;
            }
            Ok(Action::requeue(wait))
        }
        Verdict::ReplaceOrder { detail } => replace(ctx, order, session, detail).await,
        Verdict::Permanent { detail, .. } => {
            fail(ctx, order, status, format!("Failed {during}: {detail}")).await
        }
    }
}

fn human(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

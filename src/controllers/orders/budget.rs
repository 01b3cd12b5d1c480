//! The Order controller's side of the CA's published limits
//! (`acme::budgets`): checked before a new order is placed, spent by the
//! order, its certificate and its failed validations.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::acme::budgets::{self, Budgets, Renewal, Spend};
use crate::acme::limits::Hold;
use crate::acme::session::Session;
use crate::api::Order;
use crate::runtime::context::Context;

/// The budgets of the Order's issuer: its annotation's, or its CA's
/// published ones (a wrong annotation is logged, and the CA's apply).
/// Read once the issuers are cached: a controller just started must not
/// take a budgeted issuer for an unbudgeted one.
async fn of(ctx: &Context, order: &Order, session: &Session) -> Budgets {
    ctx.issuer_stores.ready().await;
    let ns = order.namespace().unwrap_or_default();
    let annotations = ctx.issuer_stores.annotations(&ns, &order.spec.issuer_ref);
    let value = annotations.get(budgets::ANNOTATION).map(String::as_str);
    Budgets::of(&session.issuer.server, value).unwrap_or_else(|why| {
        tracing::warn!(issuer = %order.spec.issuer_ref.name, %why, "ignoring the budget annotation");
        Budgets::of(&session.issuer.server, None).unwrap_or_default()
    })
}

/// How the Order renews a certificate (for the CA's exemptions).
fn renewal(order: &Order) -> Renewal {
    use crate::controllers::certificates::renewal::ari::{IN_WINDOW, REPLACES};
    let a = order.annotations();
    match (
        a.contains_key(REPLACES),
        a.get(IN_WINDOW).map(String::as_str),
    ) {
        (true, Some("true")) => Renewal::InWindow,
        (true, _) => Renewal::Replaces,
        _ => Renewal::No,
    }
}

/// The Order's issuer, for metric labels.
pub(super) fn labels(order: &Order) -> (String, String) {
    let r = &order.spec.issuer_ref;
    (
        r.kind.clone().unwrap_or_else(|| "Issuer".into()),
        r.name.clone(),
    )
}

fn account(session: &Session) -> String {
    session.account.id().to_string()
}

/// What placing the Order's new order would spend; a hold until the next
/// slot when a budget has nothing left.
pub(super) async fn check(
    ctx: &Context,
    order: &Order,
    session: &Session,
    names: &[String],
) -> (Vec<Spend>, Option<Hold>) {
    let spends = budgets::order_spends(
        &of(ctx, order, session).await,
        &account(session),
        names,
        renewal(order),
    );
    let now = Timestamp::now();
    let (kind, issuer) = labels(order);
    for s in &spends {
        let left = ctx.ledger.remaining(s, now);
        tracing::debug!(order = %order.name_any(), budget = %s.key, left, "budget before ordering");
        crate::metrics::set_budget(&kind, &issuer, s.name, left, s.limit.count);
    }
    let hold = ctx.ledger.check(&spends, now).map(|full| {
        let wait = crate::acme::retry::until(full.next, now);
        crate::metrics::set_limit_hold(&kind, &issuer, full.spend.name, wait);
        Hold {
            until: full.next,
            reason: full.describe(),
            paused: false,
            issuer: (kind.clone(), issuer.clone()),
        }
    });
    (spends, hold)
}

/// The new order was placed: it spends the new-order budget.
pub(super) fn placed(ctx: &Context, spends: &[Spend]) {
    let now = Timestamp::now();
    for s in spends.iter().filter(|s| s.name == "newOrders") {
        ctx.ledger.spend(s, now);
    }
}

/// The certificate was issued: it spends its exact set and its domains.
pub(super) async fn issued(ctx: &Context, order: &Order, session: &Session, names: &[String]) {
    let now = Timestamp::now();
    let b = of(ctx, order, session).await;
    for s in budgets::issue_spends(&b, &account(session), names, renewal(order)) {
        ctx.ledger.spend(&s, now);
    }
}

/// The CA validated `names` and said no: each spends its failed-validation budget.
pub(super) async fn failed(ctx: &Context, order: &Order, session: &Session, names: &[String]) {
    let b = of(ctx, order, session).await;
    let now = Timestamp::now();
    for n in names {
        if let Some(s) = budgets::failed_validation(&b, &account(session), n) {
            ctx.ledger.spend(&s, now);
        }
    }
}

//! CertificateRequests for ACME issuers: approved automatically (unless
//! `--controllers=-certificaterequests-approver` leaves that to another
//! approver, and a denied request fails as cert-manager's do), answered by
//! exactly one Order (deterministic name, immutable spec, owned by the
//! request), and completed from the Order: the chain copied back
//! (Ready=True, Issued) or the failure reported (Ready=False, Failed).
//! Requests for other issuers are left to whoever serves them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::api::order::AcmeState;
use crate::api::{AcmeIssuer, CertificateRequest, Order};
use crate::runtime::context::Context;

mod plan;
mod steps;

pub const CONTROLLER_NAME: &str = "certwright-certificaterequests-acme";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {0}: {1}")]
    Get(String, #[source] kube::Error),
    #[error("creating Order {0}: {1}")]
    CreateOrder(String, #[source] kube::Error),
    #[error("writing the CertificateRequest's status: {0}")]
    WriteStatus(#[source] kube::Error),
    #[error(transparent)]
    Panicked(#[from] crate::runtime::reconcile_error::Panicked),
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Get(..) => "Get",
            Self::CreateOrder(..) => "CreateOrder",
            Self::WriteStatus(_) => "WriteStatus",
            Self::Panicked(_) => "Panicked",
        }
    }
}

/// The ACME configuration of the request's issuer; None when it is not an
/// ACME issuer (then the request is not ours).
async fn acme_issuer(ctx: &Context, cr: &CertificateRequest) -> Result<Option<AcmeIssuer>, String> {
    let reference = &cr.spec.issuer_ref;
    if reference
        .group
        .as_deref()
        .is_some_and(|g| !g.is_empty() && g != "cert-manager.io")
    {
        return Ok(None);
    }
    let ns = cr.namespace().unwrap_or_default();
    match crate::acme::session::find_issuer(ctx.acme(), &ns, reference).await {
        Ok(Some((config, _, _))) => Ok(config.acme),
        Ok(None) => Err(format!(
            "Referenced {:?} not found: {}",
            reference.kind.as_deref().unwrap_or("Issuer"),
            reference.name
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether `order` names the request `uid` as its controller.
fn controlled_by(order: &Order, uid: Option<&str>) -> bool {
    order
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid)
}

/// Whether an issuer controller already worked on the request (its Ready
/// condition is written once its Order exists), so an Order may exist for
/// it under a name other than ours. (Approval alone does not count.)
fn worked_on(cr: &CertificateRequest) -> bool {
    cr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"))
}

/// Whether `order` was left by an earlier request of the same name: it is
/// controlled by a CertificateRequest called `name` (since deleted and made
/// again), or by nothing (that request was deleted orphaning it, and the
/// garbage collector took its owner reference away).
fn left_by_earlier_request(order: &Order, name: &str) -> bool {
    let mut controllers = order
        .owner_references()
        .iter()
        .filter(|r| r.controller == Some(true))
        .peekable();
    controllers.peek().is_none()
        || controllers.any(|r| r.kind == "CertificateRequest" && r.name == name)
}

/// Most steps in one pass (a pass takes at most seven).
const MOST_STEPS: usize = 12;

async fn reconcile(cr: Arc<CertificateRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::metrics::sync("certificaterequests");
    let mut pass = steps::Pass::new(&ctx, &cr);
    let approver = ctx.settings.controllers.approver;
    // Each step either ends the pass or learns something the next one
    // needs; a table that chose steps without end is a bug, cut short.
    for _ in 0..MOST_STEPS {
        let step = plan::next_step(&cr, &pass.conditions, &pass.seen, approver);
        if let steps::Flow::Done(action) = steps::run(&mut pass, step).await? {
            pass.write().await?;
            return Ok(action);
        }
    }
    tracing::error!(request = %cr.name_any(), "the request's steps did not end a pass; trying again later");
    Ok(Action::requeue(Duration::from_secs(30)))
}

fn error_policy(cr: Arc<CertificateRequest>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::metrics::sync_error("certificaterequests");
    let wait = ctx.reconcile_failed(&cr.uid().unwrap_or_default());
    tracing::warn!(error = %error, kind = error.kind(), retry_in = ?wait, "certificaterequest reconcile failed");
    Action::requeue(wait)
}

/// What a pass reads of an Order besides its owners and deletion: its
/// state, whether it has its certificate, and why it failed (a pending
/// Order's reason is not shown). Its other writes wake no request.
fn order_fingerprint(order: &Order) -> serde_json::Value {
    let status = order.status.as_ref();
    let state = status.and_then(|s| s.state);
    let failed = matches!(
        state,
        Some(AcmeState::Invalid | AcmeState::Errored | AcmeState::Expired)
    );
    json!([
        state,
        status.map(|s| s.certificate.is_some()),
        status.and_then(|s| s.reason.as_ref()).filter(|_| failed),
    ])
}

/// Runs the controller until the stream ends.
pub async fn run(ctx: Arc<Context>) {
    let (store, requests) = crate::runtime::watch::trimmed(
        Api::<CertificateRequest>::all(ctx.client.clone()),
        watcher::Config::default(),
        crate::runtime::watch::Wake::OnEveryChange,
    );
    Controller::for_stream(requests, store)
        // Only what a pass reads of an Order wakes its request.
        .owns_stream(crate::runtime::watch::changes(
            watcher::watcher(
                Api::<Order>::all(ctx.client.clone()),
                watcher::Config::default(),
            )
            .default_backoff(),
            order_fingerprint,
        ))
        .with_config(ctx.settings.controller_config())
        .graceful_shutdown_on(ctx.stopped())
        .run(
            |cr, ctx| {
                let who = (
                    cr.uid().unwrap_or_default(),
                    crate::naming::object_name(&*cr),
                );
                let tracker = ctx.clone();
                async move {
                    tracker
                        .tracked("certificaterequests", who, reconcile(cr, ctx))
                        .await
                }
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

    fn order_owned_by(owners: serde_json::Value) -> Order {
        serde_json::from_value(
            json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
            "metadata": {"name": "web-1-123", "ownerReferences": owners},
            "spec": {"issuerRef": {"name": "le"}, "request": ""}}),
        )
        .expect("order")
    }

    #[test]
    fn an_order_under_another_name_is_looked_for_only_once_an_issuer_worked_on_the_request() {
        let cr = |conditions: serde_json::Value| -> CertificateRequest {
            serde_json::from_value(
                json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
                "metadata": {"name": "web-1"}, "spec": {"issuerRef": {"name": "le"}, "request": ""},
                "status": {"conditions": conditions}}),
            )
            .expect("request")
        };
        assert!(!worked_on(&cr(json!([]))), "new");
        assert!(
            !worked_on(&cr(json!([{"type": "Approved", "status": "True"}]))),
            "approved only"
        );
        assert!(
            worked_on(&cr(json!([{"type": "Approved", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "Pending"}]))),
            "cert-manager's pending request"
        );
    }

    #[test]
    fn an_order_wakes_its_request_when_its_state_or_outcome_changes() {
        let order = |status: serde_json::Value| -> Order {
            let mut o = order_owned_by(json!([]));
            o.status = serde_json::from_value(status).expect("status");
            o
        };
        let print = |status| order_fingerprint(&order(status));
        let pending = print(json!({"state": "pending", "url": "https://ca/order/1"}));
        assert_eq!(
            pending,
            print(json!({"state": "pending", "url": "https://ca/order/1", "reason": "retrying"})),
            "a pending Order's reason is not shown"
        );
        assert_ne!(pending, print(json!({"state": "ready"})));
        assert_ne!(
            print(json!({"state": "valid"})),
            print(json!({"state": "valid", "certificate": "Y2VydA=="}))
        );
        assert_ne!(
            print(json!({"state": "invalid", "reason": "a"})),
            print(json!({"state": "invalid", "reason": "b"})),
            "why it failed is shown"
        );
    }

    #[test]
    fn only_an_order_this_request_controls_is_adopted() {
        let owner = |uid: &str, name: &str, controller: bool| {
            json!([{"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
                "name": name, "uid": uid, "controller": controller}])
        };
        let mine = order_owned_by(owner("u1", "web-1", true));
        assert!(controlled_by(&mine, Some("u1")));
        let earlier = order_owned_by(owner("u0", "web-1", true));
        assert!(!controlled_by(&earlier, Some("u1")));
        assert!(
            left_by_earlier_request(&earlier, "web-1"),
            "deleted and made again"
        );
        let merely_listed = order_owned_by(owner("u1", "web-1", false));
        assert!(!controlled_by(&merely_listed, Some("u1")));
        let orphaned = order_owned_by(json!([]));
        assert!(!controlled_by(&orphaned, Some("u1")));
        assert!(
            left_by_earlier_request(&orphaned, "web-1"),
            "its request was deleted orphaning it"
        );
        let foreign = order_owned_by(json!([{"apiVersion": "example.com/v1", "kind": "Thing",
            "name": "t", "uid": "t1", "controller": true}]));
        assert!(
            !controlled_by(&foreign, Some("u1")) && !left_by_earlier_request(&foreign, "web-1")
        );
    }
}

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
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::certificate_request::CertificateRequestCondition;
use crate::api::meta::ConditionStatus;
use crate::api::order::AcmeState;
use crate::api::{AcmeIssuer, CertificateRequest, Order, OrderSpec};
use crate::naming;
use crate::pki::csr;
use crate::runtime::conditions;
use crate::runtime::context::Context;

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

fn condition<'a>(
    cr: &'a CertificateRequest,
    type_: &str,
) -> Option<&'a CertificateRequestCondition> {
    cr.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
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

async fn write_status(
    ctx: &Context,
    cr: &CertificateRequest,
    status: serde_json::Value,
) -> Result<(), Error> {
    let current = serde_json::to_value(&cr.status).unwrap_or_default();
    let unchanged = status
        .as_object()
        .is_some_and(|fields| fields.iter().all(|(k, v)| current.get(k) == Some(v)));
    if unchanged {
        return Ok(());
    }
    let api: Api<CertificateRequest> =
        Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    crate::runtime::status::apply(&api, &cr.name_any(), CONTROLLER_NAME, &status)
        .await
        .map_err(Error::WriteStatus)
}

async fn reconcile(cr: Arc<CertificateRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::metrics::sync("certificaterequests");
    if condition(&cr, "Ready").is_some_and(|c| {
        c.status == ConditionStatus::True
            || c.reason.as_deref() == Some("Failed")
            || c.reason.as_deref() == Some("Denied")
    }) {
        return Ok(Action::await_change());
    }
    let existing = cr
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let acme = match acme_issuer(&ctx, &cr).await {
        Ok(Some(acme)) => acme,
        Ok(None) => return Ok(Action::await_change()),
        Err(message) => {
            let conditions = conditions::set_request(
                &existing,
                "Ready",
                ConditionStatus::False,
                "Pending",
                &message,
            );
            write_status(&ctx, &cr, json!({"conditions": conditions})).await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    };
    if condition(&cr, "Denied").is_some_and(|c| c.status == ConditionStatus::True) {
        let conditions = conditions::set_request(
            &existing,
            "Ready",
            ConditionStatus::False,
            "Denied",
            "The CertificateRequest was denied by an approval controller",
        );
        write_status(
            &ctx,
            &cr,
            json!({"conditions": conditions, "failureTime": Time(Timestamp::now())}),
        )
        .await?;
        return Ok(Action::await_change());
    }
    let mut conditions = existing;
    if condition(&cr, "Approved").is_none() && !ctx.settings.controllers.approver {
        // Another approver decides (--controllers=-certificaterequests-approver).
        ctx.events.publish(
            CONTROLLER_NAME,
            cr.object_ref(&()),
            kube::runtime::events::EventType::Normal,
            "WaitingForApproval",
            "Not signing CertificateRequest until it is Approved".into(),
        );
        return Ok(Action::await_change());
    }
    if condition(&cr, "Approved").is_none() {
        conditions = conditions::set_request(
            &conditions,
            "Approved",
            ConditionStatus::True,
            "cert-manager.io",
            "Certificate request has been approved by cert-manager.io",
        );
    }
    let ns = cr.namespace().unwrap_or_default();
    let parsed = match csr::parse(&cr.spec.request.0) {
        Ok(p) => p,
        Err(e) => {
            conditions = conditions::set_request(
                &conditions,
                "Ready",
                ConditionStatus::False,
                "Failed",
                &format!("Failed to decode CSR in spec.request: {e}"),
            );
            write_status(
                &ctx,
                &cr,
                json!({"conditions": conditions, "failureTime": Time(Timestamp::now())}),
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let spec = OrderSpec {
        request: ByteString(parsed.der),
        issuer_ref: cr.spec.issuer_ref.clone(),
        common_name: parsed.common_name,
        dns_names: (!parsed.dns_names.is_empty()).then_some(parsed.dns_names),
        ip_addresses: (!parsed.ip_addresses.is_empty()).then_some(parsed.ip_addresses),
        duration: cr
            .spec
            .duration
            .clone()
            .filter(|_| acme.enable_duration_feature == Some(true)),
        profile: acme.profile.clone(),
    };
    let name = naming::order(
        &cr.name_any(),
        &serde_json::to_value(&spec).unwrap_or_default(),
    );
    let orders: Api<Order> = Api::namespaced(ctx.client.clone(), &ns);
    let mut found = orders
        .get_opt(&name)
        .await
        .map_err(|e| Error::Get(format!("Order {ns}/{name}"), e))?;
    // A request someone already worked on whose Order is not under our name:
    // cert-manager names Orders by a hash of its own encoding of the spec, so
    // a request it left mid-issuance has its Order under another name. The
    // Order this request controls is taken over, whatever its name.
    if found.is_none() && worked_on(&cr) {
        found = orders
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::Get(format!("Orders in {ns}"), e))?
            .items
            .into_iter()
            .find(|o| {
                controlled_by(o, cr.meta().uid.as_deref()) && o.meta().deletion_timestamp.is_none()
            });
    }
    let order = match found {
        Some(o) if controlled_by(&o, cr.meta().uid.as_deref()) => o,
        // An Order of the same name left by an earlier request of the same
        // name (a retry after a failure), not yet collected: never this
        // request's. Removed, so this one gets a fresh Order at once.
        Some(o) if left_by_earlier_request(&o, &cr.name_any()) => {
            let _ = orders
                .delete(&name, &kube::api::DeleteParams::background())
                .await;
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        // Controlled by someone else: neither adopted nor deleted.
        Some(_) => {
            let message = format!(
                "Order {ns}/{name} exists but is not controlled by this CertificateRequest; certwright will neither use nor delete it: delete it to let the request proceed"
            );
            conditions = conditions::set_request(
                &conditions,
                "Ready",
                ConditionStatus::False,
                "Pending",
                &message,
            );
            write_status(&ctx, &cr, json!({"conditions": conditions})).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        None => {
            let owner = json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest", "name": cr.name_any(),
                "uid": cr.meta().uid, "controller": true, "blockOwnerDeletion": true});
            let mut order: Order = serde_json::from_value(json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
                "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner], "labels": cr.labels(), "annotations": cr.annotations()},
                "spec": {"issuerRef": {"name": ""}, "request": ""}}))
            .map_err(|e| Error::CreateOrder(name.clone(), kube::Error::SerdeError(e)))?;
            order.spec = spec;
            orders
                .create(&PostParams::default(), &order)
                .await
                .map_err(|e| Error::CreateOrder(format!("{ns}/{name}"), e))?
        }
    };
    let status = order.status.unwrap_or_default();
    match (status.state, status.certificate) {
        (Some(AcmeState::Valid), Some(chain)) => {
            conditions = conditions::set_request(
                &conditions,
                "Ready",
                ConditionStatus::True,
                "Issued",
                "Certificate fetched from issuer successfully",
            );
            write_status(
                &ctx,
                &cr,
                json!({"conditions": conditions, "certificate": chain}),
            )
            .await?;
        }
        (Some(state @ (AcmeState::Invalid | AcmeState::Errored | AcmeState::Expired)), _) => {
            let state = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let message = format!(
                "Failed to wait for order resource {name:?} to become ready: order is in {state:?} state: {}",
                status.reason.unwrap_or_default()
            );
            conditions = conditions::set_request(
                &conditions,
                "Ready",
                ConditionStatus::False,
                "Failed",
                &message,
            );
            write_status(
                &ctx,
                &cr,
                json!({"conditions": conditions, "failureTime": Time(Timestamp::now())}),
            )
            .await?;
        }
        (state, _) => {
            let state = state
                .and_then(|s| serde_json::to_value(s).ok())
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let message =
                format!("Waiting on certificate issuance from order {ns}/{name}: {state:?}");
            conditions = conditions::set_request(
                &conditions,
                "Ready",
                ConditionStatus::False,
                "Pending",
                &message,
            );
            write_status(&ctx, &cr, json!({"conditions": conditions})).await?;
        }
    }
    Ok(Action::await_change())
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

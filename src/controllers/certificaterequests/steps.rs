//! The CertificateRequest controller's steps, one function each: the only
//! I/O of a pass. A step changes the pass's conditions and the status
//! fields it will write, adds what it learnt to [`Seen`], and says whether
//! the pass goes on ([`Flow::Next`]) or ends. The status is written when
//! the pass ends, once and only if it changed.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::plan::{Found, Seen, Step};
use super::{
    CONTROLLER_NAME, Error, acme_issuer, controlled_by, left_by_earlier_request, worked_on,
};
use crate::api::certificate_request::CertificateRequestCondition;
use crate::api::meta::ConditionStatus;
use crate::api::{AcmeIssuer, CertificateRequest, Order, OrderSpec};
use crate::naming;
use crate::pki::csr;
use crate::runtime::conditions;
use crate::runtime::context::Context;

/// One reconcile of one CertificateRequest.
pub(super) struct Pass<'a> {
    pub ctx: &'a Context,
    pub cr: &'a CertificateRequest,
    /// The conditions as this pass has made them so far.
    pub conditions: Vec<CertificateRequestCondition>,
    /// The status fields to write when the pass ends.
    fields: serde_json::Map<String, Value>,
    pub seen: Seen,
    issuer: Option<AcmeIssuer>,
    /// The Order's spec and name, once the CSR is read.
    wanted: Option<(OrderSpec, String)>,
    order: Option<Order>,
}

/// Whether the pass goes on after a step.
pub(super) enum Flow {
    Next,
    Done(Action),
}

impl<'a> Pass<'a> {
    pub fn new(ctx: &'a Context, cr: &'a CertificateRequest) -> Self {
        Self {
            ctx,
            cr,
            conditions: cr
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default(),
            fields: serde_json::Map::new(),
            seen: Seen::default(),
            issuer: None,
            wanted: None,
            order: None,
        }
    }

    /// Sets the Ready condition (with the others of the pass) to write.
    fn ready(&mut self, status: ConditionStatus, reason: &str, message: &str) {
        self.conditions =
            conditions::set_request(&self.conditions, "Ready", status, reason, message);
        self.fields
            .insert("conditions".into(), json!(self.conditions));
    }

    /// Writes the fields the pass set, unless the request has them already.
    pub async fn write(&self) -> Result<(), Error> {
        if self.fields.is_empty() {
            return Ok(());
        }
        let current = serde_json::to_value(&self.cr.status).unwrap_or_default();
        if self.fields.iter().all(|(k, v)| current.get(k) == Some(v)) {
            return Ok(());
        }
        let api: Api<CertificateRequest> = Api::namespaced(
            self.ctx.client.clone(),
            &self.cr.namespace().unwrap_or_default(),
        );
        crate::runtime::status::apply(&api, &self.cr.name_any(), CONTROLLER_NAME, &self.fields)
            .await
            .map_err(Error::WriteStatus)
    }
}

/// Runs `step`.
pub(super) async fn run(pass: &mut Pass<'_>, step: Step) -> Result<Flow, Error> {
    match step {
        Step::Rest | Step::NotOurs => Ok(Flow::Done(Action::await_change())),
        Step::ReadIssuer => {
            let read = acme_issuer(pass.ctx, pass.cr).await;
            pass.seen.issuer = Some(read.as_ref().map(Option::is_some).map_err(Clone::clone));
            pass.issuer = read.ok().flatten();
            Ok(Flow::Next)
        }
        Step::IssuerNotReady(why) => {
            pass.ready(ConditionStatus::False, "Pending", &why);
            Ok(Flow::Done(Action::requeue(Duration::from_secs(5))))
        }
        Step::Deny => {
            pass.ready(
                ConditionStatus::False,
                "Denied",
                "The CertificateRequest was denied by an approval controller",
            );
            pass.fields
                .insert("failureTime".into(), json!(Time(Timestamp::now())));
            Ok(Flow::Done(Action::await_change()))
        }
        Step::WaitForApproval => {
            // Another approver decides (--controllers=-certificaterequests-approver).
            pass.ctx.events.publish(
                CONTROLLER_NAME,
                pass.cr.object_ref(&()),
                kube::runtime::events::EventType::Normal,
                "WaitingForApproval",
                "Not signing CertificateRequest until it is Approved".into(),
            );
            Ok(Flow::Done(Action::await_change()))
        }
        Step::Approve => {
            pass.conditions = conditions::set_request(
                &pass.conditions,
                "Approved",
                ConditionStatus::True,
                "cert-manager.io",
                "Certificate request has been approved by cert-manager.io",
            );
            Ok(Flow::Next)
        }
        Step::FindOrder => find_order(pass).await,
        Step::Fail(message) => {
            pass.ready(ConditionStatus::False, "Failed", &message);
            pass.fields
                .insert("failureTime".into(), json!(Time(Timestamp::now())));
            Ok(Flow::Done(Action::await_change()))
        }
        Step::CreateOrder => create_order(pass).await,
        Step::DeleteEarlierOrder => {
            if let Some((_, name)) = &pass.wanted {
                let ns = pass.cr.namespace().unwrap_or_default();
                let _ = Api::<Order>::namespaced(pass.ctx.client.clone(), &ns)
                    .delete(name, &kube::api::DeleteParams::background())
                    .await;
            }
            Ok(Flow::Done(Action::requeue(Duration::from_millis(500))))
        }
        Step::NameTaken(message) => {
            pass.ready(ConditionStatus::False, "Pending", &message);
            Ok(Flow::Done(Action::requeue(Duration::from_secs(30))))
        }
        Step::Issued => {
            pass.ready(
                ConditionStatus::True,
                "Issued",
                "Certificate fetched from issuer successfully",
            );
            let chain = pass
                .order
                .as_ref()
                .and_then(|o| o.status.as_ref())
                .and_then(|s| s.certificate.clone());
            pass.fields.insert("certificate".into(), json!(chain));
            Ok(Flow::Done(Action::await_change()))
        }
        Step::Waiting(message) => {
            pass.ready(ConditionStatus::False, "Pending", &message);
            Ok(Flow::Done(Action::await_change()))
        }
    }
}

/// What the request's Order is (from the CSR) and where it stands.
fn found(order: &Order) -> Found {
    let status = order.status.clone().unwrap_or_default();
    Found::Ours {
        name: format!(
            "{}/{}",
            order.namespace().unwrap_or_default(),
            order.name_any()
        ),
        state: status.state,
        certificate: status.certificate.is_some(),
        reason: status.reason,
    }
}

/// Reads the CSR into the Order's spec and name, and looks for that Order.
async fn find_order(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let (ctx, cr) = (pass.ctx, pass.cr);
    let Some(acme) = &pass.issuer else {
        return Ok(Flow::Next);
    };
    let parsed = match csr::parse(&cr.spec.request.0) {
        Ok(p) => p,
        Err(e) => {
            pass.seen.order = Some(Found::BadCsr(e.to_string()));
            return Ok(Flow::Next);
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
    let ns = cr.namespace().unwrap_or_default();
    let orders: Api<Order> = Api::namespaced(ctx.client.clone(), &ns);
    let mut existing = orders
        .get_opt(&name)
        .await
        .map_err(|e| Error::Get(format!("Order {ns}/{name}"), e))?;
    // A request someone already worked on whose Order is not under our name:
    // cert-manager names Orders by a hash of its own encoding of the spec, so
    // a request it left mid-issuance has its Order under another name. The
    // Order this request controls is taken over, whatever its name.
    if existing.is_none() && worked_on(cr) {
        existing = orders
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::Get(format!("Orders in {ns}"), e))?
            .items
            .into_iter()
            .find(|o| {
                controlled_by(o, cr.meta().uid.as_deref()) && o.meta().deletion_timestamp.is_none()
            });
    }
    pass.seen.order = Some(match &existing {
        None => Found::Missing,
        Some(o) if controlled_by(o, cr.meta().uid.as_deref()) => found(o),
        // An Order of the same name left by an earlier request of the same
        // name (a retry after a failure), not yet collected: never this
        // request's.
        Some(o) if left_by_earlier_request(o, &cr.name_any()) => Found::LeftByEarlier,
        Some(_) => Found::Foreign(format!("{ns}/{name}")),
    });
    pass.order = existing;
    pass.wanted = Some((spec, name));
    Ok(Flow::Next)
}

/// Creates the request's Order, owned by it.
async fn create_order(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let cr = pass.cr;
    let Some((spec, name)) = pass.wanted.clone() else {
        return Ok(Flow::Next);
    };
    let ns = cr.namespace().unwrap_or_default();
    let owner = json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest", "name": cr.name_any(),
        "uid": cr.meta().uid, "controller": true, "blockOwnerDeletion": true});
    let mut order: Order = serde_json::from_value(json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner], "labels": cr.labels(), "annotations": cr.annotations()},
        "spec": {"issuerRef": {"name": ""}, "request": ""}}))
    .map_err(|e| Error::CreateOrder(name.clone(), kube::Error::SerdeError(e)))?;
    order.spec = spec;
    let created = Api::<Order>::namespaced(pass.ctx.client.clone(), &ns)
        .create(&PostParams::default(), &order)
        .await
        .map_err(|e| Error::CreateOrder(format!("{ns}/{name}"), e))?;
    pass.seen.order = Some(found(&created));
    pass.order = Some(created);
    Ok(Flow::Next)
}

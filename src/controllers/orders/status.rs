//! What the Order controller writes: its status (server-side apply under
//! its field manager) and its events. Shared by the controller, its
//! Challenges and its failure handling.

use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use crate::api::Order;
use crate::api::order::OrderStatus;
use crate::runtime::context::Context;

pub const CONTROLLER_NAME: &str = "certwright-orders";

pub use crate::runtime::reconcile_error::Error;

pub async fn write(ctx: &Context, order: &Order, status: &OrderStatus) -> Result<(), Error> {
    let uid = order.uid().unwrap_or_default();
    let api: Api<Order> =
        Api::namespaced(ctx.client.clone(), &order.namespace().unwrap_or_default());
    let written =
        crate::runtime::status::apply_returning(&api, &order.name_any(), CONTROLLER_NAME, status)
            .await
            .map_err(|e| Error::WriteStatus("Order", e))?;
    ctx.wrote(&uid, written.resource_version());
    Ok(())
}

/// Removes `fields` from the status, whoever set them (see
/// [`crate::runtime::status::clear`]).
pub async fn clear(ctx: &Context, order: &Order, fields: &[&str]) -> Result<(), Error> {
    let api: Api<Order> =
        Api::namespaced(ctx.client.clone(), &order.namespace().unwrap_or_default());
    let written = crate::runtime::status::clear(&api, &order.name_any(), CONTROLLER_NAME, fields)
        .await
        .map_err(|e| Error::WriteStatus("Order", e))?;
    ctx.wrote(&order.uid().unwrap_or_default(), written.resource_version());
    Ok(())
}

pub fn event(ctx: &Context, order: &Order, type_: EventType, reason: &str, note: String) {
    ctx.events
        .publish(CONTROLLER_NAME, order.object_ref(&()), type_, reason, note);
}

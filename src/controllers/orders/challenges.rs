//! The Challenges of an Order: created one per pending authorization with
//! the solver the Issuer's selectors choose, found by their Order's uid
//! label, deleted when the Order is done (by ownership: cert-manager's
//! carry no label of ours).

use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::select;
use super::status::{Error, event};
use crate::acme::session::Session;
use crate::api::challenge::ChallengeType;
use crate::api::order::{AcmeAuthorization, AcmeState};
use crate::api::{Challenge, ChallengeSpec, Order};
use crate::naming;
use crate::runtime::context::Context;

/// Label on the Challenges certwright creates: the uid of their Order, so
/// an Order lists its own Challenges and not the namespace's.
pub const ORDER_UID_LABEL: &str = "certwright.io/order-uid";
/// Annotation on Challenges: the ACME order URL they belong to.
pub const ORDER_URL_ANNOTATION: &str = "certwright.io/order-url";

pub(super) fn own_challenges(order: &Order) -> ListParams {
    ListParams::default().labels(&format!(
        "{ORDER_UID_LABEL}={}",
        order.uid().unwrap_or_default()
    ))
}

pub(super) fn owned_by(ch: &Challenge, order: &Order) -> bool {
    let uid = order.meta().uid.as_deref();
    ch.owner_references()
        .iter()
        .any(|r| Some(r.uid.as_str()) == uid)
}
/// Deletes the Order's Challenges once it is done, as cert-manager does
/// (their finalizers remove what they presented): those it owns, whoever
/// made them (cert-manager's carry no label of ours), as the Challenge
/// cache knows them, and those with our label the cache may not have yet.
pub(super) async fn delete_challenges(ctx: &Context, order: &Order) -> Result<(), Error> {
    let ns = order.namespace().unwrap_or_default();
    let challenges: Api<Challenge> = Api::namespaced(ctx.client.clone(), &ns);
    let listed = challenges
        .list(&own_challenges(order))
        .await
        .map_err(|e| Error::Api(format!("Challenges in {ns}"), e))?;
    let mut names: std::collections::BTreeSet<String> = listed
        .items
        .iter()
        .filter(|c| owned_by(c, order))
        .map(|c| c.name_any())
        .collect();
    if ctx.stores.challenges.is_listed() {
        names.extend(
            ctx.stores
                .challenges
                .store
                .state()
                .iter()
                .filter(|c| c.namespace().as_deref() == Some(ns.as_str()) && owned_by(c, order))
                .filter(|c| c.metadata.deletion_timestamp.is_none())
                .map(|c| c.name_any()),
        );
    }
    for name in names {
        let _ = challenges.delete(&name, &DeleteParams::default()).await;
    }
    Ok(())
}

/// Creates the Challenges still missing for the pending authorizations.
pub(super) async fn ensure_challenges(
    ctx: &Context,
    order: &Order,
    session: &Session,
    authorizations: &[AcmeAuthorization],
    existing: &[Challenge],
    order_url: &str,
) -> Result<Result<(), String>, Error> {
    let ns = order.namespace().unwrap_or_default();
    let api: Api<Challenge> = Api::namespaced(ctx.client.clone(), &ns);
    let solvers = session.issuer.solvers.clone().unwrap_or_default();
    for authz in authorizations
        .iter()
        .filter(|a| a.initial_state == Some(AcmeState::Pending))
    {
        let domain = authz.identifier.clone().unwrap_or_default();
        let wildcard = authz.wildcard.unwrap_or(false);
        let shown = if wildcard {
            format!("*.{domain}")
        } else {
            domain.clone()
        };
        if let Some(why) = select::cannot_prove(&solvers, &shown, order.labels()) {
            return Ok(Err(why));
        }
        let Some(index) = select::solver_for(&solvers, &domain, wildcard, order.labels()) else {
            return Ok(Err(format!("no solver of the issuer matches {shown}")));
        };
        let solver = match select::with_overrides(solvers[index].clone(), order.annotations()) {
            Ok(s) => s,
            Err(why) => return Ok(Err(why)),
        };
        let (wanted, type_) = if solver.dns01.is_some() {
            ("dns-01", ChallengeType::Dns01)
        } else {
            ("http-01", ChallengeType::Http01)
        };
        let Some(http) = authz
            .challenges
            .iter()
            .flatten()
            .find(|c| c.type_ == wanted)
        else {
            return Ok(Err(format!(
                "The CA offers no {} challenge for {shown}",
                wanted.to_ascii_uppercase()
            )));
        };
        let key_authorization = format!("{}.{}", http.token, session.account.key_thumbprint());
        let name = naming::challenge(&order.name_any(), &authz.url, &http.token);
        if existing.iter().any(|c| c.name_any() == name) {
            continue;
        }
        let mut labels = order.labels().clone();
        labels.insert(ORDER_UID_LABEL.into(), order.uid().unwrap_or_default());
        let owner = json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Order", "name": order.name_any(),
            "uid": order.meta().uid, "controller": true, "blockOwnerDeletion": true});
        let mut challenge: Challenge = serde_json::from_value(json!({
            "apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner], "labels": labels,
                "annotations": {ORDER_URL_ANNOTATION: order_url}},
            "spec": {"url": "", "authorizationURL": "", "dnsName": "", "type": "HTTP-01", "token": "", "key": "",
                     "solver": {}, "issuerRef": {"name": ""}},
        }))
        .map_err(|e| Error::Api(format!("Challenge {ns}/{name}"), kube::Error::SerdeError(e)))?;
        challenge.spec = ChallengeSpec {
            url: http.url.clone(),
            authorization_url: authz.url.clone(),
            dns_name: domain.clone(),
            wildcard: Some(wildcard),
            type_,
            token: http.token.clone(),
            // DNS-01's key is the TXT value (RFC 8555 §8.4), as cert-manager writes it.
            key: match type_ {
                ChallengeType::Dns01 => crate::dns::txt_value(&key_authorization),
                ChallengeType::Http01 => key_authorization,
            },
            solver,
            issuer_ref: order.spec.issuer_ref.clone(),
        };
        match api.create(&PostParams::default(), &challenge).await {
            Ok(_) => {
                event(
                    ctx,
                    order,
                    EventType::Normal,
                    "Created",
                    format!("Created Challenge resource {name:?} for domain {shown:?}"),
                );
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(Error::Api(format!("Challenge {ns}/{name}"), e)),
        }
    }
    Ok(Ok(()))
}

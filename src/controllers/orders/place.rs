//! The Order step that places the ACME order: what is refused before
//! asking (identifiers, solvers, the profile, the duration), the CAs'
//! holds and published budgets, the certificate a renewal replaces, and
//! the order's URL on record before anything else can fail.

use instant_acme::Identifier;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::decide::{identifiers, order_state};
use super::failures::{fail, held, on_acme_error};
use super::pass::{Flow, Pass};
use super::status::Error;
use instant_acme::NewOrder;

/// Places the order, or says why it is not placed.
pub(super) async fn place(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let ctx = pass.ctx;
    let order = pass.order.clone();
    let uid = pass.uid();
    let Some(session) = pass.session.clone() else {
        return Ok(Flow::Next);
    };
    let ids = identifiers(&order.spec);
    if let Some(why) = super::decide::refused_before_asking(&ids) {
        return fail(pass, why).await;
    }
    let solvers = session.issuer.solvers.clone().unwrap_or_default();
    let unsolvable = ids.iter().find_map(|id| {
        let name = match id {
            Identifier::Dns(name) => name.clone(),
            Identifier::Ip(ip) => ip.to_string(),
            _ => return None,
        };
        super::select::cannot_prove(&solvers, &name, order.labels())
    });
    if let Some(why) = unsolvable {
        return fail(pass, why).await;
    }
    let profile = order.spec.profile.as_deref().filter(|p| !p.is_empty());
    if let Some(profile) = profile {
        let mut offered: Vec<String> = session
            .account
            .profiles()
            .map(|p| p.name.to_string())
            .collect();
        offered.sort();
        if !offered.iter().any(|p| p == profile) {
            let why = if offered.is_empty() {
                format!(
                    "the ACME server offers no certificate profiles, so profile {profile:?} cannot be used; remove spec.acme.profile from the issuer"
                )
            } else {
                format!(
                    "the ACME server does not offer profile {profile:?}; it offers {}",
                    offered.join(", ")
                )
            };
            return fail(pass, format!("Failed creating the ACME order: {why}")).await;
        }
    }
    // A renewal names the certificate it replaces (RFC 9773), so the CA can
    // exempt it from rate limits. A CA without renewal information, or
    // refusing the reference (already replaced, unknown), gets the order
    // without it.
    let replaces = order
        .annotations()
        .get(crate::controllers::certificates::renewal::ari::REPLACES)
        .and_then(|id| id.split_once('.'))
        .map(|(aki, serial)| instant_acme::CertificateIdentifier {
            authority_key_identifier: aki.to_string().into(),
            serial: serial.to_string().into(),
        });
    // With the issuer's enableDurationFeature, the request's duration is
    // asked for as notAfter, which instant-acme cannot send.
    let not_after = match order
        .spec
        .duration
        .as_deref()
        .map(crate::time::parse_go_duration)
    {
        Some(Ok(seconds)) => Some(
            Timestamp::now()
                .saturating_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
                .unwrap_or(Timestamp::MAX)
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        ),
        Some(Err(why)) => return fail(pass, format!("spec.duration: {why}")).await,
        None => None,
    };
    let place = |replaces: Option<instant_acme::CertificateIdentifier<'static>>| {
        let new = new_order(&ids, profile, replaces);
        let not_after = not_after.clone();
        let session = &session;
        async move {
            let Some(not_after) = not_after else {
                return session.account.new_order(&new).await;
            };
            let mut payload = serde_json::to_value(&new)?;
            payload["notAfter"] = serde_json::Value::String(not_after);
            let (ca, key) = session
                .direct()
                .await
                .map_err(|e| instant_acme::Error::Other(e.into()))?;
            let url = ca.new_order(&key, session.account.id(), &payload).await?;
            session.account.order(url).await
        }
    };
    // A CA's refusal may hold this account's new orders back.
    let names: Vec<String> = ids.iter().map(identifier_name).collect();
    let account = session.account.id().to_string();
    if let Some(hold) = ctx.holds.check(&account, &names, Timestamp::now()) {
        return held(pass, hold).await;
    }
    // And one the CA would refuse is not sent: its budgets.
    let (spends, over) = super::budget::check(ctx, &order, &session, &names).await;
    if let Some(hold) = over {
        return held(pass, hold).await;
    }
    let first = match replaces {
        Some(id) => match place(Some(id)).await {
            Err(e) if replaces_refused(&e) => {
                tracing::info!(order = %order.name_any(), error = %e, "the CA refused the replaced certificate; ordering without it");
                None
            }
            placed => Some(placed),
        },
        None => None,
    };
    let placed = match first {
        Some(placed) => placed,
        None => place(None).await,
    };
    let mut placed = match placed {
        Ok(o) => o,
        Err(e) => {
            if let instant_acme::Error::Api(p) = &e
                && let Some((held_names, hold)) = crate::acme::limits::hold_for(
                    super::budget::labels(&order),
                    p.r#type.as_deref().unwrap_or_default(),
                    p.detail.as_deref().unwrap_or_default(),
                    &names,
                    session.log.latest_retry_after(&uid),
                    Timestamp::now(),
                )
            {
                ctx.holds.hold(&account, &held_names, hold.clone());
                if hold.paused {
                    return held(pass, hold).await;
                }
            }
            return on_acme_error(pass, ("newOrder", "creating the ACME order"), e).await;
        }
    };
    ctx.retries.succeeded(&uid, "newOrder");
    super::budget::placed(ctx, &spends);
    // The URL on record before anything else can fail: a restart resumes it.
    let state = placed.state().status;
    pass.status.url = Some(placed.url().to_string());
    pass.status.finalize_url = Some(placed.state().finalize.clone());
    pass.status.state = Some(order_state(state));
    pass.status.reason = None;
    pass.checkpoint().await?;
    tracing::info!(order = %order.name_any(), url = placed.url(), "placed ACME order");
    crate::metrics::stage_since("order_placed", order.meta());
    pass.seen.acme = Some(state);
    pass.acme = Some(placed);
    Ok(Flow::Next)
}

/// An identifier as the CA's words name it.
pub(super) fn identifier_name(id: &Identifier) -> String {
    match id {
        Identifier::Dns(name) => name.clone(),
        Identifier::Ip(ip) => ip.to_string(),
        other => format!("{other:?}"),
    }
}

/// Whether a new order failed only for naming the certificate it replaces.
fn replaces_refused(e: &instant_acme::Error) -> bool {
    match e {
        instant_acme::Error::Unsupported(_) => true,
        instant_acme::Error::Api(p) => {
            let kind = p.r#type.as_deref().unwrap_or_default();
            let about_replacing = p
                .detail
                .as_deref()
                .is_some_and(|d| d.to_ascii_lowercase().contains("replace"));
            kind.ends_with(":alreadyReplaced")
                || ((kind.ends_with(":malformed") || kind.ends_with(":unauthorized"))
                    && about_replacing)
                || (p.status == Some(409))
        }
        _ => false,
    }
}

/// A new order from `ids`, with the profile and the certificate it
/// replaces when given.
pub(super) fn new_order<'a>(
    ids: &'a [Identifier],
    profile: Option<&'a str>,
    replaces: Option<instant_acme::CertificateIdentifier<'static>>,
) -> NewOrder<'a> {
    let mut new = NewOrder::new(ids);
    if let Some(profile) = profile {
        new = new.profile(profile);
    }
    if let Some(id) = replaces {
        new = new.replaces(id);
    }
    new
}

//! The Order controller: places the ACME order (its URL is stored at once,
//! so a restarted controller resumes the same order), records the
//! authorizations, creates one Challenge per authorization still pending
//! (solver chosen by the Issuer's selectors), finalizes with the request's
//! CSR and stores the chain. A lost order (the CA's 404) is replaced by a
//! fresh one within seconds; permanent errors mark the Order errored with
//! the CA's detail.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use instant_acme::{AuthorizationStatus, Identifier, NewOrder};
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{naming, select};
use crate::acme::errors::{Verdict, classify};
use crate::acme::session::{self, Session, SessionError};
use crate::api::order::{AcmeAuthorization, AcmeChallenge, AcmeState, OrderStatus};
use crate::api::{Challenge, ChallengeSpec, Order, OrderSpec};
use crate::context::Context;

pub const CONTROLLER_NAME: &str = "certwright-orders";

/// Fresh orders placed in a row for one Order before it is failed.
const MAX_REPLACEMENTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading or writing {0}: {1}")]
    Api(String, #[source] kube::Error),
    #[error("writing the Order's status: {0}")]
    WriteStatus(#[source] kube::Error),
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Api(..) => "Api",
            Self::WriteStatus(_) => "WriteStatus",
        }
    }
}

/// Whether the Order has reached a state it never leaves.
pub fn is_final(status: &OrderStatus) -> bool {
    match status.state {
        Some(AcmeState::Valid) => status.certificate.is_some(),
        Some(AcmeState::Invalid | AcmeState::Errored | AcmeState::Expired) => true,
        _ => false,
    }
}

/// The identifiers to order: the DNS names, the common name when it is
/// not among them, and the IP addresses.
pub fn identifiers(spec: &OrderSpec) -> Vec<Identifier> {
    let mut names: Vec<String> = Vec::new();
    let mut ips: Vec<std::net::IpAddr> = Vec::new();
    let mut add = |value: &str| {
        if let Ok(ip) = value.parse::<std::net::IpAddr>() {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        } else {
            let name = value.trim_end_matches('.').to_ascii_lowercase();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    };
    for name in spec.dns_names.iter().flatten() {
        add(name);
    }
    if let Some(cn) = &spec.common_name {
        add(cn);
    }
    for ip in spec.ip_addresses.iter().flatten() {
        add(ip);
    }
    names
        .into_iter()
        .map(Identifier::Dns)
        .chain(ips.into_iter().map(Identifier::Ip))
        .collect()
}

fn order_state(s: instant_acme::OrderStatus) -> AcmeState {
    match s {
        instant_acme::OrderStatus::Pending => AcmeState::Pending,
        instant_acme::OrderStatus::Ready => AcmeState::Ready,
        instant_acme::OrderStatus::Processing => AcmeState::Processing,
        instant_acme::OrderStatus::Valid => AcmeState::Valid,
        instant_acme::OrderStatus::Invalid => AcmeState::Invalid,
    }
}

pub fn authorization_state(s: AuthorizationStatus) -> AcmeState {
    match s {
        AuthorizationStatus::Pending => AcmeState::Pending,
        AuthorizationStatus::Valid => AcmeState::Valid,
        AuthorizationStatus::Expired => AcmeState::Expired,
        _ => AcmeState::Invalid,
    }
}

fn challenge_type(t: &instant_acme::ChallengeType) -> String {
    match t {
        instant_acme::ChallengeType::Http01 => "http-01".into(),
        instant_acme::ChallengeType::Dns01 => "dns-01".into(),
        instant_acme::ChallengeType::TlsAlpn01 => "tls-alpn-01".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// Label on the Challenges certwright creates: the uid of their Order, so
/// an Order lists its own Challenges and not the namespace's.
pub const ORDER_UID_LABEL: &str = "certwright.io/order-uid";
/// Annotation on Challenges: the ACME order URL they belong to.
pub const ORDER_URL_ANNOTATION: &str = "certwright.io/order-url";

fn own_challenges(order: &Order) -> ListParams {
    ListParams::default().labels(&format!(
        "{ORDER_UID_LABEL}={}",
        order.uid().unwrap_or_default()
    ))
}

fn owned_by(ch: &Challenge, order: &Order) -> bool {
    let uid = order.meta().uid.as_deref();
    ch.owner_references()
        .iter()
        .any(|r| Some(r.uid.as_str()) == uid)
}

async fn write(ctx: &Context, order: &Order, status: &OrderStatus) -> Result<(), Error> {
    let uid = order.uid().unwrap_or_default();
    let api: Api<Order> =
        Api::namespaced(ctx.client.clone(), &order.namespace().unwrap_or_default());
    let written = crate::status::apply_returning(&api, &order.name_any(), CONTROLLER_NAME, status)
        .await
        .map_err(Error::WriteStatus)?;
    ctx.wrote(&uid, written.resource_version());
    Ok(())
}

async fn event(ctx: &Context, order: &Order, type_: EventType, reason: &str, note: String) {
    if let Err(e) = crate::events::publish(
        &ctx.client,
        CONTROLLER_NAME,
        &order.object_ref(&()),
        type_,
        reason,
        note,
    )
    .await
    {
        tracing::warn!(error = %e, "publishing an Order event failed");
    }
}

/// Deletes the Order's Challenges once it is done, as cert-manager does
/// (their finalizers remove what they presented).
async fn delete_challenges(ctx: &Context, order: &Order) -> Result<(), Error> {
    let ns = order.namespace().unwrap_or_default();
    let challenges: Api<Challenge> = Api::namespaced(ctx.client.clone(), &ns);
    let listed = challenges
        .list(&own_challenges(order))
        .await
        .map_err(|e| Error::Api(format!("Challenges in {ns}"), e))?;
    for ch in listed.items.iter().filter(|c| owned_by(c, order)) {
        let _ = challenges
            .delete(&ch.name_any(), &DeleteParams::default())
            .await;
    }
    Ok(())
}

/// Marks the Order errored for good, with `reason` for the user.
async fn fail(
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
async fn replace(
    ctx: &Context,
    order: &Order,
    session: Option<&Session>,
    detail: String,
) -> Result<Action, Error> {
    let uid = order.uid().unwrap_or_default();
    let attempts = ctx.failed_again(&uid);
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
    let wait = ctx
        .backoff
        .after_transient(attempts, session.and_then(|s| s.log.latest_retry_after()));
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
async fn on_acme_error(
    ctx: &Context,
    order: &Order,
    mut status: OrderStatus,
    session: Option<&Session>,
    during: &str,
    error: instant_acme::Error,
) -> Result<Action, Error> {
    match classify(&error) {
        Verdict::Transient { reason, detail } => {
            let attempts = ctx.failed_again(&order.uid().unwrap_or_default());
            let wait = ctx
                .backoff
                .after_transient(attempts, session.and_then(|s| s.log.latest_retry_after()));
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

/// Creates the Challenges still missing for the pending authorizations.
async fn ensure_challenges(
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
        let Some(index) = select::solver_for(&solvers, &domain, wildcard, order.labels()) else {
            let why = if wildcard {
                format!(
                    "no solver of the issuer can prove {shown}: wildcard names need DNS-01, and certwright solves HTTP-01 only"
                )
            } else {
                format!("no solver of the issuer matches {shown}")
            };
            return Ok(Err(format!(
                "Failed to determine a valid solver configuration for the set of domains on the Order: {why}"
            )));
        };
        let solver = solvers[index].clone();
        if solver.http01.is_none() {
            return Ok(Err(format!(
                "The solver chosen for {shown} is DNS-01, which certwright does not support yet; add an HTTP-01 solver whose selector matches it"
            )));
        }
        let Some(http) = authz
            .challenges
            .iter()
            .flatten()
            .find(|c| c.type_ == "http-01")
        else {
            return Ok(Err(format!(
                "The CA offers no HTTP-01 challenge for {shown}"
            )));
        };
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
            type_: crate::api::challenge::ChallengeType::Http01,
            token: http.token.clone(),
            key: format!("{}.{}", http.token, session.account.key_thumbprint()),
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
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(Error::Api(format!("Challenge {ns}/{name}"), e)),
        }
    }
    Ok(Ok(()))
}

async fn reconcile(order: Arc<Order>, ctx: Arc<Context>) -> Result<Action, Error> {
    let mut order = order;
    let uid = order.uid().unwrap_or_default();
    let behind = ctx.behind(&uid, order.resource_version().as_deref());
    if behind || order.status.as_ref().and_then(|s| s.url.as_ref()).is_none() {
        // The cache has not seen our last write yet, or we are about to
        // place an ACME order (the cache may predate the write of one
        // placed a moment ago): ask the API server.
        let api: Api<Order> =
            Api::namespaced(ctx.client.clone(), &order.namespace().unwrap_or_default());
        match api.get_opt(&order.name_any()).await {
            Ok(Some(fresh)) => order = Arc::new(fresh),
            Ok(None) => return Ok(Action::await_change()),
            Err(e) => return Err(Error::Api(format!("Order {}", order.name_any()), e)),
        }
    }
    let mut status = order.status.clone().unwrap_or_default();
    if is_final(&status) || order.meta().deletion_timestamp.is_some() {
        ctx.wrote(&uid, None);
        return Ok(Action::await_change());
    }
    let ns = order.namespace().unwrap_or_default();
    let uid = order.uid().unwrap_or_default();
    let session = match session::session(&ctx, &ns, &order.spec.issuer_ref).await {
        Ok(s) => s,
        Err(SessionError::Api(what, e)) => return Err(Error::Api(what, e)),
        Err(SessionError::Acme(e)) => {
            return on_acme_error(&ctx, &order, status, None, "loading the ACME account", e).await;
        }
        Err(e) => {
            let text = e.to_string();
            if status.reason.as_deref() != Some(text.as_str()) {
                status.reason = Some(text);
                write(&ctx, &order, &status).await?;
            }
            // Usually the issuer is registering its account right now.
            let attempts = ctx.failed_again(&uid);
            return Ok(Action::requeue(ctx.backoff.after_transient(attempts, None)));
        }
    };

    // While Challenges are at work, they say everything worth knowing;
    // the CA is asked again only when one of them has finished.
    let challenges: Vec<Challenge> = Api::<Challenge>::namespaced(ctx.client.clone(), &ns)
        .list(&own_challenges(&order))
        .await
        .map_err(|e| Error::Api(format!("Challenges in {ns}"), e))?
        .items
        .into_iter()
        .filter(|c| owned_by(c, &order) && c.meta().deletion_timestamp.is_none())
        .collect();
    let challenge_state = |c: &Challenge| c.status.as_ref().and_then(|s| s.state);
    if let Some(lost) = challenges
        .iter()
        .find(|c| challenge_state(c) == Some(AcmeState::Errored))
    {
        let why = lost
            .status
            .as_ref()
            .and_then(|s| s.reason.clone())
            .unwrap_or_default();
        return replace(
            &ctx,
            &order,
            Some(&session),
            format!("Challenge {}: {why}", lost.name_any()),
        )
        .await;
    }
    if status.url.is_some()
        && status.state == Some(AcmeState::Pending)
        && let Some(authorizations) = &status.authorizations
    {
        let pending = authorizations
            .iter()
            .filter(|a| a.initial_state == Some(AcmeState::Pending))
            .count();
        let finished = challenges
            .iter()
            .filter(|c| {
                matches!(
                    challenge_state(c),
                    Some(AcmeState::Valid | AcmeState::Invalid)
                )
            })
            .count();
        if challenges.len() < pending {
            if let Err(why) = ensure_challenges(
                &ctx,
                &order,
                &session,
                authorizations,
                &challenges,
                status.url.as_deref().unwrap_or_default(),
            )
            .await?
            {
                return fail(&ctx, &order, status, why).await;
            }
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        let any_invalid = challenges
            .iter()
            .any(|c| challenge_state(c) == Some(AcmeState::Invalid));
        if finished < pending && !any_invalid {
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
    }

    let mut acme_order = match status.url.clone() {
        None => {
            let ids = identifiers(&order.spec);
            let mut new = NewOrder::new(&ids);
            if let Some(profile) = order.spec.profile.as_deref().filter(|p| !p.is_empty()) {
                let offered: Vec<String> = session
                    .account
                    .profiles()
                    .map(|p| p.name.to_string())
                    .collect();
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
                    return fail(
                        &ctx,
                        &order,
                        status,
                        format!("Failed creating the ACME order: {why}"),
                    )
                    .await;
                }
                new = new.profile(profile);
            }
            let placed = match session.account.new_order(&new).await {
                Ok(o) => o,
                Err(e) => {
                    return on_acme_error(
                        &ctx,
                        &order,
                        status,
                        Some(&session),
                        "creating the ACME order",
                        e,
                    )
                    .await;
                }
            };
            let mut placed = placed;
            // Store the URL before anything else can fail: a restart resumes it.
            status.url = Some(placed.url().to_string());
            status.finalize_url = Some(placed.state().finalize.clone());
            status.state = Some(order_state(placed.state().status));
            status.reason = None;
            write(&ctx, &order, &status).await?;
            tracing::info!(order = %order.name_any(), url = placed.url(), "placed ACME order");
            placed
        }
        Some(url) => match session.account.order(url).await {
            Ok(o) => o,
            Err(e) => {
                return on_acme_error(
                    &ctx,
                    &order,
                    status,
                    Some(&session),
                    "fetching the ACME order",
                    e,
                )
                .await;
            }
        },
    };
    let acme_status = acme_order.state().status;
    if status.authorizations.is_none() {
        let mut recorded = Vec::new();
        let mut stream = acme_order.authorizations();
        while let Some(next) = stream.next().await {
            let authz = match next {
                Ok(a) => a,
                Err(e) => {
                    return on_acme_error(
                        &ctx,
                        &order,
                        status,
                        Some(&session),
                        "fetching the authorizations",
                        e,
                    )
                    .await;
                }
            };
            let id = authz.identifier();
            let identifier = match id.identifier {
                Identifier::Dns(d) => d.clone(),
                Identifier::Ip(ip) => ip.to_string(),
                _ => id.to_string(),
            };
            recorded.push(AcmeAuthorization {
                url: authz.url().to_string(),
                identifier: Some(identifier),
                wildcard: Some(authz.wildcard),
                initial_state: Some(authorization_state(authz.status)),
                challenges: Some(
                    authz
                        .challenges
                        .iter()
                        .map(|c| AcmeChallenge {
                            url: c.url.clone(),
                            token: c.token.clone(),
                            type_: challenge_type(&c.r#type),
                        })
                        .collect(),
                ),
            });
        }
        status.authorizations = Some(recorded);
    }
    status.state = Some(order_state(acme_status));
    status.reason = None;
    match acme_status {
        instant_acme::OrderStatus::Pending => {
            let authorizations = status.authorizations.clone().unwrap_or_default();
            if let Err(why) = ensure_challenges(
                &ctx,
                &order,
                &session,
                &authorizations,
                &challenges,
                status.url.as_deref().unwrap_or_default(),
            )
            .await?
            {
                return fail(&ctx, &order, status, why).await;
            }
            if order.status.as_ref() != Some(&status) {
                write(&ctx, &order, &status).await?;
            }
            Ok(Action::requeue(Duration::from_secs(60)))
        }
        instant_acme::OrderStatus::Invalid => {
            let reason = acme_order
                .state()
                .error
                .as_ref()
                .and_then(|p| p.detail.clone())
                .or_else(|| {
                    challenges
                        .iter()
                        .filter(|c| challenge_state(c) == Some(AcmeState::Invalid))
                        .find_map(|c| c.status.as_ref().and_then(|s| s.reason.clone()))
                })
                .unwrap_or_else(|| "the CA marked the order invalid".into());
            status.reason = Some(reason.clone());
            status.failure_time = Some(Time(Timestamp::now()));
            event(
                &ctx,
                &order,
                EventType::Warning,
                "Failed",
                format!("Order is invalid: {reason}"),
            )
            .await;
            write(&ctx, &order, &status).await?;
            delete_challenges(&ctx, &order).await?;
            ctx.succeeded(&uid);
            Ok(Action::await_change())
        }
        instant_acme::OrderStatus::Ready
        | instant_acme::OrderStatus::Processing
        | instant_acme::OrderStatus::Valid => {
            if acme_status == instant_acme::OrderStatus::Ready {
                let der = match crate::pki::csr::parse(&order.spec.request.0) {
                    Ok(p) => p.der,
                    Err(_) => order.spec.request.0.clone(),
                };
                if let Err(e) = acme_order.finalize_csr(&der).await {
                    return on_acme_error(
                        &ctx,
                        &order,
                        status,
                        Some(&session),
                        "finalizing the order",
                        e,
                    )
                    .await;
                }
                status.state = Some(order_state(acme_order.state().status));
            }
            let started = std::time::Instant::now();
            let mut delay = Duration::from_millis(50);
            loop {
                match acme_order.certificate().await {
                    Ok(Some(chain)) => {
                        status.state = Some(AcmeState::Valid);
                        status.certificate = Some(ByteString(chain.into_bytes()));
                        write(&ctx, &order, &status).await?;
                        delete_challenges(&ctx, &order).await?;
                        ctx.succeeded(&uid);
                        event(
                            &ctx,
                            &order,
                            EventType::Normal,
                            "Complete",
                            "Order completed successfully".into(),
                        )
                        .await;
                        return Ok(Action::await_change());
                    }
                    Ok(None) => {
                        let wait = session.log.latest_retry_after().unwrap_or(delay);
                        if started.elapsed() + wait > Duration::from_secs(10) {
                            status.state = Some(AcmeState::Processing);
                            write(&ctx, &order, &status).await?;
                            return Ok(Action::requeue(wait));
                        }
                        tokio::time::sleep(wait).await;
                        delay = (delay * 2).min(ctx.poll_interval);
                    }
                    Err(e) => {
                        return on_acme_error(
                            &ctx,
                            &order,
                            status,
                            Some(&session),
                            "fetching the certificate",
                            e,
                        )
                        .await;
                    }
                }
            }
        }
    }
}

fn error_policy(_: Arc<Order>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(error = %error, kind = error.kind(), "order reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the controller until the stream ends.
pub async fn run(ctx: Arc<Context>) {
    Controller::new(
        Api::<Order>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<Challenge>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .with_config(ctx.controller_config())
    .run(reconcile, error_policy, ctx.clone())
    .for_each(|_| async {})
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_take_names_common_name_and_ips_once() {
        let spec = OrderSpec {
            dns_names: Some(vec!["b.example".into(), "A.example.".into()]),
            common_name: Some("a.example".into()),
            ip_addresses: Some(vec!["10.0.0.1".into()]),
            ..Default::default()
        };
        let ids = identifiers(&spec);
        assert_eq!(
            ids,
            vec![
                Identifier::Dns("b.example".into()),
                Identifier::Dns("a.example".into()),
                Identifier::Ip("10.0.0.1".parse().expect("ip")),
            ]
        );
        let only_cn = OrderSpec {
            common_name: Some("cn.example".into()),
            ..Default::default()
        };
        assert_eq!(
            identifiers(&only_cn),
            vec![Identifier::Dns("cn.example".into())]
        );
    }

    #[test]
    fn final_states() {
        let mut s = OrderStatus {
            state: Some(AcmeState::Valid),
            ..Default::default()
        };
        assert!(!is_final(&s), "valid without the chain is not done");
        s.certificate = Some(ByteString(b"pem".to_vec()));
        assert!(is_final(&s));
        for state in [AcmeState::Invalid, AcmeState::Errored, AcmeState::Expired] {
            assert!(is_final(&OrderStatus {
                state: Some(state),
                ..Default::default()
            }));
        }
        for state in [AcmeState::Pending, AcmeState::Ready, AcmeState::Processing] {
            assert!(!is_final(&OrderStatus {
                state: Some(state),
                ..Default::default()
            }));
        }
    }
}

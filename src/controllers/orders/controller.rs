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
use instant_acme::{Identifier, NewOrder};
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::challenges::{delete_challenges, ensure_challenges, owned_by};
use super::decide::{authorization_state, challenge_type, identifiers, is_final, order_state};
use super::failures::{fail, held, on_acme_error, replace, retry_later};
use crate::acme::session::{self, SessionError};
use crate::api::order::{AcmeAuthorization, AcmeChallenge, AcmeState};
use crate::api::{Challenge, Order};
use crate::runtime::context::Context;

pub use super::status::{CONTROLLER_NAME, Error};
use super::status::{event, write};

async fn reconcile(
    order: Arc<Order>,
    ctx: Arc<Context>,
    cached: Store<Challenge>,
) -> Result<Action, Error> {
    crate::metrics::sync("orders");
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
        // A done Order's Challenges go (a controller stopped between
        // writing the final state and deleting them left them behind).
        let left = cached
            .state()
            .iter()
            .any(|c| owned_by(c, &order) && c.metadata.deletion_timestamp.is_none());
        if left && is_final(&status) {
            delete_challenges(&ctx, &order).await?;
        }
        return Ok(Action::await_change());
    }
    let ns = order.namespace().unwrap_or_default();
    let uid = order.uid().unwrap_or_default();
    // A run of failures waits for its next try, whatever woke the Order
    // (its own status write, a Challenge): no request, no write before.
    if let Some(left) = ctx
        .retries
        .wait_left(&uid, status.reason.as_deref(), Timestamp::now())
    {
        return Ok(Action::requeue(left));
    }
    let session = match session::session(ctx.acme(), &ns, &order.spec.issuer_ref).await {
        Ok(s) => s,
        Err(SessionError::Api(what, e)) => return Err(Error::Api(what, e)),
        Err(SessionError::Acme(e)) => {
            let step = ("account", "loading the ACME account");
            return on_acme_error(&ctx, &order, status, None, step, e).await;
        }
        Err(e) => {
            // Usually the issuer is registering its account right now.
            return retry_later(&ctx, &order, status, "issuer", e.to_string(), None).await;
        }
    };
    ctx.retries.succeeded(&uid, "issuer");
    ctx.retries.succeeded(&uid, "account");

    // While Challenges are at work, they say everything worth knowing;
    // the CA is asked again only when one of them has finished. They are
    // read from the cache that feeds this controller's triggers, so a
    // reconcile caused by a Challenge sees at least that Challenge's news;
    // one the cache misses yet is created again, which the API refuses
    // harmlessly (409).
    let challenges: Vec<Challenge> = cached
        .state()
        .iter()
        .filter(|c| {
            c.namespace().as_deref() == Some(ns.as_str())
                && owned_by(c, &order)
                && c.meta().deletion_timestamp.is_none()
        })
        .map(|c| Challenge::clone(c))
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
        if why.starts_with(crate::acme::retry::GAVE_UP) {
            // The CA kept failing the Challenge's requests: the order is
            // not lost, the CA is unwell; the Certificate's backoff waits.
            let why = format!("Challenge {}: {why}", lost.name_any());
            return fail(&ctx, &order, status, why).await;
        }
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
            if let Some(why) = super::decide::refused_before_asking(&ids) {
                return fail(&ctx, &order, status, why).await;
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
                return fail(&ctx, &order, status, why).await;
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
                    return fail(
                        &ctx,
                        &order,
                        status,
                        format!("Failed creating the ACME order: {why}"),
                    )
                    .await;
                }
            }
            let new_order = |replaces: Option<instant_acme::CertificateIdentifier<'static>>| {
                let mut new = NewOrder::new(&ids);
                if let Some(profile) = profile {
                    new = new.profile(profile);
                }
                if let Some(id) = replaces {
                    new = new.replaces(id);
                }
                new
            };
            // A renewal names the certificate it replaces (RFC 9773), so the
            // CA can exempt it from rate limits. A CA without renewal
            // information, or refusing the reference (already replaced,
            // unknown), gets the order without it.
            let replaces = order
                .annotations()
                .get(crate::controllers::certificates::ari::REPLACES)
                .and_then(|id| id.split_once('.'))
                .map(|(aki, serial)| instant_acme::CertificateIdentifier {
                    authority_key_identifier: aki.to_string().into(),
                    serial: serial.to_string().into(),
                });
            // With the issuer's enableDurationFeature, the request's duration
            // is asked for as notAfter, which instant-acme cannot send.
            let not_after = match order
                .spec
                .duration
                .as_deref()
                .map(crate::time::parse_go_duration)
            {
                Some(Ok(seconds)) => Some(
                    k8s_openapi::jiff::Timestamp::now()
                        .saturating_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
                        .unwrap_or(k8s_openapi::jiff::Timestamp::MAX)
                        .strftime("%Y-%m-%dT%H:%M:%SZ")
                        .to_string(),
                ),
                Some(Err(why)) => {
                    return fail(&ctx, &order, status, format!("spec.duration: {why}")).await;
                }
                None => None,
            };
            let place = |replaces: Option<instant_acme::CertificateIdentifier<'static>>| {
                let new = new_order(replaces);
                let session = &session;
                let not_after = not_after.clone();
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
                return held(&ctx, &order, status, hold).await;
            }
            // And one the CA would refuse is not sent: its budgets.
            let (spends, over) = super::budget::check(&ctx, &order, &session, &names).await;
            if let Some(hold) = over {
                return held(&ctx, &order, status, hold).await;
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
                            return held(&ctx, &order, status, hold).await;
                        }
                    }
                    let step = ("newOrder", "creating the ACME order");
                    return on_acme_error(&ctx, &order, status, Some(&session), step, e).await;
                }
            };
            ctx.retries.succeeded(&uid, "newOrder");
            super::budget::placed(&ctx, &spends);
            // Store the URL before anything else can fail: a restart resumes it.
            status.url = Some(placed.url().to_string());
            status.finalize_url = Some(placed.state().finalize.clone());
            status.state = Some(order_state(placed.state().status));
            status.reason = None;
            write(&ctx, &order, &status).await?;
            tracing::info!(order = %order.name_any(), url = placed.url(), "placed ACME order");
            crate::metrics::stage_since("order_placed", order.meta());
            placed
        }
        Some(url) => match session.account.order(url).await {
            Ok(o) => {
                ctx.retries.succeeded(&uid, "order");
                o
            }
            Err(e) => {
                let step = ("order", "fetching the ACME order");
                return on_acme_error(&ctx, &order, status, Some(&session), step, e).await;
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
                    let step = ("authorizations", "fetching the authorizations");
                    return on_acme_error(&ctx, &order, status, Some(&session), step, e).await;
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
        ctx.retries.succeeded(&uid, "authorizations");
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
            let refused: Vec<String> = challenges
                .iter()
                .filter(|c| challenge_state(c) == Some(AcmeState::Invalid))
                .map(|c| c.spec.dns_name.clone())
                .collect();
            super::budget::failed(&ctx, &order, &session, &refused).await;
            event(
                &ctx,
                &order,
                EventType::Warning,
                "Failed",
                format!("Order is invalid: {reason}"),
            );
            write(&ctx, &order, &status).await?;
            delete_challenges(&ctx, &order).await?;
            ctx.retries.forget(&uid);
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
                    let step = ("finalize", "finalizing the order");
                    return on_acme_error(&ctx, &order, status, Some(&session), step, e).await;
                }
                ctx.retries.succeeded(&uid, "finalize");
                status.state = Some(order_state(acme_order.state().status));
            }
            let started = std::time::Instant::now();
            let mut delay = Duration::from_millis(50);
            loop {
                let fetched = match acme_order.certificate().await {
                    Ok(Some(chain)) => {
                        preferred_chain(&session, acme_order.state().certificate.as_deref(), chain)
                            .await
                            .map(Some)
                    }
                    other => other,
                };
                match fetched {
                    Ok(Some(chain)) => {
                        status.state = Some(AcmeState::Valid);
                        status.certificate = Some(ByteString(chain.into_bytes()));
                        write(&ctx, &order, &status).await?;
                        crate::metrics::stage_since("issued", order.meta());
                        let names: Vec<String> = identifiers(&order.spec)
                            .iter()
                            .map(identifier_name)
                            .collect();
                        super::budget::issued(&ctx, &order, &session, &names).await;
                        delete_challenges(&ctx, &order).await?;
                        ctx.retries.forget(&uid);
                        event(
                            &ctx,
                            &order,
                            EventType::Normal,
                            "Complete",
                            "Order completed successfully".into(),
                        );
                        return Ok(Action::await_change());
                    }
                    Ok(None) => {
                        // (Retry-After is clamped to a day where it is read.)
                        let wait = session.log.latest_retry_after(&uid).unwrap_or(delay);
                        if started.elapsed().saturating_add(wait) > Duration::from_secs(10) {
                            // The write wakes the Order: it waits all the same.
                            let next = crate::acme::retry::after(Timestamp::now(), wait);
                            ctx.retries.defer(&uid, "poll", next);
                            status.state = Some(AcmeState::Processing);
                            write(&ctx, &order, &status).await?;
                            return Ok(Action::requeue(wait));
                        }
                        tokio::time::sleep(wait).await;
                        delay = (delay * 2).min(ctx.settings.poll_interval);
                    }
                    Err(e) => {
                        let step = ("certificate", "fetching the certificate");
                        return on_acme_error(&ctx, &order, status, Some(&session), step, e).await;
                    }
                }
            }
        }
    }
}

fn error_policy(order: Arc<Order>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::metrics::sync_error("orders");
    let wait = ctx.reconcile_failed(&order.uid().unwrap_or_default());
    tracing::warn!(error = %error, kind = error.kind(), retry_in = ?wait, "order reconcile failed");
    Action::requeue(wait)
}

/// What a pass reads of a Challenge besides its owners and deletion: its
/// state, and why it failed. A Challenge's progress messages (the
/// self-check's, the wait for the CA) wake no Order.
fn challenge_fingerprint(ch: &Challenge) -> serde_json::Value {
    let status = ch.status.as_ref();
    let state = status.and_then(|s| s.state);
    let failed = matches!(state, Some(AcmeState::Invalid | AcmeState::Errored));
    serde_json::json!([
        state,
        status.and_then(|s| s.reason.as_ref()).filter(|_| failed),
    ])
}

/// Runs the controller until the stream ends.
pub async fn run(ctx: Arc<Context>) {
    // Every Challenge is cached (a pass reads its Order's from here), but
    // only what a pass reads of one wakes its Order.
    let (cached, events) = crate::runtime::watch::cached(
        Api::<Challenge>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let challenges = crate::runtime::watch::changes(events, challenge_fingerprint);
    let (store, orders) = crate::runtime::watch::trimmed(
        Api::<Order>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    Controller::for_stream(orders, store)
        .owns_stream(challenges)
        .with_config(ctx.settings.controller_config())
        .graceful_shutdown_on(ctx.stopped())
        .run(
            move |order, ctx| {
                // The Order's requests are its own for Retry-After.
                let uid = order.uid().unwrap_or_default();
                let who = (uid.clone(), crate::naming::object_name(&*order));
                let tracker = ctx.clone();
                let run = reconcile(order, ctx, cached.clone());
                crate::acme::http::REQUESTER.scope(uid.clone(), async move {
                    tracker.tracked("orders", who, run).await
                })
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {})
        .await;
}

/// The chain to keep: with the issuer's `preferredChain`, the first of
/// the default and the alternate chains whose topmost certificate is
/// issued by a CA of that common name (as cert-manager picks it); the
/// default chain when none is.
async fn preferred_chain(
    session: &crate::acme::session::Session,
    url: Option<&str>,
    default: String,
) -> Result<String, instant_acme::Error> {
    let Some(wanted) = session
        .issuer
        .preferred_chain
        .as_deref()
        .filter(|p| !p.is_empty())
    else {
        return Ok(default);
    };
    let Some(url) = url else {
        return Ok(default);
    };
    if super::decide::top_issuer(&default).as_deref() == Some(wanted) {
        return Ok(default);
    }
    let (ca, key) = session
        .direct()
        .await
        .map_err(|e| instant_acme::Error::Other(e.into()))?;
    let (_, alternates) = ca.chain(&key, session.account.id(), url).await?;
    for alternate in &alternates {
        let (chain, _) = ca.chain(&key, session.account.id(), alternate).await?;
        if super::decide::top_issuer(&chain).as_deref() == Some(wanted) {
            tracing::info!(chain = %alternate, preferred = wanted, "using the preferred chain");
            return Ok(chain);
        }
    }
    tracing::info!(
        preferred = wanted,
        alternates = alternates.len(),
        "no chain matches the preferred chain; keeping the default"
    );
    Ok(default)
}

/// An identifier as the CA's words name it.
fn identifier_name(id: &Identifier) -> String {
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

//! The Order controller's steps, one function each: the only I/O of a
//! pass. A step changes the pass's copy of the status, adds what it learnt
//! to [`Seen`], and says whether the pass goes on ([`Flow::Next`]) or ends.
//! The status is written when the pass ends, once and only if it changed,
//! and before the effects that rely on it being on record
//! ([`Pass::checkpoint`]): a placed order's URL before anything else can
//! fail, a final state before its Challenges are deleted.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::Identifier;
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::challenges::{delete_challenges, ensure_challenges};
use super::decide::{authorization_state, challenge_type, identifiers, order_state};
use super::failures::{fail, on_acme_error, replace, retry_later};
use super::pass::{Flow, Pass};
use super::plan::Step;
use super::status::{Error, event};
use crate::acme::session::{self, Session, SessionError};
use crate::api::order::{AcmeAuthorization, AcmeChallenge, AcmeState};
use crate::api::{Challenge, Order};

/// Runs `step`.
pub(super) async fn run(pass: &mut Pass<'_>, step: Step) -> Result<Flow, Error> {
    match step {
        Step::ReadFresh => read_fresh(pass).await,
        Step::DeleteChallenges => {
            pass.ctx.wrote(&pass.uid(), None);
            delete_challenges(pass.ctx, &pass.order).await?;
            Ok(Flow::Done(Action::await_change()))
        }
        Step::Rest => {
            pass.ctx.wrote(&pass.uid(), None);
            Ok(Flow::Done(Action::await_change()))
        }
        Step::WaitForRetry(left) => Ok(Flow::Done(Action::requeue(left))),
        Step::LoadSession => load_session(pass).await,
        Step::Fail(why) => fail(pass, why).await,
        Step::Replace(why) => replace(pass, why).await,
        Step::CreateChallenges => {
            settle(pass);
            create_challenges(pass).await
        }
        Step::AwaitChallenges => Ok(Flow::Done(Action::requeue(Duration::from_secs(60)))),
        Step::Place => super::place::place(pass).await,
        Step::FetchOrder => fetch_order(pass).await,
        Step::RecordAuthorizations => record_authorizations(pass).await,
        Step::MarkInvalid => {
            settle(pass);
            mark_invalid(pass).await
        }
        Step::Finalize => {
            settle(pass);
            finalize(pass).await
        }
        Step::FetchCertificate => {
            settle(pass);
            fetch_certificate(pass).await
        }
    }
}

/// Once the CA has answered, the status says where the order stands there,
/// and no earlier failure's reason.
fn settle(pass: &mut Pass<'_>) {
    if let Some(acme) = pass.seen.acme {
        pass.status.state = Some(order_state(acme));
        pass.status.reason = None;
    }
}

/// The Order from the API server (gone: nothing to do).
async fn read_fresh(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let order = &pass.order;
    let api: Api<Order> = Api::namespaced(
        pass.ctx.client.clone(),
        &order.namespace().unwrap_or_default(),
    );
    match api.get_opt(&order.name_any()).await {
        Ok(Some(fresh)) => {
            let status = fresh.status.clone().unwrap_or_default();
            // A run of failures is read from the status the API has.
            pass.seen.retry_left = pass.ctx.retries.wait_left(
                &fresh.uid().unwrap_or_default(),
                status.reason.as_deref(),
                Timestamp::now(),
            );
            pass.read_fresh(fresh);
            pass.seen.fresh = true;
            Ok(Flow::Next)
        }
        Ok(None) => Ok(Flow::Done(Action::await_change())),
        Err(e) => Err(Error::Api(format!("Order {}", order.name_any()), e)),
    }
}

async fn load_session(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let (ctx, order) = (pass.ctx, pass.order.clone());
    let ns = order.namespace().unwrap_or_default();
    match session::session(ctx.acme(), &ns, &order.spec.issuer_ref).await {
        Ok(s) => {
            let uid = pass.uid();
            ctx.retries.succeeded(&uid, "issuer");
            ctx.retries.succeeded(&uid, "account");
            pass.session = Some(Arc::new(s));
            pass.seen.session = true;
            Ok(Flow::Next)
        }
        Err(SessionError::Api(what, e)) => Err(Error::Api(what, e)),
        Err(SessionError::Acme(e)) => {
            on_acme_error(pass, ("account", "loading the ACME account"), e).await
        }
        // Usually the issuer is registering its account right now.
        Err(e) => retry_later(pass, "issuer", e.to_string()).await,
    }
}

/// Creates the Challenges still missing for the pending authorizations,
/// then waits for them (they say when something changes).
async fn create_challenges(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let Some(session) = pass.session.clone() else {
        return Ok(Flow::Next);
    };
    let authorizations = pass.status.authorizations.clone().unwrap_or_default();
    let url = pass.status.url.clone().unwrap_or_default();
    if let Err(why) = ensure_challenges(
        pass.ctx,
        &pass.order,
        &session,
        &authorizations,
        &pass.challenges,
        &url,
    )
    .await?
    {
        return fail(pass, why).await;
    }
    Ok(Flow::Done(Action::requeue(Duration::from_secs(60))))
}

/// Asks the CA where the order stands.
async fn fetch_order(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let (Some(session), Some(url)) = (pass.session.clone(), pass.status.url.clone()) else {
        return Ok(Flow::Next);
    };
    match session.account.order(url).await {
        Ok(mut o) => {
            pass.ctx.retries.succeeded(&pass.uid(), "order");
            pass.seen.acme = Some(o.state().status);
            pass.acme = Some(o);
            Ok(Flow::Next)
        }
        Err(e) => on_acme_error(pass, ("order", "fetching the ACME order"), e).await,
    }
}

/// Records the order's authorizations, and its state at the CA.
async fn record_authorizations(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let Some(acme_order) = pass.acme.as_mut() else {
        return Ok(Flow::Next);
    };
    let mut recorded = Vec::new();
    let mut failed = None;
    {
        let mut stream = acme_order.authorizations();
        while let Some(next) = stream.next().await {
            let authz = match next {
                Ok(a) => a,
                Err(e) => {
                    failed = Some(e);
                    break;
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
    }
    if let Some(e) = failed {
        return on_acme_error(pass, ("authorizations", "fetching the authorizations"), e).await;
    }
    pass.status.authorizations = Some(recorded);
    pass.ctx.retries.succeeded(&pass.uid(), "authorizations");
    Ok(Flow::Next)
}

/// The CA marked the order invalid: why, from the order or its Challenges.
async fn mark_invalid(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let ctx = pass.ctx;
    let order = pass.order.clone();
    let invalid =
        |c: &&Challenge| c.status.as_ref().and_then(|s| s.state) == Some(AcmeState::Invalid);
    let reason = pass
        .acme
        .as_mut()
        .and_then(|o| o.state().error.as_ref().and_then(|p| p.detail.clone()))
        .or_else(|| {
            pass.challenges
                .iter()
                .filter(invalid)
                .find_map(|c| c.status.as_ref().and_then(|s| s.reason.clone()))
        })
        .unwrap_or_else(|| "the CA marked the order invalid".into());
    pass.status.state = Some(AcmeState::Invalid);
    pass.status.reason = Some(reason.clone());
    pass.status.failure_time = Some(Time(Timestamp::now()));
    let refused: Vec<String> = pass
        .challenges
        .iter()
        .filter(invalid)
        .map(|c| c.spec.dns_name.clone())
        .collect();
    if let Some(session) = pass.session.as_ref() {
        super::budget::failed(ctx, &order, session, &refused).await;
    }
    event(
        ctx,
        &order,
        EventType::Warning,
        "Failed",
        format!("Order is invalid: {reason}"),
    );
    pass.checkpoint().await?;
    delete_challenges(ctx, &order).await?;
    ctx.retries.forget(&pass.uid());
    Ok(Flow::Done(Action::await_change()))
}

/// Finalizes with the request's CSR.
async fn finalize(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let Some(acme_order) = pass.acme.as_mut() else {
        return Ok(Flow::Next);
    };
    let request = &pass.order.spec.request.0;
    let der = match crate::pki::csr::parse(request) {
        Ok(p) => p.der,
        Err(_) => request.clone(),
    };
    if let Err(e) = acme_order.finalize_csr(&der).await {
        return on_acme_error(pass, ("finalize", "finalizing the order"), e).await;
    }
    let state = acme_order.state().status;
    pass.ctx.retries.succeeded(&pass.uid(), "finalize");
    pass.status.state = Some(order_state(state));
    pass.seen.acme = Some(state);
    pass.seen.finalized = true;
    Ok(Flow::Next)
}

/// Fetches the certificate, polling for up to ten seconds while the CA
/// processes; past that the pass ends and the next one polls again.
async fn fetch_certificate(pass: &mut Pass<'_>) -> Result<Flow, Error> {
    let ctx = pass.ctx;
    let order = pass.order.clone();
    let uid = pass.uid();
    let Some(session) = pass.session.clone() else {
        return Ok(Flow::Next);
    };
    let Some(acme_order) = pass.acme.as_mut() else {
        return Ok(Flow::Next);
    };
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    let fetched = loop {
        let fetched = match acme_order.certificate().await {
            Ok(Some(chain)) => {
                preferred_chain(&session, acme_order.state().certificate.as_deref(), chain)
                    .await
                    .map(Some)
            }
            other => other,
        };
        match fetched {
            Ok(None) => {
                // (Retry-After is clamped to a day where it is read.)
                let wait = session.log.latest_retry_after(&uid).unwrap_or(delay);
                if started.elapsed().saturating_add(wait) > Duration::from_secs(10) {
                    break Ok(Err(wait));
                }
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(ctx.settings.poll_interval);
            }
            Ok(Some(chain)) => break Ok(Ok(chain)),
            Err(e) => break Err(e),
        }
    };
    match fetched {
        Ok(Ok(chain)) => {
            pass.status.state = Some(AcmeState::Valid);
            pass.status.certificate = Some(ByteString(chain.into_bytes()));
            pass.checkpoint().await?;
            crate::metrics::stage_since("issued", order.meta());
            let names: Vec<String> = identifiers(&order.spec)
                .iter()
                .map(super::place::identifier_name)
                .collect();
            super::budget::issued(ctx, &order, &session, &names).await;
            delete_challenges(ctx, &order).await?;
            ctx.retries.forget(&uid);
            event(
                ctx,
                &order,
                EventType::Normal,
                "Complete",
                "Order completed successfully".into(),
            );
            Ok(Flow::Done(Action::await_change()))
        }
        Ok(Err(wait)) => {
            // The write wakes the Order: it waits all the same.
            let next = crate::acme::retry::after(Timestamp::now(), wait);
            ctx.retries.defer(&uid, "poll", next);
            pass.status.state = Some(AcmeState::Processing);
            Ok(Flow::Done(Action::requeue(wait)))
        }
        Err(e) => on_acme_error(pass, ("certificate", "fetching the certificate"), e).await,
    }
}

/// The chain to keep: with the issuer's `preferredChain`, the first of
/// the default and the alternate chains whose topmost certificate is
/// issued by a CA of that common name (as cert-manager picks it); the
/// default chain when none is.
async fn preferred_chain(
    session: &Session,
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

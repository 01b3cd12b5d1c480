//! The Challenge's conversation with the CA: accept the challenge, poll
//! its authorization, and retry a failed request on the CA retry policy
//! (`acme::retry`).

use std::time::Duration;

use instant_acme::{AuthorizationStatus, ChallengeStatus as AcmeChallengeStatus, ChallengeType};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::event;
use super::pass::{Flow, Pass};
use super::state::Ctx;
use crate::acme::session::Session;
use crate::api::Challenge;
use crate::api::order::AcmeState;

/// The step of accepting the challenge and polling its authorization.
pub(super) const VALIDATE: &str = "validate";

/// Where the CA stands on the challenge after accepting it.
pub(super) enum Outcome {
    Valid,
    Invalid(String),
    /// Still pending; ask again after this long (the CA's Retry-After,
    /// clamped where it is read, or the poll interval).
    Pending(Duration),
}

/// Accepts the challenge (unless the CA already has it) and polls its
/// authorization for up to ten seconds.
pub(super) async fn accept_and_poll(
    ctx: &Ctx,
    session: &Session,
    order_url: &str,
    ch: &Challenge,
    kind: ChallengeType,
) -> Result<Outcome, instant_acme::Error> {
    let mut order = session.account.order(order_url.to_string()).await?;
    let target = ch.spec.authorization_url.as_str();
    let mut found = false;
    {
        let mut stream = order.authorizations();
        while let Some(next) = stream.next().await {
            let mut authz = next?;
            if authz.url() != target {
                continue;
            }
            found = true;
            if authz.status != AuthorizationStatus::Pending {
                break;
            }
            let pending = authz
                .challenges
                .iter()
                .any(|c| c.r#type == kind && c.status == AcmeChallengeStatus::Pending);
            if pending && let Some(mut challenge) = authz.challenge(kind.clone()) {
                challenge.set_ready().await?;
            }
            break;
        }
    }
    if !found {
        return Err(instant_acme::Error::Api(instant_acme::Problem {
            r#type: Some("urn:ietf:params:acme:error:malformed".into()),
            detail: Some(format!(
                "No such authorization: {target} is not part of the order"
            )),
            status: Some(404),
            subproblems: Vec::new(),
        }));
    }
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let mut stream = order.authorizations();
        while let Some(next) = stream.next().await {
            let mut authz = next?;
            if authz.url() != target {
                continue;
            }
            let state = authz.refresh().await?;
            match state.status {
                AuthorizationStatus::Valid => return Ok(Outcome::Valid),
                AuthorizationStatus::Pending => {}
                _ => {
                    let detail = state
                        .challenges
                        .iter()
                        .find(|c| c.r#type == kind)
                        .and_then(|c| c.error.as_ref())
                        .map(|p| {
                            let kind = p.r#type.clone().unwrap_or_default();
                            format!("{kind}: {}", p.detail.clone().unwrap_or_default())
                        })
                        .unwrap_or_else(|| format!("the authorization is {:?}", state.status));
                    return Ok(Outcome::Invalid(detail));
                }
            }
            break;
        }
        let wait = session
            .log
            .latest_retry_after(&ch.uid().unwrap_or_default())
            .unwrap_or(delay);
        if started.elapsed().saturating_add(wait) > Duration::from_secs(10) {
            return Ok(Outcome::Pending(wait));
        }
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(ctx.settings.poll_interval);
    }
}

/// One more failure of `step` asking the CA: the reason with the run (so a
/// restarted controller reads it back), written when the pass ends; the
/// next try on the CA retry policy. A run that is over ends the Challenge
/// (errored, its reason starting with [`crate::acme::retry::GAVE_UP`]), and
/// its Order fails.
pub(super) fn retry_later(
    pass: &mut Pass<'_>,
    step: &str,
    what: String,
    retry_after: Option<Duration>,
) -> Flow {
    use crate::acme::retries::Attempt;
    let (ctx, ch) = (pass.ctx, pass.ch);
    let previous = pass.status.reason.as_deref();
    match ctx
        .retries
        .transient(&ctx.settings.retry, ch, previous, step, &what, retry_after)
    {
        Attempt::Retry { reason, wait } => {
            pass.status.reason = Some(reason);
            Flow::Done(Action::requeue(wait))
        }
        Attempt::GiveUp { reason } => {
            pass.status.state = Some(AcmeState::Errored);
            pass.status.reason = Some(reason.clone());
            event(ctx, ch, EventType::Warning, "Failed", reason);
            Flow::Next
        }
    }
}

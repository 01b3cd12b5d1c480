//! The trigger's I/O: sets Issuing=True with the reason an issuance is
//! needed (decided by the pure checks in `policies`), or waits until the
//! renewal time, and clears the failure count after an issuance.

use std::time::Duration;

use super::Again;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::policies::evaluate;
use super::renewal::backoff;
use super::renewal::scheduled;
use super::snapshot::Snapshot;
use super::state::Ctx;
use crate::acme::errors::waits_for_spec_change;
use crate::api::Certificate;
use crate::api::meta::ConditionStatus;
use crate::pki::cert::parse_chain;
use crate::runtime::conditions;

use super::secret::guard::refused;
use super::status::{Error, apply_status, issuing, note_written, publish};

pub const TRIGGER: &str = "certwright-certificates-trigger";

/// Forgets earlier failures (the spec changed): a merge patch, as the
/// failure record belongs to the issuing controller's apply.
async fn reset_failures(ctx: &Ctx, cert: &Certificate) -> Result<(), Error> {
    let api: Api<Certificate> =
        Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
    let patch = json!({"status": {"lastFailureTime": null, "failedIssuanceAttempts": null}});
    let written = api
        .patch_status(
            &cert.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await
        .map_err(Error::WriteStatus)?;
    note_written(ctx, &written);
    Ok(())
}

pub(crate) async fn reconcile(
    cert: &Certificate,
    seen: &Snapshot,
    ctx: &Ctx,
) -> Result<Again, Error> {
    if issuing(cert) || cert.meta().deletion_timestamp.is_some() {
        return Ok(None);
    }
    let now = Timestamp::now();
    // After failed issuances, wait out the backoff first, unless the spec
    // changed since the failure: then start afresh.
    if let Some(status) = &cert.status
        && let (Some(failed_at), Some(attempts)) =
            (&status.last_failure_time, status.failed_issuance_attempts)
    {
        let failed = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Issuing" && c.reason.as_deref() == Some("Failed"));
        let failed_generation = failed.and_then(|c| c.observed_generation);
        if backoff::spec_changed_since(failed_generation, cert.meta().generation) {
            // A changed spec starts afresh, a CA's pause of its names too.
            ctx.holds.release(&super::request_manager::held_names(cert));
            reset_failures(ctx, cert).await?;
        } else if failed
            .and_then(|c| c.message.as_deref())
            .is_some_and(waits_for_spec_change)
        {
            // The CA refused what this spec makes: only a new spec (which
            // wakes this controller) can change its answer.
            return Ok(None);
        } else {
            let wait = ctx
                .settings
                .backoff
                .after_failure(attempts.max(1) as u32, None);
            let due = failed_at.0.as_second() + wait.as_secs() as i64;
            if now.as_second() < due {
                return Ok(Some(Duration::from_secs((due - now.as_second()) as u64)));
            }
        }
    }
    // Whether the Secret may be written is decided before anything is ordered.
    if let Some(secret) = &seen.secret
        && let Some(message) = refused(ctx, cert, secret).await?
    {
        return super::status::record_failure(ctx, cert, Time(now), message).await;
    }
    let current = seen.secret_view();
    match evaluate(
        cert,
        current.as_ref(),
        seen.current_request.as_ref(),
        seen.suggestion.as_ref(),
        now.as_second(),
    ) {
        Some(t) => {
            let existing = cert
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let conds = conditions::set(
                &existing,
                "Issuing",
                ConditionStatus::True,
                t.reason,
                &t.message,
                cert.meta().generation,
                now,
            );
            let issuing = conds
                .into_iter()
                .filter(|c| c.type_ == "Issuing")
                .collect::<Vec<_>>();
            apply_status(ctx, cert, TRIGGER, json!({"conditions": issuing})).await?;
            publish(ctx, TRIGGER, cert, EventType::Normal, "Issuing", t.message);
            Ok(None)
        }
        None => {
            // Healthy: look again at the renewal time.
            let leaf = current
                .as_ref()
                .and_then(|v| v.data.get("tls.crt"))
                .and_then(|c| parse_chain(c).ok());
            // Healthy: look again at the renewal time, or when the CA's
            // renewal information is due to be asked again.
            // Disabled renewal: look again at expiry.
            let wait = leaf.map(|l| {
                let at = scheduled(cert, l.not_before, l.not_after, seen.suggestion.as_ref())
                    .at
                    .unwrap_or(l.not_after + 1);
                let wait = Duration::from_secs((at - now.as_second()).max(1) as u64);
                seen.ask_ca_again.map_or(wait, |again| wait.min(again))
            });
            Ok(wait)
        }
    }
}

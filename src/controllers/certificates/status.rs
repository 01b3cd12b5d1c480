//! What the Certificate controllers write and share: the error of a
//! pass, the status apply under each role's field manager, the events
//! users know from cert-manager, and whether an issuance is under way.

use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::Again;
use super::state::Ctx;
use crate::acme::errors::waits_for_spec_change;
use crate::api::Certificate;
use crate::api::meta::ConditionStatus;
use crate::runtime::conditions;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {0}: {1}")]
    Get(String, #[source] kube::Error),
    #[error("reading Secret {0}: {1}")]
    GetSecret(String, #[source] kube::Error),
    #[error("writing Secret {0}: {1}")]
    WriteSecret(String, #[source] kube::Error),
    #[error("writing the Certificate's status: {0}")]
    WriteStatus(#[source] kube::Error),
    #[error(transparent)]
    Panicked(#[from] crate::runtime::reconcile_error::Panicked),
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Get(..) => "Get",
            Self::GetSecret(..) => "GetSecret",
            Self::WriteSecret(..) => "WriteSecret",
            Self::WriteStatus(_) => "WriteStatus",
            Self::Panicked(_) => "Panicked",
        }
    }
}

/// The field manager of the Secret (issuing and post-issuance write it
/// under one name, as cert-manager's issuing controller does) and the
/// source of their events.
pub const ISSUING: &str = "certwright-certificates-issuing";

/// Whether an issuance is under way (Issuing=True).
pub(crate) fn issuing(cert: &Certificate) -> bool {
    cert.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Issuing" && c.status == ConditionStatus::True)
        })
}

pub(crate) fn publish(
    ctx: &Ctx,
    controller: &'static str,
    cert: &Certificate,
    type_: EventType,
    reason: &str,
    note: String,
) {
    ctx.events
        .publish(controller, cert.object_ref(&()), type_, reason, note);
}

pub(crate) async fn apply_status(
    ctx: &Ctx,
    cert: &Certificate,
    manager: &str,
    status: serde_json::Value,
) -> Result<(), Error> {
    let api: Api<Certificate> =
        Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
    let written = crate::runtime::status::apply_returning(&api, &cert.name_any(), manager, &status)
        .await
        .map_err(Error::WriteStatus)?;
    note_written(ctx, &written);
    Ok(())
}

/// Remembers the resourceVersion a status write produced, so the next
/// pass can tell whether its cached Certificate predates it.
pub(crate) fn note_written(ctx: &Ctx, written: &Certificate) {
    ctx.wrote(
        &written.uid().unwrap_or_default(),
        written.resource_version(),
    );
}

/// Records a failure that happened just now (see [`record_failure`]).
pub(crate) async fn record_failure_now(
    ctx: &Ctx,
    cert: &Certificate,
    message: String,
) -> Result<Again, Error> {
    record_failure(ctx, cert, Time(Timestamp::now()), message).await
}

pub(crate) async fn record_failure(
    ctx: &Ctx,
    cert: &Certificate,
    failed_at: Time,
    message: String,
) -> Result<Again, Error> {
    let status = cert.status.clone().unwrap_or_default();
    let attempts = status.failed_issuance_attempts.unwrap_or(0) + 1;
    let existing = status.conditions.clone().unwrap_or_default();
    let issuing_condition: Vec<_> = conditions::set(
        &existing,
        "Issuing",
        ConditionStatus::False,
        "Failed",
        &message,
        cert.meta().generation,
        Timestamp::now(),
    )
    .into_iter()
    .filter(|c| c.type_ == "Issuing")
    .collect();
    let wait = ctx.settings.backoff.after_failure(attempts as u32, None);
    super::status::apply_status(
        ctx,
        cert,
        ISSUING,
        json!({"revision": status.revision, "lastFailureTime": failed_at, "failedIssuanceAttempts": attempts,
               "conditions": issuing_condition}),
    )
    .await?;
    publish(
        ctx,
        ISSUING,
        cert,
        EventType::Warning,
        "Failed",
        if waits_for_spec_change(&message) {
            format!("{message}; attempt {attempts}")
        } else {
            format!("{message}; attempt {attempts}, next in {}s", wait.as_secs())
        },
    );
    Ok(None)
}

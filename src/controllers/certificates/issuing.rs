//! The issuing controller: when the CertificateRequest of the running
//! issuance is done, either writes the final Secret with its output formats
//! and keystores (`secret::write`: server-side apply, so what others added
//! survives; never a Secret another Certificate owns),
//! bumps the revision, ends the issuance and prunes old requests beyond
//! `revisionHistoryLimit`; or records the failure (lastFailureTime,
//! failedIssuanceAttempts) so the trigger backs off.

use std::time::Duration;

use super::Again;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::secret::write::{self as secret_writer, Material, Written};
use super::snapshot::Snapshot;
use super::state::Ctx;
use super::status::{Error, issuing, publish};
use crate::acme::errors::waits_for_spec_change;
use crate::api::certificate::PrivateKeyEncoding;
use crate::api::meta::ConditionStatus;
use crate::api::{Certificate, CertificateRequest};
use crate::pki::cert::parse_chain;
use crate::pki::keys::PrivateKey;
use crate::runtime::conditions;

pub use super::status::ISSUING;

/// When a Secret that could not be written yet (a keystore password
/// Secret missing) is tried again: the password Secret is not watched.
pub(crate) const NOT_YET_AGAIN: Duration = Duration::from_secs(30);

/// Default `revisionHistoryLimit`, as cert-manager's since v1.18.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 1;

/// The requests to delete: those owned by the Certificate beyond the
/// `limit` newest revisions (by their revision annotation).
pub fn prune(requests: &[(String, i64)], limit: i32) -> Vec<String> {
    let mut sorted: Vec<&(String, i64)> = requests.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.1));
    sorted
        .into_iter()
        .skip(limit.max(1) as usize)
        .map(|(name, _)| name.clone())
        .collect()
}

fn request_condition<'a>(
    cr: &'a CertificateRequest,
    type_: &str,
) -> Option<&'a crate::api::certificate_request::CertificateRequestCondition> {
    cr.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Ends the issuance in one write, so no controller sees the new revision
/// while Issuing is still True: sets the revision, removes the Issuing
/// condition (checking it is still the one we saw, so a new trigger is
/// never lost) and the failure record. When the CA issued something that
/// does not serve the spec (`mismatch` says how), the Issuing condition
/// records a failure instead, so a re-issuance for it waits out the
/// failure backoff: whatever a CA does, certwright never loops on it.
async fn end_issuance(
    ctx: &Ctx,
    cert: &Certificate,
    revision: i64,
    mismatch: Option<&str>,
) -> Result<(), Error> {
    let status = cert.status.clone().unwrap_or_default();
    let conditions = status.conditions.clone().unwrap_or_default();
    let mut ops = vec![json!({"op": "add", "path": "/status/revision", "value": revision})];
    if let Some(index) = conditions.iter().position(|c| c.type_ == "Issuing") {
        let path = format!("/status/conditions/{index}");
        ops.push(json!({"op": "test", "path": format!("{path}/type"), "value": "Issuing"}));
        match mismatch {
            Some(message) => {
                let failed = conditions::set(
                    &conditions,
                    "Issuing",
                    ConditionStatus::False,
                    "Failed",
                    message,
                    cert.meta().generation,
                    Timestamp::now(),
                );
                let condition = failed.iter().find(|c| c.type_ == "Issuing");
                ops.push(json!({"op": "replace", "path": path, "value": condition}));
            }
            None => ops.push(json!({"op": "remove", "path": path})),
        }
    }
    if mismatch.is_some() {
        let attempts = status.failed_issuance_attempts.unwrap_or(0) + 1;
        ops.push(json!({"op": "add", "path": "/status/lastFailureTime", "value": Time(Timestamp::now())}));
        ops.push(json!({"op": "add", "path": "/status/failedIssuanceAttempts", "value": attempts}));
    } else {
        if status.last_failure_time.is_some() {
            ops.push(json!({"op": "remove", "path": "/status/lastFailureTime"}));
        }
        if status.failed_issuance_attempts.is_some() {
            ops.push(json!({"op": "remove", "path": "/status/failedIssuanceAttempts"}));
        }
    }
    let patch: json_patch::Patch = serde_json::from_value(json!(ops))
        .map_err(|e| Error::WriteStatus(kube::Error::SerdeError(e)))?;
    let api: Api<Certificate> =
        Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
    let written = api
        .patch_status(
            &cert.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
        .map_err(Error::WriteStatus)?;
    super::status::note_written(ctx, &written);
    Ok(())
}

pub(crate) async fn reconcile(
    cert: &Certificate,
    seen: &Snapshot,
    ctx: &Ctx,
) -> Result<Again, Error> {
    if !issuing(cert) || cert.meta().deletion_timestamp.is_some() {
        return Ok(None);
    }
    let status = cert.status.clone().unwrap_or_default();
    let Some(key_secret) = status.next_private_key_secret_name.clone() else {
        return Ok(None);
    };
    let revision = status.revision.unwrap_or(0) + 1;
    let Some(cr) = &seen.request else {
        return Ok(None);
    };
    if cr
        .annotations()
        .get("cert-manager.io/private-key-secret-name")
        != Some(&key_secret)
    {
        // The request manager is replacing it.
        return Ok(None);
    }
    let Some(ready) = request_condition(cr, "Ready") else {
        return Ok(None);
    };
    // A spec changed after the request was made: the request is the request
    // manager's to replace, neither written nor counted as a failure.
    let next_key = seen
        .next_key_pem()
        .and_then(|pem| PrivateKey::from_pem(pem).ok());
    if next_key
        .as_ref()
        .is_some_and(|key| !super::names::misfits(cr, cert, key).is_empty())
    {
        return Ok(None);
    }
    let issuing_since = cert
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Issuing"))
        .and_then(|c| c.last_transition_time.clone());
    match (ready.status, ready.reason.as_deref()) {
        (ConditionStatus::False, Some("Failed" | "Denied")) => {
            let failed_at = cr
                .status
                .as_ref()
                .and_then(|s| s.failure_time.clone())
                .unwrap_or(Time(Timestamp::now()));
            if issuing_since.is_some_and(|t| t.0 > failed_at.0) {
                // A failure from before this issuance began: the request
                // manager replaces that request.
                return Ok(None);
            }
            let said = ready.message.clone().unwrap_or_default();
            let message = if waits_for_spec_change(&said) {
                format!("The certificate request has failed to complete: {said}")
            } else {
                format!(
                    "The certificate request has failed to complete and will be retried: {said}"
                )
            };
            super::status::record_failure(ctx, cert, failed_at, message).await
        }
        (ConditionStatus::True, _) => {
            let chain = cr
                .status
                .as_ref()
                .and_then(|s| s.certificate.clone())
                .map(|b| b.0)
                .unwrap_or_default();
            let key = seen
                .next_key_pem()
                .and_then(|pem| PrivateKey::from_pem(pem).ok());
            let Some(key) = key else {
                return Ok(Some(Duration::from_secs(1)));
            };
            let leaf = match parse_chain(&chain) {
                Ok(l) => l,
                Err(e) => {
                    return super::status::record_failure_now(
                        ctx,
                        cert,
                        format!("The issued certificate cannot be parsed: {e}"),
                    )
                    .await;
                }
            };
            if key.public_key_info().ok().as_deref() != Some(leaf.public_key_info.as_slice()) {
                return super::status::record_failure_now(
                    ctx,
                    cert,
                    "The issued certificate does not match the private key".into(),
                )
                .await;
            }
            if let Some(secret) = &seen.secret
                && let Some(message) = super::secret::guard::refused(ctx, cert, secret).await?
            {
                return super::status::record_failure_now(ctx, cert, message).await;
            }
            let encoding = cert
                .spec
                .private_key
                .as_ref()
                .and_then(|k| k.encoding)
                .unwrap_or(PrivateKeyEncoding::Pkcs1);
            let key_pem = key.to_pem(encoding).map_err(|e| {
                Error::WriteSecret(
                    cert.spec.secret_name.clone(),
                    kube::Error::Service(e.to_string().into()),
                )
            })?;
            let ca = cr
                .status
                .as_ref()
                .and_then(|s| s.ca.clone())
                .map(|b| String::from_utf8_lossy(&b.0).into_owned());
            let chain_text = String::from_utf8_lossy(&chain).into_owned();
            // The account that ordered it: the issuer's now.
            let account = ctx
                .issuer_stores
                .account(&cert.namespace().unwrap_or_default(), &cert.spec.issuer_ref);
            let material = Material {
                chain_pem: &chain_text,
                key_pem: &key_pem,
                ca_pem: ca.as_deref(),
                leaf: &leaf,
                account: account.as_deref(),
            };
            match secret_writer::write(ctx, cert, seen.secret.as_ref(), material).await? {
                Written::Done => {}
                Written::NotYet { reason, message } => {
                    publish(ctx, ISSUING, cert, EventType::Warning, reason, message);
                    return Ok(Some(NOT_YET_AGAIN));
                }
                Written::Refused(message) => {
                    return super::status::record_failure_now(ctx, cert, message).await;
                }
            }
            let violations = super::names::violations(&cert.spec, &leaf);
            let mismatch = (!violations.is_empty()).then(|| {
                format!(
                    "The CA issued a certificate that does not serve the spec: [{}]; it is stored, and another attempt waits out the failure backoff",
                    violations.join(", ")
                )
            });
            end_issuance(ctx, cert, revision, mismatch.as_deref()).await?;
            if let Some(since) = &issuing_since {
                crate::metrics::ready_after(crate::metrics::since(&since.0));
            }
            publish(
                ctx,
                ISSUING,
                cert,
                EventType::Normal,
                "Issuing",
                "The certificate has been successfully issued".into(),
            );
            if let Some(message) = mismatch {
                publish(ctx, ISSUING, cert, EventType::Warning, "Mismatch", message);
            }
            let limit = cert
                .spec
                .revision_history_limit
                .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
            if revision > i64::from(limit.max(1)) {
                prune_requests(ctx, cert).await?;
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

async fn prune_requests(ctx: &Ctx, cert: &Certificate) -> Result<(), Error> {
    let ns = cert.namespace().unwrap_or_default();
    let requests: Api<CertificateRequest> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = cert.meta().uid.clone();
    // Their metadata only: a namespace's requests carry certificates, and
    // with a thousand renewing there a full list each would send them all.
    let listed = requests
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| Error::GetSecret(format!("{ns}/CertificateRequests"), e))?;
    let owned: Vec<(String, i64)> = listed
        .items
        .iter()
        .filter(|r| {
            r.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .filter_map(|r| {
            let rev = r
                .annotations()
                .get("cert-manager.io/certificate-revision")?
                .parse()
                .ok()?;
            Some((r.name_any(), rev))
        })
        .collect();
    let limit = cert
        .spec
        .revision_history_limit
        .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
    for name in prune(&owned, limit) {
        let _ = requests.delete(&name, &DeleteParams::background()).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_revisions() {
        let owned = vec![
            ("c-1".to_string(), 1),
            ("c-3".to_string(), 3),
            ("c-2".to_string(), 2),
        ];
        assert_eq!(prune(&owned, 1), vec!["c-2".to_string(), "c-1".to_string()]);
        assert_eq!(prune(&owned, 2), vec!["c-1".to_string()]);
        assert!(prune(&owned, 5).is_empty());
        assert_eq!(prune(&owned, 0).len(), 2, "a limit below one keeps one");
    }
}

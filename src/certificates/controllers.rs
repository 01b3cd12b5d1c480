//! The I/O side of the first two roles: the trigger (sets Issuing=True with
//! the reason an issuance is needed, or waits until the renewal time) and
//! the key manager (keeps the next private key in a temporary Secret
//! `<cert>-<random>` labelled `cert-manager.io/next-private-key=true`, owned
//! by the Certificate, and removes it when no issuance is under way). Both
//! publish the events users know from cert-manager.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Again;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::backoff;
use super::renewal::scheduled;
use super::secret::Refusal;
use super::snapshot::{Snapshot, key_pem};
use super::trigger::evaluate;
use crate::api::certificate::{PrivateKeyEncoding, RotationPolicy};
use crate::api::meta::ConditionStatus;
use crate::api::{Certificate, ClusterIssuer, Issuer};
use crate::conditions;
use crate::context::Context;
use crate::pki::cert::parse_chain;
use crate::pki::keys::{KeyError, KeySpec, PrivateKey};

pub const TRIGGER: &str = "certwright-certificates-trigger";
pub const KEY_MANAGER: &str = "certwright-certificates-key-manager";
/// Label of temporary private key Secrets.
pub const NEXT_KEY_LABEL: &str = "cert-manager.io/next-private-key";

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
    #[error("publishing an event: {0}")]
    Event(#[source] kube::Error),
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Get(..) => "Get",
            Self::GetSecret(..) => "GetSecret",
            Self::WriteSecret(..) => "WriteSecret",
            Self::WriteStatus(_) => "WriteStatus",
            Self::Event(_) => "Event",
        }
    }
}

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

pub(crate) async fn publish(
    ctx: &Context,
    controller: &str,
    cert: &Certificate,
    type_: EventType,
    reason: &str,
    note: String,
) -> Result<(), Error> {
    crate::events::publish(
        &ctx.client,
        controller,
        &cert.object_ref(&()),
        type_,
        reason,
        note,
    )
    .await
    .map_err(Error::Event)
}

pub(crate) async fn apply_status(
    ctx: &Context,
    cert: &Certificate,
    manager: &str,
    status: serde_json::Value,
) -> Result<(), Error> {
    let api: Api<Certificate> =
        Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
    let written = crate::status::apply_returning(&api, &cert.name_any(), manager, &status)
        .await
        .map_err(Error::WriteStatus)?;
    note_written(ctx, &written);
    Ok(())
}

/// Remembers the resourceVersion a status write produced, so the next
/// pass can tell whether its cached Certificate predates it.
pub(crate) fn note_written(ctx: &Context, written: &Certificate) {
    ctx.wrote(
        &written.uid().unwrap_or_default(),
        written.resource_version(),
    );
}

/// Forgets earlier failures (the spec changed): a merge patch, as the
/// failure record belongs to the issuing controller's apply.
async fn reset_failures(ctx: &Context, cert: &Certificate) -> Result<(), Error> {
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

pub(crate) async fn trigger(
    cert: &Certificate,
    seen: &Snapshot,
    ctx: &Context,
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
        let failed_generation = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Issuing" && c.reason.as_deref() == Some("Failed"))
            .and_then(|c| c.observed_generation);
        if backoff::spec_changed_since(failed_generation, cert.meta().generation) {
            reset_failures(ctx, cert).await?;
        } else {
            let wait = ctx.backoff.after_failure(attempts.max(1) as u32, None);
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
        return super::issuing::record_failure(ctx, cert, Time(now), message).await;
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
            publish(ctx, TRIGGER, cert, EventType::Normal, "Issuing", t.message).await?;
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

fn owned_by(secret: &Secret, cert: &Certificate) -> bool {
    let uid = cert.meta().uid.as_deref();
    secret
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| Some(r.uid.as_str()) == uid))
}

/// Whether `pem` is a private key of the kind the Certificate asks for.
fn usable_key(cert: &Certificate, pem: &[u8]) -> bool {
    let wanted = KeySpec::from_spec(cert.spec.private_key.as_ref()).ok();
    PrivateKey::from_pem(pem)
        .ok()
        .is_some_and(|k| wanted.is_some_and(|w| w.kind == k.kind))
}

pub(crate) async fn key_manager(
    cert: &Certificate,
    seen: &Snapshot,
    ctx: &Context,
) -> Result<Again, Error> {
    let ns = cert.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let recorded = cert
        .status
        .as_ref()
        .and_then(|s| s.next_private_key_secret_name.clone());
    let in_place = seen
        .next_key
        .as_ref()
        .is_some_and(|s| owned_by(s, cert) && key_pem(s).is_some_and(|pem| usable_key(cert, pem)));
    match (&recorded, issuing(cert)) {
        // Nothing under way and nothing left over: no need to look.
        (None, false) => return Ok(None),
        // The key of the running issuance is in place.
        (Some(_), true) if in_place => return Ok(None),
        _ => {}
    }
    let listed = secrets
        .list(&ListParams::default().labels(&format!("{NEXT_KEY_LABEL}=true")))
        .await
        .map_err(|e| Error::GetSecret(format!("{ns}/*"), e))?;
    let mine: Vec<Secret> = listed
        .items
        .into_iter()
        .filter(|s| owned_by(s, cert))
        .collect();
    let named = cert
        .status
        .as_ref()
        .and_then(|s| s.next_private_key_secret_name.clone());
    if !issuing(cert) {
        for s in &mine {
            let _ = secrets
                .delete(&s.name_any(), &DeleteParams::default())
                .await;
        }
        if named.is_some() {
            apply_status(ctx, cert, KEY_MANAGER, json!({})).await?;
        }
        return Ok(None);
    }
    let usable = |s: &Secret| key_pem(s).is_some_and(|pem| usable_key(cert, pem));
    // Keep the Secret the status names, else adopt one left by a crash.
    let keep = mine
        .iter()
        .find(|s| Some(s.name_any()) == named && usable(s))
        .or_else(|| mine.iter().find(|s| usable(s)))
        .cloned();
    for s in mine
        .iter()
        .filter(|s| Some(s.name_any()) != keep.as_ref().map(|k| k.name_any()))
    {
        let _ = secrets
            .delete(&s.name_any(), &DeleteParams::default())
            .await;
    }
    let secret_name = match keep {
        Some(s) => s.name_any(),
        None => {
            let spec = match KeySpec::from_spec(cert.spec.private_key.as_ref()) {
                Ok(spec) => spec,
                Err(e) => {
                    let message = format!("The private key spec cannot be used: {e}");
                    return super::issuing::record_failure_now(ctx, cert, message).await;
                }
            };
            let reuse = if cert
                .spec
                .private_key
                .as_ref()
                .and_then(|k| k.rotation_policy)
                == Some(RotationPolicy::Never)
            {
                seen.current_key_pem()
                    .and_then(|pem| PrivateKey::from_pem(pem).ok())
                    .filter(|k| k.kind == spec.kind)
            } else {
                None
            };
            let reused = reuse.is_some();
            let key = match reuse {
                Some(k) => k,
                None => {
                    // Off the runtime: an RSA 8192 key takes seconds.
                    let kind = spec.kind;
                    let generated = tokio::task::spawn_blocking(move || {
                        crate::metrics::timed("key_generated", || PrivateKey::generate(kind))
                    })
                    .await
                    .unwrap_or_else(|e| Err(KeyError::Generate(e.to_string())));
                    match generated {
                        Ok(k) => k,
                        Err(e) => {
                            let message = format!("No private key can be generated: {e}");
                            return super::issuing::record_failure_now(ctx, cert, message).await;
                        }
                    }
                }
            };
            let pem = key.to_pem(PrivateKeyEncoding::Pkcs8).unwrap_or_default();
            let owner = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "name": cert.name_any(),
                "uid": cert.meta().uid, "controller": true, "blockOwnerDeletion": true});
            let temp: Secret = serde_json::from_value(json!({
                "metadata": {"generateName": format!("{}-", cert.name_any()), "namespace": ns,
                    "labels": {NEXT_KEY_LABEL: "true"}, "ownerReferences": [owner]},
                "data": BTreeMap::from([("tls.key".to_string(), ByteString(pem.into_bytes()))]),
            }))
            .map_err(|e| {
                Error::WriteSecret(
                    format!("{ns}/{}-*", cert.name_any()),
                    kube::Error::SerdeError(e),
                )
            })?;
            let created = secrets
                .create(&PostParams::default(), &temp)
                .await
                .map_err(|e| Error::WriteSecret(format!("{ns}/{}-*", cert.name_any()), e))?;
            let name = created.name_any();
            // As cert-manager's key manager words them.
            let (reason, note) = if reused {
                (
                    "Reused",
                    format!(
                        "Reusing private key stored in existing Secret resource {:?}",
                        cert.spec.secret_name
                    ),
                )
            } else {
                (
                    "Generated",
                    format!("Stored new private key in temporary Secret resource {name:?}"),
                )
            };
            publish(ctx, KEY_MANAGER, cert, EventType::Normal, reason, note).await?;
            name
        }
    };
    if named.as_deref() != Some(secret_name.as_str()) {
        apply_status(
            ctx,
            cert,
            KEY_MANAGER,
            json!({"nextPrivateKeySecretName": secret_name}),
        )
        .await?;
    }
    Ok(None)
}

/// Why `secret` must not be written for `cert`, as the message for its
/// condition, or None. Decided before anything is ordered: refusing after
/// a full ACME order cost a certificate per attempt.
///
/// - It belongs to another, existing Certificate (a Secret whose
///   Certificate is gone is free to adopt: a renamed Certificate keeps its
///   secretName).
/// - It is not of type kubernetes.io/tls (the type cannot change).
/// - It holds data certwright does not write, and was not handed over
///   with the `cert-manager.io/certificate-name` annotation.
/// - It is the ACME account key of an Issuer: never, whatever it says.
pub(crate) async fn refused(
    ctx: &Context,
    cert: &Certificate,
    secret: &Secret,
) -> Result<Option<String>, Error> {
    let ns = cert.namespace().unwrap_or_default();
    let name = &cert.spec.secret_name;
    let at = format!("Secret {ns}/{name}");
    if let Some(other) = super::secret::owned_by_other(secret.annotations(), &cert.name_any()) {
        let api: Api<Certificate> = Api::namespaced(ctx.client.clone(), &ns);
        let exists = api
            .get_opt(&other)
            .await
            .map_err(|e| Error::Get(format!("Certificate {ns}/{other}"), e))?
            .is_some();
        if exists {
            return Ok(Some(format!(
                "{at} belongs to Certificate {other:?}; certwright will not overwrite it: give this Certificate another secretName"
            )));
        }
    }
    let keys = secret.data.iter().flatten().map(|(k, _)| k);
    match super::secret::refusal(
        secret.type_.as_deref(),
        secret.annotations(),
        keys,
        &cert.name_any(),
    ) {
        Some(Refusal::WrongType(type_)) => {
            return Ok(Some(format!(
                "{at} is of type {type_:?}, not kubernetes.io/tls, and a Secret's type cannot change; certwright will not replace it: delete it, or give this Certificate another secretName"
            )));
        }
        Some(Refusal::ForeignData(keys)) => {
            return Ok(Some(format!(
                "{at} holds data certwright does not write ({}); certwright will not overwrite it: give this Certificate another secretName, or hand the Secret over with `kubectl annotate secret -n {ns} {name} cert-manager.io/certificate-name={}`",
                keys.join(", "),
                cert.name_any()
            )));
        }
        None => {}
    }
    if secret
        .annotations()
        .contains_key(super::secret::CERTIFICATE_NAME)
    {
        // Written for a Certificate: not an account key.
        return Ok(None);
    }
    if let Some(issuer) = account_key_of(ctx, &ns, name).await? {
        return Ok(Some(format!(
            "{at} is the ACME account key of {issuer}; certwright will never overwrite it: give this Certificate another secretName"
        )));
    }
    Ok(None)
}

/// The Issuer (or ClusterIssuer) keeping its ACME account key in Secret
/// `ns/name`, if any.
async fn account_key_of(ctx: &Context, ns: &str, name: &str) -> Result<Option<String>, Error> {
    let uses = |acme: Option<&crate::api::AcmeIssuer>| {
        acme.is_some_and(|a| a.private_key_secret_ref.name == name)
    };
    let issuers = Api::<Issuer>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::Get(format!("Issuers in {ns}"), e))?;
    if let Some(i) = issuers
        .items
        .iter()
        .find(|i| uses(i.spec.config.acme.as_ref()))
    {
        return Ok(Some(format!("Issuer {:?}", i.name_any())));
    }
    if ns == ctx.cluster_resource_namespace {
        let cluster = Api::<ClusterIssuer>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::Get("ClusterIssuers".into(), e))?;
        if let Some(i) = cluster
            .items
            .iter()
            .find(|i| uses(i.spec.config.acme.as_ref()))
        {
            return Ok(Some(format!("ClusterIssuer {:?}", i.name_any())));
        }
    }
    Ok(None)
}

/// The Certificate a Secret belongs to, by its certificate-name
/// annotation (it is not owned by the Certificate unless owner references
/// are on).
pub(crate) fn certificate_of(
    secret: kube::core::PartialObjectMeta<Secret>,
) -> Option<ObjectRef<Certificate>> {
    let ns = secret.metadata.namespace.clone()?;
    let name = secret
        .metadata
        .annotations
        .as_ref()?
        .get("cert-manager.io/certificate-name")?
        .clone();
    Some(ObjectRef::new(&name).within(&ns))
}

//! The request manager: while a Certificate is Issuing and its next private
//! key exists, keep exactly one CertificateRequest `<cert>-<revision+1>` for
//! the current spec, signed by that key, owned by the Certificate and
//! annotated as cert-manager does; replace it when the spec or key no
//! longer match; publish Requested.

use std::time::Duration;

use super::Again;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::snapshot::Snapshot;
use super::state::Ctx;
use super::status::{Error, issuing, publish};
use crate::api::{Certificate, CertificateRequest, CertificateRequestSpec};
use crate::naming;
use crate::pki::csr;
use crate::pki::keys::PrivateKey;

pub const REQUEST_MANAGER: &str = "certwright-certificates-request-manager";

/// The CertificateRequest spec a Certificate asks for, given its CSR PEM.
pub fn request_spec(cert: &Certificate, csr_pem: &str) -> CertificateRequestSpec {
    CertificateRequestSpec {
        duration: cert.spec.duration.clone(),
        issuer_ref: cert.spec.issuer_ref.clone(),
        request: ByteString(csr_pem.as_bytes().to_vec()),
        is_ca: cert.spec.is_ca,
        usages: cert.spec.usages.clone(),
        ..Default::default()
    }
}

/// The RFC 9773 identifier of the certificate this issuance replaces: the
/// one in the Secret, when it was issued for this Certificate by the same
/// issuer and account (a CA only knows its own certificates, and lets only
/// the account that ordered one name it) for at least one of the
/// names asked for now (CAs refuse a replacement sharing none, as pebble's
/// "at least one identifier in the new order and existing order must
/// match": after every name changed it is a new certificate).
fn replaced(cert: &Certificate, seen: &Snapshot, account: Option<&str>) -> Option<String> {
    let view = seen.secret_view()?;
    let annotation = |k: &str| view.annotations.get(k).map(String::as_str);
    // Only the account that ordered it may name it (a new account key,
    // say, is another account).
    if let (Some(ordered_by), Some(now)) = (annotation(super::renewal::ari::ACCOUNT), account)
        && ordered_by != now
    {
        return None;
    }
    let issuer = &cert.spec.issuer_ref;
    let same = annotation("cert-manager.io/certificate-name") == cert.metadata.name.as_deref()
        && annotation("cert-manager.io/issuer-name") == Some(issuer.name.as_str())
        && super::secret::guard::same_value(
            "cert-manager.io/issuer-kind",
            annotation("cert-manager.io/issuer-kind"),
            Some(issuer.kind.as_deref().unwrap_or("")),
        );
    if !same {
        return None;
    }
    let leaf = crate::pki::cert::parse_chain(view.data.get("tls.crt")?).ok()?;
    let common_name = crate::pki::subject::common_name(&cert.spec);
    let wanted: Vec<&String> = cert
        .spec
        .dns_names
        .iter()
        .chain(cert.spec.ip_addresses.iter())
        .flatten()
        .chain(common_name.iter())
        .collect();
    let shared = leaf
        .dns_names
        .iter()
        .chain(&leaf.ip_addresses)
        .any(|n| wanted.iter().any(|w| w.eq_ignore_ascii_case(n)));
    if !shared {
        return None;
    }
    leaf.ari_id
}

/// Whether the request failed before the current issuance began (a retry
/// after the backoff): it is replaced by a fresh one of the same name.
fn failed_before_this_issuance(existing: &CertificateRequest, cert: &Certificate) -> bool {
    let failed_at = existing
        .status
        .as_ref()
        .and_then(|s| s.failure_time.as_ref());
    let issuing_since = cert
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Issuing"))
        .and_then(|c| c.last_transition_time.as_ref());
    matches!((failed_at, issuing_since), (Some(f), Some(i)) if f.0 < i.0)
}

/// The reason of the Certificate's Issuing condition.
fn issuing_reason(cert: &Certificate) -> Option<&str> {
    cert.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Issuing")?
        .reason
        .as_deref()
}

/// The names a CA may hold back for the Certificate.
pub(crate) fn held_names(cert: &Certificate) -> Vec<String> {
    let spec = &cert.spec;
    spec.dns_names
        .iter()
        .flatten()
        .chain(spec.ip_addresses.iter().flatten())
        .chain(spec.common_name.iter())
        .cloned()
        .collect()
}

pub(crate) async fn reconcile(
    cert: &Certificate,
    seen: &Snapshot,
    ctx: &Ctx,
) -> Result<Again, Error> {
    let Some(key_secret) = cert
        .status
        .as_ref()
        .and_then(|s| s.next_private_key_secret_name.clone())
    else {
        return Ok(None);
    };
    if !issuing(cert) {
        return Ok(None);
    }
    let ns = cert.namespace().unwrap_or_default();
    let Some(key) = seen
        .next_key_pem()
        .and_then(|p| PrivateKey::from_pem(p).ok())
    else {
        // The key manager has not written it yet, or will replace it.
        return Ok(Some(Duration::from_secs(1)));
    };
    let revision = cert.status.as_ref().and_then(|s| s.revision).unwrap_or(0) + 1;
    let name = naming::certificate_request(&cert.name_any(), revision);
    let requests: Api<CertificateRequest> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(existing) = &seen.request {
        let misfits = super::names::misfits(existing, cert, &key);
        if misfits.is_empty() && !failed_before_this_issuance(existing, cert) {
            return Ok(None);
        }
        if !misfits.is_empty() {
            tracing::info!(request = %format!("{ns}/{name}"), fields = ?misfits,
                "replacing the CertificateRequest: it no longer fits the Certificate's spec or next key");
        }
        let _ = requests.delete(&name, &DeleteParams::default()).await;
        return Ok(Some(Duration::from_millis(200)));
    }
    let csr = match csr::build(&cert.spec, &key) {
        Ok(c) => c,
        Err(e) => {
            // A spec the schema let through but no CSR can carry: a failed
            // issuance (condition, event, backoff), not an event alone.
            let message = format!("The Certificate's spec cannot be turned into a CSR: {e}");
            return super::status::record_failure_now(ctx, cert, message).await;
        }
    };
    if issuing_reason(cert) == Some(crate::api::certificate::MANUALLY_TRIGGERED) {
        // `certwright renew` after a pause: the user may have unpaused.
        ctx.holds.release(&held_names(cert));
    }
    let owner = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "name": cert.name_any(), "uid": cert.meta().uid, "controller": true, "blockOwnerDeletion": true});
    let mut annotations = copied_annotations(cert.annotations());
    annotations.extend([
        (
            "cert-manager.io/certificate-name".to_string(),
            cert.name_any(),
        ),
        (
            "cert-manager.io/certificate-revision".to_string(),
            revision.to_string(),
        ),
        (
            "cert-manager.io/private-key-secret-name".to_string(),
            key_secret.to_string(),
        ),
    ]);
    let mut request: CertificateRequest = serde_json::from_value(json!({
        "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner],
            "annotations": annotations, "labels": cert.labels()},
        "spec": {"issuerRef": {"name": ""}, "request": ""},
    }))
    .map_err(|e| Error::WriteSecret(format!("{ns}/{name}"), kube::Error::SerdeError(e)))?;
    let account = ctx.issuer_stores.account(&ns, &cert.spec.issuer_ref);
    if let Some(id) = replaced(cert, seen, account.as_deref()) {
        request
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(super::renewal::ari::REPLACES.to_string(), id);
        // Once the CA's window has begun (Let's Encrypt's exemption asks
        // no more: past its end the renewal is only more due).
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        if seen.suggestion.as_ref().is_some_and(|s| s.start <= now) {
            request
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(super::renewal::ari::IN_WINDOW.to_string(), "true".into());
        }
    }
    request.spec = request_spec(cert, &csr.pem);
    requests
        .create(&PostParams::default(), &request)
        .await
        .map_err(|e| Error::WriteSecret(format!("{ns}/{name}"), e))?;
    publish(
        ctx,
        REQUEST_MANAGER,
        cert,
        EventType::Normal,
        "Requested",
        format!("Created new CertificateRequest resource {name:?}"),
    );
    Ok(None)
}

/// The Certificate's annotations its requests carry (and their Orders
/// after them, where the HTTP-01 overrides are read): all but those of
/// kubectl, Flux and Argo CD, as cert-manager's default
/// `--copied-annotation-prefixes` has it.
fn copied_annotations(
    annotations: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    const NOT_COPIED: [&str; 3] = [
        "kubectl.kubernetes.io/",
        "fluxcd.io/",
        "argocd.argoproj.io/",
    ];
    annotations
        .iter()
        .filter(|(k, _)| !NOT_COPIED.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

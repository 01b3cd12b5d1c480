//! The key manager: keeps the next private key in a temporary Secret
//! `<cert>-<random>` labelled `cert-manager.io/next-private-key=true`,
//! owned by the Certificate, and removes it when no issuance is under way.

use std::collections::BTreeMap;

use super::Again;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::snapshot::{Snapshot, key_pem};
use super::state::Ctx;
use crate::api::Certificate;
use crate::api::certificate::{PrivateKeyEncoding, RotationPolicy};
use crate::pki::keys::{KeyError, KeyKind, KeySpec, PrivateKey};

use super::status::{Error, apply_status, issuing, publish};

pub const KEY_MANAGER: &str = "certwright-certificates-key-manager";
/// The label of the temporary Secret holding the next key.
pub const NEXT_KEY_LABEL: &str = "cert-manager.io/next-private-key";

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

/// The Certificate's temporary key Secrets from the cache, when it can
/// be trusted: it has listed them all, and holds the one the status
/// records. (Listing the namespace instead costs the API server every
/// temporary key there: a thousand Certificates issuing at once in one
/// namespace made that a million Secrets sent.) A Secret created a moment
/// ago and missing from it yet is found at the next issuance's end.
fn cached_keys(ctx: &Ctx, cert: &Certificate, recorded: Option<&str>) -> Option<Vec<Secret>> {
    let ns = cert.namespace();
    let mine: Vec<Secret> = ctx
        .state
        .next_keys()?
        .state()
        .into_iter()
        .filter(|s| s.namespace() == ns && owned_by(s, cert))
        .map(|s| Secret::clone(&s))
        .collect();
    recorded
        .is_none_or(|name| mine.iter().any(|s| s.name_any() == name))
        .then_some(mine)
}

pub(crate) async fn reconcile(
    cert: &Certificate,
    seen: &Snapshot,
    ctx: &Ctx,
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
    let mine = match cached_keys(ctx, cert, recorded.as_deref()) {
        Some(mine) => mine,
        None => secrets
            .list(&ListParams::default().labels(&format!("{NEXT_KEY_LABEL}=true")))
            .await
            .map_err(|e| Error::GetSecret(format!("{ns}/*"), e))?
            .items
            .into_iter()
            .filter(|s| owned_by(s, cert))
            .collect(),
    };
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
            // Whoever set it (cert-manager's Update, before a migration).
            let api: Api<Certificate> = Api::namespaced(ctx.client.clone(), &ns);
            let written = crate::runtime::status::clear(
                &api,
                &cert.name_any(),
                KEY_MANAGER,
                &["nextPrivateKeySecretName"],
            )
            .await
            .map_err(Error::WriteStatus)?;
            super::status::note_written(ctx, &written);
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
                    return super::status::record_failure_now(ctx, cert, message).await;
                }
            };
            let never = cert
                .spec
                .private_key
                .as_ref()
                .and_then(|k| k.rotation_policy)
                == Some(RotationPolicy::Never);
            let current = seen
                .current_key_pem()
                .and_then(|pem| PrivateKey::from_pem(pem).ok());
            // Never means the key in the Secret, or none at all: one that
            // no longer fits the spec is refused, not quietly replaced.
            if let (true, Some(k)) = (never, &current)
                && k.kind != spec.kind
            {
                let message = never_rotated(&cert.spec.secret_name, k.kind, spec.kind);
                return super::status::record_failure_now(ctx, cert, message).await;
            }
            let reuse = current.filter(|_| never);
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
                            return super::status::record_failure_now(ctx, cert, message).await;
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
            publish(ctx, KEY_MANAGER, cert, EventType::Normal, reason, note);
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

/// Why a key kept under `rotationPolicy: Never` cannot serve the spec.
fn never_rotated(secret: &str, have: KeyKind, want: KeyKind) -> String {
    let words = |k: KeyKind| match k {
        KeyKind::Rsa(bits) => format!("RSA {bits}"),
        KeyKind::Ecdsa(bits) => format!("ECDSA P-{bits}"),
        KeyKind::Ed25519 => "Ed25519".to_string(),
    };
    format!(
        "rotationPolicy is Never, but the private key in Secret {secret:?} is {} and the spec asks for {}: set rotationPolicy: Always (or remove the Secret's tls.key) to let a new key be generated, or ask for the key the Secret holds",
        words(have),
        words(want)
    )
}

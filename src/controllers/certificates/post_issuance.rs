//! The post-issuance check: with no issuance under way, the Secret follows
//! the spec. When a format or keystore is added or removed, or one is
//! missing or out of date (one cert-manager left, say), or its metadata
//! drifted (a `secretTemplate` edit, an annotation of ours removed, the
//! owner reference toggled), the Secret is written again from its own key
//! and chain, without issuing, as cert-manager's post-issuance policies do.
//! Never for a changed issuerRef: the issuer annotations change only with
//! a certificate from the new issuer.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::Again;
use super::issuing::{ISSUING, NOT_YET_AGAIN};
use super::secret::write::{self as secret_writer, Material, Written};
use super::secret::{self, CERTIFICATE_NAME};
use super::snapshot::Snapshot;
use super::state::Ctx;
use super::status::{Error, issuing, publish};
use crate::api::Certificate;
use crate::pki::cert::parse_chain;
use crate::pki::keys::PrivateKey;

pub(crate) async fn reconcile(
    cert: &Certificate,
    seen: &Snapshot,
    ctx: &Ctx,
) -> Result<Again, Error> {
    if issuing(cert) || cert.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let Some(existing) = &seen.secret else {
        return Ok(None);
    };
    // Only a Secret written for this Certificate, by certwright or
    // cert-manager; anything else is the trigger's to judge.
    if existing.annotations().get(CERTIFICATE_NAME) != Some(&cert.name_any())
        || existing.type_.as_deref() != Some("kubernetes.io/tls")
    {
        return Ok(None);
    }
    // The issuer annotations name whoever issued the certificate held: a
    // changed issuerRef is the trigger's to issue for (IncorrectIssuer),
    // never a rewrite here, which would hide it (and later send the old
    // account's certificate as `replaces` to the new one).
    if super::policies::other_issuer(cert, existing.annotations()).is_some() {
        return Ok(None);
    }
    let data: BTreeMap<String, Vec<u8>> = existing
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    // A chain that does not parse, or a key that does not match it (checked
    // below), is re-issued by the trigger: nothing to rewrite from.
    let chain = data.get("tls.crt").cloned().unwrap_or_default();
    let key_pem = String::from_utf8_lossy(data.get("tls.key").map_or(&[][..], |k| k)).into_owned();
    let Ok(leaf) = parse_chain(&chain) else {
        return Ok(None);
    };
    let chain_pem = String::from_utf8_lossy(&chain).into_owned();
    let ca = data
        .get("ca.crt")
        .map(|c| String::from_utf8_lossy(c).into_owned());
    let material = Material {
        chain_pem: &chain_pem,
        key_pem: &key_pem,
        ca_pem: ca.as_deref(),
        leaf: &leaf,
        account: existing
            .annotations()
            .get(super::renewal::ari::ACCOUNT)
            .map(String::as_str),
    };
    let wanted = secret_writer::desired(ctx, cert, &material, &BTreeMap::new());
    let why = secret::outputs::outputs_drift(&cert.spec, &data)
        .or_else(|| secret::guard::metadata_drift(&wanted, existing, ISSUING));
    let Some(why) = why else {
        return Ok(None);
    };
    // Parsing the key is the costly part: only once there is something
    // to write, not on every pass of every Ready Certificate.
    let matches = PrivateKey::from_pem(key_pem.as_bytes())
        .ok()
        .and_then(|k| k.public_key_info().ok())
        .is_some_and(|spki| spki == leaf.public_key_info);
    if !matches {
        return Ok(None);
    }
    match secret_writer::write(ctx, cert, Some(existing), material).await? {
        Written::Done => {
            let note = format!(
                "Secret {} written again without issuing: {why}",
                cert.spec.secret_name
            );
            publish(ctx, ISSUING, cert, EventType::Normal, "SecretUpdated", note);
            Ok(None)
        }
        Written::NotYet { reason, message } => {
            publish(ctx, ISSUING, cert, EventType::Warning, reason, message);
            Ok(Some(NOT_YET_AGAIN))
        }
        Written::Refused(message) => {
            publish(
                ctx,
                ISSUING,
                cert,
                EventType::Warning,
                "SecretRefused",
                message,
            );
            Ok(None)
        }
    }
}

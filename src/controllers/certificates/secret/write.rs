//! Writing a Certificate's Secret, for the issuing controller and the
//! post-issuance check alike: the keystore passwords read from the spec or
//! the Secrets it names, the whole Secret applied as the issuing
//! controller (server-side apply, forced, so keys cert-manager's field
//! manager owned become ours), then the output keys no longer asked for
//! removed, whoever wrote them, so no stale keystore keeps an old
//! certificate.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::super::state::Ctx;
use super::super::status::Error;
use super::super::status::ISSUING;
use super::outputs::{self, Passwords};
use crate::api::Certificate;
use crate::api::meta::SecretKeySelector;
use crate::pki::cert::LeafInfo;

/// What the Secret is written from.
pub(crate) struct Material<'a> {
    pub chain_pem: &'a str,
    pub key_pem: &'a str,
    pub ca_pem: Option<&'a str>,
    pub leaf: &'a LeafInfo,
    /// The ACME account that ordered it, when known.
    pub account: Option<&'a str>,
}

pub(crate) enum Written {
    Done,
    /// Nothing was written: a keystore cannot be made yet (its password
    /// Secret is missing, say). A Warning with this reason and message;
    /// the caller looks again later.
    NotYet {
        reason: &'static str,
        message: String,
    },
    /// The API server refused the Secret for what it is (invalid,
    /// forbidden by policy or admission): retrying changes nothing.
    Refused(String),
}

/// The Secret to apply: [`super::build`], and the owner reference when
/// `--enable-certificate-owner-ref` is on.
pub(crate) fn desired(
    ctx: &Ctx,
    cert: &Certificate,
    material: &Material<'_>,
    outputs: &BTreeMap<String, Vec<u8>>,
) -> Value {
    let mut wanted = super::build(
        cert,
        material.chain_pem,
        material.key_pem,
        material.ca_pem,
        material.leaf,
        outputs,
    );
    if let Some(account) = material.account {
        wanted["metadata"]["annotations"][super::super::renewal::ari::ACCOUNT] = json!(account);
    }
    if ctx.settings.certificate_owner_ref {
        wanted["metadata"]["ownerReferences"] = json!([{"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "name": cert.name_any(), "uid": cert.meta().uid, "controller": true, "blockOwnerDeletion": true}]);
    }
    wanted
}

pub(crate) async fn write(
    ctx: &Ctx,
    cert: &Certificate,
    existing: Option<&Secret>,
    material: Material<'_>,
) -> Result<Written, Error> {
    let ns = cert.namespace().unwrap_or_default();
    let passwords = match passwords(ctx, cert).await? {
        Ok(p) => p,
        Err((reason, message)) => return Ok(Written::NotYet { reason, message }),
    };
    let outputs = match outputs::outputs(
        &cert.spec,
        material.key_pem,
        material.chain_pem,
        material.ca_pem,
        &passwords,
    ) {
        Ok(o) => o,
        Err(message) => {
            return Ok(Written::NotYet {
                reason: "KeystoreFailed",
                message: format!("The Secret's keystores cannot be written: {message}"),
            });
        }
    };
    let wanted = desired(ctx, cert, &material, &outputs);
    let written_keys: BTreeMap<String, k8s_openapi::ByteString> =
        serde_json::from_value(wanted["data"].clone()).unwrap_or_default();
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let name = &cert.spec.secret_name;
    let at = format!("{ns}/{name}");
    match api
        .patch(
            name,
            &PatchParams::apply(ISSUING).force(),
            &Patch::Apply(wanted),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => {
            return Ok(Written::Refused(format!(
                "The API server refused to write Secret {at}: {}",
                s.message
            )));
        }
        Err(e) => return Err(Error::WriteSecret(at, e)),
    }
    let existing_keys = existing.and_then(|s| s.data.as_ref());
    let stale = outputs::stale(
        existing_keys.into_iter().flatten().map(|(k, _)| k),
        &written_keys,
    );
    if !stale.is_empty() {
        let nulls: serde_json::Map<String, Value> =
            stale.iter().map(|k| (k.clone(), Value::Null)).collect();
        tracing::info!(secret = %at, keys = ?stale, "removing output keys the spec no longer asks for");
        api.patch(
            name,
            &PatchParams {
                field_manager: Some(ISSUING.into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"data": nulls})),
        )
        .await
        .map_err(|e| Error::WriteSecret(at, e))?;
    }
    Ok(Written::Done)
}

/// The keystore passwords, or the Warning's reason and message saying why
/// one cannot be read.
async fn passwords(
    ctx: &Ctx,
    cert: &Certificate,
) -> Result<Result<Passwords, (&'static str, String)>, Error> {
    let stores = cert.spec.keystores.as_ref();
    let pkcs12 = stores.and_then(|k| k.pkcs12.as_ref()).filter(|p| p.create);
    let jks = stores.and_then(|k| k.jks.as_ref()).filter(|j| j.create);
    let mut out = Passwords::default();
    let wanted = [
        (
            &mut out.pkcs12,
            "PKCS#12",
            pkcs12.map(|p| (&p.password, &p.password_secret_ref)),
        ),
        (
            &mut out.jks,
            "JKS",
            jks.map(|j| (&j.password, &j.password_secret_ref)),
        ),
    ];
    for (slot, kind, store) in wanted {
        let Some((literal, reference)) = store else {
            continue;
        };
        match password(ctx, cert, kind, literal.as_ref(), reference.as_ref()).await? {
            Ok(pw) => *slot = Some(pw),
            Err(problem) => return Ok(Err(problem)),
        }
    }
    Ok(Ok(out))
}

/// One keystore's password: the Secret reference first, as cert-manager.
async fn password(
    ctx: &Ctx,
    cert: &Certificate,
    kind: &str,
    literal: Option<&String>,
    reference: Option<&SecretKeySelector>,
) -> Result<Result<String, (&'static str, String)>, Error> {
    let ns = cert.namespace().unwrap_or_default();
    let failed = |m: String| Ok(Err(("KeystorePasswordInvalid", m)));
    match (reference.filter(|r| !r.name.is_empty()), literal) {
        (Some(r), _) => {
            let Some(key) = r.key.as_deref().filter(|k| !k.is_empty()) else {
                return failed(format!(
                    "The {kind} keystore's passwordSecretRef names Secret {:?} but no key in it: set passwordSecretRef.key",
                    r.name
                ));
            };
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
            let found = api
                .get_opt(&r.name)
                .await
                .map_err(|e| Error::GetSecret(format!("{ns}/{}", r.name), e))?;
            let Some(found) = found else {
                return Ok(Err((
                    "KeystorePasswordSecretNotFound",
                    format!(
                        "The {kind} keystore's password Secret {ns}/{} does not exist; the Secret is written once it does",
                        r.name
                    ),
                )));
            };
            match found
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .filter(|v| !v.0.is_empty())
            {
                Some(v) => match String::from_utf8(v.0.clone()) {
                    Ok(pw) => Ok(Ok(pw)),
                    Err(_) => failed(format!(
                        "The {kind} keystore's password in Secret {ns}/{} key {key:?} is not UTF-8 text",
                        r.name
                    )),
                },
                None => failed(format!(
                    "The {kind} keystore's password Secret {ns}/{} has no data under key {key:?}",
                    r.name
                )),
            }
        }
        (None, Some(pw)) if !pw.is_empty() => Ok(Ok(pw.clone())),
        (None, Some(_)) => failed(format!("The {kind} keystore's literal password is empty")),
        (None, None) => failed(format!(
            "The {kind} keystore has neither password nor passwordSecretRef: set one"
        )),
    }
}

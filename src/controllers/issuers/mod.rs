//! The Issuer and ClusterIssuer controller: registers (or finds) the ACME
//! account, keeping its key in `privateKeySecretRef` (generated when absent
//! unless `disableAccountKeyGeneration`), and reports condition Ready with a
//! reason a user can act on; `status.acme` records the account URL, the
//! email last registered and a hash of the key.

mod controller;
pub mod decide;
mod rollover;

pub use controller::run;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::acme::account::{self, AccountError};
use crate::acme::retry::{Kind, Next, Policy, Run, until};
use crate::api::acme::AcmeIssuerStatus;
use crate::api::meta::ConditionStatus;
use crate::api::{IssuerConfig, IssuerStatus};
use crate::runtime::conditions;
use crate::runtime::context::Context;
use decide::{Verdict, assess};

pub const CONTROLLER_NAME: &str = "certwright-issuers";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading Secret {0}: {1}")]
    GetSecret(String, #[source] kube::Error),
    #[error("writing Secret {0}: {1}")]
    WriteSecret(String, #[source] kube::Error),
    #[error("writing the issuer's status: {0}")]
    WriteStatus(#[source] kube::Error),
    #[error(transparent)]
    Panicked(#[from] crate::runtime::reconcile_error::Panicked),
}

impl Error {
    /// Bounded label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::GetSecret(..) => "GetSecret",
            Self::WriteSecret(..) => "WriteSecret",
            Self::WriteStatus(_) => "WriteStatus",
            Self::Panicked(_) => "Panicked",
        }
    }
}

/// An Issuer or ClusterIssuer, seen the same way.
struct Target<'a> {
    config: &'a IssuerConfig,
    status: Option<&'a IssuerStatus>,
    generation: Option<i64>,
    /// Namespace of the account key Secret.
    secret_namespace: String,
    /// The issuer, for events.
    object: k8s_openapi::api::core::v1::ObjectReference,
    uid: String,
}

fn key_hash(pem: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pem.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Writes the account key into its Secret (server-side apply: other keys
/// and metadata of the Secret are left alone).
async fn store_key(
    secrets: &Api<Secret>,
    name: &str,
    data_key: &str,
    pem: &str,
) -> Result<(), Error> {
    let data = BTreeMap::from([(data_key.to_string(), pem.to_string())]);
    apply_secret_data(secrets, name, CONTROLLER_NAME, data).await
}

/// Applies `data` to the Secret `name` as field manager `manager`: keys
/// it applied before and not now are removed, others' are left alone.
async fn apply_secret_data(
    secrets: &Api<Secret>,
    name: &str,
    manager: &str,
    data: BTreeMap<String, String>,
) -> Result<(), Error> {
    let ns = secrets.namespace().unwrap_or_default();
    let data: BTreeMap<String, ByteString> = data
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.into_bytes())))
        .collect();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
        "type": "Opaque", "data": data});
    secrets
        .patch(
            name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(secret),
        )
        .await
        .map_err(|e| Error::WriteSecret(format!("{ns}/{name}"), e))?;
    Ok(())
}

/// Works out the status an issuer should have, creating its account key
/// and registering its account on the way.
async fn evaluate(ctx: &Context, t: Target<'_>) -> Result<(Option<IssuerStatus>, Action), Error> {
    let (status, action) = assess_issuer(ctx, &t).await?;
    // Ready, or another reason than a failed registration: a run is over.
    if let Some(written) = &status
        && ready_message(written).is_none_or(|m| Run::parse(&m).is_none())
    {
        ctx.retries.forget(&t.uid);
    }
    Ok((status, action))
}

/// The Ready condition's message.
fn ready_message(status: &IssuerStatus) -> Option<String> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status != ConditionStatus::True)?
        .message
        .clone()
}

/// A registration the CA refused or could not be asked for: retried on
/// the CA retry policy, transient failures from 1 s and configuration
/// errors from a minute, never given up (an Issuer has nothing to fail);
/// the run is in the Ready condition's message, so a restarted controller
/// keeps its count and next try. A change of the spec or of the Secret
/// retries at once (see [`crate::acme::retries::Retries::same_inputs`]).
fn registration_failed(ctx: &Context, t: &Target<'_>, e: &AccountError) -> (String, Action) {
    use crate::acme::errors::{Verdict, classify};
    let kind = match e {
        AccountError::Acme(e) => match classify(e) {
            Verdict::Transient { .. } => Kind::Transient,
            _ => Kind::Config,
        },
        _ => Kind::Config,
    };
    let policy = Policy {
        limit: 0,
        ..ctx.settings.retry
    };
    let now = Timestamp::now();
    let previous = t.status.and_then(ready_message);
    let run = match ctx.retries.failed(
        &policy,
        &t.uid,
        previous.as_deref(),
        "register",
        kind,
        None,
        now,
    ) {
        Next::Retry(run) | Next::GiveUp(run) => run,
    };
    let wait = until(run.next, now);
    let label = if kind == Kind::Transient {
        "transient"
    } else {
        "config"
    };
    crate::metrics::acme_retry_delay("account", label, wait);
    tracing::warn!(error = %e, attempt = run.failures, wait_s = wait.as_secs(), "ACME account registration failed");
    (format!("{e}; {}", run.describe()), Action::requeue(wait))
}

async fn assess_issuer(
    ctx: &Context,
    t: &Target<'_>,
) -> Result<(Option<IssuerStatus>, Action), Error> {
    let now = Timestamp::now();
    let existing = t
        .status
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let verdict = |status, reason: &str, message: &str, acme: Option<AcmeIssuerStatus>| {
        Some(IssuerStatus {
            conditions: Some(conditions::set(
                &existing,
                "Ready",
                status,
                reason,
                message,
                t.generation,
                now,
            )),
            acme,
        })
    };
    let acme = match (assess(t.config), t.config.acme.as_ref()) {
        (Verdict::Acme, Some(acme)) => acme,
        (Verdict::Unsupported { reason, message }, _) => {
            return Ok((
                verdict(ConditionStatus::False, reason, &message, None),
                Action::await_change(),
            ));
        }
        (Verdict::Acme, None) => {
            return Ok((
                verdict(
                    ConditionStatus::False,
                    "UnsupportedIssuerType",
                    "no spec.acme",
                    None,
                ),
                Action::await_change(),
            ));
        }
    };
    let trust = crate::acme::session::trust(acme);
    let email = acme.email.as_deref().filter(|e| !e.is_empty());
    let secret_name = &acme.private_key_secret_ref.name;
    let data_key = acme
        .private_key_secret_ref
        .key
        .clone()
        .unwrap_or_else(|| "tls.key".into());
    let secret_id = format!("{}/{secret_name}", t.secret_namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &t.secret_namespace);
    let stored = secrets
        .get_opt(secret_name)
        .await
        .map_err(|e| Error::GetSecret(secret_id.clone(), e))?;
    // A run of failed registrations waits for its next try, unless what
    // it was tried from changed (the spec, the account key).
    let inputs = |pem: Option<&[u8]>| {
        format!(
            "{:?}/{}",
            t.generation,
            pem.map(key_hash).unwrap_or_default()
        )
    };
    let stored_key = stored
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(&data_key))
        .map(|b| b.0.clone());
    if ctx
        .retries
        .same_inputs(&t.uid, &inputs(stored_key.as_deref()))
        && let Some(left) = ctx.retries.wait_left(
            &t.uid,
            t.status.and_then(ready_message).as_deref(),
            Timestamp::now(),
        )
    {
        return Ok((None, Action::requeue(left)));
    }
    let data = stored.and_then(|s| s.data).unwrap_or_default();
    let pem = match data
        .get(&data_key)
        .map(|b| b.0.clone())
        .filter(|b| !b.is_empty())
    {
        Some(pem) => pem,
        None if acme.disable_account_key_generation == Some(true) => {
            let message = format!(
                "Secret {secret_id} has no account key under {data_key:?}, and disableAccountKeyGeneration is set"
            );
            return Ok((
                verdict(
                    ConditionStatus::False,
                    "ErrMissingAccountKey",
                    &message,
                    None,
                ),
                Action::requeue(Duration::from_secs(60)),
            ));
        }
        None if acme.external_account_binding.is_some() => {
            // A new account bound to the CA's external account: the key
            // is generated as the account is created.
            let eab = acme.external_account_binding.as_ref().expect("checked");
            let eab_secret = &eab.key_secret_ref.name;
            let eab_id = format!("{}/{eab_secret}", t.secret_namespace);
            let eab_key = eab
                .key_secret_ref
                .key
                .clone()
                .unwrap_or_else(|| "secret".into());
            let text = secrets
                .get_opt(eab_secret)
                .await
                .map_err(|e| Error::GetSecret(eab_id.clone(), e))?
                .and_then(|s| s.data)
                .and_then(|d| d.get(&eab_key).map(|b| b.0.clone()));
            let Some(text) = text else {
                let message = format!(
                    "Secret {eab_id} has no external account binding key under {eab_key:?}"
                );
                return Ok((
                    verdict(ConditionStatus::False, "InvalidEABKey", &message, None),
                    Action::requeue(Duration::from_secs(60)),
                ));
            };
            let registered = match account::decode_eab_key(&text, &eab_id) {
                Ok(hmac) => {
                    account::register_with_eab(&acme.server, &trust, &eab.key_id, &hmac, email)
                        .await
                }
                Err(e) => Err(e),
            };
            let (uri, pem) = match registered {
                Ok(r) => r,
                Err(e) => {
                    let (message, action) = registration_failed(ctx, t, &e);
                    return Ok((
                        verdict(ConditionStatus::False, e.reason(), &message, None),
                        action,
                    ));
                }
            };
            store_key(&secrets, secret_name, &data_key, &pem).await?;
            ctx.retries
                .same_inputs(&t.uid, &inputs(Some(pem.as_bytes())));
            let status = verdict(
                ConditionStatus::True,
                "ACMEAccountRegistered",
                "The ACME account was registered with the ACME server",
                Some(AcmeIssuerStatus {
                    uri: Some(uri),
                    last_registered_email: email.map(String::from),
                    last_private_key_hash: Some(key_hash(pem.as_bytes())),
                }),
            );
            return Ok((status, Action::requeue(Duration::from_secs(3600))));
        }
        None => {
            let pem = match account::generate_key() {
                Ok(p) => p,
                Err(e) => {
                    return Ok((
                        verdict(ConditionStatus::False, e.reason(), &e.to_string(), None),
                        Action::requeue(Duration::from_secs(10)),
                    ));
                }
            };
            store_key(&secrets, secret_name, &data_key, &pem).await?;
            // The Secret's change that follows is this key: no reason to
            // try again before the backoff says.
            ctx.retries
                .same_inputs(&t.uid, &inputs(Some(pem.as_bytes())));
            pem.into_bytes()
        }
    };
    let mut rolled_over = None;
    let (pem, pkcs8) = match account::parse_key(&pem, &secret_id) {
        Ok(k) => (pem, k),
        Err(AccountError::RsaKey(_)) => {
            let rsa = rollover::Rsa {
                secrets: &secrets,
                name: secret_name,
                data_key: &data_key,
                data: &data,
                pem: &pem,
                id: &secret_id,
            };
            match rsa.keep_account(&acme.server, &trust).await? {
                Ok((pem, pkcs8, uri)) => {
                    rolled_over = Some(uri);
                    (pem, pkcs8)
                }
                Err(e) => {
                    let (message, action) = registration_failed(ctx, t, &e);
                    return Ok((
                        verdict(ConditionStatus::False, e.reason(), &message, None),
                        action,
                    ));
                }
            }
        }
        Err(e) => {
            return Ok((
                verdict(ConditionStatus::False, e.reason(), &e.to_string(), None),
                Action::await_change(),
            ));
        }
    };
    let hash = key_hash(&pem);
    let previous = t.status.and_then(|s| s.acme.as_ref());
    // The recorded account, if it is this key's at this server (a changed
    // server is registered again, as cert-manager does).
    let known_uri = match &rolled_over {
        Some(uri) => uri.as_deref(),
        None => previous
            .filter(|p| p.last_private_key_hash.as_deref() == Some(hash.as_str()))
            .and_then(|p| p.uri.as_deref())
            .filter(|uri| same_host(uri, &acme.server)),
    };
    let email_changed = previous.and_then(|p| p.last_registered_email.as_deref()) != email;
    match account::register(account::Registration {
        server: &acme.server,
        trust: &trust,
        pkcs8: &pkcs8,
        known_uri,
        email,
        update_contact: known_uri.is_none() || email_changed,
        eab: acme.external_account_binding.is_some(),
        secret: &secret_id,
    })
    .await
    {
        Ok((_, uri)) => {
            if let Some(kept) = &rolled_over {
                let note = match kept {
                    Some(_) => format!(
                        "Kept the ACME account {uri}: its RSA key was rolled over to a new P-256 key (RFC 8555 key change); the RSA key stays in Secret {secret_id} under {:?}",
                        rollover::PREVIOUS_KEY
                    ),
                    None => format!(
                        "The RSA key in Secret {secret_id} has no account at the CA (or it was rolled over already): the account of its new P-256 key is {uri}; the RSA key stays under {:?}",
                        rollover::PREVIOUS_KEY
                    ),
                };
                tracing::info!(account = %uri, secret = %secret_id, "{note}");
                ctx.events.publish(
                    CONTROLLER_NAME,
                    t.object.clone(),
                    kube::runtime::events::EventType::Normal,
                    "AccountKeyRolledOver",
                    note,
                );
            }
            let acme_status = AcmeIssuerStatus {
                uri: Some(uri),
                last_registered_email: email.map(String::from),
                last_private_key_hash: Some(hash),
            };
            let status = verdict(
                ConditionStatus::True,
                "ACMEAccountRegistered",
                "The ACME account was registered with the ACME server",
                Some(acme_status),
            );
            Ok((status, Action::requeue(Duration::from_secs(3600))))
        }
        Err(e) => {
            let (message, action) = registration_failed(ctx, t, &e);
            Ok((
                verdict(ConditionStatus::False, e.reason(), &message, None),
                action,
            ))
        }
    }
}

/// Whether an account URL belongs to the server (same host and port).
fn same_host(account: &str, server: &str) -> bool {
    let authority = |url: &str| {
        url.parse::<hyper::Uri>()
            .ok()
            .and_then(|u| u.authority().map(|a| a.as_str().to_ascii_lowercase()))
    };
    authority(account).is_some() && authority(account) == authority(server)
}

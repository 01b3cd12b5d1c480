//! The Issuer controller's steps, one function each: the only I/O of a
//! pass. A step adds what it learnt to [`Seen`] and goes on, or ends the
//! pass with the status to write (written once, and only if it changed,
//! by the pass) and when to look again.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::key_secret::{apply_secret_data, key_hash};
use super::plan::{Key, Seen, Step};
use super::{CONTROLLER_NAME, Error, Target, ready_message, rollover};
use crate::acme::account::{self, AccountError};
use crate::acme::retry::{Kind, Next, Policy, until};
use crate::acme::tls::Trust;
use crate::api::IssuerStatus;
use crate::api::acme::{AcmeIssuer, AcmeIssuerStatus};
use crate::api::meta::ConditionStatus;
use crate::runtime::conditions;
use crate::runtime::context::Context;

/// One reconcile of one issuer.
pub(super) struct Pass<'a> {
    pub ctx: &'a Context,
    pub t: &'a Target<'a>,
    pub seen: Seen,
    /// The status the pass ends with (None: as it is).
    pub status: Option<IssuerStatus>,
    /// The account key Secret's data, once read.
    data: BTreeMap<String, ByteString>,
    /// The account an RSA key's rollover kept (Some(None): the CA had none).
    rolled_over: Option<Option<String>>,
}

/// Whether the pass goes on after a step.
pub(super) enum Flow {
    Next,
    Done(Action),
}

/// The parts of an ACME issuer the steps use, made once per pass.
pub(super) struct Acme<'a> {
    spec: &'a AcmeIssuer,
    trust: Trust,
    email: Option<&'a str>,
    secret_name: &'a str,
    data_key: String,
    /// `namespace/name` of the key Secret, for messages.
    secret_id: String,
    secrets: Api<Secret>,
}

impl<'a> Acme<'a> {
    /// The issuer's ACME parts (None: it is not an ACME issuer).
    pub fn of(ctx: &Context, t: &Target<'a>) -> Option<Self> {
        let spec = t.config.acme.as_ref()?;
        let secret_name = spec.private_key_secret_ref.name.as_str();
        Some(Self {
            spec,
            trust: crate::acme::session::trust(spec),
            email: spec.email.as_deref().filter(|e| !e.is_empty()),
            secret_name,
            data_key: spec
                .private_key_secret_ref
                .key
                .clone()
                .unwrap_or_else(|| "tls.key".into()),
            secret_id: format!("{}/{secret_name}", t.secret_namespace),
            secrets: Api::namespaced(ctx.client.clone(), &t.secret_namespace),
        })
    }
}

impl<'a> Pass<'a> {
    pub fn new(ctx: &'a Context, t: &'a Target<'a>) -> Self {
        Self {
            ctx,
            t,
            seen: Seen::default(),
            status: None,
            data: BTreeMap::new(),
            rolled_over: None,
        }
    }

    /// Ends the pass with the Ready condition set so.
    fn verdict(
        &mut self,
        status: ConditionStatus,
        reason: &str,
        message: &str,
        acme: Option<AcmeIssuerStatus>,
        then: Action,
    ) -> Flow {
        let existing = self
            .t
            .status
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        self.status = Some(IssuerStatus {
            conditions: Some(conditions::set(
                &existing,
                "Ready",
                status,
                reason,
                message,
                self.t.generation,
                Timestamp::now(),
            )),
            acme,
        });
        Flow::Done(then)
    }

    /// Ends the pass on a failed registration.
    fn registration_failed(&mut self, e: &AccountError) -> Flow {
        let (message, action) = registration_failed(self.ctx, self.t, e);
        self.verdict(ConditionStatus::False, e.reason(), &message, None, action)
    }

    /// Ends the pass with the account registered.
    fn registered(&mut self, uri: String, email: Option<&str>, hash: String) -> Flow {
        let acme = AcmeIssuerStatus {
            uri: Some(uri),
            last_registered_email: email.map(String::from),
            last_private_key_hash: Some(hash),
        };
        self.verdict(
            ConditionStatus::True,
            "ACMEAccountRegistered",
            "The ACME account was registered with the ACME server",
            Some(acme),
            Action::requeue(Duration::from_secs(3600)),
        )
    }
}

/// Runs `step` for the issuer whose ACME parts are `acme`.
pub(super) async fn run(
    pass: &mut Pass<'_>,
    acme: Option<&Acme<'_>>,
    step: Step,
) -> Result<Flow, Error> {
    let Some(acme) = acme else {
        // (Without spec.acme the plan chooses Unsupported only.)
        return Ok(match step {
            Step::Unsupported { reason, message } => unsupported(pass, reason, &message),
            _ => Flow::Done(Action::await_change()),
        });
    };
    match step {
        Step::Unsupported { reason, message } => Ok(unsupported(pass, reason, &message)),
        Step::ReadKey => read_key(pass, acme).await,
        Step::WaitForRetry(left) => Ok(Flow::Done(Action::requeue(left))),
        Step::MissingKey => {
            let message = format!(
                "Secret {} has no account key under {:?}, and disableAccountKeyGeneration is set",
                acme.secret_id, acme.data_key
            );
            Ok(pass.verdict(
                ConditionStatus::False,
                "ErrMissingAccountKey",
                &message,
                None,
                Action::requeue(Duration::from_secs(60)),
            ))
        }
        Step::RegisterBound => register_bound(pass, acme).await,
        Step::GenerateKey => generate_key(pass, acme).await,
        Step::ParseKey => Ok(parse_key(pass, acme)),
        Step::RollOver => roll_over(pass, acme).await,
        Step::Register => register(pass, acme).await,
    }
}

/// Not an issuer certwright serves: said, until its spec changes.
fn unsupported(pass: &mut Pass<'_>, reason: &str, message: &str) -> Flow {
    pass.verdict(
        ConditionStatus::False,
        reason,
        message,
        None,
        Action::await_change(),
    )
}

/// What a run of failed registrations was tried from: the spec and the key.
fn inputs(t: &Target<'_>, pem: Option<&[u8]>) -> String {
    format!(
        "{:?}/{}",
        t.generation,
        pem.map(key_hash).unwrap_or_default()
    )
}

/// Reads the account key; a run of failed registrations then waits for
/// its next try, unless what it was tried from changed.
async fn read_key(pass: &mut Pass<'_>, acme: &Acme<'_>) -> Result<Flow, Error> {
    let stored = acme
        .secrets
        .get_opt(acme.secret_name)
        .await
        .map_err(|e| Error::GetSecret(acme.secret_id.clone(), e))?;
    pass.data = stored.and_then(|s| s.data).unwrap_or_default();
    let pem = pass
        .data
        .get(&acme.data_key)
        .map(|b| b.0.clone())
        .filter(|b| !b.is_empty());
    let (ctx, t) = (pass.ctx, pass.t);
    if ctx.retries.same_inputs(&t.uid, &inputs(t, pem.as_deref())) {
        pass.seen.retry_left = ctx.retries.wait_left(
            &t.uid,
            t.status.and_then(ready_message).as_deref(),
            Timestamp::now(),
        );
    }
    pass.seen.key = Some(pem.map_or(Key::Absent, Key::Pem));
    Ok(Flow::Next)
}

/// A new account bound to the CA's external account: the key is
/// generated as the account is created.
async fn register_bound(pass: &mut Pass<'_>, acme: &Acme<'_>) -> Result<Flow, Error> {
    let Some(eab) = acme.spec.external_account_binding.as_ref() else {
        return Ok(Flow::Next);
    };
    let eab_secret = &eab.key_secret_ref.name;
    let eab_id = format!("{}/{eab_secret}", pass.t.secret_namespace);
    let eab_key = eab
        .key_secret_ref
        .key
        .clone()
        .unwrap_or_else(|| "secret".into());
    let text = acme
        .secrets
        .get_opt(eab_secret)
        .await
        .map_err(|e| Error::GetSecret(eab_id.clone(), e))?
        .and_then(|s| s.data)
        .and_then(|d| d.get(&eab_key).map(|b| b.0.clone()));
    let Some(text) = text else {
        let message =
            format!("Secret {eab_id} has no external account binding key under {eab_key:?}");
        return Ok(pass.verdict(
            ConditionStatus::False,
            "InvalidEABKey",
            &message,
            None,
            Action::requeue(Duration::from_secs(60)),
        ));
    };
    let registered = match account::decode_eab_key(&text, &eab_id) {
        Ok(hmac) => {
            account::register_with_eab(
                &acme.spec.server,
                &acme.trust,
                &eab.key_id,
                &hmac,
                acme.email,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let (uri, pem) = match registered {
        Ok(r) => r,
        Err(e) => return Ok(pass.registration_failed(&e)),
    };
    store_key(acme, &pem).await?;
    let (ctx, t) = (pass.ctx, pass.t);
    ctx.retries
        .same_inputs(&t.uid, &inputs(t, Some(pem.as_bytes())));
    Ok(pass.registered(uri, acme.email, key_hash(pem.as_bytes())))
}

async fn generate_key(pass: &mut Pass<'_>, acme: &Acme<'_>) -> Result<Flow, Error> {
    let pem = match account::generate_key() {
        Ok(p) => p,
        Err(e) => {
            return Ok(pass.verdict(
                ConditionStatus::False,
                e.reason(),
                &e.to_string(),
                None,
                Action::requeue(Duration::from_secs(10)),
            ));
        }
    };
    store_key(acme, &pem).await?;
    // The Secret's change that follows is this key: no reason to try
    // again before the backoff says.
    let (ctx, t) = (pass.ctx, pass.t);
    ctx.retries
        .same_inputs(&t.uid, &inputs(t, Some(pem.as_bytes())));
    pass.seen.key = Some(Key::Pem(pem.into_bytes()));
    Ok(Flow::Next)
}

fn parse_key(pass: &mut Pass<'_>, acme: &Acme<'_>) -> Flow {
    let Some(Key::Pem(pem)) = pass.seen.key.take() else {
        return Flow::Next;
    };
    match account::parse_key(&pem, &acme.secret_id) {
        Ok(pkcs8) => {
            pass.seen.key = Some(Key::Usable { pem, pkcs8 });
            Flow::Next
        }
        Err(AccountError::RsaKey(_)) => {
            pass.seen.key = Some(Key::Rsa(pem));
            Flow::Next
        }
        Err(e) => pass.verdict(
            ConditionStatus::False,
            e.reason(),
            &e.to_string(),
            None,
            Action::await_change(),
        ),
    }
}

async fn roll_over(pass: &mut Pass<'_>, acme: &Acme<'_>) -> Result<Flow, Error> {
    let Some(Key::Rsa(pem)) = pass.seen.key.take() else {
        return Ok(Flow::Next);
    };
    let rsa = rollover::Rsa {
        secrets: &acme.secrets,
        name: acme.secret_name,
        data_key: &acme.data_key,
        data: &pass.data,
        pem: &pem,
        id: &acme.secret_id,
    };
    match rsa.keep_account(&acme.spec.server, &acme.trust).await? {
        Ok((pem, pkcs8, uri)) => {
            pass.rolled_over = Some(uri);
            pass.seen.key = Some(Key::Usable { pem, pkcs8 });
            Ok(Flow::Next)
        }
        Err(e) => Ok(pass.registration_failed(&e)),
    }
}

/// Registers (or finds) the account of the key, and records it.
async fn register(pass: &mut Pass<'_>, acme: &Acme<'_>) -> Result<Flow, Error> {
    let Some(Key::Usable { pem, pkcs8 }) = pass.seen.key.take() else {
        return Ok(Flow::Next);
    };
    let hash = key_hash(&pem);
    let previous = pass.t.status.and_then(|s| s.acme.as_ref());
    // The recorded account, if it is this key's at this server (a changed
    // server is registered again, as cert-manager does).
    let known_uri = match &pass.rolled_over {
        Some(uri) => uri.as_deref(),
        None => previous
            .filter(|p| p.last_private_key_hash.as_deref() == Some(hash.as_str()))
            .and_then(|p| p.uri.as_deref())
            .filter(|uri| same_host(uri, &acme.spec.server)),
    };
    let email_changed = previous.and_then(|p| p.last_registered_email.as_deref()) != acme.email;
    let registered = account::register(account::Registration {
        server: &acme.spec.server,
        trust: &acme.trust,
        pkcs8: &pkcs8,
        known_uri,
        email: acme.email,
        update_contact: known_uri.is_none() || email_changed,
        eab: acme.spec.external_account_binding.is_some(),
        secret: &acme.secret_id,
    })
    .await;
    match registered {
        Ok((_, uri)) => {
            if let Some(kept) = &pass.rolled_over {
                rolled_over_event(pass, acme, &uri, kept.is_some());
            }
            Ok(pass.registered(uri, acme.email, hash))
        }
        Err(e) => Ok(pass.registration_failed(&e)),
    }
}

/// Says that an RSA key was rolled over (`kept`: its account kept).
fn rolled_over_event(pass: &Pass<'_>, acme: &Acme<'_>, uri: &str, kept: bool) {
    let secret_id = &acme.secret_id;
    let note = if kept {
        format!(
            "Kept the ACME account {uri}: its RSA key was rolled over to a new P-256 key (RFC 8555 key change); the RSA key stays in Secret {secret_id} under {:?}",
            rollover::PREVIOUS_KEY
        )
    } else {
        format!(
            "The RSA key in Secret {secret_id} has no account at the CA (or it was rolled over already): the account of its new P-256 key is {uri}; the RSA key stays under {:?}",
            rollover::PREVIOUS_KEY
        )
    };
    tracing::info!(account = %uri, secret = %secret_id, "{note}");
    pass.ctx.events.publish(
        CONTROLLER_NAME,
        pass.t.object.clone(),
        kube::runtime::events::EventType::Normal,
        "AccountKeyRolledOver",
        note,
    );
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

/// Writes the account key into its Secret (server-side apply: other keys
/// and metadata of the Secret are left alone).
async fn store_key(acme: &Acme<'_>, pem: &str) -> Result<(), Error> {
    let data = BTreeMap::from([(acme.data_key.clone(), pem.to_string())]);
    apply_secret_data(&acme.secrets, acme.secret_name, CONTROLLER_NAME, data).await
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

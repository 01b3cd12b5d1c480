//! The ingress-shim: an Ingress annotated `cert-manager.io/issuer`,
//! `cert-manager.io/cluster-issuer` (or `kubernetes.io/tls-acme: "true"`
//! with a default issuer) gets one Certificate per `spec.tls` entry, named
//! after its Secret and controlled by the Ingress, kept in step with the
//! Ingress as cert-manager's ingress-shim keeps it. The decisions are in
//! `annotations` (what the Ingress asks for) and `plan` (what to change);
//! this module reads the caches, writes and tells.

pub mod annotations;
pub mod plan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use annotations::Decision;
use plan::Step;

use crate::api::Certificate;
use crate::runtime::context::Context;

pub const CONTROLLER: &str = "certwright-ingress-shim";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing Certificate {0}: {1}")]
    Write(String, #[source] kube::Error),
    #[error(transparent)]
    Panicked(#[from] crate::runtime::reconcile_error::Panicked),
}

/// The shim's state beside the shared context.
struct Shim {
    ctx: Arc<Context>,
    /// The Certificate controller's cache (the shim keeps no copy of its own).
    certificates: Store<Certificate>,
    /// Certificates whose deletion the trigger saw, by uid, while the
    /// Certificate cache may still hold them.
    gone: Mutex<HashSet<String>>,
}

fn event(shim: &Shim, ingress: &Ingress, type_: EventType, reason: &str, note: String) {
    shim.ctx
        .events
        .publish(CONTROLLER, ingress.object_ref(&()), type_, reason, note);
}

/// The Certificates in `ns` as the cache holds them, less those the
/// trigger saw deleted.
fn existing(shim: &Shim, ns: &str) -> Vec<Certificate> {
    let state = shim.certificates.state();
    let mut gone = shim.gone.lock().unwrap_or_else(|e| e.into_inner());
    // Forget deletions the cache has caught up with (rare: only then is
    // the whole cache walked).
    if !gone.is_empty() {
        let cached: HashSet<String> = state.iter().filter_map(|c| c.uid()).collect();
        gone.retain(|uid| cached.contains(uid));
    }
    state
        .iter()
        .filter(|c| c.namespace().as_deref() == Some(ns))
        .filter(|c| !c.uid().is_some_and(|uid| gone.contains(&uid)))
        .map(|c| (**c).clone())
        .collect()
}

/// Whether a write was refused as invalid (the Certificate's schema or its
/// validation rules): bad input from the Ingress, not worth a retry.
fn invalid(e: &kube::Error) -> Option<String> {
    match e {
        kube::Error::Api(s) if s.code == 422 => Some(s.message.clone()),
        _ => None,
    }
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// How a create or replace of a Certificate is told on the Ingress.
struct Report {
    reason: &'static str,
    done: &'static str,
    refused: &'static str,
}

impl Report {
    /// Tells the outcome of writing `cert`: an event for a write or an
    /// invalid one, a wait for a conflict (the cache is behind), the
    /// error for anything else.
    async fn tell(
        &self,
        shim: &Shim,
        ingress: &Ingress,
        cert: &Certificate,
        written: Result<Certificate, kube::Error>,
    ) -> Result<Option<Duration>, Error> {
        let name = cert.name_any();
        let (type_, reason, note) = match written {
            Ok(_) => (
                EventType::Normal,
                self.reason,
                format!("Successfully {} Certificate {name:?}", self.done),
            ),
            Err(e) if conflict(&e) => return Ok(Some(Duration::from_secs(1))),
            Err(e) => match invalid(&e) {
                Some(why) => (
                    EventType::Warning,
                    "BadConfig",
                    format!("Certificate {name:?}: {}: {why}", self.refused),
                ),
                None => {
                    let ns = cert.namespace().unwrap_or_default();
                    return Err(Error::Write(format!("{ns}/{name}"), e));
                }
            },
        };
        event(shim, ingress, type_, reason, note);
        Ok(None)
    }
}

async fn reconcile(ingress: Arc<Ingress>, shim: Arc<Shim>) -> Result<Action, Error> {
    crate::metrics::sync("ingress-shim");
    let ctx = &shim.ctx;
    let (wanted, skipped) = match annotations::decide(&ingress, &ctx.settings.ingress_shim) {
        Decision::Ignore => return Ok(Action::await_change()),
        Decision::BadConfig(why) => {
            tracing::info!(ingress = %key(&ingress), reason = %why, "not creating Certificates for the Ingress");
            event(&shim, &ingress, EventType::Warning, "BadConfig", why);
            return Ok(Action::await_change());
        }
        Decision::Certificates { wanted, skipped } => (wanted, skipped),
    };
    for why in skipped {
        event(&shim, &ingress, EventType::Warning, "BadConfig", why);
    }
    let ns = ingress.namespace().unwrap_or_default();
    let api: Api<Certificate> = Api::namespaced(ctx.client.clone(), &ns);
    let secret_names: Vec<String> = ingress
        .spec
        .iter()
        .flat_map(|s| s.tls.iter().flatten())
        .filter_map(|t| t.secret_name.clone())
        .collect();
    let uid = ingress.uid().unwrap_or_default();
    let mut again: Option<Duration> = None;
    for step in plan::plan(&uid, wanted, &secret_names, &existing(&shim, &ns)) {
        match step {
            Step::Create(cert) => {
                let written = api.create(&PostParams::default(), &cert).await;
                // A conflict: made a moment ago, the cache has not seen it yet.
                let report = Report {
                    reason: "CreateCertificate",
                    done: "created",
                    refused: "the Certificate the Ingress asks for is invalid",
                };
                again = again.or(report.tell(&shim, &ingress, &cert, written).await?);
            }
            Step::Update(cert) => {
                let written = api
                    .replace(&cert.name_any(), &PostParams::default(), &cert)
                    .await;
                // A conflict: changed since the cache saw it.
                let report = Report {
                    reason: "UpdateCertificate",
                    done: "updated",
                    refused: "the Ingress's changes to the Certificate are invalid, so it was left as it was",
                };
                again = again.or(report.tell(&shim, &ingress, &cert, written).await?);
            }
            Step::Delete(name) => match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    let note = format!("Successfully deleted unrequired Certificate {name:?}");
                    event(
                        &shim,
                        &ingress,
                        EventType::Normal,
                        "DeleteCertificate",
                        note,
                    );
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::Write(format!("{ns}/{name}"), e)),
            },
            Step::NotOwned(name) => {
                let note = format!(
                    "Certificate {name:?} already exists and is not controlled by this Ingress: left alone (delete it, or rename the TLS entry's secretName, for the Ingress to manage it)"
                );
                event(&shim, &ingress, EventType::Warning, "BadConfig", note);
            }
        }
    }
    ctx.reconcile_failures.forget(&uid);
    Ok(again.map_or_else(Action::await_change, Action::requeue))
}

fn key(ingress: &Ingress) -> String {
    format!(
        "{}/{}",
        ingress.namespace().unwrap_or_default(),
        ingress.name_any()
    )
}

/// Retries a failed write with a doubling wait, up to five minutes.
fn error_policy(ingress: Arc<Ingress>, error: &Error, shim: Arc<Shim>) -> Action {
    crate::metrics::sync_error("ingress-shim");
    let n = shim
        .ctx
        .reconcile_failures
        .bump(&ingress.uid().unwrap_or_default());
    let wait = Duration::from_secs((1u64 << n.min(9)).min(300));
    tracing::warn!(ingress = %key(&ingress), error = %error, retry_in = ?wait, "ingress-shim reconcile failed");
    Action::requeue(wait)
}

/// A hash of what the shim compares on a Certificate's metadata: a change
/// of spec (generation), labels, annotations or owners.
fn fingerprint(meta: &PartialObjectMeta<Certificate>) -> u64 {
    let m = &meta.metadata;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.generation.hash(&mut h);
    m.labels.as_ref().unwrap_or(&BTreeMap::new()).hash(&mut h);
    m.annotations
        .as_ref()
        .unwrap_or(&BTreeMap::new())
        .hash(&mut h);
    for o in m.owner_references.iter().flatten() {
        (&o.uid, o.controller).hash(&mut h);
    }
    h.finish()
}

fn controlled_by_ingress(meta: &PartialObjectMeta<Certificate>) -> bool {
    meta.owner_references().iter().any(|o| {
        o.controller == Some(true) && o.kind == "Ingress" && o.api_version == "networking.k8s.io/v1"
    })
}

/// Runs the ingress-shim until its streams end. Certificates controlled by
/// an Ingress bring their Ingress back when their spec, labels,
/// annotations or owners change or they are deleted (a metadata-only
/// watch; status writes do not).
pub async fn run(ctx: Arc<Context>) {
    // The Certificate controller's cache, once it has listed.
    let certificates = ctx.stores.certificates.listed().await;
    let shim = Arc::new(Shim {
        ctx: ctx.clone(),
        certificates,
        gone: Mutex::default(),
    });
    let seen: Mutex<HashMap<String, u64>> = Mutex::default();
    let trigger_shim = shim.clone();
    let triggers = watcher(
        Api::<PartialObjectMeta<Certificate>>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .filter_map(move |event| {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let out = match event {
            Ok(watcher::Event::Apply(m) | watcher::Event::InitApply(m))
                if controlled_by_ingress(&m) =>
            {
                let print = fingerprint(&m);
                (seen.insert(m.uid().unwrap_or_default(), print) != Some(print)).then_some(Ok(m))
            }
            Ok(watcher::Event::Delete(m)) if controlled_by_ingress(&m) => {
                let uid = m.uid().unwrap_or_default();
                seen.remove(&uid);
                trigger_shim
                    .gone
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(uid);
                Some(Ok(m))
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        };
        std::future::ready(out)
    });
    let (store, ingresses) = crate::runtime::watch::trimmed(
        Api::<Ingress>::all(ctx.client.clone()),
        watcher::Config::default(),
        crate::runtime::watch::Wake::OnEveryChange,
    );
    Controller::for_stream(ingresses, store)
        .owns_stream(triggers)
        .with_config(ctx.settings.controller_config())
        .graceful_shutdown_on(ctx.stopped())
        .run(
            |ingress, shim| {
                let who = crate::naming::object_name(&*ingress);
                crate::runtime::reconcile_error::guard(
                    "ingress-shim",
                    who,
                    reconcile(ingress, shim),
                )
            },
            error_policy,
            shim,
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests;

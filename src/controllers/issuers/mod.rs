//! The Issuer and ClusterIssuer controller: registers (or finds) the ACME
//! account, keeping its key in `privateKeySecretRef` (generated when absent
//! unless `disableAccountKeyGeneration`), and reports condition Ready with a
//! reason a user can act on; `status.acme` records the account URL, the
//! email last registered and a hash of the key.
//!
//! Both kinds are watched, and their account key Secrets, so a changed or
//! deleted key is acted on at once. A pass runs the steps the state table
//! (`plan`) chooses (`steps`), then writes the status once, only if it
//! changed; an error before an issuer's first verdict is its Ready
//! condition too, and errors are retried with a growing backoff.

pub mod decide;
mod key_secret;
mod plan;
mod rollover;
mod steps;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::acme::retry::Run;
use crate::api::meta::ConditionStatus;
use crate::api::{ClusterIssuer, Issuer, IssuerConfig, IssuerStatus};
use crate::runtime::conditions;
use crate::runtime::context::Context;

pub const CONTROLLER_NAME: &str = "certwright-issuers";
/// Most steps in one pass (a pass takes at most five).
const MOST_STEPS: usize = 8;

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

/// The status an issuer should have (None: the one it has), creating its
/// account key and registering its account on the way, and when to look
/// again.
async fn evaluate(ctx: &Context, t: Target<'_>) -> Result<(Option<IssuerStatus>, Action), Error> {
    let acme = steps::Acme::of(ctx, &t);
    let mut pass = steps::Pass::new(ctx, &t);
    let mut action = None;
    // Each step either ends the pass or learns something the next one
    // needs; a table that chose steps without end is a bug, cut short.
    for _ in 0..MOST_STEPS {
        let step = plan::next_step(t.config, &pass.seen);
        if let steps::Flow::Done(then) = steps::run(&mut pass, acme.as_ref(), step).await? {
            action = Some(then);
            break;
        }
    }
    let action = action.unwrap_or_else(|| {
        tracing::error!(issuer = ?t.object.name, "the issuer's steps did not end a pass; trying again later");
        Action::requeue(Duration::from_secs(30))
    });
    let status = pass.status;
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

/// The issuer's request ceiling for its server, from its annotation.
fn set_ceiling(config: &IssuerConfig, annotations: &BTreeMap<String, String>) {
    use crate::acme::ceiling;
    if let Some(acme) = &config.acme {
        let value = annotations.get(ceiling::ANNOTATION).map(String::as_str);
        if let Err(why) = ceiling::from_annotation(&acme.server, value) {
            tracing::warn!(server = %acme.server, %why, "ignoring the request ceiling annotation");
        }
    }
}

async fn reconcile_issuer(issuer: Arc<Issuer>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::metrics::sync("issuers");
    let namespace = issuer.namespace().unwrap_or_default();
    let api: Api<Issuer> = Api::namespaced(ctx.client.clone(), &namespace);
    let config = &issuer.spec.config;
    reconcile_one(
        &ctx,
        &api,
        &*issuer,
        config,
        issuer.status.as_ref(),
        namespace,
    )
    .await
}

async fn reconcile_cluster_issuer(
    issuer: Arc<ClusterIssuer>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    crate::metrics::sync("clusterissuers");
    let api: Api<ClusterIssuer> = Api::all(ctx.client.clone());
    let (config, status) = (&issuer.spec.config, issuer.status.as_ref());
    let secrets = ctx.settings.cluster_resource_namespace.clone();
    reconcile_one(&ctx, &api, &*issuer, config, status, secrets).await
}

/// An Issuer or ClusterIssuer (`object`, written through `api`), with its
/// account key Secret in `secret_namespace`.
async fn reconcile_one<K>(
    ctx: &Context,
    api: &Api<K>,
    object: &K,
    config: &IssuerConfig,
    status: Option<&IssuerStatus>,
    secret_namespace: String,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    set_ceiling(config, object.annotations());
    let object_status = status;
    let generation = object.meta().generation;
    let target = Target {
        config,
        status,
        generation,
        secret_namespace,
        object: object.object_ref(&()),
        uid: object.uid().unwrap_or_default(),
    };
    let name = object.name_any();
    let (status, action) = match evaluate(ctx, target).await {
        Ok(v) => v,
        Err(e) => {
            if let Some(s) = first_failure(status, generation, &e) {
                let _ = crate::runtime::status::apply(api, &name, CONTROLLER_NAME, &s).await;
            }
            return Err(e);
        }
    };
    // Written only when it changed: an issuer looked at again (hourly, or
    // for its Secret's change) that stands as it did costs no write.
    let before = object_status;
    if let Some(status) = status.filter(|s| Some(s) != before) {
        crate::runtime::status::apply(api, &name, CONTROLLER_NAME, &status)
            .await
            .map_err(Error::WriteStatus)?;
    }
    ctx.reconcile_failures.forget(&uid_of(object));
    Ok(action)
}

/// The status to write when reconciling failed before an issuer ever had
/// a Ready condition: one saying why (an issuer always carries one).
fn first_failure(
    status: Option<&IssuerStatus>,
    generation: Option<i64>,
    e: &Error,
) -> Option<IssuerStatus> {
    let existing = status
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if existing.iter().any(|c| c.type_ == "Ready") {
        return None;
    }
    Some(IssuerStatus {
        conditions: Some(conditions::set(
            &existing,
            "Ready",
            ConditionStatus::False,
            e.kind(),
            &e.to_string(),
            generation,
            Timestamp::now(),
        )),
        acme: status.and_then(|s| s.acme.clone()),
    })
}

/// An API error is tried again after 5 s, doubling to 5 min.
fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    crate::metrics::sync_error(if K::kind(&()) == "ClusterIssuer" {
        "clusterissuers"
    } else {
        "issuers"
    });
    let failures = ctx.reconcile_failures.bump(&uid_of(&*object));
    let wait = Duration::from_secs(5)
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(300));
    tracing::warn!(error = %error, kind = error.kind(), failures, ?wait, "issuer reconcile failed");
    Action::requeue(wait)
}

fn uid_of<K: Resource>(object: &K) -> String {
    object.meta().uid.clone().unwrap_or_default()
}

/// The name of the account key Secret an issuer names.
fn account_secret(config: &IssuerConfig) -> Option<&str> {
    config
        .acme
        .as_ref()
        .map(|a| a.private_key_secret_ref.name.as_str())
}

/// Runs the Issuer and ClusterIssuer controllers until the streams end.
/// Both also watch Secrets (metadata only), so a changed or deleted
/// account key is acted on at once.
pub async fn run(ctx: Arc<Context>) {
    use kube::core::PartialObjectMeta;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::reflector::ObjectRef;
    let secrets = || {
        watcher(
            Api::<PartialObjectMeta<Secret>>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .touched_objects()
    };
    let controller = Controller::new(
        Api::<Issuer>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let issuers = controller
        .watches_stream(secrets(), move |secret| {
            let ns = secret.metadata.namespace.clone().unwrap_or_default();
            let name = secret.metadata.name.clone().unwrap_or_default();
            store
                .state()
                .into_iter()
                .filter(|i| {
                    i.namespace().as_deref() == Some(ns.as_str())
                        && account_secret(&i.spec.config) == Some(name.as_str())
                })
                .map(|i| ObjectRef::from_obj(&*i))
                .collect::<Vec<_>>()
        })
        .with_config(ctx.settings.controller_config())
        .graceful_shutdown_on(ctx.stopped())
        .run(
            |issuer, ctx| {
                let who = crate::naming::object_name(&*issuer);
                crate::runtime::reconcile_error::guard(
                    "issuers",
                    who,
                    reconcile_issuer(issuer, ctx),
                )
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let controller = Controller::new(
        Api::<ClusterIssuer>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let resource_ns = ctx.settings.cluster_resource_namespace.clone();
    let cluster = controller
        .watches_stream(secrets(), move |secret| {
            let in_ns = secret.metadata.namespace.as_deref() == Some(resource_ns.as_str());
            let name = secret.metadata.name.clone().unwrap_or_default();
            store
                .state()
                .into_iter()
                .filter(|i| in_ns && account_secret(&i.spec.config) == Some(name.as_str()))
                .map(|i| ObjectRef::from_obj(&*i))
                .collect::<Vec<_>>()
        })
        .with_config(ctx.settings.controller_config())
        .graceful_shutdown_on(ctx.stopped())
        .run(
            |issuer, ctx| {
                let who = crate::naming::object_name(&*issuer);
                crate::runtime::reconcile_error::guard(
                    "clusterissuers",
                    who,
                    reconcile_cluster_issuer(issuer, ctx),
                )
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    futures_util::future::join(issuers, cluster).await;
}

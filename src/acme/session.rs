//! The ACME account an Order or Challenge acts through: found from the
//! issuer reference, loaded once (instant-acme fetches the directory when
//! an account is loaded) and kept with the log of its responses, so errors
//! can be read together with the CA's Retry-After.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::StreamExt;
use instant_acme::Account;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use rustls::pki_types::PrivatePkcs8KeyDer;

use super::account;
use super::http::{ResponseLog, recording_client};
use super::tls::Trust;
use crate::api::meta::{ConditionStatus, IssuerReference};
use crate::api::{AcmeIssuer, ClusterIssuer, Issuer, IssuerConfig, IssuerStatus};

/// An account ready to act, with the responses it has seen.
#[derive(Clone)]
pub struct Session {
    pub account: Account,
    pub log: ResponseLog,
    pub issuer: AcmeIssuer,
    /// The account key (PKCS#8), for the requests signed in `direct`.
    key: std::sync::Arc<Vec<u8>>,
}

impl Session {
    /// The CA for requests instant-acme does not make, and the account's
    /// signer; the responses go to this session's log.
    pub async fn direct(&self) -> Result<(super::direct::Ca, super::direct::Signer), String> {
        let signer = super::direct::Signer::from_pkcs8(&self.key)?;
        let http = super::http::recording_into(&trust(&self.issuer), &self.log)
            .map_err(|e| e.to_string())?;
        let ca = super::direct::Ca::new(http, &self.issuer.server).await?;
        Ok((ca, signer))
    }
}

/// Loaded accounts by server and account URL.
#[derive(Default)]
pub struct Accounts(Mutex<HashMap<String, Session>>);

/// Issuers and ClusterIssuers as last seen by a watch, so Orders and
/// Challenges find their issuer without asking the API server each time.
pub struct IssuerStores {
    issuers: Store<Issuer>,
    cluster_issuers: Store<ClusterIssuer>,
    writers: Mutex<Option<(Writer<Issuer>, Writer<ClusterIssuer>)>>,
    /// How many of the two watches have listed once. (Not the stores'
    /// `wait_until_ready`: kube-runtime 5 wakes only the last of several
    /// concurrent waiters there, and the others wait forever.)
    listed: tokio::sync::watch::Sender<u8>,
}

impl Default for IssuerStores {
    fn default() -> Self {
        let (issuers, w1) = reflector::store();
        let (cluster_issuers, w2) = reflector::store();
        Self {
            issuers,
            cluster_issuers,
            writers: Mutex::new(Some((w1, w2))),
            listed: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl IssuerStores {
    /// The Issuer and ClusterIssuer caches.
    pub fn stores(&self) -> (Store<Issuer>, Store<ClusterIssuer>) {
        (self.issuers.clone(), self.cluster_issuers.clone())
    }

    /// Waits until both watches have listed once (so a missing issuer is
    /// really missing, not just not seen yet).
    pub async fn ready(&self) {
        let mut listed = self.listed.subscribe();
        let _ = listed.wait_for(|n| *n >= 2).await;
    }

    /// The ACME account URI of the issuer `reference` (seen from
    /// `namespace`) as last seen in its status.
    pub fn account(&self, namespace: &str, reference: &IssuerReference) -> Option<String> {
        let name = &reference.name;
        let status = if reference.kind.as_deref() == Some("ClusterIssuer") {
            self.cluster_issuers
                .get(&ObjectRef::new(name))
                .and_then(|i| i.status.clone())
        } else {
            self.issuers
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|i| i.status.clone())
        };
        status?.acme?.uri.filter(|u| !u.is_empty())
    }

    /// The annotations of the issuer `reference` (seen from `namespace`)
    /// as last seen; empty when it is not known (yet).
    pub fn annotations(
        &self,
        namespace: &str,
        reference: &IssuerReference,
    ) -> std::collections::BTreeMap<String, String> {
        let name = &reference.name;
        let found = if reference.kind.as_deref() == Some("ClusterIssuer") {
            self.cluster_issuers
                .get(&ObjectRef::new(name))
                .and_then(|i| i.metadata.annotations.clone())
        } else {
            self.issuers
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|i| i.metadata.annotations.clone())
        };
        found.unwrap_or_default()
    }
}

/// Fills `stores` until the watches end (once: the writers are taken).
pub async fn watch_issuer_stores(client: kube::Client, stores: &IssuerStores) {
    let Some((w1, w2)) = stores
        .writers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return;
    };
    let issuers = reflector::reflector(
        w1,
        watcher(
            Api::<Issuer>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(count_listed(&stores.listed));
    let cluster = reflector::reflector(
        w2,
        watcher(
            Api::<ClusterIssuer>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(count_listed(&stores.listed));
    futures_util::future::join(issuers, cluster).await;
}

/// A `for_each` step that counts the watch into `listed` at its first
/// complete list.
fn count_listed<K, E>(
    listed: &tokio::sync::watch::Sender<u8>,
) -> impl FnMut(Result<watcher::Event<K>, E>) -> std::future::Ready<()> + '_ {
    let mut counted = false;
    move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) && !std::mem::replace(&mut counted, true) {
            listed.send_modify(|n| *n += 1);
        }
        std::future::ready(())
    }
}

/// What finding an issuer and its account needs from the controllers
/// (the ACME side knows nothing else of them).
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub client: &'a kube::Client,
    pub stores: &'a IssuerStores,
    pub accounts: &'a Accounts,
    /// Where ClusterIssuers keep their Secrets.
    pub cluster_resource_namespace: &'a str,
}

/// Why no account could be had; the message is for a condition.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The API server could not be asked: retry.
    #[error("reading {0}: {1}")]
    Api(String, #[source] kube::Error),
    /// The issuer is missing, not ACME or not ready: wait for it.
    #[error("{0}")]
    NotReady(String),
    /// The CA or the network failed while loading the account: retry.
    #[error("loading the ACME account: {0}")]
    Acme(#[source] instant_acme::Error),
    /// The account key or TLS settings are unusable.
    #[error("{0}")]
    Config(String),
}

/// An issuer's configuration and status, whichever kind it is.
pub async fn find_issuer(
    ctx: Sources<'_>,
    namespace: &str,
    reference: &IssuerReference,
) -> Result<Option<(IssuerConfig, Option<IssuerStatus>, String)>, SessionError> {
    let name = &reference.name;
    let stores = ctx.stores;
    if reference.kind.as_deref() == Some("ClusterIssuer") {
        if let Some(i) = stores.cluster_issuers.get(&ObjectRef::new(name)) {
            let i = (*i).clone();
            return Ok(Some((
                i.spec.config,
                i.status,
                ctx.cluster_resource_namespace.to_string(),
            )));
        }
        let found = Api::<ClusterIssuer>::all(ctx.client.clone())
            .get_opt(name)
            .await
            .map_err(|e| SessionError::Api(format!("ClusterIssuer {name}"), e))?;
        Ok(found.map(|i| {
            (
                i.spec.config,
                i.status,
                ctx.cluster_resource_namespace.to_string(),
            )
        }))
    } else {
        if let Some(i) = stores.issuers.get(&ObjectRef::new(name).within(namespace)) {
            let i = (*i).clone();
            return Ok(Some((i.spec.config, i.status, namespace.to_string())));
        }
        let found = Api::<Issuer>::namespaced(ctx.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| SessionError::Api(format!("Issuer {namespace}/{name}"), e))?;
        Ok(found.map(|i| (i.spec.config, i.status, namespace.to_string())))
    }
}

pub fn trust(acme: &AcmeIssuer) -> Trust {
    match (&acme.ca_bundle, acme.skip_tls_verify) {
        (_, Some(true)) => Trust::Insecure,
        (Some(bundle), _) => Trust::Bundle(bundle.0.clone()),
        _ => Trust::System,
    }
}

/// The account of the issuer `reference` (seen from `namespace`), once the
/// issuer controller has registered it.
pub async fn session(
    ctx: Sources<'_>,
    namespace: &str,
    reference: &IssuerReference,
) -> Result<Session, SessionError> {
    let kind = reference.kind.as_deref().unwrap_or("Issuer");
    let name = &reference.name;
    let Some((config, status, secret_ns)) = find_issuer(ctx, namespace, reference).await? else {
        return Err(SessionError::NotReady(format!(
            "Referenced {kind} {name:?} not found"
        )));
    };
    let Some(acme) = config.acme else {
        return Err(SessionError::NotReady(format!(
            "Referenced {kind} {name:?} is not an ACME issuer"
        )));
    };
    let ready = status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let uri = status
        .as_ref()
        .and_then(|s| s.acme.as_ref())
        .and_then(|a| a.uri.clone());
    let (Some(uri), Some(_)) = (uri, ready.filter(|r| r.status == ConditionStatus::True)) else {
        let why = ready
            .and_then(|r| r.message.clone())
            .unwrap_or_else(|| "its ACME account is not registered yet".into());
        return Err(SessionError::NotReady(format!(
            "Waiting for {kind} {name:?} to become ready: {why}"
        )));
    };
    // A changed caBundle or skipTLSVerify needs a new client.
    let trust_id = crate::naming::fnv32a(format!("{:?}", trust(&acme)).as_bytes());
    let cache_key = format!("{}|{uri}|{trust_id:08x}", acme.server);
    if let Some(found) = ctx
        .accounts
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&cache_key)
    {
        return Ok(Session {
            issuer: acme.clone(),
            ..found.clone()
        });
    }
    let secret_name = &acme.private_key_secret_ref.name;
    let data_key = acme
        .private_key_secret_ref
        .key
        .clone()
        .unwrap_or_else(|| "tls.key".into());
    let secret_id = format!("{secret_ns}/{secret_name}");
    let pem = Api::<Secret>::namespaced(ctx.client.clone(), &secret_ns)
        .get_opt(secret_name)
        .await
        .map_err(|e| SessionError::Api(format!("Secret {secret_id}"), e))?
        .and_then(|s| s.data)
        .and_then(|d| d.get(&data_key).map(|b| b.0.clone()))
        .ok_or_else(|| {
            SessionError::NotReady(format!("The ACME account key Secret {secret_id} is gone"))
        })?;
    let pkcs8 =
        account::parse_key(&pem, &secret_id).map_err(|e| SessionError::Config(e.to_string()))?;
    let (http, log) =
        recording_client(&trust(&acme)).map_err(|e| SessionError::Config(e.to_string()))?;
    let key = std::sync::Arc::new(pkcs8.clone());
    let loaded = Account::builder_with_http(http)
        .from_parts(uri, PrivatePkcs8KeyDer::from(pkcs8), acme.server.clone())
        .await
        .map_err(SessionError::Acme)?;
    let session = Session {
        account: loaded,
        log,
        issuer: acme,
        key,
    };
    ctx.accounts
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(cache_key, session.clone());
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_concurrent_waiter_sees_the_issuers_listed() {
        let stores = std::sync::Arc::new(IssuerStores::default());
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let stores = stores.clone();
                tokio::spawn(async move { stores.ready().await })
            })
            .collect();
        tokio::task::yield_now().await;
        let mut step = count_listed::<Issuer, ()>(&stores.listed);
        step(Ok(watcher::Event::InitDone)).await;
        step(Ok(watcher::Event::InitDone)).await;
        assert_eq!(*stores.listed.borrow(), 1, "one watch counts once");
        count_listed::<ClusterIssuer, ()>(&stores.listed)(Ok(watcher::Event::InitDone)).await;
        for w in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("every waiter wakes")
                .expect("joined");
        }
    }
}

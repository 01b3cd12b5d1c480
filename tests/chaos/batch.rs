//! A batch of Certificates and what must hold after any chaos: every one
//! Ready, one finalized order per request, nothing temporary left, and no
//! Secret of a Ready Certificate deleted or turned back to an older
//! certificate at any moment (a watch records every version).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certwright::api::{Certificate, CertificateRequest, Challenge};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::common::env::{Env, is_ready};
use crate::common::secret_data;

/// Certificates `<prefix>-<i>` in namespace `ns`, issued by `issuer`.
pub struct Batch {
    pub ns: String,
    pub names: Vec<String>,
    history: Arc<Mutex<BTreeMap<String, Vec<Version>>>>,
    watch: tokio::task::JoinHandle<()>,
}

/// One version of a Secret seen by the watch.
#[derive(Clone, Debug)]
enum Version {
    Written(Vec<u8>),
    Deleted,
}

impl Batch {
    /// Creates the namespace, starts watching its Secrets, then creates
    /// `count` Certificates.
    pub async fn create(env: &Env, ns: &str, issuer: &str, count: usize) -> Batch {
        env.namespace(ns).await;
        let history: Arc<Mutex<BTreeMap<String, Vec<Version>>>> = Arc::default();
        let watch = tokio::spawn(record(
            Api::<Secret>::namespaced(env.client.clone(), ns),
            history.clone(),
        ));
        let names: Vec<String> = (0..count).map(|i| format!("c{i}")).collect();
        for name in &names {
            env.certificate(
                ns,
                name,
                json!({"secretName": format!("{name}-tls"),
                       "dnsNames": [format!("{name}.{ns}.example.test")],
                       "issuerRef": {"name": issuer, "kind": "ClusterIssuer"}}),
            )
            .await;
        }
        Batch {
            ns: ns.into(),
            names,
            history,
            watch,
        }
    }

    /// How many of the batch are Ready now.
    pub async fn ready(&self, env: &Env) -> usize {
        let api: Api<Certificate> = Api::namespaced(env.client.clone(), &self.ns);
        let Ok(list) = api.list(&ListParams::default()).await else {
            return 0;
        };
        list.items.iter().filter(|c| is_ready(c)).count()
    }

    /// Waits until every Certificate is Ready, then checks what must hold;
    /// returns how many CertificateRequests the batch made (the caller
    /// checks the CA finalized as many orders).
    pub async fn converged(self, env: &Env, secs: u64) -> usize {
        let n = self.names.len();
        env.wait(
            &format!("{n} Certificates in {} Ready", self.ns),
            secs,
            || async { (self.ready(env).await == n).then_some(()) },
        )
        .await;
        let requests: Api<CertificateRequest> = Api::namespaced(env.client.clone(), &self.ns);
        let crs = requests
            .list(&ListParams::default())
            .await
            .expect("requests")
            .items;
        let certs: Api<Certificate> = Api::namespaced(env.client.clone(), &self.ns);
        for name in &self.names {
            let cert = certs.get(name).await.expect("certificate");
            let revision = cert.status.and_then(|s| s.revision);
            assert_eq!(revision, Some(1), "{}/{name} issued once", self.ns);
        }
        self.nothing_left(env).await;
        // Every Secret's history: written, never deleted, never back to an
        // older certificate.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.watch.abort();
        let history = self.history.lock().expect("history").clone();
        for name in &self.names {
            let secret = format!("{name}-tls");
            let versions = history.get(&secret).cloned().unwrap_or_default();
            assert!(
                !versions.is_empty(),
                "{}/{secret}: the watch saw it written",
                self.ns
            );
            let mut seen: Vec<&Vec<u8>> = Vec::new();
            for v in &versions {
                match v {
                    Version::Deleted => panic!("{}/{secret} was deleted", self.ns),
                    Version::Written(crt) if crt.is_empty() => {}
                    Version::Written(crt) => {
                        if seen.last() != Some(&crt) {
                            assert!(
                                !seen.contains(&crt),
                                "{}/{secret} went back to an older certificate",
                                self.ns
                            );
                            seen.push(crt);
                        }
                    }
                }
            }
            let now = Api::<Secret>::namespaced(env.client.clone(), &self.ns)
                .get(&secret)
                .await
                .expect("the Secret");
            assert_eq!(
                seen.last().map(|c| c.as_slice()),
                Some(secret_data(&now, "tls.crt").as_slice()),
                "{}/{secret}: the watch saw the last version",
                self.ns
            );
        }
        crs.len()
    }

    /// No temporary key Secret, Challenge, or solver Pod, Service or
    /// Ingress is left in the namespace.
    async fn nothing_left(&self, env: &Env) {
        let ns = &self.ns;
        let client = &env.client;
        env.wait(&format!("nothing temporary left in {ns}"), 60, || async {
            let left = count::<Secret>(client, ns, "cert-manager.io/next-private-key=true").await?
                + count::<Challenge>(client, ns, "").await?
                + count::<Pod>(client, ns, SOLVER).await?
                + count::<Service>(client, ns, SOLVER).await?
                + count::<Ingress>(client, ns, SOLVER).await?;
            (left == 0).then_some(())
        })
        .await;
    }
}

const SOLVER: &str = "acme.cert-manager.io/http01-solver=true";

/// How many objects of kind `K` in `ns` carry `labels` (all when empty).
async fn count<K>(client: &kube::Client, ns: &str, labels: &str) -> Option<usize>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let list = Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(labels))
        .await
        .ok()?;
    Some(list.items.len())
}

/// Records every version of every Secret in the namespace until aborted.
async fn record(api: Api<Secret>, history: Arc<Mutex<BTreeMap<String, Vec<Version>>>>) {
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
    while let Some(event) = events.next().await {
        let Ok(event) = event else {
            continue;
        };
        let mut history = history.lock().expect("history");
        match event {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                history
                    .entry(name)
                    .or_default()
                    .push(Version::Written(secret_data(&s, "tls.crt")));
            }
            watcher::Event::Delete(s) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                history.entry(name).or_default().push(Version::Deleted);
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }
}

/// A small seeded generator (splitmix64): the run's random moments, so a
/// failure replays with its seed.
pub struct Rng(u64);

impl Rng {
    /// From `CHAOS_SEED`, else `default`; the seed is printed.
    pub fn seeded(default: u64) -> Rng {
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("chaos: seed {seed} (CHAOS_SEED={seed} replays it)");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration in [lo, hi) milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// The full run (`CHAOS_FULL=1`): more Certificates and kills.
pub fn full() -> bool {
    std::env::var_os("CHAOS_FULL").is_some()
}

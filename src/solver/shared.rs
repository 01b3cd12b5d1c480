//! The shared solver mode: every replica serves every live Challenge's
//! token from memory (filled by a watch on Challenges). An Ingress can only
//! route to a Service of its own namespace, so each namespace with live
//! Challenges gets a selector-less Service `certwright-solver` whose
//! EndpointSlice mirrors the ready endpoints of certwright's own solver
//! Service; per Challenge only a route is added (see [`super::ingress`]).
//! The Service and slice are removed when the namespace's last Challenge
//! ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::server::{self, Presented, Tokens};
use super::{SLICE_MANAGER, SOLVER_LABEL, apply_params, ignore_missing, ingress, live};
use crate::api::Challenge;
use crate::solver::settings::SolverSettings;
use crate::solver::state::Solvers;

/// The selector-less Service of a Challenge namespace.
pub fn service(namespace: &str, settings: &SolverSettings) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": settings.service, "namespace": namespace,
                     "labels": {SOLVER_LABEL: "true", "app.kubernetes.io/managed-by": "certwright"}},
        "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": settings.port, "targetPort": settings.port, "protocol": "TCP"}]}})
}

/// The EndpointSlice of that Service: the ready solver endpoints of
/// certwright's own Service.
pub fn mirror_slice(namespace: &str, settings: &SolverSettings, addresses: &[String]) -> Value {
    // One family per slice: IPv6 when the solver has only IPv6 endpoints
    // (an IPv6-only cluster), else its IPv4 ones.
    let is_v6 = |ip: &String| ip.parse::<std::net::Ipv6Addr>().is_ok();
    let v6 = !addresses.is_empty() && addresses.iter().all(is_v6);
    let endpoints: Vec<Value> = addresses
        .iter()
        .filter(|ip| is_v6(ip) == v6)
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{}-mirror", settings.service), "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": settings.service,
                                "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
                                SOLVER_LABEL: "true"}},
        "addressType": if v6 { "IPv6" } else { "IPv4" },
        "ports": [{"name": "http", "port": settings.port, "protocol": "TCP"}],
        "endpoints": endpoints})
}

/// Ready addresses of certwright's own solver Service.
pub async fn source_addresses(solvers: &Solvers) -> Result<Vec<String>, kube::Error> {
    let settings = &solvers.settings;
    let slices: Api<EndpointSlice> = Api::namespaced(solvers.client.clone(), &settings.namespace);
    let listed = slices
        .list(
            &ListParams::default()
                .labels(&format!("kubernetes.io/service-name={}", settings.service)),
        )
        .await?;
    let mut out: Vec<String> = listed
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Creates (or refreshes) the namespace's Service and mirror slice, and
/// routes the token to it. The Service and slice are applied once per
/// namespace while this process knows them there (the mirror task keeps
/// slices up to date), and `again` when a presented token does not answer.
/// Err(message) is a configuration problem for the Challenge's reason;
/// API errors are returned as such.
pub async fn present(
    solvers: &Solvers,
    ch: &Challenge,
    again: bool,
) -> Result<Result<(), String>, kube::Error> {
    let settings = &solvers.settings;
    let ns = ch.namespace().unwrap_or_default();
    if let Err(why) = ingress::solver(ch) {
        return Ok(Err(why));
    }
    // One at a time, so a batch of Challenges applies them once.
    let applying = solvers.applying.lock().await;
    if ns != settings.namespace && (again || solvers.service_ip(&ns).is_none()) {
        let addresses = source_addresses(solvers).await?;
        let applied = Api::<Service>::namespaced(solvers.client.clone(), &ns)
            .patch(
                &settings.service,
                &apply_params(),
                &Patch::Apply(service(&ns, settings)),
            )
            .await?;
        solvers.note_service(&ns, &applied);
        let slice = mirror_slice(&ns, settings, &addresses);
        Api::<EndpointSlice>::namespaced(solvers.client.clone(), &ns)
            .patch(
                &format!("{}-mirror", settings.service),
                &apply_params(),
                &Patch::Apply(slice),
            )
            .await?;
    }
    drop(applying);
    ingress::present(
        &solvers.client,
        ch,
        &settings.service,
        settings.port,
        settings.path_type,
    )
    .await
}

/// Where the namespace's solver Service answers (its cluster IP), for the
/// in-cluster self-check; read once per namespace, then remembered.
pub async fn service_address(
    solvers: &Solvers,
    namespace: &str,
) -> Result<Option<SocketAddr>, kube::Error> {
    if let Some(ip) = solvers.service_ip(namespace) {
        return Ok(Some(SocketAddr::new(ip, solvers.settings.port)));
    }
    let found = Api::<Service>::namespaced(solvers.client.clone(), namespace)
        .get_opt(&solvers.settings.service)
        .await?;
    Ok(found.and_then(|s| {
        solvers.note_service(namespace, &s);
        solvers
            .service_ip(namespace)
            .map(|ip| SocketAddr::new(ip, solvers.settings.port))
    }))
}

/// Removes the namespace's Service and slice when no other live Challenge
/// needs them (the route goes with [`ingress::cleanup`]).
pub async fn cleanup(
    solvers: &Solvers,
    ch: &Challenge,
    others_here: bool,
) -> Result<(), kube::Error> {
    let settings = &solvers.settings;
    let ns = ch.namespace().unwrap_or_default();
    if ns == settings.namespace {
        return Ok(());
    }
    // Challenges being worked on here are known without asking
    // (`others_here`); only when none is left is the namespace listed
    // (after a restart some may not have been claimed again yet).
    let others = others_here
        || Api::<Challenge>::namespaced(solvers.client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .any(|c| c.uid() != ch.uid() && c.meta().deletion_timestamp.is_none() && live(&c));
    if !others {
        solvers.forget_service(&ns);
        ignore_missing(
            Api::<Service>::namespaced(solvers.client.clone(), &ns)
                .delete(&settings.service, &DeleteParams::default())
                .await,
        )?;
        ignore_missing(
            Api::<EndpointSlice>::namespaced(solvers.client.clone(), &ns)
                .delete(
                    &format!("{}-mirror", settings.service),
                    &DeleteParams::default(),
                )
                .await,
        )?;
    }
    Ok(())
}

/// Keeps every mirror slice equal to the source Service's endpoints.
pub async fn mirror(solvers: Arc<Solvers>) {
    let settings = solvers.settings.clone();
    let source: Api<EndpointSlice> = Api::namespaced(solvers.client.clone(), &settings.namespace);
    let config = watcher::Config::default()
        .labels(&format!("kubernetes.io/service-name={}", settings.service));
    // A failing watch backs off (up to a minute) instead of relisting at once.
    let mut events = watcher(source, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        if let Err(e) = &event {
            tracing::warn!(error = %e, "watching the solver Service's EndpointSlices failed; retrying with backoff");
        }
        if matches!(
            event,
            Err(_) | Ok(watcher::Event::Init | watcher::Event::InitApply(_))
        ) {
            continue;
        }
        let addresses = match source_addresses(&solvers).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "reading the solver Service's endpoints failed");
                continue;
            }
        };
        let mirrors: Api<EndpointSlice> = Api::all(solvers.client.clone());
        let listed = match mirrors
            .list(&ListParams::default().labels(&format!(
                "endpointslice.kubernetes.io/managed-by={SLICE_MANAGER}"
            )))
            .await
        {
            Ok(l) => l.items,
            Err(e) => {
                tracing::warn!(error = %e, "listing mirrored EndpointSlices failed");
                continue;
            }
        };
        for slice in listed {
            let ns = slice.namespace().unwrap_or_default();
            let wanted = mirror_slice(&ns, &settings, &addresses);
            let result = Api::<EndpointSlice>::namespaced(solvers.client.clone(), &ns)
                .patch(&slice.name_any(), &apply_params(), &Patch::Apply(wanted))
                .await;
            if let Err(e) = result {
                tracing::warn!(namespace = %ns, error = %e, "updating a mirrored EndpointSlice failed");
            }
        }
    }
}

/// The token table entry of a Challenge, if it is to be served.
fn entry(ch: &Challenge) -> Option<(String, Presented)> {
    live(ch).then(|| {
        (
            ch.spec.token.clone(),
            Presented {
                domain: ch.spec.dns_name.trim_end_matches('.').to_ascii_lowercase(),
                key_authorization: ch.spec.key.clone(),
                accepted: accepted(ch),
            },
        )
    })
}

/// A Challenge's reason once the CA is asked to validate it.
pub const WAITING_FOR_CA: &str = "Accepted the challenge; waiting for the CA to validate it";

/// Whether the CA was asked to validate `ch` (or is being asked, or a
/// run of failures to ask it is under way), as its status says.
fn accepted(ch: &Challenge) -> bool {
    ch.status
        .as_ref()
        .and_then(|s| s.reason.as_deref())
        .is_some_and(|r| r == WAITING_FOR_CA || crate::acme::retry::Run::parse(r).is_some())
}

/// How the token watch is doing, for `/readyz`: listed once, and since
/// when it has been failing.
#[derive(Debug, Default)]
pub struct TokenWatch {
    listed: std::sync::atomic::AtomicBool,
    failing_since: std::sync::Mutex<Option<std::time::Instant>>,
}

impl TokenWatch {
    /// The table was filled from a complete list at least once.
    pub fn listed(&self) -> bool {
        self.listed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long the watch has been failing, if it is.
    pub fn failing_for(&self) -> Option<std::time::Duration> {
        self.failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|since| since.elapsed())
    }

    pub(crate) fn up(&self) {
        self.listed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        *self.failing_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(crate) fn failed(&self) {
        self.failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(std::time::Instant::now);
    }
}

/// The pause before the `failures`-th fresh list of a failing token watch:
/// 1 s, doubling, at most 30 s.
fn relist_pause(failures: u32) -> std::time::Duration {
    const RELIST: crate::runtime::settings::Backoff = crate::runtime::settings::Backoff {
        min: std::time::Duration::from_secs(1),
        max: std::time::Duration::from_secs(30),
    };
    RELIST.after_failure(failures, None)
}

/// Fills `tokens` from a watch on every Challenge (those `keep` accepts),
/// for ever. `health` says when the table was first filled from a complete
/// list, and since when the watch has been failing: a failed watch is
/// started again from a fresh list after a growing pause, so only a list
/// that succeeds says the watch is back (a watch that resumes quietly
/// gives no sign of it).
pub async fn fill(
    client: kube::Client,
    tokens: Tokens,
    keep: impl Fn(&Challenge) -> bool,
    health: &TokenWatch,
) {
    let entry = |ch: &Challenge| entry(ch).filter(|_| keep(ch));
    let api: Api<Challenge> = Api::all(client);
    let mut failures = 0;
    loop {
        let mut by_uid: HashMap<String, String> = HashMap::new();
        let mut fresh: Option<HashMap<String, Presented>> = None;
        let mut fresh_uids: HashMap<String, String> = HashMap::new();
        let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(error = %e, "watching Challenges for the token table failed; listing them again after a pause");
                    health.failed();
                    break;
                }
            };
            match event {
                watcher::Event::Init => {
                    fresh = Some(HashMap::new());
                    fresh_uids.clear();
                }
                watcher::Event::InitApply(ch) => {
                    if let (Some(table), Some((token, presented))) = (fresh.as_mut(), entry(&ch)) {
                        fresh_uids.insert(ch.uid().unwrap_or_default(), token.clone());
                        table.insert(token, presented);
                    }
                }
                watcher::Event::InitDone => {
                    if let Some(table) = fresh.take() {
                        *tokens.write().unwrap_or_else(|e| e.into_inner()) = table;
                        by_uid = std::mem::take(&mut fresh_uids);
                        health.up();
                        failures = 0;
                    }
                }
                watcher::Event::Apply(ch) => {
                    let uid = ch.uid().unwrap_or_default();
                    let mut table = tokens.write().unwrap_or_else(|e| e.into_inner());
                    if let Some(old) = by_uid.remove(&uid) {
                        table.remove(&old);
                    }
                    if let Some((token, presented)) = entry(&ch) {
                        by_uid.insert(uid, token.clone());
                        table.insert(token, presented);
                    }
                }
                watcher::Event::Delete(ch) => {
                    if let Some(old) = by_uid.remove(&ch.uid().unwrap_or_default()) {
                        tokens
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&old);
                    }
                }
            }
        }
        failures += 1;
        tokio::time::sleep(relist_pause(failures)).await;
    }
}

/// Serves every live Challenge's token on `addr` (the shared solver),
/// kept in `tokens`; `health` says how the watch behind them is doing.
pub async fn serve(
    client: kube::Client,
    addr: SocketAddr,
    health: &TokenWatch,
    tokens: Tokens,
) -> std::io::Result<()> {
    tokio::select! {
        served = server::serve(addr, tokens.clone()) => served,
        () = fill(client, tokens, |_| true, health) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::order::AcmeState;
    use crate::solver::tests::challenge;

    #[test]
    fn mirror_slice_lists_the_ready_addresses_under_the_service_name() {
        let settings = SolverSettings::default();
        let slice = mirror_slice("apps", &settings, &["10.0.0.1".into(), "10.0.0.2".into()]);
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "certwright-solver"
        );
        assert_eq!(slice["endpoints"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            slice["ports"][0]["name"],
            service("apps", &settings)["spec"]["ports"][0]["name"]
        );
        assert_eq!(slice["addressType"], "IPv4");
        let v6 = mirror_slice("apps", &settings, &["fd00::1".into(), "fd00::2".into()]);
        assert_eq!(v6["addressType"], "IPv6", "an IPv6-only cluster");
        assert_eq!(v6["endpoints"].as_array().map(Vec::len), Some(2));
        let dual = mirror_slice("apps", &settings, &["fd00::1".into(), "10.0.0.1".into()]);
        assert_eq!(dual["addressType"], "IPv4");
        assert_eq!(
            dual["endpoints"][0]["addresses"][0], "10.0.0.1",
            "one family per slice"
        );
        assert_eq!(dual["endpoints"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn a_failing_token_watch_lists_again_after_a_growing_pause() {
        let pauses: Vec<u64> = (1..=8).map(|n| relist_pause(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30, 30]);
        let health = TokenWatch::default();
        assert!(!health.listed());
        health.failed();
        assert!(health.failing_for().is_some());
        health.up();
        assert!(health.listed());
        assert_eq!(health.failing_for(), None);
    }

    #[test]
    fn only_live_http01_challenges_are_served() {
        let mut ch = challenge(json!({"http01": {"ingress": {}}}));
        assert_eq!(
            entry(&ch).map(|(t, p)| (t, p.domain)),
            Some(("tok".into(), "app.example.com".into()))
        );
        ch.status = Some(crate::api::challenge::ChallengeStatus {
            state: Some(AcmeState::Valid),
            ..Default::default()
        });
        assert!(entry(&ch).is_none());
    }
}

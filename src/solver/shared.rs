//! The shared solver mode: every replica serves every live Challenge's
//! token from memory (filled by a watch on Challenges). An Ingress can only
//! route to a Service of its own namespace, so each namespace with live
//! Challenges gets a selector-less Service `certwright-solver` whose
//! EndpointSlice mirrors the ready endpoints of certwright's own solver
//! Service; per Challenge only an Ingress is created. All are removed when
//! the namespace's last Challenge ends.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::server::{self, Presented, Tokens};
use crate::api::Challenge;
use crate::api::challenge::ChallengeType;
use crate::api::order::AcmeState;
use crate::context::{Context, SolverSettings};
use crate::orders::naming::fnv32a;

/// Field manager of the solver resources.
pub const MANAGER: &str = "certwright-solver";
/// Label on every solver resource, as cert-manager sets it.
pub const SOLVER_LABEL: &str = "acme.cert-manager.io/http01-solver";
/// EndpointSlices certwright mirrors carry this `managed-by`.
pub const SLICE_MANAGER: &str = "certwright.io";

/// The name of the Ingress presenting `challenge`.
pub fn ingress_name(challenge: &str) -> String {
    format!("cm-acme-http-solver-{:08x}", fnv32a(challenge.as_bytes()))
}

/// Whether a Challenge still needs its token served.
pub fn live(ch: &Challenge) -> bool {
    ch.spec.type_ == ChallengeType::Http01
        && !matches!(
            ch.status.as_ref().and_then(|s| s.state),
            Some(AcmeState::Valid | AcmeState::Invalid | AcmeState::Errored | AcmeState::Expired)
        )
}

/// The Ingress routing the challenge's token path for its host to the
/// namespace's solver Service; Err says why the solver cannot be used.
pub fn ingress(ch: &Challenge, settings: &SolverSettings) -> Result<Value, String> {
    let Some(solver) = ch
        .spec
        .solver
        .http01
        .as_ref()
        .and_then(|h| h.ingress.as_ref())
    else {
        return Err("the solver has no http01.ingress section; certwright's shared mode routes tokens through an Ingress".into());
    };
    if solver.name.is_some() {
        return Err("http01.ingress.name (editing an existing Ingress) is not supported yet; use ingressClassName or class".into());
    }
    let name = ch.name_any();
    let mut labels: BTreeMap<String, String> = solver
        .ingress_template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(SOLVER_LABEL.into(), "true".into());
    labels.insert(
        "acme.cert-manager.io/http-domain".into(),
        fnv32a(ch.spec.dns_name.as_bytes()).to_string(),
    );
    labels.insert(
        "acme.cert-manager.io/http-token".into(),
        fnv32a(ch.spec.token.as_bytes()).to_string(),
    );
    let mut annotations: BTreeMap<String, String> = solver
        .ingress_template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    if let Some(class) = &solver.class {
        annotations.insert("kubernetes.io/ingress.class".into(), class.clone());
    }
    let owner = json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge", "name": name,
        "uid": ch.meta().uid, "controller": true, "blockOwnerDeletion": true});
    let mut spec = json!({"rules": [{"host": ch.spec.dns_name, "http": {"paths": [{
        "path": format!("/.well-known/acme-challenge/{}", ch.spec.token),
        "pathType": "ImplementationSpecific",
        "backend": {"service": {"name": settings.service, "port": {"number": settings.port}}}}]}}]});
    if let Some(class) = &solver.ingress_class_name {
        spec["ingressClassName"] = json!(class);
    }
    Ok(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": ingress_name(&name), "namespace": ch.namespace(), "labels": labels,
                     "annotations": annotations, "ownerReferences": [owner]},
        "spec": spec}),
    )
}

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
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{}-mirror", settings.service), "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": settings.service,
                                "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
                                SOLVER_LABEL: "true"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": settings.port, "protocol": "TCP"}],
        "endpoints": endpoints})
}

/// Ready addresses of certwright's own solver Service.
pub async fn source_addresses(ctx: &Context) -> Result<Vec<String>, kube::Error> {
    let settings = &ctx.solver;
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &settings.namespace);
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

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// Creates (or refreshes) the namespace's Service and mirror slice and the
/// Challenge's Ingress. Err(message) is a configuration problem for the
/// Challenge's reason; API errors are returned as such.
pub async fn present(ctx: &Context, ch: &Challenge) -> Result<Result<(), String>, kube::Error> {
    let settings = &ctx.solver;
    let ns = ch.namespace().unwrap_or_default();
    let ingress = match ingress(ch, settings) {
        Ok(i) => i,
        Err(why) => return Ok(Err(why)),
    };
    if ns != settings.namespace {
        let addresses = source_addresses(ctx).await?;
        Api::<Service>::namespaced(ctx.client.clone(), &ns)
            .patch(
                &settings.service,
                &apply_params(),
                &Patch::Apply(service(&ns, settings)),
            )
            .await?;
        let slice = mirror_slice(&ns, settings, &addresses);
        Api::<EndpointSlice>::namespaced(ctx.client.clone(), &ns)
            .patch(
                &format!("{}-mirror", settings.service),
                &apply_params(),
                &Patch::Apply(slice),
            )
            .await?;
    }
    Api::<Ingress>::namespaced(ctx.client.clone(), &ns)
        .patch(
            &ingress_name(&ch.name_any()),
            &apply_params(),
            &Patch::Apply(ingress),
        )
        .await?;
    Ok(Ok(()))
}

fn ignore_missing(r: Result<impl Sized, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the Challenge's Ingress, and the namespace's Service and slice
/// when no other live Challenge needs them.
pub async fn cleanup(ctx: &Context, ch: &Challenge) -> Result<(), kube::Error> {
    let settings = &ctx.solver;
    let ns = ch.namespace().unwrap_or_default();
    ignore_missing(
        Api::<Ingress>::namespaced(ctx.client.clone(), &ns)
            .delete(&ingress_name(&ch.name_any()), &DeleteParams::default())
            .await,
    )?;
    if ns == settings.namespace {
        return Ok(());
    }
    // Challenges being worked on here are known without asking; only
    // when none is left is the namespace listed (after a restart some may
    // not have been claimed again yet).
    let uid = ch.uid().unwrap_or_default();
    let others = ctx.in_flight().others_in(&ns, &uid)
        || Api::<Challenge>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .any(|c| c.uid() != ch.uid() && c.meta().deletion_timestamp.is_none() && live(&c));
    if !others {
        ignore_missing(
            Api::<Service>::namespaced(ctx.client.clone(), &ns)
                .delete(&settings.service, &DeleteParams::default())
                .await,
        )?;
        ignore_missing(
            Api::<EndpointSlice>::namespaced(ctx.client.clone(), &ns)
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
pub async fn mirror(ctx: Arc<Context>) {
    let settings = ctx.solver.clone();
    let source: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &settings.namespace);
    let config = watcher::Config::default()
        .labels(&format!("kubernetes.io/service-name={}", settings.service));
    let mut events = watcher(source, config).boxed();
    while let Some(event) = events.next().await {
        if matches!(
            event,
            Err(_) | Ok(watcher::Event::Init | watcher::Event::InitApply(_))
        ) {
            continue;
        }
        let addresses = match source_addresses(&ctx).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "reading the solver Service's endpoints failed");
                continue;
            }
        };
        let mirrors: Api<EndpointSlice> = Api::all(ctx.client.clone());
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
            let result = Api::<EndpointSlice>::namespaced(ctx.client.clone(), &ns)
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
            },
        )
    })
}

/// Fills `tokens` from a watch on every Challenge, until the watch ends.
pub async fn fill(client: kube::Client, tokens: Tokens) {
    let api: Api<Challenge> = Api::all(client);
    let mut by_uid: HashMap<String, String> = HashMap::new();
    let mut fresh: Option<HashMap<String, Presented>> = None;
    let mut fresh_uids: HashMap<String, String> = HashMap::new();
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
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
}

/// Serves every live Challenge's token on `addr` (the shared solver).
pub async fn serve(client: kube::Client, addr: SocketAddr) -> std::io::Result<()> {
    let tokens: Tokens = Arc::new(RwLock::new(HashMap::new()));
    tokio::select! {
        served = server::serve(addr, tokens.clone()) => served,
        () = fill(client, tokens) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(solver: Value) -> Challenge {
        serde_json::from_value(json!({
            "apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
            "metadata": {"name": "web-1-123-456", "namespace": "apps", "uid": "u1"},
            "spec": {"url": "https://ca/chal", "authorizationURL": "https://ca/authz", "dnsName": "app.example.com",
                     "type": "HTTP-01", "token": "tok", "key": "tok.thumb", "solver": solver, "issuerRef": {"name": "le"}}
        }))
        .expect("challenge")
    }

    #[test]
    fn ingress_routes_the_token_path_for_the_host_with_the_solver_class() {
        let settings = SolverSettings::default();
        let ch = challenge(json!({"http01": {"ingress": {"ingressClassName": "nginx",
            "ingressTemplate": {"metadata": {"labels": {"team": "a"}, "annotations": {"x": "y"}}}}}}));
        let ing = ingress(&ch, &settings).expect("ingress");
        assert_eq!(ing["spec"]["ingressClassName"], "nginx");
        assert_eq!(ing["metadata"]["labels"]["team"], "a");
        assert_eq!(ing["metadata"]["labels"][SOLVER_LABEL], "true");
        assert_eq!(ing["metadata"]["annotations"]["x"], "y");
        assert_eq!(ing["metadata"]["ownerReferences"][0]["uid"], "u1");
        let rule = &ing["spec"]["rules"][0];
        assert_eq!(rule["host"], "app.example.com");
        assert_eq!(
            rule["http"]["paths"][0]["path"],
            "/.well-known/acme-challenge/tok"
        );
        assert_eq!(
            rule["http"]["paths"][0]["backend"]["service"]["name"],
            "certwright-solver"
        );
        assert_eq!(
            rule["http"]["paths"][0]["backend"]["service"]["port"]["number"],
            8089
        );

        let classed = ingress(
            &challenge(json!({"http01": {"ingress": {"class": "traefik"}}})),
            &settings,
        )
        .expect("ingress");
        assert_eq!(
            classed["metadata"]["annotations"]["kubernetes.io/ingress.class"],
            "traefik"
        );
        assert!(classed["spec"].get("ingressClassName").is_none());

        let named = ingress(
            &challenge(json!({"http01": {"ingress": {"name": "existing"}}})),
            &settings,
        );
        assert!(
            named
                .expect_err("edit in place")
                .contains("http01.ingress.name")
        );
        assert!(ingress(&challenge(json!({"http01": {}})), &settings).is_err());
    }

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

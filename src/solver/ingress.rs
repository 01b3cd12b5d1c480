//! The Ingress that routes a token to whoever serves it (the namespace's
//! shared solver Service, or a solver Pod's Service): either one created
//! per Challenge and owned by it, or, with `http01.ingress.name`, a user's
//! existing Ingress edited in place: exactly one rule (the challenge's
//! host and token path) added, and exactly that rule removed on cleanup,
//! with optimistic concurrency so a concurrent edit is never lost.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

pub use super::settings::PathType;
use super::{MANAGER, SOLVER_LABEL, apply_params, ignore_missing};
use crate::api::Challenge;
use crate::api::http01::Http01IngressSolver;
use crate::naming::fnv32a;

/// Name of the resources created for `challenge` (Ingress, and in pod
/// mode the Pod and Service).
pub fn resource_name(challenge: &str) -> String {
    format!("cm-acme-http-solver-{:08x}", fnv32a(challenge.as_bytes()))
}

/// cert-manager's labels on every solver resource of a Challenge.
pub fn labels(ch: &Challenge) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SOLVER_LABEL.to_string(), "true".to_string()),
        (
            "acme.cert-manager.io/http-domain".to_string(),
            fnv32a(ch.spec.dns_name.as_bytes()).to_string(),
        ),
        (
            "acme.cert-manager.io/http-token".to_string(),
            fnv32a(ch.spec.token.as_bytes()).to_string(),
        ),
    ])
}

/// The Challenge as controlling owner of what is made for it.
pub fn owner(ch: &Challenge) -> Value {
    json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge", "name": ch.name_any(),
        "uid": ch.meta().uid, "controller": true, "blockOwnerDeletion": true})
}

/// The Challenge's Ingress solver, or why there is none.
pub fn solver(ch: &Challenge) -> Result<&Http01IngressSolver, String> {
    let solver = ch
        .spec
        .solver
        .http01
        .as_ref()
        .and_then(|h| h.ingress.as_ref())
        .ok_or("the solver has no http01.ingress section; certwright routes HTTP-01 tokens through an Ingress (gatewayHTTPRoute is not supported yet)")?;
    let set = [
        solver.class.is_some(),
        solver.ingress_class_name.is_some(),
        solver.name.is_some(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err("http01.ingress sets more than one of class, ingressClassName and name; they are mutually exclusive".into());
    }
    Ok(solver)
}

/// The rule's host for `ch`: its name, or none for an IP identifier (an
/// Ingress host cannot be an address; a rule without one matches every
/// host, and the token path is unique).
fn rule_host(ch: &Challenge) -> Value {
    let name = ch.spec.dns_name.trim_end_matches('.');
    match name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        Ok(_) => Value::Null,
        Err(_) => json!(name),
    }
}

/// The rule routing the token path for the host to `service:port`.
fn rule(ch: &Challenge, service: &str, port: u16, path_type: PathType) -> Value {
    let mut rule = json!({"http": {"paths": [path(ch, service, port, path_type)]}});
    if let host @ Value::String(_) = rule_host(ch) {
        rule["host"] = host;
    }
    rule
}

fn path(ch: &Challenge, service: &str, port: u16, path_type: PathType) -> Value {
    json!({"path": super::check::token_path(&ch.spec.token), "pathType": path_type.as_str(),
        "backend": {"service": {"name": service, "port": {"number": port}}}})
}

/// The Ingress created for `ch`, routing to `service:port`.
pub fn created(
    ch: &Challenge,
    solver: &Http01IngressSolver,
    service: &str,
    port: u16,
    path_type: PathType,
) -> Value {
    let template = solver
        .ingress_template
        .as_ref()
        .and_then(|t| t.metadata.as_ref());
    let mut all_labels = template.and_then(|m| m.labels.clone()).unwrap_or_default();
    all_labels.extend(labels(ch));
    let mut annotations = template
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    if let Some(class) = &solver.class {
        annotations.insert("kubernetes.io/ingress.class".into(), class.clone());
    }
    let mut spec = json!({"rules": [rule(ch, service, port, path_type)]});
    if let Some(class) = &solver.ingress_class_name {
        spec["ingressClassName"] = json!(class);
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": resource_name(&ch.name_any()), "namespace": ch.namespace(), "labels": all_labels,
                     "annotations": annotations, "ownerReferences": [owner(ch)]},
        "spec": spec})
}

/// `ingress` with the challenge's rule added; None if it is there already.
pub fn with_rule(
    ingress: &Ingress,
    ch: &Challenge,
    service: &str,
    port: u16,
    path_type: PathType,
) -> Option<Ingress> {
    let mut value = serde_json::to_value(ingress).ok()?;
    let wanted = path(ch, service, port, path_type);
    let host = rule_host(ch);
    let mut rules = value["spec"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let present = rules.iter().any(|r| {
        r["host"] == host
            && r["http"]["paths"]
                .as_array()
                .is_some_and(|p| p.contains(&wanted))
    });
    if present {
        return None;
    }
    rules.push(rule(ch, service, port, path_type));
    value["spec"]["rules"] = Value::Array(rules);
    serde_json::from_value(value).ok()
}

/// `ingress` without the challenge's path (and without a rule left empty
/// by its removal); None when there is nothing of ours in it.
pub fn without_rule(ingress: &Ingress, ch: &Challenge) -> Option<Ingress> {
    let mut value = serde_json::to_value(ingress).ok()?;
    let token_path = super::check::token_path(&ch.spec.token);
    let host = rule_host(ch);
    let rules = value["spec"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut changed = false;
    let mut kept = Vec::new();
    for mut r in rules {
        if r["host"] == host
            && let Some(paths) = r["http"]["paths"].as_array()
            && paths.iter().any(|p| p["path"] == token_path)
        {
            let rest: Vec<Value> = paths
                .iter()
                .filter(|p| p["path"] != token_path)
                .cloned()
                .collect();
            changed = true;
            if rest.is_empty() {
                continue;
            }
            r["http"]["paths"] = Value::Array(rest);
        }
        kept.push(r);
    }
    if !changed {
        return None;
    }
    value["spec"]["rules"] = Value::Array(kept);
    serde_json::from_value(value).ok()
}

/// Replaces an Ingress with `change` applied, re-reading and retrying on
/// a conflict (someone else edited it meanwhile). Ok(Err) when the
/// Ingress does not exist.
async fn edit(
    api: &Api<Ingress>,
    name: &str,
    change: impl Fn(&Ingress) -> Option<Ingress>,
) -> Result<Result<(), String>, kube::Error> {
    for _ in 0..5 {
        let Some(current) = api.get_opt(name).await? else {
            return Ok(Err(format!(
                "the Ingress {name:?} named by http01.ingress.name does not exist"
            )));
        };
        let Some(next) = change(&current) else {
            return Ok(Ok(()));
        };
        let params = PostParams {
            field_manager: Some(MANAGER.into()),
            ..PostParams::default()
        };
        match api.replace(name, &params, &next).await {
            Ok(_) => return Ok(Ok(())),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Err(format!(
        "the Ingress {name:?} kept changing while certwright edited it; will try again"
    )))
}

/// Routes the token to `service:port`: creates the Challenge's Ingress or
/// adds the rule to the named one.
pub async fn present(
    client: &kube::Client,
    ch: &Challenge,
    service: &str,
    port: u16,
    path_type: PathType,
) -> Result<Result<(), String>, kube::Error> {
    let solver = match solver(ch) {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let api: Api<Ingress> = Api::namespaced(client.clone(), &ch.namespace().unwrap_or_default());
    if let Some(name) = &solver.name {
        return edit(&api, name, |i| with_rule(i, ch, service, port, path_type)).await;
    }
    let ingress = created(ch, solver, service, port, path_type);
    api.patch(
        &resource_name(&ch.name_any()),
        &apply_params(),
        &Patch::Apply(ingress),
    )
    .await?;
    Ok(Ok(()))
}

/// Undoes [`present`]; Ok(Err) says why the route stays in the user's
/// Ingress (it kept changing under the edit). An Ingress gone took the
/// route with it.
pub async fn cleanup(
    client: &kube::Client,
    ch: &Challenge,
) -> Result<Result<(), String>, kube::Error> {
    let api: Api<Ingress> = Api::namespaced(client.clone(), &ch.namespace().unwrap_or_default());
    let named = solver(ch).ok().and_then(|i| i.name.clone());
    match named {
        Some(name) => match edit(&api, &name, |i| without_rule(i, ch)).await? {
            Err(why) if api.get_opt(&name).await?.is_some() => Ok(Err(format!(
                "the challenge's route is left in Ingress {name:?}: {why}"
            ))),
            _ => Ok(Ok(())),
        },
        None => ignore_missing(
            api.delete(&resource_name(&ch.name_any()), &DeleteParams::default())
                .await,
        )
        .map(Ok),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::tests::challenge;

    #[test]
    fn an_ip_identifier_gets_a_rule_without_a_host() {
        for ip in ["192.0.2.7", "2001:db8::1"] {
            let mut ch = challenge(json!({"http01": {"ingress": {"name": "shared"}}}));
            ch.spec.dns_name = ip.into();
            let ing = created(
                &ch,
                solver(&ch).expect("solver"),
                "svc",
                8089,
                PathType::Exact,
            );
            let rule = &ing["spec"]["rules"][0];
            assert!(rule.get("host").is_none(), "{ip}: {rule}");
            assert_eq!(
                rule["http"]["paths"][0]["path"],
                "/.well-known/acme-challenge/tok"
            );
            // Added to and removed from a named Ingress by its path alone.
            let named: Ingress = serde_json::from_value(json!({"metadata": {"name": "shared"},
                "spec": {"rules": [{"host": "app.example.com", "http": {"paths": []}}]}}))
            .expect("ingress");
            let added = with_rule(&named, &ch, "svc", 8089, PathType::Exact).expect("added");
            assert!(
                with_rule(&added, &ch, "svc", 8089, PathType::Exact).is_none(),
                "once"
            );
            let removed = without_rule(&added, &ch).expect("removed");
            assert_eq!(removed.spec, named.spec, "{ip}");
        }
    }

    #[test]
    fn created_ingress_routes_the_token_path_for_the_host_with_the_class() {
        let ch = challenge(json!({"http01": {"ingress": {"ingressClassName": "nginx",
            "ingressTemplate": {"metadata": {"labels": {"team": "a"}, "annotations": {"x": "y"}}}}}}));
        let ing = created(
            &ch,
            solver(&ch).expect("solver"),
            "svc",
            8089,
            PathType::Exact,
        );
        assert_eq!(ing["spec"]["ingressClassName"], "nginx");
        assert_eq!(ing["metadata"]["labels"]["team"], "a");
        assert_eq!(ing["metadata"]["labels"][SOLVER_LABEL], "true");
        assert_eq!(
            ing["metadata"]["annotations"],
            json!({"x": "y"}),
            "no user value copied in"
        );
        assert_eq!(ing["metadata"]["ownerReferences"][0]["uid"], "u1");
        let path = &ing["spec"]["rules"][0]["http"]["paths"][0];
        assert_eq!(ing["spec"]["rules"][0]["host"], "app.example.com");
        assert_eq!(path["path"], "/.well-known/acme-challenge/tok");
        assert_eq!(path["pathType"], "Exact");
        assert_eq!(
            path["backend"]["service"],
            json!({"name": "svc", "port": {"number": 8089}})
        );

        let classed = challenge(json!({"http01": {"ingress": {"class": "traefik"}}}));
        let ing = created(
            &classed,
            solver(&classed).expect("solver"),
            "svc",
            8089,
            PathType::ImplementationSpecific,
        );
        assert_eq!(
            ing["metadata"]["annotations"]["kubernetes.io/ingress.class"],
            "traefik"
        );
        assert!(ing["spec"].get("ingressClassName").is_none());
        assert_eq!(
            ing["spec"]["rules"][0]["http"]["paths"][0]["pathType"],
            "ImplementationSpecific"
        );
    }

    #[test]
    fn class_and_ingress_class_name_are_mutually_exclusive() {
        let both =
            challenge(json!({"http01": {"ingress": {"class": "a", "ingressClassName": "b"}}}));
        assert!(
            solver(&both)
                .expect_err("both")
                .contains("mutually exclusive")
        );
        assert!(solver(&challenge(json!({"http01": {}}))).is_err());
    }

    #[test]
    fn edit_in_place_adds_exactly_our_rule_and_removes_exactly_it() {
        let ch = challenge(json!({"http01": {"ingress": {"name": "web"}}}));
        let user: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "apps", "annotations": {"a": "b"}},
            "spec": {"ingressClassName": "nginx", "rules": [
                {"host": "app.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "app", "port": {"number": 80}}}}]}}]}}))
        .expect("ingress");
        let added = with_rule(&user, &ch, "svc", 8089, PathType::Exact).expect("added");
        let rules = &added
            .spec
            .as_ref()
            .expect("spec")
            .rules
            .as_ref()
            .expect("rules");
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0],
            user.spec
                .as_ref()
                .expect("spec")
                .rules
                .as_ref()
                .expect("rules")[0]
        );
        assert!(
            with_rule(&added, &ch, "svc", 8089, PathType::Exact).is_none(),
            "idempotent"
        );
        let removed = without_rule(&added, &ch).expect("removed");
        assert_eq!(removed, user, "exactly the user's Ingress again");
        assert!(without_rule(&user, &ch).is_none(), "nothing of ours");
    }
}

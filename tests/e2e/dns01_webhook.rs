//! DNS-01 through a cert-manager webhook solver, as existing deployments
//! of them (Alibaba Cloud DNS and the rest) are installed: an aggregated
//! API server the real kube-apiserver proxies ChallengePayloads to
//! (`tests/common/dns/webhook.rs`), writing into the BIND pebble queries.
//! A wildcard and its apex issue through it and nothing is left in the
//! zone; a webhook answering `success: false`, a group the controller may
//! not call, and a solver name the webhook does not serve are each a clear
//! reason on the Challenge, retried without a hot loop.

use crate::common;

use std::time::Duration;

use certwright_testcluster::cluster::audit::AuditLog;
use certwright_testcluster::deploy::CONTROLLER_USER;
use common::dns::webhook::{self, GROUP, SOLVER};
use common::dns::{
    SECRET, certificate_by_issuer, challenge_reason, dns01_issuer, start, txt_values,
};
use serde_json::json;

fn solver(group: &str, name: &str, config: serde_json::Value) -> serde_json::Value {
    json!({"webhook": {"groupName": group, "solverName": name, "config": config}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_solver_issues_a_wildcard_and_its_apex() {
    let (env, _named) = start(&[]).await;
    webhook::install(&env).await;
    let ns = "hook";
    env.namespace(ns).await;
    let provider = solver(GROUP, SOLVER, webhook::config("tsig"));
    dns01_issuer(&env, ns, "hook", ("tsig", "value", SECRET), provider).await;
    env.certificate(
        ns,
        "wild",
        json!({"secretName": "wild-tls", "dnsNames": ["hook.dns.test", "*.hook.dns.test"],
               "issuerRef": {"name": "hook", "kind": "Issuer"}}),
    )
    .await;
    env.certificate_ready(ns, "wild", 1).await;
    // Both values went through the webhook, and both are gone again.
    env.wait("our values to leave the zone", 30, || async {
        txt_values(&env, "_acme-challenge.hook.dns.test")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let audit = AuditLog::new(&env.cluster.control_plane().audit_log());
    let calls: Vec<_> = audit
        .by_user(env.audit_from, CONTROLLER_USER)
        .into_iter()
        .filter(|r| r.group == GROUP && r.resource == SOLVER)
        .collect();
    // Present and CleanUp for each of the two values, each a success.
    assert!(calls.len() >= 4, "{calls:?}");
    assert!(
        calls.iter().all(|r| r.verb == "create" && r.status == 201),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_does_not_succeed_is_a_clear_reason_without_a_hot_loop() {
    let (env, _named) = start(&[]).await;
    webhook::install(&env).await;
    let ns = "hook-bad";
    env.namespace(ns).await;
    // The webhook answers success: false with its message.
    let provider = solver(GROUP, SOLVER, webhook::config("no-such-secret"));
    dns01_issuer(&env, ns, "lost", ("tsig", "value", SECRET), provider).await;
    certificate_by_issuer(&env, ns, "lost", &["lost.dns.test"]).await;
    let why = challenge_reason(
        &env,
        ns,
        "bind webhook: the TSIG Secret hook-bad/no-such-secret does not exist",
    )
    .await;
    assert!(
        why.starts_with("Cannot present the DNS-01 challenge"),
        "{why}"
    );
    let audit = AuditLog::new(&env.cluster.control_plane().audit_log());
    let mark = audit.mark();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = audit
        .by_user(mark, CONTROLLER_USER)
        .into_iter()
        .filter(|r| r.group == GROUP)
        .count();
    assert!(calls <= 5, "{calls} webhook calls in 5 s");

    // A group the controller was not granted (nor any APIService serves):
    // the API server's refusal, and what to grant.
    let provider = solver("acme.nobody.test", "any", json!({}));
    dns01_issuer(&env, ns, "nobody", ("tsig-2", "value", SECRET), provider).await;
    certificate_by_issuer(&env, ns, "nobody", &["nobody.dns.test"]).await;
    let why = challenge_reason(
        &env,
        ns,
        "grant certwright's ServiceAccount create on any in API group acme.nobody.test",
    )
    .await;
    assert!(why.contains("forbidden"), "{why}");

    // A solver name the webhook does not serve.
    let provider = solver(GROUP, "route53", webhook::config("tsig"));
    dns01_issuer(&env, ns, "unserved", ("tsig", "value", SECRET), provider).await;
    certificate_by_issuer(&env, ns, "unserved", &["unserved.dns.test"]).await;
    let why = challenge_reason(&env, ns, "no solver \"route53\" is served in").await;
    assert!(
        why.contains(&format!("kubectl get apiservice v1alpha1.{GROUP}")),
        "{why}"
    );
}

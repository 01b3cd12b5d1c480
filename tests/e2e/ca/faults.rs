//! A failing or hostile CA, five ways at once (issue 37): each scenario has
//! its own namespace, Issuer and fault proxy in front of the one pebble, so
//! the requests that reached the CA are counted per scenario. The
//! controller runs the CA retry policy's defaults (1 s doubling to 5 min,
//! with jitter) with a give-up after 5 transient failures instead of 8, so
//! a run ends within the window.

use std::time::{Duration, Instant};

use certwright_testcluster::acme_proxy::{AcmeProxy, Fault, Seen};
use certwright_testcluster::cluster::audit::AuditLog;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::json;

use crate::common::env::Env;

const SERVER_INTERNAL: &str = "urn:ietf:params:acme:error:serverInternal";
/// Transient failures in a row before giving up, for this controller.
const LIMIT: usize = 5;

/// A namespace `ns` with an Issuer `ca` whose CA is pebble behind a
/// fault proxy of its own (so requests are counted per namespace).
pub async fn own_ca(env: &Env, ns: &str) -> AcmeProxy {
    let proxy = env
        .cluster
        .in_node(AcmeProxy::start(&env.pebble))
        .await
        .expect("proxy");
    env.namespace(ns).await;
    env.issuer_with(ns, "ca", json!({"server": proxy.directory_url}))
        .await;
    proxy
}

/// A namespace with an Issuer behind a proxy of its own, and a Certificate.
async fn scenario(env: &Env, ns: &str, arm: impl FnOnce(&AcmeProxy)) -> AcmeProxy {
    let proxy = own_ca(env, ns).await;
    arm(&proxy);
    env.certificate(
        ns,
        "web",
        json!({"secretName": "web-tls", "dnsNames": [format!("{ns}.example.test")],
            "issuerRef": {"name": "ca", "kind": "Issuer"}}),
    )
    .await;
    proxy
}

/// The `method` requests under `prefix` that reached the proxy.
fn requests(proxy: &AcmeProxy, method: &str, prefix: &str) -> Vec<Seen> {
    proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == method && s.path.starts_with(prefix))
        .collect()
}

/// Seconds between consecutive requests.
fn gaps(seen: &[Seen]) -> Vec<f64> {
    seen.windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64())
        .collect()
}

/// The backoff between a run's tries is the policy's: 1 s doubling, ±20 %
/// (a gap also holds the self-check and the request itself).
fn assert_doubling(what: &str, gaps: &[f64]) {
    for (i, gap) in gaps.iter().enumerate() {
        let scheduled = f64::from(1u32 << i);
        assert!(
            *gap >= scheduled * 0.8 - 0.05 && *gap <= scheduled * 1.2 + 3.0,
            "{what}: gap {i} was {gap:.2} s, scheduled {scheduled} s ±20 %: {gaps:?}"
        );
    }
}

/// The controller's status writes in `ns` since `mark`, by resource.
fn status_writes(audit: &AuditLog, mark: u64, ns: &str, resource: &str) -> usize {
    audit
        .by_user(mark, certwright_testcluster::deploy::CONTROLLER_USER)
        .iter()
        .filter(|r| {
            r.namespace == ns && r.resource == resource && r.subresource == "status" && r.is_write()
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_hostile_ca_is_retried_on_the_policy_and_never_crashes_the_controller() {
    let env = Env::start(
        |o| o.validation_delay = true,
        &[
            "--transient-backoff-max-seconds",
            "300",
            "--acme-max-transient-failures",
            "5",
            "--backoff-min-seconds",
            "600",
        ],
    )
    .await;
    let audit = AuditLog::new(&env.cluster.control_plane().audit_log());
    let mark = audit.mark();
    let started = Instant::now();

    // 1. Every challenge acceptance answered 500.
    let accept = scenario(&env, "accept-500", |p| {
        p.fail_next(
            "POST",
            "/chalZ/",
            10_000,
            500,
            SERVER_INTERNAL,
            "the CA is having a moment",
        )
    })
    .await;
    // 2. Every newOrder answered 500.
    let new_order = scenario(&env, "order-500", |p| {
        p.fail_next(
            "POST",
            "/order-plz",
            10_000,
            500,
            SERVER_INTERNAL,
            "database unavailable",
        )
    })
    .await;
    // 3. One newOrder refused with 429 and Retry-After: 3.
    let limited = scenario(&env, "rate-limited", |p| {
        p.add(Fault {
            method: "POST".into(),
            path_prefix: "/order-plz".into(),
            remaining: 1,
            status: 429,
            problem_type: "urn:ietf:params:acme:error:rateLimited".into(),
            detail: "too many new orders recently".into(),
            retry_after: Some("3".into()),
            forward: false,
        })
    })
    .await;
    // 4. A Retry-After no clock can add, on every order and authorization.
    let huge = scenario(&env, "huge-wait", |p| {
        p.retry_after_next("POST", "/authZ/", 10_000, "18446744073709551615");
        p.retry_after_next("POST", "/my-order/", 10_000, "18446744073709551615");
    })
    .await;
    // 5. The seed's 404 after a run of other transient faults.
    let lost = scenario(&env, "lost-404", |p| {
        p.fail_next("POST", "/authZ/", 2, 503, SERVER_INTERNAL, "try again");
        p.fail_next(
            "POST",
            "/authZ/",
            1,
            404,
            "urn:ietf:params:acme:error:malformed",
            "No such authorization",
        );
    })
    .await;

    // The three that recover or give up do so within the window.
    let failed_accept = env.issuing_failure("accept-500", "web").await;
    let failed_order = env.issuing_failure("order-500", "web").await;
    env.certificate_ready("rate-limited", "web", 1).await;
    env.certificate_ready("lost-404", "web", 1).await;
    // Let the ones that gave up show they stay quiet.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = started.elapsed();
    let logs = env.logs().await;

    // 1: five acceptances in all, 1 s apart doubling; the words say why.
    let accepted = requests(&accept, "POST", "/chalZ/");
    assert_eq!(accepted.len(), LIMIT, "acceptances: {accepted:#?}");
    assert_doubling("acceptances", &gaps(&accepted));
    assert!(
        failed_accept.contains("Gave up validate after 5 failures in a row")
            && failed_accept.contains("500"),
        "{failed_accept}"
    );
    // One write per attempt: presented, a self-check reason or two while
    // the route goes live, asking the CA, one per retry, the final state
    // and its cleanup (the hot loop wrote hundreds a minute).
    let challenge_writes = status_writes(&audit, mark, "accept-500", "challenges");
    assert!(
        challenge_writes <= LIMIT + 6,
        "Challenge status writes: {challenge_writes}"
    );

    // 2: five newOrders, doubling; the Order failed with the CA's words.
    let ordered = requests(&new_order, "POST", "/order-plz");
    assert_eq!(ordered.len(), LIMIT, "newOrders: {ordered:#?}");
    assert_doubling("newOrders", &gaps(&ordered));
    assert!(
        failed_order.contains("Gave up newOrder after 5 failures in a row")
            && failed_order.contains("database unavailable"),
        "{failed_order}"
    );
    // One per failure (and one or two while its Issuer registers).
    let order_writes = status_writes(&audit, mark, "order-500", "orders");
    assert!(
        order_writes <= LIMIT + 3,
        "Order status writes: {order_writes}"
    );

    // 3: the second newOrder waited out the CA's Retry-After.
    let ordered = requests(&limited, "POST", "/order-plz");
    assert_eq!(ordered.len(), 2, "{ordered:#?}");
    let gap = gaps(&ordered)[0];
    assert!(gap >= 3.0, "Retry-After: 3 honoured: {gap:.2} s");

    // 4: the controller lived, and waits the clamped day instead of asking.
    let pods = certwright_testcluster::deploy::controller_pods(&env.client).await;
    for name in &pods {
        let pod = Api::<Pod>::namespaced(
            env.client.clone(),
            certwright_testcluster::deploy::NAMESPACE,
        )
        .get(name)
        .await
        .expect("controller pod");
        let restarts: i32 = pod
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .iter()
            .map(|c| c.restart_count)
            .sum();
        assert_eq!(restarts, 0, "the controller restarted:\n{logs}");
    }
    assert!(!logs.contains("panicked"), "{logs}");
    let polls = requests(&huge, "POST", "/authZ/");
    assert!(
        (1..=4).contains(&polls.len()),
        "the authorization was asked {} times in {window:?}: {:#?}\n{}",
        polls.len(),
        huge.seen(),
        logs.lines()
            .filter(|l| l.contains("huge-wait"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        logs.contains("wait_ms=86400000"),
        "the clamped day was scheduled:\n{logs}"
    );

    // 5: the replacement order was placed at once after the 404, whatever
    // the 503s before it had grown the backoff to.
    let ordered = requests(&lost, "POST", "/order-plz");
    assert_eq!(ordered.len(), 2, "one lost, one fresh: {ordered:#?}");
    assert!(
        logs.lines()
            .any(|l| l.contains("replacing a lost ACME order") && l.contains("wait_ms=0")),
        "{logs}"
    );
    let lost_404 = requests(&lost, "POST", "/authZ/");
    let refused = lost_404.iter().filter(|s| s.injected).count();
    assert_eq!(refused, 3, "two 503s, then the 404: {lost_404:#?}");

    // From the first newOrder to the certificate's download, where it recovers.
    let recovered = |proxy: &AcmeProxy| {
        let first = requests(proxy, "POST", "/order-plz").first()?.at;
        let done = requests(proxy, "POST", "/certZ/").last()?.at;
        Some(done - first)
    };
    eprintln!(
        "window {window:?}: acceptances {}, newOrders {}, Challenge writes {challenge_writes}, Order writes {order_writes}; to the certificate: rate-limited {:?}, lost-404 {:?}",
        accepted.len(),
        requests(&new_order, "POST", "/order-plz").len(),
        recovered(&limited),
        recovered(&lost),
    );
}

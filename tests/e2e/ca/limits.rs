//! What a CA's limits hold back (issue 38), side by side as in
//! `faults.rs`: a rate limit with an hour's Retry-After holds the account's
//! new orders, Let's Encrypt's "paused" refusal stops ordering for its
//! names until `certwright renew`, an Issuer's request ceiling bounds
//! the requests a second to its CA, budgets are kept before asking (a
//! renewal in the CA's window exempt), and what was held and spent is kept
//! across a restart of the controller.

use std::process::Command;
use std::time::Duration;

use certwright::api::{Issuer, Order};
use certwright_testcluster::acme_proxy::{AcmeProxy, Fault};
use certwright_testcluster::deploy;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::ca_faults::own_ca;
use crate::common::env::Env;

const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwYXVzZWQifQ.c2lnbmF0dXJl";

/// [`own_ca`], with `annotations` on the Issuer.
async fn issuer(env: &Env, ns: &str, annotations: serde_json::Value) -> AcmeProxy {
    let proxy = own_ca(env, ns).await;
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        Api::<Issuer>::namespaced(env.client.clone(), ns)
            .patch(
                "ca",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
            )
            .await
            .expect("annotate");
    }
    proxy
}

async fn certificate(env: &Env, ns: &str, name: &str, dns: &str) {
    env.certificate(
        ns,
        name,
        json!({"secretName": format!("{name}-tls"), "dnsNames": [dns],
            "issuerRef": {"name": "ca", "kind": "Issuer"}}),
    )
    .await;
}

/// Runs the certwright command line against the local cluster.
fn certwright(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_certwright"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("certwright runs")
}

fn new_orders(proxy: &AcmeProxy) -> usize {
    proxy.count("POST", "/order-plz")
}

/// The reasons of the Orders in `ns`.
async fn order_reasons(env: &Env, ns: &str) -> Vec<String> {
    Api::<Order>::namespaced(env.client.clone(), ns)
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| o.status?.reason)
        .collect()
}

/// Stops the controller, then starts a new one (one replica at a time).
async fn restart(env: &Env) {
    let before = deploy::controller_pods(&env.client).await;
    deploy::scale(&env.client, 0).await.expect("scale to 0");
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), deploy::NAMESPACE);
    for pod in &before {
        pods.delete(pod, &Default::default()).await.ok();
    }
    env.wait("the controller gone", 60, || async {
        deploy::controller_pods(&env.client)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    deploy::scale(&env.client, 1).await.expect("scale to 1");
    env.wait("a new controller Pod", 60, || async {
        let now = deploy::ready_controller_pods(&env.client).await;
        (now.len() == 1 && !before.contains(&now[0])).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_pauses_hold_new_orders_and_a_ceiling_bounds_the_requests() {
    let env = Env::start(
        |_| {},
        &[
            "--backoff-min-seconds",
            "600",
            "--ari-poll-max-seconds",
            "1",
        ],
    )
    .await;

    // 1. A rate limit with an hour's Retry-After: one request, then a hold.
    let hour = issuer(&env, "rate-hour", json!({})).await;
    hour.add(Fault {
        method: "POST".into(),
        path_prefix: "/order-plz".into(),
        remaining: 1,
        status: 429,
        problem_type: RATE_LIMITED.into(),
        detail: "too many new orders (300) from this account in the last 3h0m0s".into(),
        retry_after: Some("3600".into()),
        forward: false,
    });
    certificate(&env, "rate-hour", "first", "first.rate-hour.test").await;

    // 2. Let's Encrypt's pause, for one name.
    let paused = issuer(&env, "paused", json!({})).await;
    let portal = format!("https://portal.letsencrypt.org/sfe/v1/unpause?jwt={JWT}");
    paused.fail_next(
        "POST",
        "/order-plz",
        1,
        429,
        RATE_LIMITED,
        &format!("Your account is temporarily prevented from requesting certificates for web.paused.test, and possibly others. Please visit: {portal}"),
    );
    certificate(&env, "paused", "web", "web.paused.test").await;

    // 3. A ceiling of 2 requests a second on the CA of this Issuer.
    let slow = issuer(
        &env,
        "ceiling",
        json!({(certwright::acme::ceiling::ANNOTATION): "2"}),
    )
    .await;
    // Measured from when the Issuer has surely seen its annotation.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mark = std::time::Instant::now();
    certificate(&env, "ceiling", "web", "web.ceiling.test").await;

    // 4. Budgets kept before asking: two new orders an hour, one
    // certificate per exact set of names a week.
    let budget = issuer(
        &env,
        "budgets",
        json!({(certwright::acme::budgets::ANNOTATION): "newOrders=2/1h,exactSet=1/168h"}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    certificate(&env, "budgets", "a", "a.budgets.test").await;
    certificate(&env, "budgets", "b", "b.budgets.test").await;

    // 1: the refused order waits the hour; another of the account waits too.
    env.wait("the rate-limited Order to wait", 30, || async {
        order_reasons(&env, "rate-hour")
            .await
            .into_iter()
            .find(|r| r.contains("next try at"))
    })
    .await;
    certificate(&env, "rate-hour", "second", "second.rate-hour.test").await;
    let waiting = env
        .wait("the second Order held", 30, || async {
            order_reasons(&env, "rate-hour")
                .await
                .into_iter()
                .find(|r| r.starts_with("Waiting: The CA's rate limit holds every new order"))
        })
        .await;
    assert_eq!(
        new_orders(&hour),
        1,
        "one request, then the hold: {waiting}"
    );
    let until = waiting
        .split(" until ")
        .nth(1)
        .and_then(|t| {
            t.split(':')
                .take(3)
                .collect::<Vec<_>>()
                .join(":")
                .parse::<k8s_openapi::jiff::Timestamp>()
                .ok()
        })
        .expect("the time is shown");
    let ahead = until.as_second() - k8s_openapi::jiff::Timestamp::now().as_second();
    assert!((3500..=3600).contains(&ahead), "{waiting}");

    // 2: the pause fails the issuance with the link; no further order for
    // the name is sent; renew asks again.
    let message = env.issuing_failure("paused", "web").await;
    assert!(message.contains(&portal), "the full link: {message}");
    let ready = env
        .wait("the link on Ready too", 30, || async {
            let cert =
                Api::<certwright::api::Certificate>::namespaced(env.client.clone(), "paused")
                    .get("web")
                    .await
                    .ok()?;
            cert.status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Ready")?
                .message
                .filter(|m| m.contains(&portal))
        })
        .await;
    assert!(ready.contains("has paused this ACME account"), "{ready}");
    let events = env.events("paused", "involvedObject.kind=Order").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Failed" && m.contains(&portal)),
        "{events:?}"
    );
    certificate(&env, "paused", "again", "web.paused.test").await;
    let again = env.issuing_failure("paused", "again").await;
    assert!(again.contains("has paused this ACME account"), "{again}");
    assert_eq!(new_orders(&paused), 1, "no order for a paused name");
    let logs = env.logs().await;
    assert!(!logs.contains(JWT), "the token stays out of the logs");
    assert!(logs.contains("/sfe/v1/unpause?jwt=…"), "{logs}");
    let kubeconfig = env.cluster.kubeconfig().to_path_buf();
    let status = certwright(
        &kubeconfig,
        &["status", "certificate", "web", "-n", "paused"],
    );
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains(&portal),
        "certwright status shows the link:\n{shown}"
    );
    let renew = certwright(&kubeconfig, &["renew", "web", "-n", "paused"]);
    assert!(
        renew.status.success(),
        "{}",
        String::from_utf8_lossy(&renew.stderr)
    );
    env.certificate_ready("paused", "web", 1).await;
    assert_eq!(new_orders(&paused), 2, "renew asked the CA again");

    // 4: a third new order would spend a budget that is gone: it waits for
    // the slot, unsent; renewing a certificate (exempt from the new-order
    // budget, as it names the one it replaces) meets the exact-set budget.
    env.certificate_ready("budgets", "a", 1).await;
    env.certificate_ready("budgets", "b", 1).await;
    certificate(&env, "budgets", "c", "c.budgets.test").await;
    let over = env
        .wait("the third Order held by the budget", 30, || async {
            order_reasons(&env, "budgets").await.into_iter().find(|r| {
                r.contains("limit of 2 new orders of this ACME account per 1h would be exceeded")
            })
        })
        .await;
    assert!(
        over.starts_with("Waiting: ") && over.contains("the next slot is at"),
        "{over}"
    );
    let renew = certwright(&kubeconfig, &["renew", "a", "-n", "budgets"]);
    assert!(
        renew.status.success(),
        "{}",
        String::from_utf8_lossy(&renew.stderr)
    );
    let same_set = env
        .wait("the renewal held by the exact-set budget", 30, || async {
            order_reasons(&env, "budgets")
                .await
                .into_iter()
                .find(|r| r.contains("1 certificates for exactly a.budgets.test per 168h"))
        })
        .await;
    assert_eq!(
        new_orders(&budget),
        2,
        "nothing sent over budget: {same_set}"
    );
    // A renewal inside the CA's suggested window (ARI) is exempt from
    // every budget, the exact set's included.
    let secrets = Api::<Secret>::namespaced(env.client.clone(), "budgets");
    let leaf = crate::common::leaf_pem(&secrets.get("b-tls").await.expect("b's Secret"));
    let now = crate::common::unix_now();
    env.cluster
        .in_node(
            env.pebble
                .set_renewal_info(&leaf, &crate::common::ari_window(now - 7200, now - 3600)),
        )
        .await
        .expect("move b's window into the past");
    env.certificate_ready("budgets", "b", 2).await;
    assert_eq!(new_orders(&budget), 3, "the renewal in its window was sent");

    // 3: never more than the burst (4) and the rate (2) within a second.
    env.certificate_ready("ceiling", "web", 1).await;
    let seen: Vec<_> = slow.seen().into_iter().filter(|s| s.at >= mark).collect();
    assert!(seen.len() >= 8, "{seen:#?}");
    let most = seen
        .iter()
        .map(|s| {
            seen.iter()
                .filter(|o| o.at >= s.at && o.at < s.at + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(most <= 6, "{most} requests within a second: {seen:#?}");
    // 5. A restarted controller keeps what was held and spent: it reads
    // them back from the API before it places any order.
    let kept = env
        .wait("the holds and spends kept in the API", 30, || async {
            let cm = Api::<ConfigMap>::namespaced(env.client.clone(), deploy::NAMESPACE)
                .get(certwright::acme::kept::CONFIG_MAP)
                .await
                .ok()?;
            let text = cm.data?.remove(certwright::acme::kept::KEY)?;
            (text.contains("The CA's rate limit holds") && text.contains("newOrders|"))
                .then_some(text)
        })
        .await;
    restart(&env).await;
    certificate(&env, "rate-hour", "third", "third.rate-hour.test").await;
    certificate(&env, "budgets", "d", "d.budgets.test").await;
    for (ns, name, held) in [
        (
            "rate-hour",
            "third",
            "The CA's rate limit holds every new order",
        ),
        (
            "budgets",
            "d",
            "limit of 2 new orders of this ACME account per 1h",
        ),
    ] {
        env.wait("a new Order held after the restart", 60, || async {
            Api::<Order>::namespaced(env.client.clone(), ns)
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|o| {
                    o.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with(name))
                })
                .filter_map(|o| o.status?.reason)
                .find(|r| r.contains(held))
        })
        .await;
    }
    assert_eq!(new_orders(&hour), 1, "the hold outlived the restart");
    let orders = env.order_reasons("budgets").await;
    let logs = env.logs().await;
    let said: Vec<&str> = logs
        .lines()
        .filter(|l| {
            l.contains("kept ACME limits")
                || l.contains("c-1")
                || l.contains("leading")
                || l.contains("budget before")
        })
        .collect();
    assert_eq!(
        new_orders(&budget),
        3,
        "so did the spent budget: {orders:#?}\nkept: {kept}\n{}",
        said.join("\n")
    );

    eprintln!(
        "kept: {} bytes; rate limit: 1 newOrder, held until {until}; paused: {} newOrders; ceiling: {} requests, at most {most} in a second",
        kept.len(),
        new_orders(&paused),
        seen.len()
    );
}

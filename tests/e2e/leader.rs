//! Three controller replicas on one Lease: only the leader reconciles;
//! SIGKILLed in the middle of an issuance, it is replaced once its Lease
//! expired, the certificate is issued from the one Order already at the
//! CA, and the token stays reachable through the ingress all along (every
//! replica serves it), but for a request the killed replica was serving at
//! that instant. A leader whose Lease renewals hang stops writing before
//! its successor starts (the audit log, by User-Agent, shows it), and a
//! single replica restarted while the CA validates loses no order.

use crate::common;

use std::time::{Duration, Instant};

use certwright::api::Challenge;
use certwright_testcluster::deploy;
use common::env::Env;
use common::http_get as get;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_issuance_is_replaced_and_the_certificate_issued_once() {
    let env = Env::start(|_| {}, &[]).await;
    deploy::scale(&env.client, 3).await.expect("scale");
    let (leader, transitions) = env
        .wait("three ready replicas, one of them leading", 90, || async {
            let ready = deploy::ready_controller_pods(&env.client).await;
            let (holder, transitions) = common::lease_holder(&env.client).await?;
            (ready.len() == 3 && ready.contains(&holder)).then_some((holder, transitions))
        })
        .await;

    // The CA refuses to validate until we say so: the issuance stops with
    // its Order placed and its token presented.
    env.ca_refuses_validation();
    env.namespace("apps").await;
    env.certificate(
        "apps",
        "failover",
        json!({"secretName": "failover-tls", "dnsNames": ["failover.example.test"]}),
    )
    .await;
    let challenges: Api<Challenge> = Api::namespaced(env.client.clone(), "apps");
    let (token, key) = env
        .wait("the challenge presented and refused once", 90, || async {
            let listed = challenges.list(&Default::default()).await.ok()?;
            let ch = listed.items.into_iter().next()?;
            let presented = ch.status.as_ref()?.presented == Some(true);
            let refused = env.proxy.seen().iter().any(|s| s.injected);
            (presented && refused).then_some((ch.spec.token, ch.spec.key))
        })
        .await;
    let ingress = env.cluster.ingress_addr();
    let host = "failover.example.test";
    let path = format!("/.well-known/acme-challenge/{token}");
    env.wait("the token through the ingress", 30, || async {
        matches!(get(ingress, host, &path).await, Ok((200, _))).then_some(())
    })
    .await;

    // Poll the token through the ingress from before the kill until after
    // the take-over.
    // It stops with the first poll that would start after the instant it
    // is sent, once one poll started after the take-over (a slow answer
    // cannot end the polls before the take-over).
    let (stop, stopped) = tokio::sync::watch::channel(None::<(Instant, Instant)>);
    let poller = {
        let path = path.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let start = Instant::now();
                let after = |took_over: Instant| {
                    answers
                        .last()
                        .is_some_and(|(at, _): &(Instant, _)| *at > took_over)
                };
                if stopped
                    .borrow()
                    .is_some_and(|(took_over, until)| start > until && after(took_over))
                {
                    return answers;
                }
                answers.push((start, get(ingress, host, &path).await));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGKILL: deleted with no grace, the kubelet kills its process at
    // once, so the Lease is not released and must expire.
    let killed = Instant::now();
    Api::<Pod>::namespaced(env.client.clone(), deploy::NAMESPACE)
        .delete(
            &leader,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect("kill the leader");
    let (successor, after) = env
        .wait("another replica to take the Lease", 60, || async {
            let (holder, transitions) = common::lease_holder(&env.client).await?;
            (holder != leader).then_some((holder, transitions))
        })
        .await;
    let took = killed.elapsed();
    assert_eq!(after, transitions + 1, "one hand-over");
    // Lease 6 s, renewed every 1 s: the old holder's last renewal was at
    // most 1 s before the kill.
    assert!(
        took >= Duration::from_secs(4),
        "{successor} took the Lease {took:?} after the kill: before the old one expired"
    );
    let took_over = Instant::now();
    let _ = stop.send(Some((took_over, took_over + Duration::from_secs(2))));
    let answers = poller.await.expect("poller");
    // A request the killed replica was serving at that instant can fail
    // (Traefik does not resend a request it already sent, and cannot tell
    // the kill from a slow answer): the one started with the kill, no other.
    let in_flight = |at: &Instant| {
        at.checked_duration_since(killed)
            .or_else(|| killed.checked_duration_since(*at))
            .is_some_and(|d| d < Duration::from_millis(300))
    };
    let unanswered =
        |a: &Result<(u16, String), String>| !matches!(a, Ok((200, body)) if body.trim_end() == key);
    let at_the_kill = answers
        .iter()
        .filter(|(at, a)| in_flight(at) && unanswered(a))
        .count();
    assert!(
        at_the_kill <= 1,
        "{at_the_kill} requests failed at the kill"
    );
    let failed: Vec<String> = answers
        .iter()
        .filter(|(at, a)| !in_flight(at) && unanswered(a))
        .map(|(at, a)| {
            format!(
                "{:+.1} s after the kill: {a:?}",
                at.duration_since(killed).as_secs_f64()
            )
        })
        .collect();
    // The polls span the kill and the take-over (each waits for its answer:
    // one that went to the dead replica first takes Traefik's 1 s dial).
    let spans = answers.first().is_some_and(|(at, _)| *at < killed)
        && answers
            .last()
            .is_some_and(|(at, _)| at.duration_since(killed) > took);
    assert!(
        spans && answers.len() >= 5,
        "{} polls, spanning the kill and the take-over: {spans}",
        answers.len()
    );
    assert!(
        failed.is_empty(),
        "the token was unreachable {} of {} times through the ingress: {failed:#?}",
        failed.len(),
        answers.len()
    );

    env.proxy.clear_faults();
    env.certificate_ready("apps", "failover", 1).await;
    assert_eq!(
        env.proxy.count("POST", "/order-plz"),
        1,
        "one Order at the CA for the certificate"
    );
    let logs = env.logs().await;
    assert!(
        logs.contains("acquired the leader lease"),
        "the successor says it took over:\n{logs}"
    );
}

/// Scales the controller to two replicas; the one leading.
async fn two_replicas(env: &Env) -> String {
    deploy::scale(&env.client, 2).await.expect("scale");
    env.wait("two ready replicas, one of them leading", 90, || async {
        let ready = deploy::ready_controller_pods(&env.client).await;
        let (holder, _) = common::lease_holder(&env.client).await?;
        (ready.len() == 2 && ready.contains(&holder)).then_some(holder)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_hands_the_lease_over_at_once() {
    let env = Env::start(|_| {}, &[]).await;
    let leader = two_replicas(&env).await;
    // A graceful delete: SIGTERM, and the leader releases its Lease.
    let stopped = Instant::now();
    Api::<Pod>::namespaced(env.client.clone(), deploy::NAMESPACE)
        .delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader");
    env.wait("the other replica to take the Lease", 30, || async {
        let (holder, _) = common::lease_holder(&env.client).await?;
        (holder != leader).then_some(())
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "released on shutdown, taken within a retry period, not after the 6 s lease: {:?}",
        stopped.elapsed()
    );
    let log = env.cluster.pod_log(deploy::NAMESPACE, &leader);
    assert!(log.contains("released the leader lease"), "{log}");
}

/// The leader's Lease renewals are dropped (never answered, as on a
/// half-open connection) while its other requests go through: it must stop
/// acting at its renew deadline, before another replica can take the Lease,
/// so the API server sees its last write before the successor's first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_hang_stops_writing_before_the_next_one_starts() {
    use certwright_testcluster::cluster::api_proxy::{ApiFault, DROP};
    use certwright_testcluster::cluster::audit::AuditLog;
    let env = Env::start(|_| {}, &[]).await;
    let leader = two_replicas(&env).await;
    env.namespace("fence").await;
    let audit = AuditLog::new(&env.cluster.control_plane().audit_log());
    let mark = audit.mark();

    // Work for whoever leads, all along: a Certificate every 300 ms.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let maker = {
        let client = env.client.clone();
        tokio::spawn(async move {
            let mut made = 0;
            while !*stopped.borrow() {
                let cert: certwright::api::Certificate = serde_json::from_value(json!({
                    "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                    "metadata": {"name": format!("c{made}"), "namespace": "fence"},
                    "spec": {"secretName": format!("c{made}-tls"),
                        "dnsNames": [format!("c{made}.fence.test")],
                        "issuerRef": {"name": "pebble", "kind": "ClusterIssuer"}}}))
                .expect("certificate");
                Api::<certwright::api::Certificate>::namespaced(client.clone(), "fence")
                    .create(&Default::default(), &cert)
                    .await
                    .expect("create");
                made += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            made
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.cluster.api_faults().add(ApiFault {
        method: None,
        path_contains: "/leases/".into(),
        user_agent_contains: Some(format!("({leader})")),
        remaining: usize::MAX,
        status: DROP,
        retry_after: None,
    });
    let successor = env
        .wait("the other replica to take the Lease", 60, || async {
            let (holder, _) = common::lease_holder(&env.client).await?;
            (holder != leader).then_some(holder)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = stop.send(true);
    let made = maker.await.expect("maker");
    for i in 0..made {
        env.certificate_ready("fence", &format!("c{i}"), 1).await;
    }

    let writes = |pod: &str| -> Vec<_> {
        let agent = format!("({pod})");
        audit
            .by_user(mark, deploy::CONTROLLER_USER)
            .into_iter()
            .filter(|r| r.is_write() && r.user_agent.contains(&agent))
            .collect()
    };
    let (old, new) = (writes(&leader), writes(&successor));
    let last_old = old.iter().map(|r| r.completed.clone()).max();
    let first_new = new.iter().map(|r| r.received.clone()).min();
    let (Some(last_old), Some(first_new)) = (last_old, first_new) else {
        panic!(
            "both replicas wrote: {} and {} writes",
            old.len(),
            new.len()
        );
    };
    assert!(
        last_old < first_new,
        "the old leader wrote until {last_old}, after its successor started at {first_new}"
    );
    let log = env.cluster.pod_log(deploy::NAMESPACE, &leader);
    assert!(log.contains("stopped reconciling"), "{log}");
    eprintln!(
        "{made} certificates; the old leader's last write at {last_old}, the new one's first at {first_new}"
    );
}

/// One replica, restarted (a rollout's graceful stop) while the CA is
/// validating: the stopping replica keeps serving the tokens it asked the
/// CA to validate until its successor finishes their Challenges, so every
/// Certificate is issued from its first order, and no Challenge is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_restarted_mid_validation_loses_no_order() {
    // The CA validates 0–15 s after it is asked, as a busy CA may.
    let env = Env::start(|p| p.validation_delay = true, &[]).await;
    env.namespace("restart").await;
    const N: usize = 10;
    for i in 0..N {
        env.certificate(
            "restart",
            &format!("c{i}"),
            json!({"secretName": format!("c{i}-tls"), "dnsNames": [format!("c{i}.restart.test")]}),
        )
        .await;
    }
    env.wait("the CA asked to validate", 60, || async {
        (env.proxy.count("POST", "/chalZ/") > 0).then_some(())
    })
    .await;
    let before = deploy::controller_pods(&env.client).await;
    assert_eq!(before.len(), 1);
    // A graceful stop: SIGTERM; the ReplicaSet starts the successor.
    Api::<Pod>::namespaced(env.client.clone(), deploy::NAMESPACE)
        .delete(&before[0], &DeleteParams::default())
        .await
        .expect("stop the controller");
    for i in 0..N {
        env.certificate_ready("restart", &format!("c{i}"), 1).await;
    }
    let challenges: Api<Challenge> = Api::namespaced(env.client.clone(), "restart");
    env.wait("no Challenge left", 60, || async {
        challenges
            .list(&Default::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    let (orders, finalized) = (
        env.proxy.count("POST", "/order-plz"),
        env.proxy.count("POST", "/finalize-order/"),
    );
    let log = env.cluster.pod_log(deploy::NAMESPACE, &before[0]);
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tokens") || l.contains("placed ACME order") || l.contains("WARN"))
        .collect();
    let listed = env.order_reasons("restart").await;
    let failed: Vec<String> = listed
        .iter()
        .filter(|(_, r)| r.is_some())
        .filter_map(|(n, _)| Some(format!("{}.", n.as_deref()?.split('-').next()?)))
        .collect();
    let now = env.logs().await;
    let about: Vec<&str> = log
        .lines()
        .chain(now.lines())
        .filter(|l| {
            failed
                .iter()
                .any(|f| l.contains(f.as_str()) || l.contains(&f.replace('.', "-")))
        })
        .collect();
    assert_eq!(
        (orders, finalized),
        (N, N),
        "one order per Certificate, each finalized once: {listed:#?}\nthe stopped replica said:\n{}\nabout the failed ones:\n{}",
        said.join("\n"),
        about.join("\n")
    );
    eprintln!("the stopped replica said:\n{}", said.join("\n"));
}

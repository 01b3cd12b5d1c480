//! Failures, end to end with the controller as a Pod: the seed's 404 "No
//! such authorization" replaces the ACME order within the transient bound
//! instead of failing the request; a name the CA refuses fails with the
//! CA's message and backs off; a controller killed mid-order resumes the
//! same Order; an API server that fails writes and cuts watches (through
//! the `kubernetes` Service, as Pods see it) only delays issuance.

use certwright::api::meta::ConditionStatus;
use certwright::api::{Certificate, Challenge, Order};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

#[path = "ca/faults.rs"]
mod ca_faults;
#[path = "ca/leftovers.rs"]
mod ca_leftovers;
#[path = "ca/limits.rs"]
mod ca_limits;
#[path = "ca/refusals.rs"]
mod ca_refusals;
use crate::common;

use common::env::Env;

async fn orders(env: &Env, ns: &str) -> Vec<Order> {
    Api::<Order>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("orders")
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_authorization_gets_a_fresh_order_within_the_transient_bound() {
    let env = Env::start(|_| {}, &[]).await;
    env.lose_next_authorization();
    env.namespace("apps").await;
    env.certificate(
        "apps",
        "lost",
        json!({"secretName": "lost-tls", "dnsNames": ["lost.example.test"]}),
    )
    .await;
    env.certificate_ready("apps", "lost", 1).await;

    let seen = env.proxy.seen();
    if std::env::var("SHOW_LOGS").is_ok() {
        eprintln!("{}\n{seen:#?}", env.logs().await);
    }
    assert!(
        seen.iter().any(|s| s.injected && s.status == 404),
        "the fault was hit"
    );
    let new_orders = seen
        .iter()
        .filter(|s| s.method == "POST" && s.path.starts_with("/order-plz"))
        .count();
    if new_orders != 2 {
        panic!(
            "one ACME order lost, one fresh; got {new_orders}:\n{seen:#?}\n{}",
            env.logs().await
        );
    }
    let listed = orders(&env, "apps").await;
    assert_eq!(listed.len(), 1, "the same Kubernetes Order carried on");
    let events = env.events("apps", "involvedObject.kind=Order").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "OrderReplaced" && m.contains("No such authorization")),
        "{events:?}"
    );
    // The replacement was scheduled within the transient bound (2 s here).
    let logs = env.logs().await;
    let waits: Vec<u64> = logs
        .lines()
        .filter(|l| l.contains("replacing a lost ACME order"))
        .filter_map(|l| {
            l.split("wait_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(!waits.is_empty(), "the replacement was logged:\n{logs}");
    assert!(waits.iter().all(|w| *w <= 2000), "waits {waits:?}");
    // The request never failed: no Failed condition, no failure record.
    let cert = Api::<Certificate>::namespaced(env.client.clone(), "apps")
        .get("lost")
        .await
        .expect("cert");
    assert_eq!(cert.status.and_then(|s| s.failed_issuance_attempts), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_identifier_fails_with_the_cas_message_and_backs_off() {
    let env = Env::start(
        |o| o.domain_blocklist = vec!["blocked.example.test".into()],
        &[],
    )
    .await;
    env.namespace("apps").await;
    env.certificate(
        "apps",
        "blocked",
        json!({"secretName": "blocked-tls", "dnsNames": ["blocked.example.test"]}),
    )
    .await;
    let api: Api<Certificate> = Api::namespaced(env.client.clone(), "apps");
    let failures = |n: i64| {
        let api = api.clone();
        async move {
            let cert = api.get("blocked").await.ok()?;
            let status = cert.status?;
            (status.failed_issuance_attempts? >= n).then_some(status)
        }
    };
    let first = env.wait("the first failure", 60, || failures(1)).await;
    let issuing = first
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Issuing")
        .cloned()
        .expect("Issuing condition");
    assert_eq!(issuing.status, ConditionStatus::False);
    assert_eq!(issuing.reason.as_deref(), Some("Failed"));
    let message = issuing.message.unwrap_or_default();
    assert!(
        message.contains("rejectedIdentifier") && message.contains("blocked.example.test"),
        "{message}"
    );
    // The Warning event is published right after the status write.
    env.wait("a Failed event naming rejectedIdentifier", 30, || async {
        env.events("apps", "involvedObject.kind=Certificate")
            .await
            .iter()
            .any(|(r, m)| r == "Failed" && m.contains("rejectedIdentifier"))
            .then_some(())
    })
    .await;
    // The next attempt waits out the backoff (2 s minimum here), then fails again.
    let second = env.wait("the second failure", 60, || failures(2)).await;
    let gap = second.last_failure_time.expect("t2").0.as_second()
        - first.last_failure_time.expect("t1").0.as_second();
    assert!(gap >= 2, "no hot loop: {gap}s between attempts");
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), "apps")
        .get_opt("blocked-tls")
        .await
        .expect("get");
    assert!(secret.is_none(), "nothing written for a failed issuance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_order_resumes_the_same_order() {
    let env = Env::start(|_| {}, &[]).await;
    // The CA is down for challenge acceptance until we say otherwise.
    env.ca_refuses_validation();
    env.namespace("apps").await;
    env.certificate(
        "apps",
        "resume",
        json!({"secretName": "resume-tls", "dnsNames": ["resume.example.test"]}),
    )
    .await;
    let url = env
        .wait(
            "the Order to be placed and its challenge tried",
            60,
            || async {
                let listed = orders(&env, "apps").await;
                let url = listed.first()?.status.as_ref()?.url.clone()?;
                env.proxy.seen().iter().any(|s| s.injected).then_some(url)
            },
        )
        .await;
    // Stopped, and only then restarted: one replica at a time (replicas
    // overlapping, and a leader SIGKILLed, are tests/e2e/leader.rs).
    let scale = |replicas: i32| {
        let client = env.client.clone();
        async move {
            certwright_testcluster::deploy::scale(&client, replicas)
                .await
                .expect("scale the controller")
        }
    };
    let before = certwright_testcluster::deploy::controller_pods(&env.client).await;
    assert_eq!(before.len(), 1);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "certwright");
    scale(0).await;
    pods.delete(&before[0], &DeleteParams::default()).await.ok();
    env.wait("the controller gone", 60, || async {
        certwright_testcluster::deploy::controller_pods(&env.client)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    // The run of refused acceptances, as the stopped controller left it.
    let run = || async {
        let listed = Api::<Challenge>::namespaced(env.client.clone(), "apps")
            .list(&ListParams::default())
            .await
            .ok()?;
        let reason = listed.items.first()?.status.as_ref()?.reason.clone()?;
        certwright::acme::retry::Run::parse(&reason)
    };
    let stopped_at = run().await.expect("the Challenge's reason names its run");
    scale(1).await;
    env.wait("a new controller Pod", 60, || async {
        let now = certwright_testcluster::deploy::controller_pods(&env.client).await;
        (now.len() == 1 && now[0] != before[0]).then_some(())
    })
    .await;
    // The new controller carries the count on (read back from the reason),
    // rather than starting the run over.
    let resumed = env
        .wait("the next refused acceptance", 60, || async {
            run().await.filter(|r| r.failures != stopped_at.failures)
        })
        .await;
    assert_eq!(
        (resumed.failures, resumed.since),
        (stopped_at.failures + 1, stopped_at.since),
        "{stopped_at:?} then {resumed:?}"
    );
    env.proxy.clear_faults();
    env.certificate_ready("apps", "resume", 1).await;
    let listed = orders(&env, "apps").await;
    if listed.len() != 1 {
        let summary: Vec<_> = listed
            .iter()
            .map(|o| {
                let status = o.status.clone().unwrap_or_default();
                (
                    o.metadata.name.clone(),
                    o.metadata.creation_timestamp.clone(),
                    status.state,
                    status.url,
                    status.reason,
                )
            })
            .collect();
        let old_log = env
            .cluster
            .pod_log(certwright_testcluster::deploy::NAMESPACE, &before[0]);
        panic!(
            "no second Order: {summary:#?}\n--- killed controller {}\n{old_log}\n{}",
            before[0],
            env.logs().await
        );
    }
    assert_eq!(
        listed[0].status.as_ref().and_then(|s| s.url.clone()),
        Some(url),
        "the same ACME order completed"
    );
    let new_orders = env.proxy.count("POST", "/order-plz");
    assert_eq!(new_orders, 1, "no second ACME order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_ends_the_backoff() {
    let env = Env::start(
        |o| o.domain_blocklist = vec!["blocked.example.test".into()],
        &["--backoff-min-seconds", "600"],
    )
    .await;
    env.namespace("apps").await;
    env.certificate(
        "apps",
        "fixme",
        json!({"secretName": "fixme-tls", "dnsNames": ["blocked.example.test"]}),
    )
    .await;
    let api: Api<Certificate> = Api::namespaced(env.client.clone(), "apps");
    env.wait("the failure", 60, || {
        let api = api.clone();
        async move {
            let status = api.get("fixme").await.ok()?.status?;
            status.failed_issuance_attempts.filter(|n| *n >= 1)
        }
    })
    .await;
    // Ten minutes of backoff ahead; fixing the spec does not wait for it.
    api.patch(
        "fixme",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"dnsNames": ["fixed.example.test"]}})),
    )
    .await
    .expect("fix the spec");
    let cert = env.certificate_ready("apps", "fixme", 1).await;
    let status = cert.status.expect("status");
    assert_eq!(
        status.failed_issuance_attempts, None,
        "the failure record is gone"
    );
    assert_eq!(status.last_failure_time, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_the_ca_offers_is_used_and_one_it_does_not_fails_plainly() {
    use certwright::pki::cert::parse_chain;
    let env = Env::start(|_| {}, &[]).await;
    env.cluster_issuer_with("tlsserver", json!({"profile": "tlsserver"}))
        .await;
    env.cluster_issuer_with("nosuch", json!({"profile": "nosuch"}))
        .await;
    env.namespace("apps").await;
    for (name, issuer) in [("served", "tlsserver"), ("unserved", "nosuch")] {
        env.certificate(
            "apps",
            name,
            json!({"secretName": format!("{name}-tls"), "commonName": format!("{name}.example.test"),
                   "dnsNames": [format!("{name}.example.test")],
                   "issuerRef": {"name": issuer, "kind": "ClusterIssuer"}}),
        )
        .await;
    }
    // The profile's lifetime (45 days, like Let's Encrypt's tlsserver),
    // and no common name, which the profile leaves out.
    env.certificate_ready("apps", "served", 1).await;
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), "apps")
        .get("served-tls")
        .await
        .expect("secret");
    let leaf = parse_chain(&secret.data.expect("data")["tls.crt"].0).expect("leaf");
    assert_eq!(
        leaf.not_after - leaf.not_before + 1,
        45 * 86_400,
        "tlsserver's validity"
    );
    assert_eq!(
        leaf.common_name, None,
        "tlsserver issues without a common name"
    );

    let api: Api<Certificate> = Api::namespaced(env.client.clone(), "apps");
    let message = env.issuing_failure("apps", "unserved").await;
    assert!(
        message.contains(
            "the ACME server does not offer profile \"nosuch\"; it offers classic, shortlived, tlsserver"
        ),
        "{message}"
    );
    // Not retried in a loop: the backoff (2 s doubling here) spaces the
    // attempts, and none reaches the CA.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let status = api
        .get("unserved")
        .await
        .expect("cert")
        .status
        .expect("status");
    let attempts = status.failed_issuance_attempts.unwrap_or(0);
    assert!((1..=3).contains(&attempts), "{attempts} attempts in 5 s");
    for order in orders(&env, "apps").await {
        if order
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("unserved-"))
        {
            assert_eq!(
                order.status.as_ref().and_then(|s| s.url.clone()),
                None,
                "no order was placed at the CA"
            );
        }
    }
    let placed = env.proxy.count("POST", "/order-plz");
    assert_eq!(placed, 1, "only the served profile's order reached the CA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_errors_and_cut_watches_only_delay_issuance() {
    use certwright_testcluster::cluster::api_proxy::ApiFault;
    let env = Env::start(|_| {}, &[]).await;
    let faults = env.cluster.api_faults();
    let before = faults.injected();
    // Every status write of the first attempts, and every Secret create, fails once or more.
    for (method, path, status, retry_after) in [
        ("PATCH", "/certificates/", 500, None),
        ("PATCH", "/orders/", 409, None),
        ("POST", "/secrets", 429, Some(1)),
    ] {
        faults.add(ApiFault {
            method: Some(method.into()),
            path_contains: path.into(),
            user_agent_contains: None,
            remaining: 3,
            status,
            retry_after,
        });
    }
    env.namespace("shaky").await;
    env.certificate(
        "shaky",
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["shaky.example.test"]}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    faults.cut_watches();
    env.certificate_ready("shaky", "web", 1).await;
    assert!(
        faults.injected() > before,
        "the controller's requests went through the fault proxy"
    );
    // ... as its own ServiceAccount: the token the kubelet mounted, not admin credentials.
    let audit = certwright_testcluster::cluster::audit::AuditLog::new(
        &env.cluster.control_plane().audit_log(),
    );
    let own = audit.by_user(
        env.audit_from,
        certwright_testcluster::deploy::CONTROLLER_USER,
    );
    assert!(
        own.iter()
            .any(|r| r.resource == "certificates" && r.subresource == "status" && r.is_write()),
        "the controller writes as {}",
        certwright_testcluster::deploy::CONTROLLER_USER
    );
    faults.cut_watches();
    // The controller still sees changes after its watches were cut: a new name re-issues.
    Api::<Certificate>::namespaced(env.client.clone(), "shaky")
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"dnsNames": ["shaky.example.test", "www.shaky.example.test"]}}),
            ),
        )
        .await
        .expect("patch");
    env.certificate_ready("shaky", "web", 2).await;
}

/// An issuer with only HTTP-01 solvers cannot prove a wildcard: the Order
/// fails saying so, and the CA is never asked for an order; nor for a
/// Certificate naming only email addresses, or an IPv4-mapped IPv6 address.
/// One asking for isCA or a client-auth usage is issued without them, and
/// its Ready condition and an event say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_without_a_dns01_solver_fails_before_anything_is_ordered() {
    let env = Env::start(|_| {}, &[]).await;
    env.namespace("wild").await;
    env.certificate(
        "wild",
        "wild",
        json!({"secretName": "wild-tls", "dnsNames": ["*.wild.example.test", "www.wild.example.test"]}),
    )
    .await;
    let reason = env
        .wait("the Order to fail", 60, || async {
            orders(&env, "wild")
                .await
                .into_iter()
                .find_map(|o| o.status?.reason)
                .filter(|r| r.contains("wildcard"))
        })
        .await;
    assert!(
        reason.contains("*.wild.example.test") && reason.contains("wildcard names need DNS-01"),
        "{reason}"
    );
    // Forms no ACME CA accepts: said before asking, nothing ordered.
    for (name, spec, says) in [
        (
            "mail",
            json!({"secretName": "mail-tls", "emailAddresses": ["ops@wild.example.test"]}),
            "emailAddresses and uris need another issuer",
        ),
        (
            "mapped",
            json!({"secretName": "mapped-tls", "ipAddresses": ["::ffff:127.166.0.1"]}),
            "write 127.166.0.1 in ipAddresses",
        ),
    ] {
        env.certificate("wild", name, spec).await;
        let message = env.issuing_failure("wild", name).await;
        assert!(message.contains(says), "{name}: {message}");
    }
    let ordered = env.proxy.count("POST", "/order-plz");
    assert_eq!(ordered, 0, "no ACME order for a name no solver can prove");

    // Asked for what no ACME CA issues: issued without it, and said so.
    env.certificate(
        "wild",
        "ca",
        json!({"secretName": "ca-tls", "dnsNames": ["ca.wild.example.test"], "isCA": true,
               "usages": ["digital signature", "server auth", "client auth"]}),
    )
    .await;
    let ready = env.certificate_ready("wild", "ca", 1).await;
    let message = ready
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(
        message.contains("the ACME CA does not issue isCA, the usage \"client auth\""),
        "{message}"
    );
    env.wait("the NotIssued event", 30, || async {
        env.events("wild", "involvedObject.kind=Certificate")
            .await
            .into_iter()
            .find(|(r, m)| r == "NotIssued" && m.contains("client auth"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_class_nobody_serves_fails_the_self_check_and_the_ca_is_never_asked() {
    use certwright::api::Challenge;
    let env = Env::start(|_| {}, &[]).await;
    env.cluster_issuer_with(
        "unserved",
        json!({"solvers": [{"http01": {"ingress": {"ingressClassName": "nobody-serves"}}}]}),
    )
    .await;
    env.namespace("apps").await;
    env.certificate(
        "apps",
        "lost",
        json!({"secretName": "lost-tls", "dnsNames": ["lost.example.test"],
               "issuerRef": {"name": "unserved", "kind": "ClusterIssuer"}}),
    )
    .await;
    let challenges: Api<Challenge> = Api::namespaced(env.client.clone(), "apps");
    let reason = env
        .wait("the self-check to say why", 60, || {
            let challenges = challenges.clone();
            async move {
                let listed = challenges.list(&ListParams::default()).await.ok()?;
                let reason = listed.items.first()?.status.as_ref()?.reason.clone()?;
                reason.contains("not routed").then_some(reason)
            }
        })
        .await;
    assert!(
        reason.starts_with("Waiting for HTTP-01 challenge propagation: ")
            && reason.contains("wrong status code 404")
            && reason.contains("The solver answers in-cluster")
            && reason.contains("ingressClassName \"nobody-serves\""),
        "{reason}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let asked = env.proxy.count("POST", "/chalZ/");
    assert_eq!(asked, 0, "the CA was never asked to validate");
}

//! The floor: the same orders with bare instant-acme, the same HTTP client
//! and the same polling as the controllers, tokens served by an in-process
//! token server reached through the ingress as the controllers' are.

use std::time::{Duration, Instant};

use certwright::solver::server::{Presented, Tokens};
use certwright_testcluster::cluster::{LocalCluster, NODE_IP};
use instant_acme::{Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::{POLL_MS, Row, create, percentile};

/// Routes every floor name to an in-process token server.
pub async fn floor_routes(client: &kube::Client, class: &str, hosts: &[String], port: u16) {
    let ns = "floor";
    let _ = Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
        )
        .await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    if services
        .get_opt("floor-solver")
        .await
        .ok()
        .flatten()
        .is_none()
    {
        create(
            &services,
            json!({"metadata": {"name": "floor-solver"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}}),
        )
        .await;
        create(&Api::<EndpointSlice>::namespaced(client.clone(), ns), json!({
            "metadata": {"name": "floor-solver", "labels": {"kubernetes.io/service-name": "floor-solver"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": [NODE_IP.to_string()], "conditions": {"ready": true}}]}))
        .await;
    }
    let rules: Vec<serde_json::Value> = hosts
        .iter()
        .map(|h| json!({"host": h, "http": {"paths": [{"path": "/.well-known/acme-challenge/", "pathType": "Prefix",
            "backend": {"service": {"name": "floor-solver", "port": {"number": 80}}}}]}}))
        .collect();
    create(
        &Api::<Ingress>::namespaced(client.clone(), ns),
        json!({"metadata": {"generateName": "floor-"}, "spec": {"ingressClassName": class, "rules": rules}}),
    )
    .await;
}

/// Waits until the ingress at `ingress` routes the floor's hosts (Traefik
/// applies a new Ingress a moment after the watch delivers it): a probe
/// token for `host` passes the controller's own self-check through it.
pub async fn floor_routed(cluster: &LocalCluster, tokens: &Tokens, host: &str) {
    let ingress = cluster.ingress_node_addr();
    let (token, key) = ("floor-probe", "floor-probe.ok");
    tokens.write().expect("lock").insert(
        token.into(),
        Presented {
            domain: host.into(),
            key_authorization: key.into(),
            accepted: false,
        },
    );
    let probe = certwright::solver::check::Probe {
        via: Some(ingress.to_string()),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(why) = certwright::solver::check::reachable(&probe, host, token, key).await {
        if Instant::now() > deadline {
            let log = cluster.ingress_log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "the ingress did not route {host} to the floor's token server within 30 s: {why}\nTraefik's log (tail):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One certificate the bare way; returns the time from `start` to the chain.
/// Fails loudly instead of hanging when a floor step never finishes.
async fn step<T>(what: &str, host: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(60), f).await {
        Ok(v) => v,
        Err(_) => panic!("floor: {what} for {host} did not finish within 60 s"),
    }
}

/// Orders that went invalid and were placed again, over every floor batch.
static PLACED_AGAIN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One certificate the bare way, its order placed again (up to twice) when
/// the CA fails its validation, as a controller would; returns the time
/// from `start` to the chain.
async fn floor_one(account: Account, tokens: Tokens, host: String, start: Instant) -> f64 {
    let mut attempt = 1;
    loop {
        match floor_order(&account, &tokens, &host).await {
            Ok(()) => return start.elapsed().as_secs_f64() * 1000.0,
            Err(why) if attempt < 3 => {
                attempt += 1;
                PLACED_AGAIN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                eprintln!("floor: {host}: {why}; placing the order again");
            }
            Err(why) => panic!("floor: {host}: {why}, three times"),
        }
    }
}

async fn floor_order(account: &Account, tokens: &Tokens, host: &str) -> Result<(), String> {
    let host = host.to_string();
    let ids = [Identifier::Dns(host.clone())];
    let mut order = step("newOrder", &host, account.new_order(&NewOrder::new(&ids)))
        .await
        .expect("new order");
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.expect("authz");
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let mut challenge = authz.challenge(ChallengeType::Http01).expect("http-01");
        tokens.write().expect("lock").insert(
            challenge.token.clone(),
            Presented {
                domain: host.clone(),
                key_authorization: challenge.key_authorization().as_str().to_string(),
                accepted: true,
            },
        );
        step("challenge ready", &host, challenge.set_ready())
            .await
            .expect("ready");
    }
    // The controller's polling: from 50 ms, doubling, at most POLL_MS.
    let mut delay = Duration::from_millis(50);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = step("order refresh", &host, order.refresh())
            .await
            .expect("refresh");
        match state.status {
            instant_acme::OrderStatus::Ready => break,
            instant_acme::OrderStatus::Pending | instant_acme::OrderStatus::Processing => {}
            other => return Err(format!("the order is {other:?}: {:?}", state.error)),
        }
        assert!(
            Instant::now() < deadline,
            "floor order for {host} never got ready"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(POLL_MS));
    }
    let key = rcgen::KeyPair::generate().expect("key");
    let csr = rcgen::CertificateParams::new(vec![host.clone()])
        .expect("params")
        .serialize_request(&key)
        .expect("csr");
    order.finalize_csr(csr.der()).await.expect("finalize");
    let mut delay = Duration::from_millis(50);
    while order.certificate().await.expect("certificate").is_none() {
        assert!(
            Instant::now() < deadline,
            "floor certificate for {host} never came"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(POLL_MS));
    }
    Ok(())
}

pub async fn floor(account: &Account, tokens: &Tokens, n: usize, batch: &str) -> Row {
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(floor_one(
                account.clone(),
                tokens.clone(),
                format!("f{batch}-{i}.example.test"),
                start,
            ))
        })
        .collect();
    let mut times = Vec::new();
    for t in tasks {
        times.push(t.await.expect("task"));
    }
    let total = start.elapsed().as_secs_f64() * 1000.0;
    times.sort_by(f64::total_cmp);
    let again = PLACED_AGAIN.swap(0, std::sync::atomic::Ordering::Relaxed);
    if again > 0 {
        println!("floor n={n}: {again} orders failed validation and were placed again");
    }
    Row {
        who: "floor: bare instant-acme",
        n,
        p50: percentile(&times, 50.0),
        p95: percentile(&times, 95.0),
        total,
        requests: None,
        writes: None,
        to_ca: None,
        cpu: None,
        rss_mib: None,
        times,
    }
}

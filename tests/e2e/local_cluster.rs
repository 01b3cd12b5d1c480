//! The local cluster end to end: certwright's own solver run as a Pod in a
//! network namespace of its own, reached through a Service (the real
//! EndpointSlice controller's endpoints) and an Ingress by Host header; Pod
//! deletion stops the process; an Ingress of another class is not routed;
//! Deployments run and scale through the real controllers; and a complete
//! ACME order against pebble, which validates every token by resolving the
//! names to the ingress (Traefik), as Let's Encrypt would.

use std::net::SocketAddr;
use std::time::Duration;

use certwright_testcluster::cluster::{INGRESS_IP, LocalCluster, NODE_IP};
use certwright_testcluster::pebble::Pebble;
use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::common;

use common::eventually;
use common::{http_exchange as exchange, http_get};

/// A solver Pod, its Service and an Ingress of `class` for one token, in `ns`.
async fn present(
    client: &kube::Client,
    ns: &str,
    class: &str,
    name: &str,
    domain: &str,
    token: &str,
    key: &str,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = json!({"metadata": {"name": name, "labels": {"solver": name}},
        "spec": {"restartPolicy": "Always", "containers": [{"name": "solver", "image": "example.registry/certwright:dev",
            "command": ["/usr/local/bin/certwright"],
            "args": ["solver", "--token", token, "--key", key, "--domain", domain],
            "ports": [{"name": "http", "containerPort": 8089}],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]}});
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).expect("pod"),
    )
    .await
    .expect("create pod");
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc = json!({"metadata": {"name": name}, "spec": {"selector": {"solver": name}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(svc).expect("svc"),
        )
        .await
        .expect("create service");
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), ns);
    let ing = json!({"metadata": {"name": name}, "spec": {"ingressClassName": class, "rules": [{"host": domain, "http": {"paths": [
        {"path": format!("/.well-known/acme-challenge/{token}"), "pathType": "Exact",
         "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}});
    ingresses
        .create(
            &PostParams::default(),
            &serde_json::from_value(ing).expect("ingress"),
        )
        .await
        .expect("create ingress");
}

/// A namespace of the test's own in the shared cluster, labelled so the
/// next turn removes it.
async fn namespace(client: &kube::Client, ns: &str) {
    let labelled = json!({"metadata": {"name": ns, "labels": {(common::env::OWNED): "true"}}});
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(labelled).expect("namespace"),
        )
        .await;
}

/// Whether something listens on `addr` inside the cluster.
async fn listening(cluster: &LocalCluster, addr: SocketAddr) -> bool {
    cluster.node().connect(addr).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certwright_pod_is_reached_through_service_and_ingress() {
    let (cluster, _turn) = common::env::exclusive().await;
    let client = cluster.client();
    let ns = "lc-ingress";
    namespace(&client, ns).await;
    present(
        &client,
        ns,
        cluster.ingress_class(),
        "solver-a",
        "app.example.test",
        "tok_A",
        "tok_A.thumb",
    )
    .await;
    let ingress = cluster.ingress_addr();
    let path = "/.well-known/acme-challenge/tok_A";
    let body = eventually("the token through Traefik", || async {
        match http_get(ingress, "app.example.test", path).await {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    })
    .await;
    assert_eq!(body, "tok_A.thumb");
    assert!(
        cluster
            .ingress_log()
            .contains(&format!("\"GET {path} HTTP/1.1\" 200")),
        "Traefik's access log shows the request: {}",
        cluster.ingress_log()
    );
    assert_eq!(
        http_get(ingress, "other.example.test", path)
            .await
            .expect("get")
            .0,
        404,
        "wrong host"
    );

    let pod = Api::<Pod>::namespaced(client.clone(), ns)
        .get("solver-a")
        .await
        .expect("pod");
    let status = pod.status.expect("status");
    let pod_ip = status.pod_ip.expect("podIP");
    assert!(
        pod_ip.starts_with("10.244.") && pod_ip != NODE_IP.to_string(),
        "{pod_ip}"
    );
    assert!(
        status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("kubernetes.io/service-name=solver-a"))
        .await
        .expect("slices");
    let addresses: Vec<String> = slices
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flat_map(|e| e.addresses.clone()))
        .collect();
    assert_eq!(addresses, std::slice::from_ref(&pod_ip));
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get("solver-a")
        .await
        .expect("svc");
    let cluster_ip = svc.spec.and_then(|s| s.cluster_ip).expect("clusterIP");
    let service: SocketAddr = format!("{cluster_ip}:80").parse().expect("addr");
    let stream = cluster
        .node()
        .connect(service)
        .await
        .expect("the cluster IP answers");
    let via_service = exchange(stream, "app.example.test", path)
        .await
        .expect("service proxy");
    assert_eq!(
        via_service,
        (200, "tok_A.thumb".to_string()),
        "clusterIP:port proxies to the Pod"
    );
    let ingresses = Api::<Ingress>::namespaced(client.clone(), ns);
    eventually("Traefik writes the Ingress's load balancer", || async {
        let ingress = ingresses.get("solver-a").await.ok()?;
        let lb = ingress.status?.load_balancer?.ingress?;
        (lb.first()?.ip.as_deref() == Some(INGRESS_IP.to_string().as_str())).then_some(())
    })
    .await;
    assert!(
        cluster
            .pod_log(ns, "solver-a")
            .contains("served key authorization"),
        "{}",
        cluster.pod_log(ns, "solver-a")
    );

    // An Ingress of another class is not routed.
    present(
        &client,
        ns,
        "nginx",
        "solver-b",
        "b.example.test",
        "tok_B",
        "tok_B.thumb",
    )
    .await;
    let pod_b = eventually("solver-b running", || async {
        let p = Api::<Pod>::namespaced(client.clone(), ns)
            .get("solver-b")
            .await
            .ok()?;
        p.status?.pod_ip
    })
    .await;
    let pod_b: SocketAddr = format!("{pod_b}:8089").parse().expect("address");
    eventually("solver-b listening", || async {
        listening(cluster, pod_b).await.then_some(())
    })
    .await;
    assert_eq!(
        http_get(
            ingress,
            "b.example.test",
            "/.well-known/acme-challenge/tok_B"
        )
        .await
        .expect("get")
        .0,
        404
    );

    // A Pod of an image the local kubelet cannot run stays Pending, saying why.
    let foreign = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}});
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(foreign).expect("pod"),
        )
        .await
        .expect("create");
    let waiting = eventually("the foreign Pod's waiting reason", || async {
        let p = Api::<Pod>::namespaced(client.clone(), ns)
            .get("web")
            .await
            .ok()?;
        let status = p.status?;
        let state = status.container_statuses?.first()?.state.clone()?.waiting?;
        Some((
            status.phase?,
            state.reason?,
            state.message.unwrap_or_default(),
        ))
    })
    .await;
    assert_eq!(
        (waiting.0.as_str(), waiting.1.as_str()),
        ("Pending", "ImageNotRunnable"),
        "{waiting:?}"
    );
    assert!(waiting.2.contains("certwright"), "{waiting:?}");

    // Deleting the Pod stops its process.
    Api::<Pod>::namespaced(client.clone(), ns)
        .delete("solver-a", &DeleteParams::default())
        .await
        .expect("delete");
    let pod_a: SocketAddr = format!("{pod_ip}:8089").parse().expect("address");
    eventually("the solver process to stop", || async {
        (!listening(cluster, pod_a).await).then_some(())
    })
    .await;
    eventually("the Pod deleted by the kubelet", || async {
        Api::<Pod>::namespaced(client.clone(), ns)
            .get_opt("solver-a")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_validates_tokens_served_by_pods_behind_traefik() {
    let (cluster, _turn) = common::env::exclusive().await;
    // pebble and the ACME client live in the node, Traefik in a Pod.
    cluster.in_node(order_through_traefik(cluster)).await;
}

async fn order_through_traefik(cluster: &'static LocalCluster) {
    let ingress = cluster.ingress_node_addr();
    let pebble = Pebble::start(cluster.pebble_options())
        .await
        .expect("pebble");
    let client = cluster.control_plane().client();
    let ns = "lc-pebble";
    namespace(&client, ns).await;
    let account = common::pebble_account(&pebble).await;
    let names = ["one.example.test", "two.example.test"];
    let identifiers: Vec<Identifier> = names
        .iter()
        .map(|n| Identifier::Dns(n.to_string()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .expect("order");
    let mut pending = Vec::new();
    {
        let mut authorizations = order.authorizations();
        let mut i = 0;
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.expect("authorization");
            assert_eq!(authz.status, AuthorizationStatus::Pending);
            let domain = authz.identifier().to_string();
            let challenge = authz.challenge(ChallengeType::Http01).expect("http-01");
            let (token, key) = (
                challenge.token.clone(),
                challenge.key_authorization().as_str().to_string(),
            );
            let name = format!("solver-{i}");
            present(
                &client,
                ns,
                cluster.ingress_class(),
                &name,
                &domain,
                &token,
                &key,
            )
            .await;
            eventually("the token through Traefik", || async {
                (http_get(
                    ingress,
                    &domain,
                    &format!("/.well-known/acme-challenge/{token}"),
                )
                .await
                .ok()?
                    == (200, key.clone()))
                    .then_some(())
            })
            .await;
            pending.push(name);
            i += 1;
        }
    }
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.expect("authorization");
            authz
                .challenge(ChallengeType::Http01)
                .expect("http-01")
                .set_ready()
                .await
                .expect("ready");
        }
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .timeout(Duration::from_secs(30));
    let status = order
        .poll_ready(&retries)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", pebble.log()));
    assert_eq!(status, OrderStatus::Ready, "{}", pebble.log());
    let (_key, csr) = common::csr_for(&names);
    order.finalize_csr(&csr).await.expect("finalize");
    let chain_pem = order.poll_certificate(&retries).await.expect("certificate");
    common::verify_chain(&chain_pem, pebble.issuing_root_pem(), &names);
    let served: usize = pending
        .iter()
        .map(|p| {
            cluster
                .pod_log(ns, p)
                .matches("served key authorization")
                .count()
        })
        .sum();
    assert!(
        served >= 2,
        "pebble's validation requests reached the solver Pods"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_run_their_pods_and_scale() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    let (cluster, _turn) = common::env::exclusive().await;
    let client = cluster.client();
    let ns = "lc-deploy";
    namespace(&client, ns).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deploy = json!({"metadata": {"name": "solver"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "solver"}},
        "template": {"metadata": {"labels": {"app": "solver"}}, "spec": {"containers": [{"name": "solver", "image": "ghcr.io/example/certwright:1",
            "args": ["solver", "--token", "t", "--key", "t.k", "--domain", "d.example.test"],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]}}}});
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(deploy).expect("deployment"),
        )
        .await
        .expect("create");
    let ready = |want: i32| {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("solver").await.ok()?;
            (d.status?.ready_replicas? == want).then_some(())
        }
    };
    eventually("two ready replicas", || ready(2)).await;
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app=solver"))
        .await
        .expect("pods");
    assert_eq!(pods.items.len(), 2);
    assert!(pods.items.iter().all(|p| {
        p.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o[0].kind == "ReplicaSet")
    }));
    deployments
        .patch(
            "solver",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scale");
    eventually("one pod left", || async {
        let pods = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default().labels("app=solver"))
            .await
            .ok()?;
        (pods.items.len() == 1).then_some(())
    })
    .await;
    eventually("one ready replica", || ready(1)).await;
}

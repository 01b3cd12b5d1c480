//! Services: a cluster IP from the environment's loopback block, an
//! EndpointSlice (and Endpoints) of the ready Pods a selector picks, and a
//! TCP proxy on clusterIP:port forwarding to ready endpoints ("kube-proxy").
//! Selector-less Services route to the EndpointSlices others write.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{Block, Shared};
use crate::apiserver::store::Filter;

/// Ready endpoints of a Service port: (ip, port).
pub fn endpoints(
    shared: &Shared,
    namespace: &str,
    service: &str,
    port_name: &str,
) -> Vec<(String, u16)> {
    let Some(slices) = shared
        .api
        .store()
        .resource("discovery.k8s.io", "v1", "endpointslices")
    else {
        return Vec::new();
    };
    let filter = Filter {
        namespace: Some(namespace.to_string()),
        labels: crate::apiserver::selector::LabelSelector::parse(&format!(
            "kubernetes.io/service-name={service}"
        ))
        .unwrap_or_default(),
        ..Filter::default()
    };
    let (items, _) = shared.api.store().list(&slices, &filter);
    let mut out = Vec::new();
    for slice in items {
        let port = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64());
        let Some(port) = port else { continue };
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            if ep["conditions"]["ready"] == Value::Bool(false) {
                continue;
            }
            for ip in ep["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                out.push((ip.to_string(), port as u16));
            }
        }
    }
    out
}

fn selects(selector: &Value, pod: &Value) -> bool {
    let Some(sel) = selector.as_object() else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| pod["metadata"]["labels"][k] == *v)
}

fn pod_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["podIP"].is_string()
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn target_port(port: &Value, pod: &Value) -> Option<u64> {
    match &port["targetPort"] {
        Value::Number(n) => n.as_u64(),
        Value::String(name) => pod["spec"]["containers"]
            .as_array()?
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| p["name"] == name.as_str())?["containerPort"]
            .as_u64(),
        _ => port["port"].as_u64(),
    }
}

/// Recomputes Service IPs, EndpointSlices and proxies for every Service.
pub fn reconcile(shared: &Arc<Shared>) {
    let store = shared.api.store();
    let (Some(services), Some(pods), Some(slices), Some(endpoints_rt)) = (
        store.resource("", "v1", "services"),
        store.resource("", "v1", "pods"),
        store.resource("discovery.k8s.io", "v1", "endpointslices"),
        store.resource("", "v1", "endpoints"),
    ) else {
        return;
    };
    let (all_services, _) = store.list(&services, &Filter::default());
    let (all_pods, _) = store.list(&pods, &Filter::default());
    let mut live = Vec::new();
    for svc in all_services {
        let ns = svc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = svc["metadata"]["name"].as_str().unwrap_or("").to_string();
        let mut cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
        if cluster_ip.is_empty() {
            cluster_ip = shared.allocate_ip(Block::Services);
            let ip = cluster_ip.clone();
            let _ = store.patch(&services, &ns, &name, None, "service-ip-allocator", |o| {
                o["spec"]["clusterIP"] = json!(ip);
                o["spec"]["clusterIPs"] = json!([ip]);
                Ok(())
            });
        }
        let ports: Vec<Value> = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
        for p in &ports {
            if let Some(port) = p["port"].as_u64() {
                live.push((
                    cluster_ip.clone(),
                    port as u16,
                    ns.clone(),
                    name.clone(),
                    p["name"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        let selector = &svc["spec"]["selector"];
        if selector.as_object().is_none_or(|s| s.is_empty()) {
            continue;
        }
        let chosen: Vec<&Value> = all_pods
            .iter()
            .filter(|p| p["metadata"]["namespace"] == ns.as_str() && selects(selector, p))
            .collect();
        let endpoints: Vec<Value> = chosen
            .iter()
            .filter(|p| p["status"]["podIP"].is_string())
            .map(|p| {
                json!({"addresses": [p["status"]["podIP"]], "conditions": {"ready": pod_ready(p)},
                       "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}})
            })
            .collect();
        let slice_ports: Vec<Value> = ports
            .iter()
            .map(|p| {
                let target = chosen.first().and_then(|pod| target_port(p, pod)).or_else(|| p["targetPort"].as_u64()).or_else(|| p["port"].as_u64());
                json!({"name": p["name"].as_str().unwrap_or(""), "port": target, "protocol": p["protocol"].as_str().unwrap_or("TCP")})
            })
            .collect();
        let owner = json!([{"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-local"), "namespace": ns, "ownerReferences": owner,
                         "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": slice_ports});
        let _ = store.apply(
            &slices,
            &ns,
            &format!("{name}-local"),
            None,
            slice,
            "endpointslice-controller",
            true,
        );
        let ready: Vec<Value> = endpoints
            .iter()
            .filter(|e| e["conditions"]["ready"] == true)
            .map(|e| json!({"ip": e["addresses"][0]}))
            .collect();
        let subsets = if ready.is_empty() {
            json!([])
        } else {
            json!([{"addresses": ready, "ports": slice_ports.iter().map(|p| json!({"name": p["name"], "port": p["port"], "protocol": p["protocol"]})).collect::<Vec<_>>()}])
        };
        let legacy = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "ownerReferences": owner}, "subsets": subsets});
        let _ = store.apply(
            &endpoints_rt,
            &ns,
            &name,
            None,
            legacy,
            "endpoints-controller",
            true,
        );
    }
    shared.proxies.sync(shared, live);
}

/// TCP listeners on clusterIP:port, one task each.
#[derive(Default)]
pub struct Proxies {
    running: std::sync::Mutex<HashMap<(String, u16), tokio::task::JoinHandle<()>>>,
}

impl Proxies {
    fn sync(&self, shared: &Arc<Shared>, live: Vec<(String, u16, String, String, String)>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let wanted: Vec<(String, u16)> = live
            .iter()
            .map(|(ip, port, ..)| (ip.clone(), *port))
            .collect();
        running.retain(|k, task| {
            let keep = wanted.contains(k);
            if !keep {
                task.abort();
            }
            keep
        });
        for (ip, port, ns, svc, port_name) in live {
            if running.contains_key(&(ip.clone(), port)) {
                continue;
            }
            let shared = shared.clone();
            let addr = (ip.clone(), port);
            let task = tokio::spawn(async move {
                let Ok(listener) = tokio::net::TcpListener::bind((addr.0.as_str(), addr.1)).await
                else {
                    return;
                };
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    let targets = endpoints(&shared, &ns, &svc, &port_name);
                    let Some((ip, port)) = targets.first().cloned() else {
                        continue;
                    };
                    tokio::spawn(async move {
                        if let Ok(mut outbound) =
                            tokio::net::TcpStream::connect((ip.as_str(), port)).await
                        {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            });
            running.insert((ip, port), task);
        }
    }

    pub fn stop_all(&self) {
        for (_, task) in self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            task.abort();
        }
    }
}

/// Keeps Services, EndpointSlices and proxies in step with Pods and Services.
pub async fn run(shared: Arc<Shared>) {
    let mut events = shared.api.store().subscribe();
    reconcile(&shared);
    loop {
        match events.recv().await {
            Ok(e) if e.group.is_empty() && (e.plural == "pods" || e.plural == "services") => {
                reconcile(&shared)
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => reconcile(&shared),
            Err(_) => return,
        }
    }
}

//! The Service proxy ("kube-proxy"): for every Service port it listens on
//! clusterIP:port in the node's namespace (the Service range is local
//! there) and forwards each connection to a ready endpoint from the
//! Service's EndpointSlices, which the real EndpointSlice controller
//! writes (or, for selector-less Services, whoever owns them). The
//! `kubernetes` Service leads to the fault-injecting API proxy.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::{API_PROXY_PORT, NODE_IP, Shared, reflect};

/// Ready endpoints of `namespace/service`'s port named `port_name`.
pub fn endpoints(
    slices: &Store<EndpointSlice>,
    namespace: &str,
    service: &str,
    port_name: &str,
) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for slice in slices.state() {
        let labels = slice.metadata.labels.as_ref();
        if slice.metadata.namespace.as_deref() != Some(namespace)
            || labels
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .map(String::as_str)
                != Some(service)
        {
            continue;
        }
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            out.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, port as u16)),
            );
        }
    }
    out
}

/// One listening Service port.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Port {
    addr: SocketAddr,
    namespace: String,
    service: String,
    name: String,
}

fn ports(services: &Store<Service>) -> Vec<Port> {
    let mut out = Vec::new();
    for svc in services.state() {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        else {
            continue;
        };
        for p in spec.ports.iter().flatten() {
            out.push(Port {
                addr: SocketAddr::new(ip, p.port as u16),
                namespace: svc.metadata.namespace.clone().unwrap_or_default(),
                service: svc.metadata.name.clone().unwrap_or_default(),
                name: p.name.clone().unwrap_or_default(),
            });
        }
    }
    out
}

async fn serve(listener: tokio::net::TcpListener, port: Port, slices: Store<EndpointSlice>) {
    let next = AtomicUsize::new(0);
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = if port.namespace == "default" && port.service == "kubernetes" {
            Some(SocketAddr::new(NODE_IP.into(), API_PROXY_PORT))
        } else {
            let ready = endpoints(&slices, &port.namespace, &port.service, &port.name);
            (!ready.is_empty()).then(|| ready[next.fetch_add(1, Ordering::Relaxed) % ready.len()])
        };
        let Some(target) = target else {
            continue; // no ready endpoint: the connection is refused (closed)
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = outbound.set_nodelay(true);
                let _ = inbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Keeps a listener on every Service port until the cluster stops.
pub async fn run(shared: Arc<Shared>) {
    let client = shared.admin();
    let slices: Store<EndpointSlice> = reflect(Api::all(client.clone()));
    let (services, service_writer) = reflector::store();
    let mut service_events = watcher(Api::<Service>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(service_writer)
        .boxed();
    let mut running: HashMap<Port, tokio::task::JoinHandle<()>> = HashMap::new();
    while service_events.next().await.is_some() {
        let wanted = ports(&services);
        running.retain(|port, task| {
            let keep = wanted.contains(port);
            if !keep {
                task.abort();
            }
            keep
        });
        for port in wanted {
            if running.contains_key(&port) {
                continue;
            }
            match tokio::net::TcpListener::bind(port.addr).await {
                Ok(listener) => {
                    let task = tokio::spawn(serve(listener, port.clone(), slices.clone()));
                    running.insert(port, task);
                }
                Err(e) => eprintln!("service proxy: cannot listen on {}: {e}", port.addr),
            }
        }
    }
}

//! The ingress controller: one listener on the node (the address and port
//! pebble validates on) routing as ingress-nginx does for what certwright
//! uses: exact host match, Exact before Prefix/ImplementationSpecific (as
//! Prefix), longest path first, only Ingresses of its class
//! (`spec.ingressClassName` or the `kubernetes.io/ingress.class`
//! annotation; class-less ones when its IngressClass is the default),
//! backends by Service name and port in the Ingress's own namespace,
//! reached through their cluster IP. Admitted Ingresses get
//! `status.loadBalancer`. Unrouted requests get 404, like nginx's default
//! backend. It reads everything from watches, as a real controller does.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use super::{NODE_IP, ROUTER_PORT, Shared, reflect};

#[derive(Clone)]
struct Router {
    class: String,
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    services: Store<Service>,
    client: Client<HttpConnector, Body>,
}

/// Whether a router of `class` serves `ingress` (`default_class`: its
/// IngressClass is marked the cluster default).
pub fn admits(class: &str, default_class: bool, ingress: &Value) -> bool {
    if let Some(name) = ingress["spec"]["ingressClassName"].as_str() {
        return name == class;
    }
    if let Some(annotation) =
        ingress["metadata"]["annotations"]["kubernetes.io/ingress.class"].as_str()
    {
        return annotation == class;
    }
    default_class
}

impl Router {
    /// Whether the router's IngressClass is the cluster's default.
    fn default_class(&self) -> bool {
        self.classes
            .get(&ObjectRef::new(&self.class))
            .is_some_and(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("ingressclass.kubernetes.io/is-default-class"))
                    .is_some_and(|v| v == "true")
            })
    }

    fn admitted(&self) -> Vec<Value> {
        let default_class = self.default_class();
        self.ingresses
            .state()
            .iter()
            .filter_map(|i| serde_json::to_value(i.as_ref()).ok())
            .filter(|i| admits(&self.class, default_class, i))
            .collect()
    }
}

/// A matched route: (namespace, service, port as number or name).
#[derive(Debug, PartialEq)]
pub struct Route {
    pub namespace: String,
    pub service: String,
    pub port: Value,
}

fn path_matches(path_type: &str, rule_path: &str, request: &str) -> bool {
    if path_type == "Exact" {
        return request == rule_path;
    }
    let rule = rule_path.trim_end_matches('/');
    rule.is_empty() || request == rule || request.starts_with(&format!("{rule}/"))
}

/// The route for `host` and `path` among `ingresses` (already class-filtered).
pub fn route(ingresses: &[Value], host: &str, path: &str) -> Option<Route> {
    let host = host
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(host)
        .to_ascii_lowercase();
    let mut best: Option<(bool, usize, Route)> = None;
    for ing in ingresses {
        let ns = ing["metadata"]["namespace"].as_str().unwrap_or("");
        for rule in ing["spec"]["rules"].as_array().into_iter().flatten() {
            if let Some(h) = rule["host"].as_str()
                && h.to_ascii_lowercase() != host
            {
                continue;
            }
            for p in rule["http"]["paths"].as_array().into_iter().flatten() {
                let rule_path = p["path"].as_str().unwrap_or("/");
                let path_type = p["pathType"].as_str().unwrap_or("ImplementationSpecific");
                if !path_matches(path_type, rule_path, path) {
                    continue;
                }
                let exact = path_type == "Exact";
                let candidate = Route {
                    namespace: ns.to_string(),
                    service: p["backend"]["service"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    port: p["backend"]["service"]["port"]["number"]
                        .clone()
                        .as_u64()
                        .map(Value::from)
                        .unwrap_or_else(|| p["backend"]["service"]["port"]["name"].clone()),
                };
                let better = match &best {
                    None => true,
                    Some((b_exact, b_len, _)) => (exact, rule_path.len()) > (*b_exact, *b_len),
                };
                if better {
                    best = Some((exact, rule_path.len(), candidate));
                }
            }
        }
    }
    best.map(|(_, _, r)| r)
}

async fn forward(State(router): State<Router>, request: Request<Body>) -> Response {
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let path = request.uri().path().to_string();
    let Some(route) = route(&router.admitted(), &host, &path) else {
        return (StatusCode::NOT_FOUND, "default backend - 404").into_response();
    };
    let Some(svc) = router
        .services
        .get(&ObjectRef::new(&route.service).within(&route.namespace))
    else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("service {}/{} not found", route.namespace, route.service),
        )
            .into_response();
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let port = spec.ports.iter().flatten().find(|p| match &route.port {
        Value::Number(n) => n.as_u64() == Some(p.port as u64),
        Value::String(name) => p.name.as_deref() == Some(name.as_str()),
        _ => false,
    });
    let (Some(ip), Some(port)) = (spec.cluster_ip.clone(), port) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no such service port").into_response();
    };
    let (mut parts, body) = request.into_parts();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    parts.uri = match format!("http://{ip}:{}{path}{query}", port.port).parse() {
        Ok(uri) => uri,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    match router
        .client
        .request(Request::from_parts(parts, body))
        .await
    {
        Ok(response) => response.map(Body::new).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("upstream {ip}:{}: {e}", port.port),
        )
            .into_response(),
    }
}

/// Binds the node's port 80 and creates the router's IngressClass; the
/// returned future serves until the cluster stops.
pub async fn start(shared: Arc<Shared>) -> Result<impl std::future::Future<Output = ()>, String> {
    let client = shared.admin();
    let class = shared.options.ingress_class.clone();
    let ingress_class = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": class}, "spec": {"controller": "certwright.io/testcluster-router"}});
    Api::<IngressClass>::all(client.clone())
        .patch(
            &class,
            &PatchParams::apply("ingress-router").force(),
            &Patch::Apply(ingress_class),
        )
        .await
        .map_err(|e| format!("creating IngressClass {class}: {e}"))?;
    let addr = SocketAddr::new(NODE_IP.into(), ROUTER_PORT);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding the ingress router on {addr}: {e}"))?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let router = Router {
        class,
        ingresses: reflect(Api::all(client.clone())),
        classes: reflect(Api::all(client.clone())),
        services: reflect(Api::all(client.clone())),
        client: Client::builder(TokioExecutor::new()).build(http),
    };
    tokio::spawn(admit_loop(router.clone(), client));
    let app = axum::Router::new().fallback(forward).with_state(router);
    Ok(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// Writes `status.loadBalancer` on every Ingress the router admits, as
/// the watch delivers it.
async fn admit_loop(router: Router, client: kube::Client) {
    let ip = NODE_IP.to_string();
    let mut events = watcher(
        Api::<Ingress>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .boxed();
    while let Some(event) = events.next().await {
        let Ok(ingress) = event else { continue };
        let Ok(ing) = serde_json::to_value(&ingress) else {
            continue;
        };
        if !admits(&router.class, router.default_class(), &ing)
            || ing["status"]["loadBalancer"]["ingress"][0]["ip"] == ip.as_str()
        {
            continue;
        }
        let (Some(ns), Some(name)) = (
            ing["metadata"]["namespace"].as_str(),
            ing["metadata"]["name"].as_str(),
        ) else {
            continue;
        };
        let _ = Api::<Ingress>::namespaced(client.clone(), ns)
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(ns: &str, host: Option<&str>, paths: Value) -> Value {
        let mut rule = json!({"http": {"paths": paths}});
        if let Some(h) = host {
            rule["host"] = json!(h);
        }
        json!({"metadata": {"namespace": ns}, "spec": {"rules": [rule]}})
    }

    fn path(p: &str, t: &str, svc: &str) -> Value {
        json!({"path": p, "pathType": t, "backend": {"service": {"name": svc, "port": {"number": 80}}}})
    }

    #[test]
    fn routes_by_host_then_exact_then_longest_prefix() {
        let all = vec![
            ingress(
                "a",
                Some("example.com"),
                json!([path("/", "Prefix", "web")]),
            ),
            ingress(
                "a",
                Some("example.com"),
                json!([path("/.well-known/acme-challenge/tok", "Exact", "solver")]),
            ),
            ingress(
                "b",
                Some("example.com"),
                json!([path("/.well-known", "ImplementationSpecific", "wk")]),
            ),
            ingress("c", None, json!([path("/", "Prefix", "catchall")])),
        ];
        let svc = |h: &str, p: &str| route(&all, h, p).map(|r| r.service);
        assert_eq!(
            svc("example.com", "/.well-known/acme-challenge/tok").as_deref(),
            Some("solver")
        );
        assert_eq!(
            svc("EXAMPLE.com:80", "/.well-known/acme-challenge/other").as_deref(),
            Some("wk")
        );
        assert_eq!(svc("example.com", "/index.html").as_deref(), Some("web"));
        assert_eq!(
            svc("example.com", "/.well-knownx").as_deref(),
            Some("web"),
            "prefix matches whole path elements"
        );
        assert_eq!(svc("other.org", "/x").as_deref(), Some("catchall"));
        assert_eq!(route(&all[..3], "other.org", "/x"), None);
    }
}

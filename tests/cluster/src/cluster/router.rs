//! The ingress controller: one listener (the address and port pebble
//! validates on) routing as ingress-nginx does for what certwright uses:
//! exact host match, Exact before Prefix/ImplementationSpecific (as Prefix),
//! longest path first, only Ingresses of its class (`spec.ingressClassName`
//! or the `kubernetes.io/ingress.class` annotation; class-less ones when its
//! IngressClass is the default), backends by Service name and port in the
//! Ingress's own namespace. Admitted Ingresses get `status.loadBalancer`.
//! Unrouted requests get 404, like nginx's default backend.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::Shared;
use crate::apiserver::store::Filter;

/// Whether this router serves `ingress`.
pub fn admits(shared: &Shared, ingress: &Value) -> bool {
    let class = &shared.options.ingress_class;
    if let Some(name) = ingress["spec"]["ingressClassName"].as_str() {
        return name == class;
    }
    if let Some(annotation) =
        ingress["metadata"]["annotations"]["kubernetes.io/ingress.class"].as_str()
    {
        return annotation == class;
    }
    let Some(classes) = shared
        .api
        .store()
        .resource("networking.k8s.io", "v1", "ingressclasses")
    else {
        return false;
    };
    shared.api.store().get(&classes, "", class).is_ok_and(|c| {
        c["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    })
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

async fn forward(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let path = request.uri().path().to_string();
    let Some(ingresses_rt) = shared
        .api
        .store()
        .resource("networking.k8s.io", "v1", "ingresses")
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (all, _) = shared.api.store().list(&ingresses_rt, &Filter::default());
    let admitted: Vec<Value> = all.into_iter().filter(|i| admits(&shared, i)).collect();
    let Some(route) = route(&admitted, &host, &path) else {
        return (StatusCode::NOT_FOUND, "default backend - 404").into_response();
    };
    let Some(services) = shared.api.store().resource("", "v1", "services") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(svc) = shared
        .api
        .store()
        .get(&services, &route.namespace, &route.service)
    else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("service {}/{} not found", route.namespace, route.service),
        )
            .into_response();
    };
    let port = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| match &route.port {
            Value::Number(n) => p["port"].as_u64() == n.as_u64(),
            Value::String(name) => p["name"].as_str() == Some(name.as_str()),
            _ => false,
        });
    let port_name = port
        .and_then(|p| p["name"].as_str())
        .unwrap_or("")
        .to_string();
    let Some((ip, target)) =
        super::network::endpoints(&shared, &route.namespace, &route.service, &port_name)
            .into_iter()
            .next()
    else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no ready endpoints").into_response();
    };
    let (mut parts, body) = request.into_parts();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    parts.uri = match format!("http://{ip}:{target}{path}{query}").parse() {
        Ok(uri) => uri,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(Body::new).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("upstream {ip}:{target}: {e}"),
        )
            .into_response(),
    }
}

/// Serves the router and keeps admitted Ingresses' status up to date.
pub async fn run(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    let status_task = tokio::spawn(admit_loop(shared.clone()));
    let app = axum::Router::new().fallback(forward).with_state(shared);
    let _ = axum::serve(listener, app).await;
    status_task.abort();
}

async fn admit_loop(shared: Arc<Shared>) {
    let mut events = shared.api.store().subscribe();
    loop {
        if let Some(rt) = shared
            .api
            .store()
            .resource("networking.k8s.io", "v1", "ingresses")
        {
            let (all, _) = shared.api.store().list(&rt, &Filter::default());
            let ip = shared.router_ip.clone();
            for ing in all.iter().filter(|i| admits(&shared, i)) {
                if ing["status"]["loadBalancer"]["ingress"][0]["ip"] == ip.as_str() {
                    continue;
                }
                let (ns, name) = (
                    ing["metadata"]["namespace"].as_str().unwrap_or(""),
                    ing["metadata"]["name"].as_str().unwrap_or(""),
                );
                let _ = shared.api.store().patch(
                    &rt,
                    ns,
                    name,
                    Some("status"),
                    "ingress-router",
                    |o| {
                        o["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
                        Ok(())
                    },
                );
            }
        }
        loop {
            match events.recv().await {
                Ok(e) if e.plural == "ingresses" || e.plural == "ingressclasses" => break,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                Err(_) => return,
            }
        }
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

//! Counts the controller's requests to the API server by verb and status:
//! a tower layer under kube's client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::{Method, Request, Response};

/// The Kubernetes verb of a request (as the audit log names it).
pub fn verb(method: &Method, path: &str, query: Option<&str>) -> &'static str {
    let watch = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // After /api/v1 or /apis/<group>/<version>: [namespaces/<ns>/]<resource>[/<name>[/<sub>]]
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or(&[]);
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let collection = rest.len() == 1;
    match *method {
        Method::GET if watch => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "other",
    }
}

/// The layer: `ClientBuilder::with_layer(&CountRequests)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountRequests;

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted(inner)
    }
}

/// A service that counts each request when its response head arrives.
#[derive(Clone, Debug)]
pub struct Counted<S>(S);

type Boxed<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B, R> tower::Service<Request<B>> for Counted<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Boxed<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let verb = verb(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        let response = self.0.call(request);
        Box::pin(async move {
            let response = response.await;
            let code = response.as_ref().map_or(0, |r| r.status().as_u16());
            super::api_request(verb, code);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_from_method_path_and_query() {
        let cases = [
            (
                Method::GET,
                "/apis/cert-manager.io/v1/certificates",
                Some("watch=true&resourceVersion=1"),
                "watch",
            ),
            (
                Method::GET,
                "/apis/cert-manager.io/v1/certificates",
                Some("limit=500"),
                "list",
            ),
            (
                Method::GET,
                "/apis/cert-manager.io/v1/namespaces/a/certificates",
                None,
                "list",
            ),
            (
                Method::GET,
                "/apis/cert-manager.io/v1/namespaces/a/certificates/web",
                None,
                "get",
            ),
            (Method::GET, "/api/v1/namespaces/a", None, "get"),
            (Method::GET, "/api/v1/namespaces", None, "list"),
            (
                Method::PATCH,
                "/apis/acme.cert-manager.io/v1/namespaces/a/orders/o/status",
                None,
                "patch",
            ),
            (Method::POST, "/api/v1/namespaces/a/secrets", None, "create"),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/c/leases/l",
                None,
                "update",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/a/pods/p",
                None,
                "delete",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/a/pods",
                None,
                "deletecollection",
            ),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(verb(&method, path, query), want, "{method} {path}");
        }
    }
}

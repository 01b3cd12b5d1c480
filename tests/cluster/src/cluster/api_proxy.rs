//! A fault-injecting proxy in front of kube-apiserver, where the
//! `kubernetes` Service leads: it presents the API server's own
//! cluster-CA certificate, forwards each request with the caller's bearer
//! token (never credentials of its own), and on demand answers chosen
//! requests with an error (500, 409, 429 with Retry-After), or never
//! (a dropped request, as on a half-open connection), adds latency, or
//! cuts the watches in flight.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{API_PROXY_PORT, APISERVER_PORT, NODE_IP, Shared};

/// Requests to fail.
#[derive(Clone, Debug)]
pub struct ApiFault {
    /// HTTP method to match (`GET`, `PATCH`…), any when `None`.
    pub method: Option<String>,
    /// Substring the request path must contain.
    pub path_contains: String,
    /// Substring the User-Agent must contain (one replica's requests), any
    /// when `None`.
    pub user_agent_contains: Option<String>,
    /// How many more matching requests to fail.
    pub remaining: usize,
    /// The answer's status; [`DROP`] answers never.
    pub status: u16,
    pub retry_after: Option<u64>,
}

/// The status of a fault that never answers.
pub const DROP: u16 = 0;

/// What the proxy does to the requests passing through.
pub struct Faults {
    /// Each fault with how many requests it answered.
    faults: Mutex<Vec<(ApiFault, usize)>>,
    injected: std::sync::atomic::AtomicUsize,
    latency: Mutex<Duration>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            faults: Mutex::default(),
            injected: Default::default(),
            latency: Mutex::default(),
            cut: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Faults {
    pub fn add(&self, fault: ApiFault) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((fault, 0));
    }

    /// Removes the faults on `path_contains`; says how many requests they
    /// had answered.
    pub fn remove(&self, path_contains: &str) -> usize {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let (gone, kept) = faults
            .drain(..)
            .partition::<Vec<_>, _>(|(f, _)| f.path_contains == path_contains);
        *faults = kept;
        gone.iter().map(|(_, answered)| answered).sum()
    }

    /// How many requests the faults on `path_contains` answered so far.
    pub fn answered(&self, path_contains: &str) -> usize {
        let faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        faults
            .iter()
            .filter(|(f, _)| f.path_contains == path_contains)
            .map(|(_, answered)| answered)
            .sum()
    }

    /// Latency added before every forwarded request.
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = latency;
    }

    /// How many requests were answered with a fault so far.
    pub fn injected(&self) -> usize {
        self.injected.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends every watch (and other streaming response) now in flight.
    pub fn cut_watches(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    fn take(&self, method: &str, path: &str, agent: &str) -> Option<ApiFault> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let (fault, answered) = faults.iter_mut().find(|(f, _)| {
            f.remaining > 0
                && f.method.as_deref().is_none_or(|m| m == method)
                && path.contains(&f.path_contains)
                && f.user_agent_contains
                    .as_deref()
                    .is_none_or(|a| agent.contains(a))
        })?;
        fault.remaining -= 1;
        *answered += 1;
        self.injected
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(fault.clone())
    }
}

type Body = BoxBody<Bytes, hyper::Error>;
type Upstream = Client<hyper_rustls::HttpsConnector<HttpConnector>, Incoming>;

fn status(fault: &ApiFault) -> Response<Body> {
    let reason = match fault.status {
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("injected by the local cluster's API proxy ({})", fault.status),
        "reason": reason, "code": fault.status});
    let mut response = Response::builder()
        .status(fault.status)
        .header("content-type", "application/json");
    if let Some(secs) = fault.retry_after {
        response = response.header("retry-after", secs.to_string());
    }
    response
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap_or_default()
}

async fn handle(
    mut request: Request<Incoming>,
    shared: Arc<Shared>,
    upstream: Upstream,
) -> Result<Response<Body>, Infallible> {
    let faults = &shared.api_proxy;
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let agent = request
        .headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Some(fault) = faults.take(request.method().as_str(), &path, &agent) {
        if fault.status == DROP {
            std::future::pending::<()>().await;
        }
        return Ok(status(&fault));
    }
    let latency = *faults.latency.lock().unwrap_or_else(|e| e.into_inner());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let uri = format!("https://{NODE_IP}:{APISERVER_PORT}{path}");
    *request.uri_mut() = match uri.parse() {
        Ok(u) => u,
        Err(_) => {
            return Ok(Response::builder()
                .status(400)
                .body(Body::default())
                .unwrap_or_default());
        }
    };
    let response = match upstream.request(request).await {
        Ok(r) => r,
        Err(e) => {
            let body = Full::new(Bytes::from(format!("API proxy: {e}")))
                .map_err(|never| match never {})
                .boxed();
            return Ok(Response::builder()
                .status(502)
                .body(body)
                .unwrap_or_default());
        }
    };
    // Streams end when the watches are cut.
    let mut cut = faults.cut.subscribe();
    cut.mark_unchanged();
    let (parts, body) = response.into_parts();
    let frames = body.into_data_stream().map(|r| r.map(Frame::data));
    let until_cut = frames.take_until(async move {
        let _ = cut.changed().await;
    });
    Ok(Response::from_parts(
        parts,
        BodyExt::boxed(StreamBody::new(until_cut)),
    ))
}

fn tls(shared: &Shared) -> Result<(rustls::ServerConfig, rustls::ClientConfig), String> {
    let dir = shared.plane.dir();
    let read =
        |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("reading {name}: {e}"));
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read("apiserver.crt")?)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(&read("apiserver.key")?).map_err(|e| e.to_string())?;
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(shared.plane.ca_pem().as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((server, client))
}

/// Binds the proxy on the node; the returned future serves it.
pub async fn start(shared: Arc<Shared>) -> Result<impl std::future::Future<Output = ()>, String> {
    let (server, client) = tls(&shared)?;
    let addr = SocketAddr::new(NODE_IP.into(), API_PROXY_PORT);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding the API proxy on {addr}: {e}"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client)
        .https_only()
        .enable_http1()
        .build();
    let upstream: Upstream = Client::builder(TokioExecutor::new()).build(https);
    Ok(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let (acceptor, shared, upstream) = (acceptor.clone(), shared.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |r| {
                    handle(r, shared.clone(), upstream.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    })
}

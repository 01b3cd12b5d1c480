//! A fault-injecting HTTPS proxy in front of pebble. It serves pebble's
//! own TLS certificate, forwards every request with its Host header (so
//! pebble writes the proxy's address into every URL it returns and the
//! client never leaves the proxy), records what passed, and answers the
//! next matching requests with a chosen ACME problem instead: the seed's
//! 404 "No such authorization", a 503 with Retry-After, and so on.
//!
//! The same proxy, as a guard, stands in front of every pebble (see
//! [`Phases`]): pebble 2.10.3 can deadlock under concurrent orders.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::pebble::Pebble;

/// A problem to answer instead of forwarding.
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: String,
    /// Matches request paths starting with this.
    pub path_prefix: String,
    pub remaining: u32,
    pub status: u16,
    pub problem_type: String,
    pub detail: String,
    /// A Retry-After header, exactly as sent (a hostile CA sends anything).
    pub retry_after: Option<String>,
    /// Forward the request and only add the Retry-After header to pebble's answer.
    pub forward: bool,
}

/// One request that reached the proxy.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub injected: bool,
}

#[derive(Default)]
struct State {
    faults: Vec<Fault>,
    seen: Vec<Seen>,
    phases: Option<Arc<Phases>>,
}

/// Keeps pebble's authorization requests and all its other requests from
/// overlapping (either kind runs with others of its kind).
///
/// pebble 2.10.3 deadlocks under concurrency (seen at 100 concurrent
/// orders, 2 runs in 3; a goroutine dump of a stalled run shows the cycle):
/// its authorization handler takes the authorization's lock and then, to
/// check the account, the store's read lock; a newOrder holds the store's
/// read lock while it reads every authorization (`FindValidAuthorization`),
/// and an order fetch does while it reads its own (`GetOrderByID`); and a
/// third request's pending write (`AddChallenge`, `AddOrder`) blocks new
/// readers. Each waits on the next for good. With the two kinds apart, no
/// authorization lock is held while a store lock is wanted by another.
#[derive(Default)]
pub struct Phases {
    state: Mutex<PhaseState>,
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct PhaseState {
    /// The kind running now (`None`: nothing runs).
    current: Option<usize>,
    active: usize,
    waiting: [usize; 2],
    /// Waiters of the current kind who still come in although the other
    /// kind waits: those who waited when the phase began.
    admit: usize,
    /// The kind that ran last, so the other goes first when both wait.
    last: usize,
}

/// The kind of a request: 1 for an authorization, 0 for anything else.
fn kind(path: &str) -> usize {
    usize::from(path.starts_with("/authZ/"))
}

/// A running request of one kind; the next kind may start when all are dropped.
pub struct Phase(Arc<Phases>);

impl Phases {
    /// Waits until a request of `kind` may run. Cancel-safe: a request
    /// dropped while it waits (its client went away) stops counting as
    /// waiting, or the other kind would wait for it for good.
    pub async fn enter(self: &Arc<Self>, kind: usize) -> Phase {
        let mut waiter = Waiter {
            phases: self,
            kind,
            counted: false,
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let other = 1 - kind;
                let may = match st.current {
                    Some(c) => {
                        c == kind && (st.waiting[other] == 0 || (waiter.counted && st.admit > 0))
                    }
                    None => st.waiting[other] == 0 || st.last != kind,
                };
                if may {
                    if waiter.counted {
                        st.waiting[kind] -= 1;
                        waiter.counted = false;
                    }
                    if st.current.is_none() {
                        // Everyone of this kind who waited comes in with this phase.
                        st.admit = st.waiting[kind];
                    } else if st.waiting[other] > 0 {
                        st.admit = st.admit.saturating_sub(1);
                    }
                    st.current = Some(kind);
                    st.last = kind;
                    st.active += 1;
                    return Phase(self.clone());
                }
                if !waiter.counted {
                    st.waiting[kind] += 1;
                    waiter.counted = true;
                }
            }
            notified.await;
        }
    }
}

/// A request counted as waiting in [`Phases`], until admitted or dropped.
struct Waiter<'a> {
    phases: &'a Phases,
    kind: usize,
    counted: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.counted {
            let mut st = self.phases.state.lock().unwrap_or_else(|e| e.into_inner());
            st.waiting[self.kind] -= 1;
            if st.current == Some(self.kind) {
                st.admit = st.admit.saturating_sub(1);
            }
            drop(st);
            self.phases.changed.notify_waiters();
        }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        st.active -= 1;
        if st.active == 0 {
            st.current = None;
            drop(st);
            self.0.changed.notify_waiters();
        }
    }
}

/// The running proxy; stops when dropped.
pub struct AcmeProxy {
    /// The directory URL to give clients instead of pebble's.
    pub directory_url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

use crate::pebble::HttpsClient;

fn problem(fault: &Fault) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"type": fault.problem_type, "detail": fault.detail, "status": fault.status});
    let mut response = Response::builder()
        .status(fault.status)
        .header("content-type", "application/problem+json");
    if let Some(value) = &fault.retry_after {
        response = response.header("retry-after", value.as_str());
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
    client: HttpsClient,
    upstream: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let injected = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let fault = st
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == method && path.starts_with(&f.path_prefix));
        fault.map(|f| {
            f.remaining -= 1;
            f.clone()
        })
    };
    let record = |status: u16, injected: bool| {
        state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .push(Seen {
                at: Instant::now(),
                method: method.clone(),
                path: path.clone(),
                status,
                injected,
            });
    };
    let (injected, add_retry_after) = match injected {
        Some(f) if f.forward => (None, f.retry_after),
        other => (other, None),
    };
    if let Some(fault) = injected {
        record(fault.status, true);
        return Ok(problem(&fault));
    }
    // The whole request is read before a phase is entered: a client that
    // dies mid-request (a controller killed in a namespace that is gone
    // sends no RST) must not hold the phase, and with it every other
    // client, while its body never arrives.
    let (parts, body) = request.into_parts();
    let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_secs(10), body.collect()).await else {
        record(400, false);
        return Ok(Response::builder()
            .status(400)
            .body(Full::default())
            .unwrap_or_default());
    };
    let bytes = bytes.to_bytes();
    let phases = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .phases
        .clone();
    let _phase = match phases {
        Some(p) => Some(p.enter(kind(&path)).await),
        None => None,
    };
    let mut forward = Request::builder()
        .method(parts.method)
        .uri(format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        forward = forward.header(name, value);
    }
    let Ok(forward) = forward.body(Full::new(bytes)) else {
        record(500, false);
        return Ok(Response::builder()
            .status(500)
            .body(Full::default())
            .unwrap_or_default());
    };
    match client.request(forward).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            record(parts.status.as_u16(), add_retry_after.is_some());
            let mut response = Response::from_parts(parts, Full::new(bytes));
            if let Some(value) = add_retry_after.and_then(|v| v.parse().ok()) {
                response.headers_mut().insert("retry-after", value);
            }
            Ok(response)
        }
        Err(e) => {
            record(502, false);
            Ok(Response::builder()
                .status(502)
                .body(Full::new(Bytes::from(e.to_string())))
                .unwrap_or_default())
        }
    }
}

type Prepared = (tokio_rustls::TlsAcceptor, HttpsClient, String, String);

impl AcmeProxy {
    /// Starts a proxy for `pebble` on a free port of pebble's address; run
    /// the returned future where pebble's network is (the node's runtime,
    /// for a pebble in the local cluster).
    pub fn start(
        pebble: &Pebble,
    ) -> impl std::future::Future<Output = Result<Self, String>> + Send + 'static {
        let (cert, key) = pebble.tls_leaf_paths();
        let prepared = Self::prepare(&cert, &key, &pebble.tls_ca_pem, &pebble.directory_url);
        async move {
            let (acceptor, client, upstream, host) = prepared?;
            Self::serve(acceptor, client, upstream, host, None).await
        }
    }

    /// The guard in front of a pebble whose directory is `directory_url`
    /// (see [`Phases`]); it serves pebble's TLS certificate `cert`/`key`.
    pub(crate) async fn guard(
        cert: &Path,
        key: &Path,
        ca_pem: &str,
        directory_url: &str,
    ) -> Result<Self, String> {
        let (acceptor, client, upstream, host) = Self::prepare(cert, key, ca_pem, directory_url)?;
        Self::serve(acceptor, client, upstream, host, Some(Arc::default())).await
    }

    fn prepare(
        cert: &Path,
        key: &Path,
        ca_pem: &str,
        directory_url: &str,
    ) -> Result<Prepared, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?;
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let client: HttpsClient = crate::pebble::https_client(ca_pem)?;
        let upstream = directory_url.trim_end_matches("/dir").to_string();
        let host = upstream
            .trim_start_matches("https://")
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        Ok((acceptor, client, upstream, host))
    }

    async fn serve(
        acceptor: tokio_rustls::TlsAcceptor,
        client: HttpsClient,
        upstream: String,
        host: String,
        phases: Option<Arc<Phases>>,
    ) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind((host.as_str(), 0))
            .await
            .map_err(|e| e.to_string())?;
        let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
        let state = Arc::new(Mutex::new(State {
            phases,
            ..State::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = shared.clone();
                let client = client.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, state.clone(), client.clone(), upstream.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Self {
            directory_url: format!("https://{host}:{}/dir", addr.port()),
            state,
            task,
        })
    }

    /// Answers the next `count` `method` requests under `path_prefix`
    /// with `status` and the ACME problem `problem_type`/`detail`.
    pub fn fail_next(
        &self,
        method: &str,
        path_prefix: &str,
        count: u32,
        status: u16,
        problem_type: &str,
        detail: &str,
    ) {
        self.add(Fault {
            method: method.into(),
            path_prefix: path_prefix.into(),
            remaining: count,
            status,
            problem_type: problem_type.into(),
            detail: detail.into(),
            retry_after: None,
            forward: false,
        });
    }

    /// Adds `fault` after those already set (the first one matching a
    /// request, with uses left, answers it).
    pub fn add(&self, fault: Fault) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .faults
            .push(fault);
    }

    /// Forwards the next `count` `method` requests under `path_prefix`
    /// and adds `Retry-After: retry_after` to pebble's answers.
    pub fn retry_after_next(&self, method: &str, path_prefix: &str, count: u32, retry_after: &str) {
        self.add(Fault {
            method: method.into(),
            path_prefix: path_prefix.into(),
            remaining: count,
            status: 0,
            problem_type: String::new(),
            detail: String::new(),
            retry_after: Some(retry_after.into()),
            forward: true,
        });
    }

    /// Drops every fault not yet used.
    pub fn clear_faults(&self) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .faults
            .clear();
    }

    /// How many `method` requests under `path_prefix` reached the proxy.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .iter()
            .filter(|s| s.method == method && s.path.starts_with(path_prefix))
            .count()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .clone()
    }
}

impl Drop for AcmeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn authorization_requests_are_their_own_kind() {
        assert_eq!(kind("/authZ/abc"), 1);
        assert_eq!(kind("/order-plz"), 0);
        assert_eq!(kind("/my-order/abc"), 0);
        assert_eq!(kind("/chalZ/abc"), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_two_kinds_never_overlap_and_each_runs_with_its_own() {
        let phases: Arc<Phases> = Arc::default();
        let running = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let most_together = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (phases, running, most) = (phases.clone(), running.clone(), most_together.clone());
            tasks.push(tokio::spawn(async move {
                let k = usize::from(i % 3 == 0);
                let _phase = phases.enter(k).await;
                let now = running[k].fetch_add(1, Ordering::SeqCst) + 1;
                most[k].fetch_max(now, Ordering::SeqCst);
                assert_eq!(running[1 - k].load(Ordering::SeqCst), 0, "kinds overlapped");
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                running[k].fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.expect("no overlap, no hang");
        }
        assert!(most_together[0].load(Ordering::SeqCst) > 1);
        assert!(most_together[1].load(Ordering::SeqCst) > 1);
    }

    #[tokio::test]
    async fn a_waiter_dropped_while_waiting_blocks_nobody() {
        let phases: Arc<Phases> = Arc::default();
        let held = phases.enter(0).await;
        // An authorization request waits, and its client goes away.
        let waiting = {
            let phases = phases.clone();
            tokio::spawn(async move {
                let _phase = phases.enter(1).await;
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        // Kind 0 ran last and nothing of kind 1 waits: kind 0 goes again.
        let again = tokio::time::timeout(std::time::Duration::from_secs(2), phases.enter(0)).await;
        assert!(again.is_ok(), "a cancelled waiter still counted as waiting");
    }
}

//! The HTTP-01 token server: answers `GET /.well-known/acme-challenge/<token>`
//! with the key authorization, `text/plain`, uncacheable, when the token and
//! the Host (port stripped, case-insensitive) match a presented challenge;
//! 404 otherwise, 405 for methods other than GET and HEAD, and `/healthz`
//! for probes. The decision is a pure function over a token table.
//!
//! It faces the internet (the CA reaches it through the ingress), so it is
//! bounded: request heads must arrive within [`Limits::header_read_timeout`]
//! and fit in 8 KiB, paths longer than [`MAX_PATH`] are refused, at most
//! [`Limits::max_connections`] connections are served at once (the rest wait
//! in the kernel's backlog), bodies are never read, and on shutdown it stops
//! accepting and lets open requests finish for [`Limits::grace`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

const PREFIX: &str = "/.well-known/acme-challenge/";
/// Longer paths are refused before any lookup (tokens are 43 characters).
pub const MAX_PATH: usize = 512;

/// A presented challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presented {
    /// The name being proven (lower case, no trailing dot).
    pub domain: String,
    /// The key authorization to answer with.
    pub key_authorization: String,
    /// The CA was asked to validate it (or is being asked): a replica
    /// shutting down keeps serving it for a while.
    pub accepted: bool,
}

/// Tokens being presented, shared with whoever fills it.
pub type Tokens = Arc<RwLock<HashMap<String, Presented>>>;

/// How much the server takes on.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// How long open connections may finish after shutdown begins.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(5),
            grace: Duration::from_secs(5),
        }
    }
}

fn is_base64url(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host.rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(host)
            .to_string()
    };
    canonical(&name)
}

/// A host as compared: an address in its canonical text (no brackets,
/// IPv6 compressed and lower case), a name in lower case without the
/// trailing dot.
fn canonical(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().to_string(),
        Err(_) => host.trim_end_matches('.').to_ascii_lowercase(),
    }
}

/// The key authorization to serve for `path` requested for `host`, if any.
pub fn answer<'a>(
    tokens: &'a HashMap<String, Presented>,
    host: &str,
    path: &str,
) -> Option<&'a str> {
    if path.len() > MAX_PATH {
        return None;
    }
    let token = path.strip_prefix(PREFIX)?;
    if !is_base64url(token) {
        return None;
    }
    let presented = tokens.get(token)?;
    (host_name(host) == canonical(&presented.domain))
        .then_some(presented.key_authorization.as_str())
}

/// What to answer: status and body.
pub fn decide(
    tokens: &HashMap<String, Presented>,
    method: &Method,
    host: &str,
    path: &str,
) -> (StatusCode, String) {
    if path == "/healthz" {
        return (StatusCode::OK, "ok".into());
    }
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, String::new());
    }
    match answer(tokens, host, path) {
        Some(key) => (StatusCode::OK, key.to_string()),
        None => (StatusCode::NOT_FOUND, String::new()),
    }
}

fn respond(tokens: &Tokens, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let uri = request.uri();
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(uri.host())
        .unwrap_or("");
    let path = uri.path();
    let (status, body) = {
        let table = tokens.read().unwrap_or_else(|e| e.into_inner());
        decide(&table, request.method(), host, path)
    };
    let result = match status {
        _ if path == "/healthz" => "health",
        StatusCode::OK => "served",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        _ if path.len() > MAX_PATH => "refused",
        _ => "unknown_token",
    };
    crate::metrics::solver_request(result);
    if result == "served" {
        tracing::info!(host, path, "served key authorization");
    } else if status != StatusCode::OK {
        tracing::debug!(host, path, %status, "no challenge presented for this request");
    }
    let body = if request.method() == Method::HEAD {
        String::new()
    } else {
        body
    };
    let mut response = text(status, "text/plain", body);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}

/// Serves `tokens` on `addr` until the future is dropped.
pub async fn serve(addr: SocketAddr, tokens: Tokens) -> std::io::Result<()> {
    serve_until(addr, tokens, Limits::default(), std::future::pending()).await
}

/// Serves `tokens` on `addr` until `shutdown` completes, then stops
/// accepting and waits up to `limits.grace` for open connections.
pub async fn serve_until(
    addr: SocketAddr,
    tokens: Tokens,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let handler: Handler = Arc::new(move |request| respond(&tokens, request));
    tracing::info!(%addr, "HTTP-01 solver listening");
    serve_handler(addr, handler, limits, shutdown).await
}

/// Answers one request (from memory: handlers never wait).
pub type Handler = Arc<dyn Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync>;

/// A plain-text response.
pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    response
}

/// Serves `handler` on `addr` with the bounds of `limits` until
/// `shutdown` completes, then stops accepting and waits up to
/// `limits.grace` for open connections (the solver, metrics and health
/// servers share it).
pub async fn serve_handler(
    addr: SocketAddr,
    handler: Handler,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(error = %e, %addr, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let response = handler(&request);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(8192)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let stopping = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let stop_now = tokio::select! {
                _ = connection.as_mut() => false,
                () = stopping => true,
            };
            if stop_now {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.grace, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            %addr, "connections still open after the {:?} grace period",
            limits.grace
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn table() -> HashMap<String, Presented> {
        HashMap::from([(
            "tok_EN-1".to_string(),
            Presented {
                domain: "example.com".into(),
                key_authorization: "tok_EN-1.thumb".into(),
                accepted: false,
            },
        )])
    }

    #[test]
    fn answers_only_the_right_token_for_the_right_host() {
        let t = table();
        let path = "/.well-known/acme-challenge/tok_EN-1";
        assert_eq!(answer(&t, "example.com", path), Some("tok_EN-1.thumb"));
        assert_eq!(
            answer(&t, "Example.COM:80", path),
            Some("tok_EN-1.thumb"),
            "port stripped, case folded"
        );
        assert_eq!(
            answer(&t, "example.com.", path),
            Some("tok_EN-1.thumb"),
            "trailing dot"
        );
        assert_eq!(answer(&t, "other.com", path), None, "wrong host");
        assert_eq!(
            answer(&t, "example.com", "/.well-known/acme-challenge/unknown"),
            None,
            "unknown token"
        );
        assert_eq!(
            answer(&t, "example.com", "/.well-known/acme-challenge/tok%20x"),
            None,
            "not base64url"
        );
        assert_eq!(
            answer(&t, "example.com", "/.well-known/acme-challenge/"),
            None,
            "empty token"
        );
        assert_eq!(answer(&t, "example.com", "/tok_EN-1"), None, "wrong prefix");
        assert_eq!(answer(&t, "[::1]:80", path), None, "IPv6 host");
    }

    #[test]
    fn ip_identifiers_match_their_host_headers() {
        let mut t = HashMap::new();
        for (token, domain) in [("v6", "2001:DB8::1"), ("v4", "192.0.2.7")] {
            t.insert(
                token.to_string(),
                Presented {
                    domain: domain.into(),
                    key_authorization: format!("{token}.thumb"),
                    accepted: false,
                },
            );
        }
        let v6 = "/.well-known/acme-challenge/v6";
        assert_eq!(answer(&t, "[2001:db8::1]", v6), Some("v6.thumb"));
        assert_eq!(
            answer(&t, "[2001:db8:0::1]:80", v6),
            Some("v6.thumb"),
            "any spelling"
        );
        assert_eq!(answer(&t, "[2001:db8::2]", v6), None);
        let v4 = "/.well-known/acme-challenge/v4";
        assert_eq!(answer(&t, "192.0.2.7:80", v4), Some("v4.thumb"));
        assert_eq!(answer(&t, "192.0.2.8", v4), None);
    }

    #[test]
    fn methods_and_health() {
        let t = table();
        let path = "/.well-known/acme-challenge/tok_EN-1";
        assert_eq!(
            decide(&t, &Method::GET, "example.com", path),
            (StatusCode::OK, "tok_EN-1.thumb".into())
        );
        assert_eq!(
            decide(&t, &Method::POST, "example.com", path).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            decide(&t, &Method::DELETE, "example.com", path).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            decide(&t, &Method::GET, "", "/healthz"),
            (StatusCode::OK, "ok".into())
        );
    }

    /// One raw request over a real socket; the status line's code and the body.
    async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        let _ = stream.read_to_string(&mut out).await;
        let code = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (code, body.to_string())
    }

    fn get(path: &str, host: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    }

    async fn start(
        limits: Limits,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let tokens: Tokens = Arc::new(RwLock::new(table()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve_until(addr, tokens, limits, async {
            let _ = rx.await;
        }));
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (addr, tx, task)
    }

    #[tokio::test]
    async fn over_a_socket_it_answers_refuses_and_shuts_down() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, stop, task) = start(limits).await;
        let token = "/.well-known/acme-challenge/tok_EN-1";
        assert_eq!(
            raw(addr, &get(token, "example.com:80")).await,
            (200, "tok_EN-1.thumb".into())
        );
        assert_eq!(
            raw(addr, &get(token, "other.com")).await.0,
            404,
            "wrong host"
        );
        assert_eq!(
            raw(
                addr,
                &get("/.well-known/acme-challenge/tok_EN-2", "example.com")
            )
            .await
            .0,
            404,
            "wrong token"
        );
        assert_eq!(
            raw(
                addr,
                &get(
                    "/.well-known/acme-challenge/../acme-challenge/tok_EN-1",
                    "example.com"
                )
            )
            .await
            .0,
            404,
            "dot segments"
        );
        assert_eq!(
            raw(
                addr,
                &get("/.well-known/acme-challenge/tok%5FEN-1", "example.com")
            )
            .await
            .0,
            404,
            "percent-encoded"
        );
        let long = format!("{token}{}", "A".repeat(MAX_PATH));
        assert_eq!(
            raw(addr, &get(&long, "example.com")).await.0,
            404,
            "long path"
        );
        let huge = format!("/{}", "A".repeat(20_000));
        assert_eq!(
            raw(addr, &get(&huge, "example.com")).await.0,
            431,
            "a request head over 8 KiB"
        );
        let post = format!(
            "POST {token} HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(raw(addr, &post).await.0, 405);
        let head =
            format!("HEAD {token} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
        assert_eq!(raw(addr, &head).await, (200, String::new()));
        assert_eq!(raw(addr, &get("/healthz", "x")).await, (200, "ok".into()));

        // A client that never finishes its request head is cut off.
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nHost: exa")
            .await
            .expect("write");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the slow client was not cut off");

        // Shutdown: the listener goes, the task ends.
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("shut down in time")
            .expect("task")
            .expect("served");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still listening"
        );
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_for_a_free_slot() {
        let limits = Limits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(1),
            ..Limits::default()
        };
        let (addr, _stop, _task) = start(limits).await;
        // The probe connections of `start` close at once and free the slot.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut holder = tokio::net::TcpStream::connect(addr).await.expect("connect");
        holder
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut first = [0u8; 12];
        holder.read_exact(&mut first).await.expect("answered");
        // The slot is taken by the kept-alive `holder`: a second client waits.
        let request = get("/healthz", "x");
        let waiting = tokio::spawn(async move { raw(addr, &request).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "served beyond the connection limit");
        drop(holder);
        let answered = tokio::time::timeout(Duration::from_secs(3), waiting)
            .await
            .expect("served once the slot is free")
            .expect("task");
        assert_eq!(answered, (200, "ok".into()));
    }
}

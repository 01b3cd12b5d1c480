//! The HTTP client instant-acme uses: hyper with TCP_NODELAY (instant-acme's
//! own client leaves Nagle on, which costs ~40 ms per request against a
//! local CA) and rustls trusting the issuer's `caBundle`, the system roots,
//! or, for `skipTLSVerify`, anything. It also records each response's
//! status and `Retry-After` per URL, which instant-acme's errors drop.
//! `HTTPS_PROXY` (and `NO_PROXY`) from the environment are honoured: the
//! CA is then reached through an HTTP CONNECT tunnel. Every request, body
//! included, has a deadline: a CA that stops answering is an error the
//! controllers retry, never a reconcile that waits forever.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use super::retry::MAX_WAIT;
use super::tls::{ClientError, Trust, tls_config};

tokio::task_local! {
    /// Who is asking (an Order's uid), for the requests made inside
    /// [`REQUESTER`]`.scope(..)`: a Retry-After is then read from that
    /// requester's own latest response, not from another Order's on the
    /// same account.
    pub static REQUESTER: String;
}

/// What the last response from one URL said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseInfo {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub at: Instant,
    /// The [`REQUESTER`] of the request, when there was one.
    pub requester: Option<String>,
}

/// Responses by URL, shared by a client and whoever handles its errors.
#[derive(Clone, Debug, Default)]
pub struct ResponseLog(Arc<Mutex<HashMap<String, ResponseInfo>>>);

impl ResponseLog {
    /// The last response from `url`.
    pub fn last(&self, url: &str) -> Option<ResponseInfo> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .cloned()
    }

    /// How long the CA asked to wait after its last answer from `url`.
    pub fn retry_after(&self, url: &str) -> Option<Duration> {
        self.last(url).and_then(|r| r.retry_after)
    }

    /// The Retry-After of the most recent response to `requester`'s
    /// requests, if it asked for one: instant-acme's errors do not say
    /// which URL failed, but the failing request is that requester's
    /// latest.
    pub fn latest_retry_after(&self, requester: &str) -> Option<Duration> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.values()
            .filter(|r| r.requester.as_deref() == Some(requester))
            .max_by_key(|r| r.at)
            .and_then(|r| r.retry_after)
    }

    fn record(&self, url: String, info: ResponseInfo) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= 4096 {
            // Keep memory bounded: old entries are only useful right after an error.
            map.clear();
        }
        map.insert(url, info);
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, relative to `now` (Unix
/// seconds), clamped to [`MAX_WAIT`]: a past date is now, a huge or far
/// date a day; anything else (negative, garbage) is no Retry-After.
pub fn parse_retry_after(value: &str, now: i64) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "very long".
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_WAIT));
    }
    let when = k8s_openapi::jiff::fmt::rfc2822::parse(value)
        .ok()?
        .timestamp()
        .as_second();
    let secs = u64::try_from(when.saturating_sub(now)).unwrap_or(0);
    Some(Duration::from_secs(secs).min(MAX_WAIT))
}

/// The most of a response body read from a CA: ACME answers are JSON
/// documents and certificate chains of a few KiB; a larger body is an
/// error, not memory spent (cert-manager stops at 16 MiB; a chain of even
/// a dozen certificates is under 100 KiB).
pub const MAX_BODY: usize = 1024 * 1024;

struct Recording {
    inner: Box<dyn HttpClient>,
    log: ResponseLog,
}

impl HttpClient for Recording {
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let uri = req.uri().clone();
        let method = req.method().to_string();
        let log = self.log.clone();
        let response = self.inner.request(req);
        Box::pin(async move {
            // Read when polled: the caller's scope is in force then.
            let requester = REQUESTER.try_with(String::clone).ok();
            super::ceiling::turn(&uri.to_string()).await;
            let started = Instant::now();
            let mut response = match response.await {
                Ok(r) => r,
                Err(e) => {
                    crate::metrics::acme_request(&uri, &method, 0, started.elapsed());
                    return Err(e);
                }
            };
            let status = response.parts.status.as_u16();
            crate::metrics::acme_request(&uri, &method, status, started.elapsed());
            let now = k8s_openapi::jiff::Timestamp::now().as_second();
            let retry_after = response
                .parts
                .headers
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now));
            // instant-acme reads the header too (and adds it to the clock
            // unchecked): it sees only the clamped delay, or none.
            match retry_after {
                Some(wait) => {
                    response.parts.headers.insert(
                        hyper::header::RETRY_AFTER,
                        hyper::header::HeaderValue::from(wait.as_secs()),
                    );
                }
                None => {
                    response.parts.headers.remove(hyper::header::RETRY_AFTER);
                }
            }
            log.record(
                uri.to_string(),
                ResponseInfo {
                    status,
                    retry_after,
                    at: Instant::now(),
                    requester,
                },
            );
            if status < 400 {
                return Ok(response);
            }
            // A problem document: count it by type (the body was read
            // whole by the deadline below, so this costs no wait).
            let body = response
                .body
                .into_bytes()
                .await
                .map_err(instant_acme::Error::Other)?;
            let (kind, body) = problem_document(status, &body);
            if let Some(kind) = kind {
                crate::metrics::acme_problem(&kind);
            }
            Ok(BytesResponse {
                parts: response.parts,
                body: Box::new(body),
            })
        })
    }
}

/// An error answer as a problem document that says its HTTP status, so
/// it is classified by what the server said: a document without `status`
/// gets the response's; a body that is no JSON object (a proxy's HTML
/// 502, a truncated answer) becomes a document with its first words as
/// the detail. A document instant-acme could not read as a problem (a key
/// twice, a detail that is no string) keeps only the type and detail that
/// are strings. Returns the problem type, if any, and the body to pass on.
pub fn problem_document(status: u16, body: &Bytes) -> (Option<String>, Bytes) {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut doc)) => {
            let kind = doc.get("type").and_then(|t| t.as_str()).map(str::to_string);
            if doc.get("status").and_then(|s| s.as_u64()).is_none() {
                doc.insert("status".into(), status.into());
            }
            // Written anew: a key the CA sent twice is then there once.
            let mut doc = serde_json::Value::Object(doc);
            if serde_json::from_value::<instant_acme::Problem>(doc.clone()).is_err() {
                let text = |key: &str| doc.get(key).and_then(|v| v.as_str()).map(str::to_string);
                doc = serde_json::json!({"type": text("type"), "detail": text("detail"),
                                         "status": status});
            }
            let body = serde_json::to_vec(&doc)
                .map(Bytes::from)
                .unwrap_or_default();
            (kind, body)
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let words: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let mut detail: String = words.chars().take(200).collect();
            if detail.is_empty() {
                detail = "an empty answer".into();
            }
            let hint = if status < 500 {
                " (is the issuer's server the CA's ACME directory URL?)"
            } else {
                ""
            };
            let doc = serde_json::json!({
                "status": status,
                "detail": format!("the server answered HTTP {status} with no ACME problem document{hint}: {detail}"),
            });
            (None, Bytes::from(doc.to_string()))
        }
    }
}

/// A client like [`client`] that also records every response in the returned log.
pub fn recording_client(trust: &Trust) -> Result<(Box<dyn HttpClient>, ResponseLog), ClientError> {
    let log = ResponseLog::default();
    Ok((recording_into(trust, &log)?, log))
}

/// A client that records into an existing `log` (a session's second client).
pub fn recording_into(
    trust: &Trust,
    log: &ResponseLog,
) -> Result<Box<dyn HttpClient>, ClientError> {
    Ok(Box::new(Recording {
        inner: client(trust)?,
        log: log.clone(),
    }))
}

/// How long one request to the CA may take, from connecting to the last
/// byte of the body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long establishing the TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("the ACME server did not answer {what} within {} s", .after.as_secs_f32())]
struct TimedOut {
    what: String,
    after: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("the ACME server's answer to {what} is larger than {} KiB", MAX_BODY / 1024)]
struct TooLarge {
    what: String,
}

/// hyper's client, reading each whole body (at most [`MAX_BODY`]).
struct Capped<C>(Client<C, BodyWrapper<Bytes>>);

impl<C> HttpClient for Capped<C>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        use http_body_util::BodyExt;
        let what = format!("{} {}", req.method(), req.uri());
        let response = self.0.request(req);
        Box::pin(async move {
            let response = response
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        instant_acme::Error::Other(Box::new(TooLarge { what }))
                    } else {
                        instant_acme::Error::Other(e)
                    }
                })?
                .to_bytes();
            Ok(BytesResponse {
                parts,
                body: Box::new(body),
            })
        })
    }
}

/// Has the whole response (headers and body) before `timeout` passes.
struct Deadline {
    inner: Box<dyn HttpClient>,
    timeout: Duration,
}

impl HttpClient for Deadline {
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let what = format!("{} {}", req.method(), req.uri());
        let timeout = self.timeout;
        let response = self.inner.request(req);
        Box::pin(async move {
            match tokio::time::timeout(timeout, response).await {
                Ok(result) => result,
                Err(_) => Err(instant_acme::Error::Other(Box::new(TimedOut {
                    what,
                    after: timeout,
                }))),
            }
        })
    }
}

/// An instant-acme HTTP client with TCP_NODELAY and the given trust.
pub fn client(trust: &Trust) -> Result<Box<dyn HttpClient>, ClientError> {
    static FROM_ENV: std::sync::OnceLock<Option<Arc<Matcher>>> = std::sync::OnceLock::new();
    let proxy = FROM_ENV.get_or_init(|| {
        let set = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty()));
        set.then(|| Arc::new(Matcher::from_env()))
    });
    client_via(trust, proxy.clone())
}

/// Idle connections kept per CA host, and for how long. A burst (every
/// Ready Certificate's renewal information asked at start, hundreds of
/// orders at once) opens as many connections as it needs; afterwards only
/// these few stay open, so the burst's TLS buffers are given back.
const IDLE_PER_HOST: usize = 8;
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

fn pooled() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .pool_idle_timeout(IDLE_TIMEOUT);
    builder
}

/// Like [`client`], with the proxy rules given instead of read from the
/// environment (`None`: connect directly).
pub fn client_via(
    trust: &Trust,
    proxy: Option<Arc<Matcher>>,
) -> Result<Box<dyn HttpClient>, ClientError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(trust)?)
        .https_or_http()
        .enable_http1();
    let inner: Box<dyn HttpClient> = match proxy {
        Some(proxy) => {
            let https = builder.wrap_connector(ProxyConnector { http, proxy });
            Box::new(Capped(pooled().build::<_, BodyWrapper<Bytes>>(https)))
        }
        None => {
            let https = builder.wrap_connector(http);
            Box::new(Capped(pooled().build::<_, BodyWrapper<Bytes>>(https)))
        }
    };
    Ok(Box::new(Deadline {
        inner,
        timeout: REQUEST_TIMEOUT,
    }))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects directly, or through a CONNECT tunnel when the proxy rules
/// intercept the destination.
#[derive(Clone)]
struct ProxyConnector {
    http: HttpConnector,
    proxy: Arc<Matcher>,
}

impl tower::Service<hyper::Uri> for ProxyConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: hyper::Uri) -> Self::Future {
        let mut http = self.http.clone();
        match self.proxy.intercept(&dst) {
            Some(via) => {
                let mut tunnel = Tunnel::new(via.uri().clone(), http);
                if let Some(auth) = via.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move {
                    let mut tunnel = tunnel;
                    tower::Service::call(&mut tunnel, dst)
                        .await
                        .map_err(BoxError::from)
                })
            }
            None => Box::pin(async move {
                tower::Service::call(&mut http, dst)
                    .await
                    .map_err(BoxError::from)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/fuzz_targets/acme_json.rs: a problem with a key twice
    /// (or a detail that is no string) was passed on as it came, and
    /// instant-acme could not read it as a problem.
    #[test]
    fn every_error_document_reads_as_a_problem() {
        for body in [
            r#"{"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "a", "detail": "b", "status": 400}"#,
            r#"{"type": "urn:ietf:params:acme:error:malformed", "detail": 7}"#,
            r#"{"status": 70000}"#,
            r#"<html>502</html>"#,
        ] {
            let (_, doc) = problem_document(400, &Bytes::from(body));
            let problem: instant_acme::Problem =
                serde_json::from_slice(&doc).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert!(problem.status.is_some(), "{body}");
        }
        let (kind, doc) = problem_document(
            400,
            &Bytes::from(r#"{"type": "t", "detail": "a", "detail": "b"}"#),
        );
        assert_eq!(kind.as_deref(), Some("t"));
        let problem: instant_acme::Problem = serde_json::from_slice(&doc).expect("problem");
        assert_eq!(
            problem.detail.as_deref(),
            Some("b"),
            "the last one, as Go reads it"
        );
    }

    #[test]
    fn retry_after_in_both_forms() {
        assert_eq!(parse_retry_after("7", 0), Some(Duration::from_secs(7)));
        let now = 1_767_225_600; // Thu, 01 Jan 2026 00:00:00 GMT
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[tokio::test]
    async fn responses_are_recorded_with_their_retry_after() {
        crate::install_crypto_provider();
        let app = axum::Router::new().fallback(|| async {
            (
                hyper::StatusCode::TOO_MANY_REQUESTS,
                [(hyper::header::RETRY_AFTER, "7")],
                "slow down",
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (client, log) = recording_client(&Trust::Insecure).expect("client");
        let url = format!("http://{addr}/acme/order/1");
        let request = hyper::Request::get(&url)
            .body(BodyWrapper::from(Vec::new()))
            .expect("request");
        let response = REQUESTER
            .scope("order-a".into(), client.request(request))
            .await
            .expect("response");
        assert_eq!(response.parts.status, 429);
        let info = log.last(&url).expect("recorded");
        assert_eq!(
            (info.status, info.retry_after),
            (429, Some(Duration::from_secs(7)))
        );
        assert_eq!(log.retry_after("http://elsewhere/"), None);
        assert_eq!(
            log.latest_retry_after("order-a"),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            log.latest_retry_after("order-b"),
            None,
            "another Order on the account does not wait for it"
        );
    }

    #[tokio::test]
    async fn a_server_that_stops_answering_is_an_error_not_a_hang() {
        crate::install_crypto_provider();
        // Headers at once, then a body that never ends.
        let app = axum::Router::new().fallback(|| async {
            let stalled = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
            axum::body::Body::from_stream(stalled)
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = Deadline {
            inner: client_via(&Trust::Insecure, None).expect("client"),
            timeout: Duration::from_millis(200),
        };
        let request = hyper::Request::get(format!("http://{addr}/acme/new-nonce"))
            .body(BodyWrapper::from(Vec::new()))
            .expect("request");
        let started = Instant::now();
        let err = client.request(request).await.err().expect("timed out");
        assert!(
            started.elapsed() < REQUEST_TIMEOUT,
            "the short deadline applied"
        );
        assert_eq!(
            err.to_string(),
            format!("the ACME server did not answer GET http://{addr}/acme/new-nonce within 0.2 s")
        );
    }

    #[test]
    fn a_bundle_without_certificates_is_refused_with_a_reason() {
        crate::install_crypto_provider();
        let err = client(&Trust::Bundle(b"not a certificate".to_vec()))
            .err()
            .expect("refused");
        assert_eq!(
            err.to_string(),
            "the CA bundle holds no usable certificate: no PEM certificate found"
        );
    }
}

//! One request of the self-check: GET a path with a Host header from one
//! address, over plain HTTP or (after a redirect) HTTPS accepting any
//! certificate, as ACME validators do. The body is read up to a cap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::acme::tls::AcceptAnything;

/// Bodies are read up to this many bytes (a key authorization is ~87).
pub const BODY_LIMIT: usize = 64 * 1024;

/// What one request answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// How one request failed, in words for the Challenge's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Refused,
    Timeout,
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused => f.write_str("connection refused"),
            Failure::Timeout => f.write_str("no answer within the timeout"),
            Failure::Other(why) => f.write_str(why),
        }
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // Validators follow redirects to HTTPS without checking the
            // certificate (it may be the one being issued).
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder_with_protocol_versions(rustls::ALL_VERSIONS)
                })
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

fn io_failure(what: &str, e: std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Failure::Refused,
        std::io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Other(format!("{what}: {e}")),
    }
}

async fn exchange<S>(io: S, host: &str, path: &str) -> Result<Answer, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failure::Other(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "certwright-self-check")
        .header(hyper::header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::Other(format!("building the request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure::Other(format!("reading the response: {e}")))?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Other(format!("reading the body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            out.extend_from_slice(data);
            if out.len() >= BODY_LIMIT {
                out.truncate(BODY_LIMIT);
                break;
            }
        }
    }
    Ok(Answer {
        status,
        location,
        body: out,
    })
}

/// GET `path` from `addr` with `host` as Host (and as TLS server name when
/// `https`), within `timeout`.
pub async fn get(
    addr: SocketAddr,
    https: bool,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| io_failure("connecting", e))?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return exchange(tcp, host, path).await;
        }
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| Failure::Other(format!("{host:?} is no TLS server name: {e}")))?
            .to_owned();
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, tcp)
            .await
            .map_err(|e| io_failure("TLS handshake", e))?;
        exchange(tls, host, path).await
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Failure::Timeout)?
}

//! The self-checks before the CA is asked.
//!
//! - In-cluster ([`in_cluster`]): the solver itself (a solver Pod's IP, or
//!   the namespace's solver Service) answers the exact key authorization.
//! - As the CA sees it ([`reachable`]): resolve the name (the configured
//!   nameservers, A and AAAA, or the system resolver), GET
//!   `http://<name>/.well-known/acme-challenge/<token>`, follow at most 10
//!   redirects and only to http/https on ports 80/443 and never to a bare
//!   IP (Let's Encrypt's rules), accept any TLS certificate after a
//!   redirect, cap the body, compare after trimming trailing whitespace.
//!   A redirect never leads into the cluster's own networks where the
//!   first request did not go ([`internal`]), and a wrong body is shown
//!   only as a short excerpt: the Challenge's reason is the tenant's to read.
//!   Clusters without hairpin NAT send the first request to a configured
//!   address (the ingress controller's in-cluster Service) with the Host
//!   header instead.
//!
//! Every failure is a sentence a user can act on, for the Challenge's reason.

pub mod failure;
pub mod http;
pub mod internal;

pub use failure::SelfCheckFailure;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use self::http::Failure;
use crate::dns::lookup::{self, NoAddress};
use SelfCheckFailure::{
    Dns, NotRouted, Redirect, SolverUnreachable, Unreachable, WrongAnswer, WrongStatus,
};

/// How much of a wrong body the reason shows, at most (as cert-manager).
const EXCERPT: usize = 24;

/// Validators follow at most this many redirects.
pub const MAX_REDIRECTS: usize = 10;

/// How the CA's view is checked.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Nameservers to resolve with; the system resolver when empty.
    pub nameservers: Vec<SocketAddr>,
    /// The port of `http://` URLs (80; tests change it). Redirects are
    /// followed only to it and to `https_port`.
    pub http_port: u16,
    /// The port of `https://` URLs (443).
    pub https_port: u16,
    /// Send requests for the challenge's own name here (host:port) with
    /// the Host header, instead of resolving it.
    pub via: Option<String>,
    /// Per request.
    pub timeout: Duration,
    /// The cluster's Service ranges, never fetched after a redirect.
    pub services: Vec<internal::Cidr>,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            http_port: 80,
            https_port: 443,
            via: None,
            timeout: Duration::from_secs(5),
            services: Vec::new(),
        }
    }
}

/// The path a token is served at.
pub fn token_path(token: &str) -> String {
    format!("/.well-known/acme-challenge/{token}")
}

/// Compares a body with the key authorization as validators do.
fn body_matches(body: &[u8], key: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if text.trim_end() == key {
        return Ok(());
    }
    // What answered may be anyone's: a short excerpt, printable only.
    let printable: Vec<char> = text.chars().filter(|c| !c.is_control()).collect();
    let shown: String = printable.iter().take(EXCERPT).collect();
    let more = if printable.len() > EXCERPT { "…" } else { "" };
    Err(format!(
        "the body {shown:?}{more} is not the key authorization {key:?}"
    ))
}

/// Whether the in-cluster solver at `addr` answers `key` for `domain`.
pub async fn in_cluster(
    addr: SocketAddr,
    domain: &str,
    token: &str,
    key: &str,
) -> Result<(), SelfCheckFailure> {
    let path = token_path(token);
    let answer = http::get(addr, false, domain, &path, Duration::from_secs(3))
        .await
        .map_err(|e| SolverUnreachable(format!("the solver at {addr} does not answer: {e}")))?;
    if answer.status != 200 {
        return Err(SolverUnreachable(format!(
            "the solver at {addr} answered {} for {domain}{path}, expected 200 (it does not hold this token)",
            answer.status
        )));
    }
    body_matches(&answer.body, key)
        .map_err(|e| SolverUnreachable(format!("the solver at {addr}: {e}")))
}

/// A URL the check is about to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    /// Path and query.
    path: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

/// Where a redirect from `from` to `location` leads, or why it is not
/// followed (Let's Encrypt's rules).
fn follow(probe: &Probe, from: &Target, location: &str) -> Result<Target, String> {
    if location.starts_with('/') && !location.starts_with("//") {
        return Ok(Target {
            path: location.to_string(),
            ..from.clone()
        });
    }
    let uri: hyper::Uri = location
        .parse()
        .map_err(|e| format!("redirect to {location:?} refused: not a URL ({e})"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err(format!(
                "redirect to {location:?} refused: validators follow only http and https, not {other}"
            ));
        }
        None => {
            return Err(format!(
                "redirect to {location:?} refused: not an absolute URL or path"
            ));
        }
    };
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
    {
        return Err(format!(
            "redirect to {location:?} refused: validators do not follow redirects to a bare IP address"
        ));
    }
    if host.is_empty() {
        return Err(format!("redirect to {location:?} refused: no host"));
    }
    let default = if https {
        probe.https_port
    } else {
        probe.http_port
    };
    let port = uri.port_u16().unwrap_or(default);
    if port != default {
        return Err(format!(
            "redirect to {location:?} refused: validators follow redirects only to ports {} (http) and {} (https), not {port}",
            probe.http_port, probe.https_port
        ));
    }
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    Ok(Target {
        https,
        host,
        port,
        path,
    })
}

/// The addresses to try for `target`.
async fn addresses(
    probe: &Probe,
    domain: &str,
    target: &Target,
) -> Result<Vec<SocketAddr>, SelfCheckFailure> {
    if let Some(via) = probe.via.as_deref()
        && target.host == domain
    {
        let (host, port) = via.rsplit_once(':').unwrap_or((via, "80"));
        let port: u16 = if target.https {
            probe.https_port
        } else {
            port.parse().unwrap_or(probe.http_port)
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        return match host.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, port)]),
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map(|a| a.collect())
                .map_err(|e| Dns(format!("resolving the self-check address {via}: {e}"))),
        };
    }
    let host = target.host.as_str();
    // An IP identifier is fetched at that address, as the CA fetches it.
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    if probe.nameservers.is_empty() {
        return match tokio::net::lookup_host((host, target.port)).await {
            Ok(found) => {
                let found: Vec<SocketAddr> = found.collect();
                if found.is_empty() {
                    Err(Dns(format!("{host} has no A or AAAA record")))
                } else {
                    Ok(found)
                }
            }
            Err(e) => Err(Dns(format!("no such name: {host} does not resolve ({e})"))),
        };
    }
    match lookup::resolve(&probe.nameservers, host).await {
        Ok(ips) => Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, target.port))
            .collect()),
        Err(NoAddress::NoSuchName) => Err(Dns(format!(
            "no such name: {host} does not exist (NXDOMAIN) at the nameservers {:?}",
            probe.nameservers
        ))),
        Err(NoAddress::NoRecords) => Err(Dns(format!("{host} has no A or AAAA record"))),
        Err(NoAddress::Failed(why)) => Err(Dns(format!("resolving {host}: {why}"))),
    }
}

/// Ok when `http://domain/.well-known/acme-challenge/token` answers
/// exactly `key` as the CA will fetch it; otherwise what went wrong.
pub async fn reachable(
    probe: &Probe,
    domain: &str,
    token: &str,
    key: &str,
) -> Result<(), SelfCheckFailure> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    // An IPv6 identifier is bracketed in the URL and the Host header.
    let domain = match domain.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]"),
        Err(_) => domain,
    };
    let first = Target {
        https: false,
        host: domain.clone(),
        port: probe.http_port,
        path: token_path(token),
    };
    let shown = format!("GET http://{domain}{}", first.path);
    let mut seen = vec![first.clone()];
    let mut target = first;
    // Where the first request went: a redirect may go there again.
    let mut first_ips: Vec<IpAddr> = Vec::new();
    loop {
        let mut addrs = addresses(probe, &domain, &target)
            .await
            .map_err(|e| e.map(|e| format!("{shown}: {e}")))?;
        if seen.len() == 1 {
            first_ips = addrs.iter().map(SocketAddr::ip).collect();
        } else {
            let mut why = None;
            addrs.retain(|a| {
                let refused = internal::refused(a.ip(), &first_ips, &probe.services);
                let keep = refused.is_none();
                why = why.take().or(refused);
                keep
            });
            if let (true, Some(why)) = (addrs.is_empty(), why) {
                return Err(Redirect(format!(
                    "{shown}: redirect to {target} refused: {why}"
                )));
            }
        }
        let mut answer = Err(Failure::Other("no address".into()));
        let mut tried = Vec::new();
        for addr in &addrs {
            answer = http::get(
                *addr,
                target.https,
                &target.host,
                &target.path,
                probe.timeout,
            )
            .await;
            tried.push(addr.to_string());
            if !matches!(answer, Err(Failure::Refused)) {
                break;
            }
        }
        let hop = if seen.len() > 1 {
            format!(" (after a redirect to {target})")
        } else {
            String::new()
        };
        let via = tried.join(", ");
        let answer = answer.map_err(|e| Unreachable(format!("{shown}{hop} via {via}: {e}")))?;
        if matches!(answer.status, 301 | 302 | 303 | 307 | 308) {
            let location = answer.location.unwrap_or_default();
            let next = follow(probe, &target, &location)
                .map_err(|e| Redirect(format!("{shown}{hop}: {e}")))?;
            if seen.contains(&next) {
                return Err(Redirect(format!(
                    "{shown}: redirect loop: {target} redirects back to {next}"
                )));
            }
            if seen.len() > MAX_REDIRECTS {
                return Err(Redirect(format!(
                    "{shown}: more than {MAX_REDIRECTS} redirects (validators stop there)"
                )));
            }
            seen.push(next.clone());
            target = next;
            continue;
        }
        if answer.status == 404 {
            return Err(NotRouted(format!(
                "{shown}{hop} via {via}: wrong status code 404, expected 200: not routed; no Ingress that the ingress controller serves routes this host and path to the solver"
            )));
        }
        if answer.status != 200 {
            return Err(WrongStatus(format!(
                "{shown}{hop} via {via}: wrong status code {}, expected 200",
                answer.status
            )));
        }
        return body_matches(&answer.body, key)
            .map_err(|e| WrongAnswer(format!("{shown}{hop} via {via}: {e}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(host: &str) -> Target {
        Target {
            https: false,
            host: host.into(),
            port: 80,
            path: "/.well-known/acme-challenge/t".into(),
        }
    }

    #[test]
    fn redirects_follow_lets_encrypts_rules() {
        let probe = Probe::default();
        let from = at("a.example");
        assert_eq!(
            follow(&probe, &from, "https://a.example/x").map(|t| (t.https, t.port, t.path)),
            Ok((true, 443, "/x".into()))
        );
        assert_eq!(
            follow(&probe, &from, "/y").map(|t| t.host),
            Ok("a.example".into())
        );
        let port = follow(&probe, &from, "http://a.example:8080/x").expect_err("8080");
        assert!(
            port.contains("only to ports 80 (http) and 443 (https), not 8080"),
            "{port}"
        );
        let ip = follow(&probe, &from, "http://10.0.0.1/x").expect_err("ip");
        assert!(ip.contains("bare IP"), "{ip}");
        let v6 = follow(&probe, &from, "http://[::1]/x").expect_err("ip");
        assert!(v6.contains("bare IP"), "{v6}");
        let ftp = follow(&probe, &from, "ftp://a.example/x").expect_err("ftp");
        assert!(ftp.contains("only http and https"), "{ftp}");
    }

    /// A one-request HTTP server on `ip`; returns its port and the Host
    /// header it was sent.
    async fn answering(ip: &str, body: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let served = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0; 4096];
            let n = conn.read(&mut buf).await.expect("read");
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(reply.as_bytes()).await.expect("write");
            request
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Host: ")
                        .or_else(|| l.strip_prefix("host: "))
                })
                .unwrap_or_default()
                .to_string()
        });
        (port, served)
    }

    #[tokio::test]
    async fn an_ip_identifier_is_fetched_at_its_address_with_its_host() {
        for (ip, host) in [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]")] {
            let (port, served) = answering(ip, "t.thumb").await;
            let probe = Probe {
                // Never asked: an address is not looked up.
                nameservers: vec!["127.0.0.1:9".parse().expect("addr")],
                http_port: port,
                ..Probe::default()
            };
            assert_eq!(reachable(&probe, ip, "t", "t.thumb").await, Ok(()), "{ip}");
            let sent = served.await.expect("served");
            assert!(sent.starts_with(host), "{ip}: Host {sent:?}");
        }
    }

    #[test]
    fn bodies_match_after_trimming_trailing_whitespace_only() {
        assert_eq!(body_matches(b"tok.thumb\r\n", "tok.thumb"), Ok(()));
        assert!(body_matches(b" tok.thumb", "tok.thumb").is_err());
        let long = body_matches(&[b'x'; 200], "tok.thumb").expect_err("long");
        assert!(long.contains('…') && long.len() < 200, "{long}");
    }
}

//! Launches pebble (an RFC 8555 test CA with certificate profiles and ACME
//! Renewal Information, built by `scripts/install-tools` at the version
//! `tests/tools/pebble/go.mod` pins) with `pebble-challtestsrv` as its DNS, on free ports of one address (loopback,
//! or the local cluster's node inside its namespace), for one test
//! environment: every name resolves to one IPv4 address (the ingress
//! router's), HTTP-01 is validated on a chosen port, pebble's TLS listener
//! uses a CA generated here, and its issuing root is fetched at start for
//! chain verification. Facts learned on our machines are encoded as defaults (see
//! the option docs).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

use crate::netns::Netns;
use crate::process::Process;

/// How to run pebble.
#[derive(Clone, Debug)]
pub struct PebbleOptions {
    /// Port pebble's validator connects to for HTTP-01 (the ingress router's).
    pub http_port: u16,
    /// The address every DNS name resolves to (A records); AAAA queries get
    /// no answer, because pebble does not fall back to IPv4 when `::1` fails.
    pub dns_ipv4: String,
    /// Lifetime of issued certificates in seconds, for every profile
    /// (by default each profile's own).
    pub certificate_validity_seconds: Option<u64>,
    /// Names pebble refuses with `rejectedIdentifier`.
    pub domain_blocklist: Vec<String>,
    /// Percentage of requests rejected with `badNonce` (0 unless a test wants them).
    pub nonce_reject_percent: u8,
    /// Percentage of valid authorizations pebble reuses (its default is 50).
    pub authz_reuse_percent: u8,
    /// Let pebble's validator sleep a random 0–15 s before validating.
    pub validation_delay: bool,
    /// How many alternate roots (and so alternate chains) pebble offers.
    pub alternate_roots: u8,
    /// External account binding keys (key ID → unpadded base64url HMAC
    /// key); when any are given, pebble requires EAB for new accounts.
    pub eab_keys: Vec<(String, String)>,
    /// Where pebble and its DNS listen.
    pub address: IpAddr,
    /// A DNS server (host:port) pebble resolves with instead of its own
    /// (the DNS-01 tests' BIND, whose zones answer TXT and A queries).
    pub dns_server: Option<String>,
    /// The network namespace they run in (this process's when `None`);
    /// start them from a runtime whose sockets are in it too.
    pub netns: Option<Arc<Netns>>,
}

impl Default for PebbleOptions {
    fn default() -> Self {
        Self {
            http_port: 5002,
            dns_ipv4: "127.0.0.1".into(),
            certificate_validity_seconds: None,
            domain_blocklist: Vec::new(),
            nonce_reject_percent: 0,
            authz_reuse_percent: 0,
            validation_delay: false,
            alternate_roots: 0,
            eab_keys: Vec::new(),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dns_server: None,
            netns: None,
        }
    }
}

/// A running pebble and challtestsrv; both are killed on drop.
pub struct Pebble {
    pebble: Process,
    dns: Process,
    dir: PathBuf,
    issuing_root: String,
    alternate_roots: Vec<String>,
    /// In front of pebble: keeps it from deadlocking (see `acme_proxy::Phases`).
    _guard: crate::acme_proxy::AcmeProxy,
    /// The ACME directory (the guard's), e.g. `https://127.0.0.1:40123/dir`.
    pub directory_url: String,
    /// Management interface (roots, intermediates).
    pub management_url: String,
    /// PEM of the CA that signed pebble's own TLS certificate.
    pub tls_ca_pem: String,
    /// pebble-challtestsrv's DNS server (host:port), which pebble resolves
    /// names with; give it to other validators' self-checks.
    pub dns_address: String,
    /// challtestsrv's management API (plain HTTP).
    dns_management_url: String,
}

/// A loopback port that was free a moment ago. Pebble logs its configured
/// port rather than a bound one, so ports are chosen up front.
pub fn free_port() -> std::io::Result<u16> {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A port of `ip` that was free a moment ago, in the calling thread's
/// network namespace (the control plane's ports are chosen the same way).
pub fn free_port_on(ip: IpAddr) -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

fn tls_material(dir: &Path, address: IpAddr) -> Result<String, String> {
    let err = |e: rcgen::Error| format!("generating pebble's TLS certificate: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "certwright test pebble TLS CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        // The name tests/e2e/image.rs resolves through its DNS.
        "pebble.certwright.test".to_string(),
        "127.0.0.1".to_string(),
        address.to_string(),
    ])
    .map_err(err)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(err)?;
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("writing {name}: {e}"))
    };
    write("cert.pem", leaf_cert.pem())?;
    write("key.pem", leaf_key.serialize_pem())?;
    write("ca.pem", ca_cert.pem())?;
    Ok(ca_cert.pem())
}

async fn wait_for_port(ip: IpAddr, port: u16, child: &mut Process) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect((ip, port)).await.is_ok() {
            return Ok(());
        }
        if let Some(failure) = child.failure() {
            return Err(failure);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "did not listen on {ip}:{port} within 30 s:\n{}",
                child.log_tail(40)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn(
    options: &PebbleOptions,
    program: &str,
    args: &[String],
    envs: &[(&str, String)],
    log: &Path,
) -> Result<Process, String> {
    let path = crate::tools::pebble_tool(program)?;
    let mut command = Command::new(&path);
    command
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    if let Some(ns) = &options.netns {
        ns.enter(&mut command);
    }
    Process::spawn(program, command, log).map_err(|e| format!("{}: {e}", path.display()))
}

/// `pebble-challtestsrv` as a DNS server only, on `dns` (host:port), with
/// its management API on `management`: every A query is answered with
/// `ipv4`, AAAA with nothing, and its HTTP, HTTPS, TLS-ALPN and DoH
/// servers are off.
pub fn dns_server_args(ipv4: &str, dns: &str, management: &str) -> Vec<String> {
    [
        "-defaultIPv4",
        ipv4,
        "-defaultIPv6",
        "",
        "-dnsserver",
        dns,
        "-doh",
        "",
        "-management",
        management,
        "-http01",
        "",
        "-https01",
        "",
        "-tlsalpn01",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Certificate profiles like Let's Encrypt's: `classic` (90 days, the first
/// name promoted to the common name), `tlsserver` (45 days, no common
/// name) and `shortlived` (160 hours). An order without a profile gets one
/// of them at random, as pebble does. `validity`, when set, replaces every
/// profile's lifetime (a test that needs short-lived certificates).
fn profiles(validity: Option<u64>) -> serde_json::Value {
    let period = |default: u64| validity.unwrap_or(default);
    json!({
        "classic": {"description": "Let's Encrypt's classic profile", "promoteCommonName": true,
                    "validityPeriod": period(90 * 86_400)},
        "tlsserver": {"description": "TLS server certificates, no common name",
                      "validityPeriod": period(45 * 86_400)},
        "shortlived": {"description": "Short-lived TLS server certificates",
                       "validityPeriod": period(160 * 3_600)},
    })
}

impl Pebble {
    /// Starts pebble and its DNS server. A port chosen up front can be
    /// taken by someone else's outgoing connection before pebble binds it;
    /// then it starts again on other ports.
    pub async fn start(options: PebbleOptions) -> Result<Self, String> {
        let mut attempt = 1;
        loop {
            match Self::start_once(&options).await {
                Err(e) if e.contains("address already in use") && attempt < 3 => attempt += 1,
                started => return started,
            }
        }
    }

    async fn start_once(options: &PebbleOptions) -> Result<Self, String> {
        let ip = options.address;
        let dir = std::env::temp_dir().join(format!(
            "certwright-pebble-{}-{}",
            std::process::id(),
            free_port_on(ip).unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let tls_ca_pem = tls_material(&dir, ip)?;
        // Held together while chosen, so no two coincide.
        let ports = crate::netns::free_ports(ip, 5).map_err(|e| e.to_string())?;
        let (acme, management, dns, dns_management) = (ports[0], ports[1], ports[2], ports[3]);
        let mut config = json!({"pebble": {
            "listenAddress": format!("{ip}:{acme}"),
            "managementListenAddress": format!("{ip}:{management}"),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": options.http_port,
            "tlsPort": ports[4],
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "domainBlocklist": options.domain_blocklist,
            "profiles": profiles(options.certificate_validity_seconds),
        }});
        if !options.eab_keys.is_empty() {
            config["pebble"]["externalAccountBindingRequired"] = json!(true);
            let keys: serde_json::Map<String, serde_json::Value> = options
                .eab_keys
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            config["pebble"]["externalAccountMACKeys"] = json!(keys);
        }
        std::fs::write(dir.join("pebble.json"), config.to_string()).map_err(|e| e.to_string())?;

        let dns_log = dir.join("challtestsrv.log");
        let mut dns_child = spawn(
            options,
            "pebble-challtestsrv",
            &dns_server_args(
                &options.dns_ipv4,
                &format!("{ip}:{dns}"),
                &format!("{ip}:{dns_management}"),
            ),
            &[],
            &dns_log,
        )?;
        wait_for_port(ip, dns_management, &mut dns_child).await?;

        let log = dir.join("pebble.log");
        let mut envs = vec![
            (
                "PEBBLE_WFE_NONCEREJECT",
                options.nonce_reject_percent.to_string(),
            ),
            ("PEBBLE_AUTHZREUSE", options.authz_reuse_percent.to_string()),
            (
                "PEBBLE_ALTERNATE_ROOTS",
                options.alternate_roots.to_string(),
            ),
        ];
        if !options.validation_delay {
            envs.push(("PEBBLE_VA_NOSLEEP", "1".into()));
        }
        let mut pebble = spawn(
            options,
            "pebble",
            &[
                "-config".into(),
                dir.join("pebble.json").to_string_lossy().into_owned(),
                "-dnsserver".into(),
                options
                    .dns_server
                    .clone()
                    .unwrap_or_else(|| format!("{ip}:{dns}")),
            ],
            &envs,
            &log,
        )?;
        wait_for_port(ip, acme, &mut pebble).await?;
        let guard = crate::acme_proxy::AcmeProxy::guard(
            &dir.join("cert.pem"),
            &dir.join("key.pem"),
            &tls_ca_pem,
            &format!("https://{ip}:{acme}/dir"),
        )
        .await?;
        let mut started = Self {
            pebble,
            dns: dns_child,
            dir,
            issuing_root: String::new(),
            alternate_roots: Vec::new(),
            directory_url: guard.directory_url.clone(),
            _guard: guard,
            management_url: format!("https://{ip}:{management}"),
            tls_ca_pem,
            dns_address: format!("{ip}:{dns}"),
            dns_management_url: format!("http://{ip}:{dns_management}"),
        };
        // The management listener may come up a moment after the ACME one.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        started.issuing_root = loop {
            match self::management(
                &started.management_url,
                &started.tls_ca_pem,
                "GET",
                "/roots/0",
                String::new(),
            )
            .await
            {
                Ok(root) => break root,
                Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        for n in 1..=options.alternate_roots {
            let root = self::management(
                &started.management_url,
                &started.tls_ca_pem,
                "GET",
                &format!("/roots/{n}"),
                String::new(),
            )
            .await?;
            started.alternate_roots.push(root);
        }
        Ok(started)
    }

    /// pebble's TLS certificate and key (for localhost and 127.0.0.1), for
    /// a proxy that stands in for it.
    pub fn tls_leaf_paths(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("cert.pem"), self.dir.join("key.pem"))
    }

    /// Where the generated TLS CA is, for clients that take a file.
    pub fn tls_ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// pebble's output so far, to attach to a failure.
    pub fn log(&self) -> String {
        self.pebble.log()
    }

    /// PEM of the root that issued certificates chain to (it changes on every start).
    pub fn issuing_root_pem(&self) -> &str {
        &self.issuing_root
    }

    /// PEM of the alternate roots (`alternate_roots` of the options), in
    /// pebble's order.
    pub fn alternate_root_pems(&self) -> &[String] {
        &self.alternate_roots
    }

    /// Sets what pebble's renewal information (ARI) answers for the
    /// certificate `cert_pem` (the first of a chain): any text, even
    /// malformed JSON. The future is `'static`, to run in the node
    /// (`LocalCluster::in_node`), where pebble's management port is.
    pub fn set_renewal_info(
        &self,
        cert_pem: &str,
        answer: &str,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let body = json!({"certificate": cert_pem, "ariResponse": answer}).to_string();
        let (url, ca) = (self.management_url.clone(), self.tls_ca_pem.clone());
        async move {
            management(&url, &ca, "POST", "/set-renewal-info/", body)
                .await
                .map(|_| ())
        }
    }
}

impl Pebble {
    /// Answers A queries for `host` with `address` instead of the default
    /// (the ingress), for pebble and every self-check that asks this DNS;
    /// `None` goes back to the default. Run it in the node's namespace.
    pub fn set_address(
        &self,
        host: &str,
        address: Option<IpAddr>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        let (path, body) = match address {
            Some(a) => (
                "/add-a",
                json!({"host": fqdn, "addresses": [a.to_string()]}),
            ),
            None => ("/clear-a", json!({"host": fqdn})),
        };
        let url = format!("{}{path}", self.dns_management_url);
        async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
            let request = hyper::Request::post(&url)
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| format!("{url}: {e}"))?;
            let response = client
                .request(request)
                .await
                .map_err(|e| format!("POST {url}: {e}"))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("POST {url}: {}", response.status()))
            }
        }
    }
}

/// A client of pebble's HTTPS listeners.
pub type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// An HTTPS client (HTTP/1.1) that trusts only `ca_pem`, pebble's TLS CA.
pub fn https_client(ca_pem: &str) -> Result<HttpsClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// A request to pebble's management API at `base`, trusting `ca_pem`.
async fn management(
    base: &str,
    ca_pem: &str,
    method: &str,
    path: &str,
    body: String,
) -> Result<String, String> {
    let client = https_client(ca_pem)?;
    let url = format!("{base}{path}");
    let request = hyper::Request::builder()
        .method(method)
        .uri(&url)
        .header("user-agent", "certwright-tests")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("{url}: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(format!("{method} {url}: {status}: {text}"));
    }
    Ok(text)
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.pebble.kill();
        self.dns.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

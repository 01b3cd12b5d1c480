//! Helpers shared by the integration tests.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// A fresh key and the DER CSR for `names`.
/// The bytes under `key` in a Secret's data (empty when absent).
pub fn secret_data(secret: &k8s_openapi::api::core::v1::Secret, key: &str) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

pub fn csr_for(names: &[&str]) -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let csr =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params")
            .serialize_request(&key)
            .expect("csr");
    (key, csr.der().to_vec())
}

/// Verifies that `chain_pem` chains to `root_pem` and is valid for every
/// name; returns the parsed chain.
pub fn verify_chain(
    chain_pem: &str,
    root_pem: &str,
    names: &[&str],
) -> Vec<CertificateDer<'static>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain parses");
    assert!(chain.len() >= 2, "leaf and intermediate");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem.as_bytes()).expect("root parses"))
        .expect("root added");
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .expect("verifier");
    for name in names {
        let server_name = ServerName::try_from(*name).expect("name");
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    chain
}

/// Polls `check` every 50 ms until it yields a value; fails after 30 s.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, 30, check).await
}

/// [`eventually`] with a deadline of `secs`.
pub async fn eventually_within<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The test binary's local cluster (started on first use, on a thread of
/// its own, since its start blocks).
pub async fn local_cluster() -> &'static certwright_testcluster::cluster::LocalCluster {
    certwright::install_crypto_provider();
    tokio::task::spawn_blocking(|| {
        certwright_testcluster::cluster::LocalCluster::shared(
            env!("CARGO_BIN_EXE_certwright").as_ref(),
        )
    })
    .await
    .expect("the local cluster")
}

/// The test binary's real control plane with certwright's CRDs installed
/// and established (once), and an admin client on the current runtime.
pub async fn control_plane_with_crds() -> (
    &'static certwright_testcluster::control_plane::ControlPlane,
    kube::Client,
) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams};
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    certwright::install_crypto_provider();
    let plane = certwright_testcluster::control_plane::shared().expect("the control plane starts");
    let client = plane.client();
    INSTALLED
        .get_or_init(|| async {
            let client = plane.client();
            let api: Api<CustomResourceDefinition> = Api::all(client);
            let pp = PatchParams::apply("certwright-tests").force();
            for crd in certwright::api::crds() {
                let name = crd.metadata.name.clone().expect("CRD name");
                api.patch(&name, &pp, &Patch::Apply(&crd))
                    .await
                    .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
                eventually(&format!("CRD {name} established"), || {
                    let api = api.clone();
                    let name = name.clone();
                    async move {
                        let crd = api.get(&name).await.ok()?;
                        crd.status?
                            .conditions?
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                            .then_some(())
                    }
                })
                .await;
            }
        })
        .await;
    (plane, client)
}

/// Tests that run a controller in this process take turns: controllers
/// watch the whole cluster, so two at once would act on each other's objects.
pub async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// Creates namespace `name` (if missing).
pub async fn namespace(client: &kube::Client, name: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

/// A new ACME account at the launched pebble, through certwright's client.
pub async fn pebble_account(
    pebble: &certwright_testcluster::pebble::Pebble,
) -> instant_acme::Account {
    let trust = certwright::acme::tls::Trust::Bundle(pebble.tls_ca_pem.clone().into_bytes());
    let http = certwright::acme::http::client(&trust).expect("client");
    let new_account = instant_acme::NewAccount {
        contact: &[],
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, _) = instant_acme::Account::builder_with_http(http)
        .create(&new_account, pebble.directory_url.clone(), None)
        .await
        .expect("account");
    account
}
/// A tool that `scripts/install-tools` put on PATH.
pub fn tool(name: &str) -> std::path::PathBuf {
    certwright_testcluster::tools::on_path(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The Helm chart's directory.
pub fn chart_dir() -> std::path::PathBuf {
    certwright_testcluster::deploy::chart_dir()
}

/// The chart rendered by `helm template` (release `certwright` in
/// namespace `certwright`) with `extra` arguments, one value per object.
pub fn helm_template(extra: &[&str]) -> Vec<serde_json::Value> {
    let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    certwright_testcluster::deploy::render_chart(&args).unwrap_or_else(|e| panic!("{e}"))
}

/// `helm template` values that render only the chart's sidecar RBAC, for
/// Traefik's ServiceAccount in the local cluster.
pub const SIDECAR_RBAC_VALUES: &[&str] = &[
    "--show-only",
    "templates/sidecar-rbac.yaml",
    "--set",
    "crds.enabled=false",
    "--set",
    "sidecar.rbac.enabled=true",
    "--set",
    "sidecar.rbac.serviceAccounts[0].name=traefik",
    "--set",
    "sidecar.rbac.serviceAccounts[0].namespace=traefik",
];

/// One HTTP/1.1 GET over `stream` (closed after): status and body; an
/// error when no whole answer comes within 5 s.
pub async fn http_exchange(
    mut stream: tokio::net::TcpStream,
    host: &str,
    path: &str,
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&raw).into_owned())
    };
    let text = tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// [`http_exchange`] over a new connection to `addr` from this process.
pub async fn http_get(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    http_exchange(stream, host, path).await
}

/// What `keystore-read` (cert-manager's keystore libraries) finds in a
/// keystore: the key's PKCS#8 and the chain, base64.
pub fn read_keystore(kind: &str, bytes: &[u8], password: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    use base64::Engine;
    let file =
        std::env::temp_dir().join(format!("certwright-secret-{kind}-{}", std::process::id()));
    std::fs::write(&file, bytes).expect("write keystore");
    let tool =
        certwright_testcluster::tools::cert_manager_tool("keystore-read").expect("keystore-read");
    let out = std::process::Command::new(tool)
        .arg(kind)
        .arg(&file)
        .arg(password)
        .output()
        .expect("keystore-read runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{kind}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("base64")
    };
    let chain = read["chain"]
        .as_array()
        .map(|a| a.iter().map(b64).collect())
        .unwrap_or_default();
    (b64(&read["key"]), chain)
}

pub mod dns;
pub mod env;

/// The PEM chain under `tls.crt` in a Secret (empty when absent).
pub fn leaf_pem(secret: &k8s_openapi::api::core::v1::Secret) -> String {
    String::from_utf8_lossy(&secret_data(secret, "tls.crt")).into_owned()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// An ARI answer suggesting renewal between `start` and `end` (Unix seconds).
pub fn ari_window(start: i64, end: i64) -> String {
    use certwright::time::rfc3339;
    serde_json::json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}})
        .to_string()
}

/// The controller's leader Lease: its holder and how often it changed hands.
pub async fn lease_holder(client: &kube::Client) -> Option<(String, i32)> {
    let lease = kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        client.clone(),
        certwright_testcluster::deploy::NAMESPACE,
    )
    .get_opt("certwright-controller")
    .await
    .ok()??;
    let spec = lease.spec?;
    Some((
        spec.holder_identity.filter(|h| !h.is_empty())?,
        spec.lease_transitions.unwrap_or(0),
    ))
}

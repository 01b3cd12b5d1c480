//! The image's binary, as `dockerfiles/Dockerfile` builds it
//! (`scripts/build-image-binary`: a static glibc build; scripts/test builds
//! it in the `image-test` profile, the release one's flags at the dev
//! profile's optimisation), run the
//! way the image runs it: in a chroot holding only that binary,
//! `/etc/resolv.conf` and the CA certificates, as UID 65532, with nothing
//! writable. It starts, resolves pebble's name through the test DNS, trusts
//! pebble through the CA file alone, and registers an ACME account.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use certwright::api::ClusterIssuer;
use certwright_testcluster::cluster::{LocalCluster, NODE_IP};
use certwright_testcluster::process::Process;
use kube::api::{Api, PostParams};
use serde_json::json;

/// The name pebble is known by inside the chroot (in its TLS certificate).
const PEBBLE_NAME: &str = "pebble.certwright.test";

/// Where `scripts/build-image-binary` leaves the binary.
pub(crate) fn image_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("x86_64-unknown-linux-gnu/image-test/certwright")
}

/// True when the ELF file has a PT_INTERP program header (it needs a
/// dynamic loader, which the distroless static image does not have).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF file");
    assert_eq!(elf[4], 2, "64-bit");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().expect("8 bytes")) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes")) == 3
    })
}

/// The image's root: the binary, resolv.conf naming the test DNS, the CA
/// file, and the kubeconfig a Pod's ServiceAccount would stand for. Owned
/// by root and read-only, so UID 65532 can write nowhere.
fn image_root(dir: &Path, binary: &Path, ca_pem: &str, kubeconfig: &str) -> PathBuf {
    let root = dir.join("image-root");
    let _ = std::fs::remove_dir_all(&root);
    for sub in ["usr/local/bin", "etc/ssl/certs", "etc/certwright"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    std::fs::copy(binary, root.join("usr/local/bin/certwright")).expect("copy the binary");
    std::fs::write(
        root.join("etc/resolv.conf"),
        format!("nameserver {NODE_IP}\n"),
    )
    .expect("resolv.conf");
    std::fs::write(root.join("etc/ssl/certs/ca-certificates.crt"), ca_pem).expect("CA file");
    std::fs::write(root.join("etc/certwright/kubeconfig"), kubeconfig).expect("kubeconfig");
    let status = Command::new("chmod")
        .args(["-R", "a-w,a+rX"])
        .arg(&root)
        .status()
        .expect("chmod");
    assert!(status.success());
    root
}

/// A DNS server on port 53 of the node (resolv.conf has no port) that
/// answers every name with `address`.
async fn dns_server(cluster: &LocalCluster, address: &str) -> (Process, u16) {
    let tool =
        certwright_testcluster::tools::pebble_tool("pebble-challtestsrv").expect("challtestsrv");
    let management = cluster
        .in_node(async { certwright_testcluster::pebble::free_port_on(NODE_IP.into()) })
        .await
        .expect("a port in the node");
    let mut command = Command::new(tool);
    command.args(certwright_testcluster::pebble::dns_server_args(
        address,
        &format!("{NODE_IP}:53"),
        &format!("{NODE_IP}:{management}"),
    ));
    cluster.node().enter(&mut command);
    let log = cluster.log_dir().join("image-dns.log");
    let process = Process::spawn("image-dns", command, &log).expect("start the DNS server");
    (process, management)
}

/// The questions the DNS server was asked about `host` (its management
/// API's request history, a JSON list).
async fn dns_questions(cluster: &LocalCluster, management: u16, host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({"host": host}).to_string();
    let mut stream = cluster
        .node()
        .connect(std::net::SocketAddr::new(NODE_IP.into(), management))
        .await
        .expect("connect to the DNS server's management port");
    let request = format!(
        "POST /dns-request-history HTTP/1.0\r\nHost: challtestsrv\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("ask");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("answer");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_binary_runs_alone_in_a_read_only_chroot_as_non_root_and_reaches_pebble() {
    let binary = image_binary();
    let elf = std::fs::read(&binary).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it with IMAGE_PROFILE=image-test scripts/build-image-binary (scripts/test does)",
            binary.display()
        )
    });
    assert!(
        !has_interpreter(&elf),
        "{} is static: the distroless static image has no dynamic loader",
        binary.display()
    );

    let (cluster, _turn) = common::env::exclusive().await;
    let client = cluster.client();
    certwright_testcluster::deploy::install_crds(
        &client,
        env!("CARGO_BIN_EXE_certwright").as_ref(),
    )
    .await
    .expect("crds");
    common::namespace(&client, "certwright").await;
    let pebble = cluster
        .in_node(certwright_testcluster::pebble::Pebble::start(
            cluster.pebble_options(),
        ))
        .await
        .expect("pebble");
    // https://<ip>:<port>/dir, asked for by name instead.
    let rest = pebble
        .directory_url
        .strip_prefix("https://")
        .expect("an https directory");
    let (authority, path) = rest.split_once('/').expect("a path");
    let (pebble_ip, port) = authority.rsplit_once(':').expect("a port");
    let named = format!("https://{PEBBLE_NAME}:{port}/{path}");
    let (_dns, dns_management) = dns_server(cluster, pebble_ip).await;

    let kubeconfig = certwright_testcluster::control_plane::kubeconfig(
        &format!(
            "https://{NODE_IP}:{}",
            certwright_testcluster::cluster::APISERVER_PORT
        ),
        cluster.control_plane().ca_pem(),
        cluster.control_plane().admin(),
        "certwright",
    );
    let root = image_root(cluster.log_dir(), &binary, &pebble.tls_ca_pem, &kubeconfig);
    // Absolute: the cleared environment has no PATH to find it by.
    let mut command =
        Command::new(certwright_testcluster::tools::on_path("chroot").expect("chroot (coreutils)"));
    command
        .arg("--userspec=65532:65532")
        .arg(&root)
        .args([
            "/usr/local/bin/certwright",
            "controller",
            "--leader-elect=false",
            // Ports of its own on the node: the sidecar beside Traefik,
            // from an earlier suite, may hold the defaults.
            "--solver-port=18089",
            "--metrics-listen-address=127.0.0.1:19402",
            "--health-listen-address=127.0.0.1:19403",
        ])
        .env_clear()
        .env("KUBECONFIG", "/etc/certwright/kubeconfig")
        .env("RUST_LOG", "info,certwright=debug");
    cluster.node().enter(&mut command);
    let log = cluster.log_dir().join("image-controller.log");
    let mut controller = Process::spawn("image-controller", command, &log).expect("start");
    // No caBundle: pebble is trusted through the image's CA file alone.
    let issuer: ClusterIssuer = serde_json::from_value(json!({
        "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": "image"},
        "spec": {"acme": {"server": named, "email": "ops@example.test",
            "privateKeySecretRef": {"name": "image-account"},
            "solvers": [{"http01": {"ingress": {"ingressClassName": cluster.ingress_class()}}}]}}}))
    .expect("issuer");
    let issuers: Api<ClusterIssuer> = Api::all(client.clone());
    issuers
        .create(&PostParams::default(), &issuer)
        .await
        .expect("create the ClusterIssuer");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ready = issuers
            .get("image")
            .await
            .ok()
            .and_then(|i| i.status)
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"));
        if let Some(c) = &ready
            && c.status == certwright::api::meta::ConditionStatus::True
        {
            break;
        }
        if let Some(failure) = controller.failure() {
            panic!("the chroot's controller exited: {failure}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ClusterIssuer did not become Ready through {named}: {ready:?}\n{}",
            controller.log_tail(40)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Asked once it has worked: chroot has long since set the user and
    // exec'd the binary in the same process.
    let uid = std::fs::read_to_string(format!("/proc/{}/status", controller.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string());
    assert_eq!(uid.as_deref(), Some("65532"), "runs as the image's user");
    let asked = dns_questions(cluster, dns_management, PEBBLE_NAME).await;
    assert!(
        asked.contains(PEBBLE_NAME),
        "the name was resolved through the test DNS: {asked}"
    );
    controller.signal_term();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("certwright controller starting"), "{text}");
}

//! Memory at rest, side by side: the resident memory of certwright's
//! controller and of cert-manager v1.21's, each started alone on the same
//! cluster (cert-manager's CRDs) and measured once it has settled (its CPU
//! quiet for two seconds), at each stage:
//!
//! 1. an empty cluster;
//! 2. 30,000 unrelated Secrets (3 KiB of data each, as a TLS Secret);
//! 3. then N Ready Certificates, each with a valid Secret written as
//!    cert-manager writes one (created directly, signed by a local CA: the
//!    controllers only read them), for each N of `BENCH_CERTS`.
//!
//! Run: `cargo bench --bench memory` (`BENCH_CERTS=1000` by default;
//! `BENCH_CERTS=1000,10000` is the full set; `BENCH_SECRETS=30000`;
//! `BENCH_OUT=docs/bench` writes the table and a plot there;
//! `BENCH_SKIP=cert-manager` or `certwright` measures one of them only).

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/proc.rs"]
mod proc;
#[path = "support/svg.rs"]
mod svg;

use std::time::{Duration, Instant};

use certwright_testcluster::cert_manager;
use certwright_testcluster::cluster::LocalCluster;
use certwright_testcluster::deploy;
use certwright_testcluster::pebble::Pebble;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

const CERTWRIGHT: &str = " controller --solver-service=";
const CERT_MANAGER: &str = "cert-manager-controller --v=";

/// Waits until the process matching `pattern` exists and has used less
/// than 0.05 CPU seconds in two seconds (at least 10 s after it appeared,
/// at most 10 minutes); returns its resident memory in MiB.
async fn settled(pattern: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut appeared = None;
    let mut last: Option<f64> = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "{pattern:?} did not settle in 10 minutes"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Some(rss) = proc::memory_kib(pattern, "VmRSS") else {
            continue;
        };
        let cpu = proc::cpu_seconds(pattern);
        let since = *appeared.get_or_insert_with(Instant::now);
        let quiet = last.is_some_and(|l| cpu - l < 0.05);
        last = Some(cpu);
        if quiet && since.elapsed() >= Duration::from_secs(10) {
            return rss as f64 / 1024.0;
        }
    }
}

/// Creates `objects` (Secrets or Certificates as JSON), 32 at a time.
async fn create_all(client: &kube::Client, objects: Vec<Value>) {
    futures_util::stream::iter(objects)
        .for_each_concurrent(32, |o| {
            let client = client.clone();
            async move {
                deploy::apply(&client, o).await.expect("create");
            }
        })
        .await;
}

/// `n` Secrets nobody asked for, in namespace `unrelated`.
fn unrelated(n: usize) -> Vec<Value> {
    let payload = "x".repeat(3 * 1024);
    (0..n)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("unrelated-{i:05}"), "namespace": "unrelated"},
                "type": "Opaque", "stringData": {"tls.crt": payload, "tls.key": "k"}})
        })
        .collect()
}

/// Certificates `from..to` in namespace `mem` and their Secrets, valid
/// until 2036, as cert-manager writes them.
fn certificates(from: usize, to: usize, ca: &Issuer<'_, KeyPair>, key: &KeyPair) -> Vec<Value> {
    let key_pem = key.serialize_pem();
    let mut out = Vec::new();
    for i in from..to {
        let name = format!("c{i}");
        let host = format!("c{i}.mem.test");
        let mut params = CertificateParams::new(vec![host.clone()]).expect("params");
        // No subject (rcgen's default has a common name): the spec names
        // none, and a common name it does not ask for makes cert-manager
        // issue the certificate again.
        params.distinguished_name = rcgen::DistinguishedName::new();
        // Renewal (two thirds in) is years away for both controllers.
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let leaf = params.signed_by(key, ca).expect("sign");
        out.push(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{name}-tls"), "namespace": "mem",
                "labels": {"controller.cert-manager.io/fao": "true"},
                "annotations": {"cert-manager.io/certificate-name": name, "cert-manager.io/issuer-name": "mem",
                    "cert-manager.io/issuer-kind": "ClusterIssuer", "cert-manager.io/issuer-group": "",
                    "cert-manager.io/common-name": "", "cert-manager.io/alt-names": host,
                    "cert-manager.io/ip-sans": "", "cert-manager.io/uri-sans": ""}},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": leaf.pem(), "tls.key": key_pem}}));
        out.push(
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": name, "namespace": "mem"},
            "spec": {"secretName": format!("{name}-tls"), "dnsNames": [host],
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "issuerRef": {"name": "mem", "kind": "ClusterIssuer"}}}),
        );
    }
    out
}

/// Starts one controller alone, waits until `certificates` Certificates
/// are Ready and it has settled, returns its RSS in MiB, and stops it.
async fn measure(
    client: &kube::Client,
    who: &str,
    settings: &cert_manager::Settings,
    certificates: usize,
) -> f64 {
    if std::env::var("BENCH_SKIP").is_ok_and(|s| s.split(',').any(|s| s.trim() == who)) {
        return f64::NAN;
    }
    let pattern = if who == "certwright" {
        deploy::controller(client, &[]).await.expect("certwright");
        CERTWRIGHT
    } else {
        cert_manager::install(client, settings)
            .await
            .expect("cert-manager");
        CERT_MANAGER
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (ready, example) = ready(client).await;
        if ready >= certificates {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{who}: only {ready} of {certificates} Certificates Ready after 10 minutes; one that is not: {example}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mib = settled(pattern).await;
    // At rest means nothing issued: a request here would mean the
    // controller took the Secrets as out of date, and measured its work.
    let requests = Api::<certwright::api::CertificateRequest>::namespaced(client.clone(), "mem")
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or_default();
    assert_eq!(
        requests, 0,
        "{who} issued again ({requests} CertificateRequests): the bench's Secrets are not up to date for it"
    );
    if who == "certwright" {
        deploy::remove_controller(client).await.expect("stopped");
    } else {
        cert_manager::stop(client).await.expect("stopped");
    }
    mib
}

/// How many Certificates in `mem` are Ready, and the status of one that
/// is not.
async fn ready(client: &kube::Client) -> (usize, String) {
    let api: Api<certwright::api::Certificate> = Api::namespaced(client.clone(), "mem");
    let listed = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let is_ready = |c: &certwright::api::Certificate| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "Ready" && c.status == certwright::api::meta::ConditionStatus::True
                })
            })
    };
    let example = listed
        .iter()
        .find(|c| !is_ready(c))
        .map(|c| {
            format!(
                "{}: {:?}",
                c.metadata.name.clone().unwrap_or_default(),
                c.status
            )
        })
        .unwrap_or_default();
    (listed.iter().filter(|c| is_ready(c)).count(), example)
}

async fn run(cluster: &'static LocalCluster, cert_sizes: Vec<usize>, secrets: usize) {
    let client = cluster.control_plane().client();
    let pebble = Pebble::start(cluster.pebble_options())
        .await
        .expect("pebble");
    let settings = cert_manager::Settings {
        dns: pebble.dns_address.clone(),
        extra_args: Vec::new(),
    };
    cert_manager::install_crds(&client, &settings)
        .await
        .expect("CRDs");
    deploy::owners_mapped(&client).await.expect("owners");
    for ns in ["unrelated", "mem"] {
        let _ = Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
            )
            .await;
    }
    let ca_b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        pebble.tls_ca_pem.as_bytes(),
    );
    deploy::apply(
        &client,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": "mem"},
        "spec": {"acme": {"server": pebble.directory_url, "caBundle": ca_b64,
            "privateKeySecretRef": {"name": "mem-account"},
            "solvers": [{"http01": {"ingress": {"ingressClassName": cluster.ingress_class()}}}]}}}),
    )
    .await
    .expect("issuer");
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");

    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    let mut stage = |what: String, certwright: f64, cert_manager: f64| {
        println!("{what}: certwright {certwright:.1} MiB, cert-manager {cert_manager:.1} MiB");
        rows.push((what, certwright, cert_manager));
    };
    let both = |c: &kube::Client, s: &cert_manager::Settings, n: usize| {
        let (c, s) = (c.clone(), s.clone());
        async move {
            let a = measure(&c, "certwright", &s, n).await;
            let b = measure(&c, "cert-manager", &s, n).await;
            (a, b)
        }
    };
    let (a, b) = both(&client, &settings, 0).await;
    stage("empty".into(), a, b);
    let started = Instant::now();
    create_all(&client, unrelated(secrets)).await;
    println!(
        "created {secrets} Secrets in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let (a, b) = both(&client, &settings, 0).await;
    stage(format!("{secrets} Secrets"), a, b);
    let mut have = 0;
    for n in cert_sizes {
        let started = Instant::now();
        create_all(&client, certificates(have, n, &ca, &key)).await;
        have = n;
        println!(
            "created {n} Certificates and Secrets in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        let (a, b) = both(&client, &settings, n).await;
        stage(format!("{secrets} Secrets, {n} Certificates"), a, b);
    }
    let mut table = String::from(
        "| cluster holds (Secrets: unrelated; Certificates: Ready) | certwright RSS MiB | cert-manager RSS MiB | cert-manager / certwright |\n| --- | ---: | ---: | ---: |\n",
    );
    for (what, a, b) in &rows {
        table.push_str(&format!("| {what} | {a:.1} | {b:.1} | {:.1}x |\n", b / a));
    }
    println!("\n{table}");
    if let Ok(dir) = std::env::var("BENCH_OUT") {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).expect("BENCH_OUT");
        std::fs::write(dir.join("memory.md"), &table).expect("write memory.md");
        let groups: Vec<(String, Vec<f64>)> = rows
            .iter()
            .map(|(what, a, b)| (what.clone(), vec![*a, *b]))
            .collect();
        let plot = svg::bars(
            "controller resident memory at rest",
            "MiB",
            &["certwright", "cert-manager"],
            &groups,
        );
        std::fs::write(dir.join("memory.svg"), plot).expect("write memory.svg");
    }
}

fn main() {
    certwright::install_crypto_provider();
    let sizes = |var: &str, default: &str| -> Vec<usize> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    };
    let cert_sizes = sizes("BENCH_CERTS", "1000");
    let secrets = sizes("BENCH_SECRETS", "30000")
        .first()
        .copied()
        .unwrap_or(30_000);
    cluster::run_in_node(|cluster| run(cluster, cert_sizes, secrets));
}

//! The user's commands: `status`, `renew`, `inspect`, `check domain`, also
//! as `kubectl certwright`. Golden files for `status` (a Ready Certificate
//! and one stuck on a Challenge) and `inspect`, from fixtures
//! (`tests/fixtures/cli/`; regenerate with `UPDATE_GOLDEN=1 cargo test
//! --test cli`); then each command against the local cluster and pebble,
//! and the errors a user meets, each one line.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use certwright::api::{Certificate, CertificateRequest, Challenge, Order};
use certwright::cmd::status_text::{self, ChallengeView, EventLine, IssuerView, SecretView, Tree};
use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use serde::Deserialize;
use serde_json::{Value, json};

use common::env::Env;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cli")
}

fn now() -> Timestamp {
    "2026-12-03T13:30:00Z".parse().expect("now")
}

/// The objects of a fixture, by kind.
fn objects(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture_dir().join(name)).expect("fixture");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("yaml"))
        .collect()
}

fn of_kind<T: serde::de::DeserializeOwned>(all: &[Value], kind: &str) -> Vec<T> {
    all.iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| serde_json::from_value(o.clone()).expect(kind))
        .collect()
}

fn events_for(all: &[Value], kind: &str, name: &str) -> Vec<EventLine> {
    of_kind::<Event>(all, "Event")
        .iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
        })
        .map(EventLine::of)
        .collect()
}

/// The tree `status` would read, from a fixture.
fn tree(name: &str) -> Tree {
    let all = objects(name);
    let certificate: Certificate = of_kind(&all, "Certificate").remove(0);
    let events = events_for(&all, "Certificate", &certificate.name_any());
    let issuer = all
        .iter()
        .find(|o| o["kind"] == "ClusterIssuer")
        .map(|o| IssuerView {
            kind: "ClusterIssuer".into(),
            name: o["metadata"]["name"].as_str().unwrap_or_default().into(),
            status: Some(o["status"].clone()),
        })
        .expect("issuer");
    let secret = of_kind::<Secret>(&all, "Secret")
        .first()
        .map(SecretView::of);
    let request = of_kind::<CertificateRequest>(&all, "CertificateRequest")
        .pop()
        .map(|cr| {
            let e = events_for(&all, "CertificateRequest", &cr.name_any());
            (cr, e)
        });
    let order = of_kind::<Order>(&all, "Order").pop().map(|o| {
        let e = events_for(&all, "Order", &o.name_any());
        (o, e)
    });
    let challenges = of_kind::<Challenge>(&all, "Challenge")
        .into_iter()
        .map(|challenge| ChallengeView {
            events: events_for(&all, "Challenge", &challenge.name_any()),
            resources: vec![format!(
                "Ingress/{}",
                certwright::solver::ingress::resource_name(&challenge.name_any())
            )],
            challenge,
        })
        .collect();
    Tree {
        certificate,
        events,
        issuer,
        secret,
        request,
        order,
        challenges,
    }
}

fn golden(name: &str, got: &str) {
    let path = fixture_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got, want,
        "{name} differs; if the change is meant, regenerate with UPDATE_GOLDEN=1 cargo test --test e2e cli::"
    );
}

#[test]
fn a_ready_certificate_whose_renewal_keeps_failing_is_not_ok() {
    let mut tree = tree("ready.yaml");
    let status = tree.certificate.status.get_or_insert_with(Default::default);
    let at: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
    status.last_failure_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
    status.failed_issuance_attempts = Some(3);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != "Issuing");
    conditions.push(
        serde_json::from_value(serde_json::json!({"type": "Issuing", "status": "False",
            "reason": "Failed", "message": "The certificate request has failed to complete and will be retried: the CA refused the order"}))
        .expect("condition"),
    );
    let shown = status_text::render(&tree, now());
    assert!(
        shown.contains("Renewal failing: the certificate is Ready, valid until 2027-03-03 13:00:57 UTC (in 89d), but its last issuance failed at 2026-12-01 10:00:00 UTC")
            && shown.contains("the CA refused the order")
            && !shown.contains("OK:"),
        "{shown}"
    );
}

#[test]
fn status_and_inspect_match_their_golden_files() {
    certwright::install_crypto_provider();
    let ready = status_text::render(&tree("ready.yaml"), now());
    golden("status-ready.txt", &ready);
    assert!(
        ready.contains("OK: the certificate is Ready, valid until 2027-03-03 13:00:57 UTC"),
        "{ready}"
    );
    let stuck = status_text::render(&tree("stuck.yaml"), now());
    golden("status-stuck.txt", &stuck);
    assert!(
        stuck.contains("Last error: Challenge shop-1-1436329837-1950283564 for shop.example.test: Waiting for HTTP-01 challenge propagation")
            && stuck.contains("What to do: the CA is not asked until the token is reachable"),
        "{stuck}"
    );
    let secret: Secret = of_kind(&objects("ready.yaml"), "Secret").remove(0);
    let inspected = certwright::cmd::inspect::render(&secret, now()).expect("inspect");
    golden("inspect-ready.txt", &inspected);
    assert!(
        inspected.contains("Serial Number: 2a:1b:3c")
            && inspected.contains("Key matches certificate: yes"),
        "{inspected}"
    );
}

/// Runs the binary as `certwright` (or through kubectl as a plugin) with
/// `kubeconfig`; (success, stdout, stderr).
fn certwright(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_certwright"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("certwright runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A failure: non-zero, nothing on stdout, one line on stderr.
fn fails_with_one_line(result: (bool, String, String), want: &str) {
    let (ok, out, err) = result;
    assert!(!ok, "it should fail: {out}{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(want), "{want:?} in {err}");
}

async fn issuing_reason(api: &Api<Certificate>, name: &str) -> Option<String> {
    api.get(name)
        .await
        .ok()?
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Issuing" && c.status == certwright::api::meta::ConditionStatus::True)?
        .reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_renew_inspect_and_check_domain_against_the_local_cluster() {
    let env = Env::start(|_| {}, &[]).await;
    let ns = "cli";
    env.namespace(ns).await;
    let kubeconfig = env.cluster.kubeconfig().to_path_buf();
    let certs: Api<Certificate> = Api::namespaced(env.client.clone(), ns);

    // Stuck: the CA refuses to validate, so the Challenge keeps a reason.
    env.ca_refuses_validation();
    env.certificate(
        ns,
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["web.cli.test"]}),
    )
    .await;
    env.wait("the Challenge to carry a reason", 60, || async {
        let all = Api::<Challenge>::namespaced(env.client.clone(), ns)
            .list(&Default::default())
            .await
            .ok()?;
        all.items
            .iter()
            .find_map(|c| c.status.as_ref()?.reason.clone())
    })
    .await;
    let (ok, out, err) = certwright(&kubeconfig, &["status", "certificate", "web", "-n", ns]);
    assert!(ok, "{err}");
    for want in [
        "Certificate cli/web",
        "ClusterIssuer pebble",
        "CertificateRequest web-1",
        "Order web-1-",
        "Challenge web-1-",
        "HTTP-01 for web.cli.test",
        "Last error: Challenge web-1-",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    env.proxy.clear_faults();
    env.certificate_ready(ns, "web", 1).await;
    let (ok, out, err) = certwright(&kubeconfig, &["status", "cert", "web", "-n", ns]);
    assert!(
        ok && out.contains("OK: the certificate is Ready"),
        "{out}{err}"
    );

    // inspect
    let (ok, out, err) = certwright(&kubeconfig, &["inspect", "secret", "web-tls", "-n", ns]);
    assert!(ok, "{err}");
    assert!(
        out.contains("\t\t- web.cli.test")
            && out.contains("Key matches certificate: yes")
            && out.contains("Issued By: CN=Pebble Intermediate CA"),
        "{out}"
    );

    // renew: a Ready certificate is issued again at once.
    let serial = |s: &Secret| {
        certwright::cmd::details::of_chain(&String::from_utf8_lossy(&common::secret_data(
            s, "tls.crt",
        )))
        .expect("details")
        .serial
    };
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ns);
    let first = serial(&secrets.get("web-tls").await.expect("secret"));
    let (ok, out, err) = certwright(&kubeconfig, &["renew", "web", "-n", ns]);
    assert!(
        ok && out.contains("Manually triggered issuance of Certificate cli/web"),
        "{out}{err}"
    );
    let reason = env
        .wait("Issuing=True ManuallyTriggered", 20, || async {
            issuing_reason(&certs, "web").await
        })
        .await;
    assert_eq!(reason, "ManuallyTriggered");
    let (ok, out, _) = certwright(&kubeconfig, &["renew", "web", "-n", ns]);
    assert!(
        ok && (out.contains("already being issued") || out.contains("Manually triggered")),
        "{out}"
    );
    env.certificate_ready(ns, "web", 2).await;
    assert_ne!(
        serial(&secrets.get("web-tls").await.expect("secret")),
        first,
        "a new certificate"
    );
    let requests: Api<CertificateRequest> = Api::namespaced(env.client.clone(), ns);
    env.wait("web-2 to be the request kept", 30, || async {
        let names: Vec<String> = requests
            .list(&Default::default())
            .await
            .ok()?
            .items
            .iter()
            .map(|r| r.name_any())
            .collect();
        names.contains(&"web-2".to_string()).then_some(())
    })
    .await;

    // renew --all -l, as the kubectl plugin.
    env.certificate(
        ns,
        "api",
        json!({"secretName": "api-tls", "dnsNames": ["api.cli.test"]}),
    )
    .await;
    env.certificate_ready(ns, "api", 1).await;
    certs
        .patch(
            "api",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"tier": "api"}}})),
        )
        .await
        .expect("label");
    let plugins = std::env::temp_dir().join(format!("certwright-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&plugins).expect("dir");
    let link = plugins.join("kubectl-certwright");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_certwright"), &link).expect("symlink");
    let path = format!(
        "{}:{}",
        plugins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plugin = Command::new("kubectl")
        .args(["certwright", "renew", "--all", "-n", ns, "-l", "tier=api"])
        .env("KUBECONFIG", &kubeconfig)
        .env("PATH", &path)
        .output()
        .expect("kubectl runs");
    let said = String::from_utf8_lossy(&plugin.stdout).into_owned()
        + &String::from_utf8_lossy(&plugin.stderr);
    assert!(
        plugin.status.success()
            && said.contains("Certificate cli/api")
            && !said.contains("cli/web"),
        "{said}"
    );
    env.certificate_ready(ns, "api", 2).await;
    let _ = std::fs::remove_dir_all(&plugins);

    // check domain: through the test's ingress address nothing routes the
    // probe yet (404, as it should); a name that cannot be resolved fails.
    let address = env.cluster.ingress_addr().to_string();
    let (ok, out, err) = certwright(
        &kubeconfig,
        &[
            "check",
            "domain",
            "web.cli.test",
            "--cluster-issuer",
            "pebble",
            "--address",
            &address,
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("ClusterIssuer pebble: solver 1 of its list proves web.cli.test: HTTP-01")
            && out.contains("answered 404, as it should"),
        "{out}"
    );
    // A nameserver that is not there (loopback, nothing listening).
    fails_with_one_line(
        certwright(
            &kubeconfig,
            &[
                "check",
                "domain",
                "nowhere.cli.test",
                "--nameservers",
                "127.0.0.1:9",
            ],
        ),
        "nowhere.cli.test: the CA could not fetch an HTTP-01 token",
    );

    // The errors a user meets.
    fails_with_one_line(
        certwright(&kubeconfig, &["status", "certificate", "nope", "-n", ns]),
        "Certificate cli/nope not found",
    );
    fails_with_one_line(
        certwright(&kubeconfig, &["inspect", "secret", "nope", "-n", ns]),
        "Secret cli/nope not found",
    );
    fails_with_one_line(
        certwright(&kubeconfig, &["renew", "--all", "-n", "empty-ns"]),
        "no Certificates in namespace empty-ns match",
    );
    let nobody = nobody_kubeconfig(&env);
    fails_with_one_line(
        certwright(&nobody, &["status", "certificate", "web", "-n", ns]),
        "not allowed to read or change Certificate cli/web",
    );
    let dead = env.cluster.kubeconfig().with_file_name("dead-kubeconfig");
    let text = std::fs::read_to_string(env.cluster.kubeconfig()).expect("kubeconfig");
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server")
        .to_string();
    std::fs::write(&dead, text.replace(&server, "https://127.0.0.1:9")).expect("write");
    fails_with_one_line(
        certwright(&dead, &["status", "certificate", "web", "-n", ns]),
        "cannot reach the API server",
    );
    fails_with_one_line(
        certwright(
            Path::new("/nonexistent/kubeconfig"),
            &["renew", "web", "--kubeconfig", "/nonexistent/kubeconfig"],
        ),
        "reading the kubeconfig /nonexistent/kubeconfig",
    );
}

/// A kubeconfig for a user the API server knows but RBAC grants nothing.
fn nobody_kubeconfig(env: &Env) -> PathBuf {
    let plane = env.cluster.control_plane();
    let user = plane.ca().client("nobody", &[]).expect("client cert");
    let text = certwright_testcluster::control_plane::kubeconfig(
        &env.cluster.api_url(),
        plane.ca_pem(),
        &user,
        "default",
    );
    let path = env.cluster.kubeconfig().with_file_name("nobody-kubeconfig");
    std::fs::write(&path, text).expect("write");
    path
}

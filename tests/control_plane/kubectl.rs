//! The real `kubectl` against the real API server, with certwright's CRDs
//! and no special flags: client-side and server-side apply (validated
//! against the served OpenAPI), printer columns, `-o yaml`, patch, label,
//! `explain`, `wait --for=condition=Ready`, `describe` with events written
//! by kube-runtime's Recorder, generators (`create namespace`, `create
//! deployment`, whose ReplicaSet and Pods the real controllers make), `auth
//! can-i` answered by RBAC, and delete.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::Resource;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;

struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("kubectl")
            .args(args)
            .arg("--cache-dir")
            .arg(&self.cache)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("kubectl runs (it is preinstalled on our machines)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

async fn kubectl(args: Vec<String>, k: std::sync::Arc<Kubectl>) -> String {
    let (ok, text) = try_kubectl(args.clone(), k).await;
    assert!(ok, "kubectl {args:?} failed:\n{text}");
    text
}

/// Runs kubectl; whether it succeeded, and what it printed.
async fn try_kubectl(args: Vec<String>, k: std::sync::Arc<Kubectl>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        k.run(&refs)
    })
    .await
    .expect("kubectl task")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.to_string_lossy().into_owned()
}

use crate::common;

const NS: &str = "cw-kubectl";

const CERT: &str = "apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: example
spec:
  secretName: example-tls
  dnsNames: [example.com]
  issuerRef: {name: letsencrypt, kind: ClusterIssuer}
";

fn kubectl_in(dir: &Path, kubeconfig: &Path) -> std::sync::Arc<Kubectl> {
    std::fs::create_dir_all(dir).expect("temp dir");
    // The admin kubeconfig with the test's namespace as its default.
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let own = dir.join("kubeconfig");
    std::fs::write(
        &own,
        text.replace("namespace: default", &format!("namespace: {NS}")),
    )
    .expect("kubeconfig written");
    std::sync::Arc::new(Kubectl {
        kubeconfig: own,
        cache: dir.join("cache"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_certwright_resources_on_the_real_api_server() {
    let (plane, client) = common::control_plane_with_crds().await;
    let dir = std::env::temp_dir().join(format!("certwright-kubectl-{}", std::process::id()));
    let k = kubectl_in(&dir, plane.kubeconfig());
    let run = |args: &[&str]| kubectl(args.iter().map(|s| s.to_string()).collect(), k.clone());

    let version = run(&["version", "-o", "json"]).await;
    // The JSON, then whatever kubectl warns on stderr.
    let version: serde_json::Value = serde_json::Deserializer::from_str(&version)
        .into_iter()
        .next()
        .expect("a JSON document")
        .expect("version JSON");
    assert_eq!(
        version["serverVersion"]["gitVersion"],
        certwright_testcluster::tools::kubernetes_version(),
        "{version}"
    );
    let created = run(&["create", "namespace", NS]).await;
    assert!(
        created.contains(&format!("namespace/{NS} created")),
        "{created}"
    );
    let ns = run(&["get", "ns"]).await;
    assert!(
        ns.lines()
            .any(|l| l.starts_with(NS) && l.contains("Active")),
        "{ns}"
    );

    let crds = Command::new(env!("CARGO_BIN_EXE_certwright"))
        .arg("crds")
        .output()
        .expect("certwright crds");
    let crds = write(&dir, "crds.yaml", &String::from_utf8_lossy(&crds.stdout));
    let applied = run(&["apply", "--server-side", "-f", &crds]).await;
    assert_eq!(
        applied.matches(" serverside-applied").count(),
        6,
        "{applied}"
    );
    let explained = run(&["explain", "certificate.spec.dnsNames"]).await;
    assert!(
        explained.contains("KIND:")
            && explained.contains("Certificate")
            && explained.contains("[]string"),
        "{explained}"
    );

    let cert = write(&dir, "cert.yaml", CERT);
    assert!(
        run(&["apply", "-f", &cert])
            .await
            .contains("certificate.cert-manager.io/example created")
    );
    let table = run(&["get", "certificate"]).await;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "READY", "SECRET", "AGE"], "{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.starts_with("example") && row.contains("example-tls")),
        "{table}"
    );
    let wide = run(&["get", "cert", "-o", "wide"]).await;
    assert!(
        wide.contains("ISSUER") && wide.contains("letsencrypt"),
        "{wide}"
    );

    // A changed manifest: client-side apply patches, server-side apply takes over.
    let changed = write(
        &dir,
        "cert2.yaml",
        &CERT.replace("[example.com]", "[example.com, www.example.com]"),
    );
    assert!(run(&["apply", "-f", &changed]).await.contains("configured"));
    assert!(
        run(&["apply", "--server-side", "-f", &changed])
            .await
            .contains("serverside-applied")
    );
    let yaml = run(&["get", "certificate", "example", "-o", "yaml"]).await;
    let object: serde_json::Value = serde_yaml_ng::from_str(&yaml).expect("yaml");
    assert_eq!(
        object["spec"]["dnsNames"],
        json!(["example.com", "www.example.com"])
    );
    assert_eq!(object["metadata"]["generation"], 2);

    run(&[
        "patch",
        "certificate",
        "example",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"secretName":"renamed-tls"}}"#,
    ])
    .await;
    run(&["label", "certificate", "example", "team=platform"]).await;
    run(&["annotate", "certificate", "example", "owner=alice"]).await;
    let created = run(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
    ])
    .await;
    assert!(created.contains("configmap/settings created"), "{created}");
    let labelled = run(&[
        "get",
        "certificate",
        "-l",
        "team=platform",
        "-o",
        "jsonpath={.items[*].spec.secretName}",
    ])
    .await;
    assert_eq!(labelled.trim(), "renamed-tls");
    let annotated = run(&[
        "get",
        "certificate",
        "example",
        "-o",
        "jsonpath={.metadata.annotations.owner}",
    ])
    .await;
    assert_eq!(annotated.trim(), "alice");

    // A controller marks it Ready while kubectl waits for it.
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    );
    let certs: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &ar);
    let writer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired"}]}});
        certs.patch_status("example", &PatchParams::apply("certwright").force(), &Patch::Apply(json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "status": status["status"]}))).await
    });
    let waited = run(&[
        "wait",
        "--for=condition=Ready",
        "certificate/example",
        "--timeout=30s",
    ])
    .await;
    assert!(waited.contains("condition met"), "{waited}");
    writer.await.expect("task").expect("status apply");
    let ready = run(&["get", "certificate", "example"]).await;
    assert!(
        ready
            .lines()
            .nth(1)
            .is_some_and(|row| row.split_whitespace().nth(1) == Some("True")),
        "{ready}"
    );

    // Events from kube-runtime's Recorder (events.k8s.io/v1) show in describe.
    let certs: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &ar);
    let object = certs.get("example").await.expect("get");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "certwright-certificates-trigger".into(),
            instance: None,
        },
    );
    recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "Issuing".into(),
                note: Some("Issuing certificate as Secret does not exist".into()),
                action: "Issue".into(),
                secondary: None,
            },
            &object.object_ref(&ar),
        )
        .await
        .expect("event published");
    let described = run(&["describe", "certificate", "example"]).await;
    let events = run(&["get", "events", "-o", "yaml"]).await;
    assert!(
        described.contains("Issuing certificate as Secret does not exist"),
        "{described}\n{events}"
    );
    assert!(
        described.contains("certwright-certificates-trigger"),
        "{described}"
    );

    // Built-in kinds: client-side apply of a changed manifest is a strategic merge patch.
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: app\n        image: example/web:v1\n        env:\n        - {name: A, value: \"1\"}\n      - name: sidecar\n        image: example/side:v1\n";
    let first = write(&dir, "deploy.yaml", deploy);
    assert!(run(&["apply", "-f", &first]).await.contains("created"));
    let second = write(
        &dir,
        "deploy2.yaml",
        &deploy
            .replace("web:v1", "web:v2")
            .replace("{name: A, value: \"1\"}", "{name: B, value: \"2\"}"),
    );
    assert!(run(&["apply", "-f", &second]).await.contains("configured"));
    let containers = run(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={range .spec.template.spec.containers[*]}{.name}={.image}:{.env[*].name};{end}",
    ])
    .await;
    assert_eq!(
        containers.trim(),
        "app=example/web:v2:B;sidecar=example/side:v1:;"
    );

    // A generator and the real controllers: Deployment -> ReplicaSet -> Pods.
    let made = run(&[
        "create",
        "deployment",
        "hello",
        "--image=registry.example/hello:1",
        "--replicas=2",
    ])
    .await;
    assert!(made.contains("deployment.apps/hello created"), "{made}");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NS);
    let owners = common::eventually("two Pods from the ReplicaSet", || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels("app=hello"))
            .await
            .ok()?;
        let owners: Vec<String> = list
            .items
            .iter()
            .flat_map(|p| p.metadata.owner_references.iter().flatten())
            .map(|o| format!("{}/{}", o.kind, o.name))
            .collect();
        (owners.len() == 2).then_some(owners)
    })
    .await;
    let replica_set = owners[0]
        .strip_prefix("ReplicaSet/")
        .expect("owned by a ReplicaSet");
    let rs_owner = run(&[
        "get",
        "replicaset",
        replica_set,
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
    ])
    .await;
    assert_eq!(rs_owner.trim(), "Deployment/hello");

    // RBAC answers for a ServiceAccount bound to a narrow Role.
    run(&["create", "serviceaccount", "reader"]).await;
    run(&[
        "create",
        "role",
        "certificate-reader",
        "--verb=get,list",
        "--resource=certificates.cert-manager.io",
    ])
    .await;
    run(&[
        "create",
        "rolebinding",
        "reader",
        "--role=certificate-reader",
        &format!("--serviceaccount={NS}:reader"),
    ])
    .await;
    let who = format!("--as=system:serviceaccount:{NS}:reader");
    let can = |verb: &str| {
        try_kubectl(
            vec![
                "auth".into(),
                "can-i".into(),
                verb.into(),
                "certificates.cert-manager.io".into(),
                who.clone(),
            ],
            k.clone(),
        )
    };
    let (ok, text) = can("get").await;
    assert!(ok && text.trim() == "yes", "{text}");
    let (ok, text) = can("delete").await;
    assert!(!ok && text.trim() == "no", "{text}");

    let all = run(&[
        "get",
        "certificate,certificaterequest,order,challenge,secret",
    ])
    .await;
    assert!(all.contains("certificate.cert-manager.io/example"), "{all}");
    assert!(
        run(&["delete", "certificate", "example"])
            .await
            .contains("deleted")
    );
    let none = run(&["get", "certificate"]).await;
    assert!(none.contains("No resources found"), "{none}");
    let _ = std::fs::remove_dir_all(&dir);
}

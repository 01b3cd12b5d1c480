//! certwright installed in the local cluster with its Helm chart: the
//! chart's rendered objects (`helm template`: ServiceAccount, RBAC,
//! Services, Deployment) applied server-side, with the CRDs from
//! `certwright crds`. The Pods are processes of the built binary, with the
//! ServiceAccount's token and no other credentials, so the chart's RBAC is
//! what every end-to-end test runs under.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// certwright's namespace in the local cluster.
pub const NAMESPACE: &str = "certwright";
/// Label selecting the controller Pods.
pub const APP_LABEL: &str = "app.kubernetes.io/name=certwright";
/// The user the controller's requests carry (its ServiceAccount).
pub const CONTROLLER_USER: &str = "system:serviceaccount:certwright:certwright";

const MANAGER: &str = "certwright-testcluster";

/// The chart (`charts/certwright`, or `$CERTWRIGHT_CHART`).
pub fn chart_dir() -> std::path::PathBuf {
    std::env::var_os("CERTWRIGHT_CHART").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/certwright"),
        std::path::PathBuf::from,
    )
}

/// The chart rendered by `helm template` as release `certwright` in
/// [`NAMESPACE`], with `args` (`--set` and the like): one value per object.
pub fn render_chart(args: &[String]) -> Result<Vec<Value>, String> {
    helm_template("certwright", &chart_dir(), NAMESPACE, args)
}

/// `chart` rendered by `helm template` as `release` in `namespace`, with
/// `args`: one value per object.
pub fn helm_template(
    release: &str,
    chart: &std::path::Path,
    namespace: &str,
    args: &[String],
) -> Result<Vec<Value>, String> {
    let out = std::process::Command::new(crate::tools::on_path("helm")?)
        .args(["template", release])
        .arg(chart)
        .args(["--namespace", namespace])
        .args(args)
        .output()
        .map_err(|e| format!("running helm: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "helm template {} failed: {}",
            chart.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            <Value as serde::Deserialize>::deserialize(d)
                .map_err(|e| format!("helm printed bad YAML: {e}"))
        })
        .filter(|v| !matches!(v, Ok(Value::Null)))
        .collect()
}

/// The API of `object`'s kind (in its namespace, if it has one), and its
/// kind and name.
fn api_of(client: &kube::Client, object: &Value) -> (Api<DynamicObject>, String, String) {
    let (group, version) = match object["apiVersion"]
        .as_str()
        .unwrap_or("v1")
        .split_once('/')
    {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            object["apiVersion"].as_str().unwrap_or("v1").to_string(),
        ),
    };
    let kind = object["kind"].as_str().unwrap_or("").to_string();
    let plural = match kind.as_str() {
        "Ingress" => "ingresses".to_string(),
        "PrometheusRule" => "prometheusrules".to_string(),
        k if k.ends_with('s') => format!("{}es", k.to_lowercase()),
        k => format!("{}s", k.to_lowercase()),
    };
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&group, &version, &kind), &plural);
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    (api, kind, name)
}

/// Server-side applies `object` (any kind) as the test cluster.
pub async fn apply(client: &kube::Client, object: Value) -> Result<(), String> {
    let (api, kind, name) = api_of(client, &object);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("applying {kind} {name}: {e}"))
}

/// Removes the controller and the cluster-scoped objects [`controller`]
/// applied (its ClusterRoles and bindings; the CRDs stay), so the chart
/// can be installed by helm itself in the same cluster.
pub async fn remove_all(client: &kube::Client) -> Result<(), String> {
    remove_controller(client).await?;
    for object in render_chart(&chart_values(&[]))? {
        if object["metadata"]["namespace"].is_string()
            || object["kind"] == "CustomResourceDefinition"
            || object["kind"] == "Namespace"
        {
            continue;
        }
        let (api, kind, name) = api_of(client, &object);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(format!("deleting {kind} {name}: {e}")),
        }
    }
    Ok(())
}

/// Applies certwright's CRDs (from `certwright crds`), waits until the
/// API server serves them and its admission maps them as owners.
pub async fn install_crds(client: &kube::Client, binary: &std::path::Path) -> Result<(), String> {
    apply_crds(client, binary).await?;
    owners_mapped(client).await
}

/// Applies certwright's CRDs and waits until the API server serves them.
pub async fn apply_crds(client: &kube::Client, binary: &std::path::Path) -> Result<(), String> {
    let crds = std::process::Command::new(binary)
        .args(["crds", "-o", "json"])
        .output()
        .map_err(|e| format!("running certwright crds: {e}"))?;
    let list: Value = serde_json::from_slice(&crds.stdout)
        .map_err(|e| format!("certwright crds printed no JSON: {e}"))?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in list["items"].as_array().into_iter().flatten() {
        let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(crd),
        )
        .await
        .map_err(|e| format!("applying CRD {name}: {e}"))?;
        established(client, &name).await?;
    }
    Ok(())
}

/// Waits (up to 30 s) until the API server serves the CRD `name`.
pub async fn established(client: &kube::Client, name: &str) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let established = api
            .get(name)
            .await
            .ok()
            .and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("CRD {name} was not established within 30 s"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until the API server's admission can map certwright's kinds as
/// owners. OwnerReferencesPermissionEnforcement refuses an object whose
/// blockOwnerDeletion owner it cannot map ("cannot find RESTMapping"), and
/// its mapper learns new CRDs only when it is next reset (every 30 s), so
/// a test starting just after the CRDs would see its first writes refused
/// (the local cluster applies the CRDs early in its start to overlap that).
/// Probed with a dry-run Secret owned by one object of each kind, created
/// as a user that may create Secrets in `default` and nothing else (the
/// admin's requests skip the check): mapped, the refusal turns into "can't
/// set finalizers".
pub async fn owners_mapped(client: &kube::Client) -> Result<(), String> {
    const PROBE_USER: &str = "certwright:owner-probe";
    let rbac = [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "certwright-owner-probe", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "certwright-owner-probe", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "certwright-owner-probe"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": PROBE_USER}]}),
    ];
    for object in rbac {
        apply(client, object).await?;
    }
    let owners: Vec<Value> = [
        ("cert-manager.io/v1", "Certificate"),
        ("cert-manager.io/v1", "CertificateRequest"),
        ("acme.cert-manager.io/v1", "Order"),
        ("acme.cert-manager.io/v1", "Challenge"),
    ]
    .iter()
    .map(|(api_version, kind)| {
        json!({"apiVersion": api_version, "kind": kind, "name": "probe",
            "uid": "00000000-0000-0000-0000-000000000000", "blockOwnerDeletion": true})
    })
    .collect();
    let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "certwright-owner-probe", "ownerReferences": owners}}))
    .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(45);
    loop {
        let request = http::Request::post("/api/v1/namespaces/default/secrets?dryRun=All")
            .header("Content-Type", "application/json")
            .header("Impersonate-User", PROBE_USER)
            .body(body.clone())
            .map_err(|e| e.to_string())?;
        // Mapped: admitted, or refused for the finalizers the probe may not
        // set. Anything else (the RBAC binding not yet seen, the mapping
        // missing) is asked again.
        let answer = match client.request_text(request).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) => s.message,
            Err(e) => return Err(format!("probing owner references: {e}")),
        };
        if answer.contains("can't set finalizers") {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the API server's admission did not map certwright's kinds within 45 s: {answer}"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Flags the chart sets from values: given to [`controller`], they become
/// those values (a flag given twice is an error), every other flag goes
/// into `extraArgs`.
const CHART_FLAGS: [(&str, &str); 7] = [
    ("--log-format", "global.logFormat"),
    ("--http01-solver-mode", "http01.solverMode"),
    ("--max-concurrent-challenges", "maxConcurrentChallenges"),
    ("--cluster-resource-namespace", "clusterResourceNamespace"),
    (
        "--leader-election-lease-duration",
        "global.leaderElection.leaseDuration",
    ),
    (
        "--leader-election-renew-deadline",
        "global.leaderElection.renewDeadline",
    ),
    (
        "--leader-election-retry-period",
        "global.leaderElection.retryPeriod",
    ),
];

/// The `helm template` arguments for the local cluster: the image the
/// kubelet maps to the built binary, debug logs, short lease terms (a
/// replica SIGKILLed mid-test is replaced in seconds, not a minute), and
/// `flags` as values or extra arguments.
fn chart_values(flags: &[String]) -> Vec<String> {
    let mut set: Vec<(String, String)> = vec![
        ("crds.enabled".into(), "false".into()),
        ("image.tag".into(), "dev".into()),
        ("global.leaderElection.leaseDuration".into(), "6s".into()),
        ("global.leaderElection.renewDeadline".into(), "4s".into()),
        ("global.leaderElection.retryPeriod".into(), "1s".into()),
    ];
    let mut extra: Vec<String> = Vec::new();
    let mut rest = flags.iter().peekable();
    while let Some(flag) = rest.next() {
        if flag == "--enable-certificate-owner-ref" {
            set.push(("enableCertificateOwnerRef".into(), "true".into()));
            continue;
        }
        let value = CHART_FLAGS
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| *v);
        match (value, rest.peek()) {
            (Some(key), Some(given)) => {
                set.retain(|(k, _)| k != key);
                set.push((key.to_string(), given.to_string()));
                rest.next();
            }
            _ => extra.push(flag.clone()),
        }
    }
    let mut args: Vec<String> = set
        .into_iter()
        .flat_map(|(k, v)| ["--set".to_string(), format!("{k}={v}")])
        .collect();
    args.extend([
        "--set-json".into(),
        format!(
            "extraArgs={}",
            serde_json::to_string(&extra).unwrap_or_default()
        ),
        "--set-json".into(),
        r#"extraEnv=[{"name":"RUST_LOG","value":"info,certwright=debug"}]"#.into(),
    ]);
    args
}

/// Deploys the controller as the chart installs it (without its CRDs,
/// which [`install_crds`] applies): namespace, ServiceAccount, RBAC,
/// Services and a one-replica Deployment of the image the kubelet maps to
/// the built binary, with `extra_args` after `controller`. A controller
/// deployed before is replaced.
pub async fn controller(client: &kube::Client, extra_args: &[String]) -> Result<(), String> {
    controller_tagged(client, "dev", extra_args).await
}

/// As [`controller`], with the image tagged `tag`: the cluster maps each
/// image it knows to a binary (`dev` to the one built; the issuance
/// bench maps `baseline` to an earlier build, for a before and after).
pub async fn controller_tagged(
    client: &kube::Client,
    tag: &str,
    extra_args: &[String],
) -> Result<(), String> {
    controller_with_values(client, tag, extra_args, &[]).await
}

/// As [`controller_tagged`], with more `helm template` arguments
/// (`--set`, `--set-json`), after the local cluster's.
pub async fn controller_with_values(
    client: &kube::Client,
    tag: &str,
    extra_args: &[String],
    chart_args: &[String],
) -> Result<(), String> {
    remove_controller(client).await?;
    apply(
        client,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .await?;
    // The post-install check (a hook Job) is tests/e2e/metrics.rs' to run.
    let mut values = chart_values(extra_args);
    values.extend([
        "--set".into(),
        format!("image.tag={tag}"),
        "--no-hooks".into(),
    ]);
    values.extend(chart_args.iter().cloned());
    for object in render_chart(&values)? {
        apply(client, object).await?;
    }
    Ok(())
}

/// Deletes the controller's Deployment and waits until its Pods are gone.
pub async fn remove_controller(client: &kube::Client) -> Result<(), String> {
    delete_deployment(client, NAMESPACE, "certwright", APP_LABEL).await
}

/// Deletes Deployment `namespace/name` (gone already is fine) and waits up
/// to 60 s until it and its Pods (those `selector` selects) are gone.
pub async fn delete_deployment(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    selector: &str,
) -> Result<(), String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    match deployments.delete(name, &DeleteParams::foreground()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(format!("deleting Deployment {namespace}/{name}: {e}")),
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !pod_names(client, namespace, selector).await.is_empty()
        || deployments.get_opt(name).await.ok().flatten().is_some()
    {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "Deployment {namespace}/{name} or its Pods were still there after 60 s"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The chart's values that run the controller on the real node
/// ([`crate::node`]): its image, built and imported there, and the
/// placement that selects the node and tolerates its taint.
pub fn real_node_values() -> Vec<String> {
    let (selector, tolerations) = crate::node::placement();
    vec![
        "--set".into(),
        format!(
            "image.repository={}",
            crate::node::images::CERTWRIGHT_REPOSITORY
        ),
        "--set-json".into(),
        format!("nodeSelector={selector}"),
        "--set-json".into(),
        format!("tolerations={tolerations}"),
    ]
}

/// The controller Pods' names.
pub async fn controller_pods(client: &kube::Client) -> Vec<String> {
    pod_names(client, NAMESPACE, APP_LABEL).await
}

/// The names of the Pods in `namespace` that `selector` selects.
pub async fn pod_names(client: &kube::Client, namespace: &str, selector: &str) -> Vec<String> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect()
        })
        .unwrap_or_default()
}

/// The controller Pods that are Ready (and not being deleted), by name.
pub async fn ready_controller_pods(client: &kube::Client) -> Vec<String> {
    let listed = Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default().labels(APP_LABEL))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    listed
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// Scales the controller's Deployment to `replicas`.
pub async fn scale(client: &kube::Client, replicas: i32) -> Result<(), String> {
    Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .patch(
            "certwright",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("scaling the controller to {replicas}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_the_chart_sets_become_values_and_the_rest_extra_args() {
        let flags: Vec<String> = [
            "--log-format",
            "json",
            "--ari-poll-max-seconds",
            "1",
            "--enable-certificate-owner-ref",
            "--leader-election-retry-period",
            "2s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let args = chart_values(&flags).join(" ");
        assert!(args.contains("global.logFormat=json"), "{args}");
        assert!(args.contains("enableCertificateOwnerRef=true"), "{args}");
        assert!(
            args.contains("global.leaderElection.retryPeriod=2s")
                && !args.contains("retryPeriod=1s"),
            "{args}"
        );
        assert!(
            args.contains(r#"extraArgs=["--ari-poll-max-seconds","1"]"#),
            "{args}"
        );
    }
}

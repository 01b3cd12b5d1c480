//! cert-manager itself in the local cluster: its CRDs, its controller's
//! ServiceAccount, RBAC and Deployment rendered from its own Helm chart
//! (v1.21, copied from its Go module by `scripts/install-tools`), the
//! controller Pod and cert-manager's per-Challenge solver Pods run by the
//! process kubelet as our mains over its module (`tests/tools/cert-manager`:
//! `controller`, `acmesolver`). Its webhook, cainjector and startup check
//! are left out: nothing here needs them, and the controller works without.
//! Every setting is cert-manager's default but the three the cluster needs
//! (the solver image, the HTTP-01 and DNS-01 self-checks' nameservers) and
//! the leader election namespace (cert-manager's own, so its chart's Role
//! for the Lease is the one used).

use std::path::PathBuf;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::{Value, json};

use crate::deploy::{apply, established, helm_template};

/// cert-manager's namespace (its chart's usual one).
pub const NAMESPACE: &str = "cert-manager";
/// The user cert-manager's controller requests carry.
pub const CONTROLLER_USER: &str = "system:serviceaccount:cert-manager:cert-manager";
/// The controller's Deployment (the chart's name for release `cert-manager`).
pub const DEPLOYMENT: &str = "cert-manager";
/// Label selecting cert-manager's controller Pods.
pub const CONTROLLER_LABEL: &str =
    "app.kubernetes.io/name=cert-manager,app.kubernetes.io/component=controller";
/// Label on cert-manager's HTTP-01 solver Pods, Services and Ingresses.
pub const SOLVER_LABEL: &str = "acme.cert-manager.io/http01-solver=true";

/// The images the kubelet maps to our mains over cert-manager's module, and
/// the cached binary of each.
pub const IMAGES: [(&str, &str); 2] = [
    ("cert-manager-controller", "cert-manager-controller"),
    ("cert-manager-acmesolver", "cert-manager-acmesolver"),
];

/// The chart templates used: the CRDs, and the controller's
/// ServiceAccount, RBAC, metrics Service and Deployment.
const TEMPLATES: [&str; 10] = [
    "crd-acme.cert-manager.io_challenges.yaml",
    "crd-acme.cert-manager.io_orders.yaml",
    "crd-cert-manager.io_certificaterequests.yaml",
    "crd-cert-manager.io_certificates.yaml",
    "crd-cert-manager.io_clusterissuers.yaml",
    "crd-cert-manager.io_issuers.yaml",
    "serviceaccount.yaml",
    "rbac.yaml",
    "service.yaml",
    "deployment.yaml",
];

/// Where `scripts/install-tools` copied cert-manager's chart.
pub fn chart_dir() -> Result<PathBuf, String> {
    let dir = crate::tools::cache_dir()
        .join(format!(
            "cert-manager-{}",
            crate::tools::cert_manager_version()
        ))
        .join("chart");
    if dir.join("Chart.yaml").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "cert-manager's chart is not at {}: run scripts/install-tools",
            dir.display()
        ))
    }
}

/// What cert-manager is told about the local cluster: `dns` (host:port) is
/// the nameserver its HTTP-01 and DNS-01 self-checks ask (pebble's).
#[derive(Clone, Debug)]
pub struct Settings {
    pub dns: String,
    /// More controller flags (`--max-concurrent-challenges=…`).
    pub extra_args: Vec<String>,
}

/// The chart's values for the local cluster.
fn values(settings: &Settings) -> Value {
    let mut args = vec![
        format!("--acme-http01-solver-nameservers={}", settings.dns),
        format!("--dns01-recursive-nameservers={}", settings.dns),
    ];
    args.extend(settings.extra_args.iter().cloned());
    json!({
        "crds": {"enabled": true},
        "global": {"leaderElection": {"namespace": NAMESPACE}},
        "extraArgs": args,
    })
}

/// cert-manager's chart rendered for the local cluster: CRDs first.
pub fn render(settings: &Settings) -> Result<Vec<Value>, String> {
    let values_file = std::env::temp_dir().join(format!(
        "certwright-cert-manager-values-{}.json",
        std::process::id()
    ));
    std::fs::write(&values_file, values(settings).to_string())
        .map_err(|e| format!("writing {}: {e}", values_file.display()))?;
    let mut args = vec!["-f".to_string(), values_file.display().to_string()];
    for template in TEMPLATES {
        args.extend(["--show-only".into(), format!("templates/{template}")]);
    }
    let rendered = helm_template("cert-manager", &chart_dir()?, NAMESPACE, &args);
    let _ = std::fs::remove_file(&values_file);
    rendered
}

/// Applies cert-manager's CRDs (from its chart) and waits until they are
/// served.
pub async fn install_crds(client: &kube::Client, settings: &Settings) -> Result<(), String> {
    for crd in render(settings)?
        .into_iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
    {
        let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
        apply(client, crd).await?;
        established(client, &name).await?;
    }
    Ok(())
}

/// Installs cert-manager as its chart does (CRDs included) and waits until
/// its controller leads, i.e. its controllers run.
pub async fn install(client: &kube::Client, settings: &Settings) -> Result<(), String> {
    install_crds(client, settings).await?;
    apply(
        client,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .await?;
    let started = unix_now();
    for object in render(settings)?
        .into_iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
    {
        apply(client, object).await?;
    }
    wait_for_leader(client, started).await
}

/// Seconds since the epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Waits until a cert-manager Pod holds its Lease, taken or renewed at
/// `since` or later.
async fn wait_for_leader(client: &kube::Client, since: u64) -> Result<(), String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let held = leases
            .get_opt("cert-manager-controller")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .filter(|s| s.holder_identity.as_deref().is_some_and(|h| !h.is_empty()))
            .and_then(|s| s.renew_time)
            .is_some_and(|t| t.0.as_second() >= since as i64 - 1);
        if held {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "cert-manager's controller did not take its Lease within 90 s (Pods: {:?})",
                pods(client).await
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// cert-manager's controller Pods, by name.
pub async fn pods(client: &kube::Client) -> Vec<String> {
    crate::deploy::pod_names(client, NAMESPACE, CONTROLLER_LABEL).await
}

/// Stops cert-manager's controller (deletes its Deployment and waits until
/// its Pods are gone), leaving its CRDs, RBAC and everything it made.
pub async fn stop(client: &kube::Client) -> Result<(), String> {
    crate::deploy::delete_deployment(client, NAMESPACE, DEPLOYMENT, CONTROLLER_LABEL).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_the_test_dns_and_keep_the_lease_in_cert_managers_namespace() {
        let v = values(&Settings {
            dns: "10.244.0.1:5353".into(),
            extra_args: vec!["--max-concurrent-challenges=5".into()],
        });
        assert_eq!(v["global"]["leaderElection"]["namespace"], NAMESPACE);
        assert_eq!(
            v["extraArgs"],
            json!([
                "--acme-http01-solver-nameservers=10.244.0.1:5353",
                "--dns01-recursive-nameservers=10.244.0.1:5353",
                "--max-concurrent-challenges=5"
            ])
        );
    }
}

//! The volumes the local kubelet gives a Pod: the projected ServiceAccount
//! volume that admission adds (a TokenRequest token bound to the Pod,
//! renewed before 80% of its life; `kube-root-ca.crt`; the namespace),
//! configMap, secret and emptyDir, written under the Pod's directory and shown to the container
//! at their mountPaths by the sandbox.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use super::kubelet::key;
use super::sandbox::Mount;
use super::{NODE_IP, NODE_NAME};

/// Writes the projected ServiceAccount volume (token, ca.crt, namespace)
/// into `dir`; returns the token's lifetime in seconds.
async fn service_account_volume(
    client: &kube::Client,
    pod: &Pod,
    projected: &Value,
    dir: &Path,
) -> Result<i64, String> {
    let (ns, name) = key(pod);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut lifetime = 3607;
    for source in projected["sources"].as_array().into_iter().flatten() {
        if let Some(token) = source.get("serviceAccountToken") {
            let seconds = token["expirationSeconds"].as_i64().unwrap_or(3607);
            let account = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into());
            let mut spec = json!({"expirationSeconds": seconds,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": pod.metadata.uid}});
            if let Some(audience) = token["audience"].as_str() {
                spec["audiences"] = json!([audience]);
            }
            let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
            let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
                Api::namespaced(client.clone(), &ns);
            let answer: Value = accounts
                .create_subresource("token", &account, &PostParams::default(), &request)
                .await
                .map_err(|e| format!("TokenRequest for {ns}/{account}: {e}"))?;
            let path = token["path"].as_str().unwrap_or("token");
            write_atomic(dir, path, answer["status"]["token"].as_str().unwrap_or(""))?;
            lifetime = seconds;
        }
        if let Some(cm) = source.get("configMap") {
            let map_name = cm["name"].as_str().unwrap_or("");
            let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let map = maps
                .get(map_name)
                .await
                .map_err(|e| format!("ConfigMap {ns}/{map_name}: {e}"))?;
            let data: BTreeMap<String, String> = map.data.unwrap_or_default();
            for item in cm["items"].as_array().into_iter().flatten() {
                let k = item["key"].as_str().unwrap_or("");
                let path = item["path"].as_str().unwrap_or(k);
                write_atomic(dir, path, data.get(k).map(String::as_str).unwrap_or(""))?;
            }
        }
        for item in source["downwardAPI"]["items"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let value = field_ref(
                pod,
                "",
                item["fieldRef"]["fieldPath"].as_str().unwrap_or(""),
            );
            write_atomic(dir, item["path"].as_str().unwrap_or(""), &value)?;
        }
    }
    Ok(lifetime)
}

fn write_atomic(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| e.to_string())
}

pub(super) fn field_ref(pod: &Pod, ip: &str, path: &str) -> String {
    let meta = &pod.metadata;
    match path {
        "status.podIP" => ip.to_string(),
        "status.hostIP" => NODE_IP.to_string(),
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => NODE_NAME.to_string(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        _ => String::new(),
    }
}

/// The volumes of the Pod's container `index` this kubelet can provide,
/// written under `dir`, and where the container sees them. Returns the
/// shortest token lifetime.
pub(super) async fn volumes(
    client: &kube::Client,
    pod: &Pod,
    dir: &Path,
    index: usize,
) -> Result<(Vec<Mount>, Option<i64>), String> {
    let spec = serde_json::to_value(pod.spec.as_ref()).map_err(|e| e.to_string())?;
    let mut mounts = Vec::new();
    let mut lifetime = None;
    let container = &spec["containers"][index];
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = mount["name"].as_str().unwrap_or("");
        let Some(volume) = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == name)
        else {
            continue;
        };
        let source = dir.join(format!("volume-{name}"));
        if volume.get("projected").is_some() {
            let seconds =
                service_account_volume(client, pod, &volume["projected"], &source).await?;
            lifetime = Some(lifetime.map_or(seconds, |l: i64| l.min(seconds)));
        } else if volume.get("emptyDir").is_some() {
            std::fs::create_dir_all(&source).map_err(|e| e.to_string())?;
        } else if let Some(map_name) = volume["configMap"]["name"].as_str() {
            // Every key as a file (written once: the local kubelet does not
            // follow later changes of the ConfigMap).
            std::fs::create_dir_all(&source).map_err(|e| e.to_string())?;
            let (ns, _) = key(pod);
            let map = Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .get(map_name)
                .await
                .map_err(|e| format!("ConfigMap {ns}/{map_name}: {e}"))?;
            for (k, v) in map.data.unwrap_or_default() {
                write_atomic(&source, &k, &v)?;
            }
        } else if let Some(secret_name) = volume["secret"]["secretName"].as_str() {
            // Every key as a file, written once as for a ConfigMap.
            std::fs::create_dir_all(&source).map_err(|e| e.to_string())?;
            let (ns, _) = key(pod);
            let secret = Api::<Secret>::namespaced(client.clone(), &ns)
                .get(secret_name)
                .await
                .map_err(|e| format!("Secret {ns}/{secret_name}: {e}"))?;
            for (k, v) in secret.data.unwrap_or_default() {
                write_atomic(&source, &k, &v.0)?;
            }
        } else {
            return Err(format!(
                "volume {name}: the local kubelet mounts projected, configMap, secret and emptyDir volumes only"
            ));
        }
        mounts.push(Mount {
            source,
            target: mount["mountPath"].as_str().unwrap_or("").to_string(),
        });
    }
    Ok((mounts, lifetime))
}

/// Requests a fresh token for container `index` before 80% of the last
/// one's life has passed.
pub(super) async fn renew_tokens(
    client: kube::Client,
    pod: Pod,
    dir: PathBuf,
    seconds: i64,
    index: usize,
) {
    let mut seconds = seconds;
    loop {
        tokio::time::sleep(Duration::from_secs((seconds.max(10) as u64) * 8 / 10)).await;
        let Ok(spec) = serde_json::to_value(pod.spec.as_ref()) else {
            return;
        };
        for mount in spec["containers"][index]["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = mount["name"].as_str().unwrap_or("");
            if let Some(volume) = spec["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == name && v.get("projected").is_some())
                && let Ok(s) = service_account_volume(
                    &client,
                    &pod,
                    &volume["projected"],
                    &dir.join(format!("volume-{name}")),
                )
                .await
            {
                seconds = s;
            }
        }
    }
}

//! `certwright renew`: an immediate re-issuance, as cmctl's: the
//! Certificate's Issuing condition set True with reason
//! `ManuallyTriggered`; the controller does the rest, whatever backoff a
//! failure had set.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::explain;
use crate::api::Certificate;
use crate::api::certificate::MANUALLY_TRIGGERED;

/// Which Certificates: by name in `namespace`, or every one (`--all`) in
/// `namespace` (None: every namespace), optionally by label selector.
pub struct Selection<'a> {
    pub names: &'a [String],
    pub namespace: Option<&'a str>,
    pub selector: Option<&'a str>,
}

/// Marks each selected Certificate for issuance; one line per Certificate.
pub async fn renew(client: &kube::Client, selection: Selection<'_>) -> anyhow::Result<Vec<String>> {
    let api: Api<Certificate> = match selection.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let where_ = selection
        .namespace
        .map_or("any namespace".to_string(), |ns| format!("namespace {ns}"));
    let certs = if selection.names.is_empty() {
        let mut params = ListParams::default();
        if let Some(s) = selection.selector {
            params = params.labels(s);
        }
        api.list(&params)
            .await
            .map_err(|e| explain(e, &format!("the Certificates in {where_}")))?
            .items
    } else {
        let mut out = Vec::new();
        for name in selection.names {
            let at = format!(
                "Certificate {}/{name}",
                selection.namespace.unwrap_or_default()
            );
            out.push(api.get(name).await.map_err(|e| explain(e, &at))?);
        }
        out
    };
    if certs.is_empty() {
        anyhow::bail!("no Certificates in {where_} match");
    }
    let mut lines = Vec::new();
    for cert in certs {
        lines.push(mark(client, &cert).await?);
    }
    Ok(lines)
}

async fn mark(client: &kube::Client, cert: &Certificate) -> anyhow::Result<String> {
    let ns = cert.namespace().unwrap_or_default();
    let at = format!("Certificate {ns}/{}", cert.name_any());
    let mut conditions: Vec<Value> = cert
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| serde_json::to_value(c).unwrap_or_default())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    if let Some(issuing) = conditions
        .iter()
        .find(|c| c["type"] == "Issuing" && c["status"] == "True")
    {
        return Ok(format!(
            "{at} is already being issued ({})",
            issuing["reason"].as_str().unwrap_or_default()
        ));
    }
    conditions.retain(|c| c["type"] != "Issuing");
    conditions.push(json!({
        "type": "Issuing", "status": "True", "reason": MANUALLY_TRIGGERED,
        "message": "Certificate re-issuance manually triggered",
        "lastTransitionTime": Timestamp::now().to_string(),
        "observedGeneration": cert.metadata.generation,
    }));
    // The resourceVersion makes it a compare-and-swap: a status the
    // controller changed meanwhile is not overwritten.
    let patch = json!({"metadata": {"resourceVersion": cert.resource_version()},
        "status": {"conditions": conditions}});
    Api::<Certificate>::namespaced(client.clone(), &ns)
        .patch_status(
            &cert.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => {
                anyhow::anyhow!("{at} changed while it was being marked: run the command again")
            }
            other => explain(other, &at),
        })?;
    Ok(format!("Manually triggered issuance of {at}"))
}

//! The account key's Secret: written by server-side apply, so that other
//! keys and metadata of the Secret are left alone, and hashed for the
//! issuer's status.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::Error;

/// A hash of the key, to notice it changed.
pub(super) fn key_hash(pem: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pem.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Applies `data` to the Secret `name` as field manager `manager`: keys
/// it applied before and not now are removed, others' are left alone.
pub(super) async fn apply_secret_data(
    secrets: &Api<Secret>,
    name: &str,
    manager: &str,
    data: BTreeMap<String, String>,
) -> Result<(), Error> {
    let ns = secrets.namespace().unwrap_or_default();
    let data: BTreeMap<String, ByteString> = data
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.into_bytes())))
        .collect();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
        "type": "Opaque", "data": data});
    secrets
        .patch(
            name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(secret),
        )
        .await
        .map_err(|e| Error::WriteSecret(format!("{ns}/{name}"), e))?;
    Ok(())
}

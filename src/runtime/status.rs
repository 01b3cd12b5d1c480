//! Status writes: every controller applies its part of an object's status
//! with server-side apply under its own field manager.

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Removes `null` members everywhere in `value`. In an apply patch a field
/// left out is one the manager gives up (so it goes if nobody else owns it),
/// whereas `null` for a typed field is refused by the API server.
pub fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Applies `status` to the object `name` as field manager `manager`.
pub async fn apply<K, S>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    status: &S,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    apply_returning(api, name, manager, status)
        .await
        .map(|_| ())
}

/// Like [`apply`], returning the object as written.
pub async fn apply_returning<K, S>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    status: &S,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let mut status = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
    drop_nulls(&mut status);
    let patch = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(patch),
    )
    .await
}

/// Removes `fields` from the status, whoever set them: leaving a field out
/// of a server-side apply removes it only when no other manager owns it
/// (cert-manager writes status with Update, so an object it worked on
/// keeps its fields otherwise).
pub async fn clear<K>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    fields: &[&str],
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let nulls: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|f| (f.to_string(), serde_json::Value::Null))
        .collect();
    let params = PatchParams {
        field_manager: Some(manager.to_string()),
        ..Default::default()
    };
    api.patch_status(
        name,
        &params,
        &Patch::Merge(serde_json::json!({"status": nulls})),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_are_left_out_at_every_depth() {
        let mut v = serde_json::json!({"revision": null, "lastFailureTime": "t",
            "conditions": [{"type": "Issuing", "observedGeneration": null}], "nested": {"a": null}});
        drop_nulls(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"lastFailureTime": "t", "conditions": [{"type": "Issuing"}], "nested": {}})
        );
    }
}

//! Checks that issue nothing: whether the API server serves certwright's
//! kinds (the chart's post-install check, as cert-manager's
//! startupapicheck).

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};

/// The kinds certwright serves: group, version, kind, plural.
pub const KINDS: [(&str, &str, &str, &str); 6] = [
    ("cert-manager.io", "v1", "Certificate", "certificates"),
    (
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    ),
    ("cert-manager.io", "v1", "Issuer", "issuers"),
    ("cert-manager.io", "v1", "ClusterIssuer", "clusterissuers"),
    ("acme.cert-manager.io", "v1", "Order", "orders"),
    ("acme.cert-manager.io", "v1", "Challenge", "challenges"),
];

/// What is wrong when `missing` kinds (`plural.group`) are not served.
pub fn not_served(missing: &[String]) -> String {
    format!(
        "the API server does not serve {}: install certwright's CRDs (`certwright crds | kubectl apply --server-side -f -`, or the chart with crds.enabled=true) and wait until they are Established",
        missing.join(", ")
    )
}

/// Ok when every kind can be listed; else what is missing or failing.
pub async fn api(client: &kube::Client) -> Result<(), String> {
    let mut missing = Vec::new();
    for (group, version, kind, plural) in KINDS {
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => missing.push(format!("{plural}.{group}")),
            Err(e) => return Err(format!("listing {plural}.{group}: {e}")),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(not_served(&missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_what_is_missing_and_how_to_install_it() {
        let m = not_served(&[
            "certificates.cert-manager.io".into(),
            "orders.acme.cert-manager.io".into(),
        ]);
        assert!(m.contains("certificates.cert-manager.io, orders.acme.cert-manager.io"));
        assert!(m.contains("certwright crds") && m.contains("crds.enabled=true"));
    }

    #[test]
    fn the_kinds_are_the_crds() {
        let crds: Vec<String> = crate::api::crds()
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        for (group, _, _, plural) in KINDS {
            assert!(
                crds.contains(&format!("{plural}.{group}")),
                "{plural}.{group}"
            );
        }
        assert_eq!(crds.len(), KINDS.len());
    }
}

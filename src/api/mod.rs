//! The cert-manager-compatible API served by certwright: Rust types for the
//! six kinds (one file per kind, no logic) and the CRDs derived from them.

// kube's `printcolumn(name = .., type_ = ..)` repeats the same keys in each
// column, which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod acme;
pub mod certificate;
pub mod certificate_request;
pub mod challenge;
pub mod dns01;
pub mod http01;
pub mod issuer;
pub mod meta;
pub mod order;

pub use acme::{AcmeChallengeSolver, AcmeIssuer};
pub use certificate::{Certificate, CertificateSpec, CertificateStatus};
pub use certificate_request::{
    CertificateRequest, CertificateRequestSpec, CertificateRequestStatus,
};
pub use challenge::{Challenge, ChallengeSpec, ChallengeStatus};
pub use issuer::{
    ClusterIssuer, ClusterIssuerSpec, Issuer, IssuerConfig, IssuerSpec, IssuerStatus,
};
pub use order::{Order, OrderSpec, OrderStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CRDs of every kind certwright serves, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        Certificate::crd(),
        CertificateRequest::crd(),
        Issuer::crd(),
        ClusterIssuer::crd(),
        Order::crd(),
        Challenge::crd(),
    ]
    .into_iter()
    .map(tidy)
    .collect()
}

/// The CRDs as one multi-document YAML stream, as `certwright crds` prints it.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

/// Removes `nullable: true` and `null` enum members, which the schema
/// generator adds for every optional field. cert-manager's schemas have
/// neither: an explicit `null` is then dropped by the API server instead of
/// stored.
fn tidy(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let mut value = serde_json::to_value(&*schema).unwrap_or_default();
            strip_nullable(&mut value);
            if let Ok(stripped) = serde_json::from_value(value) {
                *schema = stripped;
            }
        }
    }
    crd
}

fn strip_nullable(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("nullable") == Some(&serde_json::Value::Bool(true)) {
                map.remove("nullable");
            }
            if let Some(serde_json::Value::Array(members)) = map.get_mut("enum") {
                members.retain(|m| !m.is_null());
            }
            map.values_mut().for_each(strip_nullable);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nullable),
        _ => {}
    }
}

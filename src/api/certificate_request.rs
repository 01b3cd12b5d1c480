//! `CertificateRequest` (cert-manager.io/v1): one signing request, created
//! per issuance by the Certificate controllers. Its spec is immutable.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::{ConditionStatus, IssuerReference, KeyUsage};

/// A one-shot request to sign a CSR, answered once with a certificate or a failure.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "CertificateRequest",
    namespaced,
    status = "CertificateRequestStatus",
    shortname = "cr",
    shortname = "crs",
    category = "cert-manager",
    doc = "A CertificateRequest asks an issuer to sign one CSR. It is answered once: with a certificate (Ready=True) or a failure (Ready=False, reason Failed); its spec never changes.",
    printcolumn(
        name = "Approved",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Approved\")].status"
    ),
    printcolumn(
        name = "Denied",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Denied\")].status"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Ready\")].status"
    ),
    printcolumn(name = "Issuer", type_ = "string", json_path = ".spec.issuerRef.name"),
    printcolumn(name = "Requester", type_ = "string", json_path = ".spec.username"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since the object was created."
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestSpec {
    /// Requested lifetime as a Go duration; the issuer may ignore it.
    pub duration: Option<String>,
    /// The Issuer or ClusterIssuer asked to sign.
    pub issuer_ref: IssuerReference,
    /// The PEM-encoded PKCS#10 CSR. Its basic constraints and key usages, if
    /// present, must agree with `isCA` and `usages`.
    #[schemars(schema_with = "super::meta::bytes_schema")]
    pub request: ByteString,
    /// Ask for a CA certificate (adds `cert sign` to the usages).
    #[serde(rename = "isCA")]
    pub is_ca: Option<bool>,
    /// Key usages and extended key usages requested.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub usages: Option<Vec<KeyUsage>>,
    /// User who created the request (set on creation, immutable).
    pub username: Option<String>,
    /// UID of the user who created the request.
    pub uid: Option<String>,
    /// Groups of the user who created the request.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub groups: Option<Vec<String>>,
    /// Extra attributes of the user who created the request.
    pub extra: Option<BTreeMap<String, Vec<String>>>,
}

/// Observed state of a CertificateRequest.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestStatus {
    /// Conditions: `Approved`, `Denied`, `InvalidRequest` and `Ready`.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<CertificateRequestCondition>>,
    /// The signed certificate and its chain, PEM-encoded.
    // schemars cannot see through schema_with that the field is optional.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::bytes_schema")]
    pub certificate: Option<ByteString>,
    /// The issuing CA's certificate, PEM-encoded, when the issuer knows it.
    // schemars cannot see through schema_with that the field is optional.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::bytes_schema")]
    pub ca: Option<ByteString>,
    /// When the request failed.
    pub failure_time: Option<Time>,
}

/// A condition on a CertificateRequest.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestCondition {
    /// Type: `Ready`, `InvalidRequest`, `Approved` or `Denied`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether the condition holds: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// When the status last changed.
    pub last_transition_time: Option<Time>,
    /// One-word, machine-readable cause of the last transition.
    pub reason: Option<String>,
    /// Human-readable detail of the last transition.
    pub message: Option<String>,
}

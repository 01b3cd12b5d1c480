//! `Order` (acme.cert-manager.io/v1): one ACME order for one
//! CertificateRequest. Its spec is immutable; retrying means a new Order.

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::IssuerReference;

/// An order at an ACME CA for the names of one CSR.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "acme.cert-manager.io",
    version = "v1",
    kind = "Order",
    namespaced,
    status = "OrderStatus",
    category = "cert-manager",
    category = "cert-manager-acme",
    doc = "An Order is one ACME order placed for one CertificateRequest; it creates a Challenge per authorization still to prove and is finalized with the request's CSR.",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Issuer",
        type_ = "string",
        json_path = ".spec.issuerRef.name",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.reason",
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
pub struct OrderSpec {
    /// The CSR in DER encoding, used to finalize the order.
    #[schemars(schema_with = "super::meta::bytes_schema")]
    pub request: ByteString,
    /// The ACME Issuer or ClusterIssuer to order from.
    pub issuer_ref: IssuerReference,
    /// Common name of the CSR; must also be among `dnsNames` or `ipAddresses`.
    pub common_name: Option<String>,
    /// DNS names to authorize; equal to the CSR's.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub dns_names: Option<Vec<String>>,
    /// IP addresses to authorize; equal to the CSR's.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub ip_addresses: Option<Vec<String>>,
    /// Requested lifetime, sent as the order's notAfter when the issuer
    /// enables the duration feature.
    pub duration: Option<String>,
    /// Certificate profile requested from the CA.
    pub profile: Option<String>,
}

/// State of an ACME order, authorization or challenge (RFC 8555 7.1.6), plus
/// `errored` for failures that are not the CA's verdict.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AcmeState {
    Valid,
    Ready,
    Pending,
    Processing,
    Invalid,
    Expired,
    Errored,
}

/// Observed state of an Order.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatus {
    /// URL of the order at the CA; set once, right after the order is placed.
    pub url: Option<String>,
    /// URL to finalize the order at.
    #[serde(rename = "finalizeURL")]
    pub finalize_url: Option<String>,
    /// The order's authorizations as the CA returned them.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub authorizations: Option<Vec<AcmeAuthorization>>,
    /// The PEM certificate chain, once the order is valid and finalized.
    // schemars cannot see through schema_with that the field is optional.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::bytes_schema")]
    pub certificate: Option<ByteString>,
    /// Current state; `valid`, `invalid`, `expired` and `errored` are final.
    pub state: Option<AcmeState>,
    /// Why the order is in its state, e.g. the CA's problem detail.
    pub reason: Option<String>,
    /// When the order failed.
    pub failure_time: Option<Time>,
}

/// An authorization of an order.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeAuthorization {
    /// URL of the authorization.
    pub url: String,
    /// The name to prove; for a wildcard, the name without `*.`.
    pub identifier: Option<String>,
    /// Whether the authorization is for a wildcard name.
    pub wildcard: Option<bool>,
    /// State when first fetched; an authorization already `valid` (reused by
    /// the CA) needs no Challenge.
    pub initial_state: Option<AcmeState>,
    /// Challenges the CA offers for it.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub challenges: Option<Vec<AcmeChallenge>>,
}

/// A challenge offered by the CA.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeChallenge {
    /// URL of the challenge.
    pub url: String,
    /// Token of the challenge, part of the key authorization.
    pub token: String,
    /// Challenge type as the CA names it, e.g. `http-01`, `dns-01`.
    #[serde(rename = "type")]
    pub type_: String,
}

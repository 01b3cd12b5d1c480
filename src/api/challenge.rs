//! `Challenge` (acme.cert-manager.io/v1): proving control of one name for
//! one authorization of an Order.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::acme::AcmeChallengeSolver;
use super::meta::{ConditionStatus, IssuerReference};
use super::order::AcmeState;

/// One ACME challenge: the token to present for a name, and its progress.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "acme.cert-manager.io",
    version = "v1",
    kind = "Challenge",
    namespaced,
    status = "ChallengeStatus",
    category = "cert-manager",
    category = "cert-manager-acme",
    doc = "A Challenge presents one ACME token for one name, checks that it is reachable, asks the CA to validate it and cleans up afterwards.",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.dnsName"),
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
pub struct ChallengeSpec {
    /// URL of the challenge at the CA.
    pub url: String,
    /// URL of the authorization the challenge belongs to.
    #[serde(rename = "authorizationURL")]
    pub authorization_url: String,
    /// The name to prove; for `*.example.com` this is `example.com`.
    pub dns_name: String,
    /// Whether the authorization is for a wildcard name.
    pub wildcard: Option<bool>,
    /// `HTTP-01` or `DNS-01`.
    #[serde(rename = "type")]
    pub type_: ChallengeType,
    /// The token as the CA sent it.
    pub token: String,
    /// What to present: for HTTP-01 the key authorization
    /// `<token>.<account key thumbprint>`; for DNS-01 its base64url SHA-256 digest.
    pub key: String,
    /// The issuer's solver chosen for this name.
    pub solver: AcmeChallengeSolver,
    /// The ACME Issuer or ClusterIssuer of the Order.
    pub issuer_ref: IssuerReference,
}

/// Kind of ACME challenge.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ChallengeType {
    #[default]
    #[serde(rename = "HTTP-01")]
    Http01,
    #[serde(rename = "DNS-01")]
    Dns01,
}

/// Observed state of a Challenge.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeStatus {
    /// Whether a controller is working on the challenge; false once it
    /// reached a final state.
    pub processing: Option<bool>,
    /// Whether the token is currently presented (route and server in place);
    /// says nothing about reachability.
    pub presented: Option<bool>,
    /// Why the challenge is in its state; the last self-check or CA error.
    pub reason: Option<String>,
    /// State of the challenge at the CA.
    pub state: Option<AcmeState>,
    /// Conditions: `Presented`, `Solved` (reachable as the CA will see it)
    /// and `Accepted` (validated by the CA).
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<ChallengeCondition>>,
    /// Progress of the solver's readiness checks.
    pub solver: Option<ChallengeSolverStatus>,
    /// When the challenge is due to be looked at again.
    pub next_reconcile: Option<Time>,
}

/// A condition on a Challenge.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeCondition {
    /// Type: `Presented`, `Solved` or `Accepted`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether the condition holds: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// When the status last changed.
    pub last_transition_time: Option<Time>,
    /// One-word, machine-readable cause of the last transition.
    pub reason: String,
    /// Human-readable detail of the last transition.
    pub message: Option<String>,
}

/// Progress of the solver's readiness checks.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeSolverStatus {
    /// DNS-01 propagation checks.
    pub dns: Option<ChallengeSolverStatusDns>,
    /// HTTP-01 reachability checks.
    pub http: Option<ChallengeSolverStatusHttp>,
}

/// DNS-01 propagation progress.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeSolverStatusDns {
    /// TTL of the TXT record, as a Go duration.
    pub ttl: Option<String>,
    /// When the record was last seen at the authoritative servers.
    pub last_success: Option<Time>,
    /// Fully qualified name of the TXT record.
    pub fqdn: Option<String>,
}

/// HTTP-01 reachability progress.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeSolverStatusHttp {
    /// Successful checks needed before the CA is asked.
    pub required_successes: Option<i64>,
    /// Successful checks so far.
    pub successes: Option<i64>,
}

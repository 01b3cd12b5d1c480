//! HTTP-01 solver configuration: how the token is routed to whoever serves it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, SELinuxOptions, SeccompProfile, Sysctl, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::LocalObjectReference;

/// HTTP-01 solver: route `/.well-known/acme-challenge/<token>` through an
/// Ingress or a Gateway API HTTPRoute.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.ingress) && has(self.gatewayHTTPRoute))",
     "message": "only one of ingress or gatewayHTTPRoute may be set"}
]))]
pub struct Http01Solver {
    /// Route the token through an Ingress: a new one per challenge, or an
    /// existing one named by `name` that is edited in place.
    pub ingress: Option<Http01IngressSolver>,
    /// Route the token through a Gateway API HTTPRoute attached to
    /// `parentRefs` (not yet implemented by certwright; reported as unsupported).
    #[serde(rename = "gatewayHTTPRoute")]
    pub gateway_http_route: Option<Http01GatewayHttpRouteSolver>,
}

/// Kind of the Service created for a solver Pod.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SolverServiceType {
    NodePort,
    ClusterIP,
}

/// Ingress-based HTTP-01 solver.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "((has(self.class) ? 1 : 0) + (has(self.ingressClassName) ? 1 : 0) + (has(self.name) ? 1 : 0)) <= 1",
     "message": "only one of class, ingressClassName or name may be set"}
]))]
pub struct Http01IngressSolver {
    /// Type of the Service in front of a solver Pod (pod mode): `NodePort`
    /// (the default) or `ClusterIP`.
    pub service_type: Option<SolverServiceType>,
    /// `spec.ingressClassName` of the solver Ingress. The recommended way to
    /// pick the ingress controller.
    pub ingress_class_name: Option<String>,
    /// Value of the legacy `kubernetes.io/ingress.class` annotation on the
    /// solver Ingress.
    pub class: Option<String>,
    /// Name of an existing Ingress to add the challenge route to, instead of
    /// creating one (for controllers that tie one address to one Ingress).
    pub name: Option<String>,
    /// Overrides for solver Pods (pod mode).
    pub pod_template: Option<SolverPodTemplate>,
    /// Labels and annotations for the solver Ingress.
    pub ingress_template: Option<SolverIngressTemplate>,
}

/// Gateway API HTTPRoute-based HTTP-01 solver.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Http01GatewayHttpRouteSolver {
    /// Type of the Service in front of a solver Pod: `NodePort` (the default) or `ClusterIP`.
    pub service_type: Option<SolverServiceType>,
    /// Labels put on the HTTPRoutes created for challenges.
    pub labels: Option<BTreeMap<String, String>>,
    /// Gateways (or other parents) the HTTPRoute attaches to.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub parent_refs: Option<Vec<ParentReference>>,
    /// Overrides for solver Pods.
    pub pod_template: Option<SolverPodTemplate>,
}

/// A Gateway API parent reference (usually a Gateway).
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// API group of the parent; `gateway.networking.k8s.io` when unset, `""` for core.
    #[schemars(length(max = 253))]
    pub group: Option<String>,
    /// Kind of the parent; `Gateway` when unset.
    #[schemars(length(min = 1, max = 63))]
    pub kind: Option<String>,
    /// Namespace of the parent; the route's own when unset.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Name of the parent.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Section of the parent, e.g. a Gateway listener name.
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
    /// Port of the parent to attach to.
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Labels and annotations added to a generated object.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SolverObjectMeta {
    /// Annotations to add; on a clash they override certwright's own.
    pub annotations: Option<BTreeMap<String, String>>,
    /// Labels to add; on a clash they override certwright's own.
    pub labels: Option<BTreeMap<String, String>>,
}

/// Overrides for the solver Ingress.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SolverIngressTemplate {
    /// Labels and annotations for the solver Ingress.
    pub metadata: Option<SolverObjectMeta>,
}

/// Overrides for solver Pods; only the fields listed here are honoured.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SolverPodTemplate {
    /// Labels and annotations for the solver Pod.
    pub metadata: Option<SolverObjectMeta>,
    /// Scheduling, identity and security overrides for the solver Pod.
    pub spec: Option<SolverPodSpec>,
}

/// The subset of a PodSpec a solver Pod takes from its template.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SolverPodSpec {
    /// Node labels the Pod must be scheduled on.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Scheduling affinity of the Pod.
    pub affinity: Option<Affinity>,
    /// Taints the Pod tolerates.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub tolerations: Option<Vec<Toleration>>,
    /// PriorityClass of the Pod.
    pub priority_class_name: Option<String>,
    /// ServiceAccount the Pod runs as.
    pub service_account_name: Option<String>,
    /// Secrets used to pull the solver image.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Pod-level security settings.
    pub security_context: Option<SolverPodSecurityContext>,
    /// Compute resources of the solver container; they override the
    /// controller-wide defaults (limits must not be below those requests).
    pub resources: Option<SolverResources>,
}

/// Requests and limits of the solver container.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SolverResources {
    /// Upper bounds, e.g. `cpu: 100m`, `memory: 64Mi`.
    pub limits: Option<BTreeMap<String, Quantity>>,
    /// Guaranteed amounts; default to the limits when only limits are given.
    pub requests: Option<BTreeMap<String, Quantity>>,
}

/// The subset of a PodSecurityContext a solver Pod takes from its template.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SolverPodSecurityContext {
    /// SELinux context for all containers.
    #[serde(rename = "seLinuxOptions")]
    pub se_linux_options: Option<SELinuxOptions>,
    /// UID the containers run as.
    pub run_as_user: Option<i64>,
    /// GID the containers run as.
    pub run_as_group: Option<i64>,
    /// Refuse to start containers that would run as UID 0.
    pub run_as_non_root: Option<bool>,
    /// Extra groups for the first process of each container.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub supplemental_groups: Option<Vec<i64>>,
    /// Group that owns the Pod's volumes.
    pub fs_group: Option<i64>,
    /// Namespaced sysctls for the Pod.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub sysctls: Option<Vec<Sysctl>>,
    /// When volume ownership is changed: `OnRootMismatch` or `Always` (the default).
    #[serde(rename = "fsGroupChangePolicy")]
    pub fs_group_change_policy: Option<String>,
    /// Seccomp profile of the containers.
    pub seccomp_profile: Option<SeccompProfile>,
}

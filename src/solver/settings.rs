//! The solver's settings and the choices they name: the mode, the
//! Ingress path type, solver Pod resources. Plain data (the controllers
//! read them through the context), so they depend on nothing of the
//! controllers.

use std::collections::BTreeMap;

use super::check::Probe;

/// The port solver Pods listen on (cert-manager's).
pub const SOLVER_PORT: u16 = 8089;
/// Issuer annotation choosing the solver mode.
pub const MODE_ANNOTATION: &str = "certwright.io/http01-solver-mode";
/// Challenge annotation: the mode it is presented in, fixed when work on
/// it starts (an issuer's mode changed meanwhile applies to the next one;
/// cleanup undoes what was presented).
pub const PRESENTED_MODE: &str = "acme.certwright.io/http01-solver-mode";

/// How a Challenge's token is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// certwright's replicas serve the token; an Ingress routes to them.
    Shared,
    /// A solver Pod, Service and Ingress per Challenge (cert-manager's way).
    Pod,
    /// `certwright solver --watch` beside the ingress controller serves it.
    Sidecar,
}

impl Mode {
    /// The mode an annotation value names.
    pub fn parse(value: &str) -> Result<Mode, String> {
        match value.trim() {
            "shared" => Ok(Mode::Shared),
            "pod" => Ok(Mode::Pod),
            "sidecar" => Ok(Mode::Sidecar),
            other => Err(format!(
                "the issuer's annotation {MODE_ANNOTATION} is {other:?}; expected shared, pod or sidecar"
            )),
        }
    }

    /// The annotation value naming this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shared => "shared",
            Mode::Pod => "pod",
            Mode::Sidecar => "sidecar",
        }
    }

    /// The mode a Challenge was presented in, when recorded.
    pub fn recorded(challenge_annotations: &BTreeMap<String, String>) -> Option<Mode> {
        challenge_annotations
            .get(PRESENTED_MODE)
            .and_then(|v| Mode::parse(v).ok())
    }

    /// The mode `annotations` (an issuer's) ask for, else `default`.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        default: Mode,
    ) -> Result<Mode, String> {
        annotations
            .get(MODE_ANNOTATION)
            .map_or(Ok(default), |v| Mode::parse(v))
    }
}

/// How the solver's path rule matches (ingress controllers differ in
/// what they support).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PathType {
    /// The token path only.
    Exact,
    /// Left to the ingress controller (most treat it as a prefix).
    ImplementationSpecific,
}

impl PathType {
    pub fn as_str(self) -> &'static str {
        match self {
            PathType::Exact => "Exact",
            PathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

/// Requests and limits of a solver container (cert-manager's defaults).
#[derive(Clone, Debug)]
pub struct PodResources {
    pub request_cpu: String,
    pub request_memory: String,
    pub limit_cpu: String,
    pub limit_memory: String,
}

impl Default for PodResources {
    fn default() -> Self {
        Self {
            request_cpu: "10m".into(),
            request_memory: "64Mi".into(),
            limit_cpu: "100m".into(),
            limit_memory: "64Mi".into(),
        }
    }
}

/// How HTTP-01 tokens are presented and checked.
#[derive(Clone, Debug)]
pub struct SolverSettings {
    /// certwright's own namespace, where the chart's solver Service lives.
    pub namespace: String,
    /// The chart's solver Service (selects certwright's Pods), also the
    /// name of the per-namespace mirror Services.
    pub service: String,
    /// Port the solver server listens on in every replica.
    pub port: u16,
    /// The mode of Issuers without the mode annotation.
    pub default_mode: Mode,
    /// The image of solver Pods (pod mode).
    pub image: String,
    /// Requests and limits of solver Pods.
    pub pod_resources: PodResources,
    /// pathType of the solver's Ingress rule.
    pub path_type: PathType,
    /// How the CA's view is checked (nameservers, ports, an address to
    /// send the request to instead of resolving the name).
    pub probe: Probe,
    /// Consecutive passes of the self-checks before the CA is asked.
    pub passes: u32,
}

impl Default for SolverSettings {
    fn default() -> Self {
        Self {
            namespace: "certwright".into(),
            service: "certwright-solver".into(),
            port: 8089,
            default_mode: Mode::Shared,
            image: format!(
                "ghcr.io/certwright/certwright:{}",
                env!("CARGO_PKG_VERSION")
            ),
            pod_resources: PodResources::default(),
            path_type: PathType::Exact,
            probe: Probe::default(),
            passes: 2,
        }
    }
}

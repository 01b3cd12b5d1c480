//! HTTP-01 presentation: the token server, the three solver modes and the
//! self-checks run before the CA is asked to validate. The Challenge
//! controller sees only [`Mode`]: presenting, where the solver answers
//! in-cluster, and cleaning up.
//!
//! - shared (the default): certwright's replicas serve every token; per
//!   Challenge only a route to the namespace's solver Service.
//! - pod (cert-manager's): a solver Pod, Service and Ingress per Challenge.
//! - sidecar: `certwright solver --watch` beside the ingress controller
//!   serves the tokens; certwright creates nothing.
//!
//! The mode is the Issuer's annotation [`MODE_ANNOTATION`], else the
//! controller's `--http01-solver-mode`.

pub mod check;
pub mod dns01;
pub mod ingress;
pub mod pod;
pub mod server;
pub mod settings;
pub mod shared;
pub mod sidecar;
pub mod state;

use std::net::SocketAddr;

use kube::ResourceExt;
use kube::api::PatchParams;

use crate::api::Challenge;
use crate::api::challenge::ChallengeType;
use crate::api::order::AcmeState;
pub use settings::{MODE_ANNOTATION, Mode, PRESENTED_MODE, SOLVER_PORT};
use state::Solvers;

/// Field manager of the solver resources.
pub const MANAGER: &str = "certwright-solver";
/// Label on every solver resource, as cert-manager sets it.
pub const SOLVER_LABEL: &str = "acme.cert-manager.io/http01-solver";
/// EndpointSlices certwright mirrors carry this `managed-by`.
pub const SLICE_MANAGER: &str = "certwright.io";
/// Issuer annotation: where the CA-view self-check sends its request
/// (host:port, with the challenge's Host header).
pub const SELF_CHECK_ADDRESS_ANNOTATION: &str = "certwright.io/http01-self-check-address";
/// Issuer annotation: `skip` skips the CA-view self-check (the in-cluster
/// one still runs).
pub const SELF_CHECK_ANNOTATION: &str = "certwright.io/http01-self-check";

impl Mode {
    /// The mode for a Challenge: the one it was presented in, else its
    /// issuer's annotation, else the default.
    pub fn of(
        issuers: &crate::acme::session::IssuerStores,
        default: Mode,
        challenge: &Challenge,
    ) -> Result<Self, String> {
        if let Some(mode) = Mode::recorded(challenge.annotations()) {
            return Ok(mode);
        }
        let annotations = issuers.annotations(
            &challenge.namespace().unwrap_or_default(),
            &challenge.spec.issuer_ref,
        );
        Mode::from_annotations(&annotations, default)
    }

    /// Makes the token reachable; `again` when it was presented before but
    /// does not answer (then nothing remembered is trusted). `Ok(Err(why))`
    /// is a configuration problem for the Challenge's reason; `Err` an API
    /// failure to retry.
    pub async fn present(
        self,
        solvers: &Solvers,
        challenge: &Challenge,
        again: bool,
    ) -> Result<Result<(), String>, kube::Error> {
        match self {
            Mode::Shared => shared::present(solvers, challenge, again).await,
            Mode::Pod => pod::present(solvers, challenge).await,
            Mode::Sidecar => Ok(Ok(())),
        }
    }

    /// Where the solver answers in-cluster: Ok(None) when there is nothing
    /// to ask (sidecar), Err(why) when it cannot be asked yet.
    pub async fn solver_address(
        self,
        solvers: &Solvers,
        challenge: &Challenge,
    ) -> Result<Result<Option<SocketAddr>, check::SelfCheckFailure>, kube::Error> {
        let ns = challenge.namespace().unwrap_or_default();
        match self {
            Mode::Sidecar => Ok(Ok(None)),
            Mode::Shared => Ok(shared::service_address(solvers, &ns)
                .await?
                .map(Some)
                .ok_or_else(|| {
                    check::SelfCheckFailure::SolverMissing(format!(
                        "the solver Service {ns}/{} does not exist",
                        solvers.settings.service
                    ))
                })),
            Mode::Pod => {
                Ok(solvers.pod_address(&ns, &ingress::resource_name(&challenge.name_any())))
            }
        }
    }

    /// Removes what [`Mode::present`] made. Whatever the mode was when it
    /// presented (the issuer's annotation may have changed since), the
    /// route is undone and the pod mode's Pod and Service go if they exist.
    /// Ok(Err) says what is left behind, and why.
    /// `others_here`: other Challenges in the namespace are being worked
    /// on (the shared mode's Service stays for them).
    pub async fn cleanup(
        self,
        solvers: &Solvers,
        challenge: &Challenge,
        others_here: bool,
    ) -> Result<Result<(), String>, kube::Error> {
        let ns = challenge.namespace().unwrap_or_default();
        let name = ingress::resource_name(&challenge.name_any());
        let route = ingress::cleanup(&solvers.client, challenge).await?;
        if self == Mode::Pod || solvers.has_pod(&ns, &name) {
            pod::cleanup(solvers, challenge).await?;
        }
        if self == Mode::Shared {
            shared::cleanup(solvers, challenge, others_here).await?;
        }
        Ok(route)
    }
}

/// Whether a Challenge still needs its token served.
pub fn live(ch: &Challenge) -> bool {
    ch.spec.type_ == ChallengeType::Http01
        && !matches!(
            ch.status.as_ref().and_then(|s| s.state),
            Some(AcmeState::Valid | AcmeState::Invalid | AcmeState::Errored | AcmeState::Expired)
        )
}

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

fn ignore_missing(r: Result<impl Sized, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;

    /// A Challenge in `apps` with `solver`.
    pub fn challenge(solver: Value) -> Challenge {
        serde_json::from_value(json!({
            "apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
            "metadata": {"name": "web-1-123-456", "namespace": "apps", "uid": "u1"},
            "spec": {"url": "https://ca/chal", "authorizationURL": "https://ca/authz", "dnsName": "app.example.com",
                     "type": "HTTP-01", "token": "tok", "key": "tok.thumb", "solver": solver, "issuerRef": {"name": "le"}}
        }))
        .expect("challenge")
    }

    #[test]
    fn the_issuer_annotation_picks_the_mode_else_the_default() {
        let none = BTreeMap::new();
        assert_eq!(
            Mode::from_annotations(&none, Mode::Shared),
            Ok(Mode::Shared)
        );
        assert_eq!(Mode::from_annotations(&none, Mode::Pod), Ok(Mode::Pod));
        let pod = BTreeMap::from([(MODE_ANNOTATION.to_string(), "pod".to_string())]);
        assert_eq!(Mode::from_annotations(&pod, Mode::Shared), Ok(Mode::Pod));
        let bad = BTreeMap::from([(MODE_ANNOTATION.to_string(), "pods".to_string())]);
        let err = Mode::from_annotations(&bad, Mode::Shared).expect_err("unknown");
        assert!(
            err.contains("\"pods\"") && err.contains("shared, pod or sidecar"),
            "{err}"
        );
    }
}

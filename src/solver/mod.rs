//! HTTP-01 presentation: the token server, the shared solver mode (one
//! Ingress per Challenge, tokens served by every replica) and the
//! self-check run before the CA is asked to validate. The Challenge
//! controller sees only [`Mode`]: presenting and cleaning up.

pub mod check;
pub mod server;
pub mod shared;

use crate::api::Challenge;
use crate::context::Context;

/// How a Challenge's token is presented. Only the shared mode exists
/// today; the pod and sidecar modes join it here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// certwright's replicas serve the token; an Ingress routes to them.
    Shared,
}

impl Mode {
    /// The mode for a Challenge.
    pub fn of(_challenge: &Challenge) -> Self {
        Mode::Shared
    }

    /// Makes the token reachable. `Ok(Err(why))` is a configuration
    /// problem for the Challenge's reason; `Err` an API failure to retry.
    pub async fn present(
        self,
        ctx: &Context,
        challenge: &Challenge,
    ) -> Result<Result<(), String>, kube::Error> {
        match self {
            Mode::Shared => shared::present(ctx, challenge).await,
        }
    }

    /// Removes what [`Mode::present`] created.
    pub async fn cleanup(self, ctx: &Context, challenge: &Challenge) -> Result<(), kube::Error> {
        match self {
            Mode::Shared => shared::cleanup(ctx, challenge).await,
        }
    }
}

//! How a Challenge's token is presented, checked and removed: HTTP-01 in
//! one of the solver modes, or DNS-01 with its provider.

use instant_acme::ChallengeType;

use super::{Error, self_check};
use crate::api::Challenge;
use kube::ResourceExt;

use super::state::Ctx;
use crate::solver::Mode;
use crate::solver::dns01::{self, Dns01};

#[derive(Clone, Copy, Debug)]
pub(super) enum Presenter {
    Http01(Mode),
    Dns01,
}

impl Presenter {
    /// The Challenge's presenter; for HTTP-01 its issuer's mode (Err: why
    /// that cannot be read).
    pub(super) fn of(ctx: &Ctx, ch: &Challenge) -> Result<Self, String> {
        if ch.spec.solver.dns01.is_some() {
            return Ok(Self::Dns01);
        }
        Mode::of(&ctx.issuer_stores, ctx.settings.solver.default_mode, ch).map(Self::Http01)
    }

    /// "HTTP-01" or "DNS-01", as reasons and events name it.
    pub(super) fn kind(self) -> &'static str {
        match self {
            Self::Http01(_) => "HTTP-01",
            Self::Dns01 => "DNS-01",
        }
    }

    pub(super) fn acme_type(self) -> ChallengeType {
        match self {
            Self::Http01(_) => ChallengeType::Http01,
            Self::Dns01 => ChallengeType::Dns01,
        }
    }

    /// Presents the token (`again`: once more, as it does not answer);
    /// Ok(Err) says why it cannot be.
    pub(super) async fn present(
        self,
        ctx: &Ctx,
        ch: &Challenge,
        again: bool,
    ) -> Result<Result<(), String>, Error> {
        match self {
            Self::Http01(mode) => mode
                .present(&ctx.state.solvers, ch, again)
                .await
                .map_err(|e| Error::Api("solver resources".into(), e)),
            Self::Dns01 => dns01::present(&dns01(ctx), ch)
                .await
                .map_err(|e| Error::Api("the DNS-01 provider's Secret".into(), e)),
        }
    }

    /// Removes what `present` made.
    pub(super) async fn cleanup(self, ctx: &Ctx, ch: &Challenge) -> Result<(), Error> {
        match self {
            Self::Http01(mode) => match mode
                .cleanup(&ctx.state.solvers, ch, others_here(ctx, ch))
                .await
                .map_err(|e| Error::Api("solver resources".into(), e))?
            {
                Ok(()) => Ok(()),
                Err(why) => Err(Error::Cleanup(why)),
            },
            Self::Dns01 => match dns01::cleanup(&dns01(ctx), ch)
                .await
                .map_err(|e| Error::Api("the DNS-01 provider's Secret".into(), e))?
            {
                Ok(()) => Ok(()),
                Err(why) => Err(Error::Cleanup(format!(
                    "The DNS-01 record is left behind: {why}"
                ))),
            },
        }
    }

    /// The self-checks before the CA is asked.
    pub(super) async fn check(
        self,
        ctx: &Ctx,
        ch: &Challenge,
    ) -> Result<self_check::Verdict, Error> {
        match self {
            Self::Http01(mode) => self_check::run(ctx, ch, mode)
                .await
                .map_err(|e| Error::Api("solver resources".into(), e)),
            Self::Dns01 => Ok(match dns01::check(&dns01(ctx), ch).await {
                Ok(()) => self_check::Verdict::Passed(ctx.settings.solver.passes),
                Err(failure) => self_check::Verdict::Failed(failure),
            }),
        }
    }
}

/// What DNS-01 works with.
fn dns01(ctx: &Ctx) -> Dns01<'_> {
    Dns01 {
        client: &ctx.client,
        settings: &ctx.settings.dns01,
        cluster_resource_namespace: &ctx.settings.cluster_resource_namespace,
    }
}

/// Whether other Challenges in `ch`'s namespace are being worked on.
fn others_here(ctx: &Ctx, ch: &Challenge) -> bool {
    let ns = ch.namespace().unwrap_or_default();
    ctx.state
        .in_flight()
        .others_in(&ns, &ch.uid().unwrap_or_default())
}

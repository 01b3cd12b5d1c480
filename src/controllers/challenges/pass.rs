//! One pass of the Challenge controller: the Challenge, its status as the
//! pass has made it so far and as it was last written, what the pass has
//! learnt, and the one write of the status ([`Pass::checkpoint`]).

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::plan::Seen;
use super::present::Presenter;
use super::state::Ctx;
use super::{Error, write};
use crate::api::Challenge;
use crate::api::challenge::ChallengeStatus;

/// One reconcile of one Challenge.
pub(super) struct Pass<'a> {
    pub ctx: &'a Ctx,
    pub ch: &'a Challenge,
    /// The status as this pass has made it so far.
    pub status: ChallengeStatus,
    /// The status as the API server has it (as far as this pass knows).
    written: ChallengeStatus,
    pub seen: Seen,
}

/// Whether the pass goes on after a step.
pub(super) enum Flow {
    Next,
    Done(Action),
}

impl<'a> Pass<'a> {
    pub fn new(ctx: &'a Ctx, ch: &'a Challenge) -> Self {
        let status = ch.status.clone().unwrap_or_default();
        let seen = Seen {
            retry_left: ctx
                .retries
                .wait_left(&uid(ch), status.reason.as_deref(), Timestamp::now()),
            ..Seen::default()
        };
        Self {
            ctx,
            ch,
            written: status.clone(),
            status,
            seen,
        }
    }

    /// Writes the status if the pass changed it since it was last written.
    pub async fn checkpoint(&mut self) -> Result<(), Error> {
        if self.status != self.written {
            write(self.ctx, self.ch, &self.status).await?;
            self.written = self.status.clone();
        }
        Ok(())
    }

    pub fn presenter(&self) -> Option<Presenter> {
        self.seen
            .presenter
            .as_ref()
            .and_then(|p| p.as_ref().ok())
            .copied()
    }
}

pub(super) fn uid(ch: &Challenge) -> String {
    ch.uid().unwrap_or_default()
}

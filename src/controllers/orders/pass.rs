//! One pass of the Order controller: the Order as the pass has it, its
//! status as the pass has made it so far and as it was last written, what
//! the pass has learnt, and the one write of the status
//! ([`Pass::checkpoint`]).

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use super::challenges::owned_by;
use super::plan::{Challenges, Seen};
use super::status::{Error, write};
use crate::acme::session::Session;
use crate::api::order::{AcmeState, OrderStatus};
use crate::api::{Challenge, Order};
use crate::runtime::context::Context;

/// One reconcile of one Order.
pub(super) struct Pass<'a> {
    pub ctx: &'a Context,
    pub order: Arc<Order>,
    /// The status as this pass has made it so far.
    pub status: OrderStatus,
    /// The status as the API server has it (as far as this pass knows).
    written: OrderStatus,
    pub seen: Seen,
    /// The Order's Challenges, as the cache has them (not being deleted).
    pub challenges: Vec<Challenge>,
    pub session: Option<Arc<Session>>,
    /// The order at the CA, once asked (or placed).
    pub acme: Option<instant_acme::Order>,
}

/// Whether the pass goes on after a step.
pub(super) enum Flow {
    Next,
    Done(Action),
}

impl<'a> Pass<'a> {
    pub fn new(ctx: &'a Context, order: Arc<Order>, cached: &Store<Challenge>) -> Self {
        let status = order.status.clone().unwrap_or_default();
        let uid = order.uid().unwrap_or_default();
        let seen = Seen {
            behind: ctx.behind(&uid, order.resource_version().as_deref()),
            retry_left: ctx
                .retries
                .wait_left(&uid, status.reason.as_deref(), Timestamp::now()),
            ..Seen::default()
        };
        // Read from the cache that feeds this controller's triggers, so a
        // pass woken by a Challenge sees at least that Challenge's news;
        // one the cache misses yet is created again, which the API refuses
        // harmlessly (409).
        let ns = order.namespace();
        let challenges: Vec<Challenge> = cached
            .state()
            .iter()
            .filter(|c| {
                c.namespace() == ns && owned_by(c, &order) && c.meta().deletion_timestamp.is_none()
            })
            .map(|c| Challenge::clone(c))
            .collect();
        let mut pass = Self {
            ctx,
            order,
            written: status.clone(),
            status,
            seen,
            challenges,
            session: None,
            acme: None,
        };
        pass.seen.challenges = pass.challenge_facts();
        pass
    }

    /// What the plan reads of the Challenges.
    fn challenge_facts(&self) -> Challenges {
        let state = |c: &Challenge| c.status.as_ref().and_then(|s| s.state);
        Challenges {
            count: self.challenges.len(),
            finished: self
                .challenges
                .iter()
                .filter(|c| matches!(state(c), Some(AcmeState::Valid | AcmeState::Invalid)))
                .count(),
            any_invalid: self
                .challenges
                .iter()
                .any(|c| state(c) == Some(AcmeState::Invalid)),
            errored: self
                .challenges
                .iter()
                .find(|c| state(c) == Some(AcmeState::Errored))
                .map(|c| {
                    let why = c.status.as_ref().and_then(|s| s.reason.clone());
                    (c.name_any(), why.unwrap_or_default())
                }),
        }
    }

    /// Writes the status if the pass changed it since it was last written.
    pub async fn checkpoint(&mut self) -> Result<(), Error> {
        if self.status != self.written {
            write(self.ctx, &self.order, &self.status).await?;
            self.written = self.status.clone();
        }
        Ok(())
    }

    /// Starts over from `fresh`, the Order as the API server has it.
    pub fn read_fresh(&mut self, fresh: Order) {
        let status = fresh.status.clone().unwrap_or_default();
        self.order = Arc::new(fresh);
        self.written = status.clone();
        self.status = status;
    }

    pub fn uid(&self) -> String {
        self.order.uid().unwrap_or_default()
    }
}

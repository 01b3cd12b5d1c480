//! The controllers, one folder each, over the shared plumbing of
//! [`crate::runtime`].

pub mod certificaterequests;
pub mod certificates;
pub mod challenges;
pub mod ingress_shim;
pub mod issuers;
pub mod orders;

use std::sync::Arc;

use crate::runtime::context::Context;
use crate::{acme, solver};

/// Runs every controller of `certwright controller` until they stop: one
/// failing, or all of them after [`Context::stop`] (then each
/// finishes the reconciles under way first).
pub async fn run(ctx: Arc<Context>) {
    // What the CAs' limits hold back, as the last term left it.
    let kept = acme::kept::first_read(&ctx.kept()).await;
    let solvers = Arc::new(solver::state::Solvers::new(
        ctx.client.clone(),
        ctx.settings.solver.clone(),
    ));
    let shim = ctx.clone();
    let controllers = async {
        tokio::join!(
            issuers::run(ctx.clone()),
            certificates::run(ctx.clone()),
            certificaterequests::run(ctx.clone()),
            orders::run(ctx.clone()),
            challenges::run(ctx.clone(), solvers.clone()),
            async move {
                if shim.settings.controllers.ingress_shim {
                    ingress_shim::run(shim).await;
                }
            },
        )
    };
    // These run while the controllers do.
    let keeping = ctx.kept();
    let background = async {
        tokio::join!(
            acme::kept::keep(&keeping, kept),
            solver::shared::mirror(solvers.clone()),
            acme::session::watch_issuer_stores(ctx.client.clone(), &ctx.issuer_stores),
        )
    };
    tokio::select! {
        _ = controllers => {}
        _ = background => {}
    }
}

//! The sidecar solver mode: `certwright solver --watch` runs beside an
//! ingress controller that routes `/.well-known/acme-challenge/` to it on
//! localhost, and serves the token of every live Challenge whose issuer is
//! in sidecar mode, read from the API (Challenges, Issuers and
//! ClusterIssuers, read-only). The controller creates no solver resources
//! for those Challenges.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use kube::ResourceExt;

use super::Mode;
use super::server::{self, Limits, Tokens};
use crate::acme::session::{IssuerStores, watch_issuer_stores};

/// Serves the sidecar-mode tokens on `addr` until `shutdown` completes.
/// `default` is the controller's `--http01-solver-mode` (the mode of
/// issuers without the annotation).
pub async fn serve(
    client: kube::Client,
    addr: SocketAddr,
    default: Mode,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let tokens: Tokens = Arc::new(RwLock::new(HashMap::new()));
    let stores = Arc::new(IssuerStores::default());
    let issuers = watch_issuer_stores(client.clone(), &stores);
    let fill = {
        let stores = stores.clone();
        let tokens = tokens.clone();
        async move {
            // Which issuers are in sidecar mode is known before any
            // Challenge is judged.
            stores.ready().await;
            let health = super::shared::TokenWatch::default();
            let keep = move |ch: &crate::api::Challenge| {
                if let Some(mode) = Mode::recorded(ch.annotations()) {
                    return mode == Mode::Sidecar;
                }
                let annotations =
                    stores.annotations(&ch.namespace().unwrap_or_default(), &ch.spec.issuer_ref);
                Mode::from_annotations(&annotations, default) == Ok(Mode::Sidecar)
            };
            super::shared::fill(client, tokens, keep, &health).await;
        }
    };
    tokio::select! {
        served = server::serve_until(addr, tokens, limits, shutdown) => served,
        () = issuers => Ok(()),
        () = fill => Ok(()),
    }
}

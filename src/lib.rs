//! certwright: an ACME HTTP-01 certificate controller for Kubernetes that
//! serves cert-manager's API.

pub mod acme;
pub mod api;
pub mod certificaterequests;
pub mod certificates;
pub mod challenges;
pub mod checks;
pub mod cli;
pub mod cmd;
pub mod dns;
pub mod ingress_shim;
pub mod issuers;
pub mod metrics;
pub mod naming;
pub mod orders;
pub mod pki;
pub mod runtime;
pub mod solver;
pub mod time;

/// Runs every controller of `certwright controller` until they stop: one
/// failing, or all of them after [`runtime::context::Context::stop`] (then each
/// finishes the reconciles under way first).
pub async fn run_controllers(ctx: std::sync::Arc<runtime::context::Context>) {
    // What the CAs' limits hold back, as the last term left it.
    let kept = acme::kept::first_read(&ctx).await;
    let shim = ctx.clone();
    let controllers = async {
        tokio::join!(
            issuers::run(ctx.clone()),
            certificates::run(ctx.clone()),
            certificaterequests::run(ctx.clone()),
            orders::controller::run(ctx.clone()),
            challenges::run(ctx.clone()),
            async move {
                if shim.controllers.ingress_shim {
                    ingress_shim::run(shim).await;
                }
            },
        )
    };
    // These run while the controllers do.
    let background = async {
        tokio::join!(
            acme::kept::keep(&ctx, kept),
            solver::shared::mirror(ctx.clone()),
            acme::session::watch_issuer_stores(ctx.client.clone(), &ctx.issuer_stores),
        )
    };
    tokio::select! {
        _ = controllers => {}
        _ = background => {}
    }
}

/// Installs aws-lc-rs as the process-wide rustls crypto provider, the one
/// backend kube, instant-acme and our own clients share. Call once at start
/// (and in test helpers); later calls are no-ops.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn crypto_provider_is_aws_lc_and_install_is_idempotent() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("installed");
        let aws_lc = rustls::crypto::aws_lc_rs::default_provider();
        let names = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(provider), names(&aws_lc));
    }
}

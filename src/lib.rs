//! certwright: an ACME HTTP-01 certificate controller for Kubernetes that
//! serves cert-manager's API.

pub mod acme;
pub mod api;
pub mod checks;
pub mod cli;
pub mod cmd;
pub mod controllers;
pub mod dns;
pub mod metrics;
pub mod naming;
pub mod pki;
pub mod runtime;
pub mod solver;
pub mod time;

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

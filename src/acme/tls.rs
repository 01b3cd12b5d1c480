//! Which certificates the ACME server's TLS certificate must chain to: an
//! Issuer's `caBundle`, the system roots, or, for `skipTLSVerify`, none.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Which certificates the ACME server's TLS certificate must chain to.
#[derive(Clone, Debug)]
pub enum Trust {
    /// The platform's trust store.
    System,
    /// A PEM bundle (an Issuer's `caBundle`).
    Bundle(Vec<u8>),
    /// No verification at all (an Issuer's `skipTLSVerify`).
    Insecure,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the CA bundle holds no usable certificate: {0}")]
    Bundle(String),
    #[error("cannot load the system trust store: {0}")]
    SystemRoots(String),
}

pub(super) fn tls_config(trust: &Trust) -> Result<rustls::ClientConfig, ClientError> {
    let builder = rustls::ClientConfig::builder();
    Ok(match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything))
            .with_no_client_auth(),
        Trust::Bundle(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ClientError::Bundle(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Bundle(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ClientError::Bundle("no PEM certificate found".into()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::System => {
            let loaded = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(loaded.certs);
            if added == 0 {
                let why = loaded
                    .errors
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "no certificates".into());
                return Err(ClientError::SystemRoots(why));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    })
}

/// `skipTLSVerify`: accepts any certificate (signatures of the handshake
/// are still checked, so the connection is at least consistent).
#[derive(Debug)]
pub struct AcceptAnything;

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms =
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms =
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

//! Keys, CSRs, keystores and certificate parsing.

pub mod cert;
pub mod csr;
pub mod der;
pub mod keys;
pub mod keystore;
pub mod subject;

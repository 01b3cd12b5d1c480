//! Keys, CSRs and certificate parsing.

pub mod cert;
pub mod csr;
pub mod der;
pub mod keys;

//! Keys, CSRs and certificate parsing.

pub mod cert;
pub mod der;
pub mod keys;
